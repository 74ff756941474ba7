/*
 * health.h: rtw-webhookd's tiny HTTP responder on webhook.health_listen:
 * GET /healthz (200 when PostgreSQL is reachable, else 503) and
 * GET /metrics (Prometheus text). One request per connection, on the loop.
 */
#ifndef WHK_HEALTH_H
#define WHK_HEALTH_H

#include "worker.h"

struct whk_health;

/* NULL with a message in err when listen ("host:port") cannot be bound. */
struct whk_health *whk_health_new(struct whk_worker *w, const char *listen, char *err, size_t errlen) RTW_WUR;
/* Closes connections that took too long to send their request. */
void whk_health_tick(struct whk_health *h, uint64_t now_ms);
void whk_health_free(struct whk_health *h);

#endif
