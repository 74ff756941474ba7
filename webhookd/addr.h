/*
 * addr.h: the webhook target policy on addresses and host names: which
 * peer addresses count as internal (loopback, private, link-local,
 * reserved...), whether a host name is on a widget's list, and whether
 * an address and port are opened by the deployment's host:port
 * allow-list. Pure code: no I/O, no resolver, no globals, thread-safe.
 */
#ifndef WHK_ADDR_H
#define WHK_ADDR_H

#include "rtw.h"

#include <sys/socket.h>

enum whk_addr_class {
	WHK_ADDR_PUBLIC = 0,  /* globally routable unicast: allowed */
	WHK_ADDR_UNSPECIFIED, /* 0.0.0.0/8, :: */
	WHK_ADDR_LOOPBACK,    /* 127/8, ::1 */
	WHK_ADDR_PRIVATE,     /* RFC 1918, fc00::/7, fec0::/10 */
	WHK_ADDR_LINK_LOCAL,  /* 169.254/16, fe80::/10 */
	WHK_ADDR_SHARED,      /* 100.64/10 carrier-grade NAT */
	WHK_ADDR_MULTICAST,   /* 224/4, ff00::/8 */
	WHK_ADDR_BROADCAST,   /* 255.255.255.255 */
	WHK_ADDR_RESERVED,    /* special-purpose and documentation ranges, 240/4, non-2000::/3 IPv6, NAT64 */
	WHK_ADDR_INVALID      /* not an IPv4/IPv6 socket address */
};

/* Classifies an IPv4 address given in network byte order as 4 bytes. */
enum whk_addr_class whk_addr_classify_v4(const unsigned char a[4]);

/* Classifies an IPv6 address (16 bytes). IPv4-mapped (::ffff:0:0/96),
 * IPv4-compatible (::/96) and 6to4 (2002::/16) addresses are judged by
 * the IPv4 address they embed. */
enum whk_addr_class whk_addr_classify_v6(const unsigned char a[16]);

/* Classifies a sockaddr_in / sockaddr_in6 of len bytes. */
enum whk_addr_class whk_addr_classify(const struct sockaddr *sa, socklen_t len);

/* Parses a numeric IPv4 (dotted quad only) or IPv6 literal (brackets
 * allowed) and classifies it; WHK_ADDR_INVALID when text is not one. */
enum whk_addr_class whk_addr_classify_text(const char *text);

/* A short lowercase name ("loopback"); static string. */
const char *whk_addr_class_name(enum whk_addr_class c);

/* True when host equals (case-insensitively, brackets of an IPv6 literal
 * ignored) an entry of pattern. A pattern "*.example.com" matches every
 * subdomain of example.com, not example.com itself. */
bool whk_host_match(const char *host, const char *pattern);

/* Checks a webhook.allow_hosts value: a comma list (spaces around
 * entries ignored, empty entries skipped) of host:port entries, where
 * host is a name, a "*.example.com" wildcard, a dotted-quad IPv4 or a
 * bracketed IPv6 literal, and port is 1 to 65535. RTW_OK, or RTW_ERROR
 * with the first bad entry described in err. */
int whk_allow_list_check(const char *list, char *err, size_t errlen) RTW_WUR;

/* True when the peer address sa (what curl is about to connect to) is
 * opened by an entry of list: the entry's port equals the peer's port,
 * and either the entry's host is an IP literal equal to the peer address
 * (an IPv4-mapped peer counts as its IPv4 address), or the entry's host
 * is a name that url_host matches (whk_host_match). Nothing else opens
 * anything: a NULL or empty list, a malformed entry or a non-IP sa match
 * nothing. */
bool whk_allow_match(const char *list, const char *url_host, const struct sockaddr *sa, socklen_t len);

#endif
