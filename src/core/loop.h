/* loop.h — roomcast's event loop: epoll readiness, timers, signals, a before-sleep hook.
 *
 * One rc_loop owns everything that happens on its thread; nothing here is global, so a later
 * multi-core design can run one loop per core. Objects that wait for I/O embed an rc_io whose
 * callback the loop calls with the ready events (level-triggered). Timers live in a binary
 * min-heap of embedded rc_timer nodes (no allocation per timer); the clock is CLOCK_MONOTONIC in
 * nanoseconds, read once per iteration (rc_loop_now) because reading it per event costs more
 * than the precision is worth. Signals arrive through one signalfd, so handlers run as ordinary
 * callbacks on the loop, never in signal context. The before-sleep hook runs after each batch
 * of events and timers and before the loop blocks again: the server flushes the output that the
 * batch queued there, which is what batches many frames into one write.
 */
#ifndef RC_LOOP_H
#define RC_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/heap.h"
#include <sys/epoll.h>

typedef struct rc_loop rc_loop;
typedef struct rc_io rc_io;
typedef struct rc_timer rc_timer;

/* RC_EV_EDGE asks for edge-triggered reports (EPOLLET): a descriptor is reported when it
 * becomes ready, not on every wait while it stays ready, so its owner must read until it has
 * seen everything or call rc_io_rearm. RC_EV_HUP asks to be told of the peer's shutdown
 * (EPOLLRDHUP), which an edge-triggered reader needs in order to read on to the EOF. */
enum { RC_EV_READ = EPOLLIN, RC_EV_WRITE = EPOLLOUT, RC_EV_EDGE = EPOLLET, RC_EV_HUP = EPOLLRDHUP };

/* Reported without being asked for: the descriptor failed, or both directions hung up. */
enum { RC_EV_ERROR = EPOLLERR, RC_EV_HANGUP = EPOLLHUP };

/* Called with the events that are ready (RC_EV_*). */
typedef void rc_io_cb(rc_loop *loop, rc_io *io, uint32_t events);
typedef void rc_timer_cb(rc_loop *loop, rc_timer *t);
typedef void rc_signal_cb(rc_loop *loop, int signo, void *arg);
typedef void rc_hook_cb(rc_loop *loop, void *arg);
typedef void rc_iter_cb(rc_loop *loop, uint64_t busy_ns, void *arg);

struct rc_io {
    int fd;                  /* the watched descriptor, -1 when not started */
    uint32_t events;         /* interest currently registered with epoll */
    rc_io_cb *cb;            /* called when the descriptor is ready */
};

struct rc_timer {
    rc_heap_node node;       /* key: CLOCK_MONOTONIC ns when the timer fires; in the loop's
                              * heap while armed */
    rc_timer_cb *cb;         /* called once when due; re-arm from inside to repeat */
};

/* rc_loop_new creates a loop; NULL with errno set on failure. rc_loop_free releases it (the
 * loop does not own the descriptors its rc_io point at). */
rc_loop *rc_loop_new(void);
void rc_loop_free(rc_loop *loop);

/* rc_loop_run runs until rc_loop_stop is called. Returns 0, or -errno if epoll fails. */
int rc_loop_run(rc_loop *loop);
void rc_loop_stop(rc_loop *loop);

/* rc_loop_now is the monotonic time in ns at the start of the current iteration. */
uint64_t rc_loop_now(const rc_loop *loop);
/* rc_clock_ns reads CLOCK_MONOTONIC now. */
uint64_t rc_clock_ns(void);

/* rc_loop_set_before_sleep installs the hook run before every wait (one hook per loop). */
void rc_loop_set_before_sleep(rc_loop *loop, rc_hook_cb *cb, void *arg);

/* rc_loop_set_iteration_hook installs cb, called after the before-sleep hook of every
 * iteration with the time the iteration was busy: from epoll_wait returning to the end of the
 * before-sleep step, ns (metrics). It costs one clock read per iteration, only when installed. */
void rc_loop_set_iteration_hook(rc_loop *loop, rc_iter_cb *cb, void *arg);

/* rc_io_init prepares io for descriptor fd; rc_io_start registers it with interest events.
 * rc_io_set changes the interest (no syscall when unchanged); rc_io_stop unregisters it.
 * Return 0 or -errno. The caller keeps ownership of fd and closes it after rc_io_stop. */
void rc_io_init(rc_io *io, int fd, rc_io_cb *cb);
int rc_io_start(rc_loop *loop, rc_io *io, uint32_t events);
int rc_io_set(rc_loop *loop, rc_io *io, uint32_t events);
void rc_io_stop(rc_loop *loop, rc_io *io);
/* rc_io_rearm re-registers the current interest, so that an edge-triggered descriptor that is
 * still ready is reported again by the next wait (one epoll_ctl). Returns 0 or -errno. */
int rc_io_rearm(rc_loop *loop, rc_io *io);

/* rc_timer_init prepares an idle timer; rc_timer_start (re)arms it to fire at `due` ns
 * (rc_loop_now() + delay); rc_timer_stop disarms it (no-op when idle). */
void rc_timer_init(rc_timer *t, rc_timer_cb *cb);
void rc_timer_start(rc_loop *loop, rc_timer *t, uint64_t due);
void rc_timer_stop(rc_loop *loop, rc_timer *t);
static inline bool rc_timer_armed(const rc_timer *t) { return rc_heap_contains(&t->node); }
/* rc_timer_due is when an armed timer fires. */
static inline uint64_t rc_timer_due(const rc_timer *t) { return t->node.key; }

/* rc_loop_signal routes signo to cb (blocking its default action). Returns 0 or -errno. */
int rc_loop_signal(rc_loop *loop, int signo, rc_signal_cb *cb, void *arg);

/* Iteration statistics, for metrics. */
uint64_t rc_loop_iterations(const rc_loop *loop);

#define RC_NS_PER_MS 1000000ull
#define RC_NS_PER_SEC 1000000000ull

#endif
