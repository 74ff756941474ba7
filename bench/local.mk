# bench/local.mk: the load tool of bench/ (rtw-bench, plain C, libc and OpenSSL).
# bench/run drives it against rtw and Nchan; see doc/performance.md.
noinst_PROGRAMS += bench/rtw-bench
bench_rtw_bench_SOURCES = bench/rtw-bench.c
bench_rtw_bench_CFLAGS = $(AM_CFLAGS) -O2 $(OPENSSL_CFLAGS)
# libssl: subscribers over TLS (--tls 1)
bench_rtw_bench_LDADD = $(OPENSSL_LIBS)
EXTRA_DIST += bench/run bench/stack.py bench/driver.py bench/history.py bench/nchan.conf bench/post.lua bench/nchan_post.lua \
	bench/batch.py bench/batch.lua
EXTRA_DIST += bench/presence.py
EXTRA_DIST += bench/bans.py
EXTRA_DIST += bench/front_ab.py
EXTRA_DIST += bench/nodes.py
EXTRA_DIST += bench/ban_ab.py
