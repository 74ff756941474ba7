/*
 * respond.c: owns writing rtw-fcgi's responses to the FastCGI stream: the
 * status line, the headers (CORS, preflights, Allow, Retry-After) and the
 * contract's JSON error shape. The origin rule is lib/cors.c's; a
 * widget's origins come from the cache (widget.c). Tier 2 of fcgi/: calls
 * lib/buf.c and widget.c only; called by http.c, handlers.c and publish.c. Runs on the
 * worker thread that accepted the request.
 */
#include "config.h"
#include "cors.h"
#include "fcgi.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FCG_PREFLIGHT_MAX_AGE 600

/* Is the request's Origin allowed? The deployment's list first, then the
 * widget's own (once known), else the union of all enabled widgets'. */
static bool fcg_respond__cors_allowed(struct fcg_req *r)
{
	if (!r->origin)
		return false;
	if (rtw_cors_cfg_allows(r->w->cfg->http_cors_origins, r->origin))
		return true;
	if (r->widget)
		return r->widget->exists && r->widget->enabled && rtw_cors_list_allows(r->widget->origins, r->origin);
	return fcg_origin_any_widget(r->w, r->origin);
}

static void fcg_respond__head(struct fcg_req *r, int status, size_t len, bool preflight)
{
	struct rtw_buf *h = &r->w->head;
	int rc = RTW_OK;

	r->status = status;
	h->len = 0;
	rc |= rtw_buf_printf(h, "Status: %d %s\r\nX-RTW-Request-Id: %s\r\n", status, rtw_http_reason(status),
			     r->request_id);
	if (!preflight)
		rc |= rtw_buf_printf(h,
				     "Content-Type: application/json\r\nContent-Length: %zu\r\n"
				     "Cache-Control: no-store\r\n",
				     len);
	if (r->origin) {
		rc |= rtw_buf_str(h, "Vary: Origin\r\n");
		if (fcg_respond__cors_allowed(r)) {
			rc |= rtw_buf_str(h, "Access-Control-Allow-Origin: ");
			rc |= rtw_buf_str(h, r->origin);
			rc |= rtw_buf_str(h, "\r\n");
			if (preflight)
				rc |= rtw_buf_printf(h,
						     "Access-Control-Allow-Methods: %s\r\n"
						     "Access-Control-Allow-Headers: Authorization, Content-Type, "
						     "Idempotency-Key\r\n"
						     "Access-Control-Max-Age: %d\r\n",
						     r->allow ? r->allow : FCG_ALLOW_MESSAGES, FCG_PREFLIGHT_MAX_AGE);
			else
				rc |=
				    rtw_buf_str(h, "Access-Control-Expose-Headers: Retry-After, X-RTW-Request-Id\r\n");
		}
	}
	if (r->allow && (status == 405 || preflight))
		rc |= rtw_buf_printf(h, "Allow: %s\r\n", r->allow);
	if (r->retry_after > 0)
		rc |= rtw_buf_printf(h, "Retry-After: %d\r\n", r->retry_after);
	rc |= rtw_buf_str(h, "\r\n");
	if (rc != RTW_OK)
		log_error("worker %d: response head too large", r->w->id);
	FCGX_PutStr(h->p, (int)h->len, r->w->fx.out);
}

void fcg_send(struct fcg_req *r, int status, const char *body, size_t len)
{
	fcg_respond__head(r, status, len, false);
	r->bytes = len;
	if (len)
		FCGX_PutStr(body, (int)len, r->w->fx.out);
}

void fcg_send_json(struct fcg_req *r, int status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (!text) {
		fcg_unavailable(r);
		return;
	}
	fcg_send(r, status, text, strlen(text));
	free(text);
}

void fcg_send_error(struct fcg_req *r, const struct msg_error *err)
{
	char *j = msg_error_json(err);
	r->error_code = err->code;
	if ((err->status == 503 || err->status == 429) && r->retry_after <= 0)
		r->retry_after = 1;
	if (!j) {
		static const char oom[] = "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";
		r->retry_after = 1;
		fcg_send(r, 503, oom, sizeof(oom) - 1);
		return;
	}
	fcg_send(r, err->status, j, strlen(j));
	free(j);
}

void fcg_fail(struct fcg_req *r, int status, const char *code, const char *field, const char *fmt, ...)
{
	struct msg_error err;
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	msg_error_set(&err, status, code, field, "%s", text);
	fcg_send_error(r, &err);
}

void fcg_unavailable(struct fcg_req *r)
{
	r->retry_after = 1;
	fcg_fail(r, 503, "unavailable", NULL, "database unavailable; nothing was written");
}

void fcg_send_preflight(struct fcg_req *r)
{
	fcg_respond__head(r, 204, 0, true);
}
