#!/usr/bin/env bash
# Installs what the QEMU end-to-end test (tests/tests/qemu.rs) needs, only when it is missing; safe to run repeatedly.
#   - qemu-system-arm (Debian: qemu-system-arm), which emulates the lm3s6965evb board
#   - the rustup targets thumbv7m-none-eabi (lm3s6965evb, Cortex-M3) and thumbv7em-none-eabihf (mps2-an386,
#     Cortex-M4F), for firmware/qemu-lm3s6965
# Run as root or with sudo available (for apt-get).
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v qemu-system-arm >/dev/null 2>&1; then
  echo "qemu-deps: installing qemu-system-arm"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-arm
fi
for target in thumbv7m-none-eabi thumbv7em-none-eabihf; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
echo "qemu-deps: $(qemu-system-arm --version | head -n 1); rustup targets thumbv7m-none-eabi and thumbv7em-none-eabihf installed"
