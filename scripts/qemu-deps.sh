#!/usr/bin/env bash
# Installs what the QEMU end-to-end test (tests/tests/qemu.rs) needs, only when it is missing; safe to run repeatedly.
#   - qemu-system-arm (Debian: qemu-system-arm), which emulates the lm3s6965evb board
#   - the rustup target thumbv7m-none-eabi (Cortex-M3), for firmware/qemu-lm3s6965
# Run as root or with sudo available (for apt-get).
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  echo "qemu-deps: installing qemu-system-arm"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-arm
fi
target=thumbv7m-none-eabi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
echo "qemu-deps: $(qemu-system-arm --version | head -n 1); rustup target $target installed"
