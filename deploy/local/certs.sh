#!/usr/bin/env bash
# Generates the TLS material of the local TLS stacks (Kafka over TLS and
# mutual TLS, Redis over TLS) with openssl, into a directory:
#
#   certs.sh [DIR]        DIR defaults to $IDSYNC_RUN_DIR/certs
#
#   ca.pem                the test CA's certificate (what clients trust)
#   ca.key                its key (kept so tests can issue more)
#   server.pem server.key a server certificate for 127.0.0.1 and localhost
#   client.pem client.key a client certificate (CN=idsync) for mutual TLS
#   server-bundle.pem     server.key then server.pem (Kafka's PEM keystore)
#   client-bundle.pem     client.key then client.pem
#
# Keys are unencrypted PKCS#8 (what Kafka's PEM keystores and redis-server
# read), certificates are valid for 30 days. The script does nothing when DIR
# already holds a CA that is valid for at least another day, so every stack
# started from one run directory shares one CA.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir="${1:-$IDSYNC_RUN_DIR/certs}"
command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl)"

if [[ -f "$dir/ca.pem" && -f "$dir/client-bundle.pem" ]] &&
	openssl x509 -checkend 86400 -noout -in "$dir/ca.pem" >/dev/null 2>&1; then
	exit 0
fi

mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.gen.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# key FILE: a new P-256 key as unencrypted PKCS#8.
key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

key "$tmp/ca.key"
openssl req -x509 -new -key "$tmp/ca.key" -days 30 -subj "/CN=idsync local test CA" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out "$tmp/ca.pem" 2>/dev/null

# issue NAME CN EXT: a certificate signed by the CA.
issue() {
	local name="$1" cn="$2" ext="$3"
	key "$tmp/$name.key"
	openssl req -new -key "$tmp/$name.key" -subj "/CN=$cn" -out "$tmp/$name.csr" 2>/dev/null
	printf '%s\n' "$ext" >"$tmp/$name.ext"
	openssl x509 -req -in "$tmp/$name.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
		-days 30 -extfile "$tmp/$name.ext" -out "$tmp/$name.pem" 2>/dev/null
	cat "$tmp/$name.key" "$tmp/$name.pem" >"$tmp/$name-bundle.pem"
	rm -f "$tmp/$name.csr" "$tmp/$name.ext"
}

issue server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
keyUsage=critical,digitalSignature"
issue client idsync "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"

chmod 600 "$tmp"/*.key "$tmp"/*-bundle.pem
rm -f "$tmp/ca.srl"
mv -f "$tmp"/* "$dir"/
log "TLS material in $dir (CA, server and client certificates)"
