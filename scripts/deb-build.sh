#!/usr/bin/env bash
# Builds the edge-mqtt Debian package with dpkg-deb from an already built `broker` binary (no cargo-deb: see
# docs/packaging.md for why), and prints the .deb's path on its last line.
#   bash scripts/deb-build.sh aarch64-unknown-linux-gnu          # target/<triple>/release/broker (cross-build.sh)
#   bash scripts/deb-build.sh --binary target/debug/broker amd64  # any binary, for a given Debian architecture
# Output: target/debian/edge-mqtt_<version>_<arch>.deb. Layout and maintainer scripts: packaging/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
if [ "${1:-}" = "--binary" ]; then
  bin="$2"; arch="$3"; tools=""
else
  triple="${1:?usage: deb-build.sh TRIPLE | --binary PATH ARCH}"
  bin="$target_dir/$triple/release/broker"
  case "$triple" in
    x86_64-unknown-linux-gnu) arch=amd64; tools="" ;;
    aarch64-unknown-linux-gnu) arch=arm64; tools=aarch64-linux-gnu- ;;
    armv7-unknown-linux-gnueabihf) arch=armhf; tools=arm-linux-gnueabihf- ;;
    *) echo "deb-build: no Debian architecture for $triple" >&2; exit 2 ;;
  esac
fi
[ -x "$bin" ] || { echo "deb-build: $bin is missing; build it first" >&2; exit 1; }
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
name=edge-mqtt
# The newest glibc symbol version the binary needs is the package's libc6 dependency.
glibc="$("${tools}objdump" -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
src=packaging/debian
chmod 0755 "$root"
# Stripped here too, for binaries built without the release profile (the release build already is).
install -D -m 0755 "$bin" "$root/usr/bin/$name"
"${tools}objcopy" --strip-all "$root/usr/bin/$name"
install -D -m 0644 "$src/broker.toml" "$root/etc/$name/broker.toml"
install -D -m 0644 "$src/$name.service" "$root/lib/systemd/system/$name.service"
install -D -m 0644 "$src/sysusers.conf" "$root/usr/lib/sysusers.d/$name.conf"
doc="$root/usr/share/doc/$name"
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 docs/migrating-from-mosquitto.md "$doc/migrating-from-mosquitto.md"
install -D -m 0644 docs/configuration.md "$doc/configuration.md"
install -D -m 0644 broker/config/default.toml "$doc/default.toml"
install -D -m 0644 "$src/copyright" "$doc/copyright"
install -d -m 0755 "$root/DEBIAN"
install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
echo "/etc/$name/broker.toml" > "$root/DEBIAN/conffiles"
installed_kb="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: $arch
Maintainer: edge-mqtt developers <edge-mqtt@users.noreply.invalid>
Installed-Size: $installed_kb
Depends: libc6 (>= $glibc), libgcc-s1, procps
Recommends: systemd
Suggests: mosquitto-clients
Section: net
Priority: optional
Description: MQTT 3.1/3.1.1/5.0 broker for IoT gateways
 An MQTT broker for constrained devices and IoT gateways: MQTT 3.1, 3.1.1 and
 5.0 on one port, TLS with client certificates, WebSockets, small memory per
 device. Runs as the hardened systemd service edge-mqtt; configuration in
 /etc/edge-mqtt/broker.toml, data in /var/lib/edge-mqtt. The command
 "edge-mqtt migrate-config /etc/mosquitto/mosquitto.conf" translates a
 Mosquitto configuration.
CONTROL
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
mkdir -p "$target_dir/debian"
out="$target_dir/debian/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "deb-build: $(stat -c %s "$out") bytes, needs glibc >= $glibc"
echo "$out"
