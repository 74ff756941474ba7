-- 010_idempotency_retention.sql: the index rtw-webhookd's retention step
-- uses to delete Idempotency-Key records older than
-- retention.idempotency_hours, a few thousand at a time, without a scan of
-- the whole table (a key only has to outlive its client's retries).
CREATE INDEX rtw_idempotency_created ON rtw_idempotency (created_at);
