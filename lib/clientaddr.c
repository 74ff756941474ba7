/*
 * clientaddr.c: owns the client-address rule of clientaddr.h: parsing
 * http.trusted_proxies, matching an address against it, and walking
 * X-Forwarded-For from the right. Never trusts a header from a peer that
 * is not on the list, never reads a socket; pure and thread-safe.
 */
#include "config.h"
#include "clientaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CA_TEXT_MAX 64 /* longest address text looked at (IPv6 with scope fits) */

/* Parses one address (n bytes at s, surrounding blanks allowed; "[v6]",
 * "[v6]:port" and "v4:port" as some proxies write them) into *out with
 * prefix full. false when it is not an address. */
static bool ca__parse(const char *s, size_t n, struct rtw_net *out)
{
	char buf[CA_TEXT_MAX];
	unsigned char a6[16];

	while (n > 0 && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n > 0 && *s == '[') {
		const char *e = memchr(s, ']', n);
		if (e == NULL)
			return false;
		n = (size_t)(e - s - 1);
		s++;
	} else if (n > 0 && memchr(s, '.', n) != NULL) {
		const char *c = memchr(s, ':', n);
		if (c != NULL && memchr(c + 1, ':', n - (size_t)(c + 1 - s)) == NULL)
			n = (size_t)(c - s); /* v4:port */
	}
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		out->prefix = 32;
		return true;
	}
	if (inet_pton(AF_INET6, buf, a6) != 1)
		return false;
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
		/* ::ffff:a.b.c.d is the IPv4 client a dual-stack socket saw */
		out->family = AF_INET;
		out->prefix = 32;
		memcpy(out->addr, a6 + 12, 4);
		return true;
	}
	out->family = AF_INET6;
	out->prefix = 128;
	memcpy(out->addr, a6, 16);
	return true;
}

/* True when the first prefix bits of a and b agree. */
static bool ca__prefix_eq(const unsigned char *a, const unsigned char *b, int prefix)
{
	int whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

static bool ca__trusted(const struct rtw_trust *t, const struct rtw_net *a)
{
	for (size_t i = 0; t && i < t->n; i++)
		if (t->nets[i].family == a->family && ca__prefix_eq(t->nets[i].addr, a->addr, t->nets[i].prefix))
			return true;
	return false;
}

int rtw_trust_parse(const char *list, struct rtw_trust *out, char *err, size_t errlen)
{
	return rtw_trust_parse_opt("http.trusted_proxies", list, out, err, errlen);
}

int rtw_trust_parse_opt(const char *opt, const char *list, struct rtw_trust *out, char *err, size_t errlen)
{
	const char *p = list ? list : "";
	size_t cap = 1;

	memset(out, 0, sizeof(*out));
	for (const char *q = p; *q; q++)
		cap += *q == ',';
	out->nets = calloc(cap, sizeof(*out->nets));
	if (out->nets == NULL) {
		snprintf(err, errlen, "out of memory");
		return RTW_ERROR;
	}
	while (*p) {
		size_t n = strcspn(p, ",");
		const char *slash = memchr(p, '/', n);
		struct rtw_net net;
		size_t alen = slash ? (size_t)(slash - p) : n;
		bool blank = strspn(p, " \t") >= n;

		if (!blank) {
			if (!ca__parse(p, alen, &net) || memchr(p, '[', alen) != NULL) {
				snprintf(err, errlen, "%s: \"%.*s\" is not an address or CIDR", opt,
					 (int)(n < 60 ? n : 60), p);
				rtw_trust_free(out);
				return RTW_ERROR;
			}
			if (slash) {
				char *end;
				long bits = strtol(slash + 1, &end, 10);
				int max = net.family == AF_INET ? 32 : 128;
				while (*end == ' ' || *end == '\t')
					end++;
				if (end == slash + 1 || end != p + n || bits < 0 || bits > max) {
					snprintf(err, errlen, "%s: \"%.*s\" has a bad prefix length", opt,
						 (int)(n < 60 ? n : 60), p);
					rtw_trust_free(out);
					return RTW_ERROR;
				}
				net.prefix = (int)bits;
			}
			out->nets[out->n++] = net;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return RTW_OK;
}

void rtw_trust_free(struct rtw_trust *t)
{
	free(t->nets);
	t->nets = NULL;
	t->n = 0;
}

bool rtw_trust_has(const struct rtw_trust *t, const char *addr)
{
	struct rtw_net a;

	return addr && ca__parse(addr, strlen(addr), &a) && ca__trusted(t, &a);
}

static void ca__key(const struct rtw_net *a, char out[RTW_CLIENT_KEY_MAX])
{
	char text[INET6_ADDRSTRLEN];
	unsigned char net[16];

	if (a->family == AF_INET) {
		inet_ntop(AF_INET, a->addr, out, RTW_CLIENT_KEY_MAX);
		return;
	}
	memcpy(net, a->addr, 8);
	memset(net + 8, 0, 8);
	inet_ntop(AF_INET6, net, text, sizeof(text));
	snprintf(out, RTW_CLIENT_KEY_MAX, "%s/64", text);
}

void rtw_client_key(const struct rtw_trust *t, const char *peer, const char *xff, char out[RTW_CLIENT_KEY_MAX])
{
	struct rtw_net client, hop;

	if (peer == NULL || !ca__parse(peer, strlen(peer), &client)) {
		snprintf(out, RTW_CLIENT_KEY_MAX, "unknown");
		return;
	}
	if (xff != NULL && ca__trusted(t, &client)) {
		size_t end = strlen(xff);
		while (end > 0) {
			size_t start = end;
			while (start > 0 && xff[start - 1] != ',')
				start--;
			if (!ca__parse(xff + start, end - start, &hop))
				break; /* garbage: keep the last trusted hop */
			client = hop;
			if (!ca__trusted(t, &hop))
				break;
			end = start > 0 ? start - 1 : 0;
		}
	}
	ca__key(&client, out);
}
