-- 004_webhook_fairness.sql: indexes for the webhook fair share: the
-- claim counts running jobs per widget and per author
-- (webhook.widget_max_running, webhook.author_max_running), and rtw-fcgi
-- counts queued jobs per widget and per author before it queues one more
-- (webhook.widget_max_queued, webhook.author_max_queued: 429 above).
CREATE INDEX rtw_webhook_jobs_widget_active ON rtw_webhook_jobs (widget_key, status)
    WHERE status IN ('queued', 'running');
CREATE INDEX rtw_webhook_jobs_author_active ON rtw_webhook_jobs (author_id, status)
    WHERE status IN ('queued', 'running');
