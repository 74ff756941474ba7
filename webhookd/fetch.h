/*
 * fetch.h: the libcurl multi side of rtw-webhookd: builds each call
 * (policy pre-checks, headers, body, signature), drives the transfers
 * from the loop through CURLMOPT_SOCKETFUNCTION/CURLMOPT_TIMERFUNCTION
 * and a loop timer, checks every peer address in CURLOPT_OPENSOCKETFUNCTION,
 * and reports each finished attempt to the worker.
 */
#ifndef WHK_FETCH_H
#define WHK_FETCH_H

#include "worker.h"

struct whk_fetch *whk_fetch_new(struct whk_worker *w) RTW_WUR;
void whk_fetch_free(struct whk_fetch *f);

/* Starts the call of job. RTW_OK: in flight, whk_worker_call_done()
 * follows. RTW_DECLINED: refused by policy before any connection
 * (job->at filled). RTW_ERROR: could not set up (job->at filled). */
int whk_fetch_start(struct whk_fetch *f, struct whk_job *job) RTW_WUR;

/* Aborts a call in flight without a report. */
void whk_fetch_cancel(struct whk_fetch *f, struct whk_job *job);

/* Releases the call's resources (easy handle, buffers). */
void whk_fetch_cleanup(struct whk_job *job);

#endif
