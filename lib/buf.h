/*
 * buf.h: a growable byte buffer with a hard maximum (lib/buf.c): rtw-fcgi's
 * request bodies and responses, rtw-webhookd's webhook responses. Not
 * thread-safe; each buffer has one owner.
 */
#ifndef RTW_BUF_H
#define RTW_BUF_H

#include "rtw.h"

#include <stddef.h>

/* Zero-initialised is empty; set max before the first add. p is always
 * NUL-terminated once anything was added (p[len] == '\0'). Owns p. */
struct rtw_buf {
	char *p;
	size_t len, cap, max;
};

/* Appends n bytes. RTW_DECLINED: len would pass max (nothing is added);
 * RTW_ERROR: out of memory. Memory grows by doubling, never past max + 1. */
int rtw_buf_add(struct rtw_buf *b, const void *data, size_t n) RTW_WUR;
int rtw_buf_str(struct rtw_buf *b, const char *s) RTW_WUR;
/* Appends formatted text of at most 1023 bytes (RTW_ERROR beyond). */
int rtw_buf_printf(struct rtw_buf *b, const char *fmt, ...) RTW_PRINTF(2, 3) RTW_WUR;
/* Appends s as a JSON string literal (with quotes; jansson escapes). */
int rtw_buf_json_str(struct rtw_buf *b, const char *s) RTW_WUR;
/* Empties b, and frees its memory when it grew past keep bytes (after a
 * large answer), so one such answer does not pin memory for good. */
void rtw_buf_shrink(struct rtw_buf *b, size_t keep);
/* Frees p and empties b; max is kept. */
void rtw_buf_free(struct rtw_buf *b);

#endif
