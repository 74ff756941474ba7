/*
 * test_loop.c: unit tests of lib/loop.c on real pipes, timerfds and
 * signalfds: dispatch, the phase order (dispatch, hooks, release),
 * retire-after-pass, stale events of sources removed during a pass,
 * timers stopped during a pass, signals, and stop.
 */
#include "config.h"
#include "loop.h"

#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* What happened, in order: one letter per event. */
struct trace {
	char log[64];
	size_t n;
};

static void trace_add(struct trace *t, char c)
{
	if (t->n + 1 < sizeof(t->log))
		t->log[t->n++] = c;
	t->log[t->n] = '\0';
}

struct src {
	struct rtw_io io;
	int fds[2];
	char name;
	struct trace *t;
	struct rtw_loop *l;
	struct src *other; /* retired or removed by this one's callback */
	int calls;
	uint32_t events;
	bool released;
};

static void src_open(struct src *s, struct rtw_loop *l, struct trace *t, char name)
{
	memset(s, 0, sizeof(*s));
	assert_int_equal(pipe(s->fds), 0);
	s->l = l;
	s->t = t;
	s->name = name;
}

static void src_close(struct src *s)
{
	close(s->fds[0]);
	close(s->fds[1]);
}

static void src_poke(struct src *s)
{
	assert_int_equal(write(s->fds[1], "x", 1), 1);
}

static void src_read_cb(void *arg, uint32_t events)
{
	struct src *s = arg;

	s->calls++;
	s->events = events;
	trace_add(s->t, s->name);
}

static void src_release(struct rtw_io *io)
{
	struct src *s = (struct src *)((char *)io - offsetof(struct src, io));

	s->released = true;
	trace_add(s->t, 'R');
}

static void src_retire_other_cb(void *arg, uint32_t events)
{
	struct src *s = arg;

	src_read_cb(arg, events);
	rtw_loop_retire(s->l, &s->other->io, src_release);
	rtw_loop_retire(s->l, &s->io, src_release);
}

static void hook_cb(void *arg)
{
	trace_add(arg, 'H');
}

/* Two sources that know each other, both made ready before the pass, so
 * that one pass holds both events. */
static void pair_ready(struct rtw_loop *l, struct trace *t, struct src *a, struct src *b, rtw_io_fn cb)
{
	src_open(a, l, t, 'a');
	src_open(b, l, t, 'b');
	a->other = b;
	b->other = a;
	assert_int_equal(rtw_loop_add(l, &a->io, a->fds[0], EPOLLIN, cb, a), RTW_OK);
	assert_int_equal(rtw_loop_add(l, &b->io, b->fds[0], EPOLLIN, cb, b), RTW_OK);
	src_poke(a);
	src_poke(b);
	struct pollfd pf[2] = {{a->fds[0], POLLIN, 0}, {b->fds[0], POLLIN, 0}};
	assert_int_equal(poll(pf, 2, -1), 2);
}

static void test_dispatch_and_mod(void **state)
{
	struct rtw_loop l;
	struct trace t = {{0}, 0};
	struct src a;

	assert_int_equal(rtw_loop_init(&l), RTW_OK);
	src_open(&a, &l, &t, 'a');
	assert_int_equal(rtw_loop_add(&l, &a.io, a.fds[0], EPOLLIN, src_read_cb, &a), RTW_OK);
	/* nothing ready: a pass with a zero timeout dispatches nothing */
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(a.calls, 0);
	src_poke(&a);
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	assert_int_equal(a.calls, 1);
	assert_true(a.events & EPOLLIN);
	/* level-triggered: still unread, so ready again */
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	assert_int_equal(a.calls, 2);
	/* the write end of the pipe is writable */
	rtw_loop_del(&l, &a.io);
	assert_false(a.io.registered);
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(a.calls, 2);
	assert_int_equal(rtw_loop_add(&l, &a.io, a.fds[1], 0, src_read_cb, &a), RTW_OK);
	assert_int_equal(rtw_loop_mod(&l, &a.io, EPOLLOUT), RTW_OK);
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	assert_int_equal(a.calls, 3);
	assert_true(a.events & EPOLLOUT);
	rtw_loop_del(&l, &a.io);
	assert_int_equal(rtw_loop_mod(&l, &a.io, EPOLLIN), RTW_ERROR);
	src_close(&a);
	rtw_loop_close(&l);
}

/* Two ready sources whose callbacks each retire both: whichever runs
 * first, the other never sees its event, and both are released after the
 * hooks. */
static void test_retire_after_pass(void **state)
{
	struct rtw_loop l;
	struct trace t = {{0}, 0};
	struct src a, b;
	struct rtw_hook h1 = {0}, h2 = {0};

	assert_int_equal(rtw_loop_init(&l), RTW_OK);
	rtw_loop_hook_add(&l, &h1, hook_cb, &t);
	rtw_loop_hook_add(&l, &h2, hook_cb, &t);
	pair_ready(&l, &t, &a, &b, src_retire_other_cb);
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	assert_int_equal(a.calls + b.calls, 1);
	assert_true(a.released && b.released);
	/* dispatch, then the hooks in order, then the releases */
	assert_int_equal(t.n, 5);
	assert_true(t.log[0] == 'a' || t.log[0] == 'b');
	assert_string_equal(t.log + 1, "HHRR");
	/* retired sources stay out; hooks still run every pass */
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_string_equal(t.log + 1, "HHRRHH");
	rtw_loop_hook_del(&l, &h1);
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_string_equal(t.log + 1, "HHRRHHH");
	src_close(&a);
	src_close(&b);
	rtw_loop_close(&l);
}

/* A source removed and added again (on another fd) during a pass: the
 * event of its old registration in that pass is dropped; the new
 * registration's events come in later passes. */
static void src_readd_other_cb(void *arg, uint32_t events)
{
	struct src *s = arg;

	src_read_cb(arg, events);
	if (s->other) {
		struct src *o = s->other;
		rtw_loop_del(s->l, &o->io);
		assert_int_equal(rtw_loop_add(s->l, &o->io, o->fds[1], EPOLLOUT, src_read_cb, o), RTW_OK);
		s->other = NULL;
		o->other = NULL;
	}
}

static void test_stale_event_after_del(void **state)
{
	struct rtw_loop l;
	struct trace t = {{0}, 0};
	struct src a, b;

	assert_int_equal(rtw_loop_init(&l), RTW_OK);
	pair_ready(&l, &t, &a, &b, src_readd_other_cb);
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	/* one ran and moved the other, whose old event was dropped */
	assert_int_equal(a.calls + b.calls, 1);
	struct src *moved = a.calls ? &b : &a;
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	assert_int_equal(moved->calls, 1);
	assert_true(moved->events & EPOLLOUT);
	rtw_loop_del(&l, &a.io);
	rtw_loop_del(&l, &b.io);
	src_close(&a);
	src_close(&b);
	rtw_loop_close(&l);
}

struct tmr {
	struct rtw_timer timer;
	struct trace *t;
	int fired;
};

static void tmr_cb(void *arg)
{
	struct tmr *x = arg;

	x->fired++;
	trace_add(x->t, 'T');
}

struct stopper {
	struct src s;
	struct tmr *x;
};

static void stop_timer_cb(void *arg, uint32_t events)
{
	struct stopper *st = arg;

	src_read_cb(&st->s, events);
	rtw_timer_stop(&st->x->timer);
	rtw_loop_del(st->s.l, &st->s.io);
}

static void test_timer(void **state)
{
	struct rtw_loop l;
	struct trace t = {{0}, 0};
	struct tmr x = {.t = &t};
	struct stopper st;

	assert_int_equal(rtw_loop_init(&l), RTW_OK);
	assert_int_equal(rtw_timer_init(&l, &x.timer, tmr_cb, &x), RTW_OK);
	/* stopped at first: a pass does not fire it */
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(x.fired, 0);
	/* 0 ms: fires at the next pass, once */
	assert_int_equal(rtw_timer_start(&x.timer, 0, 0), RTW_OK);
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	assert_int_equal(x.fired, 1);
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(x.fired, 1);
	/* periodic: fires again and again until stopped */
	assert_int_equal(rtw_timer_start(&x.timer, 1, 1), RTW_OK);
	while (x.fired < 4)
		assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	rtw_timer_stop(&x.timer);
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(x.fired, 4);

	/* a timer stopped during the pass that saw it expire does not fire:
	 * the pipe is made ready first, then the timer expires, and the
	 * pipe's callback stops the timer */
	src_open(&st.s, &l, &t, 'p');
	st.x = &x;
	assert_int_equal(rtw_loop_add(&l, &st.s.io, st.s.fds[0], EPOLLIN, stop_timer_cb, &st), RTW_OK);
	src_poke(&st.s);
	assert_int_equal(rtw_timer_start(&x.timer, 0, 0), RTW_OK);
	struct pollfd pf = {x.timer.io.fd, POLLIN, 0};
	assert_int_equal(poll(&pf, 1, -1), 1);
	t.n = 0;
	assert_int_equal(rtw_loop_run_once(&l, -1), RTW_OK);
	if (st.s.calls == 1 && x.fired == 4) {
		/* both were in the batch, the pipe first: the timer's expiry was
		 * stale by the time its event came */
		assert_string_equal(t.log, "p");
	} else {
		/* the kernel listed the timer first: it fired, then was stopped */
		assert_string_equal(t.log, "Tp");
	}
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(st.s.calls, 1);
	assert_true(x.fired <= 5);
	int fired = x.fired;
	assert_int_equal(rtw_loop_run_once(&l, 0), RTW_OK);
	assert_int_equal(x.fired, fired);
	src_close(&st.s);
	rtw_timer_close(&x.timer);
	rtw_timer_close(&x.timer); /* idempotent */
	rtw_loop_close(&l);
}

struct sig {
	struct rtw_signal s;
	struct rtw_loop *l;
	int got[4];
	int n;
};

static void sig_cb(void *arg, int signo)
{
	struct sig *x = arg;

	if (x->n < 4)
		x->got[x->n++] = signo;
	rtw_loop_stop(x->l);
}

static void test_signal_and_stop(void **state)
{
	struct rtw_loop l;
	struct sig x = {.n = 0};
	sigset_t set;

	assert_int_equal(rtw_loop_init(&l), RTW_OK);
	x.l = &l;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	assert_int_equal(rtw_signal_init(&l, &x.s, &set, sig_cb, &x), RTW_OK);
	/* blocked now: raising it only makes the signalfd readable */
	assert_int_equal(raise(SIGUSR2), 0);
	assert_int_equal(rtw_loop_run(&l), RTW_OK);
	assert_int_equal(x.n, 1);
	assert_int_equal(x.got[0], SIGUSR2);
	rtw_signal_close(&x.s);
	rtw_signal_close(&x.s);
	rtw_loop_close(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dispatch_and_mod),	  cmocka_unit_test(test_retire_after_pass),
	    cmocka_unit_test(test_stale_event_after_del), cmocka_unit_test(test_timer),
	    cmocka_unit_test(test_signal_and_stop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
