#!/usr/bin/env bash
# Installs what the observability tests (tests/tests/metrics.rs) need, only when it is missing; safe to run
# repeatedly:
#   - python3 with prometheus_client (PyPI: prometheus-client), whose OpenMetrics parser reads /metrics
# Run as root or with sudo available.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  echo "obs-deps: installing python3 python3-pip"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-pip
fi

prom_ok() { python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; }
if ! prom_ok; then
  echo "obs-deps: installing prometheus-client"
  # Debian's system python refuses pip installs (PEP 668) unless told otherwise.
  python3 -m pip install --quiet 'prometheus-client>=0.20,<1' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'prometheus-client>=0.20,<1'
  prom_ok || { echo "obs-deps: prometheus_client still not importable" >&2; exit 1; }
fi
echo "obs-deps: prometheus_client $(python3 -c 'import prometheus_client, importlib.metadata as m; print(m.version("prometheus-client"))')"
