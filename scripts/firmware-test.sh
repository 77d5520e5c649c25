#!/usr/bin/env bash
# Tests of firmware-client: host tests in MQTT 3.1.1 and v5 builds (unit, scripted transport, proptest, and interop
# with mosquitto and with our broker over the blocking and the tokio async client), builds of the crate alone for
# thumbv7em-none-eabihf in every feature combination we claim, and the footprint image with its size report.
#
# Needs: rustup target thumbv7em-none-eabihf; apt mosquitto (interop; set REQUIRE_INTEROP=1 to fail rather than
# skip without it) and binutils-arm-none-eabi (arm-none-eabi-size).
set -euo pipefail
cd "$(dirname "$0")/.."
# CARGO_LOCKED=1: build against the committed Cargo.lock only.
locked=()
[ "${CARGO_LOCKED:-}" = 1 ] && locked=(--locked)

cargo test "${locked[@]}" -p firmware-client --features async
cargo test "${locked[@]}" -p firmware-client --features async,v5

for features in "" "v5" "async" "async,v5" "defmt,async,v5" "log,async"; do
    echo "== cargo build -p firmware-client --target thumbv7em-none-eabihf --features '$features'"
    cargo build "${locked[@]}" -p firmware-client --target thumbv7em-none-eabihf --no-default-features \
        --features "$features"
done

# The footprint: fails when an enforced goal is missed (see the script; FOOTPRINT_STRICT=1 enforces every goal).
scripts/firmware-footprint.sh
