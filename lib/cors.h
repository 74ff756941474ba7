/*
 * cors.h: the one rule deciding whether a browser Origin may read rtw's
 * answers (rtw-fcgi and rtw-sse): the deployment's own origins
 * (http.cors_origins, "*" for any), then a widget's allowed_origins. The
 * daemons still write their own headers, from these verdicts. Pure code.
 */
#ifndef RTW_CORS_H
#define RTW_CORS_H

#include "rtw.h"

#include <jansson.h>

/* True when http.cors_origins is "*": any origin, answered with
 * "Access-Control-Allow-Origin: *" where no credentials are involved. */
bool rtw_cors_any(const char *cfg_origins);

/* True when origin is one of the deployment's own (http.cors_origins:
 * comma-separated, compared without case, "*" for any). NULL: false. */
bool rtw_cors_cfg_allows(const char *cfg_origins, const char *origin);

/* True when origin is in origins, a widget's allowed_origins as a JSON
 * array of strings (borrowed; "*" allows any; compared without case).
 * NULL origin or a non-array: false. */
bool rtw_cors_list_allows(const json_t *origins, const char *origin);

/* True when origin may be echoed in a header line as it is: non-empty,
 * no CR, LF or NUL before its end (http-parser lets obs-text through). */
bool rtw_cors_echoable(const char *origin);

#endif
