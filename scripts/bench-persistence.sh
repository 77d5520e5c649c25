#!/usr/bin/env bash
# Persistence benchmark (issue 13): our broker with the journal (fsync = "always") against our in-memory mode,
# Mosquitto 2.0 with persistence (its default autosave) and Mosquitto in memory, in one run. Not part of the tests.
#   bash scripts/bench-persistence.sh                 # ~10 min on 2 cores: 3 rounds + one restart run
#   ROUNDS=1 SESSIONS=100 PER_SESSION=100 bash scripts/bench-persistence.sh    # a quick look
#   ONLY=durable RESTART=0 bash scripts/bench-persistence.sh
#
# Part 1, throughput (ROUNDS rounds; the order of the brokers rotates from round to round; a fresh broker process
# and an empty data directory per run):
#   durable q1/q2: 10 publishers -> 1 subscriber, 64 B, window $INFLIGHT; the subscriber holds a persistent session
#                  (clean session 0), so a broker with persistence must store every message.
#   clean q0/q1:   the same with a clean-session subscriber: ours with persistence on against off.
#   For ours with persistence, the broker's /proc/PID/io write_bytes over the run and the journal's counters (logged
#   at shutdown: "journal counters") give bytes written per message, fsyncs per second and messages per fsync.
# Part 2, restart (RESTART=1): $SESSIONS persistent sessions with $PER_SESSION queued QoS 1 messages each (filled by
#   `mqtt-bench fill`), then kill -9 or SIGTERM, a restart timed until "listening" is logged, peak RSS (VmHWM) at that
#   moment, and `mqtt-bench drain` (every session returns and gets its whole queue). Mosquitto with persistence is
#   measured the same way after SIGTERM (kill -9 would lose its queues: it saves only at autosave or exit).
#
# Every broker gets the same limits: queues large enough that nothing is dropped, max_inflight_messages = $INFLIGHT
# (also the generator's window), TCP_NODELAY. As bench-compare.sh: broker on CPU $BROKER_CPU, generator on CPU
# $BENCH_CPU, both at nice $NICE (as root). The load average is printed per round: the machine may be shared, so
# compare figures within one run. Results: $OUT/results.tsv, $OUT/restart.tsv, $OUT/table.md, broker logs in
# $OUT/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

ROUNDS="${ROUNDS:-3}"
ONLY="${ONLY:-}"
INFLIGHT="${INFLIGHT:-100}"
Q1_COUNT="${Q1_COUNT:-20000}"   # QoS 1 messages per publisher (10 publishers)
Q2_COUNT="${Q2_COUNT:-6000}"    # QoS 2: Mosquitto 2.0.11 stalls with more than 65,535 QoS 2 messages queued for one client
Q0_COUNT="${Q0_COUNT:-100000}"
RESTART="${RESTART:-1}"
SESSIONS="${SESSIONS:-1000}"
PER_SESSION="${PER_SESSION:-1000}"
BROKER_CPU="${BROKER_CPU:-0}"
BENCH_CPU="${BENCH_CPU:-1}"
NICE="${NICE:--10}"
TIMEOUT="${TIMEOUT:-120}"
OUT="${OUT:-target/bench-persistence}"
TABLE_ONLY="${TABLE_ONLY:-}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
results="$OUT/results.tsv"
restarts="$OUT/restart.tsv"
failures=0
if [ -z "$TABLE_ONLY" ]; then
MOSQUITTO="$(command -v mosquitto || true)"
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
if [ -z "$MOSQUITTO" ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto
  MOSQUITTO=/usr/sbin/mosquitto
fi
echo "mosquitto: $("$MOSQUITTO" -h 2>&1 | head -n1)"

cargo build --release -q -p broker -p bench
BIN="${CARGO_TARGET_DIR:-target}/release"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIN_BROKER=()
PIN_BENCH=()
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

mkdir -p "$OUT/logs"
# The journal goes to a directory on the same file system as the work tree (not a tmpfs /tmp: fsync must be real).
work="$(mktemp -d "$PWD/$OUT/work.XXXXXX")"
: >"$results"
: >"$restarts"
server_pid=""
stop_server() {
  local sig="${1:-TERM}"
  if [ -n "$server_pid" ]; then
    kill -"$sig" "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# Ours binds before recovery and logs "listening" after it: that line, not the port, means "ready".
wait_log() {
  local file="$1" pattern="$2"
  for _ in $(seq 1 60000); do
    if grep -q "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  echo "no '$pattern' in $file" >&2
  return 1
}
write_bytes() { awk '/^write_bytes/ {print $2}' "/proc/$1/io" 2>/dev/null || echo 0; }
vm_hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now_ns() { date +%s%N; }

# start_server KIND PORT DATA LOG: ours-always | ours-mem | mosq-persist | mosq-mem; DATA is kept between calls
# so a restart finds what the previous process stored.
start_server() {
  local kind="$1" port="$2" data="$3" log="$4"
  case "$kind" in
    ours-*)
      local persistence='enabled = false'
      if [ "$kind" = ours-always ]; then
        persistence="enabled = true
path = \"$data\"
fsync = \"always\"
max_bytes = 17179869184"
      fi
      cat >"$work/$kind.toml" <<TOML
[limits]
max_connections = 20000
max_inflight_messages = $INFLIGHT
max_queued_messages = 100000000
max_queued_bytes = 17179869184
max_retained_messages = 10000000
max_subscriptions_per_client = 1000

[persistence]
$persistence

[log]
format = "json"
level = "info"
TOML
      "${PIN_BROKER[@]}" "$BIN/broker" --config "$work/$kind.toml" --listen "127.0.0.1:$port" 2>>"$log" &
      server_pid=$!
      ;;
    mosq-*)
      local persistence='persistence false'
      if [ "$kind" = mosq-persist ]; then
        mkdir -p "$data"
        persistence="persistence true
persistence_location $data/"
      fi
      # As root, Mosquitto switches to the user "mosquitto", which may not write here; keep root instead.
      local user=''
      [ "$(id -u)" -eq 0 ] && user='user root'
      cat >"$work/$kind.conf" <<CONF
listener $port 127.0.0.1
$user
allow_anonymous true
$persistence
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages $INFLIGHT
max_connections -1
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
log_type notice
CONF
      "${PIN_BROKER[@]}" "$MOSQUITTO" -c "$work/$kind.conf" 2>>"$log" &
      server_pid=$!
      ;;
  esac
}

wait_ready() {
  local kind="$1" port="$2" log="$3"
  case "$kind" in
    ours-*) wait_log "$log" '"listening"' ;;
    *) wait_port "$port" 300 ;;
  esac
}

bench() {
  # shellcheck disable=SC2068
  "${PIN_BENCH[@]}" "$BIN/mqtt-bench" "$@"
}

CASES=(
  "durable q1|ours-always ours-mem mosq-persist mosq-mem|fan-in --publishers 10 --qos 1 --size 64 --count $Q1_COUNT --window $INFLIGHT --persistent 1"
  "durable q2|ours-always ours-mem mosq-persist mosq-mem|fan-in --publishers 10 --qos 2 --size 64 --count $Q2_COUNT --window $INFLIGHT --persistent 1"
  "clean q0|ours-always ours-mem|fan-in --publishers 10 --qos 0 --size 64 --count $Q0_COUNT --window $INFLIGHT"
  "clean q1|ours-always ours-mem|fan-in --publishers 10 --qos 1 --size 64 --count $Q1_COUNT --window $INFLIGHT"
)

run_no=0
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: load average $(cut -d' ' -f1-3 /proc/loadavg) (other processes share these CPUs)"
  for case in "${CASES[@]}"; do
    IFS='|' read -r name targets args <<<"$case"
    if [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]]; then continue; fi
    read -ra order <<<"$targets"
    # Rotate the order from round to round.
    shift_by=$(((round - 1) % ${#order[@]}))
    order=("${order[@]:$shift_by}" "${order[@]:0:$shift_by}")
    for target in "${order[@]}"; do
      run_no=$((run_no + 1))
      port="$(free_port)"
      data="$work/data-$run_no"
      log="$OUT/logs/${name// /-}-$target-r$round.log"
      : >"$log"
      load="$(cut -d' ' -f1 /proc/loadavg)"
      start_server "$target" "$port" "$data" "$log"
      wait_ready "$target" "$port" "$log"
      wb0="$(write_bytes "$server_pid")"
      # shellcheck disable=SC2086
      if ! out="$(bench $args --host "127.0.0.1:$port" --broker-pid "$server_pid" --label "$target" \
        --timeout "$TIMEOUT" 2>&1)"; then
        failures=$((failures + 1))
        echo "FAILED: $name [$target]: $out" >&2
      fi
      wb1="$(write_bytes "$server_pid")"
      stop_server TERM
      rm -rf "$data"
      printf 'round %s  %-10s %s\n' "$round" "$name" "$(grep -v '^{' <<<"$out" | head -n1)"
      json="$(grep '^{' <<<"$out" | tail -n1 || true)"
      counters="$(grep '"journal counters"' "$log" | tail -n1 || true)"
      [ -n "$json" ] && printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$round" "$load" "$((wb1 - wb0))" \
        "${counters:-{\}}" "$json" >>"$results"
    done
  done
done

# Restart: fill, stop (kill -9 or SIGTERM), restart timed to "listening", then every session drains its queue.
restart_case() {
  local kind="$1" sig="$2"
  local port data log fill drain t0 t1 hwm
  port="$(free_port)"
  data="$work/restart-$kind-$sig"
  log="$OUT/logs/restart-$kind-$sig.log"
  : >"$log"
  echo "restart $kind $sig: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  start_server "$kind" "$port" "$data" "$log"
  wait_ready "$kind" "$port" "$log"
  local id="pq$RANDOM"
  if ! fill="$(bench fill --sessions "$SESSIONS" --messages "$PER_SESSION" --publishers 10 --qos 1 \
    --window "$INFLIGHT" --id "$id" --host "127.0.0.1:$port" --broker-pid "$server_pid" --label "$kind" \
    --timeout 900 2>&1)"; then
    failures=$((failures + 1))
    echo "FAILED: fill [$kind]: $fill" >&2
  fi
  echo "  $(head -n1 <<<"$fill")"
  local fill_rss disk
  fill_rss="$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")"
  local t_stop0 t_stop1
  t_stop0="$(now_ns)"
  stop_server "$sig"
  t_stop1="$(now_ns)"
  disk="$(du -sb "$data" | cut -f1)"
  # Drop the page cache so recovery reads from the disk, as after a power cut (needs root; skipped otherwise).
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
  # The restarted broker logs to a file of its own: the first process's "listening" must not count.
  log="$OUT/logs/restart-$kind-$sig-after.log"
  : >"$log"
  t0="$(now_ns)"
  start_server "$kind" "$port" "$data" "$log"
  wait_ready "$kind" "$port" "$log"
  t1="$(now_ns)"
  hwm="$(vm_hwm "$server_pid")"
  if ! drain="$(bench drain --sessions "$SESSIONS" --messages "$PER_SESSION" --id "$id" \
    --host "127.0.0.1:$port" --broker-pid "$server_pid" --label "$kind" --timeout 900 2>&1)"; then
    failures=$((failures + 1))
    echo "FAILED: drain [$kind $sig]: $drain" >&2
  fi
  local t2
  t2="$(now_ns)"
  echo "  $(head -n1 <<<"$drain")"
  local hwm2
  hwm2="$(vm_hwm "$server_pid")"
  stop_server TERM
  rm -rf "$data"
  local recovered
  recovered="$(grep '"recovered"' "$log" | tail -n1 || true)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$sig" "$(((t1 - t0) / 1000000))" "$hwm" \
    "$hwm2" "$disk" "$fill_rss" "$(((t_stop1 - t_stop0) / 1000000))" "$(((t2 - t0) / 1000000))" \
    "${recovered:-{\}}" "$(grep '^{' <<<"$fill" | tail -n1)" "$(grep '^{' <<<"$drain" | tail -n1)" >>"$restarts"
}

if [ "$RESTART" = 1 ]; then
  restart_case ours-always KILL
  restart_case ours-always TERM
  restart_case mosq-persist TERM
fi
fi

python3 - "$results" "$restarts" "$OUT/table.md" <<'PY'
import json, statistics, sys
rows, order, loads = {}, [], []
for line in open(sys.argv[1]):
    name, rnd, load, wb, counters, js = line.rstrip("\n").split("\t", 5)
    r = json.loads(js)
    r["_write_bytes"] = int(wb)
    r["_journal"] = json.loads(counters) if counters.strip() else {}
    loads.append(float(load))
    if name not in order:
        order.append(name)
    rows.setdefault((name, r["label"]), []).append(r)

med = lambda xs: statistics.median(xs) if xs else None
def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}{unit}"
    return f"{v:.3g}{unit}"
def rates(name, label):
    return [r["metrics"]["rate"] for r in rows.get((name, label), [])]
def ratio(a, b):
    return a / b if a is not None and b else None
def per_round(name, a, b):
    # Runs are stored in round order, so the i-th runs of two brokers are from the same round.
    return [x / y for x, y in zip(rates(name, a), rates(name, b)) if y]

out = []
labels = ["ours-always", "ours-mem", "mosq-persist", "mosq-mem"]
out.append("| case | " + " | ".join(labels) + " | always / ours-mem | always / mosq-mem | errors |")
out.append("|---|" + "---:|" * len(labels) + "---:|---:|---|")
for name in order:
    m = {l: med(rates(name, l)) for l in labels}
    errs = sum(r["lost"] + r["duplicated"] + r["reordered"] + r["foreign"] for l in labels for r in rows.get((name, l), []))
    inc = sum(1 for l in labels for r in rows.get((name, l), []) if not r["completed"])
    def rr(a, b):
        v = ratio(m[a], m[b])
        each = per_round(name, a, b)
        if v is None or not each:
            return fmt(v)
        return f"{fmt(v)} (rounds {min(each):.3f}-{max(each):.3f}, median {statistics.median(each):.3f})"
    out.append(f"| {name} | " + " | ".join(fmt(m[l]) for l in labels) + f" | {rr('ours-always', 'ours-mem')} | "
               f"{rr('ours-always', 'mosq-mem')} | {errs} lost/dup/reord" + (f", {inc} timed out" if inc else "") + " |")
out.append("")
out.append("msg/s received, medians; ratios: of the medians, then the range and median of the ratios within each round. "
           f"Load average (1 min) at the runs: {min(loads):.1f}-{max(loads):.1f}." if loads else "")
out.append("")
out.append("| case (ours, fsync = always) | messages | write_bytes / msg | journal bytes / msg | fsyncs/s | msgs / fsync | records / fsync | mean fsync ms | broker CPU us/msg always / mem |")
out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in order:
    rs = rows.get((name, "ours-always"), [])
    if not rs:
        continue
    n = lambda r: r["metrics"]["received"]
    span = lambda r: r.get("run_s") or r["wall_s"]
    j = lambda r, k: r["_journal"].get(k)
    wb = med([r["_write_bytes"] / n(r) for r in rs if n(r)])
    jb = med([j(r, "appended_bytes") / n(r) for r in rs if n(r) and j(r, "appended_bytes") is not None])
    fps = med([j(r, "fsyncs") / span(r) for r in rs if j(r, "fsyncs") is not None and span(r)])
    mpf = med([n(r) / j(r, "fsyncs") for r in rs if j(r, "fsyncs")])
    rpf = med([j(r, "fsynced_records") / j(r, "fsyncs") for r in rs if j(r, "fsyncs")])
    mfs = med([j(r, "fsync_ms_sum") / j(r, "fsyncs") for r in rs if j(r, "fsyncs")])
    cpu = lambda label: med([1e6 * r["broker_cpu_s"] / n(r) for r in rows.get((name, label), []) if n(r) and r["broker_cpu_s"] is not None])
    out.append(f"| {name} | {fmt(med([n(r) for r in rs]))} | {fmt(wb)} | {fmt(jb)} | {fmt(fps)} | {fmt(mpf)} | {fmt(rpf)} | "
               f"{fmt(mfs)} | {fmt(cpu('ours-always'))} / {fmt(cpu('ours-mem'))} |")

try:
    rest = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
except FileNotFoundError:
    rest = []
if rest:
    out.append("")
    out.append("| restart | stop | stop took ms | disk bytes | RSS before stop MiB | exec -> ready ms | recovery (logged) ms | peak RSS at ready MiB | drain ms (connect -> last message) | exec -> all served ms (ready + drain) | peak RSS after drain MiB | fill msg/s | drain errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for kind, sig, ready, hwm, hwm2, disk, fill_rss, stop_ms, served, rec, fill, drain in rest:
        rec = json.loads(rec) if rec.strip() else {}
        fill = json.loads(fill) if fill.strip() else {"metrics": {}}
        drain = json.loads(drain) if drain.strip() else {"metrics": {}, "lost": "-", "duplicated": "-", "reordered": "-"}
        out.append(f"| {kind} | {sig} | {stop_ms} | {int(disk):,} | {int(fill_rss or 0)/1024:.0f} | {ready} | {rec.get('ms', '-')} | "
                   f"{int(hwm or 0)/1024:.0f} | {fmt(drain['metrics'].get('drain_ms'))} | {fmt(int(ready) + drain['metrics']['drain_ms']) if drain['metrics'].get('drain_ms') is not None else '-'} | {int(hwm2 or 0)/1024:.0f} | "
                   f"{fmt(fill['metrics'].get('fill_rate'))} | {drain.get('lost')} lost, {drain.get('duplicated')} dup, "
                   f"{drain.get('reordered')} reord, received {fmt(drain['metrics'].get('received'))} |")
table = "\n".join(out)
print(table)
open(sys.argv[3], "w").write(table + "\n")
PY
echo "results: $results, $restarts, table: $OUT/table.md"
[ "$failures" -eq 0 ] || { echo "$failures runs failed" >&2; exit 1; }
