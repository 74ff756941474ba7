/*
 * rtw.h: the few definitions every rtw program shares: return codes,
 * attribute macros and small helpers. No state lives here.
 */
#ifndef RTW_H
#define RTW_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* One small set of return codes for the whole tree (after nginx). */
enum {
	RTW_OK = 0,
	RTW_ERROR = -1,	  /* failed; the caller logs or reports */
	RTW_AGAIN = -2,	  /* would block / not yet; try again later */
	RTW_DECLINED = -3 /* not applicable; the caller picks another path */
};

#define RTW_WUR __attribute__((warn_unused_result))
#define RTW_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define RTW_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RTW_UNUSED(x) ((void)(x))

/* Monotonic and wall clocks, in milliseconds / microseconds. */
uint64_t rtw_now_ms(void);
uint64_t rtw_wall_us(void);

/* Fills buf with n cryptographically random bytes; RTW_OK or RTW_ERROR. */
int rtw_random(void *buf, size_t n) RTW_WUR;

/* Writes 2*n lowercase hex digits plus NUL into out. */
void rtw_hex(const unsigned char *in, size_t n, char *out);

/* Formats a unix time in microseconds as RFC 3339 UTC with microseconds,
 * "2026-11-27T22:00:00.123456Z"; out needs 28 bytes. */
void rtw_format_time_us(uint64_t us, char out[28]);

/* The reason phrase of an HTTP status code rtw answers with ("Not Found");
 * "Error" for others. Static string. */
const char *rtw_http_reason(int status);

/* True when the comma-separated list holds item (compared without case,
 * as origins and host names are) or the wildcard "*". Spaces around
 * elements are ignored. NULL or "" is the empty list. */
bool rtw_list_has(const char *list, const char *item);

#endif
