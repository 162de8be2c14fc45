# bench/netsync_sim.mk — the NetSync benchmark's programs:
#   make -f bench/netsync_sim.mk   -> build/netsync_sim (bench/netsync_sim.c, the simulator)
#                                     build/ns_ceiling (bench/peers/ns_ceiling.c, the ceiling)
# Stand-alone (libzmq only, for the simulator's storm mode); the top-level Makefile can
# `-include bench/netsync_sim.mk`. bench/netsync.sh runs both.
NS_SIM_CC ?= cc
NS_SIM_CFLAGS = -std=gnu11 -Ibench -O2 -g -Wall -Wextra -Werror -Wshadow -Wvla -Wwrite-strings \
    -Wmissing-prototypes -Wstrict-prototypes -D_GNU_SOURCE

all-netsync-bench: build/netsync_sim build/ns_ceiling

build/netsync_sim: bench/netsync_sim.c bench/zmtp_min.h
	@mkdir -p build
	$(NS_SIM_CC) $(NS_SIM_CFLAGS) -o $@ $< -lzmq

build/ns_ceiling: bench/peers/ns_ceiling.c bench/zmtp_min.h
	@mkdir -p build
	$(NS_SIM_CC) $(NS_SIM_CFLAGS) -o $@ $<
