-- tests/pgtap/publish.sql: rtw_publish() (sql/006_publish.sql): what it
-- stores and returns, every refusal with its code, SQLSTATE and DETAIL
-- (the contract's error JSON, with "index" in an array), all or nothing,
-- and that it runs inside the caller's transaction (a rollback to a
-- savepoint takes the message back).
BEGIN;
SELECT plan(54);

INSERT INTO rtw_widgets (widget_key, name) VALUES ('6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'on');
INSERT INTO rtw_widgets (widget_key, name, enabled) VALUES ('00000000-0000-4000-8000-000000000002', 'off', false);

-- A valid message with one field replaced (or removed, when v is NULL).
CREATE FUNCTION pg_temp.msg(k text DEFAULT NULL, v jsonb DEFAULT NULL) RETURNS jsonb LANGUAGE sql AS $$
    SELECT CASE WHEN k IS NULL THEN b WHEN v IS NULL THEN b - k ELSE b || jsonb_build_object(k, v) END
    FROM (SELECT '{"stream_id":"pg-1","type":"broadcast","widget_key":"6B9F652A-63FD-47D7-A3BC-418C1096EB8C",
                  "author_id":"shop","timestamp":12.5,"message":{"price":10}}'::jsonb AS b) s
$$;

-- The DETAIL of the error a call raises (NULL when it raises none).
CREATE FUNCTION pg_temp.detail(m jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
    PERFORM rtw_publish(m);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RETURN d::jsonb;
END $$;

CREATE FUNCTION pg_temp.n() RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FROM rtw_messages WHERE stream_id LIKE 'pg-%'
$$;

-- one message: stored, and returned in the standard format
SELECT is((SELECT rtw_publish(pg_temp.msg()) - 'id' - 'created_at'),
          '{"stream_id":"pg-1","type":"broadcast","widget_key":"6b9f652a-63fd-47d7-a3bc-418c1096eb8c",
            "author_id":"shop","timestamp":12.5,"message":{"price":10}}'::jsonb,
          'a broadcast is returned as stored, widget_key canonical');
SELECT is(pg_temp.n(), 1::bigint, 'the broadcast is stored');
CREATE TEMP TABLE pub AS SELECT rtw_publish(pg_temp.msg()) AS r;
SELECT ok((SELECT (r ->> 'id')::bigint = (SELECT max(id) FROM rtw_messages)
             AND r ->> 'created_at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' FROM pub),
          'id is the stored row''s, created_at RFC 3339');
SELECT is((SELECT rtw_publish(pg_temp.msg('type', '"private"') || '{"to_user_id":"u-3"}') ->> 'to_user_id'),
          'u-3', 'a private keeps its addressee');
SELECT is((SELECT to_user_id FROM rtw_messages ORDER BY id DESC LIMIT 1), 'u-3', 'and stores it');
SELECT is((SELECT rtw_publish('pg-2', '6b9f652a-63fd-47d7-a3bc-418c1096eb8c', 'shop', '"x"', 3) ->> 'stream_id'),
          'pg-2', 'the positional form publishes a broadcast');

-- an array: all, in order, returned in order
SELECT is((SELECT jsonb_agg(e -> 'message' ORDER BY o)
           FROM jsonb_array_elements(rtw_publish(jsonb_build_array(pg_temp.msg('message', '1'),
                pg_temp.msg('message', '2'), pg_temp.msg('message', '3')))) WITH ORDINALITY AS x(e, o)),
          '[1,2,3]'::jsonb, 'an array is returned in its order');
SELECT is((SELECT array_agg(message ORDER BY xid, id) FROM rtw_messages WHERE id > (SELECT max(id) - 3 FROM rtw_messages)),
          ARRAY['1', '2', '3']::jsonb[], 'and stored in stream order');

-- all or nothing: the third message is refused, the first two are not kept
SELECT is(pg_temp.detail(jsonb_build_array(pg_temp.msg(), pg_temp.msg(), pg_temp.msg('timestamp', '-1'))),
          '{"error":{"code":"invalid_field","field":"timestamp","index":2,
             "message":"timestamp must be a finite number >= 0"}}'::jsonb,
          'a refused array names the index of the first bad message');
SELECT is(pg_temp.n(), 7::bigint, 'nothing of the refused array is stored');
SELECT is(pg_temp.detail(jsonb_build_array(pg_temp.msg('type', '"webhook"'), pg_temp.msg('foo', '1'))) -> 'error' -> 'index',
          '0'::jsonb, 'the first bad message is the one reported');

-- every code, with its SQLSTATE and message prefix
SELECT throws_ok($$SELECT rtw_publish('[1]')$$, '22P02', 'invalid_json: a message must be a json object', 'invalid_json: not an object');
SELECT throws_ok($$SELECT rtw_publish('"text"')$$, '22P02', NULL, 'invalid_json: a bare string');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('id', '"1"'))$$, '22023', 'unexpected_field: id is set by the server', 'unexpected_field: id');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('created_at', '"x"'))$$, '22023', 'unexpected_field: created_at is set by the server', 'unexpected_field: created_at');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('colour', '"red"'))$$, '22023', 'unexpected_field: unrecognized field "colour"', 'unexpected_field: an invented key');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('to_user_id', 'null'))$$, '22023', 'unexpected_field: to_user_id is not allowed for type broadcast', 'unexpected_field: to_user_id on a broadcast, even null');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type'))$$, '22004', 'missing_field: type is required', 'missing_field: type');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '1'))$$, '22023', 'invalid_field: type must be a string', 'invalid_field: type not a string');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '"init"'))$$, '22023', 'unknown_type: type init is sent by the server only', 'unknown_type: init');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '"shout"'))$$, '22023', 'unknown_type: type must be broadcast, private, webhook or request', 'unknown_type: unknown');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '"webhook"'))$$, '22023', 'invalid_field: a batch holds broadcast and private messages only, not webhook', 'invalid_field: webhook');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '"request"'))$$, '22023', 'invalid_field: a batch holds broadcast and private messages only, not request', 'invalid_field: request');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('stream_id'))$$, '22004', 'missing_field: stream_id is required in a batch', 'missing_field: stream_id');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('stream_id', '7'))$$, '22023', 'invalid_field: stream_id must be a string', 'invalid_field: stream_id not a string');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('stream_id', '"a/b"'))$$, '22023', NULL, 'invalid_field: stream_id with a slash');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('stream_id', to_jsonb(repeat('s', 129))))$$, '22023', NULL, 'invalid_field: stream_id too long');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('widget_key'))$$, '22004', 'missing_field: widget_key is required', 'missing_field: widget_key');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('widget_key', '"not-a-uuid"'))$$, '22023', 'invalid_field: widget_key must be a UUID', 'invalid_field: widget_key');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('widget_key', '"00000000-0000-4000-8000-000000000001"'))$$, '42704', 'unknown_widget: widget_key is not a registered, enabled widget', 'unknown_widget: unregistered');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('widget_key', '"00000000-0000-4000-8000-000000000002"'))$$, '42704', NULL, 'unknown_widget: disabled');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('author_id'))$$, '22004', 'missing_field: author_id is required in rtw_publish', 'missing_field: author_id');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('author_id', '"a b"'))$$, '22023', NULL, 'invalid_field: author_id with a space');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('author_id', '""'))$$, '22023', NULL, 'invalid_field: empty author_id');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('author_id', to_jsonb(repeat('a', 129))))$$, '22023', NULL, 'invalid_field: author_id too long');
SELECT ok(rtw_publish_user_id_ok(to_jsonb(repeat('a', 126) || '!~')), 'an author_id of 128 characters of the set is valid');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '"private"'))$$, '22004', 'missing_field: to_user_id is required for type private', 'missing_field: to_user_id');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('type', '"private"') || '{"to_user_id":["u"]}')$$, '22023', NULL, 'invalid_field: to_user_id not a string');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('message'))$$, '22004', 'missing_field: message is required for type broadcast', 'missing_field: message');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('message', 'null'))$$, '22004', NULL, 'missing_field: message null');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('timestamp'))$$, '22004', 'missing_field: timestamp is required for type broadcast', 'missing_field: timestamp');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('timestamp', '"12"'))$$, '22023', 'invalid_field: timestamp must be a number', 'invalid_field: timestamp a string');
SELECT throws_ok($$SELECT rtw_publish(pg_temp.msg('timestamp', '1e400'))$$, '22023', NULL, 'invalid_field: timestamp beyond float8');
SELECT throws_ok($$SELECT rtw_publish('[]')$$, '22023', 'invalid_field: a batch holds 1 to 1000 messages, not 0', 'invalid_field: an empty array');
SELECT throws_ok($$SELECT rtw_publish((SELECT jsonb_agg(pg_temp.msg()) FROM generate_series(1, 1001)))$$, '22023', NULL, 'invalid_field: 1001 messages');
SELECT is(pg_temp.detail(pg_temp.msg('timestamp', '"12"')),
          '{"error":{"code":"invalid_field","field":"timestamp","message":"timestamp must be a number"}}'::jsonb,
          'one message: the DETAIL is the contract''s error, without index');
SELECT is(pg_temp.n(), 7::bigint, 'no refusal stored anything');

-- the caller's transaction: a rollback takes the message back
SAVEPOINT before_publish;
SELECT lives_ok($$SELECT rtw_publish(pg_temp.msg('stream_id', '"pg-sp"'))$$, 'publishes inside a transaction');
SELECT is((SELECT count(*) FROM rtw_messages WHERE stream_id = 'pg-sp'), 1::bigint, 'the transaction sees its message');
ROLLBACK TO SAVEPOINT before_publish;
SELECT is((SELECT count(*) FROM rtw_messages WHERE stream_id = 'pg-sp'), 0::bigint, 'a rollback stores nothing');

-- the largest array
SELECT is(jsonb_array_length(rtw_publish((SELECT jsonb_agg(pg_temp.msg('stream_id', '"pg-big"')) FROM generate_series(1, 1000)))),
          1000, 'an array of 1000 is published');
SELECT is((SELECT count(*) FROM rtw_messages WHERE stream_id = 'pg-big'), 1000::bigint, 'and stored');
SELECT is((SELECT count(DISTINCT xid) FROM rtw_messages WHERE stream_id = 'pg-big'), 1::bigint,
          'by one transaction (one position in stream order per transaction)');
SELECT ok((SELECT bool_and(message = '{"price":10}') FROM rtw_messages WHERE stream_id = 'pg-big'), 'payloads intact');

SELECT * FROM finish();
ROLLBACK;
