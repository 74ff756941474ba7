-- tests/pgtap/horizon.sql: the writer mark of sql/003_horizon.sql. One
-- pgTAP transaction cannot hold a second transaction open, so this covers
-- what a single transaction can see: the triggers, the mark, the order key
-- and savepoints, and the holders found in a given read of the lock table
-- (rtw_horizon_holders_in); tests/integration/test_horizon.py covers the
-- horizon across sessions (foreign, prepared, late and hung transactions).
BEGIN;
SELECT plan(22);

SELECT trigger_is('rtw_messages', 'rtw_messages_mark', 'rtw_mark_statement');
SELECT trigger_is('rtw_messages', 'rtw_messages_key', 'rtw_mark_row');
SELECT trigger_is('rtw_idempotency', 'rtw_idempotency_mark', 'rtw_mark_statement');
SELECT ok((SELECT tgtype & 3 = 2 FROM pg_trigger WHERE tgname = 'rtw_messages_mark'),
          'the mark is taken BEFORE, once per statement (before any row can assign the xid)');
SELECT ok((SELECT bool_and(tgenabled = 'A') FROM pg_trigger
           WHERE tgname IN ('rtw_messages_mark', 'rtw_messages_key', 'rtw_idempotency_mark')),
          'the mark triggers fire under any session_replication_role');
SELECT is((SELECT column_default FROM information_schema.columns
           WHERE table_name = 'rtw_messages' AND column_name = 'xid'), NULL,
          'no default for xid: a row without the mark fails NOT NULL');

-- pgTAP's plan() wrote temp tables, so this transaction already has an
-- xid: it is a late writer (see rtw_mark).
SELECT lives_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, xid)
                  VALUES ('h1', 'broadcast', gen_random_uuid(), 'a', '1', '3')$$,
                'an insert with an explicit xid is accepted');
SELECT ok((SELECT xid FROM rtw_messages WHERE stream_id = 'h1') >= pg_current_xact_id(),
          'the row carries the transaction''s key (not below its xid), not the xid the statement gave');
SELECT is((SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
           AND classid::text::bigint = rtw_mark_class() AND objsubid = 2), 1,
          'the transaction holds the writer mark');
SELECT is(rtw_mark(), (SELECT xid FROM rtw_messages WHERE stream_id = 'h1'), 'a second mark keeps the key');
-- A statement may give the key itself (rtw-fcgi's batch insert does, so
-- that rtw_messages_key's WHEN clause skips the row trigger): the row is
-- stored with that key; a wrong one is still overwritten (above).
SELECT lives_ok($$INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, message, xid)
                  SELECT 'h2', 'broadcast', gen_random_uuid(), 'a', '1',
                         split_part(current_setting('rtw.order_key'), ':', 2)::xid8$$,
                'an insert that selects the order key is accepted');
SELECT is((SELECT xid FROM rtw_messages WHERE stream_id = 'h2'), (SELECT xid FROM rtw_messages WHERE stream_id = 'h1'),
          'it carries the same key as the transaction''s other rows');
SELECT is((SELECT count(*)::int FROM rtw_horizon_holders WHERE pid = pg_backend_pid()), 1,
          'rtw_horizon_holders lists the marked transaction');
SELECT ok(rtw_horizon() <= pg_current_xact_id(), 'the horizon is not ahead of a running writer');

-- A transaction that wrote elsewhere first: its rows get a key no earlier
-- horizon can have passed, and not below its own xid.
SAVEPOINT late;
SELECT lives_ok($$SELECT set_config('rtw.order_key', '', true)$$, 'forget the key (as if unmarked)');
SELECT ok(rtw_mark() >= pg_current_xact_id(), 'a late writer''s key is not below its xid');
ROLLBACK TO late;

SELECT is((SELECT count(*)::int FROM rtw_horizon_holders WHERE pid = pg_backend_pid()), 1,
          'rolling back to a savepoint keeps the outer mark');
SELECT is(rtw_mark(), (SELECT xid FROM rtw_messages WHERE stream_id = 'h1'), '... and the outer key');
-- Lock table reads given as rows (pg_lock_status() cannot be made to tear
-- on purpose). Snapshot 100:105:100: xid 100 is in progress.
CREATE FUNCTION pg_temp.lk(locktype text, xid text, pid integer, vxid text, objid text DEFAULT NULL)
RETURNS pg_locks LANGUAGE sql AS $$
    SELECT jsonb_populate_record(NULL::pg_locks, jsonb_build_object(
        'locktype', locktype, 'transactionid', xid, 'pid', pid, 'virtualtransaction', vxid, 'granted', true,
        'mode', CASE WHEN locktype = 'advisory' THEN 'ShareLock' ELSE 'ExclusiveLock' END,
        'database', CASE WHEN locktype = 'advisory' THEN (SELECT oid FROM pg_database WHERE datname = current_database()) END,
        'classid', CASE WHEN locktype = 'advisory' THEN rtw_mark_class()::text::oid END,
        'objid', objid, 'objsubid', CASE WHEN locktype = 'advisory' THEN 2 END))
$$;
SELECT is((SELECT min(xid) FROM rtw_horizon_holders_in('100:105:100', ARRAY[
              pg_temp.lk('transactionid', '100', 4242, '7/0'), pg_temp.lk('advisory', NULL, 4242, '7/55', '1')])),
          '100'::xid8,
          'a writer read while it commits (its mark and its xid under two virtual transaction ids) still holds');
SELECT is((SELECT count(*)::int FROM rtw_horizon_holders_in('100:105:100', ARRAY[
              pg_temp.lk('transactionid', '100', 4242, '7/55'), pg_temp.lk('advisory', NULL, 4243, '8/3', '1')])),
          0, 'a running xid without a mark of its own process does not hold');
SELECT is((SELECT min(xid) FROM rtw_horizon_holders_in('100:105:100', ARRAY[
              pg_temp.lk('transactionid', '100', NULL, '-1/100'), pg_temp.lk('advisory', NULL, NULL, '-1/100', '1')])),
          '100'::xid8, 'a prepared marked transaction holds (matched by its virtual transaction id)');
SELECT is((SELECT count(*)::int FROM rtw_horizon_holders_in('100:105:100', ARRAY[
              pg_temp.lk('transactionid', '100', NULL, '-1/100'), pg_temp.lk('advisory', NULL, NULL, '-1/99', '1')])),
          0, 'a prepared foreign transaction does not hold because another prepared one is marked');
SELECT * FROM finish();
ROLLBACK;
