#!/usr/bin/env bash
# What the ACL costs the broker per message (docs/security.md): mqtt-bench fan-in, QoS 0, against a release broker
# with no ACL, an ACL whose subscription is wholly readable, and one whose subscription is partly readable.
#   cargo build --release -p broker -p bench && bash bench/acl-cost.sh [rounds]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
B="$root/target/release/broker"
M="$root/target/release/mqtt-bench"
D="$(mktemp -d)"
trap 'rm -rf "$D"' EXIT
printf 'topic readwrite #\n' > "$D/acl-all"
printf 'topic readwrite #\ntopic deny +/in/never-published\n' > "$D/acl-partial"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for round in $(seq 1 "${1:-5}"); do
  for mode in none all partial; do
    port="$(free_port)"
    extra=""
    [ "$mode" != none ] && extra="acl_file = \"$D/acl-$mode\""
    printf '[[listeners]]\nbind = "127.0.0.1:%s"\n%s\n[limits]\nmax_queued_messages = 100000000\nmax_queued_bytes = 17179869184\n[log]\nlevel = "warn"\n' \
      "$port" "$extra" > "$D/$mode.toml"
    "$B" --config "$D/$mode.toml" 2>"$D/$mode.log" &
    pid=$!
    # Until it accepts connections (at most 5 s).
    python3 -c 'import socket,sys,time
for _ in range(50):
    try: socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close(); break
    except OSError: time.sleep(0.1)' "$port"
    "$M" fan-in --host "127.0.0.1:$port" --qos 0 --count 100000 --publishers 10 --broker-pid "$pid" --label "$mode" 2>&1 \
      | grep '^{' | python3 -c "import sys,json; d=json.loads(sys.stdin.read()); print('$round', '$mode', 'rate', round(d['metrics']['rate']), 'broker_cpu_s', d['broker_cpu_s'], 'lost', d['lost'], 'dup', d['duplicated'], 'reordered', d['reordered'])"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
