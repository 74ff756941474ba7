-- 001_init.sql: the first schema of rtw: widget registry, stored messages,
-- idempotency records and webhook jobs, with the NOTIFY triggers that wake
-- rtw-sse and rtw-webhookd in the same transaction as the insert.
--
-- Stream order. Ids come from one identity sequence, but sequence values
-- are not handed out in commit order, so "id > last seen" would skip rows
-- that commit late. Each row records the id of the transaction that wrote
-- it (xid8); readers walk (xid, id) and only up to the settled horizon
-- pg_snapshot_xmin(pg_current_snapshot()), below which no transaction can
-- still commit. That order is the same for every reader, ever.

CREATE TABLE rtw_widgets (
    widget_key      uuid        PRIMARY KEY,
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    enabled         boolean     NOT NULL DEFAULT true,
    allowed_origins text[]      NOT NULL DEFAULT '{}',
    webhook_hosts   text[]      NOT NULL DEFAULT '{}',   -- empty: any public host
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- No foreign key to rtw_widgets: a hot stream's inserts would all take
-- KEY SHARE locks on one widget row (multixacts). rtw-fcgi checks the
-- widget before it writes.
CREATE TABLE rtw_messages (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid         xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id   text        NOT NULL CHECK (stream_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    type        text        NOT NULL CHECK (type IN ('broadcast', 'private', 'webhook')),
    widget_key  uuid        NOT NULL,
    author_id   text        NOT NULL CHECK (length(author_id) BETWEEN 1 AND 128),
    to_user_id  text        CHECK (length(to_user_id) BETWEEN 1 AND 128),
    message     jsonb       NOT NULL CHECK (message <> 'null'::jsonb),
    ts          double precision NOT NULL DEFAULT 0
                CHECK (ts >= 0 AND ts < 'Infinity'::double precision),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- a broadcast has no addressee; a private or webhook result has one
    CHECK ((type = 'broadcast') = (to_user_id IS NULL))
);

-- rtw-sse tails every stream at once in (xid, id) order.
CREATE INDEX rtw_messages_order ON rtw_messages (xid, id);
-- resume of one stream after a Last-Event-ID
CREATE INDEX rtw_messages_stream ON rtw_messages (stream_id, xid, id);
-- history (request): one widget's broadcasts of one stream
CREATE INDEX rtw_messages_history ON rtw_messages (stream_id, widget_key, xid, id)
    WHERE type = 'broadcast';

-- Idempotency-Key records: one per (stream, author, key), written in the
-- same transaction as the message, holding the first answer.
CREATE TABLE rtw_idempotency (
    stream_id     text        NOT NULL,
    author_id     text        NOT NULL,
    key           text        NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    request_hash  bytea       NOT NULL,
    status        smallint    NOT NULL,
    response      text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, author_id, key)
);

CREATE TABLE rtw_webhook_jobs (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id        text        NOT NULL,
    widget_key       uuid        NOT NULL,
    author_id        text        NOT NULL,
    url              text        NOT NULL,
    method           text        NOT NULL DEFAULT 'POST' CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    headers          jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
    body             jsonb,
    ts               double precision NOT NULL DEFAULT 0,
    status           text        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    leased_by        text,
    last_http_status integer,
    last_error       text,
    response_excerpt text,
    result_message_id bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'running') = (lease_until IS NOT NULL))
);

CREATE INDEX rtw_webhook_jobs_due ON rtw_webhook_jobs (run_at) WHERE status = 'queued';
CREATE INDEX rtw_webhook_jobs_leases ON rtw_webhook_jobs (lease_until) WHERE status = 'running';
CREATE INDEX rtw_webhook_jobs_finished ON rtw_webhook_jobs (finished_at) WHERE status IN ('succeeded', 'failed');

-- Wake-ups. Payloads stay empty: identical notifications of one
-- transaction fold into one, and the table is the truth anyway.
CREATE FUNCTION rtw_notify_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rtw_messages', '');
    RETURN NULL;
END $$;

CREATE TRIGGER rtw_messages_notify AFTER INSERT ON rtw_messages
    FOR EACH STATEMENT EXECUTE FUNCTION rtw_notify_messages();

CREATE FUNCTION rtw_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rtw_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER rtw_webhook_jobs_notify AFTER INSERT ON rtw_webhook_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION rtw_notify_jobs();

-- The settled horizon: every transaction below it has ended, so rows with
-- a smaller xid can no longer appear. Readers deliver only below it.
CREATE FUNCTION rtw_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    SELECT pg_snapshot_xmin(pg_current_snapshot())
$$;

-- created_at in the contract's form: RFC 3339 UTC with microseconds.
CREATE FUNCTION rtw_rfc3339(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
