#!/usr/bin/env bash
# Fuzz smoke test for firmware-client: runs the cargo-fuzz target `session` (broker bytes into the blocking client,
# MQTT 3.1.1 and 5.0, any read size, reconnects after errors) briefly from a temporary copy of its seeds.
#
# Usage: scripts/firmware-fuzz.sh [seconds]   (default FUZZ_SECONDS or 20). Needs nightly and cargo-fuzz.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/firmware-client"
seconds="${1:-${FUZZ_SECONDS:-20}}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r fuzz/seeds/session "$work/corpus"
dict=()
[ -f "$root/fuzz/mqtt.dict" ] && dict=(-dict="$root/fuzz/mqtt.dict")
cargo +nightly fuzz run --fuzz-dir fuzz session "$work/corpus" -- \
    "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/"
