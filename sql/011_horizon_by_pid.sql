-- 011_horizon_by_pid.sql: a writer's mark and its xid are matched by the
-- process that holds them, not by its virtual transaction id.
--
-- 003 joined the two lock rows of one writer (its advisory mark, its lock
-- on its own xid) by pg_locks.virtualtransaction. pg_lock_status() reads
-- that column from the holder's PGPROC, row by row, without the lock that
-- guards it: a writer that commits while the lock table is read leaves
-- the proc array (its local transaction id becomes 0) before it releases
-- its locks, so one read can show its mark under "3/1234" and its xid
-- under "3/0". The xid, in progress in the reader's snapshot and still
-- locked, then looked like an unmarked foreign transaction, the horizon
-- passed it, and its rows, visible a moment later below the reader's
-- cursor, were never delivered (seen under load in test_horizon, about one
-- round in ten of concurrent writers; doc/architecture.md, "Stream order").
--
-- The holder's pid does not change while it holds locks. A prepared
-- transaction's locks have no pid; its virtual transaction id is fixed
-- (the dummy proc never starts another), so it is the key there.
--
-- rtw_horizon_holders_in() takes the lock rows as an argument, so the
-- pgTAP test can hand it the torn read that cannot be forced from SQL.

CREATE FUNCTION rtw_horizon_holders_in(s pg_snapshot, locks pg_locks[])
RETURNS TABLE (xid xid8, pid integer, marked_for integer) LANGUAGE sql STABLE AS $$
    WITH l AS MATERIALIZED (
        SELECT l.*, coalesce(l.pid::text, l.virtualtransaction) AS holder FROM unnest(locks) l
    ), top AS (
        SELECT pg_snapshot_xmax(s)::text::bigint AS x8, pg_snapshot_xmax(s)::text::bigint % 4294967296 AS x32
    ), run AS (
        SELECT top.x8 + ((l.transactionid::text::bigint - top.x32 + 2147483648) % 4294967296 + 4294967296)
                   % 4294967296 - 2147483648 AS x, l.holder, l.pid
        FROM l, top
        WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
    ), mk AS (
        SELECT holder, min(objid::text::bigint) AS since FROM l
        WHERE locktype = 'advisory' AND objsubid = 2 AND classid::text::bigint = rtw_mark_class()
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        GROUP BY holder
    )
    SELECT min(run.x)::text::xid8, min(run.pid),
           (floor(extract(epoch FROM clock_timestamp() - timestamptz '2020-01-01 00:00:00+00')) - mk.since)::integer
    FROM mk JOIN run USING (holder)
    GROUP BY mk.holder, mk.since
    UNION ALL
    SELECT xs.x, NULL, NULL FROM pg_snapshot_xip(s) AS xs (x)
    WHERE NOT EXISTS (SELECT FROM run WHERE run.x = xs.x::text::bigint)
$$;

-- Same signature and columns as 003's, so the view rtw_horizon_holders and
-- rtw_horizon_held() keep calling it. One read of pg_lock_status().
CREATE OR REPLACE FUNCTION rtw_horizon_holders(s pg_snapshot)
RETURNS TABLE (xid xid8, pid integer, marked_for integer) LANGUAGE sql STABLE AS $$
    SELECT * FROM rtw_horizon_holders_in(s, ARRAY(
        SELECT l FROM pg_locks l WHERE l.locktype IN ('transactionid', 'advisory')))
$$;
