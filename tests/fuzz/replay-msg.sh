#!/bin/sh
# Replays the committed message corpus through the fuzz driver (built as a
# plain program when libFuzzer is not enabled): every seed must run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_msg" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/msg"
