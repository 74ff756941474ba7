/*
 * tls.c: TLS on rtw-sse's own port (sse.tls_listen), so browsers on https
 * pages can reach the events path with no proxy hop: the server context
 * (certificate chain and key from sse.tls_cert and sse.tls_key, TLS 1.2
 * and 1.3 only, no renegotiation, no compression, ALPN http/1.1, OpenSSL's
 * default ciphers at security level 2), its reload on SIGHUP (a new pair
 * that fails to load or to match keeps the old one; connections keep the
 * context they started with), and the per-connection calls conn.c makes at
 * its I/O edge: the non-blocking handshake, reads and writes with recv and
 * send semantics, close_notify.
 *
 * Tier: below conn.c (which owns the connection and its state) and loop.c
 * (which owns the listening socket and calls the reload). Never blocks;
 * never touches a connection's queue or state.
 */
#include "config.h"
#include "sse.h"
#include "log.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>

/* The newest OpenSSL error of this thread, for a log line; clears the
 * queue so the next call starts clean. */
static void tls__why(char *out, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, out, cap);
	else
		snprintf(out, cap, "%s", errno ? strerror(errno) : "unknown error");
	ERR_clear_error();
}

/* ALPN: http/1.1 when the client offers it; a client that offers only
 * other protocols gets no ALPN answer (and then speaks HTTP/1.1 or is
 * answered 400). */
static int tls__alpn(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		     unsigned int inlen, void *arg)
{
	static const unsigned char ours[] = "\x08http/1.1";
	unsigned char *sel = NULL;

	(void)s;
	(void)arg;
	if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

/* A new server context from the configured files: new (SSL_CTX_free),
 * or NULL with why in err. */
static SSL_CTX *tls__ctx_new(const struct rtw_cfg *cfg, char *err, size_t cap)
{
	char why[256];
	SSL_CTX *t = SSL_CTX_new(TLS_server_method());

	if (t == NULL) {
		tls__why(why, sizeof(why));
		snprintf(err, cap, "could not create the TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(t, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(t, TLS1_3_VERSION);
	SSL_CTX_set_security_level(t, 2);
	/* TLS 1.2 renegotiation refused either way (OpenSSL 3 refuses a
	 * client's unless SSL_OP_ALLOW_CLIENT_RENEGOTIATION) */
	SSL_CTX_set_options(t, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* partial writes and moving buffers: conn.c writes from a shared
	 * scratch buffer it refills from the queue, one record at a time;
	 * released buffers: an idle stream holds no 16 KiB read and write
	 * buffers */
	SSL_CTX_set_mode(t, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				SSL_MODE_RELEASE_BUFFERS);
	/* one TLS 1.3 ticket instead of two: a reconnect may resume (on the
	 * same process, until the next reload), and a handshake costs one
	 * write less */
	SSL_CTX_set_num_tickets(t, 1);
	/* no server-side session cache: resumption is by ticket alone, and a
	 * cache would keep a session per handshake (20,480 by default) in
	 * memory for nothing */
	SSL_CTX_set_session_cache_mode(t, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_alpn_select_cb(t, tls__alpn, NULL);
	if (SSL_CTX_use_certificate_chain_file(t, cfg->sse_tls_cert) != 1) {
		tls__why(why, sizeof(why));
		snprintf(err, cap, "could not load sse.tls_cert %s: %s", cfg->sse_tls_cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(t, cfg->sse_tls_key, SSL_FILETYPE_PEM) != 1) {
		tls__why(why, sizeof(why));
		snprintf(err, cap, "could not load sse.tls_key %s: %s", cfg->sse_tls_key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(t) != 1) {
		tls__why(why, sizeof(why));
		snprintf(err, cap, "sse.tls_key does not match sse.tls_cert: %s", why);
		goto fail;
	}
	return t;
fail:
	SSL_CTX_free(t);
	return NULL;
}

int sse_tls_load(struct sse_ctx *ctx)
{
	char err[512];
	SSL_CTX *t;

	if (!ctx->cfg->sse_tls_cert[0] || !ctx->cfg->sse_tls_key[0]) {
		log_error("sse.tls_listen needs sse.tls_cert and sse.tls_key");
		return RTW_ERROR;
	}
	t = tls__ctx_new(ctx->cfg, err, sizeof(err));
	if (t == NULL) {
		if (ctx->tls_ctx)
			log_error("%s; keeping the certificate loaded before", err);
		else
			log_error("%s", err);
		ctx->m.tls_reload_failures += ctx->tls_ctx != NULL;
		return RTW_ERROR;
	}
	if (ctx->tls_ctx) {
		/* connections keep a reference to the context they began with */
		SSL_CTX_free(ctx->tls_ctx);
		ctx->m.tls_reloads++;
		log_info("TLS certificate reloaded from %s", ctx->cfg->sse_tls_cert);
	}
	ctx->tls_ctx = t;
	return RTW_OK;
}

void sse_tls_free(struct sse_ctx *ctx)
{
	SSL_CTX_free(ctx->tls_ctx);
	ctx->tls_ctx = NULL;
}

struct ssl_st *sse_tls_new(struct sse_ctx *ctx, int fd)
{
	SSL *s = SSL_new(ctx->tls_ctx);

	if (s == NULL) {
		ERR_clear_error();
		return NULL;
	}
	if (SSL_set_fd(s, fd) != 1) {
		ERR_clear_error();
		SSL_free(s);
		return NULL;
	}
	SSL_set_accept_state(s);
	return s;
}

void sse_tls_conn_free(struct ssl_st *s)
{
	SSL_free(s);
}

int sse_tls_handshake(struct ssl_st *s, bool *want_out)
{
	int r;

	ERR_clear_error();
	r = SSL_do_handshake(s);
	*want_out = false;
	if (r == 1)
		return RTW_OK;
	switch (SSL_get_error(s, r)) {
	case SSL_ERROR_WANT_READ: return RTW_AGAIN;
	case SSL_ERROR_WANT_WRITE: *want_out = true; return RTW_AGAIN;
	default:
		/* not TLS (plain HTTP to this port, a scanner), a failed
		 * negotiation or a reset: nothing to answer */
		if (log_enabled(LOG_LVL_DEBUG)) {
			char why[256];
			tls__why(why, sizeof(why));
			log_debug("TLS handshake failed: %s", why);
		}
		ERR_clear_error();
		return RTW_ERROR;
	}
}

/* errno for an SSL_read or SSL_write that returned r <= 0, and the value
 * recv and send would have returned. */
static ssize_t tls__fail(struct ssl_st *s, int r, bool *wants_read)
{
	int e = SSL_get_error(s, r);

	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		if (wants_read)
			*wants_read = e == SSL_ERROR_WANT_READ;
		errno = EAGAIN;
		return -1;
	}
	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0; /* close_notify */
	/* a reset, or an end without close_notify: the client is gone */
	errno = ECONNRESET;
	return -1;
}

ssize_t sse_tls_recv(struct ssl_st *s, void *buf, size_t len)
{
	size_t n = 0;

	ERR_clear_error();
	if (SSL_read_ex(s, buf, len, &n) == 1)
		return (ssize_t)n;
	return tls__fail(s, 0, NULL);
}

ssize_t sse_tls_send(struct ssl_st *s, const void *buf, size_t len, bool *wants_read)
{
	size_t n = 0;

	*wants_read = false;
	ERR_clear_error();
	if (SSL_write_ex(s, buf, len, &n) == 1)
		return (ssize_t)n;
	if (tls__fail(s, 0, wants_read) == 0)
		errno = EPIPE; /* the client's close_notify: nothing more goes out */
	return -1;
}

void sse_tls_shutdown(struct ssl_st *s)
{
	/* one attempt at close_notify: the answer was close-delimited, and a
	 * client that sees no close_notify may call it truncated */
	ERR_clear_error();
	if (SSL_is_init_finished(s) && SSL_shutdown(s) < 0)
		ERR_clear_error();
}
