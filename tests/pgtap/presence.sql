-- tests/pgtap/presence.sql: the presence tables and functions of
-- sql/009_presence.sql: a put is the heartbeat and writes only the rows it
-- is given, c = 0 and full remove rows, expired processes are ignored by
-- readers and deleted later, viewers are distinct over processes while the
-- id lists are complete, and a clean drop removes a process's rows.
BEGIN;
SELECT plan(25);

SELECT has_table('rtw_presence');
SELECT has_table('rtw_presence_procs');
SELECT is((SELECT relpersistence FROM pg_class WHERE relname = 'rtw_presence'), 'u', 'rtw_presence is UNLOGGED');
SELECT is((SELECT relpersistence FROM pg_class WHERE relname = 'rtw_presence_procs'), 'u',
          'rtw_presence_procs is UNLOGGED');
SELECT has_index('rtw_presence', 'rtw_presence_stream', ARRAY['stream_id']);

SELECT is(rtw_presence_put('p1', 5000, '[{"s":"a","c":3,"v":2,"u":["alice","bob"]},{"s":"b","c":1,"v":1,"u":["carol"]}]',
                           false), true, 'the first put of a process says it was not known');
SELECT is(rtw_presence_put('p1', 5000, '[]', false), false, 'a later put says it was known');
SELECT is((SELECT count(*)::int FROM rtw_presence WHERE instance = 'p1'), 2, 'an empty put keeps the rows');
SELECT is(rtw_presence_put('p2', 5000, '[{"s":"a","c":2,"v":2,"u":["bob","dave"]}]', false), true,
          'a second process');

SELECT results_eq($$SELECT stream_id, connections, viewers FROM rtw_presence_counts(ARRAY['a', 'b', 'z'])
                    ORDER BY 1$$,
                  $$VALUES ('a'::text, 5::bigint, 3::bigint), ('b', 1, 1)$$,
                  'connections are summed, viewers distinct over processes; streams without subscribers are absent');
SELECT results_eq($$SELECT * FROM rtw_presence_users('a', 1000)$$, $$VALUES ('alice'::text), ('bob'), ('dave')$$,
                  'the users of a stream over processes, each once');
SELECT results_eq($$SELECT * FROM rtw_presence_users('a', 2)$$, $$VALUES ('alice'::text), ('bob')$$,
                  'the users are bounded by the limit');

-- a process with more viewers than ids: its list is incomplete, so the
-- viewers are summed
SELECT lives_ok($$SELECT rtw_presence_put('p2', 5000, '[{"s":"a","c":2000,"v":1500,"u":["bob"]}]', false)$$,
                'a put with a partial id list');
SELECT is((SELECT viewers FROM rtw_presence_counts(ARRAY['a'])), 1502::bigint,
          'viewers are summed when a process''s id list is partial');

SELECT lives_ok($$SELECT rtw_presence_put('p1', 5000, '[{"s":"b","c":0}]', false)$$, 'c = 0 removes a row');
SELECT is((SELECT array_agg(stream_id ORDER BY stream_id) FROM rtw_presence WHERE instance = 'p1'), ARRAY['a'],
          'only the stream with c = 0 is gone');
SELECT lives_ok($$SELECT rtw_presence_put('p1', 5000, '[{"s":"c","c":1,"v":1,"u":["erin"]}]', true)$$,
                'a full put');
SELECT is((SELECT array_agg(stream_id ORDER BY stream_id) FROM rtw_presence WHERE instance = 'p1'), ARRAY['c'],
          'a full put leaves exactly its streams');

SELECT throws_ok($$INSERT INTO rtw_presence VALUES ('p1', 'd', 1, 2, '{}')$$, '23514', NULL,
                 'viewers never exceed connections');

-- an expired heartbeat: ignored by readers at once, deleted a minute later
UPDATE rtw_presence_procs SET expires_at = now() - interval '1 second' WHERE instance = 'p2';
SELECT is((SELECT count(*)::int FROM rtw_presence_counts(ARRAY['a'])), 0, 'an expired process is not counted');
UPDATE rtw_presence_procs SET expires_at = now() - interval '2 minutes' WHERE instance = 'p2';
SELECT lives_ok($$SELECT rtw_presence_put('p1', 5000, '[]', false)$$, 'any put cleans up');
SELECT is((SELECT count(*)::int FROM rtw_presence WHERE instance IN ('p1', 'p2')), 1,
          'the dead process and its rows are gone');
SELECT lives_ok($$SELECT rtw_presence_drop('p1')$$, 'a clean drop');
SELECT is((SELECT count(*)::int FROM rtw_presence_procs WHERE instance = 'p1'), 0, 'a dropped process is gone');
SELECT is((SELECT count(*)::int FROM rtw_presence WHERE instance = 'p1'), 0, 'and its rows with it');

SELECT * FROM finish();
ROLLBACK;
