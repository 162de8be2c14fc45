# bench/broker/brk_load.mk — the worker broker's load generator (bench/broker/brk_load.c).
#   make build/brk_load   (or: make -f bench/broker/brk_load.mk)
# Stand-alone (libzmq + pthreads); the top-level Makefile does `-include bench/broker/brk_load.mk`.
BRK_LOAD_CC ?= cc
build/brk_load: bench/broker/brk_load.c
	@mkdir -p build
	$(BRK_LOAD_CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wvla -Wwrite-strings \
	    -Wmissing-prototypes -Wstrict-prototypes -D_GNU_SOURCE -o $@ $< -lzmq -lpthread
