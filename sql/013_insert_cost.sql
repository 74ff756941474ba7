-- 013_insert_cost.sql: the same rules for a row of rtw_messages, checked
-- for less CPU per row. A batch of 1,000 (POST /v1/messages, rtw_publish
-- with an array) pays each per-row cost a thousand times; nothing here
-- changes which rows are accepted or the xid they carry.
--
-- The stream_id CHECK. PostgreSQL compiles the bound of
-- '^[A-Za-z0-9._:-]{1,128}$' into an automaton with a state per count,
-- which cost 14 µs a row (100,000 short ids: 1.4 s; perf put it at 15% of
-- the backend's CPU for a batch). The same character class with '+' and a
-- separate length() accepts exactly the same strings (ARE '$' is the end of
-- the string, as before) at 0.7 µs. Adding it checks the existing rows once.
ALTER TABLE rtw_messages
    DROP CONSTRAINT rtw_messages_stream_id_check,
    ADD CONSTRAINT rtw_messages_stream_id_check
        CHECK (stream_id ~ '^[A-Za-z0-9._:-]+$' AND length(stream_id) <= 128);

-- The order key (sql/003). rtw_mark_row() still overwrites any xid that is
-- not the transaction's key, but a row that already carries the key (a
-- statement that selects it, as rtw-fcgi's batch insert does) skips the
-- PL/pgSQL call: the WHEN clause is a plain expression, evaluated after the
-- statement trigger rtw_messages_mark has set rtw.order_key. A row without
-- an xid (every other insert) still fires the trigger, as before.
DROP TRIGGER rtw_messages_key ON rtw_messages;
CREATE TRIGGER rtw_messages_key BEFORE INSERT ON rtw_messages
    FOR EACH ROW
    WHEN (NEW.xid IS DISTINCT FROM split_part(current_setting('rtw.order_key'), ':', 2)::xid8)
    EXECUTE FUNCTION rtw_mark_row();
ALTER TABLE rtw_messages ENABLE ALWAYS TRIGGER rtw_messages_key;

-- rtw_publish()'s author and addressee rule (sql/006) had the same kind of
-- bound, '{1,128}' on a class of 93 characters: 31 µs a call, twice per
-- private message. The same strings, without the bound in the automaton.
CREATE OR REPLACE FUNCTION rtw_publish_user_id_ok(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '^[!#-\[\]-~]+$' AND length(v #>> '{}') <= 128
$$;
