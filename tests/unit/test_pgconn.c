/*
 * test_pgconn.c: unit tests of lib/pgconn.c. The pure parts (the table of
 * legal state moves, the backoff policy, one-line errors) always run; the
 * rest runs against the real throwaway PostgreSQL whose connection string
 * tests/unit/run-pgconn.sh passes in RTW_TEST_PGDSN: connect, query,
 * statement errors, LISTEN/NOTIFY, a backend terminated by the server
 * (idle and in the middle of a query) and the reconnect, a refused
 * connect, close.
 */
#include "config.h"
#include "pgconn.h"
#include "pgutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_legal_table(void **state)
{
	enum { C = RTW_PGCONN_CLOSED, G = RTW_PGCONN_CONNECTING, R = RTW_PGCONN_READY, B = RTW_PGCONN_BUSY };
	enum { K = RTW_PGCONN_BACKOFF };
	/* every legal move, and nothing else */
	static const int legal[][2] = {{C, G}, {G, R}, {G, K}, {G, C}, {R, B}, {R, K},
				       {R, C}, {B, R}, {B, K}, {B, C}, {K, G}, {K, C}};
	int n = 0;

	for (int from = 0; from < RTW_PGCONN_NSTATES; from++) {
		for (int to = 0; to < RTW_PGCONN_NSTATES; to++) {
			bool want = false;
			for (size_t i = 0; i < RTW_ARRAY_LEN(legal); i++)
				want = want || (legal[i][0] == from && legal[i][1] == to);
			assert_int_equal(rtw_pgconn_legal(from, to), want);
			n += want;
		}
	}
	assert_int_equal(n, (int)RTW_ARRAY_LEN(legal));
	assert_false(rtw_pgconn_legal(RTW_PGCONN_NSTATES, RTW_PGCONN_CLOSED));
	assert_string_equal(rtw_pgconn_state_name(RTW_PGCONN_BUSY), "busy");
	assert_string_equal(rtw_pgconn_state_name(RTW_PGCONN_BACKOFF), "backoff");
}

static void test_backoff(void **state)
{
	static const uint64_t want[] = {100, 200, 400, 800, 1600, 3200, 5000, 5000};
	uint64_t b = 0;

	for (size_t i = 0; i < RTW_ARRAY_LEN(want); i++) {
		b = rtw_pgconn_backoff_next(b);
		assert_int_equal(b, want[i]);
	}
	assert_int_equal(rtw_pgconn_backoff_jitter(100, 0), 100);
	assert_int_equal(rtw_pgconn_backoff_jitter(100, UINT32_MAX), 51);
	assert_int_equal(rtw_pgconn_backoff_jitter(100, 1u << 31), 75);
	for (uint32_t r = 0; r < 64; r++) {
		uint64_t d = rtw_pgconn_backoff_jitter(5000, r * 67108863u);
		assert_true(d >= 2500 && d <= 5000);
	}
}

static void test_oneline(void **state)
{
	char out[32];

	rtw_pgconn_oneline("FATAL:  terminating\nDETAIL:\tx\n\n", out, sizeof(out));
	assert_string_equal(out, "FATAL: terminating DETAIL: x");
	rtw_pgconn_oneline("\n  a \r\n b  ", out, sizeof(out));
	assert_string_equal(out, "a b");
	rtw_pgconn_oneline(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	rtw_pgconn_oneline("0123456789012345678901234567890123456789", out, 8);
	assert_string_equal(out, "0123456");
}

/* What the callbacks saw. */
struct seen {
	struct rtw_loop loop;
	struct rtw_pgconn pc;
	struct rtw_timer guard;
	bool timed_out;
	int ready, results, done, lost, notifies;
	int errors;	/* results with a statement error */
	PGresult *kept; /* taken by on_result when keep is set */
	bool keep;
	char value[64];
	char lost_why[256];
	char channel[64], payload[64];
	int closes_on_lost; /* close from on_lost this many times */
};

static void on_ready(struct rtw_pgconn *pc, void *arg)
{
	struct seen *s = arg;

	assert_int_equal(rtw_pgconn_state(pc), RTW_PGCONN_READY);
	assert_non_null(rtw_pgconn_pg(pc));
	s->ready++;
}

static void on_result(struct rtw_pgconn *pc, PGresult *res, void *arg)
{
	struct seen *s = arg;

	assert_int_equal(rtw_pgconn_state(pc), RTW_PGCONN_BUSY);
	s->results++;
	if (PQresultStatus(res) == PGRES_FATAL_ERROR)
		s->errors++;
	else if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
		snprintf(s->value, sizeof(s->value), "%s", PQgetvalue(res, 0, 0));
	if (s->keep) {
		s->kept = rtw_pgconn_take_result(pc);
		assert_ptr_equal(s->kept, res);
		assert_null(rtw_pgconn_take_result(pc)); /* once */
	}
}

static void on_done(struct rtw_pgconn *pc, void *arg)
{
	struct seen *s = arg;

	assert_int_equal(rtw_pgconn_state(pc), RTW_PGCONN_READY);
	s->done++;
}

static void on_notify(struct rtw_pgconn *pc, const char *channel, const char *payload, void *arg)
{
	struct seen *s = arg;

	s->notifies++;
	snprintf(s->channel, sizeof(s->channel), "%s", channel);
	snprintf(s->payload, sizeof(s->payload), "%s", payload);
}

static void on_lost(struct rtw_pgconn *pc, const char *why, void *arg)
{
	struct seen *s = arg;

	assert_int_equal(rtw_pgconn_state(pc), RTW_PGCONN_BACKOFF);
	assert_null(rtw_pgconn_pg(pc));
	s->lost++;
	snprintf(s->lost_why, sizeof(s->lost_why), "%s", why);
	if (s->closes_on_lost > 0) {
		s->closes_on_lost--;
		rtw_pgconn_close(pc);
	}
}

static const struct rtw_pgconn_callbacks cbs = {on_ready, on_result, on_done, on_notify, on_lost};

static void guard_cb(void *arg)
{
	((struct seen *)arg)->timed_out = true;
}

/* Runs passes until *counter reaches want; fails on the hang guard (it is
 * a guard against a hang, not a timing assertion). */
static void run_until(struct seen *s, const int *counter, int want)
{
	s->timed_out = false;
	assert_int_equal(rtw_timer_start(&s->guard, 30000, 0), RTW_OK);
	while (*counter < want && !s->timed_out)
		assert_int_equal(rtw_loop_run_once(&s->loop, -1), RTW_OK);
	rtw_timer_stop(&s->guard);
	assert_false(s->timed_out);
	assert_int_equal(*counter, want);
}

static const char *dsn(void)
{
	return getenv("RTW_TEST_PGDSN");
}

static int setup_seen(void **state)
{
	struct seen *s = calloc(1, sizeof(*s));

	if (s == NULL || rtw_loop_init(&s->loop) != RTW_OK ||
	    rtw_timer_init(&s->loop, &s->guard, guard_cb, s) != RTW_OK)
		return -1;
	*state = s;
	return 0;
}

static int teardown_seen(void **state)
{
	struct seen *s = *state;

	rtw_pgconn_free(&s->pc);
	rtw_timer_close(&s->guard);
	rtw_loop_close(&s->loop);
	free(s);
	return 0;
}

/* A blocking side connection that plays the rest of the world. */
static PGconn *side(void)
{
	char err[256];
	PGconn *c = pgu_connect(dsn(), "test_pgconn", err, sizeof(err));

	if (c == NULL)
		fail_msg("side connection: %s", err);
	return c;
}

static void side_exec(const char *sql)
{
	PGconn *c = side();
	PGresult *r = PQexec(c, sql);

	assert_true(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
}

static void side_terminate(int pid)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", pid);
	side_exec(sql);
}

static void test_query_notify_terminate(void **state)
{
	struct seen *s = *state;
	const char *const params[] = {"41"};

	if (dsn() == NULL)
		skip();
	assert_int_equal(rtw_pgconn_init(&s->pc, &s->loop, dsn(), "test_pgconn", &cbs, s), RTW_OK);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_CLOSED);
	assert_null(rtw_pgconn_pg(&s->pc));
	rtw_pgconn_start(&s->pc);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_CONNECTING);
	/* nothing may be sent before the connection is up */
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "SELECT 1"), RTW_AGAIN);
	run_until(s, &s->ready, 1);

	/* a query with a parameter: one result, then done */
	assert_int_equal(rtw_pgconn_send_params(&s->pc, "SELECT $1::int + 1", 1, params), RTW_OK);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_BUSY);
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "SELECT 2"), RTW_AGAIN); /* one at a time */
	run_until(s, &s->done, 1);
	assert_int_equal(s->results, 1);
	assert_string_equal(s->value, "42");

	/* a statement error is a result; the connection stays */
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "SELECT 1/0"), RTW_OK);
	run_until(s, &s->done, 2);
	assert_int_equal(s->errors, 1);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_READY);

	/* a result taken in on_result stays valid after on_done */
	s->keep = true;
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "SELECT 'kept'"), RTW_OK);
	run_until(s, &s->done, 3);
	s->keep = false;
	assert_non_null(s->kept);
	assert_string_equal(PQgetvalue(s->kept, 0, 0), "kept");
	PQclear(s->kept);
	assert_null(rtw_pgconn_take_result(&s->pc));

	/* prepare and execute */
	assert_int_equal(rtw_pgconn_send_prepare(&s->pc, "t_echo", "SELECT $1::text", 1), RTW_OK);
	run_until(s, &s->done, 4);
	assert_int_equal(rtw_pgconn_send_prepared(&s->pc, "t_echo", 1, params), RTW_OK);
	run_until(s, &s->done, 5);
	assert_string_equal(s->value, "41");

	/* LISTEN, then a NOTIFY from elsewhere */
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "LISTEN t_chan"), RTW_OK);
	run_until(s, &s->done, 6);
	side_exec("NOTIFY t_chan, 'hello'");
	run_until(s, &s->notifies, 1);
	assert_string_equal(s->channel, "t_chan");
	assert_string_equal(s->payload, "hello");

	/* the server terminates the idle backend: lost, then connected again */
	side_terminate(PQbackendPID(rtw_pgconn_pg(&s->pc)));
	run_until(s, &s->lost, 1);
	assert_true(s->lost_why[0] != '\0');
	assert_null(strchr(s->lost_why, '\n'));
	assert_string_equal(rtw_pgconn_error(&s->pc), s->lost_why);
	run_until(s, &s->ready, 2);
	assert_int_equal(s->pc.reconnects, 1);

	/* terminated in the middle of a query: on_lost, not an error result */
	int results = s->results;
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "SELECT pg_sleep(60)"), RTW_OK);
	side_terminate(PQbackendPID(rtw_pgconn_pg(&s->pc)));
	run_until(s, &s->lost, 2);
	assert_int_equal(s->results, results);
	assert_int_equal(s->done, 6);
	run_until(s, &s->ready, 3);
	assert_int_equal(s->pc.reconnects, 2);

	rtw_pgconn_close(&s->pc);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_CLOSED);
	assert_int_equal(rtw_pgconn_send_query(&s->pc, "SELECT 1"), RTW_AGAIN);
}

/* Nobody listens on the port: the connect fails, on_lost says why, and
 * the reconnect is scheduled; close from on_lost ends it all. */
static void test_refused(void **state)
{
	struct seen *s = *state;
	char bad[512];

	if (dsn() == NULL)
		skip();
	/* the cluster's own string, pointed at a port nothing listens on */
	snprintf(bad, sizeof(bad), "%s port=1 connect_timeout=5", dsn());
	assert_int_equal(rtw_pgconn_init(&s->pc, &s->loop, bad, "test_pgconn", &cbs, s), RTW_OK);
	rtw_pgconn_start(&s->pc);
	run_until(s, &s->lost, 1);
	assert_int_equal(s->ready, 0);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_BACKOFF);
	assert_true(s->lost_why[0] != '\0');
	assert_null(strchr(s->lost_why, '\n'));
	/* the backoff timer brings a second attempt, which fails the same way */
	s->closes_on_lost = 1;
	run_until(s, &s->lost, 2);
	assert_int_equal(rtw_pgconn_state(&s->pc), RTW_PGCONN_CLOSED);
	assert_int_equal(s->pc.backoff_ms, 200);
	/* closed: nothing more happens */
	assert_int_equal(rtw_loop_run_once(&s->loop, 0), RTW_OK);
	assert_int_equal(s->lost, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_legal_table),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_oneline),
	    cmocka_unit_test_setup_teardown(test_query_notify_terminate, setup_seen, teardown_seen),
	    cmocka_unit_test_setup_teardown(test_refused, setup_seen, teardown_seen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
