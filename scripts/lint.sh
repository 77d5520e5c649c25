#!/usr/bin/env bash
# Format and lint checks for everything that is built: the main workspace; firmware-client in every combination of
# its features (v5, async, defmt, log; defmt and log exclude each other) on the host with its tests, and alone for
# thumbv7em-none-eabihf; mqtt-codec for thumbv7em-none-eabihf (its bare-metal code paths); and the separate
# workspaces (fuzz, firmware-client/fuzz, firmware/qemu-lm3s6965, firmware-client/footprint).
#
# Usage: scripts/lint.sh   (CARGO_LOCKED=1: build against the committed Cargo.lock files only)
# Needs: rustfmt and clippy; rustup targets thumbv7m-none-eabi and thumbv7em-none-eabihf; a C++ compiler (the fuzz
# workspaces build libFuzzer). Each workspace is checked in a target directory its other builds use, so little is
# compiled twice: the fuzz workspaces (which cargo-fuzz builds on nightly with other flags) in the main one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
locked=()
[ "${CARGO_LOCKED:-}" = 1 ] && locked=(--locked)
clippy() { cargo clippy "${locked[@]}" "$@" -- -D warnings; }

echo "== main workspace"
cargo fmt --all -- --check
clippy --workspace --all-targets

echo "== firmware-client: every feature combination (host, with tests; and alone for thumbv7em-none-eabihf)"
for v5 in "" v5; do
    for async in "" async; do
        for log in "" defmt log; do
            features="$(echo "$v5 $async $log" | xargs | tr ' ' ',')"
            echo "-- features '$features'"
            clippy -p firmware-client --no-default-features --features "$features" --all-targets
            clippy -p firmware-client --no-default-features --features "$features" --target thumbv7em-none-eabihf
        done
    done
done

echo "== mqtt-codec alone for thumbv7em-none-eabihf"
clippy -p mqtt-codec --target thumbv7em-none-eabihf
clippy -p mqtt-codec --target thumbv7em-none-eabihf --features defmt

echo "== separate workspaces"
for ws in fuzz firmware-client/fuzz; do
    echo "-- $ws"
    cargo fmt --manifest-path "$ws/Cargo.toml" -- --check
    # The main workspace's target/: the crates they share with it (the codec, the broker) are checked already.
    CARGO_TARGET_DIR="$root/target" clippy --manifest-path "$ws/Cargo.toml" --all-targets
done
echo "-- firmware/qemu-lm3s6965 (both boards)"
(
    cd firmware/qemu-lm3s6965
    cargo fmt -- --check
    # Its .cargo/config.toml (target, linker script) applies from its directory; target/ is where tests build it.
    clippy --target-dir target --target thumbv7m-none-eabi
    clippy --target-dir target --target thumbv7em-none-eabihf --features mps2-an386
)
echo "-- firmware-client/footprint (baseline, 3.1.1 and v5 images)"
(
    cd firmware-client/footprint
    cargo fmt -- --check
    # target/footprint is where scripts/firmware-footprint.sh builds it.
    for features in "" client v5; do
        CARGO_TARGET_DIR="$root/target/footprint" clippy --features "$features"
    done
)
echo "lint: all checks passed"
