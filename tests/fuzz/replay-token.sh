#!/bin/sh
# Replays the committed token corpus through tests/fuzz/fuzz_token (built as a
# plain program when libFuzzer is not enabled): every seed must run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_token" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/token"
