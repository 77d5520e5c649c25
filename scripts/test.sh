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
apt_missing=()
command -v mosquitto_pub >/dev/null 2>&1 || apt_missing+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_missing+=(mosquitto)
command -v arm-none-eabi-size >/dev/null 2>&1 || apt_missing+=(binutils-arm-none-eabi)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "installing: ${apt_missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi
if ! python3 -c 'import paho.mqtt, sys; sys.exit(0 if int(paho.mqtt.__version__.split(".")[0]) >= 2 else 1)' 2>/dev/null; then
  python3 -m pip install --quiet 'paho-mqtt>=2,<3'
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
for target in thumbv7em-none-eabihf; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "workspace tests"
# The interop tests run the broker binary, so build it first.
cargo build -p broker --locked
cargo test --workspace --locked

step "no_std cross builds"
cargo build -p mqtt-codec --target thumbv7em-none-eabihf --locked

step "fuzz smoke runs"
bash scripts/fuzz-smoke.sh

step "all checks passed"
