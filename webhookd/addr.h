/*
 * addr.h: the webhook target policy on addresses and host names: which
 * peer addresses count as internal (loopback, private, link-local,
 * reserved...) and whether a host name is on a comma list or a widget's
 * list. Pure code: no I/O, no resolver, no globals, thread-safe.
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

/* True when host matches an entry of a comma-separated list (spaces
 * around entries ignored). NULL or "" lists match nothing. */
bool whk_host_in_list(const char *host, const char *list);

#endif
