/*
 * fetch.c: owns the libcurl multi handle, the per-call easy handles and
 * the target safety checks at call time: only http/https, no proxies, no
 * redirects followed, bounded time and response size, and every address
 * curl is about to connect to classified (addr.c) in the open-socket
 * callback, so names that resolve (or rebind) to internal addresses, and
 * numeric spellings of them, are refused unless webhook.allow_hosts opens
 * that very address and port. Runs on the loop.
 */
#include "config.h"
#include "fetch.h"
#include "addr.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

static const double whk_call__le[WHK_CALL_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const struct rtw_hist_bounds whk_call_bounds = {WHK_CALL_BUCKETS, whk_call__le};

struct whk_fetch {
	struct whk_worker *w;
	CURLM *multi;
	struct rtw_timer timer;
};

struct fetch__sock {
	struct rtw_io io; /* first: released through &io */
	struct whk_fetch *f;
};

static void fetch__check_done(struct whk_fetch *f)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
		struct whk_job *job = NULL;
		CURLcode rc;
		long status = 0;
		curl_off_t retry_after = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		rc = msg->data.result;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&job);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		curl_multi_remove_handle(f->multi, msg->easy_handle);
		job->in_curl = false;
		job->duration_ms = (int64_t)(rtw_now_ms() - job->started_ms);
		f->w->m.call_bucket[rtw_hist_bucket(&whk_call_bounds, (double)job->duration_ms / 1e3)]++;
		f->w->m.call_sum_s += (double)job->duration_ms / 1e3;
		job->at.http_status = status;
		job->at.retry_after_s = -1;
		if (rc != CURLE_OK && job->addr_refused) {
			job->at.refused = true;
			snprintf(job->at.error, sizeof(job->at.error), "%s", job->refuse_why);
		} else if (job->at.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
			job->at.too_large = true;
			snprintf(job->at.error, sizeof(job->at.error), "response too large (over %d bytes)",
				 f->w->cfg->webhook_max_response);
		} else if (rc == CURLE_OPERATION_TIMEDOUT) {
			job->at.timed_out = true;
			snprintf(job->at.error, sizeof(job->at.error), "timed out: %.200s",
				 job->curl_err[0] ? job->curl_err : curl_easy_strerror(rc));
		} else if (rc != CURLE_OK) {
			job->at.net_error = true;
			snprintf(job->at.error, sizeof(job->at.error), "%s",
				 job->curl_err[0] ? job->curl_err : curl_easy_strerror(rc));
		} else if ((status == 429 || status == 503) &&
			   curl_easy_getinfo(msg->easy_handle, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
			   retry_after > 0) {
			job->at.retry_after_s = (long)retry_after;
		}
		whk_worker_call_done(job);
	}
}

static void fetch__sock_io(void *arg, uint32_t events)
{
	struct fetch__sock *s = arg;
	struct whk_fetch *f = s->f;
	int flags = 0, running;

	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(f->multi, s->io.fd, flags, &running);
	fetch__check_done(f);
}

static void fetch__sock_release(struct rtw_io *io)
{
	free((struct fetch__sock *)io);
}

static int fetch__socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct whk_fetch *f = userp;
	struct fetch__sock *s = socketp;
	uint32_t events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(f->multi, fd, NULL);
			rtw_loop_retire(&f->w->loop, &s->io, fetch__sock_release);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		events |= EPOLLOUT;
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return -1;
		s->f = f;
		if (rtw_loop_add(&f->w->loop, &s->io, fd, events, fetch__sock_io, s) != RTW_OK) {
			free(s);
			return -1;
		}
		curl_multi_assign(f->multi, fd, s);
		return 0;
	}
	return rtw_loop_mod(&f->w->loop, &s->io, events) == RTW_OK ? 0 : -1;
}

static int fetch__timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct whk_fetch *f = userp;

	if (timeout_ms < 0) {
		rtw_timer_stop(&f->timer);
		return 0;
	}
	/* 0 is "now": run from the loop, not from here */
	return rtw_timer_start(&f->timer, (uint64_t)timeout_ms, 0) == RTW_OK ? 0 : -1;
}

static void fetch__timer_io(void *arg)
{
	struct whk_fetch *f = arg;
	int running;

	curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	fetch__check_done(f);
}

struct whk_fetch *whk_fetch_new(struct whk_worker *w)
{
	struct whk_fetch *f;
	char err[256];

	/* a bad entry would open nothing; say so at start, not per job */
	if (whk_allow_list_check(w->cfg->webhook_allow_hosts, err, sizeof(err)) != RTW_OK) {
		log_error("%s", err);
		return NULL;
	}
	if (!(f = calloc(1, sizeof(*f))))
		return NULL;
	f->w = w;
	if (rtw_timer_init(&w->loop, &f->timer, fetch__timer_io, f) != RTW_OK || !(f->multi = curl_multi_init()))
		goto fail;
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, fetch__socket_cb);
	curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, fetch__timer_cb);
	curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
	curl_multi_setopt(f->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)w->cfg->webhook_concurrency);
	return f;
fail:
	if (f->multi)
		curl_multi_cleanup(f->multi);
	rtw_timer_close(&f->timer);
	free(f);
	return NULL;
}

void whk_fetch_free(struct whk_fetch *f)
{
	if (!f)
		return;
	curl_multi_cleanup(f->multi);
	rtw_timer_close(&f->timer);
	free(f);
}

static size_t fetch__write(char *p, size_t size, size_t n, void *ud)
{
	struct whk_job *job = ud;
	size_t len = size * n, max = (size_t)job->w->cfg->webhook_max_response;

	if (job->resp_len + len > max) {
		job->at.too_large = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (job->resp_len + len + 1 > job->resp_cap) {
		size_t cap = job->resp_cap ? job->resp_cap : 4096;
		while (cap < job->resp_len + len + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		char *grown = realloc(job->resp, cap);
		if (!grown)
			return 0;
		job->resp = grown;
		job->resp_cap = cap;
	}
	memcpy(job->resp + job->resp_len, p, len);
	job->resp_len += len;
	job->resp[job->resp_len] = '\0';
	return len;
}

/* The pinning check: runs for every address curl connects to (also
 * after its own DNS resolution, so rebinding cannot slip through). An
 * internal address passes only when webhook.allow_hosts opens that
 * address and port: whatever the URL spelled, this is what is reached. */
static curl_socket_t fetch__opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct whk_job *job = clientp;
	enum whk_addr_class c = whk_addr_classify(&a->addr, a->addrlen);

	(void)purpose;
	if (c != WHK_ADDR_PUBLIC &&
	    !whk_allow_match(job->w->cfg->webhook_allow_hosts, job->url_host, &a->addr, a->addrlen)) {
		char ip[INET6_ADDRSTRLEN] = "?";
		unsigned port = 0;
		if (a->family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&a->addr)->sin_addr, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in *)&a->addr)->sin_port);
		} else if (a->family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a->addr)->sin6_addr, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in6 *)&a->addr)->sin6_port);
		}
		job->addr_refused = true;
		snprintf(job->refuse_why, sizeof(job->refuse_why), "target refused: %s address %s port %u",
			 whk_addr_class_name(c), ip, port);
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static int fetch__refuse(struct whk_job *job, const char *why, const char *arg)
{
	job->at.refused = true;
	snprintf(job->at.error, sizeof(job->at.error), "target refused: %s%s", why, arg);
	return RTW_DECLINED;
}

/* True when the URL carries a user, password or login options: curl
 * would send them as Basic auth, around the header allow-list. */
static bool fetch__has_userinfo(CURLU *cu)
{
	static const CURLUPart parts[] = {CURLUPART_USER, CURLUPART_PASSWORD, CURLUPART_OPTIONS};

	for (size_t i = 0; i < RTW_ARRAY_LEN(parts); i++) {
		char *v = NULL;
		CURLUcode rc = curl_url_get(cu, parts[i], &v, 0);
		curl_free(v);
		if (rc == CURLUE_OK)
			return true;
	}
	return false;
}

/* A literal internal address in the URL fails fast, without a connect
 * attempt, unless the allow-list opens it (the open-socket check still
 * judges what is actually connected to). */
static bool fetch__literal_refused(const struct whk_job *job, const char *host, enum whk_addr_class c)
{
	struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char *port = NULL, bare[INET6_ADDRSTRLEN];
	unsigned long pn = 0;
	size_t n = strlen(host);

	if (c == WHK_ADDR_PUBLIC || c == WHK_ADDR_INVALID)
		return false;
	if (curl_url_get(job->cu, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
		pn = strtoul(port, NULL, 10);
	curl_free(port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) == 1) {
		sa.sin_port = htons((uint16_t)pn);
		return !whk_allow_match(job->w->cfg->webhook_allow_hosts, host, (struct sockaddr *)&sa, sizeof(sa));
	}
	if (n >= 2 && host[0] == '[' && n - 2 < sizeof(bare)) {
		memcpy(bare, host + 1, n - 2);
		bare[n - 2] = '\0';
		char *zone = strchr(bare, '%');
		if (zone)
			*zone = '\0';
		if (inet_pton(AF_INET6, bare, &sa6.sin6_addr) == 1) {
			sa6.sin6_port = htons((uint16_t)pn);
			return !whk_allow_match(job->w->cfg->webhook_allow_hosts, host, (struct sockaddr *)&sa6,
						sizeof(sa6));
		}
	}
	return true;
}

/* True when the widget's webhook_hosts (JSON array text) has host. An
 * empty or missing list allows every host unless the deployment requires
 * one (webhook.require_widget_hosts): *empty tells which it was. */
static bool fetch__widget_allows(const struct whk_job *job, const char *host, bool *empty)
{
	json_error_t jerr;
	json_t *hosts = job->widget_hosts_json ? json_loads(job->widget_hosts_json, 0, &jerr) : NULL;
	size_t i;
	json_t *h;
	bool ok = false;

	*empty = !json_is_array(hosts) || json_array_size(hosts) == 0;
	json_array_foreach (hosts, i, h)
		if (json_is_string(h) && whk_host_match(host, json_string_value(h)))
			ok = true;
	json_decref(hosts);
	return ok;
}

/* Scheme, credential, requester and host rules that need no connection.
 * The URL may come from anywhere that writes the jobs table, so every
 * rule rtw-fcgi applies at POST is applied again here. */
static int fetch__policy(struct whk_fetch *f, struct whk_job *job)
{
	const struct rtw_cfg *cfg = f->w->cfg;
	char *scheme = NULL, *host = NULL;
	int rc = RTW_OK;
	bool empty;

	if (!(job->cu = curl_url()))
		return RTW_ERROR;
	if (curl_url_set(job->cu, CURLUPART_URL, job->url, 0) != CURLUE_OK)
		return fetch__refuse(job, "invalid url", "");
	if (curl_url_get(job->cu, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		rc = fetch__refuse(job, "scheme not allowed: ", scheme ? scheme : "(none)");
		goto out;
	}
	if (fetch__has_userinfo(job->cu)) {
		rc = fetch__refuse(job, "url carries credentials", "");
		goto out;
	}
	if (curl_url_get(job->cu, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
		rc = fetch__refuse(job, "url has no host", "");
		goto out;
	}
	if (cfg->webhook_refuse_anonymous && whk_author_anonymous(job->author_id)) {
		rc = fetch__refuse(job, "anonymous requester", "");
		goto out;
	}
	if (!fetch__widget_allows(job, host, &empty) && (!empty || cfg->webhook_require_widget_hosts)) {
		rc = empty ? fetch__refuse(job, "the widget has no webhook hosts", "")
			   : fetch__refuse(job, "host not in the widget's webhook hosts: ", host);
		goto out;
	}
	if (fetch__literal_refused(job, host, whk_addr_classify_text(host))) {
		rc = fetch__refuse(job, whk_addr_class_name(whk_addr_classify_text(host)), " address");
		goto out;
	}
	job->url_host = host; /* for the allow-list at connect time */
	host = NULL;
out:
	curl_free(scheme);
	curl_free(host);
	return rc;
}

static int fetch__headers(struct whk_fetch *f, struct whk_job *job)
{
	const struct rtw_cfg *cfg = f->w->cfg;
	char line[WHK_HEADER_NAME_MAX + WHK_HEADER_VALUE_MAX + 8], sig[96];
	struct curl_slist *l;
	json_t *h = NULL;
	char *url = NULL;
	int kept = 0;

	if (job->headers_json) {
		json_error_t jerr;
		const char *k;
		json_t *v;
		h = json_loads(job->headers_json, 0, &jerr);
		json_object_foreach (h, k, v) {
			if (!json_is_string(v) || kept >= WHK_MAX_HEADERS ||
			    !whk_header_allowed(k, json_string_value(v))) {
				log_debug("job %s: header %s dropped", job->id, k);
				continue;
			}
			snprintf(line, sizeof(line), "%s: %s", k, json_string_value(v));
			if (!(l = curl_slist_append(job->hdrs, line)))
				goto fail;
			job->hdrs = l;
			kept++;
		}
		json_decref(h);
		h = NULL;
	}
	if (curl_url_get(job->cu, CURLUPART_URL, &url, 0) != CURLUE_OK)
		goto fail;
	/* the URL as curl requests it (normalised), the method as sent */
	whk_signature(cfg->webhook_secret, strlen(cfg->webhook_secret), (int64_t)(rtw_wall_us() / 1000000u), job->id,
		      job->method, url, job->req_body ? job->req_body : "", job->req_len, sig);
	if (!sig[0])
		goto fail;
	snprintf(line, sizeof(line), "X-RTW-Signature: %s", sig);
	if (!(l = curl_slist_append(job->hdrs, line)))
		goto fail;
	job->hdrs = l;
	snprintf(line, sizeof(line), "X-RTW-Delivery: %s", job->id);
	if (!(l = curl_slist_append(job->hdrs, line)))
		goto fail;
	job->hdrs = l;
	if (job->req_body && !(l = curl_slist_append(job->hdrs, "Content-Type: application/json")))
		goto fail;
	job->hdrs = l;
	/* no 100-continue round trip */
	if (!(l = curl_slist_append(job->hdrs, "Expect:")))
		goto fail;
	job->hdrs = l;
	curl_free(url);
	return RTW_OK;
fail:
	curl_free(url);
	json_decref(h);
	return RTW_ERROR;
}

int whk_fetch_start(struct whk_fetch *f, struct whk_job *job)
{
	const struct rtw_cfg *cfg = f->w->cfg;
	int rc;
	bool has_body =
	    strcmp(job->method, "POST") == 0 || strcmp(job->method, "PUT") == 0 || strcmp(job->method, "PATCH") == 0;

	memset(&job->at, 0, sizeof(job->at));
	job->at.retry_after_s = -1;
	job->started_ms = rtw_now_ms();
	if ((rc = fetch__policy(f, job)) != RTW_OK) {
		if (rc == RTW_ERROR)
			snprintf(job->at.error, sizeof(job->at.error), "internal error: %s", "could not parse url");
		return rc;
	}
	if (has_body) {
		job->req_body =
		    whk_request_body(job->id, job->stream_id, job->author_id, job->widget_key, job->ts, job->body_json);
		if (!job->req_body)
			goto fail;
		job->req_len = strlen(job->req_body);
	}
	if (fetch__headers(f, job) != RTW_OK || !(job->easy = curl_easy_init()))
		goto fail;
	curl_easy_setopt(job->easy, CURLOPT_CURLU, job->cu);
	curl_easy_setopt(job->easy, CURLOPT_PRIVATE, (char *)job);
	curl_easy_setopt(job->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(job->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(job->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(job->easy, CURLOPT_PROXY, ""); /* ignore *_proxy variables */
	curl_easy_setopt(job->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(job->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->webhook_connect_timeout_ms);
	curl_easy_setopt(job->easy, CURLOPT_TIMEOUT_MS, (long)cfg->webhook_timeout_ms);
	curl_easy_setopt(job->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cfg->webhook_max_response);
	curl_easy_setopt(job->easy, CURLOPT_WRITEFUNCTION, fetch__write);
	curl_easy_setopt(job->easy, CURLOPT_WRITEDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_OPENSOCKETFUNCTION, fetch__opensocket);
	curl_easy_setopt(job->easy, CURLOPT_OPENSOCKETDATA, job);
	curl_easy_setopt(job->easy, CURLOPT_ERRORBUFFER, job->curl_err);
	curl_easy_setopt(job->easy, CURLOPT_USERAGENT, "rtw-webhookd/" PACKAGE_VERSION);
	curl_easy_setopt(job->easy, CURLOPT_HTTPHEADER, job->hdrs);
	if (has_body) {
		curl_easy_setopt(job->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->req_len);
		curl_easy_setopt(job->easy, CURLOPT_POSTFIELDS, job->req_body);
		if (strcmp(job->method, "POST") != 0)
			curl_easy_setopt(job->easy, CURLOPT_CUSTOMREQUEST, job->method);
	} else if (strcmp(job->method, "GET") == 0) {
		curl_easy_setopt(job->easy, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(job->easy, CURLOPT_CUSTOMREQUEST, job->method);
	}
	if (curl_multi_add_handle(f->multi, job->easy) != CURLM_OK)
		goto fail;
	job->in_curl = true;
	return RTW_OK;
fail:
	job->at.net_error = true;
	snprintf(job->at.error, sizeof(job->at.error), "internal error: %s", "could not set up the call");
	return RTW_ERROR;
}

void whk_fetch_cancel(struct whk_fetch *f, struct whk_job *job)
{
	if (job->in_curl) {
		curl_multi_remove_handle(f->multi, job->easy);
		job->in_curl = false;
	}
}

void whk_fetch_cleanup(struct whk_job *job)
{
	if (job->easy)
		curl_easy_cleanup(job->easy);
	job->easy = NULL;
	if (job->cu)
		curl_url_cleanup(job->cu);
	job->cu = NULL;
	curl_free(job->url_host);
	job->url_host = NULL;
	curl_slist_free_all(job->hdrs);
	job->hdrs = NULL;
	free(job->req_body);
	job->req_body = NULL;
	free(job->resp);
	job->resp = NULL;
	job->resp_len = job->resp_cap = 0;
}
