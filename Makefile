# roomcast — plain GNU make build.
#
#   make                          optimised build          -> build/roomcast
#   make DEBUG=1                  -O0 -g3                  -> build/debug/roomcast
#   make SANITIZE=address,undefined                        -> build/sanitize/roomcast
#   make CC=clang                 any of the above with clang
#   make run                      install build deps, build, start on 127.0.0.1: HTTP and
#                                 WebSocket 8080, raw TCP 8081, chat 8082, NetSync 5555,
#                                 5556, 5557 and 9999, broker workers 5560 and clients
#                                 5559, durable log in data/ (the variables that
#                                 change them are listed at the rule, below)
#   make test                     install test deps, build, unit (ASan+UBSan) + integration
#   make fuzz                     libFuzzer targets (clang)  -> build/fuzz/
#   make bench                    side-by-side benchmark (see bench/README.md)

CC       ?= cc
ifeq ($(origin CC),default)
CC       := cc
endif

ifneq ($(SANITIZE),)
O        ?= build/sanitize
OPT      ?= -O1 -g -fno-omit-frame-pointer -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
LDSAN    := -fsanitize=$(SANITIZE)
else ifneq ($(DEBUG),)
O        ?= build/debug
OPT      ?= -O0 -g3
else
O        ?= build
OPT      ?= -O2 -g
endif

WARN     := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes -Wvla \
            -Wwrite-strings -Wshadow -Wpointer-arith -Wno-unused-parameter
CFLAGS   += -std=gnu11 $(OPT) $(WARN) -D_GNU_SOURCE -Isrc -MMD -MP
LDFLAGS  += $(LDSAN)
LDLIBS   += -lssl -lcrypto -lz -lpthread -lm -lzmq -lhiredis

SRC      := $(sort $(filter-out src/app/main.c,$(wildcard src/*/*.c)))
OBJ      := $(SRC:%.c=$(O)/obj/%.o)
# web/ (client library and demo) is compiled into the binary: tools/embed writes the files as
# C arrays into a generated source that joins the library like any other object.
WEB_FILES := $(sort $(wildcard web/*.html web/*.js web/*.ts web/*.css web/*.svg web/*.ico))
WEB_GEN  := $(O)/gen/webassets_data.c
OBJ      += $(O)/obj/gen/webassets_data.o
LIB      := $(O)/libroomcast.a
BIN      := $(O)/roomcast

UNIT_SRC := $(sort $(wildcard tests/unit/*/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(O)/tests/%)

.PHONY: all run test unit unit-bins fuzz fuzz-run bench bench-quick deps-build deps-test clean format

all: $(BIN)

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(O)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O1 $(WARN) -o $@ $<

$(WEB_GEN): $(O)/tools/embed $(WEB_FILES)
	@mkdir -p $(dir $@)
	$(O)/tools/embed $(WEB_FILES) > $@.tmp && mv $@.tmp $@

$(O)/obj/gen/webassets_data.o: $(WEB_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(O)/obj/src/app/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/tests/%: tests/unit/%.c tests/unit/unit.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

unit-bins: $(UNIT_BIN)

# Extra pieces (benchmark, fuzzers) keep their rules next to their sources.
-include bench/bench.mk
-include fuzz/fuzz.mk
-include bench/netsync_sim.mk
-include bench/broker/brk_load.mk

# make run [PORT=N] [TCP_PORT=N|off] [CHAT_PORT=N|off] [NETSYNC=on|off]
#          [NETSYNC_ROUTER_PORT=N] [NETSYNC_PUB_PORT=N] [NETSYNC_DISCOVERY_PORT=N]
#          [NETSYNC_POSE_PORT=N] [BROKER=on|off] [BROKER_WORKER_PORT=N]
#          [BROKER_CLIENT_PORT=N] [DATA_DIR=DIR] [CONFIG=FILE]
# Starts roomcast with the configuration file roomcast.conf (CONFIG=FILE for another). Each
# variable given overrides one key on the command line (the flag of the same name; README,
# "Configuration"); 0 picks a free port; NETSYNC=off is --no-netsync, BROKER=off closes the
# worker broker's ports. The durable log goes to data/, or to data-PORT/ when PORT is given
# and not 8080: a second server on the same data directory refuses to start.
CONFIG ?= roomcast.conf
NETSYNC ?= on
BROKER  ?= on
given = $(filter command line environment override,$(origin $(1)))
flag  = $(if $(call given,$(1)),$(2) $($(1)))
RUN_DATA_DIR = $(if $(call given,DATA_DIR),--data-dir '$(DATA_DIR)',$(if $(filter-out 8080,$(call given,PORT)$(if $(call given,PORT),$(PORT))),--data-dir 'data-$(PORT)'))
RUN_FLAGS = $(call flag,PORT,--port) $(call flag,TCP_PORT,--tcp-port) \
            $(call flag,CHAT_PORT,--chat-port) \
            $(if $(filter off,$(NETSYNC)),--no-netsync, \
                 $(call flag,NETSYNC_ROUTER_PORT,--netsync-router-port) \
                 $(call flag,NETSYNC_PUB_PORT,--netsync-pub-port) \
                 $(call flag,NETSYNC_DISCOVERY_PORT,--netsync-discovery-port) \
                 $(call flag,NETSYNC_POSE_PORT,--netsync-pose-port)) \
            $(if $(filter off,$(BROKER)),--broker-worker-port off --broker-client-port off, \
                 $(call flag,BROKER_WORKER_PORT,--broker-worker-port) \
                 $(call flag,BROKER_CLIENT_PORT,--broker-client-port)) \
            $(RUN_DATA_DIR)

run: deps-build all
	$(if $(filter-out on off,$(NETSYNC)),$(error NETSYNC must be on or off, not '$(NETSYNC)'))
	$(if $(filter-out on off,$(BROKER)),$(error BROKER must be on or off, not '$(BROKER)'))
	./$(BIN) --config '$(CONFIG)' $(strip $(RUN_FLAGS))

deps-build:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

# Unit tests always run under ASan+UBSan, whatever the default build is; integration tests
# run against the sanitizer build too (leaks and UB in the real server fail the run) and the
# benchmark smoke run uses the optimised build.
test: deps-test
	$(MAKE) all bench-bins
	$(MAKE) SANITIZE=address,undefined all unit-bins
	tests/unit/run.sh build/sanitize/tests
	$(MAKE) --no-print-directory fuzz-run
	tests/run-integration.sh build/sanitize/roomcast build/roomcast

unit: 
	$(MAKE) SANITIZE=address,undefined unit-bins
	tests/unit/run.sh build/sanitize/tests

clean:
	rm -rf build

format:
	clang-format -i $(SRC) src/app/main.c $(wildcard src/*/*.h)

-include $(OBJ:.o=.d) $(O)/obj/src/app/main.d
