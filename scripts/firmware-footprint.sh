#!/usr/bin/env bash
# Footprint of firmware-client: builds the minimal no_main image in firmware-client/footprint for
# thumbv7em-none-eabihf (release: opt-level "s", fat LTO, panic=abort) three ways (baseline without the client,
# the client with MQTT 3.1.1, the client with `v5`) and prints flash and static RAM from arm-none-eabi-size.
#
# Client flash = image flash (text + data) minus the baseline's. Client RAM = the image's data + bss minus the
# lent buffers (store 512 B, rx 256 B, tx 256 B), i.e. the client's own state for Client<_, 4, 2, 32>.
# Needs: rustup target thumbv7em-none-eabihf; apt binutils-arm-none-eabi.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/firmware-client/footprint"
target_dir="${CARGO_TARGET_DIR:-$root/target}/footprint"
elf="$target_dir/thumbv7em-none-eabihf/release/firmware-footprint"
size_tool="$(command -v arm-none-eabi-size || true)"
if [ -z "$size_tool" ]; then
    echo "arm-none-eabi-size not found (apt-get install binutils-arm-none-eabi)" >&2
    exit 1
fi
buffers=$((512 + 256 + 256)) # the baseline lends one 256-byte buffer

measure() { # features -> "text data bss" in $sizes
    CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release --locked $1
    sizes="$("$size_tool" "$elf" | awk 'NR == 2 { print $1, $2, $3 }')"
}

measure ""
read -r bt bd bb <<<"$sizes"
printf '%-22s %8s %8s %8s %12s %14s\n' image text data bss "client flash" "client state RAM"
printf '%-22s %8d %8d %8d %12s %14s\n' baseline "$bt" "$bd" "$bb" - -
for f in client v5; do
    measure "--features $f"
    read -r t d b <<<"$sizes"
    # Formatting must stay off the client's code paths (no defmt/log feature here): no core::fmt in the image.
    if "${size_tool%size}nm" -C "$elf" | grep -q 'core::fmt'; then
        echo "firmware-footprint: core::fmt is linked into the $f image" >&2
        exit 1
    fi
    name=$([ "$f" = client ] && echo "MQTT 3.1.1" || echo "MQTT 5 (v5)")
    printf '%-22s %8d %8d %8d %10d B %12d B\n' "$name" "$t" "$d" "$b" $((t + d - bt - bd)) $((d + b - buffers - (bd + bb - 256)))
done
