#!/usr/bin/env bash
# Fuzz smoke test for mqtt-codec and the broker's session state machine (target `session`): builds every cargo-fuzz
# target and runs each briefly from a temporary copy of its committed seeds (fuzz/seeds/<target>/) with the MQTT
# dictionary. Fails on any crash, panic or leak.
#
# Usage (from anywhere in the repository):  scripts/fuzz-smoke.sh [seconds-per-target]
# Environment: FUZZ_SECONDS (default 20), FUZZ_TARGETS (default: all targets in fuzz/Cargo.toml).
# Installs the nightly toolchain and cargo-fuzz when they are missing.
# fuzz/seeds/session holds, beside the named seeds, the files (named by their SHA-1) that a 14M-execution run of
# `session` kept after `-set_cover_merge=1 -use_counters=0`: the smoke run starts from that run's edge coverage.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${1:-${FUZZ_SECONDS:-20}}"
targets="${FUZZ_TARGETS:-decode_v311 decode_v5 roundtrip topic session}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz-smoke: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "fuzz-smoke: building targets"
cargo +nightly fuzz build --fuzz-dir fuzz

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
total_start=$(date +%s)
for t in $targets; do
    mkdir -p "$work/$t/artifacts"
    cp -r "fuzz/seeds/$t" "$work/$t/corpus"
    log="$work/$t/log"
    start=$(date +%s)
    status=0
    cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$work/$t/corpus" -- \
        -dict=fuzz/mqtt.dict -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" >"$log" 2>&1 || status=$?
    took=$(( $(date +%s) - start ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    if [ "$status" -eq 0 ] && [ -n "$execs" ] && [ -z "$(ls -A "$work/$t/artifacts")" ]; then
        echo "fuzz-smoke: $t: ok, ${execs} executions in ${took}s"
        passed=$((passed + 1))
    else
        echo "fuzz-smoke: $t: FAILED (exit $status, ${execs:-?} executions in ${took}s); log tail:"
        tail -n 40 "$log"
        for a in "$work/$t/artifacts"/*; do
            [ -e "$a" ] || continue
            mkdir -p fuzz/artifacts/"$t"
            cp "$a" fuzz/artifacts/"$t"/
            echo "fuzz-smoke: crashing input kept as fuzz/artifacts/$t/$(basename "$a"): $(od -An -tx1 -v "$a" | head -c 400)"
        done
        failed=$((failed + 1))
    fi
done
echo "fuzz-smoke: $(( $(date +%s) - total_start ))s in all"
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
