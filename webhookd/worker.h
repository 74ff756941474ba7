/*
 * worker.h: the rtw-webhookd context and the life of a claimed job:
 * claim (SKIP LOCKED, leased), call (fetch.c), record (retry, final state
 * plus the result message in one statement, or release), maintenance and
 * retention. All of it runs on the one loop of the daemon.
 */
#ifndef WHK_WORKER_H
#define WHK_WORKER_H

#include "buf.h"
#include "cfg.h"
#include "db.h"
#include "job.h"
#include "loop.h"
#include "metrics.h"

#include <curl/curl.h>

struct whk_job {
	struct whk_job *prev, *next;
	struct whk_worker *w;
	enum whk_job_state state;
	bool recording; /* its retry/final/release statement is queued */
	bool in_curl;	/* easy handle added to the multi */
	/* the claimed row */
	char id[24];
	char attempts_text[16];
	int attempts;
	char *url, *method, *headers_json, *body_json, *stream_id, *widget_key, *author_id, *widget_hosts_json;
	double ts;
	/* the call */
	CURL *easy;
	CURLU *cu;
	bool addr_refused; /* the open-socket check refused a peer address */
	char refuse_why[160];
	struct curl_slist *hdrs;
	char *req_body;
	size_t req_len;
	struct rtw_buf resp; /* the response body, at most webhook.max_response bytes */
	char *url_host;	     /* curl's host of the URL (curl_free), for webhook.allow_hosts */
	uint64_t started_ms;
	int64_t duration_ms;
	struct whk_attempt at;
	char curl_err[CURL_ERROR_SIZE];
};

#define WHK_CALL_BUCKETS 10

struct whk_metrics {
	uint64_t succeeded, failed, retried, refused, released, claimed, lease_recovered;
	double claim_lag_last_s, claim_lag_max_s;
	/* calls curl finished (any outcome): duration histogram, counted by
	 * fetch.c on the bounds whk_call_bounds, shown by health.c */
	uint64_t call_bucket[WHK_CALL_BUCKETS + 1]; /* not cumulative; last: +Inf */
	double call_sum_s;
	/* the queue as the last sample saw it (worker.c, every WHK_QUEUE_MS):
	 * queued jobs (at most WHK_QUEUE_CAP), and how long the most overdue
	 * one has been due; -1 before the first sample */
	double queue_depth, queue_oldest_due_s;
};

/* Upper bounds (seconds) of rtw_webhookd_call_duration_seconds (fetch.c). */
extern const struct rtw_hist_bounds whk_call_bounds;

struct whk_fetch;

struct whk_worker {
	const struct rtw_cfg *cfg;
	struct rtw_loop loop;
	struct whk_db db;
	struct whk_fetch *fetch;
	char me[96]; /* leased_by: host:pid:random */
	struct whk_job *jobs;
	int n_jobs;
	bool claim_pending, claim_again;
	bool stopping;
	uint64_t stop_deadline_ms, exit_deadline_ms;
	uint64_t next_poll_ms, next_maint_ms, next_retention_ms, next_queue_ms;
	bool maint_pending, retention_pending, queue_pending;
	struct whk_metrics m;
};

/* Claims due jobs when there is room and nothing else is claiming. */
void whk_worker_claim(struct whk_worker *w);

/* The fetcher's report: the attempt ended (job->at filled). */
void whk_worker_call_done(struct whk_job *job);

/* Periodic work: due retries (claim), lease recovery, retention. */
void whk_worker_tick(struct whk_worker *w, uint64_t now_ms);

/* SIGTERM: stop claiming; after the grace period release what is left. */
void whk_worker_stop(struct whk_worker *w, uint64_t grace_ms);

/* True when the worker has stopped and nothing is left to record. */
bool whk_worker_done(struct whk_worker *w);

#endif
