/*
 * net.h: opening a listening TCP socket from a "host:port" option value
 * ("127.0.0.1:8081", "[::1]:8081", ":8081" for every address), or a unix
 * stream socket from "unix:/path". Shared by rtw-sse and the daemons'
 * health listeners; no state.
 */
#ifndef RTW_NET_H
#define RTW_NET_H

#include "rtw.h"

enum {
	RTW_LISTEN_NONBLOCK = 1,  /* O_NONBLOCK on the socket (for an epoll loop) */
	RTW_LISTEN_REUSEPORT = 2, /* SO_REUSEPORT: several processes share the port (TCP only) */
};

/* Returns a listening, close-on-exec socket, or -1 with a message naming
 * the option (what, e.g. "sse.listen") in err. */
int rtw_listen_tcp(const char *spec, const char *what, int flags, int backlog, char *err, size_t errlen) RTW_WUR;

#endif
