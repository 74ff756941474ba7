/*
 * net.c: owns turning a "host:port" option into a listening TCP socket.
 * Called at start-up only, before any loop runs.
 */
#include "config.h"
#include "net.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int rtw_listen_tcp(const char *spec, const char *what, int flags, int backlog, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
	const char *colon = strrchr(spec, ':');
	char host[256];
	size_t hl;
	int fd = -1, one = 1, rc;

	if (colon == NULL || colon[1] == '\0' || (size_t)(colon - spec) >= sizeof(host)) {
		snprintf(err, errlen, "invalid %s \"%s\": expected host:port", what, spec);
		return -1;
	}
	hl = (size_t)(colon - spec);
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (hl > 1 && host[0] == '[' && host[hl - 1] == ']') { /* [::1]:8081 */
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	if ((rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai)) != 0) {
		snprintf(err, errlen, "could not resolve %s \"%s\": %s", what, spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | ((flags & RTW_LISTEN_NONBLOCK) ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    ((flags & RTW_LISTEN_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
		snprintf(err, errlen, "could not listen on %s \"%s\": %s", what, spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}
