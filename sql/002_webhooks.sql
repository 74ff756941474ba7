-- 002_webhooks.sql: what rtw-webhookd records besides 001's columns: the
-- duration of the last attempt (milliseconds, connect to last byte).
ALTER TABLE rtw_webhook_jobs ADD COLUMN last_duration_ms integer;
