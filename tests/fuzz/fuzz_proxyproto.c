/*
 * fuzz_proxyproto.c: libFuzzer driver for lib/proxyproto.c, the parser
 * of the PROXY protocol header (the first bytes of a connection from a
 * peer in sse.proxy_protocol_from, which a client behind it never
 * chooses, but a misconfigured or hostile peer may). Checks that a
 * result is one of the four codes; that a parsed header is no longer
 * than the input or RTW_PROXY_MAX and names "" or a valid address; that
 * it parses alike on its own bytes and that every shorter prefix asks for
 * more (so a header read in pieces is read the same); and that "read
 * more" is never the answer at RTW_PROXY_MAX bytes. abort() on a
 * violation. Built with -DRTW_LIBFUZZER it is a libFuzzer target;
 * without it, main() (replay.h) replays the files and directories named
 * on the command line.
 *
 * Input: the bytes a connection opens with, as they are.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

#define FUZZ_NAME "fuzz_proxyproto"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                                    \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "fuzz_proxyproto: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rtw_proxy pp, again;
	unsigned char a[16];
	/* an exact copy, so ASan sees a read past the input */
	uint8_t *copy = malloc(size ? size : 1);
	int r;

	CHECK(copy != NULL);
	memcpy(copy, data, size);
	r = rtw_proxy_parse(copy, size, &pp);
	CHECK(r == RTW_OK || r == RTW_AGAIN || r == RTW_DECLINED || r == RTW_ERROR);
	if (r == RTW_AGAIN)
		CHECK(size < RTW_PROXY_MAX);
	if (r == RTW_OK) {
		size_t n = strnlen(pp.addr, sizeof(pp.addr));
		CHECK(pp.len > 0 && pp.len <= size && pp.len <= RTW_PROXY_MAX);
		CHECK(n < sizeof(pp.addr));
		CHECK(n == 0 || inet_pton(AF_INET, pp.addr, a) == 1 || inet_pton(AF_INET6, pp.addr, a) == 1);
		CHECK(rtw_proxy_parse(copy, pp.len, &again) == RTW_OK);
		CHECK(again.len == pp.len && strcmp(again.addr, pp.addr) == 0);
		for (size_t k = 1; k < pp.len; k++)
			CHECK(rtw_proxy_parse(copy, k, &again) == RTW_AGAIN);
	}
	free(copy);
	return 0;
}

#include "replay.h"
