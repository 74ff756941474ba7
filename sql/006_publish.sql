-- 006_publish.sql: rtw_publish(), backend publishing from inside PostgreSQL.
--
-- The platform's own transactions may publish: the rows are plain inserts
-- into rtw_messages, so the NOTIFY trigger and the settled horizon deliver
-- them when that transaction commits, in stream order, and a rollback
-- leaves nothing. Messages are checked like POST /v1/messages checks them
-- (lib/msg.c, fcgi/publish.c), in the same order; a refusal raises an
-- error whose message starts with the contract's code and whose DETAIL is
-- the contract's JSON error (with "index" for an array). doc/publishing.md
-- has the SQLSTATE of each code.

-- Raises the refusal of message idx (NULL: not part of an array).
CREATE FUNCTION rtw_publish_fail(code text, field text, msg text, idx integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    err jsonb := jsonb_build_object('code', code, 'message', msg);
BEGIN
    IF field IS NOT NULL THEN
        err := err || jsonb_build_object('field', field);
    END IF;
    IF idx IS NOT NULL THEN
        err := err || jsonb_build_object('index', idx);
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = CASE code WHEN 'invalid_json' THEN '22P02'
                            WHEN 'missing_field' THEN '22004'
                            WHEN 'unknown_widget' THEN '42704'
                            ELSE '22023' END,
        MESSAGE = code || ': ' || msg,
        DETAIL = jsonb_build_object('error', err)::text,
        COLUMN = coalesce(field, '');
END $$;

-- An author or addressee id: 1 to 128 printable ASCII characters without
-- spaces, quotes or backslashes (msg_valid_user_id).
CREATE FUNCTION rtw_publish_user_id_ok(v jsonb) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(v) = 'string' AND (v #>> '{}') ~ '^[!#-\[\]-~]{1,128}$'
$$;

-- The string at key of m: missing_field (with the text missing) when it is
-- absent or null, invalid_field when it is not a string.
CREATE FUNCTION rtw_publish_string(m jsonb, key text, missing text, idx integer) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF m -> key IS NULL OR m -> key = 'null' THEN
        PERFORM rtw_publish_fail('missing_field', key, missing, idx);
    ELSIF jsonb_typeof(m -> key) <> 'string' THEN
        PERFORM rtw_publish_fail('invalid_field', key, key || ' must be a string', idx);
    END IF;
    RETURN m ->> key;
END $$;

-- Checks message m (index idx of an array, or NULL) and returns it as the
-- row to insert: stream_id, type, widget_key (canonical), author_id,
-- to_user_id, message, ts. Raises the first refusal, in lib/msg.c's order.
CREATE FUNCTION rtw_publish_check(m jsonb, idx integer,
    OUT stream_id text, OUT type text, OUT widget_key uuid, OUT author_id text,
    OUT to_user_id text, OUT message jsonb, OUT ts double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    k text;
    v jsonb;
    n numeric;
    enabled boolean;
BEGIN
    -- 1. one object
    IF m IS NULL OR jsonb_typeof(m) <> 'object' THEN
        PERFORM rtw_publish_fail('invalid_json', NULL, 'a message must be a json object', idx);
    END IF;
    -- 2. keys (jsonb keeps no body order: the first in jsonb's order)
    SELECT key INTO k FROM jsonb_object_keys(m) AS key
    WHERE key NOT IN ('stream_id', 'author_id', 'to_user_id', 'message', 'timestamp', 'type', 'widget_key')
    LIMIT 1;
    IF k IN ('id', 'created_at') THEN
        PERFORM rtw_publish_fail('unexpected_field', k, k || ' is set by the server', idx);
    ELSIF k IS NOT NULL THEN
        PERFORM rtw_publish_fail('unexpected_field', left(k, 128), format('unrecognized field "%s"', left(k, 128)), idx);
    END IF;
    -- 3. type: what a batch may hold
    type := rtw_publish_string(m, 'type', 'type is required', idx);
    IF type = 'init' THEN
        PERFORM rtw_publish_fail('unknown_type', 'type', 'type init is sent by the server only', idx);
    ELSIF type IN ('webhook', 'request') THEN
        PERFORM rtw_publish_fail('invalid_field', 'type',
            'a batch holds broadcast and private messages only, not ' || type, idx);
    ELSIF type NOT IN ('broadcast', 'private') THEN
        PERFORM rtw_publish_fail('unknown_type', 'type', 'type must be broadcast, private, webhook or request', idx);
    END IF;
    -- 4. stream
    stream_id := rtw_publish_string(m, 'stream_id', 'stream_id is required in a batch', idx);
    IF stream_id !~ '^[A-Za-z0-9._:-]{1,128}$' THEN
        PERFORM rtw_publish_fail('invalid_field', 'stream_id',
            'stream id must be 1 to 128 characters of A-Z, a-z, 0-9, ".", "_", ":" and "-"', idx);
    END IF;
    -- 5. widget_key
    v := m -> 'widget_key';
    IF v IS NULL OR v = 'null' THEN
        PERFORM rtw_publish_fail('missing_field', 'widget_key', 'widget_key is required', idx);
    ELSIF jsonb_typeof(v) <> 'string'
       OR (v #>> '{}') !~ '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$' THEN
        PERFORM rtw_publish_fail('invalid_field', 'widget_key', 'widget_key must be a UUID', idx);
    END IF;
    widget_key := (v #>> '{}')::uuid;
    --    author_id: no token here to take it from
    v := m -> 'author_id';
    IF v IS NULL OR v = 'null' THEN
        PERFORM rtw_publish_fail('missing_field', 'author_id', 'author_id is required in rtw_publish', idx);
    ELSIF NOT rtw_publish_user_id_ok(v) THEN
        PERFORM rtw_publish_fail('invalid_field', 'author_id',
            'author_id must be 1 to 128 printable ASCII characters, without spaces, quotes or backslashes', idx);
    END IF;
    author_id := v #>> '{}';
    --    to_user_id: a private needs one; on a broadcast even null is refused
    v := m -> 'to_user_id';
    IF type = 'private' THEN
        IF v IS NULL OR v = 'null' THEN
            PERFORM rtw_publish_fail('missing_field', 'to_user_id', 'to_user_id is required for type private', idx);
        ELSIF NOT rtw_publish_user_id_ok(v) THEN
            PERFORM rtw_publish_fail('invalid_field', 'to_user_id',
                'to_user_id must be 1 to 128 printable ASCII characters, without spaces, quotes or backslashes', idx);
        END IF;
        to_user_id := v #>> '{}';
    ELSIF v IS NOT NULL THEN
        PERFORM rtw_publish_fail('unexpected_field', 'to_user_id', 'to_user_id is not allowed for type ' || type, idx);
    END IF;
    --    message (jsonb cannot hold "\u0000", so no NUL check)
    message := m -> 'message';
    IF message IS NULL OR message = 'null' THEN
        PERFORM rtw_publish_fail('missing_field', 'message', 'message is required for type ' || type, idx);
    END IF;
    --    timestamp: a finite float8 >= 0
    v := m -> 'timestamp';
    IF v IS NULL OR v = 'null' THEN
        PERFORM rtw_publish_fail('missing_field', 'timestamp', 'timestamp is required for type ' || type, idx);
    ELSIF jsonb_typeof(v) <> 'number' THEN
        PERFORM rtw_publish_fail('invalid_field', 'timestamp', 'timestamp must be a number', idx);
    END IF;
    n := (v #>> '{}')::numeric;
    -- below the smallest normal float8 a cast may underflow: such a video
    -- time is 0 in every sense but the cast's
    IF n < 0 OR n > 1.7976931348623157e308 OR (n > 0 AND n < 2.2250738585072014e-308) THEN
        PERFORM rtw_publish_fail('invalid_field', 'timestamp', 'timestamp must be a finite number >= 0', idx);
    END IF;
    ts := n::double precision;
    -- the registry, as rtw-fcgi checks it before writing
    SELECT w.enabled INTO enabled FROM rtw_widgets w WHERE w.widget_key = rtw_publish_check.widget_key;
    IF enabled IS NOT TRUE THEN
        PERFORM rtw_publish_fail('unknown_widget', 'widget_key', 'widget_key is not a registered, enabled widget', idx);
    END IF;
END $$;

-- A stored row in the standard format (to_user_id only on a private).
CREATE FUNCTION rtw_publish_json(r rtw_messages) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', r.id::text, 'stream_id', r.stream_id, 'author_id', r.author_id,
                              'message', r.message, 'timestamp', r.ts, 'type', r.type,
                              'widget_key', r.widget_key::text, 'created_at', rtw_rfc3339(r.created_at))
           || CASE WHEN r.to_user_id IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('to_user_id', r.to_user_id) END
$$;

-- rtw_publish(message): publishes one message (a JSON object in the
-- contract's format, with stream_id and author_id) and returns it as
-- stored; or an array of 1 to 1000 of them, all or none, returning the
-- stored array in order. Runs in the caller's transaction: subscribers
-- see the messages when it commits; a rollback leaves nothing.
CREATE FUNCTION rtw_publish(m jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    batch jsonb := CASE WHEN jsonb_typeof(m) = 'array' THEN m ELSE jsonb_build_array(m) END;
    n integer := jsonb_array_length(batch);
    res jsonb;
BEGIN
    IF jsonb_typeof(m) = 'array' AND (n < 1 OR n > 1000) THEN
        PERFORM rtw_publish_fail('invalid_field', NULL, format('a batch holds 1 to 1000 messages, not %s', n), NULL);
    END IF;
    -- Every message is checked, in order, before the first row is
    -- written: the sort reads all of c first. A refusal aborts the
    -- statement, so nothing of the array is kept either way.
    -- LATERAL, not (rtw_publish_check(...)).*, which would call the
    -- function once per output column.
    WITH c AS MATERIALIZED (
        SELECT e.ord, k.*
        FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, ord),
             LATERAL rtw_publish_check(e.value,
                                       CASE WHEN jsonb_typeof(m) = 'array' THEN (e.ord - 1)::integer END) AS k
    ), ins AS (
        INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message, ts)
        SELECT c.stream_id, c.type, c.widget_key, c.author_id, c.to_user_id, c.message, c.ts
        FROM c ORDER BY c.ord
        RETURNING *
    )
    SELECT jsonb_agg(rtw_publish_json(ins) ORDER BY ins.id) INTO res FROM ins;
    RETURN CASE WHEN jsonb_typeof(m) = 'array' THEN res ELSE res -> 0 END;
END $$;

-- The same for one message given field by field.
CREATE FUNCTION rtw_publish(stream_id text, widget_key text, author_id text, message jsonb,
                            "timestamp" double precision DEFAULT 0, type text DEFAULT 'broadcast',
                            to_user_id text DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT rtw_publish(jsonb_strip_nulls(jsonb_build_object(
               'stream_id', stream_id, 'widget_key', widget_key, 'author_id', author_id,
               'timestamp', "timestamp", 'type', type, 'to_user_id', to_user_id))
           || jsonb_build_object('message', message))
$$;
