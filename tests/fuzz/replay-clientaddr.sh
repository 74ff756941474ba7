#!/bin/sh
# Replays the committed clientaddr corpus through tests/fuzz/fuzz_clientaddr
# (built as a plain program when libFuzzer is not enabled): every seed must
# run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_clientaddr" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/clientaddr"
