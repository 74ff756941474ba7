/*
 * worker.c: owns the jobs of one rtw-webhookd process from claim to their
 * last write: the claim (fair share per widget and author, SKIP LOCKED,
 * leased, committed before any call),
 * the one transition function, the retry/final/release statements (the
 * final one also inserts the result message, atomically), lease recovery
 * and retention. Runs on the loop; every statement is parameterized and
 * guarded by (leased_by, attempts) so a lost lease is never overwritten.
 */
#include "config.h"
#include "worker.h"
#include "fetch.h"
#include "log.h"
#include "pgutil.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The claim picks fairly (sql/004_webhook_fairness.sql has its indexes):
 * a widget or author at its running cap (webhook.widget_max_running,
 * webhook.author_max_running; 0: none) gets nothing more, and the due
 * jobs are taken round-robin by widget (every widget's oldest first, then
 * every widget's second...), so one widget's backlog or tarpit target
 * holds at most its cap of slots. wn/an rank a job among its widget's and
 * author's due jobs; rank + running must stay within the cap. Two workers
 * claiming at the same instant may each fill a cap (at most one overshoot
 * per worker, until those calls end).
 * $1 room, $2 me, $3 lease s, $4 widget cap, $5 author cap */
static const char whk__claim_sql[] =
    "WITH due AS (SELECT id, widget_key, author_id, run_at,"
    "   row_number() OVER (PARTITION BY widget_key ORDER BY run_at, id) AS wn,"
    "   row_number() OVER (PARTITION BY author_id ORDER BY run_at, id) AS an"
    "   FROM rtw_webhook_jobs WHERE status = 'queued' AND run_at <= now()),"
    " rw AS (SELECT widget_key, count(*) AS n FROM rtw_webhook_jobs WHERE status = 'running' GROUP BY widget_key),"
    " ra AS (SELECT author_id, count(*) AS n FROM rtw_webhook_jobs WHERE status = 'running' GROUP BY author_id),"
    " pick AS (SELECT d.id FROM due d LEFT JOIN rw ON rw.widget_key = d.widget_key"
    "   LEFT JOIN ra ON ra.author_id = d.author_id"
    "   WHERE ($4::int = 0 OR d.wn + coalesce(rw.n, 0) <= $4::int)"
    "   AND ($5::int = 0 OR d.an + coalesce(ra.n, 0) <= $5::int)"
    "   ORDER BY d.wn, d.run_at, d.id LIMIT $1::int)"
    " UPDATE rtw_webhook_jobs j SET status = 'running',"
    " lease_until = now() + $3::int * interval '1 second', leased_by = $2,"
    " attempts = attempts + 1, started_at = coalesce(started_at, now()), updated_at = now()"
    " WHERE id IN (SELECT id FROM rtw_webhook_jobs WHERE id IN (SELECT id FROM pick) AND status = 'queued'"
    "   FOR UPDATE SKIP LOCKED)"
    " RETURNING id, attempts, url, method, headers::text, body::text, stream_id, widget_key::text,"
    " author_id, ts, greatest(extract(epoch FROM now() - run_at), 0)::float8,"
    " (SELECT array_to_json(w.webhook_hosts)::text FROM rtw_widgets w WHERE w.widget_key = j.widget_key)";

/* $1 id, $2 me, $3 attempts, $4 delay ms, $5 http status, $6 error,
 * $7 excerpt, $8 duration ms */
static const char whk__retry_sql[] =
    "UPDATE rtw_webhook_jobs SET status = 'queued', lease_until = NULL, leased_by = NULL,"
    " run_at = now() + $4::bigint * interval '1 millisecond', last_http_status = $5::int,"
    " last_error = $6, response_excerpt = $7, last_duration_ms = $8::int, updated_at = now()"
    " WHERE id = $1::bigint AND leased_by = $2 AND attempts = $3::int AND status = 'running'";

/* The final state and the result message in one statement (so one
 * transaction): the message id is drawn first so the job row can point at
 * it. $4 status, $5..$8 as above, $9 the result message. */
static const char whk__final_sql[] =
    "WITH j AS (UPDATE rtw_webhook_jobs SET status = $4, lease_until = NULL, leased_by = NULL,"
    "  last_http_status = $5::int, last_error = $6, response_excerpt = $7, last_duration_ms = $8::int,"
    "  finished_at = now(), updated_at = now(),"
    "  result_message_id = nextval(pg_get_serial_sequence('rtw_messages', 'id'))"
    "  WHERE id = $1::bigint AND leased_by = $2 AND attempts = $3::int AND status = 'running'"
    "  RETURNING result_message_id, stream_id, widget_key, author_id, ts)"
    " INSERT INTO rtw_messages (id, stream_id, type, widget_key, author_id, to_user_id, message, ts)"
    " OVERRIDING SYSTEM VALUE"
    " SELECT result_message_id, stream_id, 'webhook', widget_key, author_id, author_id, $9::jsonb, ts FROM j"
    " RETURNING id";

/* Shutdown: the attempt did not happen as far as the row is concerned. */
static const char whk__release_sql[] =
    "UPDATE rtw_webhook_jobs SET status = 'queued', lease_until = NULL, leased_by = NULL,"
    " attempts = greatest(attempts - 1, 0), updated_at = now()"
    " WHERE id = $1::bigint AND leased_by = $2 AND attempts = $3::int AND status = 'running'";

/* Expired leases (a crashed or stuck worker): back to the queue, or
 * failed with a result message once the attempts are used up. */
static const char whk__requeue_sql[] =
    "UPDATE rtw_webhook_jobs SET status = 'queued', lease_until = NULL, leased_by = NULL,"
    " last_error = 'lease expired', updated_at = now()"
    " WHERE id IN (SELECT id FROM rtw_webhook_jobs WHERE status = 'running' AND lease_until < now()"
    "   AND attempts < $1::int LIMIT 1000 FOR UPDATE SKIP LOCKED)";

static const char whk__expire_sql[] =
    "WITH j AS (UPDATE rtw_webhook_jobs SET status = 'failed', lease_until = NULL, leased_by = NULL,"
    "  last_error = 'lease expired', finished_at = now(), updated_at = now(),"
    "  result_message_id = nextval(pg_get_serial_sequence('rtw_messages', 'id'))"
    "  WHERE id IN (SELECT id FROM rtw_webhook_jobs WHERE status = 'running' AND lease_until < now()"
    "   AND attempts >= $1::int LIMIT 1000 FOR UPDATE SKIP LOCKED)"
    "  RETURNING id, url, attempts, last_http_status, result_message_id, stream_id, widget_key, author_id, ts)"
    " INSERT INTO rtw_messages (id, stream_id, type, widget_key, author_id, to_user_id, message, ts)"
    " OVERRIDING SYSTEM VALUE"
    " SELECT result_message_id, stream_id, 'webhook', widget_key, author_id, author_id,"
    "  jsonb_build_object('job_id', id::text, 'url', url, 'status', 'failed', 'http_status', last_http_status,"
    "   'attempts', attempts, 'body', NULL, 'error', 'lease expired'), ts FROM j"
    " RETURNING id";

/* The queue gauges are sampled on this timer, never per scrape (a scraper
 * cannot make rtw-webhookd query more), and the count stops at the cap, so
 * one sample costs at most WHK_QUEUE_CAP index entries. */
#define WHK_QUEUE_MS 5000
#define WHK_QUEUE_CAP "100000"
/* Both halves read the partial index rtw_webhook_jobs_due (status =
 * 'queued'): a capped count, and its first entry. */
static const char whk__queue_sql[] =
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM rtw_webhook_jobs WHERE status = 'queued' LIMIT " WHK_QUEUE_CAP
    ") q), COALESCE(EXTRACT(EPOCH FROM now() - (SELECT min(run_at) FROM rtw_webhook_jobs"
    " WHERE status = 'queued' AND run_at <= now())), 0)";
static const char whk__retention_jobs_sql[] =
    "DELETE FROM rtw_webhook_jobs WHERE id IN (SELECT id FROM rtw_webhook_jobs"
    " WHERE status IN ('succeeded', 'failed') AND finished_at < now() - $1::int * interval '1 day' LIMIT 10000)";

static const char whk__retention_msgs_sql[] = "DELETE FROM rtw_messages WHERE id IN (SELECT id FROM rtw_messages"
					      " WHERE created_at < now() - $1::int * interval '1 day' LIMIT 10000)";

static const char whk__retention_idem_sql[] =
    "DELETE FROM rtw_idempotency WHERE ctid IN (SELECT ctid FROM rtw_idempotency"
    " WHERE created_at < now() - $1::int * interval '1 hour' LIMIT 10000)";

#define WHK_MAINT_MS 1000
#define WHK_RETENTION_MS 60000

static void whk__set_state(struct whk_job *job, enum whk_job_state to)
{
	assert(whk_job_transition_ok(job->state, to));
	log_debug("job %s: %s -> %s", job->id, whk_job_state_name(job->state), whk_job_state_name(to));
	job->state = to;
}

static void whk__job_free(struct whk_job *job)
{
	struct whk_worker *w = job->w;

	if (job->prev)
		job->prev->next = job->next;
	else
		w->jobs = job->next;
	if (job->next)
		job->next->prev = job->prev;
	w->n_jobs--;
	whk_fetch_cleanup(job);
	free(job->url);
	free(job->method);
	free(job->headers_json);
	free(job->body_json);
	free(job->stream_id);
	free(job->widget_key);
	free(job->author_id);
	free(job->widget_hosts_json);
	free(job);
}

static bool whk__ok(PGresult *res, ExecStatusType want, const char *what)
{
	if (!res)
		return false;
	if (PQresultStatus(res) != want) {
		log_error("%s failed: %s", what, PQresultErrorMessage(res));
		return false;
	}
	return true;
}

static void whk__recorded(void *arg, PGresult *res)
{
	struct whk_job *job = arg;
	struct whk_worker *w = job->w;

	if (whk__ok(res,
		    job->state == WHK_JOB_SUCCEEDED || job->state == WHK_JOB_FAILED ? PGRES_TUPLES_OK
										    : PGRES_COMMAND_OK,
		    "recording a webhook job")) {
		bool none =
		    PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) == 0 : strcmp(PQcmdTuples(res), "0") == 0;
		if (none)
			log_warn("job %s: lease lost before its result was recorded", job->id);
		else if (job->state == WHK_JOB_SUCCEEDED)
			w->m.succeeded++;
		else if (job->state == WHK_JOB_FAILED && job->at.refused)
			w->m.refused++;
		else if (job->state == WHK_JOB_FAILED)
			w->m.failed++;
		else if (job->state == WHK_JOB_RETRY_WAIT)
			w->m.retried++;
		else if (job->state == WHK_JOB_RELEASED)
			w->m.released++;
	}
	whk__job_free(job);
	whk_worker_claim(w);
}

/* Queues the job's record statement for its (final or retry) state. */
static void whk__record(struct whk_job *job, int64_t delay_ms)
{
	struct whk_worker *w = job->w;
	const struct rtw_cfg *cfg = w->cfg;
	char status[24] = "", dur[24], delay[24];
	char *excerpt = NULL, *result = NULL;
	const char *p[9];
	int rc = RTW_ERROR;

	snprintf(dur, sizeof(dur), "%" PRId64, job->duration_ms);
	snprintf(delay, sizeof(delay), "%" PRId64, delay_ms);
	if (job->at.http_status > 0)
		snprintf(status, sizeof(status), "%ld", job->at.http_status);
	if (job->resp.len &&
	    !(excerpt = whk_text_excerpt(job->resp.p, job->resp.len, (size_t)cfg->webhook_result_body_max)))
		goto out;
	p[0] = job->id;
	p[1] = w->me;
	p[2] = job->attempts_text;
	job->recording = true;
	switch (job->state) {
	case WHK_JOB_RETRY_WAIT:
		p[3] = delay;
		p[4] = status[0] ? status : NULL;
		p[5] = job->at.error[0] ? job->at.error : NULL;
		p[6] = excerpt;
		p[7] = dur;
		rc = whk_db_query(&w->db, whk__retry_sql, 8, p, whk__recorded, job);
		break;
	case WHK_JOB_SUCCEEDED:
	case WHK_JOB_FAILED: {
		bool ok = job->state == WHK_JOB_SUCCEEDED;
		result =
		    whk_result_message(job->id, job->url, ok, job->at.http_status, job->attempts, job->resp.p,
				       job->resp.len, (size_t)cfg->webhook_result_body_max, ok ? NULL : job->at.error);
		if (!result)
			goto out;
		p[3] = ok ? "succeeded" : "failed";
		p[4] = status[0] ? status : NULL;
		p[5] = !ok && job->at.error[0] ? job->at.error : NULL;
		p[6] = excerpt;
		p[7] = dur;
		p[8] = result;
		rc = whk_db_query(&w->db, whk__final_sql, 9, p, whk__recorded, job);
		break;
	}
	case WHK_JOB_RELEASED: rc = whk_db_query(&w->db, whk__release_sql, 3, p, whk__recorded, job); break;
	default: break;
	}
out:
	free(excerpt);
	free(result);
	if (rc != RTW_OK) {
		/* the lease expires and another pass retries the job */
		log_error("job %s: could not record its %s state", job->id, whk_job_state_name(job->state));
		whk__job_free(job);
	}
}

static void whk__log_outcome(const struct whk_job *job, int64_t delay_ms)
{
	/* the URL may carry secrets in its query: log the job id and status
	 * only. delivery is the X-RTW-Delivery the target saw, so its logs and
	 * ours join on it. */
	const char *outcome = job->state == WHK_JOB_SUCCEEDED	 ? "succeeded"
			      : job->state == WHK_JOB_RETRY_WAIT ? "retry"
								 : "failed";
	char msg[160];
	if (job->state == WHK_JOB_SUCCEEDED)
		snprintf(msg, sizeof(msg), "job %s: succeeded (HTTP %ld, attempt %d, %" PRId64 " ms)", job->id,
			 job->at.http_status, job->attempts, job->duration_ms);
	else if (job->state == WHK_JOB_RETRY_WAIT)
		snprintf(msg, sizeof(msg), "job %s: attempt %d failed, retry in %" PRId64 " ms", job->id, job->attempts,
			 delay_ms);
	else
		snprintf(msg, sizeof(msg), "job %s: failed after %d attempt(s)", job->id, job->attempts);
	json_t *f =
	    json_pack("{s:s, s:s, s:i, s:I, s:I, s:s?, s:I}", "delivery", job->id, "outcome", outcome, "attempt",
		      job->attempts, "http_status", (json_int_t)job->at.http_status, "duration_ms",
		      (json_int_t)job->duration_ms, "error", job->state == WHK_JOB_SUCCEEDED ? NULL : job->at.error,
		      "retry_in_ms", job->state == WHK_JOB_RETRY_WAIT ? (json_int_t)delay_ms : -1);
	if (f && job->state != WHK_JOB_RETRY_WAIT)
		json_object_del(f, "retry_in_ms");
	log_event(LOG_LVL_INFO, msg, f);
	json_decref(f);
}

/* Applies the verdict of the attempt in job->at. */
static void whk__conclude(struct whk_job *job)
{
	struct whk_worker *w = job->w;
	const struct rtw_cfg *cfg = w->cfg;
	int64_t delay = 0;
	uint32_t rnd = 0;

	switch (whk_attempt_verdict(&job->at, job->attempts, cfg->webhook_max_attempts)) {
	case WHK_VERDICT_SUCCEED: whk__set_state(job, WHK_JOB_SUCCEEDED); break;
	case WHK_VERDICT_RETRY:
		if (rtw_random(&rnd, sizeof(rnd)) != RTW_OK)
			rnd = (uint32_t)rtw_now_ms();
		delay = whk_backoff_ms(job->attempts, cfg->webhook_backoff_base_ms, cfg->webhook_backoff_max_ms,
				       job->at.retry_after_s, rnd);
		whk__set_state(job, WHK_JOB_RETRY_WAIT);
		break;
	case WHK_VERDICT_FAIL: whk__set_state(job, WHK_JOB_FAILED); break;
	}
	whk__log_outcome(job, delay);
	whk__record(job, delay);
}

void whk_worker_call_done(struct whk_job *job)
{
	if (job->state != WHK_JOB_RUNNING)
		return;
	whk__conclude(job);
}

static char *whk__dup(PGresult *res, int r, int c)
{
	return PQgetisnull(res, r, c) ? NULL : strdup(PQgetvalue(res, r, c));
}

static void whk__claimed(void *arg, PGresult *res)
{
	struct whk_worker *w = arg;
	int n;

	w->claim_pending = false;
	if (!whk__ok(res, PGRES_TUPLES_OK, "claiming webhook jobs"))
		return;
	n = PQntuples(res);
	for (int r = 0; r < n; r++) {
		struct whk_job *job = calloc(1, sizeof(*job));
		if (!job) {
			log_error("out of memory; job %s waits for its lease to expire", PQgetvalue(res, r, 0));
			continue;
		}
		job->w = w;
		job->state = WHK_JOB_RUNNING;
		snprintf(job->id, sizeof(job->id), "%s", PQgetvalue(res, r, 0));
		snprintf(job->attempts_text, sizeof(job->attempts_text), "%s", PQgetvalue(res, r, 1));
		job->attempts = atoi(job->attempts_text);
		job->url = whk__dup(res, r, 2);
		job->method = whk__dup(res, r, 3);
		job->headers_json = whk__dup(res, r, 4);
		job->body_json = whk__dup(res, r, 5);
		job->stream_id = whk__dup(res, r, 6);
		job->widget_key = whk__dup(res, r, 7);
		job->author_id = whk__dup(res, r, 8);
		job->ts = strtod(PQgetvalue(res, r, 9), NULL);
		double lag = strtod(PQgetvalue(res, r, 10), NULL);
		job->widget_hosts_json = whk__dup(res, r, 11);
		job->next = w->jobs;
		if (w->jobs)
			w->jobs->prev = job;
		w->jobs = job;
		w->n_jobs++;
		w->m.claimed++;
		w->m.claim_lag_last_s = lag;
		if (lag > w->m.claim_lag_max_s)
			w->m.claim_lag_max_s = lag;
		if (!job->url || !job->method || !job->stream_id || !job->widget_key || !job->author_id) {
			snprintf(job->at.error, sizeof(job->at.error), "internal error: %s", "out of memory");
			job->at.net_error = true;
			whk__conclude(job);
			continue;
		}
		log_debug("job %s: claimed (attempt %d)", job->id, job->attempts);
		int rc = whk_fetch_start(w->fetch, job);
		if (rc != RTW_OK) {
			job->duration_ms = (int64_t)(rtw_now_ms() - job->started_ms);
			whk__conclude(job);
		}
	}
	/* a full batch: there may be more due right now */
	if (n > 0)
		w->claim_again = true;
	if (w->claim_again) {
		w->claim_again = false;
		whk_worker_claim(w);
	}
}

void whk_worker_claim(struct whk_worker *w)
{
	char n[16], lease[16], wcap[16], acap[16];
	const char *p[5];
	int room = w->cfg->webhook_concurrency - w->n_jobs;

	if (w->stopping || !whk_db_ready(&w->db))
		return;
	if (w->claim_pending) {
		w->claim_again = true;
		return;
	}
	if (room <= 0)
		return;
	snprintf(n, sizeof(n), "%d", room);
	snprintf(lease, sizeof(lease), "%d", w->cfg->webhook_lease_s);
	p[0] = n;
	p[1] = w->me;
	p[2] = lease;
	snprintf(wcap, sizeof(wcap), "%d", w->cfg->webhook_widget_max_running);
	snprintf(acap, sizeof(acap), "%d", w->cfg->webhook_author_max_running);
	p[3] = wcap;
	p[4] = acap;
	if (whk_db_query(&w->db, whk__claim_sql, 5, p, whk__claimed, w) == RTW_OK)
		w->claim_pending = true;
}

static void whk__maint_done(void *arg, PGresult *res)
{
	struct whk_worker *w = arg;

	if (whk__ok(res, PGRES_COMMAND_OK, "recovering expired leases")) {
		long n = atol(PQcmdTuples(res));
		if (n > 0) {
			log_info("%ld webhook job(s) with an expired lease queued again", n);
			w->m.lease_recovered += (uint64_t)n;
			whk_worker_claim(w);
		}
	}
}

static void whk__expire_done(void *arg, PGresult *res)
{
	struct whk_worker *w = arg;

	w->maint_pending = false;
	if (whk__ok(res, PGRES_TUPLES_OK, "failing expired leases") && PQntuples(res) > 0) {
		log_info("%d webhook job(s) failed: lease expired on the last attempt", PQntuples(res));
		w->m.failed += (uint64_t)PQntuples(res);
	}
}

static void whk__queue_done(void *arg, PGresult *res)
{
	struct whk_worker *w = arg;

	w->queue_pending = false;
	if (whk__ok(res, PGRES_TUPLES_OK, "sampling the queue") && PQntuples(res) == 1) {
		w->m.queue_depth = atof(PQgetvalue(res, 0, 0));
		w->m.queue_oldest_due_s = atof(PQgetvalue(res, 0, 1));
	}
}

static void whk__retention_done(void *arg, PGresult *res)
{
	struct whk_worker *w = arg;

	if (whk__ok(res, PGRES_COMMAND_OK, "retention") && atol(PQcmdTuples(res)) > 0)
		log_info("retention: deleted %s row(s)", PQcmdTuples(res));
	w->retention_pending = false;
}

void whk_worker_tick(struct whk_worker *w, uint64_t now_ms)
{
	const struct rtw_cfg *cfg = w->cfg;

	if (w->stopping) {
		if (now_ms >= w->stop_deadline_ms) {
			bool again = true;
			/* whk__record may free a job: rescan after each one */
			while (again) {
				again = false;
				for (struct whk_job *job = w->jobs; job; job = job->next) {
					if (job->state != WHK_JOB_RUNNING || job->recording)
						continue;
					whk_fetch_cancel(w->fetch, job);
					whk__set_state(job, WHK_JOB_RELEASED);
					log_info("job %s: released at shutdown", job->id);
					whk__record(job, 0);
					again = true;
					break;
				}
			}
		}
		return;
	}
	if (!whk_db_ready(&w->db))
		return;
	if (now_ms >= w->next_poll_ms) {
		w->next_poll_ms =
		    now_ms + (uint64_t)(cfg->webhook_poll_interval_ms ? cfg->webhook_poll_interval_ms : 1000);
		whk_worker_claim(w);
	}
	if (now_ms >= w->next_maint_ms && !w->maint_pending) {
		char max[16];
		const char *p[1] = {max};
		w->next_maint_ms = now_ms + WHK_MAINT_MS;
		snprintf(max, sizeof(max), "%d", cfg->webhook_max_attempts);
		if (whk_db_query(&w->db, whk__requeue_sql, 1, p, whk__maint_done, w) == RTW_OK &&
		    whk_db_query(&w->db, whk__expire_sql, 1, p, whk__expire_done, w) == RTW_OK)
			w->maint_pending = true;
	}
	if (now_ms >= w->next_queue_ms && !w->queue_pending) {
		w->next_queue_ms = now_ms + WHK_QUEUE_MS;
		if (whk_db_query(&w->db, whk__queue_sql, 0, NULL, whk__queue_done, w) == RTW_OK)
			w->queue_pending = true;
	}
	if (now_ms >= w->next_retention_ms && !w->retention_pending) {
		char days[16];
		const char *p[1] = {days};
		w->next_retention_ms = now_ms + WHK_RETENTION_MS;
		if (cfg->retention_jobs_days > 0) {
			snprintf(days, sizeof(days), "%d", cfg->retention_jobs_days);
			if (whk_db_query(&w->db, whk__retention_jobs_sql, 1, p, whk__retention_done, w) == RTW_OK)
				w->retention_pending = true;
		}
		if (cfg->retention_messages_days > 0) {
			snprintf(days, sizeof(days), "%d", cfg->retention_messages_days);
			if (whk_db_query(&w->db, whk__retention_msgs_sql, 1, p, whk__retention_done, w) == RTW_OK)
				w->retention_pending = true;
		}
		if (cfg->retention_idempotency_hours > 0) {
			snprintf(days, sizeof(days), "%d", cfg->retention_idempotency_hours);
			if (whk_db_query(&w->db, whk__retention_idem_sql, 1, p, whk__retention_done, w) == RTW_OK)
				w->retention_pending = true;
		}
	}
}

void whk_worker_stop(struct whk_worker *w, uint64_t grace_ms)
{
	if (w->stopping)
		return;
	w->stopping = true;
	w->stop_deadline_ms = rtw_now_ms() + grace_ms;
	w->exit_deadline_ms = w->stop_deadline_ms + 3000;
	log_info("stopping: %d job(s) in flight", w->n_jobs);
}

bool whk_worker_done(struct whk_worker *w)
{
	return w->stopping && w->n_jobs == 0 && !w->claim_pending;
}
