-- tests/pgtap/notify.sql: the wake-up triggers. pg_notify inside a
-- transaction is only delivered at commit, so the test checks that the
-- trigger queued it: pg_notification_queue_usage() cannot see it before
-- commit either, hence the trigger functions are called through a
-- statement and their effect observed via LISTEN in the same session
-- after commit is not possible in one pgTAP transaction. We check the
-- trigger definitions instead, and that the function bodies notify the
-- right channel.
BEGIN;
SELECT plan(6);
SELECT trigger_is('rtw_messages', 'rtw_messages_notify', 'rtw_notify_messages');
SELECT trigger_is('rtw_webhook_jobs', 'rtw_webhook_jobs_notify', 'rtw_notify_jobs');
SELECT ok((SELECT tgtype & 1 = 0 FROM pg_trigger WHERE tgname = 'rtw_messages_notify'),
          'the messages trigger is per statement (one wake-up per insert batch)');
SELECT ok((SELECT tgtype & 4 = 4 FROM pg_trigger WHERE tgname = 'rtw_messages_notify'),
          'the messages trigger fires on INSERT');
SELECT ok(position('rtw_messages' in prosrc) > 0, 'rtw_notify_messages notifies rtw_messages')
  FROM pg_proc WHERE proname = 'rtw_notify_messages';
SELECT ok(position('rtw_jobs' in prosrc) > 0, 'rtw_notify_jobs notifies rtw_jobs')
  FROM pg_proc WHERE proname = 'rtw_notify_jobs';
SELECT * FROM finish();
ROLLBACK;
