#!/usr/bin/env bash
# Smoke run of the load generator against our broker: every scenario with tiny counts, correctness only.
#   bash scripts/bench-smoke.sh
# Builds the broker and mqtt-bench (debug), starts the broker binary on a free loopback port, runs each scenario
# and the null relay, and exits non-zero when any message is lost, duplicated or reordered, or a run times out.
# Takes about 10-20 s after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

cargo build -q -p broker -p bench ${CARGO_LOCKED:+--locked}
BIN="${CARGO_TARGET_DIR:-target}/debug"
ulimit -n 4096 2>/dev/null || true

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT


cat > "$work/broker.toml" <<TOML
[limits]
max_inflight_messages = 32
max_queued_messages = 100000
max_queued_bytes = 67108864

[persistence]
path = "$work/data"

[log]
level = "warn"
TOML

port="$(free_port)"
"$BIN/broker" --config "$work/broker.toml" --listen "127.0.0.1:$port" 2>"$work/broker.log" &
broker_pid=$!
pids+=("$broker_pid")
wait_port "$port"

relay_port="$(free_port)"
"$BIN/mqtt-bench" relay --listen "127.0.0.1:$relay_port" 2>"$work/relay.log" &
relay_pid=$!
pids+=("$relay_pid")
wait_port "$relay_port"

passed=0
failed=0
run() {
  local target="$1" pid="$2"
  shift 2
  local out
  if out="$("$BIN/mqtt-bench" "$@" --host "127.0.0.1:$target" --broker-pid "$pid" --timeout 20 2>&1)"; then
    passed=$((passed + 1))
    printf 'ok    %s\n' "$(head -n1 <<<"$out")"
  else
    failed=$((failed + 1))
    printf 'FAIL  mqtt-bench %s\n%s\n' "$*" "$out"
  fi
}

common=(--label ours)
run "$port" "$broker_pid" fan-in --publishers 4 --qos 0 --count 500 "${common[@]}"
run "$port" "$broker_pid" fan-in --publishers 4 --qos 1 --count 500 "${common[@]}"
run "$port" "$broker_pid" fan-in --publishers 4 --qos 2 --count 500 "${common[@]}"
run "$port" "$broker_pid" fan-in --publishers 2 --qos 1 --size 1024 --count 200 "${common[@]}"
run "$port" "$broker_pid" fan-out --subscribers 10 --qos 0 --count 200 "${common[@]}"
run "$port" "$broker_pid" fan-out --subscribers 10 --qos 1 --count 200 "${common[@]}"
run "$port" "$broker_pid" latency --rate 2000 --count 400 --qos 0 "${common[@]}"
run "$port" "$broker_pid" latency --rate 2000 --count 400 --qos 1 "${common[@]}"
run "$port" "$broker_pid" idle --clients 200 --sources 4 "${common[@]}"
run "$port" "$broker_pid" retained --topics 300 "${common[@]}"
run "$port" "$broker_pid" offline --messages 300 --qos 1 "${common[@]}"
run "$port" "$broker_pid" offline --messages 300 --qos 2 "${common[@]}"
run "$port" "$broker_pid" fan-in --publishers 4 --qos 1 --count 500 --persistent 1 "${common[@]}"
# Persistent sessions across a kill -9: fill their queues, kill the broker, restart it on the same data, drain.
run "$port" "$broker_pid" fill --sessions 20 --messages 50 --publishers 4 --id "smoke$$" "${common[@]}"
kill -9 "$broker_pid"
wait "$broker_pid" 2>/dev/null || true
"$BIN/broker" --config "$work/broker.toml" --listen "127.0.0.1:$port" 2>>"$work/broker.log" &
broker_pid=$!
pids+=("$broker_pid")
wait_port "$port"
run "$port" "$broker_pid" drain --sessions 20 --messages 50 --id "smoke$$" "${common[@]}"
run "$relay_port" "$relay_pid" fan-in --publishers 4 --qos 0 --count 500 --label relay

if ! kill -0 "$broker_pid" 2>/dev/null; then
  echo "the broker died during the smoke run:" >&2
  cat "$work/broker.log" >&2
  failed=$((failed + 1))
fi
echo "bench smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
