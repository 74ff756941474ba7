-- 005_sql_views.sql: history for the people who query it (doc/sql.md): a
-- read-only role rtw_reader, three documented views and the indexes their
-- cookbook queries need. Nothing here is read by the daemons.
--
-- rtw_reader may read the views and nothing else: not the tables (private
-- messages, idempotency answers, webhook URLs and headers stay out of its
-- reach), and it can write nothing. The views are security barriers, so a
-- function of the reader's own in a WHERE clause never sees the rows they
-- filter out. Roles belong to the cluster: every rtw database of one
-- cluster shares rtw_reader. Creating it needs CREATEROLE; without it the
-- migration leaves a warning and rtw_grant_reader() does the grants later.

-- Settled broadcasts: the rows every subscriber has seen or will see, in
-- the one stream order; read them with ORDER BY xid, id. Rows at or above
-- the settled horizon are left out: a transaction below them may still
-- commit, so their place in the order is not final. Redaction plugs in
-- here once it exists: one more condition that drops redacted rows (a
-- NOT EXISTS on the redaction records), so this view never shows them.
CREATE VIEW rtw_broadcasts WITH (security_barrier) AS
SELECT m.id, m.xid, m.stream_id, m.widget_key, m.author_id, m.message, m.ts, m.created_at
  FROM rtw_messages m
 WHERE m.type = 'broadcast'
   AND m.xid < rtw_horizon();

COMMENT ON VIEW rtw_broadcasts IS
    'settled broadcasts (no private messages, no webhook results); stream order is ORDER BY xid, id';
COMMENT ON COLUMN rtw_broadcasts.ts IS 'video time in seconds given by the widget';

-- One row per stream: what it holds and when it was active. Counts every
-- settled message (privates and webhook results by number only). A scan
-- of the whole table: run it on a replica for large databases.
CREATE VIEW rtw_stream_stats WITH (security_barrier) AS
SELECT m.stream_id,
       count(*) FILTER (WHERE m.type = 'broadcast') AS broadcasts,
       count(*) FILTER (WHERE m.type = 'private') AS privates,
       count(*) FILTER (WHERE m.type = 'webhook') AS webhook_results,
       count(DISTINCT m.author_id) FILTER (WHERE m.type = 'broadcast') AS broadcast_authors,
       count(DISTINCT m.widget_key) AS widgets,
       min(m.created_at) AS first_at,
       max(m.created_at) AS last_at,
       max(m.ts) AS last_ts
  FROM rtw_messages m
 WHERE m.xid < rtw_horizon()
 GROUP BY m.stream_id;

COMMENT ON VIEW rtw_stream_stats IS 'per stream: settled message counts by type, authors, first and last activity';

-- Webhook jobs without what may carry secrets: the host of the URL only
-- (its path and query may hold tokens), no headers, bodies or excerpts.
CREATE VIEW rtw_webhook_outcomes WITH (security_barrier) AS
SELECT j.id, j.stream_id, j.widget_key,
       lower(substring(j.url FROM '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?(\[[^]]*\]|[^/?#:]*)')) AS host,
       j.method, j.status, j.attempts, j.last_http_status, j.last_error, j.last_duration_ms,
       j.created_at, j.started_at, j.finished_at
  FROM rtw_webhook_jobs j;

COMMENT ON VIEW rtw_webhook_outcomes IS
    'webhook jobs: target host, state, attempts, last HTTP status, error and duration (no URL path, headers or bodies)';

-- Messages per minute and retention (created_at < ...) over all streams,
-- and webhook outcomes of a time window. BRIN: rows arrive in created_at
-- order, so a few pages of summary serve range scans, and the hot insert
-- path pays almost nothing (a B-tree on created_at would cost every insert).
CREATE INDEX rtw_messages_created ON rtw_messages USING brin (created_at);
CREATE INDEX rtw_webhook_jobs_created ON rtw_webhook_jobs USING brin (created_at);

-- Grants a role read access to the views (and only them).
CREATE FUNCTION rtw_grant_reader(r name) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), r);
    EXECUTE format('GRANT SELECT ON rtw_broadcasts, rtw_stream_stats, rtw_webhook_outcomes TO %I', r);
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rtw_reader') THEN
        IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user) THEN
            RAISE WARNING 'role rtw_reader not created (needs CREATEROLE); a superuser may run: '
                         'CREATE ROLE rtw_reader NOLOGIN; SELECT rtw_grant_reader(''rtw_reader'');';
            RETURN;
        END IF;
        CREATE ROLE rtw_reader NOLOGIN;
    END IF;
    PERFORM rtw_grant_reader('rtw_reader');
END $$;
