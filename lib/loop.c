/*
 * loop.c: owns the epoll loop shared by rtw-sse and rtw-webhookd, its
 * pass hooks, the deferred release of retired sources, and the timerfd
 * and signalfd sources. Knows nothing about what a source is for; never
 * allocates. The phase order is documented in loop.h.
 */
#include "config.h"
#include "loop.h"

#include <errno.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define LOOP_EVENTS 256

int rtw_loop_init(struct rtw_loop *l)
{
	memset(l, 0, sizeof(*l));
	l->now_ms = rtw_now_ms();
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	return l->epfd < 0 ? RTW_ERROR : RTW_OK;
}

static void loop__release(struct rtw_loop *l)
{
	while (l->retired) {
		struct rtw_io *io = l->retired;
		l->retired = io->next_retired;
		io->next_retired = NULL;
		if (io->release)
			io->release(io);
	}
}

void rtw_loop_close(struct rtw_loop *l)
{
	loop__release(l);
	if (l->epfd >= 0)
		close(l->epfd);
	l->epfd = -1;
	l->hooks = NULL;
}

int rtw_loop_add(struct rtw_loop *l, struct rtw_io *io, int fd, uint32_t events, rtw_io_fn fn, void *arg)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	io->fd = fd;
	io->events = events;
	io->fn = fn;
	io->arg = arg;
	io->retired = false;
	io->release = NULL;
	io->next_retired = NULL;
	/* del_pass is kept: events of an earlier registration of io may still
	 * be in this pass's batch */
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		io->registered = false;
		return RTW_ERROR;
	}
	io->registered = true;
	return RTW_OK;
}

int rtw_loop_mod(struct rtw_loop *l, struct rtw_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	if (!io->registered) {
		errno = ENOENT;
		return RTW_ERROR;
	}
	if (io->events == events)
		return RTW_OK;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return RTW_ERROR;
	io->events = events;
	return RTW_OK;
}

void rtw_loop_del(struct rtw_loop *l, struct rtw_io *io)
{
	if (!io->registered)
		return;
	/* ENOENT/EBADF when the fd was closed first: nothing left to undo */
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->registered = false;
	io->del_pass = l->pass;
}

void rtw_loop_retire(struct rtw_loop *l, struct rtw_io *io, void (*release)(struct rtw_io *io))
{
	rtw_loop_del(l, io);
	if (io->retired)
		return;
	io->retired = true;
	io->release = release;
	io->next_retired = l->retired;
	l->retired = io;
}

void rtw_loop_hook_add(struct rtw_loop *l, struct rtw_hook *h, void (*fn)(void *arg), void *arg)
{
	struct rtw_hook **p = &l->hooks;

	h->fn = fn;
	h->arg = arg;
	h->next = NULL;
	h->added = true;
	while (*p)
		p = &(*p)->next;
	*p = h;
}

void rtw_loop_hook_del(struct rtw_loop *l, struct rtw_hook *h)
{
	struct rtw_hook **p = &l->hooks;

	if (!h->added)
		return;
	while (*p && *p != h)
		p = &(*p)->next;
	if (*p)
		*p = h->next;
	/* h->next is kept, so a pass walking the hooks from h goes on */
	h->added = false;
}

int rtw_loop_run_once(struct rtw_loop *l, int timeout_ms)
{
	struct epoll_event evs[LOOP_EVENTS];
	int n = epoll_wait(l->epfd, evs, LOOP_EVENTS, timeout_ms);

	if (n < 0 && errno != EINTR)
		return RTW_ERROR;
	l->pass++;
	l->in_pass = true;
	l->now_ms = rtw_now_ms();
	for (int i = 0; i < n; i++) {
		struct rtw_io *io = evs[i].data.ptr;
		/* removed earlier in this pass (and maybe added again: then this
		 * event belongs to the old registration) */
		if (!io->registered || io->del_pass == l->pass)
			continue;
		io->fn(io->arg, evs[i].events);
	}
	for (struct rtw_hook *h = l->hooks; h; h = h->next)
		if (h->added)
			h->fn(h->arg);
	loop__release(l);
	l->in_pass = false;
	return RTW_OK;
}

int rtw_loop_run(struct rtw_loop *l)
{
	while (!l->stopping)
		if (rtw_loop_run_once(l, -1) != RTW_OK)
			return RTW_ERROR;
	return RTW_OK;
}

void rtw_loop_stop(struct rtw_loop *l)
{
	l->stopping = true;
}

/* Registers an fd the source owns (a timerfd, a signalfd) for reading;
 * closes it when that fails, keeping epoll's errno. */
static int loop__add_own(struct rtw_loop *l, struct rtw_io *io, int fd, rtw_io_fn fn, void *arg)
{
	if (rtw_loop_add(l, io, fd, EPOLLIN, fn, arg) != RTW_OK) {
		int e = errno;
		close(fd);
		errno = e;
		return RTW_ERROR;
	}
	return RTW_OK;
}

/* Undoes loop__add_own; *loop is NULL once closed (or never opened). */
static void loop__close_own(struct rtw_loop **loop, struct rtw_io *io)
{
	if (*loop == NULL)
		return;
	rtw_loop_del(*loop, io);
	close(io->fd);
	io->fd = -1;
	*loop = NULL;
}

static void timer__io(void *arg, uint32_t events)
{
	struct rtw_timer *t = arg;
	uint64_t expirations;

	RTW_UNUSED(events);
	/* EAGAIN: stopped or re-armed since epoll saw it expire (stale) */
	if (read(t->io.fd, &expirations, sizeof(expirations)) != (ssize_t)sizeof(expirations))
		return;
	t->fn(t->arg);
}

int rtw_timer_init(struct rtw_loop *l, struct rtw_timer *t, void (*fn)(void *arg), void *arg)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	t->loop = NULL;
	t->fn = fn;
	t->arg = arg;
	if (fd < 0)
		return RTW_ERROR;
	if (loop__add_own(l, &t->io, fd, timer__io, t) != RTW_OK)
		return RTW_ERROR;
	t->loop = l;
	return RTW_OK;
}

static void timer__spec(struct timespec *ts, uint64_t ms)
{
	ts->tv_sec = (time_t)(ms / 1000);
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

int rtw_timer_start(struct rtw_timer *t, uint64_t ms, uint64_t interval_ms)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	timer__spec(&its.it_value, ms);
	if (ms == 0)
		its.it_value.tv_nsec = 1; /* 0 would disarm */
	timer__spec(&its.it_interval, interval_ms);
	return timerfd_settime(t->io.fd, 0, &its, NULL) < 0 ? RTW_ERROR : RTW_OK;
}

void rtw_timer_stop(struct rtw_timer *t)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (t->loop)
		(void)timerfd_settime(t->io.fd, 0, &its, NULL); /* cannot fail on a valid timerfd */
}

void rtw_timer_close(struct rtw_timer *t)
{
	loop__close_own(&t->loop, &t->io);
}

static void signal__io(void *arg, uint32_t events)
{
	struct rtw_signal *s = arg;
	struct signalfd_siginfo si;

	RTW_UNUSED(events);
	/* the callback may close s: look at s->loop before each read */
	while (s->loop && read(s->io.fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		s->fn(s->arg, (int)si.ssi_signo);
}

int rtw_signal_init(struct rtw_loop *l, struct rtw_signal *s, const sigset_t *set, void (*fn)(void *arg, int signo),
		    void *arg)
{
	int fd;

	s->loop = NULL;
	s->fn = fn;
	s->arg = arg;
	if (sigprocmask(SIG_BLOCK, set, NULL) < 0)
		return RTW_ERROR;
	fd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return RTW_ERROR;
	if (loop__add_own(l, &s->io, fd, signal__io, s) != RTW_OK)
		return RTW_ERROR;
	s->loop = l;
	return RTW_OK;
}

void rtw_signal_close(struct rtw_signal *s)
{
	loop__close_own(&s->loop, &s->io);
}
