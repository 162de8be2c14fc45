#!/bin/sh
# Installs what roomcast needs on Debian 12, and nothing that is already there.
#   scripts/deps.sh build   compiler, make, the OpenSSL, zlib, ZeroMQ and hiredis headers
#   scripts/deps.sh test    build + clang/libFuzzer, Python websockets/pytest, node + npm ws,
#                           chromium + npm playwright-core (browser test), netcat-openbsd (nc),
#                           pip/venv/setuptools/wheel (the Python client's install test),
#                           redis-server (the cluster tests start private ones)
# Idempotent and quick when everything is present: it only asks dpkg what is missing.
set -eu
what=${1:-build}

pkgs="gcc make libc6-dev libssl-dev zlib1g-dev libzmq3-dev libhiredis-dev"
if [ "$what" = test ] || [ "$what" = bench ]; then
    pkgs="$pkgs clang libclang-rt-14-dev python3 python3-websockets python3-pytest python3-zmq curl"
    # NetSync's own Python clients (tests/netsync/test_reference_clients.py) import these
    pkgs="$pkgs python3-loguru python3-msgpack python3-psutil python3-fastapi python3-uvicorn"
    command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
    command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
fi
# The browser test drives Debian's chromium (never a downloaded one) with npm playwright-core.
if [ "$what" = test ]; then pkgs="$pkgs chromium"; fi
# The TLS tests and benchmarks make their certificates with the openssl command.
if [ "$what" = test ] || [ "$what" = bench ]; then pkgs="$pkgs openssl"; fi
# nc (netcat-openbsd) is a client of the raw TCP port in tests/integration/test_tcp.py.
if [ "$what" = test ]; then pkgs="$pkgs netcat-openbsd"; fi
# tests/integration/test_auth.py signs RS256/ES256 tokens with PyJWT over generated keys.
if [ "$what" = test ]; then pkgs="$pkgs python3-jwt python3-cryptography"; fi
# tests/cluster/ and the unit tests of src/cluster/ start private redis-servers (never the
# system one: the package's service is not needed and may stay stopped).
if [ "$what" = test ]; then pkgs="$pkgs redis-server"; fi
# tests/python_client/test_install.py installs clients/python offline into a venv.
if [ "$what" = test ]; then pkgs="$pkgs python3-pip python3-venv python3-setuptools python3-wheel"; fi

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "deps: installing$missing"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    $sudo apt-get install -y -q --no-install-recommends $missing >/dev/null
fi

# npm packages for the node test clients, from the lock file, only when it changed.
install_npm() {
    dir=$1
    [ -f "$dir/package.json" ] || return 0
    stamp="$dir/node_modules/.roomcast-stamp"
    if [ ! -f "$stamp" ] || [ "$dir/package-lock.json" -nt "$stamp" ]; then
        echo "deps: npm ci in $dir"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        touch "$stamp"
    fi
}
if [ "$what" = test ]; then install_npm tests/node; fi
if [ "$what" = test ]; then install_npm tests/browser; fi
if [ "$what" = bench ]; then install_npm bench/peers; fi
exit 0
