#!/usr/bin/env bash
# Makes a development PKI in certs/ (or the directory given): a CA, a server certificate for localhost, 127.0.0.1
# and ::1, and a client certificate with CN "device-1" (or $CLIENT_CN). ECDSA P-256, valid 825 days.
#   bash certs/make-dev-certs.sh [DIR]
# Files: ca.pem ca.key server.pem server.key client.pem client.key (all git-ignored). For development only: the
# CA key sits next to the certificates.
set -euo pipefail
dir="${1:-$(dirname "$0")}"
cn="${CLIENT_CN:-device-1}"
days=825
mkdir -p "$dir"
cd "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=MQTT broker development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem

key server.key
openssl req -new -key server.key -subj "/CN=localhost" -out "$tmp/server.csr"
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" > "$tmp/server.ext"
openssl x509 -req -in "$tmp/server.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -CAserial "$tmp/ca.srl" \
  -days "$days" -sha256 -extfile "$tmp/server.ext" -out server.pem 2>/dev/null

key client.key
openssl req -new -key client.key -subj "/CN=$cn" -out "$tmp/client.csr"
printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" > "$tmp/client.ext"
openssl x509 -req -in "$tmp/client.csr" -CA ca.pem -CAkey ca.key -CAserial "$tmp/ca.srl" \
  -days "$days" -sha256 -extfile "$tmp/client.ext" -out client.pem 2>/dev/null

echo "made in $(pwd): ca.pem ca.key server.pem server.key client.pem (CN=$cn) client.key"
