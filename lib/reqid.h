/*
 * reqid.h: request ids, the one value that joins a front's access log
 * (nginx $request_id, Apache mod_unique_id's UNIQUE_ID), the daemon's log
 * line and the X-RTW-Request-Id header of the answer. Pure code plus
 * OpenSSL's generator: no other I/O, no state, thread-safe.
 */
#ifndef RTW_REQID_H
#define RTW_REQID_H

#include "rtw.h"

/* Room for an id and its NUL: ids are 1 to RTW_REQID_MAX - 1 bytes. */
#define RTW_REQID_MAX 65

/* True when s is an id we may repeat in a header and a log line: 1 to 64
 * of the HTTP token characters (RFC 9110 tchar) or '@' (mod_unique_id). */
bool rtw_reqid_valid(const char *s);

/* Writes a fresh id into out: 32 lowercase hex digits (128 random bits,
 * the shape of nginx's $request_id). */
void rtw_reqid_new(char out[RTW_REQID_MAX]);

/* The request's id into out: given when it is valid and came from a
 * trusted front (trusted), else a fresh one. given may be NULL. */
void rtw_reqid_pick(const char *given, bool trusted, char out[RTW_REQID_MAX]);

#endif
