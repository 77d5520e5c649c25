#!/usr/bin/env bash
# Installs what the ARM cross builds and their qemu-user smoke test (tests/tests/arm_qemu.rs) need, only when it
# is missing; safe to run repeatedly:
#   - Debian's gcc cross toolchains and cross glibc (gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf,
#     libc6-dev-arm64-cross, libc6-dev-armhf-cross): the linkers named in .cargo/config.toml, and the C compilers
#     ring's build script uses
#   - qemu-user (qemu-aarch64, qemu-arm), which runs the ARM binaries with -L /usr/<triple> as their root
#   - the rustup targets aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf
# Run as root or with sudo available (for apt-get).
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || apt_missing+=(gcc-aarch64-linux-gnu)
command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || apt_missing+=(gcc-arm-linux-gnueabihf)
[ -e /usr/aarch64-linux-gnu/lib/libc.so ] || apt_missing+=(libc6-dev-arm64-cross)
[ -e /usr/arm-linux-gnueabihf/lib/libc.so ] || apt_missing+=(libc6-dev-armhf-cross)
command -v qemu-aarch64 >/dev/null 2>&1 && command -v qemu-arm >/dev/null 2>&1 || apt_missing+=(qemu-user)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "cross-deps: installing ${apt_missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
done
echo "cross-deps: $(aarch64-linux-gnu-gcc --version | head -n 1); $(qemu-aarch64 --version | head -n 1)"
