/*
 * loop.c: owns rtw-webhookd's epoll loop and its deferred release of
 * retired sources. Phase order of one pass: wait; dispatch every ready
 * source that is not dead; release the sources retired during the pass.
 */
#include "config.h"
#include "loop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

int whk_loop_init(struct whk_loop *l)
{
	l->dead = NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? RTW_ERROR : RTW_OK;
}

static void whk_loop__release(struct whk_loop *l)
{
	while (l->dead) {
		struct whk_io *io = l->dead;
		l->dead = io->next_dead;
		if (io->release)
			io->release(io);
	}
}

void whk_loop_close(struct whk_loop *l)
{
	whk_loop__release(l);
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
}

int whk_loop_add(struct whk_loop *l, struct whk_io *io, int fd, uint32_t events, whk_io_fn fn, void *arg)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	io->fd = fd;
	io->events = events;
	io->fn = fn;
	io->arg = arg;
	io->dead = false;
	io->next_dead = NULL;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return RTW_ERROR;
	io->registered = true;
	return RTW_OK;
}

int whk_loop_mod(struct whk_loop *l, struct whk_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	if (io->events == events)
		return RTW_OK;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return RTW_ERROR;
	io->events = events;
	return RTW_OK;
}

void whk_loop_del(struct whk_loop *l, struct whk_io *io)
{
	if (io->registered) {
		/* ENOENT/EBADF when the fd was already closed: nothing to undo */
		(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
		io->registered = false;
	}
}

void whk_loop_retire(struct whk_loop *l, struct whk_io *io)
{
	whk_loop_del(l, io);
	if (io->dead)
		return;
	io->dead = true;
	io->next_dead = l->dead;
	l->dead = io;
}

int whk_loop_run_once(struct whk_loop *l, int timeout_ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(l->epfd, evs, (int)RTW_ARRAY_LEN(evs), timeout_ms);

	if (n < 0)
		return errno == EINTR ? RTW_OK : RTW_ERROR;
	for (int i = 0; i < n; i++) {
		struct whk_io *io = evs[i].data.ptr;
		if (io->dead || !io->registered)
			continue;
		io->fn(io->arg, evs[i].events);
	}
	whk_loop__release(l);
	return RTW_OK;
}

int whk_timer_arm(int tfd, uint64_t ms, uint64_t interval_ms)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = (time_t)(ms / 1000);
	its.it_value.tv_nsec = (long)(ms % 1000) * 1000000L;
	its.it_interval.tv_sec = (time_t)(interval_ms / 1000);
	its.it_interval.tv_nsec = (long)(interval_ms % 1000) * 1000000L;
	return timerfd_settime(tfd, 0, &its, NULL) < 0 ? RTW_ERROR : RTW_OK;
}
