-- tests/pgtap/schema.sql: the schema of sql/001_init.sql: tables, keys,
-- indexes the queries rely on, and the constraints that keep bad rows out.
BEGIN;
SELECT plan(37);

SELECT has_table('rtw_schema_migrations');
SELECT has_table('rtw_widgets');
SELECT has_table('rtw_messages');
SELECT has_table('rtw_idempotency');
SELECT has_table('rtw_webhook_jobs');
SELECT ok((SELECT count(*) FROM rtw_schema_migrations WHERE version = 1) = 1, 'migration 1 is recorded');

SELECT col_is_pk('rtw_messages', 'id');
SELECT col_type_is('rtw_messages', 'xid', 'xid8');
SELECT col_not_null('rtw_messages', 'xid');
SELECT col_type_is('rtw_messages', 'message', 'jsonb');
SELECT col_is_pk('rtw_idempotency', ARRAY['stream_id', 'author_id', 'key']);
SELECT has_index('rtw_messages', 'rtw_messages_order', ARRAY['xid', 'id']);
SELECT has_index('rtw_messages', 'rtw_messages_stream', ARRAY['stream_id', 'xid', 'id']);
SELECT has_index('rtw_messages', 'rtw_messages_history', ARRAY['stream_id', 'widget_key', 'xid', 'id']);
SELECT has_index('rtw_webhook_jobs', 'rtw_webhook_jobs_due', ARRAY['run_at']);
SELECT has_trigger('rtw_messages', 'rtw_messages_notify');
SELECT has_trigger('rtw_webhook_jobs', 'rtw_webhook_jobs_notify');
SELECT has_function('rtw_horizon');
SELECT has_function('rtw_rfc3339');

INSERT INTO rtw_widgets (widget_key, name) VALUES ('6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'w');

-- a row gets its writer's transaction id
SELECT lives_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)
                  VALUES ('s1', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '{"x":1}', 1.5)$$,
                'a broadcast is stored');
SELECT ok((SELECT xid FROM rtw_messages WHERE stream_id = 's1') >= pg_current_xact_id(),
          'xid is the writing transaction''s order key, not below its xid (sql/003_horizon.sql)');

-- constraints
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message)
                   VALUES ('s1', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', 'b', '1')$$,
                 '23514', NULL, 'a broadcast with an addressee is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES ('s1', 'private', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'a private without an addressee is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES ('bad stream', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'a malformed stream id is refused');
-- the edges of the stream id rule (sql/013_insert_cost.sql wrote it anew)
SELECT lives_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                  VALUES (repeat('A', 125) || '.:-', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                'a stream id of 128 characters of the set is stored');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES (repeat('a', 129), 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'a stream id of 129 characters is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES ('', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'an empty stream id is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES (E's1\n', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'a stream id with a trailing newline is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES ('sé', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'a stream id with a letter outside ASCII is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, ts)
                   VALUES ('s1', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1', -1)$$,
                 '23514', NULL, 'a negative video time is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES ('s1', 'broadcast', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', 'null')$$,
                 '23514', NULL, 'a null payload is refused');
SELECT throws_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message)
                   VALUES ('s1', 'init', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', '1')$$,
                 '23514', NULL, 'init is never stored');
SELECT throws_ok($$INSERT INTO rtw_webhook_jobs (stream_id, widget_key, author_id, url, status)
                   VALUES ('s1', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'a', 'http://x/', 'running')$$,
                 '23514', NULL, 'a running job needs a lease');
SELECT throws_ok($$INSERT INTO rtw_idempotency (stream_id, author_id, key, request_hash, status, response)
                   VALUES ('s1', 'a', '', '\x00', 201, '{}')$$,
                 '23514', NULL, 'an empty idempotency key is refused');

-- functions
SELECT is(rtw_rfc3339('2026-11-27 22:00:00.123456+00'), '2026-11-27T22:00:00.123456Z', 'rtw_rfc3339 formats UTC');
SELECT is(rtw_rfc3339('2026-11-27 23:00:00+01'), '2026-11-27T22:00:00.000000Z', 'rtw_rfc3339 converts to UTC');
SELECT ok(rtw_horizon() <= pg_current_xact_id(), 'the horizon is not ahead of a running transaction');

SELECT * FROM finish();
ROLLBACK;
