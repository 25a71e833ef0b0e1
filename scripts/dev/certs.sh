#!/usr/bin/env bash
# The one certificate maker of the local runs and tests: a local CA, and a certificate for
# localhost that it signs, laid out as an operator's certs/ folder (what nginx reads).
set -euo pipefail

usage() {
  cat <<USAGE
Usage: scripts/dev/certs.sh DIR SUBJECT_ALT_NAMES [CA_DIR]

Writes DIR/fullchain.pem and DIR/privkey.pem: a certificate for CN=localhost with
SUBJECT_ALT_NAMES (e.g. DNS:localhost,IP:127.0.0.1), signed by the CA in CA_DIR (default DIR):
CA_DIR/ca.pem and ca.key, made first when missing, so a second call renews the certificate
under the same CA (clients keep trusting CA_DIR/ca.pem). DIR/ext keeps the extensions used.
Settings (environment, defaults shown):
  CERT_DAYS=${CERT_DAYS:-2}     how long the certificate (and a new CA) is valid
USAGE
}
[[ "${1:-}" == "-h" || "${1:-}" == "--help" || $# -lt 2 ]] && { usage; exit 0; }

dir=$1
names=$2
ca_dir=${3:-$1}
days=${CERT_DAYS:-2}
mkdir -p "$dir" "$ca_dir"
if [[ ! -s "$ca_dir/ca.pem" || ! -s "$ca_dir/ca.key" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=webhook local test CA" \
    -keyout "$ca_dir/ca.key" -out "$ca_dir/ca.pem" 2>/dev/null
fi
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$dir/privkey.pem" -out "$dir/cert.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$names" >"$dir/ext"
openssl x509 -req -in "$dir/cert.csr" -CA "$ca_dir/ca.pem" -CAkey "$ca_dir/ca.key" \
  -CAcreateserial -days "$days" -extfile "$dir/ext" -out "$dir/fullchain.pem" 2>/dev/null
rm -f "$dir/cert.csr"
# nginx's workers (not root) read the key in the containers.
chmod 644 "$dir/privkey.pem"
