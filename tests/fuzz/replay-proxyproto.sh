#!/bin/sh
# Replays the committed proxyproto corpus through tests/fuzz/fuzz_proxyproto
# (built as a plain program when libFuzzer is not enabled): every seed must
# run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_proxyproto" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/proxyproto"
