#!/usr/bin/env bash
# Builds the edge-mqtt Debian packages and checks them:
#   - arm64 and armhf from the cross-built release binaries (scripts/cross-build.sh), amd64 from target/debian's
#     host binary: each holds the binary for its architecture, the conffile, the unit, the sysusers entry
#   - systemd-analyze verify accepts the unit, with no warning; systemd-analyze security rates it
#   - the amd64 package installs into a throwaway root (dpkg --root, maintainer scripts run chrootless with
#     DPKG_ROOT): the service user is created, the conffile registered; the installed binary then starts as that
#     user with the installed config (port 0), serves a mosquitto_pub/sub round trip, survives SIGHUP (the unit's
#     ExecReload) and stops on SIGTERM; remove keeps the conffile, purge deletes it and /var/lib/edge-mqtt.
# systemd is not PID 1 here, so `systemctl start` itself is not exercised.
#   bash scripts/deb-test.sh [HOST_BINARY]   (default target/debug/broker)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
fail() { echo "deb-test: FAIL: $*" >&2; exit 1; }
ok() { echo "deb-test: ok: $*"; }

apt_missing=()
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
[ -x /bin/kill ] || apt_missing+=(procps)
command -v setpriv >/dev/null 2>&1 || apt_missing+=(util-linux)
command -v objdump >/dev/null 2>&1 || apt_missing+=(binutils)
command -v xz >/dev/null 2>&1 || apt_missing+=(xz-utils)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "deb-test: installing ${apt_missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

host_bin="${1:-${CARGO_TARGET_DIR:-target}/debug/broker}"
work="$(mktemp -d)"
chmod 0755 "$work"  # the service user must reach the throwaway root inside it
broker_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill -KILL "$broker_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

check_contents() { # deb, ELF machine as `file`/readelf prints it
  local deb="$1" machine="$2" listing
  listing="$(dpkg-deb --contents "$deb")"
  for path in ./usr/bin/edge-mqtt ./etc/edge-mqtt/broker.toml ./lib/systemd/system/edge-mqtt.service \
    ./usr/lib/sysusers.d/edge-mqtt.conf ./usr/share/doc/edge-mqtt/copyright \
    ./usr/share/doc/edge-mqtt/migrating-from-mosquitto.md ./usr/share/doc/edge-mqtt/default.toml; do
    grep -q " $path\$" <<<"$listing" || fail "$deb lacks $path"
  done
  grep -q '^-rwxr-xr-x root/root .* ./usr/bin/edge-mqtt$' <<<"$listing" || fail "$deb: /usr/bin/edge-mqtt mode or owner"
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = "/etc/edge-mqtt/broker.toml" ] || fail "$deb: conffiles"
  local x="$work/x-$(basename "$deb")"
  dpkg-deb -x "$deb" "$x"
  readelf -h "$x/usr/bin/edge-mqtt" | grep -q "Machine: *$machine" || fail "$deb: binary is not $machine"
  ok "$(basename "$deb"): $(stat -c %s "$deb") bytes, $(dpkg-deb -f "$deb" Architecture), $machine binary, conffile, unit, sysusers, docs"
}

for triple in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
  bin="${CARGO_TARGET_DIR:-target}/$triple/release/broker"
  if [ ! -x "$bin" ]; then
    [ "${CI:-}" = "true" ] && fail "$bin is missing (bash scripts/cross-build.sh)"
    echo "deb-test: SKIPPED $triple: $bin is missing (bash scripts/cross-build.sh)"
    continue
  fi
  deb="$(bash scripts/deb-build.sh "$triple" | tail -n 1)"
  case "$triple" in aarch64*) check_contents "$deb" AArch64 ;; *) check_contents "$deb" ARM ;; esac
done
[ -x "$host_bin" ] || fail "$host_bin is missing (cargo build -p broker)"
deb="$(bash scripts/deb-build.sh --binary "$host_bin" amd64 | tail -n 1)"
check_contents "$deb" "Advanced Micro Devices X86-64"

# A throwaway root with an empty dpkg database, the systemd targets and /bin/kill the unit refers to.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
ln -s usr/bin "$root/bin"
cp /usr/bin/kill "$root/usr/bin/"
cp -a /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null -i "$deb" >"$work/dpkg.log" 2>&1 \
  || { cat "$work/dpkg.log"; fail "dpkg -i into the throwaway root"; }
[ "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' edge-mqtt)" = "install ok installed" ] \
  || fail "edge-mqtt is not installed in the throwaway root"
dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Conffiles}' edge-mqtt | grep -q '/etc/edge-mqtt/broker.toml [0-9a-f]' \
  || fail "the conffile is not registered"
user_line="$(grep '^edge-mqtt:' "$root/etc/passwd")" || fail "postinst created no edge-mqtt user"
uid="$(cut -d: -f3 <<<"$user_line")"; gid="$(cut -d: -f4 <<<"$user_line")"
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || fail "edge-mqtt is not a system user: $user_line"
ok "installed into a throwaway root: user $user_line, conffile registered"

verify="$(systemd-analyze verify --root="$root" edge-mqtt.service 2>&1)" || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
ok "systemd-analyze verify accepts edge-mqtt.service"
exposure="$(systemd-analyze security --offline=yes --root="$root" edge-mqtt.service 2>/dev/null | grep 'Overall exposure')" \
  || fail "systemd-analyze security"
grep -Eq 'level .*: [0-9.]+ (SAFE|OK)' <<<"$exposure" || fail "the unit is not hardened: $exposure"
ok "systemd-analyze security: ${exposure#→ }"

# Start the installed binary the way the unit does: as the service user, in its state directory, with the
# installed config (on a free port instead of 1883).
state="$root/var/lib/edge-mqtt"
install -d -o "$uid" -g "$gid" -m 0750 "$state"
(cd "$state" && exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --no-new-privs \
  env NO_COLOR=1 "$root/usr/bin/edge-mqtt" --config "$root/etc/edge-mqtt/broker.toml" --port 0) 2>"$work/broker.log" &
broker_pid=$!
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*listening addr=127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/broker.log" | head -n 1)"
  [ -n "$port" ] && break
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log"; fail "the installed broker exited"; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/broker.log"; fail "the installed broker did not listen within 10 s"; }
[ "$(stat -c %u "/proc/$broker_pid")" = "$uid" ] || fail "the broker does not run as edge-mqtt"
timeout 20 mosquitto_sub -h 127.0.0.1 -p "$port" -t deb/test -C 1 -W 15 >"$work/sub.out" &
sub_pid=$!
# The subscriber may not be subscribed yet: publish retained, so it gets the message either way.
timeout 20 mosquitto_pub -h 127.0.0.1 -p "$port" -t deb/test -m "from the package" -r -q 1
wait "$sub_pid" || fail "mosquitto_sub got nothing from the installed broker"
[ "$(cat "$work/sub.out")" = "from the package" ] || fail "mosquitto_sub got: $(cat "$work/sub.out")"
kill -HUP "$broker_pid"
for _ in $(seq 1 100); do grep -q 'SIGHUP' "$work/broker.log" && break; sleep 0.1; done
grep -q 'SIGHUP' "$work/broker.log" || { cat "$work/broker.log"; fail "the broker did not log the SIGHUP (ExecReload)"; }
kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log"; fail "SIGHUP (ExecReload) stopped the broker"; }
kill -TERM "$broker_pid"
for _ in $(seq 1 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$broker_pid" 2>/dev/null && fail "the broker did not stop within 10 s of SIGTERM"
wait "$broker_pid" || { cat "$work/broker.log"; fail "the broker exited with an error on SIGTERM"; }
broker_pid=""
ok "the installed broker ran as edge-mqtt, served a round trip on port $port, took SIGHUP, stopped on SIGTERM"

dpkg --root="$root" --force-script-chrootless --log=/dev/null -r edge-mqtt >/dev/null 2>&1 || fail "dpkg -r"
[ -f "$root/etc/edge-mqtt/broker.toml" ] || fail "remove deleted the conffile"
[ ! -e "$root/usr/bin/edge-mqtt" ] || fail "remove kept the binary"
dpkg --root="$root" --force-script-chrootless --log=/dev/null -P edge-mqtt >/dev/null 2>&1 || fail "dpkg -P"
[ ! -e "$root/etc/edge-mqtt/broker.toml" ] || fail "purge kept the conffile"
[ ! -e "$state" ] || fail "purge kept /var/lib/edge-mqtt"
ok "remove keeps the conffile; purge deletes it and /var/lib/edge-mqtt"
