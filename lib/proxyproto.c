/*
 * proxyproto.c: owns parsing the PROXY protocol header of proxyproto.h,
 * versions 1 (text) and 2 (binary), from a buffer that may hold only its
 * beginning, and telling a connection that opens with one from one that
 * does not (neither signature, "PROXY " or the 12 bytes of version 2,
 * can begin an HTTP request). Looks at no more than RTW_PROXY_MAX bytes;
 * never reads a socket, never decides whom to believe.
 */
#include "config.h"
#include "proxyproto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char pp__v1_sig[] = "PROXY ";
static const unsigned char pp__v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* The address of family af at a (4 or 16 bytes) as text into out;
 * IPv4-mapped IPv6 as the IPv4 address it maps. */
static void pp__text(int af, const unsigned char *a, char out[INET6_ADDRSTRLEN])
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (af == AF_INET6 && memcmp(a, mapped, sizeof(mapped)) == 0) {
		af = AF_INET;
		a += 12;
	}
	if (inet_ntop(af, a, out, INET6_ADDRSTRLEN) == NULL)
		out[0] = '\0';
}

/* A decimal port without sign or leading zero, 0..65535. */
static bool pp__port(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 5 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
		return false;
	return atoi(s) <= 65535;
}

/* Version 1: "PROXY TCP4|TCP6 src dst sport dport\r\n" or
 * "PROXY UNKNOWN[ anything]\r\n", single spaces, at most 107 bytes. */
static int pp__v1(const char *d, size_t n, struct rtw_proxy *out)
{
	char line[RTW_PROXY_V1_MAX + 1], *f[6], *save = NULL;
	const char *end = NULL;
	unsigned char a[16];
	size_t len, nf = 0;
	int af;

	for (size_t i = 0; i + 1 < n && i + 1 < RTW_PROXY_V1_MAX; i++) {
		if (d[i] == '\r' && d[i + 1] == '\n') {
			end = d + i;
			break;
		}
		if (d[i] == '\n' || d[i] == '\0')
			return RTW_ERROR;
	}
	if (end == NULL)
		return n < RTW_PROXY_V1_MAX ? RTW_AGAIN : RTW_ERROR;
	len = (size_t)(end - d);
	memcpy(line, d, len);
	line[len] = '\0';
	out->len = len + 2;
	if (strncmp(line + 6, "UNKNOWN", 7) == 0 && (line[13] == '\0' || line[13] == ' '))
		return RTW_OK; /* the proxy could not tell: the peer stays */
	if (strstr(line, "  ") != NULL || line[len - 1] == ' ')
		return RTW_ERROR;
	for (char *t = strtok_r(line, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		if (nf == 6)
			return RTW_ERROR;
		f[nf++] = t;
	}
	if (nf != 6)
		return RTW_ERROR;
	if (strcmp(f[1], "TCP4") == 0)
		af = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		af = AF_INET6;
	else
		return RTW_ERROR;
	if (inet_pton(af, f[3], a) != 1 || !pp__port(f[4]) || !pp__port(f[5]))
		return RTW_ERROR; /* the destination is checked, not kept */
	if (inet_pton(af, f[2], a) != 1)
		return RTW_ERROR;
	pp__text(af, a, out->addr);
	return out->addr[0] ? RTW_OK : RTW_ERROR;
}

/* Version 2: the 12-byte signature, version and command, family and
 * transport, the length of the rest (big-endian), the addresses, TLVs
 * (skipped). */
static int pp__v2(const unsigned char *d, size_t n, struct rtw_proxy *out)
{
	size_t rest, need;
	unsigned cmd, fam;

	if (n < 16)
		return RTW_AGAIN;
	if ((d[12] & 0xf0) != 0x20)
		return RTW_ERROR; /* version 2 only */
	cmd = d[12] & 0x0f;
	fam = d[13];
	rest = (size_t)d[14] << 8 | d[15];
	if (cmd > 1 || 16 + rest > RTW_PROXY_MAX)
		return RTW_ERROR;
	if (n < 16 + rest)
		return RTW_AGAIN;
	out->len = 16 + rest;
	if (cmd == 0)
		return RTW_OK; /* LOCAL: the proxy's own connection (a health check) */
	switch (fam) {
	case 0x11: /* TCP over IPv4 */
	case 0x12: /* UDP over IPv4 */ need = 12; break;
	case 0x21:
	case 0x22: need = 36; break;
	case 0x31:
	case 0x32: need = 216; break;
	case 0x00: return RTW_OK; /* unspecified: the peer stays */
	default: return RTW_ERROR;
	}
	if (rest < need)
		return RTW_ERROR;
	if (fam >> 4 == 1)
		pp__text(AF_INET, d + 16, out->addr);
	else if (fam >> 4 == 2)
		pp__text(AF_INET6, d + 16, out->addr);
	/* AF_UNIX: a socket path names no client address; the peer stays */
	return RTW_OK;
}

int rtw_proxy_parse(const void *data, size_t n, struct rtw_proxy *out)
{
	const unsigned char *d = data;
	size_t k;

	memset(out, 0, sizeof(*out));
	k = n < 6 ? n : 6;
	if (memcmp(d, pp__v1_sig, k) == 0)
		return n < 6 ? RTW_AGAIN : pp__v1(data, n, out);
	k = n < sizeof(pp__v2_sig) ? n : sizeof(pp__v2_sig);
	if (memcmp(d, pp__v2_sig, k) == 0)
		return n < sizeof(pp__v2_sig) ? RTW_AGAIN : pp__v2(d, n, out);
	return RTW_DECLINED;
}
