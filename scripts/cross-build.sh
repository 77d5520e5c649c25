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

target_args=()
for target in "${targets[@]}"; do target_args+=(--target "$target"); done
start=$(date +%s)
# One cargo run for every target: the build scripts and proc macros are compiled once for the host, and one
# target's single-threaded LTO step overlaps the other's compilation. Only the broker binary is built: not the
# library's tests, examples or the other workspace members.
nice -n 10 cargo build --quiet --release -p broker --bin broker "${target_args[@]}" "${locked[@]}"
echo "cross-build: ${targets[*]} built in $(( $(date +%s) - start ))s"
for target in "${targets[@]}"; do
  bin="$target_dir/$target/release/broker"
  size="$(stat -c %s "$bin")"
  printf 'cross-build: %-32s %9d bytes stripped (%d KiB)\n' "$target" "$size" "$(( size / 1024 ))"
done
