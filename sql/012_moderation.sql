-- 012_moderation.sql: redaction (DELETE of a message) and bans.
--
-- A redaction is a stored row of type 'redact' in stream order, so live
-- subscribers get it from rtw-sse's tail and resuming ones from their
-- catch-up, with no new delivery path. It carries the original's
-- to_user_id, which routes it exactly where the original went (everyone
-- for a broadcast, the addressee for a private or webhook result). The
-- original keeps its row (positions stay valid for resumes) and is marked
-- redacted_by = the redact row's id, which history filters on.
--
-- Bans are rows of rtw_bans; every change NOTIFYs rtw_bans, which each
-- rtw-sse process LISTENs to, reloading its copy and ending the banned
-- user's open streams.

ALTER TABLE rtw_messages
    DROP CONSTRAINT rtw_messages_type_check,
    DROP CONSTRAINT rtw_messages_check,
    ADD CONSTRAINT rtw_messages_type_check
        CHECK (type IN ('broadcast', 'private', 'webhook', 'redact')),
    -- a broadcast has no addressee; a private or webhook result has one;
    -- a redact has its original's
    ADD CONSTRAINT rtw_messages_check
        CHECK (type = 'redact' OR (type = 'broadcast') = (to_user_id IS NULL)),
    -- the id of the redact row that removed this message from history
    ADD COLUMN redacted_by bigint;

-- Redacts message p_id of stream p_stream on behalf of p_by (p_admin: an
-- admin token, which may redact anyone's message). status 200 with the
-- redact row (the first one when the message was already redacted), 403
-- when p_by is neither the author nor an admin, 404 when the stream holds
-- no such message; msg is NULL then. Runs in the caller's transaction.
CREATE FUNCTION rtw_redact(p_stream text, p_id bigint, p_by text, p_admin boolean,
                           OUT status integer, OUT msg rtw_messages)
LANGUAGE plpgsql AS $$
DECLARE
    orig rtw_messages;
BEGIN
    -- Mark the transaction as a writer before the row lock below assigns
    -- it an xid (sql/003: a writer should insert before its other writes).
    PERFORM rtw_mark();
    SELECT * INTO orig FROM rtw_messages
        WHERE id = p_id AND stream_id = p_stream AND type <> 'redact' FOR UPDATE;
    IF NOT FOUND THEN
        status := 404;
        RETURN;
    END IF;
    IF NOT p_admin AND orig.author_id <> p_by THEN
        status := 403;
        RETURN;
    END IF;
    status := 200;
    IF orig.redacted_by IS NOT NULL THEN
        SELECT * INTO msg FROM rtw_messages WHERE id = orig.redacted_by;
        RETURN;
    END IF;
    INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message, ts)
        VALUES (p_stream, 'redact', orig.widget_key, p_by, orig.to_user_id,
                jsonb_build_object('id', orig.id::text), 0)
        RETURNING * INTO msg;
    UPDATE rtw_messages SET redacted_by = msg.id WHERE id = orig.id;
END $$;

-- stream_id '*': every stream (not a valid stream id, so no clash).
-- until NULL: until unbanned.
CREATE TABLE rtw_bans (
    user_id    text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    stream_id  text        NOT NULL DEFAULT '*'
               CHECK (stream_id = '*' OR stream_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    until      timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, stream_id)
);

-- True when user p_user may not post to or subscribe to p_stream now.
-- rtw-fcgi calls it on every POST. PL/pgSQL, not SQL: a SQL function
-- whose body holds a subquery is not inlined, and was planned again at
-- every call (about 3 times the cost of the query itself); PL/pgSQL keeps
-- the plan for the session.
CREATE FUNCTION rtw_banned(p_user text, p_stream text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM rtw_bans
                   WHERE user_id = p_user AND stream_id IN (p_stream, '*')
                   AND (until IS NULL OR until > now()));
END $$;

CREATE FUNCTION rtw_bans_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rtw_bans', '');
    RETURN NULL;
END $$;

-- Unbans notify too: rtw-sse then admits the user's new connections.
CREATE TRIGGER rtw_bans_notify AFTER INSERT OR UPDATE OR DELETE ON rtw_bans
    FOR EACH STATEMENT EXECUTE FUNCTION rtw_bans_notify();

-- The documented views (sql/005) never show a redacted message: the one
-- condition sql/005 left a place for. Redact rows are not broadcasts, so
-- rtw_broadcasts never shows them either.
CREATE OR REPLACE VIEW rtw_broadcasts WITH (security_barrier) AS
SELECT m.id, m.xid, m.stream_id, m.widget_key, m.author_id, m.message, m.ts, m.created_at
  FROM rtw_messages m
 WHERE m.type = 'broadcast'
   AND m.redacted_by IS NULL
   AND m.xid < rtw_horizon();

-- Counts leave redacted messages out; redactions are counted on their own
-- (a new last column: CREATE OR REPLACE VIEW may only add at the end).
CREATE OR REPLACE VIEW rtw_stream_stats WITH (security_barrier) AS
SELECT m.stream_id,
       count(*) FILTER (WHERE m.type = 'broadcast' AND m.redacted_by IS NULL) AS broadcasts,
       count(*) FILTER (WHERE m.type = 'private' AND m.redacted_by IS NULL) AS privates,
       count(*) FILTER (WHERE m.type = 'webhook' AND m.redacted_by IS NULL) AS webhook_results,
       count(DISTINCT m.author_id) FILTER (WHERE m.type = 'broadcast' AND m.redacted_by IS NULL) AS broadcast_authors,
       count(DISTINCT m.widget_key) AS widgets,
       min(m.created_at) AS first_at,
       max(m.created_at) AS last_at,
       max(m.ts) AS last_ts,
       count(*) FILTER (WHERE m.type = 'redact') AS redactions
  FROM rtw_messages m
 WHERE m.xid < rtw_horizon()
 GROUP BY m.stream_id;
