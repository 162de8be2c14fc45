# fuzz/fuzz.mk — libFuzzer targets for the protocol codecs; included by the top-level Makefile.
#
#   make fuzz                       build every fuzz/fuzz_NAME.c       -> build/fuzz/fuzz_NAME
#   make fuzz-run [FUZZ_SECONDS=N]  run each for N seconds (default 10) from a copy of its seed
#                                   corpus fuzz/corpus/NAME; fails on the first crash, and skips
#                                   (successfully) when clang's libFuzzer runtime is missing
#   build/fuzz/fuzz_NAME build/fuzz/corpus-NAME      to keep fuzzing one target by hand
#
# A new target is just a new fuzz/fuzz_NAME.c (plus seeds in fuzz/corpus/NAME/): the wildcard
# picks it up. The code under test is src/codec/, the NetSync rooms, the core buffer and heap,
# the durable log's on-disk format (src/store/format.c) and the cluster's URL and channel
# message (src/cluster/clwire.c) — none of them depends on sockets
# or the rest of the server — compiled once with coverage instrumentation into an archive, so
# each target links just the objects it references (handshake.o, which needs -lcrypto, only
# ends up in the targets that call it; format.o needs zlib's crc32, hence -lz).
#
# -fno-sanitize-recover=all: by default UBSan reports and carries on, which libFuzzer would not
# count as a crash; here undefined behaviour stops the run like an ASan error does.

FUZZ_CC        ?= clang
FUZZ_SECONDS   ?= 10
FUZZ_OUT       := build/fuzz
FUZZ_SAN       := address,undefined
FUZZ_BASEFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -fno-sanitize-recover=all
FUZZ_CFLAGS    := -fsanitize=fuzzer,$(FUZZ_SAN) $(FUZZ_BASEFLAGS)
FUZZ_OBJFLAGS  := -fsanitize=fuzzer-no-link,$(FUZZ_SAN) $(FUZZ_BASEFLAGS)
FUZZ_LDLIBS    := -lssl -lcrypto -lz

FUZZ_SRC       := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_NAMES     := $(FUZZ_SRC:fuzz/fuzz_%.c=%)
FUZZ_BINS      := $(FUZZ_NAMES:%=$(FUZZ_OUT)/fuzz_%)
FUZZ_LIB_OBJ   := $(patsubst %.c,$(FUZZ_OUT)/obj/%.o,$(sort $(wildcard src/codec/*.c) src/broker/broker.c src/netsync/nsroom.c src/netsync/ns8room.c src/core/buf.c src/core/hash.c src/core/heap.c src/core/msg.c src/store/format.c src/cluster/clwire.c src/app/config.c src/app/conffile.c src/app/auth.c src/rooms/perm.c))
FUZZ_LIB       := $(FUZZ_OUT)/libproto.a

fuzz: $(FUZZ_BINS)

$(FUZZ_OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_OUT)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -MF $@.d $< $(FUZZ_LIB) $(FUZZ_LDLIBS) -o $@

# The probe links a do-nothing fuzzer: clang without compiler-rt's libfuzzer (or no clang at
# all) fails here, and that is a skip, not an error. Each target starts from a fresh copy of
# its seeds so that the run never writes into the repository; crash inputs go to build/fuzz/.
fuzz-run:
	@mkdir -p $(FUZZ_OUT)
	@if printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, __SIZE_TYPE__ n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, __SIZE_TYPE__ n) { (void)d; (void)n; return 0; }\n' \
	        | $(FUZZ_CC) -fsanitize=fuzzer -x c - -o $(FUZZ_OUT)/.probe >/dev/null 2>&1; then \
	    rm -f $(FUZZ_OUT)/.probe; \
	    $(MAKE) --no-print-directory fuzz || exit 1; \
	    for n in $(FUZZ_NAMES); do \
	        c=$(FUZZ_OUT)/corpus-$$n; rm -rf $$c; mkdir -p $$c; \
	        if [ -d fuzz/corpus/$$n ]; then cp -R fuzz/corpus/$$n/. $$c/; fi; \
	        echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	        $(FUZZ_OUT)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	            -artifact_prefix=$(FUZZ_OUT)/$$n- $$c || { echo "fuzz: $$n failed"; exit 1; }; \
	    done; \
	else \
	    echo "fuzz: clang libFuzzer runtime not found, skipping"; \
	fi

-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_BINS:%=%.d)
