#!/usr/bin/env bash
# bench/tls_certs.sh DIR — the certificates the TLS benchmarks use, made with the `openssl`
# command: a CA (ca.pem) and two server certificates for 127.0.0.1 signed by it, one with an
# RSA-2048 key (rsa.pem, rsa.key), one with an ECDSA P-256 key (ec.pem, ec.key).
set -euo pipefail
dir=${1:?usage: bench/tls_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=bench-ca
q openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj /CN=bench-rsa \
    -addext subjectAltName=IP:127.0.0.1
q openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out rsa.pem -days 30 \
    -copy_extensions copy
q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key
q openssl req -new -key ec.key -out ec.csr -subj /CN=bench-ec -addext subjectAltName=IP:127.0.0.1
q openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ec.pem -days 30 \
    -copy_extensions copy
echo "$dir: ca.pem, rsa.pem/rsa.key (RSA-2048), ec.pem/ec.key (ECDSA P-256)"
