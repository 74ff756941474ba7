/*
 * loop.h: the one event loop of rtw-sse and rtw-webhookd: epoll over fd
 * sources with callbacks, timers (timerfd), signals (signalfd), hooks that
 * run after every pass, and retire-after-pass. Single-threaded: the thread
 * that runs the loop is the only one that may touch it or its sources.
 *
 * Phase order of one pass (rtw_loop_run_once):
 *   1. wait for events (epoll_wait);
 *   2. refresh the loop's clock (rtw_loop_now);
 *   3. dispatch every ready source in the order the kernel returned them:
 *      fd sources, timers and signals alike, each through its callback; a
 *      source removed earlier in the same pass gets none of its events;
 *   4. run the pass hooks, in the order they were added;
 *   5. release the sources retired during the pass (their release
 *      callbacks), when no stale event can reach them any more.
 *
 * Memory: every source struct (rtw_io, rtw_timer, rtw_signal, rtw_hook) is
 * the caller's, usually embedded in a bigger struct, and borrowed by the
 * loop from add/init until it is removed (rtw_loop_del, rtw_timer_close,
 * rtw_signal_close, rtw_loop_hook_del) or retired. A source removed during
 * a pass must stay allocated until the pass ends: free it only after
 * rtw_loop_run_once returns, or retire it and free it in its release
 * callback. The loop itself never allocates.
 */
#ifndef RTW_LOOP_H
#define RTW_LOOP_H

#include "rtw.h"

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>

struct rtw_loop;
struct rtw_io;

/* events: the epoll bits that are ready (EPOLLIN, EPOLLOUT, EPOLLERR,
 * EPOLLHUP, ...). arg is the one given to rtw_loop_add. */
typedef void (*rtw_io_fn)(void *arg, uint32_t events);

/* An fd source. Fields are the loop's; read them, do not write them. */
struct rtw_io {
	int fd;
	uint32_t events;
	bool registered;
	bool retired;
	uint64_t del_pass; /* the pass it was last removed in (stale events) */
	rtw_io_fn fn;
	void *arg;
	void (*release)(struct rtw_io *io); /* after the pass; may be NULL */
	struct rtw_io *next_retired;
};

/* A hook that runs once after the dispatch of every pass (phase 4). */
struct rtw_hook {
	void (*fn)(void *arg);
	void *arg;
	bool added;
	struct rtw_hook *next;
};

struct rtw_loop {
	int epfd;
	uint64_t pass; /* passes started; 0 before the first */
	bool in_pass;
	bool stopping;
	uint64_t now_ms;
	struct rtw_io *retired;
	struct rtw_hook *hooks;
};

int rtw_loop_init(struct rtw_loop *l) RTW_WUR;
/* Releases what is still retired and closes the epoll fd. Sources still
 * registered are only forgotten (their fds stay open: their owners close
 * them). Not during a pass. */
void rtw_loop_close(struct rtw_loop *l);

/* Registers io (borrowed) for events on fd; fn(arg, ready) runs for each
 * readiness (level-triggered). io must be zeroed before its first add
 * (calloc, or = {0}); it may be added again after rtw_loop_del. RTW_ERROR
 * with errno set when epoll refuses. */
int rtw_loop_add(struct rtw_loop *l, struct rtw_io *io, int fd, uint32_t events, rtw_io_fn fn, void *arg) RTW_WUR;
/* Changes the events of a registered io; a no-op when they are the same. */
int rtw_loop_mod(struct rtw_loop *l, struct rtw_io *io, uint32_t events) RTW_WUR;
/* Unregisters io now; its events still pending in this pass are dropped,
 * even when it is added again in the same pass. Call it before closing
 * the fd (afterwards works too: the kernel dropped it already). Does not
 * free io. A no-op when io is not registered. */
void rtw_loop_del(struct rtw_loop *l, struct rtw_io *io);
/* Unregisters io and parks it: release(io) runs in phase 5 of the current
 * pass (or of the next one when called outside a pass, or from
 * rtw_loop_close), where the owner closes the fd and frees the memory.
 * The usual way to end a source from its own callback. Idempotent. */
void rtw_loop_retire(struct rtw_loop *l, struct rtw_io *io, void (*release)(struct rtw_io *io));

/* Adds a hook that runs after every pass's dispatch (borrowed until
 * rtw_loop_hook_del). Hooks run in the order they were added. */
void rtw_loop_hook_add(struct rtw_loop *l, struct rtw_hook *h, void (*fn)(void *arg), void *arg);
void rtw_loop_hook_del(struct rtw_loop *l, struct rtw_hook *h);

/* One pass: waits up to timeout_ms (-1: until an event), then phases 2-5.
 * RTW_OK (also when interrupted by a signal), or RTW_ERROR with errno set
 * when epoll_wait fails. */
int rtw_loop_run_once(struct rtw_loop *l, int timeout_ms) RTW_WUR;
/* Runs passes until rtw_loop_stop; RTW_OK, or RTW_ERROR as above. */
int rtw_loop_run(struct rtw_loop *l) RTW_WUR;
/* Makes rtw_loop_run return after the current pass. */
void rtw_loop_stop(struct rtw_loop *l);

/* The monotonic clock (rtw_now_ms) as of the start of the current pass's
 * dispatch: one reading shared by every callback of a pass. */
static inline uint64_t rtw_loop_now(const struct rtw_loop *l)
{
	return l->now_ms;
}

/* A timer on its own timerfd. fn(arg) runs from the loop, never from
 * rtw_timer_start; a timer stopped or started again during a pass does not
 * fire from an expiry that pass already saw. */
struct rtw_timer {
	struct rtw_io io;
	struct rtw_loop *loop;
	void (*fn)(void *arg);
	void *arg;
};

/* Creates the timerfd and registers it; the timer starts stopped. */
int rtw_timer_init(struct rtw_loop *l, struct rtw_timer *t, void (*fn)(void *arg), void *arg) RTW_WUR;
/* (Re)arms: first expiry after ms (0: at the next pass), then every
 * interval_ms when that is not 0. */
int rtw_timer_start(struct rtw_timer *t, uint64_t ms, uint64_t interval_ms) RTW_WUR;
void rtw_timer_stop(struct rtw_timer *t);
/* Unregisters and closes the timerfd; t may be freed after the pass. A
 * no-op on a timer that was never initialised (zeroed) or is closed. */
void rtw_timer_close(struct rtw_timer *t);

/* Signals through a signalfd: blocks them in the calling thread (so they
 * no longer interrupt it) and calls fn(arg, signo) from the loop, once per
 * signal received. */
struct rtw_signal {
	struct rtw_io io;
	struct rtw_loop *loop;
	void (*fn)(void *arg, int signo);
	void *arg;
};

int rtw_signal_init(struct rtw_loop *l, struct rtw_signal *s, const sigset_t *set, void (*fn)(void *arg, int signo),
		    void *arg) RTW_WUR;
/* Unregisters and closes the signalfd (the signals stay blocked). A no-op
 * on a zeroed or closed one. */
void rtw_signal_close(struct rtw_signal *s);

#endif
