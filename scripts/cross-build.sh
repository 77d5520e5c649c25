#!/usr/bin/env bash
# Builds the release `broker` for the ARM gateways we support, with Debian's gcc cross linkers, and prints each
# stripped binary's size. tests/tests/arm_qemu.rs then runs them under qemu-user.
#   bash scripts/cross-build.sh            # both targets
#   bash scripts/cross-build.sh aarch64-unknown-linux-gnu
# Output: target/<triple>/release/broker (the release profile strips it). Set CARGO_LOCKED=1 to pass --locked.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/cross-deps.sh
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
locked=()
[ "${CARGO_LOCKED:-}" = "1" ] && locked=(--locked)
target_dir="${CARGO_TARGET_DIR:-target}"

for target in "${targets[@]}"; do
  start=$(date +%s)
  # Only the broker binary: the library's tests, examples and the other workspace members are not needed here.
  nice -n 10 cargo build --quiet --release -p broker --bin broker --target "$target" "${locked[@]}"
  bin="$target_dir/$target/release/broker"
  printf 'cross-build: %-32s %9d bytes stripped (%s KiB), built in %ss\n' \
    "$target" "$(stat -c %s "$bin")" "$(( $(stat -c %s "$bin") / 1024 ))" "$(( $(date +%s) - start ))"
  file -b "$bin" 2>/dev/null | sed 's/^/cross-build:   /' || true
done
