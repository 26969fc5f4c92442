#!/usr/bin/env bash
# Regenerates sink-dingtalk/link-order.txt: the functions the release sink
# runs, in the order the linker is to lay them out (build.rs passes the file
# to lld as --symbol-ordering-file). First every function run from exec
# until the sink has been ready and idle for two seconds, then those the
# first events run (HTTP structured, binary and batch, gRPC, a /metrics
# scrape, the shutdown). Start-up code then shares a few MiB of pages instead
# of being spread over the whole 8 MiB of code, each page it touches mapping
# the pages around it: see docs/development.md#footprint.
#
# Run it after a toolchain or dependency update (symbol names change with
# them) or when BENCHMARKS.md's idle RSS goes up. Needs valgrind (Debian
# package) and python3; takes about five minutes, most of it the two builds.
# It leaves target/release/sink-dingtalk unstripped: `make build` relinks it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null 2>&1 || { echo "link-order: valgrind missing; install it: apt-get install -y valgrind" >&2; exit 1; }

cargo build --release -p bench
# The same units as `make build` (so the same symbol names), only the final
# link keeps its symbol table for callgrind to name the functions.
cargo rustc --release -p sink-dingtalk --bin sink-dingtalk -- -C strip=none

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http=$(free_port)
grpc=$(free_port)

target/release/bench blackhole >"$work/blackhole.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q http "$work/blackhole.out" && break; sleep 0.1; done
webhook=$(grep -o 'http://[^ ]*' "$work/blackhole.out" | head -1 || true)
[ -n "$webhook" ] || { echo "link-order: the blackhole did not start: $(cat "$work/blackhole.out")" >&2; exit 1; }

cat >"$work/config.yml" <<EOF
port: $http
grpc_port: $grpc
bind: 127.0.0.1
store:
  path: "$work/store"
bot:
  webhooks:
    - chat_group: bench
      url: "$webhook"
      paced: false
EOF

# At the default log level, so the start-up's own log lines are laid out
# with the rest of start-up.
(cd "$work" && CONNECTOR_CONFIG="$work/config.yml" exec valgrind --tool=callgrind \
    --callgrind-out-file="$work/callgrind.out" --compress-strings=no --compress-pos=no \
    --dump-line=no --demangle=no "$OLDPWD/target/release/sink-dingtalk" 2>"$work/valgrind.log") &
sink=$!
pids+=("$sink")
ready=""
for _ in $(seq 600); do
    if curl -sf "http://127.0.0.1:$http/readyz" >/dev/null; then ready=yes; break; fi
    sleep 0.1
done
[ -n "$ready" ] || { echo "link-order: the sink did not get ready under valgrind: $(tail -5 "$work/valgrind.log")" >&2; exit 1; }
sleep 2
# Dump 1: start-up and idle.
callgrind_control -d "$sink" >/dev/null
for scenario in structured binary batch; do
    target/release/bench load --scenario "$scenario" --http "127.0.0.1:$http" --concurrency 2 --events 200 >/dev/null
done
target/release/bench load --scenario grpc --http "127.0.0.1:$http" --grpc "127.0.0.1:$grpc" --concurrency 2 --events 200 >/dev/null
curl -sf "http://127.0.0.1:$http/metrics" >/dev/null
kill -TERM "$sink"
wait "$sink" || true

# Each dump names the functions that ran in it ("fn=" under the binary's
# "ob="); a function keeps its place in the first dump that ran it.
# Into a temporary file first: a failure leaves the list as it was.
python3 - "$(rustc -V)" "$work/callgrind.out.1" "$work/callgrind.out" >"$work/link-order.txt" <<'EOF'
import re
import sys

print("# Written by scripts/link-order.sh: the functions of the release sink in the order")
print("# lld lays them out (start-up and idle first, then the first events). Regenerate")
print("# it after a toolchain or dependency update; names it no longer finds are skipped.")
print("# Written with: " + sys.argv[1])
seen = set()
for dump in sys.argv[2:]:
    in_binary = False
    for line in open(dump, errors="replace"):
        if line.startswith("ob="):
            in_binary = line.rstrip().endswith("/sink-dingtalk")
        elif line.startswith("fn=") and in_binary:
            # Callgrind tells a recursive call's levels apart as name'2.
            name = re.sub(r"'[0-9]+$", "", line[3:].strip())
            # Valgrind's name for what runs before main, not a symbol.
            if name.startswith("("):
                continue
            if name not in seen:
                seen.add(name)
                print(name)
EOF
mv "$work/link-order.txt" sink-dingtalk/link-order.txt
echo "link-order: $(grep -vc '^#' sink-dingtalk/link-order.txt) functions in sink-dingtalk/link-order.txt; now make build"
