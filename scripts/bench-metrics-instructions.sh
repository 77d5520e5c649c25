#!/usr/bin/env bash
# What the per-message metrics cost, counted in instructions rather than seconds: the release broker runs under
# `valgrind --tool=callgrind` with `http.metrics = true` and `false` (nothing else different), serves one fan-in QoS 0
# run (10 publishers -> 1 subscriber, 64 B), and is stopped with SIGTERM; callgrind's total of instructions executed
# by the broker process is compared. Instruction counts do not depend on what else the machine runs, which wall-clock
# rates on a shared machine do. Under valgrind the broker is far slower than the generator, so its read and delivery
# batches are larger than in a normal run; per-batch work is then cheaper per message than it would be natively.
#   bash scripts/bench-metrics-instructions.sh            # ROUNDS=3 COUNT=10000; results in target/bench-metrics-instructions/
#   BUILD=0 BIN=DIR bash scripts/bench-metrics-instructions.sh
# Needs valgrind (Debian's package). Traffic stays on 127.0.0.1; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

ROUNDS="${ROUNDS:-3}"
COUNT="${COUNT:-10000}" # messages per publisher
OUT="${OUT:-target/bench-metrics-instructions}"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
[ "${BUILD:-1}" = 0 ] || cargo build --release -q -p broker -p bench
command -v valgrind >/dev/null || { echo "bench-metrics-instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }

mkdir -p "$OUT"
work="$(mktemp -d)"
server_pid=""
trap '[ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# Prints the instructions the broker executed: serving COUNT messages per publisher, or only starting and stopping.
count_run() {
  local metrics="$1" count="$2" tag="$3" port
  port="$(free_port)"
  metrics_bench_config "$work/broker.toml" "$metrics"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$tag.out" "$BIN/broker" --config "$work/broker.toml" \
    --listen "127.0.0.1:$port" 2>"$OUT/valgrind.$tag.log" &
  server_pid=$!
  wait_port "$port" 600
  if [ "$count" -gt 0 ]; then
    "$BIN/mqtt-bench" fan-in --publishers 10 --qos 0 --size 64 --count "$count" --host "127.0.0.1:$port" \
      --label "metrics=$metrics" --timeout 600 2>&1 | grep -v '^{' | head -n1 >&2
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  sed -n 's/^==[0-9]*== Collected : *//p' "$OUT/valgrind.$tag.log"
}

results="$OUT/results.tsv"
: >"$results"
for metrics in true false; do
  printf '%s\tbase\t%s\n' "$metrics" "$(count_run "$metrics" 0 "base-$metrics")" >>"$results"
done
for round in $(seq 1 "$ROUNDS"); do
  order=(true false)
  [ $((round % 2)) -eq 0 ] && order=(false true)
  for metrics in "${order[@]}"; do
    printf '%s\t%s\t%s\n' "$metrics" "$round" "$(count_run "$metrics" "$COUNT" "$round-$metrics")" >>"$results"
  done
done

python3 - "$results" "$OUT/table.md" "$((COUNT * 10))" <<'PY'
import statistics, sys
base, runs = {}, {}
for line in open(sys.argv[1]):
    mode, rnd, n = line.split()
    (base.__setitem__(mode, int(n)) if rnd == "base" else runs.setdefault(mode, []).append(int(n)))
msgs = int(sys.argv[3])
lines = ["| mode | runs | instructions per run | median | start and stop alone | per message (median, less start and stop) |",
         "|---|---:|---|---:|---:|---:|"]
per = {}
for mode, name in (("true", "metrics on"), ("false", "metrics off")):
    med = statistics.median(runs[mode])
    per[mode] = (med - base[mode]) / msgs
    lines.append(f"| {name} | {len(runs[mode])} | {', '.join(f'{n:,}' for n in runs[mode])} | {med:,.0f} | "
                 f"{base[mode]:,} | {per[mode]:,.0f} |")
text = "\n".join(lines) + f"\n\non / off, instructions per message: {per['true'] / per['false']:.4f} ({msgs:,} messages per run)\n"
print(text)
open(sys.argv[2], "w").write(text)
PY
