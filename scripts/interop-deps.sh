#!/usr/bin/env bash
# Installs what the interop tests (tests/tests/interop.rs) need, only when it is missing; safe to run repeatedly.
#   - mosquitto_pub / mosquitto_sub (Debian: mosquitto-clients) and the mosquitto broker and mosquitto_passwd
#     (Debian: mosquitto; tests/tests/auth.rs reads the password files it writes)
#   - stdbuf (coreutils; present on any Debian)
#   - python3 with paho-mqtt 2.x (PyPI: paho-mqtt>=2,<3)
# Run as root or with sudo available.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_missing=()
command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1 || apt_missing+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_missing+=(mosquitto)
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || apt_missing+=(python3 python3-pip)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "interop-deps: installing ${apt_missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

paho_ok() {
  python3 -c 'import sys, paho.mqtt; sys.exit(0 if int(paho.mqtt.__version__.split(".")[0]) >= 2 else 1)' 2>/dev/null
}
if ! paho_ok; then
  echo "interop-deps: installing paho-mqtt 2.x"
  # Debian's system python refuses pip installs (PEP 668) unless told otherwise.
  python3 -m pip install --quiet 'paho-mqtt>=2,<3' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'paho-mqtt>=2,<3'
  paho_ok || { echo "interop-deps: paho-mqtt 2.x still not importable" >&2; exit 1; }
fi
echo "interop-deps: mosquitto_pub $(command -v mosquitto_pub), paho-mqtt $(python3 -c 'import paho.mqtt; print(paho.mqtt.__version__)')"
