#!/bin/sh
# Replays the committed sse_req corpus through tests/fuzz/fuzz_sse_req (built as a
# plain program when libFuzzer is not enabled): every seed must run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_sse_req" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/sse_req"
