/*
 * util.c: clocks, randomness and hex/time formatting shared by every
 * program. Pure helpers; no state, safe from any thread.
 */
#include "config.h"
#include "rtw.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

uint64_t rtw_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t rtw_wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int rtw_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? RTW_OK : RTW_ERROR;
}

void rtw_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void rtw_format_time_us(uint64_t us, char out[28])
{
	time_t secs = (time_t)(us / 1000000u);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char tmp[64]; /* roomy enough for any int fields, so no truncation */

	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(us % 1000000u));
	memcpy(out, tmp, 27);
	out[27] = '\0';
}
