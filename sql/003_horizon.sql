-- 003_horizon.sql: a settled horizon that only rtw's writers hold back.
--
-- 001's horizon, pg_snapshot_xmin(pg_current_snapshot()), waited for every
-- transaction with an xid in the whole cluster, so a long transaction in
-- another database stalled every stream. Now a transaction that inserts
-- into rtw_messages marks itself (a shared transaction-level advisory lock
-- taken by a statement trigger before the insert can assign an xid), and
-- the horizon waits only for marked transactions. doc/architecture.md,
-- "Stream order", gives the reasoning and the races.
--
-- Writers need no change: the triggers mark every INSERT and COPY into
-- rtw_messages (and rtw_idempotency, whose row rtw-fcgi writes first in the
-- same transaction as the message), whoever runs it.

-- The mark: advisory lock (rtw_mark_class(), seconds since 2020-01-01 at
-- marking). The second key tells readers how long the writer has held the
-- horizon without a look at pg_stat_activity.
CREATE FUNCTION rtw_mark_class() RETURNS integer LANGUAGE sql IMMUTABLE AS $$
    SELECT 1920235383   -- 0x72747777 ('rtww'), a fixed class nothing else uses
$$;

-- Marks the current transaction as a writer once and fixes the order key
-- its rows carry (rtw_messages.xid), kept in the transaction-local setting
-- rtw.order_key as 'xid:key'.
--
-- Usually the transaction has no xid yet: it takes one after the mark, and
-- its key is that xid. A transaction that wrote elsewhere first already
-- has an xid, which a reader may have passed before the mark became
-- visible; its rows get a key no reader can have passed instead: the
-- greater of its xid and the xmax of a snapshot taken after the mark (READ
-- COMMITTED gives a fresh one per statement; the other isolation levels
-- reuse an old snapshot, so such a transaction is refused and must insert
-- before its first other write). Either way the key is >= the xid, which
-- is what readers bound a marked writer by.
CREATE FUNCTION rtw_mark() RETURNS xid8 LANGUAGE plpgsql AS $$
DECLARE
    cur text := coalesce(current_setting('rtw.order_key', true), '');
    own xid8 := pg_current_xact_id_if_assigned();
    key xid8;
BEGIN
    IF cur <> '' AND split_part(cur, ':', 1) = own::text THEN
        RETURN split_part(cur, ':', 2)::xid8;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(rtw_mark_class(),
        floor(extract(epoch FROM clock_timestamp() - timestamptz '2020-01-01 00:00:00+00'))::integer);
    IF own IS NULL THEN
        own := pg_current_xact_id();
        key := own;
    ELSIF current_setting('transaction_isolation') = 'read committed' THEN
        key := greatest(own, pg_snapshot_xmax(pg_current_snapshot()));
    ELSE
        RAISE EXCEPTION 'rtw: a % transaction must insert messages before its first other write',
            current_setting('transaction_isolation')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM set_config('rtw.order_key', own::text || ':' || key::text, true);
    RETURN key;
END $$;

CREATE FUNCTION rtw_mark_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rtw_mark();
    RETURN NULL;
END $$;

-- Every row carries its transaction's key, whatever the statement said:
-- an explicit xid could place a row below a horizon already passed.
CREATE FUNCTION rtw_mark_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.xid := split_part(current_setting('rtw.order_key'), ':', 2)::xid8;
    RETURN NEW;
END $$;

-- BEFORE STATEMENT fires before the first row is formed, so before the
-- identity's nextval() or a CTE's write can assign the xid. ENABLE ALWAYS:
-- the mark holds under session_replication_role = replica too.
CREATE TRIGGER rtw_messages_mark BEFORE INSERT ON rtw_messages
    FOR EACH STATEMENT EXECUTE FUNCTION rtw_mark_statement();
CREATE TRIGGER rtw_messages_key BEFORE INSERT ON rtw_messages
    FOR EACH ROW EXECUTE FUNCTION rtw_mark_row();
CREATE TRIGGER rtw_idempotency_mark BEFORE INSERT ON rtw_idempotency
    FOR EACH STATEMENT EXECUTE FUNCTION rtw_mark_statement();
ALTER TABLE rtw_messages ENABLE ALWAYS TRIGGER rtw_messages_mark;
ALTER TABLE rtw_messages ENABLE ALWAYS TRIGGER rtw_messages_key;
ALTER TABLE rtw_idempotency ENABLE ALWAYS TRIGGER rtw_idempotency_mark;
ALTER TABLE rtw_messages ALTER COLUMN xid DROP DEFAULT;

-- What holds the horizon of snapshot s: every marked writer of this
-- database that is running (by its top-level xid; a writer whose xid is at
-- or above s's xmax does not lower the horizon but is listed, and timed),
-- and, conservatively, every transaction in progress in s that ended
-- before the lock table was read, since the lock table no longer tells
-- whether it was a writer. Running transactions without a mark cannot add
-- rows below their own xid (see rtw_mark). One read of pg_lock_status().
-- pg_locks shows 32-bit xids; they are widened relative to s's xmax (all
-- running xids lie within 2^31 of it).
CREATE FUNCTION rtw_horizon_holders(s pg_snapshot)
RETURNS TABLE (xid xid8, pid integer, marked_for integer) LANGUAGE sql STABLE AS $$
    WITH l AS MATERIALIZED (
        SELECT locktype, database, classid, objid, objsubid, transactionid, virtualtransaction, pid, mode, granted
        FROM pg_lock_status() l
        WHERE locktype IN ('transactionid', 'advisory')
    ), top AS (
        SELECT pg_snapshot_xmax(s)::text::bigint AS x8, pg_snapshot_xmax(s)::text::bigint % 4294967296 AS x32
    ), run AS (
        SELECT top.x8 + ((l.transactionid::text::bigint - top.x32 + 2147483648) % 4294967296 + 4294967296)
                   % 4294967296 - 2147483648 AS x, l.virtualtransaction AS v, l.pid
        FROM l, top
        WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
    ), mk AS (
        SELECT virtualtransaction AS v, min(objid::text::bigint) AS since FROM l
        WHERE locktype = 'advisory' AND objsubid = 2 AND classid::text::bigint = rtw_mark_class()
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        GROUP BY virtualtransaction
    )
    SELECT min(run.x)::text::xid8, min(run.pid),
           (floor(extract(epoch FROM clock_timestamp() - timestamptz '2020-01-01 00:00:00+00')) - mk.since)::integer
    FROM mk JOIN run USING (v)
    GROUP BY mk.v, mk.since
    UNION ALL
    SELECT xs.x, NULL, NULL FROM pg_snapshot_xip(s) AS xs (x)
    WHERE NOT EXISTS (SELECT FROM run WHERE run.x = xs.x::text::bigint)
$$;

-- The horizon of snapshot s when something is in progress in it.
--
-- A horizon found for a snapshot stays right for every snapshot with the
-- same content (which transactions are writers does not change), so the
-- last one is kept in the session setting rtw.horizon_cache with its
-- snapshot and second: a caller that evaluates rtw_horizon() per row (the
-- planner may pull "(SELECT rtw_horizon())" up into the target list) reads
-- the lock table once, and at most once a second while nothing changes.
--
-- Writers that have held it longer than rtw.writer_timeout (a setting,
-- '10s' unless set; 0 turns it off) are ended here, so a hung writer is
-- bounded by the next reader (rtw-sse's safety poll at the latest); a
-- reader without the right to signal it says so and carries on.
CREATE FUNCTION rtw_horizon_held(s pg_snapshot) RETURNS xid8 LANGUAGE plpgsql STABLE AS $$
DECLARE
    tag text := s::text || '@' || floor(extract(epoch FROM clock_timestamp()))::text || '=';
    cached text := current_setting('rtw.horizon_cache', true);
    h xid8;
    overdue integer[];
    bound integer;
    p integer;
BEGIN
    IF starts_with(cached, tag) THEN
        RETURN substr(cached, length(tag) + 1)::xid8;
    END IF;
    bound := extract(epoch FROM coalesce(nullif(current_setting('rtw.writer_timeout', true), ''), '10s')::interval);
    SELECT min(x.xid), array_agg(x.pid) FILTER (WHERE x.pid IS NOT NULL AND bound > 0 AND x.marked_for > bound)
    INTO h, overdue FROM rtw_horizon_holders(s) x;
    FOREACH p IN ARRAY coalesce(overdue, '{}') LOOP
        BEGIN
            RAISE WARNING 'rtw: ending writer pid % (held the stream horizon longer than rtw.writer_timeout)', p;
            PERFORM pg_terminate_backend(p);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'rtw: writer pid % holds the stream horizon; not allowed to end it: %', p, SQLERRM;
        END;
    END LOOP;
    h := least(coalesce(h, pg_snapshot_xmax(s)), pg_snapshot_xmax(s));
    PERFORM set_config('rtw.horizon_cache', tag || h::text, false);
    RETURN h;
END $$;

-- The settled horizon: no row with a smaller xid can still appear. STABLE,
-- so it reads the caller's statement snapshot, the one the caller's scan
-- of rtw_messages uses. Plain SQL, so the planner inlines it: with nothing
-- in progress it costs what 001's did, and the lock table is read only
-- when something is.
CREATE OR REPLACE FUNCTION rtw_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN pg_snapshot_xmin(pg_current_snapshot()) = pg_snapshot_xmax(pg_current_snapshot())
                THEN pg_snapshot_xmax(pg_current_snapshot())
                ELSE rtw_horizon_held(pg_current_snapshot()) END
$$;

-- For operators: who holds the horizon now, oldest first.
CREATE VIEW rtw_horizon_holders AS
    SELECT h.xid, h.pid, h.marked_for AS held_seconds, a.datname, a.usename, a.application_name,
           a.client_addr, a.state, a.xact_start, a.query
    FROM rtw_horizon_holders(pg_current_snapshot()) h
    LEFT JOIN pg_stat_activity a ON a.pid = h.pid
    ORDER BY h.xid;
