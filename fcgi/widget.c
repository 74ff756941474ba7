/*
 * widget.c: owns each worker's cache of rtw_widgets rows (enabled,
 * allowed origins, webhook hosts; 1 s) and of the union of every enabled
 * widget's origins (for preflights, 1.5 s). Tier 1 of fcgi/: calls db.c
 * only; called by respond.c, handlers.c and publish.c. Runs on the
 * worker thread that owns the cache, on that worker's PostgreSQL
 * connection.
 */
#include "config.h"
#include "cors.h"
#include "fcgi.h"

#include <stdio.h>
#include <string.h>

#define FCG_ORIGINS_TTL_MS 1500

static void fcg__widget_clear(struct fcg_widget *e)
{
	json_decref(e->origins);
	json_decref(e->hosts);
	memset(e, 0, sizeof(*e));
}

const struct fcg_widget *fcg_widget_get(struct fcg_worker *w, const char *key, bool *lost)
{
	uint64_t now = rtw_now_ms();
	struct fcg_widget *slot = NULL, *oldest = &w->widgets[0];
	const char *params[1] = {key};
	PGresult *res;

	*lost = false;
	for (int i = 0; i < FCG_WIDGET_CACHE; i++) {
		struct fcg_widget *e = &w->widgets[i];
		if (e->key[0] && strcmp(e->key, key) == 0) {
			if (now - e->fetched_ms < FCG_WIDGET_TTL_MS)
				return e;
			slot = e;
			break;
		}
		if (e->fetched_ms < oldest->fetched_ms)
			oldest = e;
	}
	if (!slot)
		slot = oldest;
	res = fcg_db_run(&w->db, "widget", 1, params, PGRES_TUPLES_OK, NULL);
	if (!res) {
		*lost = true;
		return NULL;
	}
	fcg__widget_clear(slot);
	snprintf(slot->key, sizeof(slot->key), "%s", key);
	slot->fetched_ms = now;
	if (PQntuples(res) == 1) {
		slot->exists = true;
		slot->enabled = PQgetvalue(res, 0, 0)[0] == 't';
		slot->origins = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
		slot->hosts = json_loads(PQgetvalue(res, 0, 2), 0, NULL);
	}
	if (!json_is_array(slot->origins)) {
		json_decref(slot->origins);
		slot->origins = json_array();
	}
	if (!json_is_array(slot->hosts)) {
		json_decref(slot->hosts);
		slot->hosts = json_array();
	}
	PQclear(res);
	return slot;
}

bool fcg_origin_any_widget(struct fcg_worker *w, const char *origin)
{
	uint64_t now = rtw_now_ms();
	if (rtw_cors_cfg_allows(w->cfg->http_cors_origins, origin))
		return true;
	if (!w->all_origins || now - w->all_origins_ms >= FCG_ORIGINS_TTL_MS) {
		PGresult *res = fcg_db_run(&w->db, "origins_all", 0, NULL, PGRES_TUPLES_OK, NULL);
		if (res) {
			json_decref(w->all_origins);
			w->all_origins = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
			w->all_origins_ms = now;
			PQclear(res);
		}
	}
	return rtw_cors_list_allows(w->all_origins, origin);
}
