#!/usr/bin/env bash
# Side-by-side benchmark: our broker against Debian's Mosquitto, plus the null relay for fan-in.
#   bash scripts/bench-compare.sh            # 3 rounds, results in target/bench-compare/
#   ROUNDS=5 ONLY=fan-in bash scripts/bench-compare.sh
# Builds our broker and mqtt-bench with the profiling profile (the release build plus symbols, for perf), installs
# mosquitto when missing, then runs every scenario against both brokers with the same limits (large queues so
# neither drops, persistence off, the same in-flight window), alternating which goes first, ROUNDS times, with a
# fresh broker process per run. Prints a table of medians and the ratio ours / Mosquitto, and writes it to
# target/bench-compare/table.md.
#
# On a machine with 2 or more CPUs the broker is pinned to CPU $BROKER_CPU and the generator to CPU $BENCH_CPU with
# taskset, so each side has one core. Traffic stays on 127.0.0.0/8; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

ROUNDS="${ROUNDS:-3}"
ONLY="${ONLY:-}"            # run only cases whose name contains this
INFLIGHT="${INFLIGHT:-64}"  # max_inflight_messages of both brokers and the generator's QoS 1/2 window
BROKER_CPU="${BROKER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
OUT="${OUT:-target/bench-compare}"
TIMEOUT="${TIMEOUT:-60}"
TABLE_ONLY="${TABLE_ONLY:-}" # set: only print the table of an earlier run's $OUT/results.tsv
# NICE (default -10, as root): scheduling priority of the broker and the generator, see below.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
results="$OUT/results.tsv"
failures=0
if [ -z "$TABLE_ONLY" ]; then
MOSQUITTO="$(command -v mosquitto || true)"
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
if [ -z "$MOSQUITTO" ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto
  MOSQUITTO=/usr/sbin/mosquitto
fi
# The Debian package starts a system broker on port 1883; it is not used here and does not get in the way.

cargo build --profile profiling -q -p broker -p bench
BIN="${CARGO_TARGET_DIR:-target}/profiling"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files: $(ulimit -n)"

PIN_BROKER=()
PIN_BENCH=()
# Other work on a shared machine adds noise; as root, both brokers and the generator run at a higher priority.
NICE="${NICE:--10}"
if [ "$(id -u)" -eq 0 ] && [ "$NICE" != 0 ]; then
  PIN_BROKER=(nice -n "$NICE")
  PIN_BENCH=(nice -n "$NICE")
  echo "priority: nice $NICE"
fi
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  PIN_BROKER+=(taskset -c "$BROKER_CPU")
  PIN_BENCH+=(taskset -c "$BENCH_CPU")
  echo "pinning: broker on CPU $BROKER_CPU, generator on CPU $BENCH_CPU"
fi

mkdir -p "$OUT"
work="$(mktemp -d)"
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


# Same limits for both: queues large enough that nothing is dropped, no persistence, the same in-flight window.
start_server() {
  local kind="$1" port="$2"
  case "$kind" in
    ours)
      cat >"$work/ours.toml" <<TOML
[limits]
max_connections = 20000
max_inflight_messages = $INFLIGHT
max_queued_messages = 100000000
max_queued_bytes = 17179869184
max_retained_messages = 10000000
max_subscriptions_per_client = 1000

[persistence]
enabled = false

[log]
level = "warn"
TOML
      "${PIN_BROKER[@]}" "$BIN/broker" --config "$work/ours.toml" --listen "127.0.0.1:$port" 2>>"$work/ours.log" &
      ;;
    mosquitto)
      cat >"$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages $INFLIGHT
max_connections -1
# Ours sets TCP_NODELAY on every connection; without it Mosquitto's small acks wait for delayed ACKs (QoS 2 drops
# to a few thousand msg/s), which measures the kernel rather than the broker.
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
CONF
      "${PIN_BROKER[@]}" "$MOSQUITTO" -c "$work/mosquitto.conf" 2>>"$work/mosquitto.log" &
      ;;
    relay)
      "${PIN_BROKER[@]}" "$BIN/mqtt-bench" relay --listen "127.0.0.1:$port" 2>>"$work/relay.log" &
      ;;
  esac
  server_pid=$!
  wait_port "$port"
}

# name | targets | mqtt-bench arguments. Counts are sized so one run takes a few seconds. QoS 2 fan-in stays under
# 65,535 messages in all: Mosquitto 2.0.11 gives a queued message its packet identifier when it queues it, and with
# more QoS 2 messages queued for one client than there are identifiers its deliveries stall.
CASES=(
  "fan-in q0 64B|ours mosquitto relay|fan-in --publishers 10 --qos 0 --size 64 --count 100000"
  "fan-in q1 64B|ours mosquitto|fan-in --publishers 10 --qos 1 --size 64 --count 40000"
  "fan-in q2 64B|ours mosquitto|fan-in --publishers 10 --qos 2 --size 64 --count 6000"
  "fan-in q0 1KiB|ours mosquitto relay|fan-in --publishers 10 --qos 0 --size 1024 --count 40000"
  "fan-in q1 1KiB|ours mosquitto|fan-in --publishers 10 --qos 1 --size 1024 --count 20000"
  "fan-in q2 1KiB|ours mosquitto|fan-in --publishers 10 --qos 2 --size 1024 --count 5000"
  "fan-out q0 1->100|ours mosquitto|fan-out --subscribers 100 --qos 0 --size 64 --count 20000"
  "fan-out q1 1->100|ours mosquitto|fan-out --subscribers 100 --qos 1 --size 64 --count 5000"
  "latency q0 5k/s|ours mosquitto|latency --rate 5000 --count 25000 --qos 0"
  "latency q1 5k/s|ours mosquitto|latency --rate 5000 --count 25000 --qos 1"
  "idle 6000 conns|ours mosquitto|idle --clients 6000 --sources 8 --concurrency 128"
  "retained 50k|ours mosquitto|retained --topics 50000"
  "offline q1 50k|ours mosquitto|offline --messages 50000 --qos 1"
)

failures=0
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these CPUs)"
  for case in "${CASES[@]}"; do
    IFS='|' read -r name targets args <<<"$case"
    if [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]]; then continue; fi
    read -ra order <<<"$targets"
    # Alternate which broker goes first from round to round.
    if [ $((round % 2)) -eq 0 ] && [ "${#order[@]}" -ge 2 ]; then
      order=("${order[1]}" "${order[0]}" "${order[@]:2}")
    fi
    for target in "${order[@]}"; do
      port="$(free_port)"
      start_server "$target" "$port"
      # shellcheck disable=SC2086
      if ! out="$("${PIN_BENCH[@]}" "$BIN/mqtt-bench" $args --host "127.0.0.1:$port" --broker-pid "$server_pid" \
        --label "$target" --timeout "$TIMEOUT" 2>&1)"; then
        failures=$((failures + 1))
        echo "FAILED: $name [$target]: $out" >&2
      fi
      stop_server
      printf 'round %s  %s\n' "$round" "$(grep -v '^{' <<<"$out" | head -n1)"
      json="$(grep '^{' <<<"$out" | tail -n1 || true)"
      [ -n "$json" ] && printf '%s\t%s\t%s\n' "$name" "$round" "$json" >>"$results"
    done
  done
done

fi

python3 - "$results" "$OUT/table.md" <<'PY'
import json, statistics, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    name, _round, js = line.rstrip("\n").split("\t", 2)
    r = json.loads(js)
    if name not in order:
        order.append(name)
    rows.setdefault((name, r["label"]), []).append(r)

def med(rs, key):
    vals = [v for v in (key(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None

def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.3g}{unit}"

lines = [
    "| scenario | figure | ours | mosquitto | ours / mosquitto | null relay | ours / relay | broker CPU us/msg ours / mosq / relay | peak RSS ours / mosq (MiB) | broker CPU ours / mosq | bench CPU | errors |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
]
for name in order:
    get = lambda label: rows.get((name, label), [])
    ours, mosq, relay = get("ours"), get("mosquitto"), get("relay")
    any_r = (ours or mosq or relay)[0]
    head = any_r["headline"]
    m = {lab: med(rs, lambda r: r["metrics"].get(head)) for lab, rs in (("o", ours), ("m", mosq), ("r", relay))}
    ratio = m["o"] / m["m"] if m["o"] is not None and m["m"] else None
    rel = m["o"] / m["r"] if m["o"] is not None and m["r"] else None
    rss = lambda rs: med(rs, lambda r: r["broker_peak_rss_kib"] / 1024 if r["broker_peak_rss_kib"] else None)
    span = lambda r: r.get("run_s") or r["wall_s"]
    cpu = lambda rs: med(rs, lambda r: 100 * r["broker_cpu_s"] / span(r) if r["broker_cpu_s"] is not None and span(r) else None)
    bench = med(ours + mosq, lambda r: 100 * r["bench_cpu_s"] / span(r) if r["bench_cpu_s"] is not None and span(r) else None)
    errs = sum(r["lost"] + r["duplicated"] + r["reordered"] + r["foreign"] for r in ours + mosq + relay)
    incomplete = sum(1 for r in ours + mosq + relay if not r["completed"])
    extra = []
    if head == "connects_per_s":
        extra.append("B/conn " + " / ".join(fmt(med(rs, lambda r: r["metrics"].get("bytes_per_conn"))) for rs in (ours, mosq)))
    if head == "p99_us":
        for q in ("p50_us", "p999_us", "max_us"):
            extra.append(q[:-3] + " " + " / ".join(fmt(med(rs, lambda r, q=q: r["metrics"].get(q))) for rs in (ours, mosq)))
    label = head + (" (" + "; ".join(extra) + ")" if extra else "")
    def per_msg(rs):
        # Broker CPU per message (per delivery for fan-out): steadier than rates on a shared machine.
        def one(r):
            n = r["metrics"].get("received") or r["metrics"].get("delivered") or r["metrics"].get("samples")
            return 1e6 * r["broker_cpu_s"] / n if n and r["broker_cpu_s"] is not None else None
        return med(rs, one)
    lines.append(
        f"| {name} | {label} | {fmt(m['o'])} | {fmt(m['m'])} | {fmt(ratio)} | {fmt(m['r'])} | {fmt(rel)} | "
        f"{fmt(per_msg(ours))} / {fmt(per_msg(mosq))} / {fmt(per_msg(relay))} | "
        f"{fmt(rss(ours))} / {fmt(rss(mosq))} | {fmt(cpu(ours), '%')} / {fmt(cpu(mosq), '%')} | {fmt(bench, '%')} | "
        f"{errs} lost/dup/reord" + (f", {incomplete} timed out" if incomplete else "") + " |"
    )
table = "\n".join(lines)
print(table)
open(sys.argv[2], "w").write(table + "\n")
PY
echo "results: $results, table: $OUT/table.md"
[ "$failures" -eq 0 ] || { echo "$failures runs failed" >&2; exit 1; }
