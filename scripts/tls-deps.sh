#!/usr/bin/env bash
# Installs what the TLS, WebSocket, browser and dashboard tests (tests/tests/{tls,ws,browser,dashboard}.rs) need,
# only when missing;
# safe to run repeatedly:
#   - openssl (s_client for the TLS version and ALPN checks)
#   - chromium (Debian's, headless, for tests/tests/browser.rs), node and npm
#   - the npm packages of tests/browser (mqtt, playwright-core) from its package-lock.json
# mosquitto clients and paho-mqtt come from scripts/interop-deps.sh. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_missing=()
command -v openssl >/dev/null 2>&1 || apt_missing+=(openssl)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_missing+=(chromium)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "tls-deps: installing ${apt_missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

if [ ! -f tests/browser/node_modules/mqtt/dist/mqtt.min.js ] || [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  echo "tls-deps: installing the npm packages of tests/browser"
  # playwright-core never downloads a browser; the test drives Debian's chromium.
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
echo "tls-deps: $(openssl version), $("${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null || echo chromium?), node $(node --version)"
