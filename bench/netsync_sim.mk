# bench/netsync_sim.mk — the NetSync client simulator (bench/netsync_sim.c).
#   make -f bench/netsync_sim.mk          -> build/netsync_sim
# Stand-alone (libzmq only); the top-level Makefile can `-include bench/netsync_sim.mk`.
NS_SIM_CC ?= cc
build/netsync_sim: bench/netsync_sim.c
	@mkdir -p build
	$(NS_SIM_CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wvla -Wwrite-strings \
	    -Wmissing-prototypes -Wstrict-prototypes -D_GNU_SOURCE -o $@ $< -lzmq
