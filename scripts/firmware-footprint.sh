#!/usr/bin/env bash
# Footprint of firmware-client: builds the minimal no_main image in firmware-client/footprint for
# thumbv7em-none-eabihf (release: opt-level "s", fat LTO, panic=abort) three ways (baseline without the client,
# the client with MQTT 3.1.1, the client with `v5`) and prints flash and static RAM from arm-none-eabi-size.
#
# Client flash = image flash (text + data) minus the baseline's; it is also shown without compiler_builtins' mem*
# functions (memcpy, memcmp, memset, ...), which coreMQTT's figures leave out as C library code. Client RAM = the
# image's data + bss minus the lent buffers (store 512 B, rx 256 B, tx 256 B), i.e. the client's own state for
# Client<_, 4, 2, 32>. Goals (issue 6): 3.1.1 <= 7,000 B flash without mem*, v5 <= 18,900 B, RAM <= 256 B for
# 3.1.1; FOOTPRINT_STRICT=1 makes a missed goal an error.
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

measure() { # features -> "text data bss" in $sizes, bytes of mem* functions in $mem
    CARGO_TARGET_DIR="$target_dir" cargo build --quiet --release --locked $1
    sizes="$("$size_tool" "$elf" | awk 'NR == 2 { print $1, $2, $3 }')"
    mem=0
    while read -r _ size _ _; do
        mem=$((mem + 16#$size))
    done < <("${size_tool%size}nm" -S -C "$elf" |
        grep -E ' [tT] (mem(cpy|move|set|cmp)|bcmp|__aeabi_mem[a-z0-9]*|compiler_builtins::mem::[a-z_]*)$' || true)
}

measure ""
read -r bt bd bb <<<"$sizes"
bmem=$mem
missed=""
printf '%-22s %8s %8s %8s %12s %10s %14s %16s\n' image text data bss "client flash" "of it mem*" \
    "without mem*" "client state RAM"
printf '%-22s %8d %8d %8d %12s %10s %14s %16s\n' baseline "$bt" "$bd" "$bb" - - - -
for f in client v5; do
    measure "--features $f"
    read -r t d b <<<"$sizes"
    # Formatting must stay off the client's code paths (no defmt/log feature here): no core::fmt in the image.
    if "${size_tool%size}nm" -C "$elf" | grep -q 'core::fmt'; then
        echo "firmware-footprint: core::fmt is linked into the $f image" >&2
        exit 1
    fi
    name=$([ "$f" = client ] && echo "MQTT 3.1.1" || echo "MQTT 5 (v5)")
    flash=$((t + d - bt - bd))
    mem=$((mem - bmem))
    ram=$((d + b - buffers - (bd + bb - 256)))
    printf '%-22s %8d %8d %8d %10d B %8d B %12d B %14d B\n' "$name" "$t" "$d" "$b" "$flash" "$mem" \
        $((flash - mem)) "$ram"
    if [ "$f" = client ]; then
        [ $((flash - mem)) -le 7000 ] && [ "$ram" -le 256 ] || missed+=" $name"
    else
        [ "$flash" -le 18900 ] || missed+=" $name"
    fi
done
if [ -n "$missed" ]; then
    echo "firmware-footprint: goal missed by:$missed" >&2
    [ "${FOOTPRINT_STRICT:-}" = 1 ] && exit 1
fi
