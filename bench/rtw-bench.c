/*
 * rtw-bench.c: the load tool of bench/: SSE subscribers and an HTTP
 * publisher on one epoll loop per process, for rtw and for Nchan alike.
 * It owns only measurement: it never asserts a target (bench/run and
 * doc/performance.md compare), and it never links rtw code, so it measures
 * the public contract (SSE frames "id: N\ndata: <json>\n\n", POST
 * /v1/streams/S/messages) exactly as a widget sees it.
 *
 * Modes:
 *   run        subscribers (in --procs child processes) + publisher (in the
 *              parent): latency publish->receive, loss, duplicates, order,
 *              kept rate, server CPU per delivery (/proc/PID/stat).
 *   subscribe  subscribers only, until --duration ends (gaps counted per
 *              connection between the first and last seq it saw).
 *   publish    publisher only.
 *   idle       hold --conns idle connections; RSS growth per connection of
 *              the --pids (sum of /proc/PID/status VmRSS).
 * Each prints one human line on stderr and one JSON line on stdout.
 *
 * The publisher embeds {"seq":N,"t":<unix µs at send>} in each message;
 * subscribers find "seq" and "t" with a byte scan of each data: line (no
 * JSON parse), so the tool stays cheap next to the server it measures.
 * Connections are spread over source addresses 127.0.0.2..127.0.0.250
 * (bind() with IP_BIND_ADDRESS_NO_PORT before connect) so 50,000
 * connections do not exhaust one address's ephemeral ports.
 *
 * With --tls 1 the subscribers speak TLS (OpenSSL, no certificate
 * verification: the bench measures the server, not the PKI), through a
 * non-blocking handshake on the same loop; reads go through SSL_read.
 *
 * Threads: none. Each process runs one loop; children report a fixed-size
 * struct bn_stats over a pipe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define BN_MAX_PIDS 64
#define BN_HIST_BUCKETS 1216
#define BN_LINE_MAX 65536 /* a data: line longer than this is dropped and counted */
#define BN_MAX_PUB_CONNS 256

/* ---- options (read-only after parse) ----------------------------------- */

enum bn_mode { BN_RUN, BN_SUBSCRIBE, BN_PUBLISH, BN_IDLE };
enum bn_format { BN_FMT_RTW, BN_FMT_NCHAN };

struct bn_opts {
	enum bn_mode mode;
	enum bn_format format;
	char sub_host[64];
	int sub_port;
	char sub_path[512];
	char pub_host[64];
	int pub_port;
	char pub_path[512];
	const char *token;     /* Bearer for the publisher */
	const char *sub_token; /* Bearer for subscribers (rtw) */
	const char *widget_key;
	const char *label;
	int conns;
	int procs;
	double rate;
	double duration;
	double drain;
	double settle;
	double hold;
	double connect_timeout;
	int pub_conns;
	int payload;   /* extra padding bytes in each message */
	int src_addrs; /* how many 127.0.0.x source addresses */
	bool tls;      /* subscribers speak TLS (no verification) */
	pid_t pids[BN_MAX_PIDS];
	int npids;
	pid_t pids_all[BN_MAX_PIDS]; /* the whole pipeline (rtw: + fcgi, nginx, PostgreSQL) */
	int npids_all;
};

/* ---- statistics --------------------------------------------------------- */

/* Log-linear histogram of microseconds: exact below 64, then 32 buckets
 * per power of two (~3% resolution), up to ~2^40 µs. */
struct bn_hist {
	uint64_t b[BN_HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
};

static int bn__hist_index(uint64_t v)
{
	if (v < 64)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - 5;
	int idx = 64 + (shift - 1) * 32 + (int)((v >> shift) - 32);
	return idx < BN_HIST_BUCKETS ? idx : BN_HIST_BUCKETS - 1;
}

static uint64_t bn__hist_value(int idx)
{
	if (idx < 64)
		return (uint64_t)idx;
	int shift = (idx - 64) / 32 + 1;
	uint64_t base = (uint64_t)((idx - 64) % 32 + 32);
	/* the bucket's midpoint */
	return (base << shift) + ((1ull << shift) >> 1);
}

static void bn_hist_add(struct bn_hist *h, uint64_t v)
{
	h->b[bn__hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static void bn_hist_merge(struct bn_hist *into, const struct bn_hist *from)
{
	for (int i = 0; i < BN_HIST_BUCKETS; i++)
		into->b[i] += from->b[i];
	into->n += from->n;
	if (from->max > into->max)
		into->max = from->max;
}

static double bn_hist_pct_ms(const struct bn_hist *h, double pct)
{
	if (h->n == 0)
		return -1;
	uint64_t want = (uint64_t)(pct / 100.0 * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	uint64_t acc = 0;
	for (int i = 0; i < BN_HIST_BUCKETS; i++) {
		acc += h->b[i];
		if (acc > want) {
			uint64_t v = bn__hist_value(i);
			if (v > h->max)
				v = h->max;
			return (double)v / 1000.0;
		}
	}
	return (double)h->max / 1000.0;
}

/* What one subscriber process reports to the parent. */
struct bn_stats {
	uint64_t connected; /* got a 200 head */
	uint64_t failed;    /* refused, non-200, closed early */
	uint64_t closed;    /* closed by the server after the head */
	uint64_t events;    /* data: lines with a seq */
	uint64_t other;	    /* data: lines without a seq (init...) */
	uint64_t unique;    /* distinct (conn, seq) */
	uint64_t dup;
	uint64_t ooo;	  /* seq below the highest seen on its connection */
	uint64_t gaps;	  /* subscribe mode: missing seqs between first and last */
	uint64_t beyond;  /* seq outside the expected range */
	uint64_t at_mark; /* unique at the end of publishing */
	uint64_t bytes;
	uint64_t long_lines;
	struct bn_hist lat;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t bn_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double bn_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bn_die(const char *what)
{
	fprintf(stderr, "rtw-bench: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* utime+stime in seconds of every pid (all threads). */
static double bn_cpu_of(const pid_t *pids, int n)
{
	double total = 0;
	long hz = sysconf(_SC_CLK_TCK);
	for (int i = 0; i < n; i++) {
		char path[64], buf[2048];
		snprintf(path, sizeof path, "/proc/%d/stat", (int)pids[i]);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = 0;
		/* fields after the command name, which may hold spaces */
		char *p = strrchr(buf, ')');
		if (!p)
			continue;
		unsigned long ut = 0, st = 0;
		/* state(3) ... utime is field 14, stime 15 */
		if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			total += (double)(ut + st) / (double)hz;
	}
	return total;
}

/* Sum of VmRSS in KiB of every pid. */
static long bn_rss_kib(const pid_t *pids, int n)
{
	long total = 0;
	for (int i = 0; i < n; i++) {
		char path[64], line[256];
		snprintf(path, sizeof path, "/proc/%d/status", (int)pids[i]);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof line, f)) {
			long v;
			if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
				total += v;
		}
		fclose(f);
	}
	return total;
}

/* A non-blocking connect from 127.0.0.(2 + slot % src_addrs). */
static int bn_connect(const char *host, int port, int slot, int src_addrs)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (src_addrs > 0 && strncmp(host, "127.", 4) == 0) {
		struct sockaddr_in src = {.sin_family = AF_INET};
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		src.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(2 + slot % src_addrs));
		if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
			close(fd);
			return -1;
		}
	}
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Finds "key" followed by optional spaces and ':' and returns the unsigned
 * number after it; the cheap scan that replaces a JSON parse. */
static bool bn_scan_u64(const char *s, size_t len, const char *key, uint64_t *out)
{
	size_t kl = strlen(key);
	const char *end = s + len;
	const char *p = s;
	while ((p = memmem(p, (size_t)(end - p), key, kl)) != NULL) {
		const char *q = p + kl;
		while (q < end && *q == ' ')
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && *q == ' ')
				q++;
			if (q < end && *q >= '0' && *q <= '9') {
				uint64_t v = 0;
				while (q < end && *q >= '0' && *q <= '9')
					v = v * 10 + (uint64_t)(*q++ - '0');
				*out = v;
				return true;
			}
		}
		p += kl;
	}
	return false;
}

/* ---- HTTP/1.1 response reader (head, Content-Length or chunked) ---------- */

enum bn_http_state {
	BN_HTTP_HEAD,	    /* collecting the head into carry */
	BN_HTTP_RAW,	    /* body until close */
	BN_HTTP_LENGTH,	    /* body of body_left bytes */
	BN_HTTP_CHUNK_SIZE, /* reading "hex\r\n" into carry */
	BN_HTTP_CHUNK_DATA,
	BN_HTTP_CHUNK_CRLF,
	BN_HTTP_TRAILER, /* after the 0 chunk */
	BN_HTTP_DONE
};

struct bn_http {
	enum bn_http_state state;
	int status;
	uint64_t body_left; /* LENGTH: bytes; CHUNK_DATA: chunk bytes; CRLF: 2.. */
	char *carry;	    /* head or chunk-size line in progress (malloc) */
	uint32_t carry_len;
};

static void bn_http_reset(struct bn_http *h)
{
	free(h->carry);
	memset(h, 0, sizeof *h);
	h->state = BN_HTTP_HEAD;
}

static void bn__carry_add(char **carry, uint32_t *len, const char *p, size_t n)
{
	char *c = realloc(*carry, *len + n + 1);
	if (!c)
		bn_die("realloc");
	memcpy(c + *len, p, n);
	*len += (uint32_t)n;
	c[*len] = 0;
	*carry = c;
}

/* Parses the head in h->carry (terminated by \r\n\r\n). */
static void bn__http_head(struct bn_http *h)
{
	h->status = 0;
	sscanf(h->carry, "HTTP/1.%*d %d", &h->status);
	bool chunked = false, has_len = false;
	uint64_t len = 0;
	for (char *line = strstr(h->carry, "\r\n"); line; line = strstr(line, "\r\n")) {
		line += 2;
		if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strstr(line, "chunked") &&
		    strstr(line, "chunked") < strstr(line, "\r\n"))
			chunked = true;
		else if (strncasecmp(line, "content-length:", 15) == 0) {
			has_len = true;
			len = strtoull(line + 15, NULL, 10);
		}
	}
	free(h->carry);
	h->carry = NULL;
	h->carry_len = 0;
	if (chunked)
		h->state = BN_HTTP_CHUNK_SIZE;
	else if (has_len) {
		h->state = len ? BN_HTTP_LENGTH : BN_HTTP_DONE;
		h->body_left = len;
	} else
		h->state = BN_HTTP_RAW;
}

/* Feeds bytes; calls body(ctx, p, n) for decoded body bytes and head(ctx)
 * once after the head. Returns false on a malformed stream. */
typedef void (*bn_body_fn)(void *ctx, const char *p, size_t n);
typedef void (*bn_head_fn)(void *ctx);

static bool bn_http_feed(struct bn_http *h, const char *p, size_t n, bn_head_fn head, bn_body_fn body, void *ctx)
{
	while (n > 0) {
		switch (h->state) {
		case BN_HTTP_HEAD: {
			/* look for the end of head across the carry and p */
			size_t old = h->carry_len;
			bn__carry_add(&h->carry, &h->carry_len, p, n);
			char *e = strstr(h->carry + (old > 3 ? old - 3 : 0), "\r\n\r\n");
			if (!e) {
				if (h->carry_len > 65536)
					return false;
				return true;
			}
			size_t headlen = (size_t)(e - h->carry) + 4;
			size_t used = headlen - old;
			h->carry[headlen - 2] = 0; /* keep the last header's \r\n */
			bn__http_head(h);
			if (head)
				head(ctx);
			p += used;
			n -= used;
			break;
		}
		case BN_HTTP_RAW: body(ctx, p, n); return true;
		case BN_HTTP_LENGTH: {
			size_t k = n < h->body_left ? n : (size_t)h->body_left;
			body(ctx, p, k);
			p += k;
			n -= k;
			h->body_left -= k;
			if (h->body_left == 0)
				h->state = BN_HTTP_DONE;
			break;
		}
		case BN_HTTP_CHUNK_SIZE: {
			const char *nl = memchr(p, '\n', n);
			size_t k = nl ? (size_t)(nl - p) + 1 : n;
			bn__carry_add(&h->carry, &h->carry_len, p, k);
			p += k;
			n -= k;
			if (!nl) {
				if (h->carry_len > 64)
					return false;
				break;
			}
			uint64_t size = strtoull(h->carry, NULL, 16);
			free(h->carry);
			h->carry = NULL;
			h->carry_len = 0;
			if (size == 0) {
				h->state = BN_HTTP_TRAILER;
				h->body_left = 2;
			} else {
				h->state = BN_HTTP_CHUNK_DATA;
				h->body_left = size;
			}
			break;
		}
		case BN_HTTP_CHUNK_DATA: {
			size_t k = n < h->body_left ? n : (size_t)h->body_left;
			body(ctx, p, k);
			p += k;
			n -= k;
			h->body_left -= k;
			if (h->body_left == 0) {
				h->state = BN_HTTP_CHUNK_CRLF;
				h->body_left = 2;
			}
			break;
		}
		case BN_HTTP_CHUNK_CRLF:
		case BN_HTTP_TRAILER: {
			/* assumes no trailer fields, as nginx and rtw send none */
			size_t k = n < h->body_left ? n : (size_t)h->body_left;
			p += k;
			n -= k;
			h->body_left -= k;
			if (h->body_left == 0)
				h->state = h->state == BN_HTTP_TRAILER ? BN_HTTP_DONE : BN_HTTP_CHUNK_SIZE;
			break;
		}
		case BN_HTTP_DONE: return true; /* extra bytes: ignored (no pipelining) */
		}
	}
	return true;
}

/* ---- subscribers -------------------------------------------------------- */

enum bn_sub_state { BN_SUB_CONNECTING, BN_SUB_TLS, BN_SUB_WAIT_HEAD, BN_SUB_STREAMING, BN_SUB_CLOSED };

struct bn_sub {
	int fd;
	SSL *ssl; /* --tls: the session; NULL: plain */
	enum bn_sub_state state;
	struct bn_http http;
	char *line; /* a partial SSE line carried between reads (malloc) */
	uint32_t line_len;
	bool line_long; /* the current line overflowed: skip to its end */
	uint64_t max_seq, min_seq;
	uint64_t nseen;
	uint8_t *seen; /* bitmap of seqs [0, expect) (run mode) */
};

struct bn_subctx {
	const struct bn_opts *o;
	int epfd;
	struct bn_sub *subs;
	int n;
	int first_slot;
	uint64_t expect; /* size of the seq space (run mode), 0: unknown */
	struct bn_stats st;
	struct bn_sub *cur;
	uint64_t now_us;
	SSL_CTX *tls; /* --tls: the client context */
};

static void bn__sub_set_state(struct bn_subctx *c, struct bn_sub *s, enum bn_sub_state to)
{
	if (to == BN_SUB_CLOSED && s->state != BN_SUB_CLOSED) {
		if (s->state == BN_SUB_STREAMING)
			c->st.closed++;
		else
			c->st.failed++;
		epoll_ctl(c->epfd, EPOLL_CTL_DEL, s->fd, NULL);
		if (s->ssl) {
			SSL_free(s->ssl);
			s->ssl = NULL;
			ERR_clear_error();
		}
		close(s->fd);
		s->fd = -1;
	}
	if (to == BN_SUB_STREAMING)
		c->st.connected++;
	s->state = to;
}

static void bn__sub_data_line(struct bn_subctx *c, struct bn_sub *s, const char *p, size_t n)
{
	uint64_t seq, t;
	if (!bn_scan_u64(p, n, "\"seq\"", &seq) || !bn_scan_u64(p, n, "\"t\"", &t)) {
		c->st.other++;
		return;
	}
	c->st.events++;
	bn_hist_add(&c->st.lat, c->now_us > t ? c->now_us - t : 0);
	if (s->nseen == 0 || seq < s->min_seq)
		s->min_seq = seq;
	if (s->nseen > 0 && seq < s->max_seq)
		c->st.ooo++;
	if (s->nseen == 0 || seq > s->max_seq)
		s->max_seq = seq;
	s->nseen++;
	if (c->expect) {
		if (seq >= c->expect) {
			c->st.beyond++;
			return;
		}
		if (!s->seen) {
			s->seen = calloc((size_t)(c->expect + 7) / 8, 1);
			if (!s->seen)
				bn_die("calloc");
		}
		uint8_t bit = (uint8_t)(1u << (seq & 7));
		if (s->seen[seq >> 3] & bit)
			c->st.dup++;
		else {
			s->seen[seq >> 3] |= bit;
			c->st.unique++;
		}
	} else {
		c->st.unique++;
	}
}

static void bn__sub_line(struct bn_subctx *c, struct bn_sub *s, const char *p, size_t n)
{
	if (n && p[n - 1] == '\r')
		n--;
	if (n >= 5 && memcmp(p, "data:", 5) == 0)
		bn__sub_data_line(c, s, p + 5, n - 5);
}

static void bn__sub_body(void *ctx, const char *p, size_t n)
{
	struct bn_subctx *c = ctx;
	struct bn_sub *s = c->cur;
	c->st.bytes += n;
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		if (!nl) {
			if (s->line_long)
				return;
			if (s->line_len + n > BN_LINE_MAX) {
				s->line_long = true;
				c->st.long_lines++;
				free(s->line);
				s->line = NULL;
				s->line_len = 0;
				return;
			}
			bn__carry_add(&s->line, &s->line_len, p, n);
			return;
		}
		size_t k = (size_t)(nl - p);
		if (s->line_long) {
			s->line_long = false;
		} else if (s->line_len) {
			bn__carry_add(&s->line, &s->line_len, p, k);
			bn__sub_line(c, s, s->line, s->line_len);
			free(s->line);
			s->line = NULL;
			s->line_len = 0;
		} else {
			bn__sub_line(c, s, p, k);
		}
		p += k + 1;
		n -= k + 1;
	}
}

static void bn__sub_head(void *ctx)
{
	struct bn_subctx *c = ctx;
	struct bn_sub *s = c->cur;
	if (s->http.status == 200)
		bn__sub_set_state(c, s, BN_SUB_STREAMING);
	else
		bn__sub_set_state(c, s, BN_SUB_CLOSED);
}

static void bn__sub_send_request(struct bn_subctx *c, struct bn_sub *s)
{
	const struct bn_opts *o = c->o;
	char req[2048];
	char auth[1024] = "";
	if (o->sub_token)
		snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", o->sub_token);
	int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n%s\r\n",
			   o->sub_path, o->sub_host, o->sub_port, auth);
	/* a fresh socket's send buffer always takes a short request (TLS:
	 * one record, after the handshake drained) */
	if ((s->ssl ? SSL_write(s->ssl, req, len) : write(s->fd, req, (size_t)len)) != len) {
		bn__sub_set_state(c, s, BN_SUB_CLOSED);
		return;
	}
	bn_http_reset(&s->http);
	s->state = BN_SUB_WAIT_HEAD;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
	epoll_ctl(c->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* --tls: drives the handshake; the request goes once it is done. */
static void bn__sub_tls(struct bn_subctx *c, struct bn_sub *s)
{
	int r = SSL_do_handshake(s->ssl);
	if (r == 1) {
		bn__sub_send_request(c, s);
		return;
	}
	int e = SSL_get_error(s->ssl, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
		bn__sub_set_state(c, s, BN_SUB_CLOSED);
		return;
	}
	struct epoll_event ev = {.events = e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT, .data.ptr = s};
	epoll_ctl(c->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* read(2), or SSL_read under --tls with the same meaning (-1 with EAGAIN:
 * nothing more now; 0: closed). */
static ssize_t bn__sub_read(struct bn_sub *s, char *buf, size_t n)
{
	if (!s->ssl)
		return read(s->fd, buf, n);
	size_t got = 0;
	if (SSL_read_ex(s->ssl, buf, n, &got) == 1)
		return (ssize_t)got;
	int e = SSL_get_error(s->ssl, 0);
	ERR_clear_error();
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	return 0;
}

static void bn__sub_event(struct bn_subctx *c, struct bn_sub *s, uint32_t events)
{
	static char buf[262144]; /* one process, one loop: shared read buffer */
	if (s->state == BN_SUB_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err || (events & (EPOLLERR | EPOLLHUP))) {
			bn__sub_set_state(c, s, BN_SUB_CLOSED);
			return;
		}
		if (c->tls) {
			s->ssl = SSL_new(c->tls);
			if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1)
				bn_die("SSL_new");
			SSL_set_tlsext_host_name(s->ssl, c->o->sub_host);
			SSL_set_connect_state(s->ssl);
			s->state = BN_SUB_TLS;
			bn__sub_tls(c, s);
			return;
		}
		bn__sub_send_request(c, s);
		return;
	}
	if (s->state == BN_SUB_TLS) {
		bn__sub_tls(c, s);
		return;
	}
	c->cur = s;
	for (;;) {
		ssize_t r = bn__sub_read(s, buf, sizeof buf);
		if (r > 0) {
			c->now_us = bn_now_us();
			if (!bn_http_feed(&s->http, buf, (size_t)r, bn__sub_head, bn__sub_body, c)) {
				bn__sub_set_state(c, s, BN_SUB_CLOSED);
				return;
			}
			if (s->state == BN_SUB_CLOSED)
				return;
			if ((size_t)r < sizeof buf && !s->ssl)
				return;
			continue; /* TLS: read until SSL_read wants the socket */
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		bn__sub_set_state(c, s, BN_SUB_CLOSED);
		return;
	}
}

static void bn_sub_open_all(struct bn_subctx *c)
{
	for (int i = 0; i < c->n; i++) {
		struct bn_sub *s = &c->subs[i];
		s->fd = bn_connect(c->o->sub_host, c->o->sub_port, c->first_slot + i, c->o->src_addrs);
		if (s->fd < 0) {
			s->state = BN_SUB_CLOSED;
			c->st.failed++;
			continue;
		}
		s->state = BN_SUB_CONNECTING;
		struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = s};
		if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0)
			bn_die("epoll_ctl");
	}
}

/* One pass of the loop; timeout in ms. ctlfd events are returned as true. */
static bool bn_sub_poll(struct bn_subctx *c, int timeout_ms, int ctlfd)
{
	struct epoll_event evs[512];
	int n = epoll_wait(c->epfd, evs, 512, timeout_ms);
	bool ctl = false;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr == NULL) {
			(void)ctlfd;
			ctl = true;
			continue;
		}
		struct bn_sub *s = evs[i].data.ptr;
		if (s->state != BN_SUB_CLOSED)
			bn__sub_event(c, s, evs[i].events);
	}
	return ctl;
}

static void bn_sub_gaps(struct bn_subctx *c)
{
	for (int i = 0; i < c->n; i++) {
		struct bn_sub *s = &c->subs[i];
		if (s->nseen && !c->expect) {
			uint64_t span = s->max_seq - s->min_seq + 1;
			if (span > s->nseen)
				c->st.gaps += span - s->nseen;
		}
	}
}

/* A subscriber child: opens its connections, reports 'R' + connected count
 * when they are up, then obeys single-byte commands on ctl: 'M' mark (the
 * publisher finished), 'S' send stats, 'Q' quit. */
static void bn_sub_child(const struct bn_opts *o, int n, int first_slot, uint64_t expect, int ctl, int out)
{
	struct bn_subctx c = {.o = o, .n = n, .first_slot = first_slot, .expect = expect};
	if (o->tls) {
		c.tls = SSL_CTX_new(TLS_client_method());
		if (!c.tls)
			bn_die("SSL_CTX_new");
		SSL_CTX_set_verify(c.tls, SSL_VERIFY_NONE, NULL);
		/* idle streams hold no buffers on this side either */
		SSL_CTX_set_mode(c.tls, SSL_MODE_RELEASE_BUFFERS);
	}
	c.epfd = epoll_create1(EPOLL_CLOEXEC);
	c.subs = calloc((size_t)n, sizeof *c.subs);
	if (c.epfd < 0 || !c.subs)
		bn_die("child setup");
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(c.epfd, EPOLL_CTL_ADD, ctl, &ev);
	bn_sub_open_all(&c);
	double deadline = bn_mono() + o->connect_timeout;
	while (c.st.connected + c.st.failed < (uint64_t)n && bn_mono() < deadline)
		bn_sub_poll(&c, 50, ctl);
	uint64_t up = c.st.connected;
	if (write(out, &up, sizeof up) != sizeof up)
		exit(2);
	for (;;) {
		if (!bn_sub_poll(&c, 1000, ctl))
			continue;
		char cmd;
		if (read(ctl, &cmd, 1) != 1)
			cmd = 'Q';
		if (cmd == 'M') {
			c.st.at_mark = c.st.unique;
		} else if (cmd == 'S') {
			bn_sub_gaps(&c);
			if (write(out, &c.st, sizeof c.st) != sizeof c.st)
				exit(2);
		} else {
			_exit(0);
		}
	}
}

struct bn_child {
	pid_t pid;
	int ctl; /* parent writes commands */
	int out; /* parent reads results */
};

static uint64_t bn_read_full(int fd, void *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return got;
		got += (size_t)r;
	}
	return got;
}

/* Forks o->procs subscriber children; returns the number connected. */
static uint64_t bn_spawn_subs(const struct bn_opts *o, uint64_t expect, struct bn_child *ch)
{
	int per = o->conns / o->procs, extra = o->conns % o->procs, slot = 0;
	for (int i = 0; i < o->procs; i++) {
		int n = per + (i < extra);
		int a[2], b[2];
		if (pipe(a) < 0 || pipe(b) < 0)
			bn_die("pipe");
		pid_t pid = fork();
		if (pid < 0)
			bn_die("fork");
		if (pid == 0) {
			close(a[1]);
			close(b[0]);
			bn_sub_child(o, n, slot, expect, a[0], b[1]);
			_exit(0);
		}
		close(a[0]);
		close(b[1]);
		ch[i] = (struct bn_child){.pid = pid, .ctl = a[1], .out = b[0]};
		slot += n;
	}
	uint64_t up = 0;
	for (int i = 0; i < o->procs; i++) {
		uint64_t k = 0;
		bn_read_full(ch[i].out, &k, sizeof k);
		up += k;
	}
	return up;
}

static void bn_tell(struct bn_child *ch, int n, char cmd)
{
	for (int i = 0; i < n; i++)
		if (write(ch[i].ctl, &cmd, 1) != 1)
			fprintf(stderr, "rtw-bench: child %d gone\n", (int)ch[i].pid);
}

static void bn_collect(struct bn_child *ch, int n, struct bn_stats *sum)
{
	static struct bn_stats one;
	memset(sum, 0, sizeof *sum);
	bn_tell(ch, n, 'S');
	for (int i = 0; i < n; i++) {
		memset(&one, 0, sizeof one);
		if (bn_read_full(ch[i].out, &one, sizeof one) != sizeof one)
			continue;
		sum->connected += one.connected;
		sum->failed += one.failed;
		sum->closed += one.closed;
		sum->events += one.events;
		sum->other += one.other;
		sum->unique += one.unique;
		sum->dup += one.dup;
		sum->ooo += one.ooo;
		sum->gaps += one.gaps;
		sum->beyond += one.beyond;
		sum->at_mark += one.at_mark;
		sum->bytes += one.bytes;
		sum->long_lines += one.long_lines;
		bn_hist_merge(&sum->lat, &one.lat);
	}
}

static void bn_reap(struct bn_child *ch, int n)
{
	bn_tell(ch, n, 'Q');
	for (int i = 0; i < n; i++) {
		waitpid(ch[i].pid, NULL, 0);
		close(ch[i].ctl);
		close(ch[i].out);
	}
}

/* ---- publisher ---------------------------------------------------------- */

enum bn_pub_state { BN_PUB_CONNECTING, BN_PUB_IDLE, BN_PUB_WAITING, BN_PUB_DEAD };

struct bn_pubconn {
	int fd;
	enum bn_pub_state state;
	struct bn_http http;
	uint64_t sent_us;
	char *out; /* unsent request bytes (malloc) */
	size_t out_len, out_off;
};

struct bn_pubstats {
	uint64_t sent, ok, errors, reconnects, status_4xx, status_5xx, status_429, last_status;
	double lag_max_s; /* furthest behind schedule */
	double elapsed;
	struct bn_hist lat; /* request -> response */
};

struct bn_pub {
	const struct bn_opts *o;
	int epfd;
	struct bn_pubconn conns[BN_MAX_PUB_CONNS];
	int n;
	struct bn_pubstats st;
	char pad[4096];
};

static void bn__pub_open(struct bn_pub *p, struct bn_pubconn *c, int slot)
{
	bn_http_reset(&c->http);
	c->fd = bn_connect(p->o->pub_host, p->o->pub_port, slot, 0);
	if (c->fd < 0) {
		c->state = BN_PUB_DEAD;
		return;
	}
	c->state = BN_PUB_CONNECTING;
	struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
	epoll_ctl(p->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void bn__pub_close(struct bn_pub *p, struct bn_pubconn *c)
{
	if (c->fd >= 0) {
		epoll_ctl(p->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
	}
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	c->state = BN_PUB_DEAD;
}

static void bn__pub_flush(struct bn_pub *p, struct bn_pubconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
		if (w > 0) {
			c->out_off += (size_t)w;
			continue;
		}
		if (w < 0 && errno == EAGAIN) {
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
			epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		}
		bn__pub_close(p, c);
		p->st.errors++;
		return;
	}
	free(c->out);
	c->out = NULL;
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void bn__pub_send(struct bn_pub *p, struct bn_pubconn *c, uint64_t seq)
{
	const struct bn_opts *o = p->o;
	char body[8192], auth[1024] = "";
	uint64_t t = bn_now_us();
	int padlen = o->payload;
	int blen;
	if (o->format == BN_FMT_RTW)
		blen = snprintf(body, sizeof body,
				"{\"type\":\"broadcast\",\"widget_key\":\"%s\",\"timestamp\":%.3f,"
				"\"message\":{\"seq\":%" PRIu64 ",\"t\":%" PRIu64 "%s%.*s%s}}",
				o->widget_key ? o->widget_key : "", (double)seq / 10.0, seq, t,
				padlen ? ",\"pad\":\"" : "", padlen, p->pad, padlen ? "\"" : "");
	else
		blen = snprintf(body, sizeof body, "{\"seq\":%" PRIu64 ",\"t\":%" PRIu64 "%s%.*s%s}", seq, t,
				padlen ? ",\"pad\":\"" : "", padlen, p->pad, padlen ? "\"" : "");
	if (o->token)
		snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", o->token);
	size_t cap = (size_t)blen + 2048;
	c->out = malloc(cap);
	if (!c->out)
		bn_die("malloc");
	int hl = snprintf(c->out, cap,
			  "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n%s"
			  "Content-Length: %d\r\n\r\n",
			  o->pub_path, o->pub_host, o->pub_port, auth, blen);
	memcpy(c->out + hl, body, (size_t)blen);
	c->out_len = (size_t)hl + (size_t)blen;
	c->out_off = 0;
	c->sent_us = t;
	c->state = BN_PUB_WAITING;
	bn_http_reset(&c->http);
	p->st.sent++;
	bn__pub_flush(p, c);
}

static void bn__pub_nobody(void *ctx, const char *b, size_t n)
{
	(void)ctx;
	(void)b;
	(void)n;
}

static void bn__pub_event(struct bn_pub *p, struct bn_pubconn *c, uint32_t events)
{
	if (c->state == BN_PUB_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof err;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			bn__pub_close(p, c);
			return;
		}
		c->state = BN_PUB_IDLE;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(p->epfd, EPOLL_CTL_MOD, c->fd, &ev);
		return;
	}
	if ((events & EPOLLOUT) && c->out)
		bn__pub_flush(p, c);
	if (c->state == BN_PUB_DEAD || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	char buf[16384];
	for (;;) {
		ssize_t r = read(c->fd, buf, sizeof buf);
		if (r > 0) {
			if (!bn_http_feed(&c->http, buf, (size_t)r, NULL, bn__pub_nobody, NULL)) {
				p->st.errors++;
				bn__pub_close(p, c);
				return;
			}
			if (c->http.state == BN_HTTP_DONE && c->state == BN_PUB_WAITING) {
				int s = c->http.status;
				p->st.last_status = (uint64_t)s;
				bn_hist_add(&p->st.lat, bn_now_us() - c->sent_us);
				if (s >= 200 && s < 300)
					p->st.ok++;
				else if (s == 429)
					p->st.status_429++;
				else if (s >= 400 && s < 500)
					p->st.status_4xx++;
				else
					p->st.status_5xx++;
				c->state = BN_PUB_IDLE;
			}
			continue;
		}
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* closed: an unanswered request is an error; reopen later */
		if (c->state == BN_PUB_WAITING)
			p->st.errors++;
		bn__pub_close(p, c);
		return;
	}
}

/* Publishes at o->rate for o->duration; seq 0.. */
static void bn_publish(const struct bn_opts *o, struct bn_pubstats *out)
{
	static struct bn_pub p;
	memset(&p, 0, sizeof p);
	p.o = o;
	memset(p.pad, 'x', sizeof p.pad);
	p.n = o->pub_conns;
	p.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p.epfd < 0)
		bn_die("epoll_create1");
	for (int i = 0; i < p.n; i++)
		bn__pub_open(&p, &p.conns[i], i);
	uint64_t total = (uint64_t)(o->rate * o->duration + 0.5);
	double start = bn_mono(), end = start + o->duration + 10.0; /* 10 s to answer the last */
	uint64_t seq = 0;
	int rr = 0;
	for (;;) {
		double now = bn_mono();
		/* send what is due, on idle connections, round robin */
		while (seq < total && start + (double)seq / o->rate <= now) {
			struct bn_pubconn *c = NULL;
			for (int k = 0; k < p.n; k++) {
				struct bn_pubconn *x = &p.conns[(rr + k) % p.n];
				if (x->state == BN_PUB_DEAD) {
					p.st.reconnects++;
					bn__pub_open(&p, x, (rr + k) % p.n);
				}
				if (x->state == BN_PUB_IDLE) {
					c = x;
					rr = (rr + k + 1) % p.n;
					break;
				}
			}
			if (!c)
				break;
			double lag = now - (start + (double)seq / o->rate);
			if (lag > p.st.lag_max_s)
				p.st.lag_max_s = lag;
			bn__pub_send(&p, c, seq++);
		}
		bool busy = false;
		for (int k = 0; k < p.n; k++)
			busy |= p.conns[k].state == BN_PUB_WAITING;
		if (seq >= total && !busy)
			break;
		if (now > end)
			break;
		int wait_ms = 100;
		if (seq < total) {
			double due = start + (double)seq / o->rate - now;
			wait_ms = due <= 0 ? 1 : (int)(due * 1000.0) + 1;
			if (wait_ms > 100)
				wait_ms = 100;
		}
		struct epoll_event evs[BN_MAX_PUB_CONNS];
		int n = epoll_wait(p.epfd, evs, BN_MAX_PUB_CONNS, wait_ms);
		for (int i = 0; i < n; i++)
			bn__pub_event(&p, evs[i].data.ptr, evs[i].events);
	}
	p.st.elapsed = bn_mono() - start;
	for (int i = 0; i < p.n; i++)
		if (p.conns[i].state != BN_PUB_DEAD)
			bn__pub_close(&p, &p.conns[i]);
	close(p.epfd);
	*out = p.st;
}

/* ---- reporting ---------------------------------------------------------- */

static double bn_self_cpu(void)
{
	struct rusage a, b;
	getrusage(RUSAGE_SELF, &a);
	getrusage(RUSAGE_CHILDREN, &b);
	return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) +
	       (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) / 1e6;
}

static const char *bn_mode_name(enum bn_mode m)
{
	return m == BN_RUN ? "run" : m == BN_SUBSCRIBE ? "subscribe" : m == BN_PUBLISH ? "publish" : "idle";
}

static void bn_report_run(const struct bn_opts *o, uint64_t up, const struct bn_stats *s, const struct bn_pubstats *ps,
			  double cpu, double cpu_all, double self_cpu)
{
	uint64_t expected = ps ? ps->ok * up : 0;
	uint64_t lost = expected > s->unique ? expected - s->unique : 0;
	if (!ps)
		lost = s->gaps;
	/* delivered while publishing, over the time publishing really took (a
	 * server that slows its own publishers stretches it) */
	double window = ps && ps->elapsed > o->duration ? ps->elapsed : o->duration;
	double deliv_s = window > 0 ? (double)s->at_mark / window : 0;
	double kept = up ? deliv_s / (double)up : 0;
	double cpu_us = s->events ? cpu * 1e6 / (double)s->events : -1;
	printf("{\"label\":\"%s\",\"mode\":\"%s\",\"subs\":%d,\"connected\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"closed\":%" PRIu64 ",\"rate_asked\":%.1f,\"duration_s\":%.1f",
	       o->label ? o->label : "", bn_mode_name(o->mode), o->conns, up, s->failed, s->closed, o->rate,
	       o->duration);
	if (ps)
		printf(",\"pub_sent\":%" PRIu64 ",\"pub_ok\":%" PRIu64 ",\"pub_errors\":%" PRIu64
		       ",\"pub_429\":%" PRIu64 ",\"pub_4xx\":%" PRIu64 ",\"pub_5xx\":%" PRIu64
		       ",\"pub_last_status\":%" PRIu64
		       ",\"pub_rate\":%.1f,\"pub_lag_max_s\":%.3f,\"pub_p50_ms\":%.2f,\"pub_p99_ms\":%.2f",
		       ps->sent, ps->ok, ps->errors, ps->status_429, ps->status_4xx, ps->status_5xx, ps->last_status,
		       ps->elapsed > 0 ? (double)ps->ok / ps->elapsed : 0, ps->lag_max_s, bn_hist_pct_ms(&ps->lat, 50),
		       bn_hist_pct_ms(&ps->lat, 99));
	printf(",\"delivered\":%" PRIu64 ",\"unique\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"lost\":%" PRIu64
	       ",\"dup\":%" PRIu64 ",\"ooo\":%" PRIu64 ",\"beyond\":%" PRIu64 ",\"other_events\":%" PRIu64
	       ",\"deliveries_per_s\":%.0f,\"kept_msg_s\":%.1f"
	       ",\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f"
	       ",\"server_cpu_s\":%.2f,\"cpu_us_per_delivery\":%.3f,\"all_cpu_s\":%.2f,\"all_cpu_us_per_delivery\":%.3f"
	       ",\"tool_cpu_s\":%.2f}\n",
	       s->events, s->unique, expected, lost, s->dup, s->ooo, s->beyond, s->other, deliv_s, kept,
	       bn_hist_pct_ms(&s->lat, 50), bn_hist_pct_ms(&s->lat, 90), bn_hist_pct_ms(&s->lat, 99),
	       (double)s->lat.max / 1000.0, cpu, cpu_us, cpu_all,
	       s->events && cpu_all >= 0 ? cpu_all * 1e6 / (double)s->events : -1, self_cpu);
	fprintf(stderr,
		"%s: %" PRIu64 "/%d subs, %.0f msg/s asked, %s%" PRIu64 " delivered, lost %" PRIu64 ", dup %" PRIu64
		", ooo %" PRIu64
		", kept %.1f msg/s, p50 %.1f ms p99 %.1f ms max %.1f ms, server %.2f s CPU = %.2f µs/delivery\n",
		o->label ? o->label : bn_mode_name(o->mode), up, o->conns, o->rate, ps ? "" : "(no publisher) ",
		s->events, lost, s->dup, s->ooo, kept, bn_hist_pct_ms(&s->lat, 50), bn_hist_pct_ms(&s->lat, 99),
		(double)s->lat.max / 1000.0, cpu, cpu_us);
	fflush(stdout);
}

/* ---- options ------------------------------------------------------------ */

static void bn_usage(void)
{
	fputs("usage: rtw-bench MODE [options]\n"
	      "modes: run | subscribe | publish | idle\n"
	      "  --sub HOST:PORT/PATH     SSE url (rtw: /v1/streams/S/events, nchan: /sub/S)\n"
	      "  --pub HOST:PORT/PATH     publish url (rtw: /v1/streams/S/messages, nchan: /pub/S)\n"
	      "  --format rtw|nchan       message body (default rtw)\n"
	      "  --widget-key K  --token T  --sub-token T\n"
	      "  --conns N (1000)  --procs N (1)  --rate R msg/s (10)  --duration S (10)\n"
	      "  --drain S (3)  --settle S (1)  --hold S (idle: 5)  --connect-timeout S (60)\n"
	      "  --pub-conns N (4)  --payload BYTES (0)  --src-addrs N (249)\n"
	      "  --pids P1,P2,...         server processes for CPU and RSS\n"
	      "  --pids-all P1,...        the whole pipeline, for a second CPU figure\n"
	      "  --label TEXT             copied into the JSON line\n"
	      "  --tls 1                  subscribers speak TLS (no certificate verification)\n",
	      stderr);
	exit(2);
}

static void bn_parse_url(const char *u, char *host, size_t hl, int *port, char *path, size_t pl)
{
	if (strncmp(u, "http://", 7) == 0)
		u += 7;
	const char *colon = strchr(u, ':');
	const char *slash = strchr(u, '/');
	if (!colon || !slash || colon > slash)
		bn_usage();
	snprintf(host, hl, "%.*s", (int)(colon - u), u);
	*port = atoi(colon + 1);
	snprintf(path, pl, "%s", slash);
}

static void bn_parse(int argc, char **argv, struct bn_opts *o)
{
	if (argc < 2)
		bn_usage();
	memset(o, 0, sizeof *o);
	o->conns = 1000;
	o->procs = 1;
	o->rate = 10;
	o->duration = 10;
	o->drain = 3;
	o->settle = 1;
	o->hold = 5;
	o->connect_timeout = 60;
	o->pub_conns = 4;
	o->src_addrs = 249;
	if (!strcmp(argv[1], "run"))
		o->mode = BN_RUN;
	else if (!strcmp(argv[1], "subscribe"))
		o->mode = BN_SUBSCRIBE;
	else if (!strcmp(argv[1], "publish"))
		o->mode = BN_PUBLISH;
	else if (!strcmp(argv[1], "idle"))
		o->mode = BN_IDLE;
	else
		bn_usage();
	for (int i = 2; i < argc; i++) {
		const char *k = argv[i];
		if (i + 1 >= argc)
			bn_usage();
		const char *v = argv[++i];
		if (!strcmp(k, "--sub"))
			bn_parse_url(v, o->sub_host, sizeof o->sub_host, &o->sub_port, o->sub_path, sizeof o->sub_path);
		else if (!strcmp(k, "--pub"))
			bn_parse_url(v, o->pub_host, sizeof o->pub_host, &o->pub_port, o->pub_path, sizeof o->pub_path);
		else if (!strcmp(k, "--format"))
			o->format = !strcmp(v, "nchan") ? BN_FMT_NCHAN : BN_FMT_RTW;
		else if (!strcmp(k, "--widget-key"))
			o->widget_key = v;
		else if (!strcmp(k, "--tls"))
			o->tls = atoi(v) != 0;
		else if (!strcmp(k, "--token"))
			o->token = *v ? v : NULL;
		else if (!strcmp(k, "--sub-token"))
			o->sub_token = *v ? v : NULL;
		else if (!strcmp(k, "--label"))
			o->label = v;
		else if (!strcmp(k, "--conns"))
			o->conns = atoi(v);
		else if (!strcmp(k, "--procs"))
			o->procs = atoi(v);
		else if (!strcmp(k, "--rate"))
			o->rate = atof(v);
		else if (!strcmp(k, "--duration"))
			o->duration = atof(v);
		else if (!strcmp(k, "--drain"))
			o->drain = atof(v);
		else if (!strcmp(k, "--settle"))
			o->settle = atof(v);
		else if (!strcmp(k, "--hold"))
			o->hold = atof(v);
		else if (!strcmp(k, "--connect-timeout"))
			o->connect_timeout = atof(v);
		else if (!strcmp(k, "--pub-conns"))
			o->pub_conns = atoi(v);
		else if (!strcmp(k, "--payload"))
			o->payload = atoi(v);
		else if (!strcmp(k, "--src-addrs"))
			o->src_addrs = atoi(v);
		else if (!strcmp(k, "--pids")) {
			char *dup = strdup(v), *save = NULL;
			for (char *t = strtok_r(dup, ",", &save); t && o->npids < BN_MAX_PIDS;
			     t = strtok_r(NULL, ",", &save))
				o->pids[o->npids++] = (pid_t)atoi(t);
			free(dup);
		} else if (!strcmp(k, "--pids-all")) {
			char *dup = strdup(v), *save = NULL;
			for (char *t = strtok_r(dup, ",", &save); t && o->npids_all < BN_MAX_PIDS;
			     t = strtok_r(NULL, ",", &save))
				o->pids_all[o->npids_all++] = (pid_t)atoi(t);
			free(dup);
		} else
			bn_usage();
	}
	if (o->procs < 1)
		o->procs = 1;
	if (o->pub_conns < 1 || o->pub_conns > BN_MAX_PUB_CONNS)
		o->pub_conns = 4;
	if (o->payload < 0 || o->payload > 4000)
		o->payload = 0;
	if (o->src_addrs < 0 || o->src_addrs > 249)
		o->src_addrs = 249;
	if (o->rate <= 0)
		o->rate = 1;
	if ((o->mode != BN_PUBLISH && !o->sub_port) || ((o->mode == BN_RUN || o->mode == BN_PUBLISH) && !o->pub_port))
		bn_usage();
}

static void bn_sleep(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct bn_opts o;
	bn_parse(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	struct bn_child *ch = calloc((size_t)o.procs, sizeof *ch);
	static struct bn_stats sum;
	if (!ch)
		bn_die("calloc");

	if (o.mode == BN_PUBLISH) {
		struct bn_pubstats ps;
		double c0 = bn_cpu_of(o.pids, o.npids);
		bn_publish(&o, &ps);
		double cpu = bn_cpu_of(o.pids, o.npids) - c0;
		printf("{\"label\":\"%s\",\"mode\":\"publish\",\"rate_asked\":%.1f,\"pub_sent\":%" PRIu64
		       ",\"pub_ok\":%" PRIu64 ",\"pub_errors\":%" PRIu64 ",\"pub_429\":%" PRIu64 ",\"pub_4xx\":%" PRIu64
		       ",\"pub_5xx\":%" PRIu64 ",\"pub_rate\":%.1f,\"pub_lag_max_s\":%.3f,\"pub_p50_ms\":%.2f"
		       ",\"pub_p99_ms\":%.2f,\"server_cpu_s\":%.2f}\n",
		       o.label ? o.label : "", o.rate, ps.sent, ps.ok, ps.errors, ps.status_429, ps.status_4xx,
		       ps.status_5xx, ps.elapsed > 0 ? (double)ps.ok / ps.elapsed : 0, ps.lag_max_s,
		       bn_hist_pct_ms(&ps.lat, 50), bn_hist_pct_ms(&ps.lat, 99), cpu);
		fprintf(stderr, "publish: %" PRIu64 " ok of %" PRIu64 " (%.1f/s), p50 %.2f ms p99 %.2f ms\n", ps.ok,
			ps.sent, ps.elapsed > 0 ? (double)ps.ok / ps.elapsed : 0, bn_hist_pct_ms(&ps.lat, 50),
			bn_hist_pct_ms(&ps.lat, 99));
		return 0;
	}

	if (o.mode == BN_IDLE) {
		long rss0 = bn_rss_kib(o.pids, o.npids);
		uint64_t up = bn_spawn_subs(&o, 0, ch);
		bn_sleep(o.hold);
		long rss1 = bn_rss_kib(o.pids, o.npids);
		bn_collect(ch, o.procs, &sum);
		bn_reap(ch, o.procs);
		double per = up ? (double)(rss1 - rss0) * 1024.0 / (double)up : -1;
		printf("{\"label\":\"%s\",\"mode\":\"idle\",\"conns\":%d,\"connected\":%" PRIu64 ",\"failed\":%" PRIu64
		       ",\"closed\":%" PRIu64
		       ",\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"rss_bytes_per_conn\":%.0f}\n",
		       o.label ? o.label : "", o.conns, up, sum.failed, sum.closed, rss0, rss1, per);
		fprintf(stderr,
			"idle: %" PRIu64 "/%d connected (%" PRIu64
			" closed early), server RSS %ld -> %ld KiB = %.0f B/conn\n",
			up, o.conns, sum.closed, rss0, rss1, per);
		return 0;
	}

	uint64_t expect = o.mode == BN_RUN ? (uint64_t)(o.rate * o.duration + 0.5) : 0;
	uint64_t up = bn_spawn_subs(&o, expect, ch);
	bn_sleep(o.settle);
	double c0 = bn_cpu_of(o.pids, o.npids);
	double a0 = bn_cpu_of(o.pids_all, o.npids_all);
	struct bn_pubstats ps;
	if (o.mode == BN_RUN)
		bn_publish(&o, &ps);
	else
		bn_sleep(o.duration);
	bn_tell(ch, o.procs, 'M');
	bn_sleep(o.drain);
	double cpu = bn_cpu_of(o.pids, o.npids) - c0;
	double cpu_all = o.npids_all ? bn_cpu_of(o.pids_all, o.npids_all) - a0 : -1;
	bn_collect(ch, o.procs, &sum);
	bn_reap(ch, o.procs);
	bn_report_run(&o, up, &sum, o.mode == BN_RUN ? &ps : NULL, cpu, cpu_all, bn_self_cpu());
	return 0;
}
