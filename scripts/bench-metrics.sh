#!/usr/bin/env bash
# What the per-message metrics cost: fan-in QoS 0 (10 publishers -> 1 subscriber, 64 B) against our broker with
# `http.metrics = true` and `false`, alternating which goes first from round to round, a fresh broker per run.
#   bash scripts/bench-metrics.sh                  # ROUNDS=7; results in target/bench-metrics/
#   ROUNDS=9 COUNT=200000 bash scripts/bench-metrics.sh
#   BUILD=0 BIN=DIR bash scripts/bench-metrics.sh  # binaries already built in DIR
# Builds the release broker and mqtt-bench; pins the broker to CPU $BROKER_CPU and the generator to CPU $BENCH_CPU
# (taskset) at nice $NICE when root, like scripts/bench-compare.sh. Prints medians of the received rate and of the
# broker's CPU time per message for each mode, the ratio of the medians and the median of the per-round ratios.
# Traffic stays on 127.0.0.1; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

ROUNDS="${ROUNDS:-7}"
COUNT="${COUNT:-100000}" # messages per publisher
BROKER_CPU="${BROKER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
OUT="${OUT:-target/bench-metrics}"
TIMEOUT="${TIMEOUT:-60}"
NICE="${NICE:--10}"

BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
# BUILD=0: use the binaries in $BIN as they are.
[ "${BUILD:-1}" = 0 ] || cargo build --release -q -p broker -p bench
PIN_BROKER=()
PIN_BENCH=()
if [ "$(id -u)" -eq 0 ] && [ "$NICE" != 0 ]; then
  PIN_BROKER=(nice -n "$NICE")
  PIN_BENCH=(nice -n "$NICE")
fi
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_BROKER+=(taskset -c "$BROKER_CPU")
  PIN_BENCH+=(taskset -c "$BENCH_CPU")
fi

mkdir -p "$OUT"
work="$(mktemp -d)"
results="$OUT/results.tsv"
: >"$results"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

start_server() {
  local metrics="$1" port="$2"
  metrics_bench_config "$work/broker.toml" "$metrics"
  "${PIN_BROKER[@]}" "$BIN/broker" --config "$work/broker.toml" --listen "127.0.0.1:$port" 2>>"$work/broker.log" &
  server_pid=$!
  wait_port "$port"
}

failures=0
for round in $(seq 1 "$ROUNDS"); do
  order=(true false)
  [ $((round % 2)) -eq 0 ] && order=(false true)
  echo "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  for metrics in "${order[@]}"; do
    port="$(free_port)"
    start_server "$metrics" "$port"
    if ! out="$("${PIN_BENCH[@]}" "$BIN/mqtt-bench" fan-in --publishers 10 --qos 0 --size 64 --count "$COUNT" \
      --host "127.0.0.1:$port" --broker-pid "$server_pid" --label "metrics=$metrics" --timeout "$TIMEOUT" 2>&1)"; then
      failures=$((failures + 1))
      echo "FAILED: metrics=$metrics: $out" >&2
    fi
    stop_server
    printf 'round %s  %s\n' "$round" "$(grep -v '^{' <<<"$out" | head -n1)"
    json="$(grep '^{' <<<"$out" | tail -n1 || true)"
    [ -n "$json" ] && printf '%s\t%s\t%s\n' "$metrics" "$round" "$json" >>"$results"
  done
done

python3 - "$results" "$OUT/table.md" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    mode, rnd, js = line.rstrip("\n").split("\t", 2)
    r = json.loads(js)
    runs.setdefault(mode, {})[int(rnd)] = r
rate = lambda r: r["metrics"][r["headline"]]
cpu = lambda r: 1e6 * r["broker_cpu_s"] / r["metrics"]["received"] if r["broker_cpu_s"] is not None else None
errs = sum(r["lost"] + r["duplicated"] + r["reordered"] for m in runs.values() for r in m.values())
on, off = runs.get("true", {}), runs.get("false", {})
rounds = sorted(set(on) & set(off))
lines = ["| mode | runs | msg/s received (median) | min - max | broker CPU us/msg (median) |", "|---|---:|---:|---:|---:|"]
for name, m in (("metrics on", on), ("metrics off", off)):
    rates = [rate(r) for r in m.values()]
    cpus = [c for c in (cpu(r) for r in m.values()) if c is not None]
    lines.append(f"| {name} | {len(rates)} | {statistics.median(rates):,.0f} | {min(rates):,.0f} - {max(rates):,.0f} | "
                 + (f"{statistics.median(cpus):.3f}" if cpus else "-") + " |")
ratio = statistics.median(rate(r) for r in on.values()) / statistics.median(rate(r) for r in off.values())
per_round = [rate(on[i]) / rate(off[i]) for i in rounds]
cpu_on = statistics.median(c for c in (cpu(r) for r in on.values()) if c is not None)
cpu_off = statistics.median(c for c in (cpu(r) for r in off.values()) if c is not None)
text = "\n".join(lines) + (
    f"\n\non / off, rate: {ratio:.3f} of the medians; per round {', '.join(f'{x:.3f}' for x in per_round)} "
    f"(median {statistics.median(per_round):.3f})\n"
    f"on / off, broker CPU per message: {cpu_on / cpu_off:.3f}\n"
    f"errors: {errs} lost/duplicated/reordered\n")
print(text)
open(sys.argv[2], "w").write(text)
PY
[ "$failures" -eq 0 ] || { echo "$failures runs failed" >&2; exit 1; }
