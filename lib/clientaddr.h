/*
 * clientaddr.h: the one rule for "which client is this" that every
 * per-address limit of rtw counts under (rtw-sse's open streams and
 * anonymous identities, rtw-fcgi's POSTs): the peer's address, unless the
 * peer is a trusted proxy (http.trusted_proxies), in which case the
 * rightmost address of X-Forwarded-For that is not itself trusted. Pure
 * code over inet_pton/inet_ntop: no I/O, no state but the parsed list,
 * thread-safe.
 */
#ifndef RTW_CLIENTADDR_H
#define RTW_CLIENTADDR_H

#include "rtw.h"

/* One network of the trusted list: an address and a prefix length. IPv4
 * is held as such (family AF_INET, 4 bytes), IPv4-mapped IPv6 included. */
struct rtw_net {
	int family;
	int prefix;
	unsigned char addr[16];
};

struct rtw_trust {
	struct rtw_net *nets; /* owned */
	size_t n;
};

/* Parses a comma list of addresses and CIDRs ("127.0.0.0/8, ::1,
 * 10.1.2.3") into *out (release with rtw_trust_free). An empty list
 * trusts nobody. RTW_ERROR with a message in err on a bad entry or out of
 * memory. */
int rtw_trust_parse(const char *list, struct rtw_trust *out, char *err, size_t errlen) RTW_WUR;
/* The same for another option's list: err names opt. */
int rtw_trust_parse_opt(const char *opt, const char *list, struct rtw_trust *out, char *err, size_t errlen) RTW_WUR;
void rtw_trust_free(struct rtw_trust *t);

/* True when addr (text, IPv4 or IPv6) lies in one of t's networks. */
bool rtw_trust_has(const struct rtw_trust *t, const char *addr);

/* "a.b.c.d", or an IPv6 /64 prefix ("2001:db8:1:2::/64"), or "unknown". */
#define RTW_CLIENT_KEY_MAX 56

/* The key per-address limits count a request under. peer: the address
 * that connected (rtw-sse's socket peer, rtw-fcgi's REMOTE_ADDR; NULL or
 * unparsable gives "unknown"); xff: the X-Forwarded-For value (NULL when
 * absent). Only when the peer is trusted is xff read, from the right: the
 * first address that is not trusted is the client; an entry that is not
 * an address stops the walk at the last trusted one; when every entry is
 * trusted, the leftmost is the client. IPv6 clients count per /64 (one
 * subscriber line holds a whole /64). out is always NUL-terminated. */
void rtw_client_key(const struct rtw_trust *t, const char *peer, const char *xff, char out[RTW_CLIENT_KEY_MAX]);

#endif
