#!/bin/sh
# Replays the committed cfg corpus through tests/fuzz/fuzz_cfg (built as a
# plain program when libFuzzer is not enabled): every seed must run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_cfg" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/cfg"
