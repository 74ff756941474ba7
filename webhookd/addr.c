/*
 * addr.c: owns the classification of webhook peer addresses and host-name
 * matching, and the host:port allow-list. rtw-webhookd calls it from
 * curl's open-socket callback on the address and port curl is about to
 * connect to, so the check also holds against DNS rebinding and against
 * the numeric spellings curl normalises. Pure: no I/O, no resolver, no
 * state.
 */
#include "config.h"
#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* One IPv4 range: the first address (host order) and prefix length. */
struct addr__v4range {
	uint32_t net;
	int bits;
	enum whk_addr_class cls;
};

#define V4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (uint32_t)(d))

/* Checked in order; the first match wins. From the IANA IPv4
 * special-purpose registry, plus multicast and 240/4. */
static const struct addr__v4range addr__v4[] = {
    {V4(255, 255, 255, 255), 32, WHK_ADDR_BROADCAST},
    {V4(0, 0, 0, 0), 8, WHK_ADDR_UNSPECIFIED},
    {V4(10, 0, 0, 0), 8, WHK_ADDR_PRIVATE},
    {V4(100, 64, 0, 0), 10, WHK_ADDR_SHARED},
    {V4(127, 0, 0, 0), 8, WHK_ADDR_LOOPBACK},
    {V4(169, 254, 0, 0), 16, WHK_ADDR_LINK_LOCAL},
    {V4(172, 16, 0, 0), 12, WHK_ADDR_PRIVATE},
    {V4(192, 0, 0, 0), 24, WHK_ADDR_RESERVED},	  /* IETF protocol assignments */
    {V4(192, 0, 2, 0), 24, WHK_ADDR_RESERVED},	  /* TEST-NET-1 */
    {V4(192, 31, 196, 0), 24, WHK_ADDR_RESERVED}, /* AS112 */
    {V4(192, 52, 193, 0), 24, WHK_ADDR_RESERVED}, /* AMT */
    {V4(192, 88, 99, 0), 24, WHK_ADDR_RESERVED},  /* 6to4 relay anycast */
    {V4(192, 168, 0, 0), 16, WHK_ADDR_PRIVATE},
    {V4(192, 175, 48, 0), 24, WHK_ADDR_RESERVED}, /* AS112 direct delegation */
    {V4(198, 18, 0, 0), 15, WHK_ADDR_RESERVED},	  /* benchmarking */
    {V4(198, 51, 100, 0), 24, WHK_ADDR_RESERVED}, /* TEST-NET-2 */
    {V4(203, 0, 113, 0), 24, WHK_ADDR_RESERVED},  /* TEST-NET-3 */
    {V4(224, 0, 0, 0), 4, WHK_ADDR_MULTICAST},
    {V4(240, 0, 0, 0), 4, WHK_ADDR_RESERVED},
};

enum whk_addr_class whk_addr_classify_v4(const unsigned char a[4])
{
	uint32_t ip = V4(a[0], a[1], a[2], a[3]);

	for (size_t i = 0; i < RTW_ARRAY_LEN(addr__v4); i++) {
		uint32_t mask = addr__v4[i].bits == 0 ? 0 : ~(uint32_t)0 << (32 - addr__v4[i].bits);
		if ((ip & mask) == addr__v4[i].net)
			return addr__v4[i].cls;
	}
	return WHK_ADDR_PUBLIC;
}

static bool addr__zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

enum whk_addr_class whk_addr_classify_v6(const unsigned char a[16])
{
	static const unsigned char loopback[16] = {[15] = 1};

	if (addr__zero(a, 16))
		return WHK_ADDR_UNSPECIFIED;
	if (memcmp(a, loopback, 16) == 0)
		return WHK_ADDR_LOOPBACK;
	/* ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated):
	 * the kernel connects these to the IPv4 address itself. */
	if (addr__zero(a, 10) && ((a[10] == 0xff && a[11] == 0xff) || (a[10] == 0 && a[11] == 0)))
		return whk_addr_classify_v4(a + 12);
	/* ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765) */
	if (addr__zero(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 && a[11] == 0)
		return whk_addr_classify_v4(a + 12);
	if (a[0] == 0xff)
		return WHK_ADDR_MULTICAST;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return WHK_ADDR_LINK_LOCAL;
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return WHK_ADDR_PRIVATE; /* site-local, deprecated */
	if ((a[0] & 0xfe) == 0xfc)
		return WHK_ADDR_PRIVATE; /* unique local */
	/* 6to4: reaches the embedded IPv4 address's network. */
	if (a[0] == 0x20 && a[1] == 0x02)
		return whk_addr_classify_v4(a + 2) == WHK_ADDR_PUBLIC ? WHK_ADDR_PUBLIC : WHK_ADDR_RESERVED;
	/* 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking) */
	if (a[0] == 0x20 && a[1] == 0x01 && (a[2] & 0xfe) == 0x00)
		return WHK_ADDR_RESERVED;
	/* 2001:db8::/32 documentation */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return WHK_ADDR_RESERVED;
	/* 3fff::/20 documentation (RFC 9637) */
	if (a[0] == 0x3f && a[1] == 0xff && (a[2] & 0xf0) == 0)
		return WHK_ADDR_RESERVED;
	/* Everything outside 2000::/3 (global unicast) is unassigned or
	 * special: NAT64 64:ff9b::/96 and 64:ff9b:1::/48 (they reach IPv4
	 * space we cannot judge), discard 100::/64, and the rest. */
	if ((a[0] & 0xe0) != 0x20)
		return WHK_ADDR_RESERVED;
	return WHK_ADDR_PUBLIC;
}

enum whk_addr_class whk_addr_classify(const struct sockaddr *sa, socklen_t len)
{
	if (!sa)
		return WHK_ADDR_INVALID;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return whk_addr_classify_v4((const unsigned char *)&in->sin_addr);
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		return whk_addr_classify_v6(in6->sin6_addr.s6_addr);
	}
	return WHK_ADDR_INVALID;
}

enum whk_addr_class whk_addr_classify_text(const char *text)
{
	unsigned char buf[16];
	char tmp[64];
	size_t n;

	if (!text)
		return WHK_ADDR_INVALID;
	n = strlen(text);
	if (n >= 2 && text[0] == '[' && text[n - 1] == ']') {
		if (n - 2 >= sizeof(tmp))
			return WHK_ADDR_INVALID;
		memcpy(tmp, text + 1, n - 2);
		tmp[n - 2] = '\0';
		text = tmp;
	}
	/* inet_pton accepts only the dotted-quad decimal form, never the
	 * octal/hex/integer forms; the resolver's view of those is judged
	 * on the connected address instead. */
	if (inet_pton(AF_INET, text, buf) == 1)
		return whk_addr_classify_v4(buf);
	if (inet_pton(AF_INET6, text, buf) == 1)
		return whk_addr_classify_v6(buf);
	return WHK_ADDR_INVALID;
}

const char *whk_addr_class_name(enum whk_addr_class c)
{
	switch (c) {
	case WHK_ADDR_PUBLIC: return "public";
	case WHK_ADDR_UNSPECIFIED: return "unspecified";
	case WHK_ADDR_LOOPBACK: return "loopback";
	case WHK_ADDR_PRIVATE: return "private";
	case WHK_ADDR_LINK_LOCAL: return "link-local";
	case WHK_ADDR_SHARED: return "shared (carrier-grade NAT)";
	case WHK_ADDR_MULTICAST: return "multicast";
	case WHK_ADDR_BROADCAST: return "broadcast";
	case WHK_ADDR_RESERVED: return "reserved";
	case WHK_ADDR_INVALID: break;
	}
	return "invalid";
}

/* host and pattern as [start, end) spans, brackets stripped. */
static void addr__strip(const char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
		(*n)--;
	if (*n >= 2 && (*s)[0] == '[' && (*s)[*n - 1] == ']') {
		(*s)++;
		*n -= 2;
	}
	/* a trailing dot names the same host ("example.com.") */
	if (*n > 1 && (*s)[*n - 1] == '.')
		(*n)--;
}

static bool addr__match_span(const char *host, size_t hn, const char *pat, size_t pn)
{
	addr__strip(&host, &hn);
	addr__strip(&pat, &pn);
	if (hn == 0 || pn == 0)
		return false;
	if (pn > 2 && pat[0] == '*' && pat[1] == '.') {
		size_t sn = pn - 1; /* ".example.com" */
		return hn > sn && strncasecmp(host + hn - sn, pat + 1, sn) == 0;
	}
	return hn == pn && strncasecmp(host, pat, hn) == 0;
}

bool whk_host_match(const char *host, const char *pattern)
{
	if (!host || !pattern)
		return false;
	return addr__match_span(host, strlen(host), pattern, strlen(pattern));
}

/* One webhook.allow_hosts entry. */
struct addr__entry {
	char host[256]; /* brackets of an IPv6 literal removed */
	unsigned port;
};

/* Parses the entry [e, e + n). RTW_OK, RTW_DECLINED for an empty entry,
 * RTW_ERROR when it is not host:port. */
static int addr__entry_parse(const char *e, size_t n, struct addr__entry *out)
{
	const char *colon, *end;
	size_t hn, pn;

	while (n && (*e == ' ' || *e == '\t')) {
		e++;
		n--;
	}
	while (n && (e[n - 1] == ' ' || e[n - 1] == '\t'))
		n--;
	if (n == 0)
		return RTW_DECLINED;
	end = e + n;
	if (e[0] == '[') {
		const char *close = memchr(e, ']', n);
		if (!close || close + 1 == e + n || close[1] != ':')
			return RTW_ERROR;
		colon = close + 1;
		e++;
		hn = (size_t)(close - e);
	} else {
		colon = NULL;
		for (size_t i = 0; i < n; i++)
			if (e[i] == ':') {
				if (colon) /* an IPv6 literal needs its brackets */
					return RTW_ERROR;
				colon = e + i;
			}
		if (!colon)
			return RTW_ERROR;
		hn = (size_t)(colon - e);
	}
	pn = (size_t)(end - (colon + 1));
	if (hn == 0 || hn >= sizeof(out->host) || pn == 0 || pn > 5)
		return RTW_ERROR;
	out->port = 0;
	for (size_t i = 0; i < pn; i++) {
		if (!isdigit((unsigned char)colon[1 + i]))
			return RTW_ERROR;
		out->port = out->port * 10 + (unsigned)(colon[1 + i] - '0');
	}
	if (out->port == 0 || out->port > 65535)
		return RTW_ERROR;
	memcpy(out->host, e, hn);
	out->host[hn] = '\0';
	return RTW_OK;
}

/* Calls fn on each entry of list until it returns true; RTW_ERROR at the
 * first malformed entry (its span in *bad, *bad_n). */
static int addr__each(const char *list, bool (*fn)(const struct addr__entry *, void *), void *arg, bool *hit,
		      const char **bad, size_t *bad_n)
{
	struct addr__entry ent;

	*hit = false;
	while (list && *list) {
		const char *comma = strchr(list, ',');
		size_t n = comma ? (size_t)(comma - list) : strlen(list);
		int rc = addr__entry_parse(list, n, &ent);
		if (rc == RTW_ERROR) {
			*bad = list;
			*bad_n = n;
			return RTW_ERROR;
		}
		if (rc == RTW_OK && fn(&ent, arg)) {
			*hit = true;
			return RTW_OK;
		}
		if (!comma)
			break;
		list = comma + 1;
	}
	return RTW_OK;
}

static bool addr__never(const struct addr__entry *e, void *arg)
{
	(void)e;
	(void)arg;
	return false;
}

int whk_allow_list_check(const char *list, char *err, size_t errlen)
{
	const char *bad = NULL;
	size_t bad_n = 0;
	bool hit;

	if (addr__each(list, addr__never, NULL, &hit, &bad, &bad_n) == RTW_OK)
		return RTW_OK;
	snprintf(err, errlen, "invalid webhook.allow_hosts entry \"%.*s\": expected host:port (IPv6 as [addr]:port)",
		 (int)(bad_n > 100 ? 100 : bad_n), bad);
	return RTW_ERROR;
}

/* The peer as the allow-list sees it. */
struct addr__peer {
	const char *url_host;
	int family; /* AF_INET (v4 holds it, also for a mapped IPv6) or AF_INET6 */
	unsigned char ip[16];
	unsigned port;
};

static bool addr__opens(const struct addr__entry *e, void *arg)
{
	const struct addr__peer *p = arg;
	unsigned char buf[16];

	if (e->port != p->port)
		return false;
	if (inet_pton(AF_INET, e->host, buf) == 1)
		return p->family == AF_INET && memcmp(buf, p->ip, 4) == 0;
	if (inet_pton(AF_INET6, e->host, buf) == 1)
		return p->family == AF_INET6 && memcmp(buf, p->ip, 16) == 0;
	/* a name: the URL named it, and the peer is what it resolved to */
	return whk_host_match(p->url_host, e->host);
}

bool whk_allow_match(const char *list, const char *url_host, const struct sockaddr *sa, socklen_t len)
{
	static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
	struct addr__peer p = {.url_host = url_host};
	const char *bad;
	size_t bad_n;
	bool hit;

	if (!sa)
		return false;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		p.family = AF_INET;
		memcpy(p.ip, &in->sin_addr, 4);
		p.port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		p.port = ntohs(in6->sin6_port);
		if (memcmp(in6->sin6_addr.s6_addr, mapped, 12) == 0) {
			p.family = AF_INET;
			memcpy(p.ip, in6->sin6_addr.s6_addr + 12, 4);
		} else {
			p.family = AF_INET6;
			memcpy(p.ip, in6->sin6_addr.s6_addr, 16);
		}
	} else {
		return false;
	}
	return addr__each(list, addr__opens, &p, &hit, &bad, &bad_n) == RTW_OK && hit;
}
