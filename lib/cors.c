/*
 * cors.c: owns the CORS origin rule shared by rtw-fcgi (fcgi/respond.c)
 * and rtw-sse: which Origin values are allowed, and which may be echoed.
 * Writes no headers and knows no request; no I/O.
 */
#include "config.h"
#include "cors.h"

#include <string.h>
#include <strings.h>

bool rtw_cors_any(const char *cfg_origins)
{
	return cfg_origins && strcmp(cfg_origins, "*") == 0;
}

bool rtw_cors_cfg_allows(const char *cfg_origins, const char *origin)
{
	return origin && rtw_list_has(cfg_origins, origin);
}

bool rtw_cors_list_allows(const json_t *origins, const char *origin)
{
	size_t i;
	json_t *v;

	if (!origin || !json_is_array(origins))
		return false;
	json_array_foreach (origins, i, v) {
		const char *s = json_string_value(v);
		if (s && (strcmp(s, "*") == 0 || strcasecmp(s, origin) == 0))
			return true;
	}
	return false;
}

bool rtw_cors_echoable(const char *origin)
{
	return origin && origin[0] && strpbrk(origin, "\r\n") == NULL;
}
