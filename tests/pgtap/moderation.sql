-- tests/pgtap/moderation.sql: redaction and bans of sql/012_moderation.sql
-- within one transaction; tests/integration/test_moderation.py covers
-- delivery (rtw-sse) and the HTTP answers (rtw-fcgi).
BEGIN;
SELECT plan(20);

SELECT has_column('rtw_messages', 'redacted_by');
SELECT has_table('rtw_bans');
SELECT has_column('rtw_stream_stats', 'redactions');
SELECT col_is_pk('rtw_bans', ARRAY['user_id', 'stream_id']);
SELECT trigger_is('rtw_bans', 'rtw_bans_notify', 'rtw_bans_notify');

INSERT INTO rtw_messages (stream_id, type, widget_key, author_id, to_user_id, message)
VALUES ('mod1', 'broadcast', '00000000-0000-4000-8000-000000000001', 'alice', NULL, '"hello"'),
       ('mod1', 'private', '00000000-0000-4000-8000-000000000001', 'alice', 'bob', '"psst"');
CREATE TEMP TABLE ids AS
    SELECT (SELECT id FROM rtw_messages WHERE stream_id = 'mod1' AND type = 'broadcast') AS b,
           (SELECT id FROM rtw_messages WHERE stream_id = 'mod1' AND type = 'private') AS p;

SELECT is((SELECT status FROM rtw_redact('mod1', (SELECT b FROM ids), 'mallory', false)), 403,
          'someone else may not redact');
SELECT is((SELECT status FROM rtw_redact('other', (SELECT b FROM ids), 'alice', false)), 404,
          'a message of another stream is not found');
SELECT is((SELECT status FROM rtw_redact('mod1', -1, 'alice', true)), 404, 'an unknown id is not found');
SELECT is((SELECT redacted_by FROM rtw_messages WHERE id = (SELECT b FROM ids)), NULL,
          'refusals change nothing');

CREATE TEMP TABLE r1 AS SELECT status, (msg).* FROM rtw_redact('mod1', (SELECT b FROM ids), 'alice', false);
SELECT is((SELECT status FROM r1), 200, 'the author may redact');
SELECT is((SELECT type FROM r1), 'redact', 'the answer is a redact row');
SELECT is((SELECT message FROM r1), jsonb_build_object('id', (SELECT b FROM ids)::text),
          'it names the redacted id');
SELECT is((SELECT to_user_id FROM r1), NULL, 'a broadcast''s redact goes to everyone');
SELECT is((SELECT redacted_by FROM rtw_messages WHERE id = (SELECT b FROM ids)), (SELECT id FROM r1),
          'the original is marked');
SELECT is((SELECT (msg).id FROM rtw_redact('mod1', (SELECT b FROM ids), 'root', true)), (SELECT id FROM r1),
          'redacting twice answers the first redact');
SELECT is((SELECT status FROM rtw_redact('mod1', (SELECT id FROM r1), 'alice', true)), 404,
          'a redact row itself cannot be redacted');

SELECT is((SELECT (msg).to_user_id FROM rtw_redact('mod1', (SELECT p FROM ids), 'root', true)), 'bob',
          'an admin may redact; a private''s redact goes to its addressee');

INSERT INTO rtw_bans (user_id, stream_id) VALUES ('mallory', 'mod1');
INSERT INTO rtw_bans (user_id, until) VALUES ('eve', now() - interval '1 second');
SELECT ok(rtw_banned('mallory', 'mod1') AND NOT rtw_banned('mallory', 'mod2'), 'a stream ban holds on its stream only');
SELECT ok(NOT rtw_banned('eve', 'mod1'), 'an expired ban no longer holds');
INSERT INTO rtw_bans (user_id) VALUES ('trent');
SELECT ok(rtw_banned('trent', 'anything'), 'a ban without a stream holds everywhere');

SELECT * FROM finish();
ROLLBACK;
