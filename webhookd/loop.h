/*
 * loop.h: rtw-webhookd's one event loop: epoll over registered sources,
 * each a struct whk_io with a callback. A source removed during a pass is
 * marked dead so its pending events in the same pass are dropped, and its
 * memory is released only after the pass (never inside its own callback).
 * Single-threaded; the daemon's main thread runs it.
 */
#ifndef WHK_LOOP_H
#define WHK_LOOP_H

#include "rtw.h"

#include <stdint.h>

struct whk_io;
typedef void (*whk_io_fn)(void *arg, uint32_t events);

struct whk_io {
	int fd;
	uint32_t events;
	bool registered;
	bool dead;
	whk_io_fn fn;
	void *arg;
	void (*release)(struct whk_io *io); /* called after the pass; may be NULL */
	struct whk_io *next_dead;
};

struct whk_loop {
	int epfd;
	struct whk_io *dead;
};

int whk_loop_init(struct whk_loop *l) RTW_WUR;
void whk_loop_close(struct whk_loop *l);

/* Registers io (borrowed: must live until removed) for events on fd. */
int whk_loop_add(struct whk_loop *l, struct whk_io *io, int fd, uint32_t events, whk_io_fn fn, void *arg) RTW_WUR;
/* Changes the events of a registered io. */
int whk_loop_mod(struct whk_loop *l, struct whk_io *io, uint32_t events) RTW_WUR;
/* Unregisters io now (the fd must still be open, or be closed right
 * after). Does not free io. */
void whk_loop_del(struct whk_loop *l, struct whk_io *io);
/* Unregisters io and parks it: io->release(io) runs after the current
 * pass, when no stale event can reach it. */
void whk_loop_retire(struct whk_loop *l, struct whk_io *io);

/* Waits up to timeout_ms (-1: forever) and dispatches one batch. */
int whk_loop_run_once(struct whk_loop *l, int timeout_ms) RTW_WUR;

/* A timerfd source: arms (or disarms with ms == 0) a one-shot or, with
 * interval_ms > 0, a periodic timer. */
int whk_timer_arm(int tfd, uint64_t ms, uint64_t interval_ms) RTW_WUR;

#endif
