-- tests/pgtap/cookbook.sql: sql/005_sql_views.sql and every query of
-- doc/sql.md's cookbook, verbatim (tests/doc_sql.sh checks that each one
-- appears here), on a small committed stream "show-42". The rows are
-- committed first because the views show settled rows only, and rows of
-- the test's own transaction are not settled; they are deleted at the end.
\set QUIET on
SET client_min_messages = warning;
INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message, ts) VALUES
    ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'alice', NULL, '{"vote":"a"}', 3),
    ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'bob', NULL, '{"vote":"b"}', 7),
    ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'carol', NULL, '{"vote":"a"}', 12),
    ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'alice', NULL, '{"text":"hi"}', 14),
    ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'dave', NULL, '{"vote":"b"}', 15),
    ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'erin', NULL, '{"vote":"a"}', 25),
    ('show-42', 'private', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'alice', 'bob', '"psst"', 16),
    ('show-42', 'webhook', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'alice', 'alice', '{"status":"succeeded"}', 17);
INSERT INTO rtw_webhook_jobs (stream_id, widget_key, author_id, url, status, attempts, last_http_status,
                              last_error, last_duration_ms, finished_at) VALUES
    ('show-42', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'alice', 'https://api.example.com/x?token=secret',
     'succeeded', 1, 200, NULL, 100, now()),
    ('show-42', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'alice', 'https://api.example.com/y',
     'succeeded', 2, 200, NULL, 300, now()),
    ('show-42', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'bob', 'http://user:pw@Hooks.Example.org:8443/y',
     'failed', 5, 502, 'HTTP 502', NULL, now());

BEGIN;
SELECT plan(23);

SELECT has_view('rtw_broadcasts');
SELECT has_view('rtw_stream_stats');
SELECT has_view('rtw_webhook_outcomes');
SELECT has_index('rtw_messages', 'rtw_messages_created', ARRAY['created_at']);
SELECT has_index('rtw_webhook_jobs', 'rtw_webhook_jobs_created', ARRAY['created_at']);
SELECT has_role('rtw_reader');

-- The cookbook, verbatim.
SELECT results_eq($$SELECT id, author_id, ts, message
  FROM rtw_broadcasts
 WHERE stream_id = 'show-42'
 ORDER BY xid, id$$,
    $$SELECT id, author_id, ts, message FROM rtw_messages
       WHERE stream_id = 'show-42' AND type = 'broadcast' ORDER BY xid, id$$,
    'the replay holds every settled broadcast in stream order, nothing else');

SELECT results_eq($$SELECT floor(ts / 10) * 10 AS video_s, message->>'vote' AS option, count(*) AS votes,
       sum(count(*)) OVER (PARTITION BY message->>'vote' ORDER BY floor(ts / 10) * 10) AS running_total
  FROM rtw_broadcasts
 WHERE stream_id = 'show-42' AND widget_key = '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e'
   AND message ? 'vote'
 GROUP BY 1, 2
 ORDER BY 1, 2$$,
    $$VALUES (0::float8, 'a', 1::bigint, 1::numeric), (0, 'b', 1, 1), (10, 'a', 1, 2), (10, 'b', 1, 2),
             (20, 'a', 1, 3)$$,
    'poll tally by 10 s of video time, with running totals');

SELECT results_eq($$SELECT date_trunc('minute', created_at) AS minute, count(*) AS broadcasts
  FROM rtw_broadcasts
 WHERE stream_id = 'show-42' AND created_at >= now() - interval '1 hour'
 GROUP BY 1
 ORDER BY 1$$,
    $$SELECT date_trunc('minute', min(created_at)), 6::bigint FROM rtw_messages WHERE stream_id = 'show-42'$$,
    'broadcasts per minute (privates and webhook results not counted)');

SELECT results_eq($$SELECT date_trunc('minute', created_at) AS minute, count(*) AS broadcasts
  FROM rtw_broadcasts
 WHERE created_at >= now() - interval '1 hour'
 GROUP BY 1
 ORDER BY 1$$,
    $$SELECT date_trunc('minute', min(created_at)), 6::bigint FROM rtw_messages WHERE stream_id = 'show-42'$$,
    'broadcasts per minute over every stream');

SELECT results_eq($$SELECT author_id, count(*) AS broadcasts
  FROM rtw_broadcasts
 WHERE stream_id = 'show-42'
 GROUP BY author_id
 ORDER BY broadcasts DESC, author_id
 LIMIT 10$$,
    $$VALUES ('alice', 2::bigint), ('bob', 1), ('carol', 1), ('dave', 1), ('erin', 1)$$,
    'top authors of a stream');

SELECT results_eq($$SELECT host, status, count(*) AS jobs, round(avg(attempts), 2) AS avg_attempts,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY last_duration_ms) AS p95_ms
  FROM rtw_webhook_outcomes
 WHERE created_at >= now() - interval '1 day'
 GROUP BY host, status
 ORDER BY host, status$$,
    $$VALUES ('api.example.com', 'succeeded', 2::bigint, 1.50, 290::float8),
             ('hooks.example.org', 'failed', 1, 5.00, NULL)$$,
    'webhook outcomes per target host: only the host of the URL, never its path, query or user');

SELECT results_eq($$SELECT stream_id, broadcasts, privates, webhook_results, broadcast_authors, last_ts
  FROM rtw_stream_stats
 ORDER BY last_at DESC
 LIMIT 20$$,
    $$VALUES ('show-42', 6::bigint, 1::bigint, 1::bigint, 5::bigint, 25::float8)$$,
    'per-stream stats');

-- The indexes that serve them (forced: the planner would scan a table this small).
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    line text;
    plan text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN ' || q LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN plan;
END $f$;
SET LOCAL enable_seqscan = off;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM rtw_broadcasts
    WHERE stream_id = 'show-42' AND widget_key = '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e'$$),
    'rtw_messages_history', 'a widget''s broadcasts come from rtw_messages_history');
SELECT matches(pg_temp.plan_of($$SELECT author_id, count(*) FROM rtw_broadcasts WHERE stream_id = 'show-42'
    GROUP BY author_id$$), 'rtw_messages_(history|stream)', 'a stream''s broadcasts come from a stream index');
-- BRIN answers through a bitmap scan only
SET LOCAL enable_indexscan = off;
SELECT matches(pg_temp.plan_of($$SELECT count(*) FROM rtw_messages
    WHERE created_at >= now() - interval '1 hour'$$), 'rtw_messages_created',
    'a time window over every stream (and retention) can use the BRIN index');
RESET enable_indexscan;
RESET enable_seqscan;

-- Only settled rows: this transaction's own broadcast is not below the horizon.
INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)
    VALUES ('show-42', 'broadcast', '0b6e3f39-2f1c-4c7e-9a56-8f1d2c3b4a5e', 'zed', '{"vote":"c"}', 30);
SELECT is((SELECT count(*) FROM rtw_broadcasts WHERE author_id = 'zed'), 0::bigint,
          'a broadcast whose transaction is still open is not in rtw_broadcasts');
SELECT is((SELECT broadcasts FROM rtw_stream_stats WHERE stream_id = 'show-42'), 6::bigint,
          'nor in rtw_stream_stats');

-- The read-only role reads the views and nothing else.
SET LOCAL ROLE rtw_reader;
SELECT lives_ok($$SELECT count(*) FROM rtw_broadcasts, rtw_stream_stats, rtw_webhook_outcomes$$,
                'rtw_reader reads the views');
SELECT throws_ok($$SELECT count(*) FROM rtw_messages$$, '42501', NULL,
                 'rtw_reader cannot read the messages table (private messages)');
SELECT throws_ok($$SELECT count(*) FROM rtw_webhook_jobs$$, '42501', NULL,
                 'rtw_reader cannot read the jobs table (URLs, headers, bodies)');
SELECT throws_ok($$DELETE FROM rtw_broadcasts$$, '42501', NULL, 'rtw_reader cannot write through a view');
RESET ROLE;
SELECT ok((SELECT count(*) = 0 FROM rtw_webhook_outcomes WHERE host LIKE '%:%' OR host LIKE '%@%'),
          'hosts carry no port or user');

SELECT * FROM finish();
ROLLBACK;

DELETE FROM rtw_messages WHERE stream_id = 'show-42';
DELETE FROM rtw_webhook_jobs WHERE stream_id = 'show-42';
