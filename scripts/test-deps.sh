#!/usr/bin/env bash
# What `make test` and `make bench` need beyond cargo, installed when a
# fresh machine lacks it: redis-server, which the tests of the shared store
# (and the bench's replicas row) start on a free loopback port. Through
# apt-get as root or with sudo; otherwise it says what to install and the
# tests that need it explain themselves.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "test-deps: ${missing[*]} missing and no apt-get here; install ${missing[*]} (Redis 7) by hand" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "test-deps: ${missing[*]} missing; install it: sudo apt-get install -y ${missing[*]}" >&2
    exit 0
fi
echo "test-deps: installing ${missing[*]} (apt-get)"
# Quiet, but a failure shows apt's own words.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a system-wide server on 6379; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    "${sudo[@]}" systemctl stop redis-server || true
fi
