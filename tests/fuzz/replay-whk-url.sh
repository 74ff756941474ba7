#!/bin/sh
# Replays the committed whk_url corpus through tests/fuzz/fuzz_whk_url (built as a
# plain program when libFuzzer is not enabled): every seed must run clean.
exec "${RTW_BUILDDIR:-.}/tests/fuzz/fuzz_whk_url" "${RTW_SRCDIR:-.}/tests/fuzz/corpus/whk_url"
