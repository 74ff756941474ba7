/*
 * ratelimit.h: per-key token buckets in a fixed-size table (ratelimit.c).
 * Pure: no I/O, no clock of its own (the caller passes the time), so the
 * unit tests drive it with made-up times. Thread-safe.
 */
#ifndef RTW_RATELIMIT_H
#define RTW_RATELIMIT_H

#include "rtw.h"

struct rtw_rl;

/* New table: rate_per_s tokens per second, at most burst tokens per
 * bucket, about `buckets` buckets in all (rounded up to whole sets of 8;
 * the memory never grows past that). seed keys the hash (pass random
 * bytes, so nobody can aim many ids at one set). NULL when out of memory.
 * rate_per_s <= 0 makes every rtw_rl_take succeed. */
struct rtw_rl *rtw_rl_new(double rate_per_s, double burst, size_t buckets, uint64_t seed);
void rtw_rl_free(struct rtw_rl *rl);

/* Takes one token from the bucket of (a, b) at time now_ms (monotonic).
 * Returns 0 when allowed, else the milliseconds until a token is due (>0);
 * nothing is taken then. A key never seen, or whose bucket was recycled,
 * starts with a full bucket. */
uint64_t rtw_rl_take(struct rtw_rl *rl, const char *a, const char *b, uint64_t now_ms);

#endif
