# Shared by the benchmark scripts (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something listens on 127.0.0.1:PORT, checking every 0.1 s up to TRIES times (default 100).
wait_port() {
  for _ in $(seq 1 "${2:-100}"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# Writes to FILE the broker configuration of the metrics-cost benchmarks: the limits of scripts/bench-compare.sh,
# persistence and the HTTP endpoint off, and `http.metrics` set to METRICS (true or false), the only difference.
metrics_bench_config() {
  local file="$1" metrics="$2"
  cat >"$file" <<TOML
[limits]
max_connections = 20000
max_inflight_messages = 64
max_queued_messages = 100000000
max_queued_bytes = 17179869184

[persistence]
enabled = false

[http]
enabled = false
metrics = $metrics

[log]
level = "warn"
TOML
}
