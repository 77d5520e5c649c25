#!/usr/bin/env bash
# The project's one test command: installs what the tests need when missing, then runs every check.
#   bash scripts/test.sh
# CI runs exactly this (see .ci/run). Interop tests that miss an external client skip locally, but fail when
# REQUIRE_INTEROP=1, which this script sets under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ "${CI:-}" = "true" ]; then
  export REQUIRE_INTEROP=1
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step "dependencies"
# Debian's mosquitto and mosquitto-clients, and paho-mqtt 2.x, for the interop tests.
bash scripts/interop-deps.sh
# python3's prometheus_client, whose OpenMetrics parser reads /metrics in the observability tests.
bash scripts/obs-deps.sh
# openssl, Debian's chromium and the npm packages of the browser test (TLS, WebSocket and browser tests).
bash scripts/tls-deps.sh
# qemu-system-arm and the Cortex-M targets for the firmware-in-QEMU tests.
bash scripts/qemu-deps.sh
# Debian's gcc cross toolchains, qemu-user and the ARM Linux targets for the gateway builds.
bash scripts/cross-deps.sh
# arm-none-eabi-size for the firmware footprint report.
if ! command -v arm-none-eabi-size >/dev/null 2>&1; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends binutils-arm-none-eabi
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
for target in thumbv7em-none-eabihf thumbv7m-none-eabi; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

step "format and lints"
# The main workspace, firmware-client in every feature combination, and the separate workspaces (fuzz, firmware).
CARGO_LOCKED=1 bash scripts/lint.sh

step "ARM gateway builds: release profile, stripped sizes"
# tests/tests/arm_qemu.rs (in the workspace tests below) runs these under qemu-user.
CARGO_LOCKED=1 bash scripts/cross-build.sh

step "workspace tests"
# The interop tests run the broker binary, so build it first. firmware-client runs below with its features.
cargo build -p broker --locked
cargo test --workspace --exclude firmware-client --locked

step "Debian package: contents, systemd unit, install into a throwaway root"
bash scripts/deb-test.sh

step "mqtt-codec alone for the firmware target"
cargo build -p mqtt-codec --target thumbv7em-none-eabihf --locked

step "firmware-client: host tests (3.1.1 and v5), cross builds, footprint"
CARGO_LOCKED=1 bash scripts/firmware-test.sh

step "load generator smoke run"
CARGO_LOCKED=1 bash scripts/bench-smoke.sh

step "fuzz smoke runs"
bash scripts/fuzz-smoke.sh
bash scripts/firmware-fuzz.sh

step "all checks passed"
