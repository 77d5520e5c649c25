#!/usr/bin/env bash
# Bridge drain benchmark (issue 16): N QoS 1 messages are queued at the edge while the upstream is down, then the
# upstream (Debian's mosquitto) comes back and we time until a subscriber there has all of them. The same run with
# Mosquitto as the edge (its bridge keeps the queue in memory). Not part of the tests.
#   bash scripts/bench-bridge.sh              # N=100000
#   N=20000 bash scripts/bench-bridge.sh      # a quick look
#   ROUNDS=3 bash scripts/bench-bridge.sh     # rounds alternate ours and Mosquitto; prints the medians at the end
# Both edges: TCP, 127.0.0.1, 64-byte payloads published with `mosquitto_pub -l -q 1` (one publisher at a time, in
# order, in chunks of CHUNK lines: mosquitto_pub -l disconnects when the PUBACK for the packet identifier of its
# last line arrives, and identifiers wrap at 65,535, so one run of more lines quits early and silently),
# bridge topic `bench/# out 1`, MQTT 3.1.1 upstream (Mosquitto's bridge bit), window 20 (Mosquitto's default
# max_inflight_messages, which the upstream enforces), persistent upstream session, reconnection every 2 s.
# Ours journals with fsync = "always" (FSYNC=interval or never to compare). Prints one line per edge and round
# (fill time, drain time, drain rate), then the median drain rate per edge.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100000}"
ROUNDS="${ROUNDS:-1}"
FSYNC="${FSYNC:-always}" # ours: persistence.fsync
CHUNK=50000 # below 65,535 (see above)
BROKER="${BROKER:-target/release/broker}"
MOSQ="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
OUT="${OUT:-target/bench-bridge}"
rm -rf "$OUT" && mkdir -p "$OUT"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# Waits (60 s: the machine may be loaded) until something listens on port $1; $2 names it in the error.
wait_port() {
  for _ in $(seq 1200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing listens on port $1 ($2) after 60 s" >&2; return 1
}
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

UP_PORT=$(port)
upstream_conf() { # port, directory of the upstream's database
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nuser root\nset_tcp_nodelay true\n' "$1" "$2"
}
payload=$(printf 'x%.0s' $(seq 60))

run() { # name, edge port, start command already running as pid $2
  local name=$1 edge_port=$2
  local t0 t1 t2
  # The subscriber's persistent session upstream exists before the bridge can connect: made on a port of its own,
  # which the bridge does not try, and saved at exit; the upstream the bridge drains to loads it, so what the bridge
  # forwards before the subscriber is back waits for it there (without this the bridge sometimes won the race).
  local dir="$OUT/upstream-$name-$round" pre p
  rm -rf "$dir" && mkdir -p "$dir"
  pre=$(port)
  upstream_conf "$pre" "$dir" > "$dir/pre.conf"
  upstream_conf "$UP_PORT" "$dir" > "$dir/upstream.conf"
  "$MOSQ" -c "$dir/pre.conf" > "$dir/pre.log" 2>&1 & p=$!; PIDS+=("$p")
  wait_port "$pre" "upstream for the subscription, log $dir/pre.log"
  mosquitto_sub -p "$pre" -t 'bench/#' -q 1 -c -i "bench-sub-$name" -W 1 > /dev/null 2>&1 || true # exits after 1 s
  kill "$p"; wait "$p" 2>/dev/null || true
  t0=$(now)
  local from
  for ((from = 1; from <= N; from += CHUNK)); do
    seq -f "%06g-$payload" "$from" "$(( from + CHUNK - 1 < N ? from + CHUNK - 1 : N ))" |
      mosquitto_pub -p "$edge_port" -t bench/drain -q 1 -l
  done
  t1=$(now)
  "$MOSQ" -c "$dir/upstream.conf" > "$dir/upstream.log" 2>&1 & local up=$!; PIDS+=("$up")
  wait_port "$UP_PORT" "upstream, log $dir/upstream.log"
  local start; start=$(now)
  timeout 600 mosquitto_sub -p "$UP_PORT" -t 'bench/#' -q 1 -c -C "$N" -i "bench-sub-$name" -F '%U %p' > "$OUT/got-$name.txt"
  python3 - "$name" "$N" "$t0" "$t1" "$start" "$OUT/got-$name.txt" <<'PY'
import sys
name, n, t0, t1, start, path = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6]), sys.argv[6]
rows = [l.split(" ", 1) for l in open(path).read().splitlines()]
stamps = [float(r[0]) for r in rows]
seqs = [int(r[1].split("-", 1)[0]) for r in rows]
order = "in order" if seqs == sorted(seqs) and len(set(seqs)) == n else f"{len(set(seqs))} distinct, order {seqs == sorted(seqs)}"
span = stamps[-1] - stamps[0]
with open(path.rsplit("/", 1)[0] + "/results.txt", "a") as f:
    f.write(f"{name} {(len(rows)-1)/span:.0f} {span:.2f} {t1-t0:.1f} {len(rows)} {order.replace(' ', '_')}\n")
print(f"{name:10} queued {n} in {t1-t0:6.1f} s; first message {stamps[0]-start:5.2f} s after the upstream started "
      f"(reconnect delay); drained in {span:6.2f} s = {(len(rows)-1)/span:8.0f} msg/s ({order})")
PY
  kill "$up" 2>/dev/null || true; wait "$up" 2>/dev/null || true
  rm -rf "$dir"
}

edge_ours() {
EDGE_PORT=$(port)
cat > "$OUT/edge.toml" <<TOML
[[listeners]]
bind = "127.0.0.1:$EDGE_PORT"
[http]
enabled = false
[persistence]
enabled = true
path = "$OUT/edge-data-$1"
fsync = "$FSYNC"
[limits]
max_inflight_messages = 20
[[bridges]]
name = "bench"
addresses = ["127.0.0.1:$UP_PORT"]
client_id = "bench-edge-ours"
protocol = "3.1.1"
topics = ["bench/# out 1"]
reconnect_min_ms = 2000
reconnect_max_ms = 2000
TOML
RUST_LOG="${RUST_LOG:-warn}" "$BROKER" --config "$OUT/edge.toml" > "$OUT/edge-ours-$1.log" 2>&1 & EDGE=$!; PIDS+=("$EDGE")
wait_port "$EDGE_PORT" "our edge"
run ours "$EDGE_PORT"
kill "$EDGE"; wait "$EDGE" 2>/dev/null || true
}

edge_mosquitto() {
EDGE_PORT=$(port)
cat > "$OUT/edge-mosquitto.conf" <<CONF
listener $EDGE_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
user root
set_tcp_nodelay true
connection bench
address 127.0.0.1:$UP_PORT
remote_clientid bench-edge-mosquitto
bridge_protocol_version mqttv311
cleansession false
restart_timeout 2
topic bench/# out 1
CONF
"$MOSQ" -c "$OUT/edge-mosquitto.conf" > "$OUT/edge-mosquitto-$1.log" 2>&1 & EDGE=$!; PIDS+=("$EDGE")
wait_port "$EDGE_PORT" "Mosquitto edge"
run mosquitto "$EDGE_PORT"
kill "$EDGE"; wait "$EDGE" 2>/dev/null || true
}
for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  edge_ours "$round"
  edge_mosquitto "$round"
done
python3 - "$OUT/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for name in ("ours", "mosquitto"):
    mine = [r for r in rows if r[0] == name and r[5] == "in_order"]
    if len(mine) < len([r for r in rows if r[0] == name]):
        print(f"{name:10} rounds left out (not all {rows[0][4]} arrived, or not in order): "
              f"{[r for r in rows if r[0] == name and r[5] != 'in_order']}")
    if mine:
        rates = [float(r[1]) for r in mine]
        print(f"{name:10} median drain rate {statistics.median(rates):8.0f} msg/s over {len(mine)} rounds "
              f"(each: {', '.join(f'{r:.0f}' for r in rates)}); median fill "
              f"{statistics.median(float(r[3]) for r in mine):.1f} s")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
