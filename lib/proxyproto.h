/*
 * proxyproto.h: the PROXY protocol header (HAProxy's proxy-protocol.txt,
 * versions 1 and 2) a TCP pass-through in front of rtw-sse (nginx
 * `stream` with `proxy_protocol on`, HAProxy `send-proxy`) writes before
 * the client's first byte, naming the client it accepted. Pure code over
 * inet_pton/inet_ntop: no I/O, no state, thread-safe. Who may send one is
 * the caller's rule (sse.proxy_protocol_from).
 */
#ifndef RTW_PROXYPROTO_H
#define RTW_PROXYPROTO_H

#include <arpa/inet.h>

#include "rtw.h"

/* The longest header accepted: a version 1 line is at most 107 bytes by
 * the specification; a version 2 header is 16 bytes plus its addresses
 * (216 for AF_UNIX) plus TLVs, which are bounded here (a longer one is
 * refused, never buffered without end). */
#define RTW_PROXY_V1_MAX 107
#define RTW_PROXY_MAX 512

struct rtw_proxy {
	size_t len; /* bytes of the header, to skip before the request */
	/* The client's address as text ("" when the header names none: the
	 * v1 UNKNOWN, the v2 LOCAL command, a v2 unix or unspecified family;
	 * the connection then stays the peer's). IPv4-mapped IPv6 as IPv4. */
	char addr[INET6_ADDRSTRLEN];
};

/* Parses the PROXY header at the start of data[0..n). RTW_OK: a whole,
 * valid header, its length and address in *out. RTW_AGAIN: data may be
 * the beginning of one (shorter than RTW_PROXY_MAX): read more.
 * RTW_DECLINED: data begins with neither signature (an HTTP request).
 * RTW_ERROR: a header that is malformed or longer than RTW_PROXY_MAX. */
int rtw_proxy_parse(const void *data, size_t n, struct rtw_proxy *out) RTW_WUR;

#endif
