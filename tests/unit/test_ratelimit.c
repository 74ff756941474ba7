/*
 * test_ratelimit.c: unit tests of lib/ratelimit.c: burst, refill,
 * the wait it reports, independent keys, recycling under a flood of keys,
 * disabled limits, and many threads on one bucket (cmocka). Pure: the
 * tests pass the time.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>

#include "ratelimit.h"

static void test_burst_then_refused_then_refill(void **state)
{
	struct rtw_rl *rl = rtw_rl_new(1, 3, 1024, 42);
	(void)state;
	assert_non_null(rl);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rtw_rl_take(rl, "alice", "s1", 1000), 0);
	uint64_t wait = rtw_rl_take(rl, "alice", "s1", 1000);
	assert_true(wait > 0 && wait <= 1000);
	/* a refused take costs nothing: still due after the same wait */
	assert_int_equal(rtw_rl_take(rl, "alice", "s1", 1000), wait);
	assert_true(rtw_rl_take(rl, "alice", "s1", 1500) > 0);
	assert_int_equal(rtw_rl_take(rl, "alice", "s1", 2000), 0);
	assert_true(rtw_rl_take(rl, "alice", "s1", 2000) > 0);
	/* a long pause refills up to the burst, no more */
	for (int i = 0; i < 3; i++)
		assert_int_equal(rtw_rl_take(rl, "alice", "s1", 100000), 0);
	assert_true(rtw_rl_take(rl, "alice", "s1", 100000) > 0);
	rtw_rl_free(rl);
}

static void test_wait_is_time_to_next_token(void **state)
{
	struct rtw_rl *rl = rtw_rl_new(4, 1, 64, 1);
	(void)state;
	assert_int_equal(rtw_rl_take(rl, "a", "s", 0), 0);
	assert_int_equal(rtw_rl_take(rl, "a", "s", 0), 250);
	assert_int_equal(rtw_rl_take(rl, "a", "s", 100), 150);
	assert_int_equal(rtw_rl_take(rl, "a", "s", 250), 0);
	rtw_rl_free(rl);
}

static void test_keys_are_independent(void **state)
{
	struct rtw_rl *rl = rtw_rl_new(1, 2, 1024, 7);
	(void)state;
	assert_int_equal(rtw_rl_take(rl, "alice", "s1", 0), 0);
	assert_int_equal(rtw_rl_take(rl, "alice", "s1", 0), 0);
	assert_true(rtw_rl_take(rl, "alice", "s1", 0) > 0);
	/* another author, another stream, and no confusion of the separator */
	assert_int_equal(rtw_rl_take(rl, "bob", "s1", 0), 0);
	assert_int_equal(rtw_rl_take(rl, "alice", "s2", 0), 0);
	assert_int_equal(rtw_rl_take(rl, "alices", "1", 0), 0);
	assert_int_equal(rtw_rl_take(rl, "alice", "s", 0), 0);
	rtw_rl_free(rl);
}

static void test_flood_of_keys_stays_bounded_and_never_refuses_others(void **state)
{
	/* 64 buckets; 100,000 distinct authors. Memory is fixed by design;
	 * what matters: fresh keys are always allowed (a recycled bucket
	 * restarts full), and the hot key, used constantly, stays limited. */
	struct rtw_rl *rl = rtw_rl_new(1, 2, 64, 99);
	char id[32];
	int refused_hot = 0;
	(void)state;
	for (int i = 0; i < 100000; i++) {
		snprintf(id, sizeof(id), "attacker-%d", i);
		assert_int_equal(rtw_rl_take(rl, id, "s", 5000), 0);
		if (i % 1000 == 0 && rtw_rl_take(rl, "victim", "s", 5000) > 0)
			refused_hot++;
	}
	/* the victim's bucket may have been recycled (forgiven), never made worse */
	assert_true(refused_hot <= 100);
	rtw_rl_free(rl);
}

static void test_disabled(void **state)
{
	struct rtw_rl *rl = rtw_rl_new(0, 1, 8, 0);
	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_int_equal(rtw_rl_take(rl, "a", "s", 0), 0);
	rtw_rl_free(rl);
}

struct th_arg {
	struct rtw_rl *rl;
	int allowed;
};

static void *hammer(void *p)
{
	struct th_arg *a = p;
	for (int i = 0; i < 10000; i++)
		if (rtw_rl_take(a->rl, "shared", "s", 1000) == 0)
			a->allowed++;
	return NULL;
}

static void test_threads_share_one_bucket_exactly(void **state)
{
	struct rtw_rl *rl = rtw_rl_new(1, 500, 1024, 3);
	pthread_t t[4];
	struct th_arg a[4];
	int total = 0;
	(void)state;
	for (int i = 0; i < 4; i++) {
		a[i].rl = rl;
		a[i].allowed = 0;
		assert_int_equal(pthread_create(&t[i], NULL, hammer, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		total += a[i].allowed;
	}
	assert_int_equal(total, 500); /* the burst, not one more (time stands still) */
	rtw_rl_free(rl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_burst_then_refused_then_refill),
	    cmocka_unit_test(test_wait_is_time_to_next_token),
	    cmocka_unit_test(test_keys_are_independent),
	    cmocka_unit_test(test_flood_of_keys_stays_bounded_and_never_refuses_others),
	    cmocka_unit_test(test_disabled),
	    cmocka_unit_test(test_threads_share_one_bucket_exactly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
