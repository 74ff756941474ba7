-- 009_presence.sql: presence, the open SSE connections and distinct
-- viewers of each stream over every rtw-sse process (doc/sse.md,
-- "Presence").
--
-- Each rtw-sse process counts its own subscribers in memory and calls
-- rtw_presence_put() every sse.presence_interval_ms with the streams whose
-- subscribers changed since its last call (one statement, one row per
-- changed stream, whatever the number of viewers), which is also its
-- heartbeat. It calls rtw_presence_drop() at a clean shutdown. A process
-- that dies leaves rows behind: readers ignore them once its heartbeat
-- expires, and the next put of any process deletes them a minute later.
--
-- UNLOGGED: the counts are rewritten every few seconds and are worthless
-- after a crash (PostgreSQL empties unlogged tables then; a process whose
-- heartbeat row is gone writes all its streams again).

-- One row per live (or recently dead) rtw-sse process.
CREATE UNLOGGED TABLE rtw_presence_procs (
    instance text PRIMARY KEY,          -- host:pid:random, new at every start
    seen_at timestamptz NOT NULL,       -- the last put
    expires_at timestamptz NOT NULL     -- readers ignore the process after it
);

-- One row per (process, stream with subscribers in that process).
CREATE UNLOGGED TABLE rtw_presence (
    instance text NOT NULL REFERENCES rtw_presence_procs ON DELETE CASCADE,
    stream_id text NOT NULL,
    connections integer NOT NULL CHECK (connections > 0),
    viewers integer NOT NULL CHECK (viewers > 0 AND viewers <= connections),
    -- up to 1000 of the process's distinct subscriber ids of the stream
    -- (all of them when viewers <= 1000), for admins and exact counts
    users text[] NOT NULL CHECK (cardinality(users) <= 1000),
    PRIMARY KEY (instance, stream_id)
);
CREATE INDEX rtw_presence_stream ON rtw_presence (stream_id);

-- A process's heartbeat and changed streams, in one statement.
-- rows: [{"s": stream, "c": connections, "v": viewers, "u": [ids]}, ...];
-- c = 0 removes the stream's row. full: rows are every stream the process
-- has; its other rows are removed. ttl_ms: how long readers trust this
-- heartbeat. Returns true when the process was not known (first call, or
-- forgotten after a crash or a long outage): the caller then sends all its
-- streams with full.
CREATE FUNCTION rtw_presence_put(p_instance text, p_ttl_ms integer, p_rows jsonb, p_full boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_new boolean;
BEGIN
    INSERT INTO rtw_presence_procs AS p (instance, seen_at, expires_at)
        VALUES (p_instance, now(), now() + p_ttl_ms * interval '1 millisecond')
        ON CONFLICT (instance) DO UPDATE SET seen_at = EXCLUDED.seen_at, expires_at = EXCLUDED.expires_at
        RETURNING p.xmax = 0 INTO v_new;
    IF p_full THEN
        DELETE FROM rtw_presence p WHERE p.instance = p_instance
            AND p.stream_id NOT IN (SELECT x.s FROM jsonb_to_recordset(p_rows) AS x(s text, c integer)
                                    WHERE x.c > 0);
    ELSE
        DELETE FROM rtw_presence p USING jsonb_to_recordset(p_rows) AS x(s text, c integer)
            WHERE p.instance = p_instance AND p.stream_id = x.s AND x.c = 0;
    END IF;
    INSERT INTO rtw_presence (instance, stream_id, connections, viewers, users)
        SELECT p_instance, x.s, x.c, x.v, coalesce(x.u, '{}')
        FROM jsonb_to_recordset(p_rows) AS x(s text, c integer, v integer, u text[])
        WHERE x.c > 0
        ON CONFLICT (instance, stream_id) DO UPDATE
            SET connections = EXCLUDED.connections, viewers = EXCLUDED.viewers, users = EXCLUDED.users;
    -- dead processes' rows, a minute after their heartbeat expired (the
    -- table holds one row per process: a short scan)
    DELETE FROM rtw_presence_procs WHERE expires_at < now() - interval '1 minute';
    RETURN v_new;
END
$$;

-- A clean shutdown: the process and its rows.
CREATE FUNCTION rtw_presence_drop(p_instance text) RETURNS void LANGUAGE sql AS $$
    DELETE FROM rtw_presence_procs WHERE instance = p_instance
$$;

-- The processes whose heartbeat has not expired.
CREATE VIEW rtw_presence_live AS
    SELECT p.* FROM rtw_presence p JOIN rtw_presence_procs i USING (instance) WHERE i.expires_at > now();

-- Per stream of streams: connections summed over live processes, and
-- viewers: distinct over the processes when each holds all its ids of the
-- stream (viewers <= 1000 per process), else the sum of each process's
-- distinct count (a viewer connected to two processes counts twice).
-- Streams without live subscribers are left out. updated_at: the oldest
-- live heartbeat (the counts are at least that fresh), now() when none.
CREATE FUNCTION rtw_presence_counts(streams text[])
RETURNS TABLE (stream_id text, connections bigint, viewers bigint, updated_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT p.stream_id, sum(p.connections),
           CASE WHEN bool_and(p.viewers = cardinality(p.users))
                THEN (SELECT count(DISTINCT u) FROM rtw_presence_live q, unnest(q.users) AS u
                      WHERE q.stream_id = p.stream_id)
                ELSE sum(p.viewers) END,
           (SELECT coalesce(min(seen_at), now()) FROM rtw_presence_procs WHERE expires_at > now())
    FROM rtw_presence_live p
    WHERE p.stream_id = ANY (streams)
    GROUP BY p.stream_id
$$;

-- Up to lim distinct subscriber ids of a stream over live processes.
CREATE FUNCTION rtw_presence_users(stream text, lim integer)
RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT DISTINCT u FROM rtw_presence_live q, unnest(q.users) AS u
    WHERE q.stream_id = stream ORDER BY u LIMIT lim
$$;
