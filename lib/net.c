/*
 * net.c: owns turning a "host:port" or "unix:/path" option into a
 * listening socket. Called at start-up only, before any loop runs.
 */
#include "config.h"
#include "net.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* "unix:/path": a stream socket on a path, for a front on the same host
 * (nginx's "server unix:/path"), which spares both sides the loopback TCP
 * stack. A socket file left by an earlier run is replaced; anything else
 * on the path is not. The file is 0666, as PostgreSQL's socket is: the
 * permissions of its folder say who may connect. No SO_REUSEPORT: each
 * process needs a path of its own. */
static int net__listen_unix(const char *path, const char *what, int flags, int backlog, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	if (path[0] != '/' || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "invalid %s \"unix:%s\": expected an absolute path under %zu bytes", what, path,
			 sizeof(sa.sun_path));
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | ((flags & RTW_LISTEN_NONBLOCK) ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, 0666) != 0 ||
	    listen(fd, backlog) != 0) {
		snprintf(err, errlen, "could not listen on %s \"unix:%s\": %s", what, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

int rtw_listen_tcp(const char *spec, const char *what, int flags, int backlog, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
	const char *colon = strrchr(spec, ':');
	char host[256];
	size_t hl;
	int fd = -1, one = 1, rc;

	if (strncmp(spec, "unix:", 5) == 0)
		return net__listen_unix(spec + 5, what, flags, backlog, err, errlen);
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
