# bench/bench.mk — the benchmark: load generator, ceiling peer and the harness targets.
# Included by the top-level Makefile, which provides CC, CFLAGS, LDFLAGS, LDLIBS and O.
#
#   make bench          full side-by-side run (bench/run.sh all), a few minutes
#   make bench-quick    smoke run of every scenario; fails only on correctness, never on timing
#   make bench-deps     Debian python3-websockets, node/npm and `npm ci` under bench/peers (ws; socket.io,
#                       @socket.io/redis-adapter and redis for bench/cluster.sh)

# Listed, not globbed: bench/ also holds stand-alone micro-benchmarks with their own main()
# (bench/json_micro.c, bench/deflate_micro.c) that are not part of the generator.
BENCH_SRC := bench/hist.c bench/proc.c bench/conn.c bench/tcp.c bench/tls.c bench/sio.c bench/msg.c bench/report.c bench/rooms.c \
             bench/idle.c bench/churn.c bench/joincost.c bench/main.c
BENCH_OBJ := $(BENCH_SRC:%.c=$(O)/obj/%.o)

$(O)/roomcast-bench: $(BENCH_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/bench-ceiling: $(O)/obj/bench/peers/ceiling.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: bench bench-quick bench-deps bench-bins

bench-bins: $(O)/roomcast-bench $(O)/bench-ceiling

bench: all bench-bins
	O=$(O) bench/run.sh all

bench-quick: all bench-bins
	O=$(O) bench/run.sh --quick all

bench-deps:
	bench/run.sh --deps

-include $(BENCH_OBJ:.o=.d) $(O)/obj/bench/peers/ceiling.d
