#!/usr/bin/env bash
# `make demo`: runs sink-dingtalk against a local fake DingTalk, sends the
# README's example CloudEvents, and shows what DingTalk would have received.
#
# Needs only cargo and curl. Uses ports 9000 (fake DingTalk), 31080 (sink
# HTTP) and 31081 (sink gRPC) on 127.0.0.1; see config/demo.yml.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FAKE_ADDR=127.0.0.1:9000
SINK=http://127.0.0.1:31080
CONFIG=config/demo.yml

# shellcheck source=scripts/common.sh
. scripts/common.sh
require_tools demo "" cargo curl
require_free_ports demo 9000 31080 31081
build_release

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sink-dingtalk-demo.XXXXXX")
FAKE_PID=""
SINK_PID=""

cleanup() {
    local pid
    for pid in "$SINK_PID" "$FAKE_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
    echo "--- fake-dingtalk stderr ---" >&2
    cat "$WORK/fake.err" >&2 || true
    echo "--- sink-dingtalk log ---" >&2
    cat "$WORK/sink.log" >&2 || true
}

echo "==> Starting the fake DingTalk on $FAKE_ADDR (robots demo-token-1 signed, demo-token-2 unsigned)"
target/release/fake-dingtalk --listen "$FAKE_ADDR" \
    --robot demo-token-1:SECdemo1 --robot demo-token-2 \
    >"$WORK/fake.out" 2>"$WORK/fake.err" &
FAKE_PID=$!

echo "==> Starting sink-dingtalk with $CONFIG (HTTP :31080, gRPC :31081, store in a temporary directory)"
CONNECTOR_CONFIG="$CONFIG" CONNECTOR_STORE__PATH="$WORK/store" \
    target/release/sink-dingtalk >"$WORK/sink.log" 2>&1 &
SINK_PID=$!

# Wait up to ~10 s for both to come up.
ready=""
for _ in $(seq 1 100); do
    if ! kill -0 "$FAKE_PID" 2>/dev/null || ! kill -0 "$SINK_PID" 2>/dev/null; then
        break
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/9000") 2>/dev/null &&
        curl -fsS -o /dev/null --max-time 1 "$SINK/readyz" 2>/dev/null; then
        ready=yes
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "demo: the fake DingTalk or the sink did not start" >&2
    show_logs
    exit 1
fi
echo

# post NAME CONTENT-TYPE BODY: sends one request, prints its status, and
# leaves the answer's body in $WORK/answer.
post() {
    local name=$1 content_type=$2 body=$3 status
    status=$(curl -sS --max-time 10 -o "$WORK/answer" -w '%{http_code}' \
        -X POST "$SINK" -H "Content-Type: $content_type" --data-raw "$body")
    printf '  %-12s -> HTTP %s\n' "$name" "$status"
    LAST_STATUS=$status
}

CE=application/cloudevents+json
ID=53d1c340-551a-11ed-96c7-8b504d95037c
failed=0

echo "==> Sending the README's five example events (structured mode) to $SINK"

# The original README's curl bodies, byte for byte (the end-to-end tests
# check what these deliver, field by field).
# Spaced a little: five at once would be the start of a storm (more than
# digest.burst within digest.linger_ms), and the last two would wait for a
# digest instead of arriving as their own message types.
for msgtype in text link markdown actionCard feedCard; do
    post "$msgtype" "$CE" "$(cat "config/examples/$msgtype.json")"
    [ "$LAST_STATUS" = 200 ] || failed=1
    sleep 0.6
done

echo
echo "==> Sending an invalid event (xvmsgtype \"image\"): a Vanus trigger dead-letters a 400"
post image "$CE" '{
    "id": "'"$ID"'-6",
    "source": "sink-dingtalk-quickstart",
    "specversion": "1.0",
    "type": "quickstart",
    "datacontenttype": "text/plain",
    "xvmsgtype": "image",
    "data": "not a DingTalk message type"
}'
printf '  reason: %s\n' "$(cat "$WORK/answer")"
[ "$LAST_STATUS" = 400 ] || failed=1

echo
echo "==> An alert storm: 30 alerts for chat group bot2 in one batch (its robot may post 20 a minute)"
alerts=""
for i in $(seq 1 30); do
    alerts="$alerts${alerts:+,}"'{"id":"storm-'"$i"'","source":"alertmanager","specversion":"1.0","type":"alert","time":"2026-11-21T01:14:'"$(printf '%02d' "$i")"'Z","datacontenttype":"text/plain","xvchatgroup":"bot2","data":"[FIRING] DiskFull on db-'"$i"': /var/lib is 97% full"}'
done
post storm application/cloudevents-batch+json "[$alerts]"
[ "$LAST_STATUS" = 200 ] || failed=1
echo "  a storm: the first 3 go out on their own; the rest wait in bot2's outbox and leave as one digest..."
for _ in $(seq 1 50); do
    grep -q '"markdown"' <(grep demo-token-2 "$WORK/fake.out") && break
    sleep 0.1
done

echo
echo "What DingTalk received:"
sed 's/^/  /' "$WORK/fake.out"

echo
echo "The digest, as the group reads it:"
grep '^\[demo-token-2\] markdown: ' "$WORK/fake.out" | head -1 |
    sed 's/^\[demo-token-2\] markdown: //' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["markdown"]["text"])' 2>/dev/null |
    sed 's/^/  | /' || echo "  (python3 is needed to pretty-print it; the JSON is above)"

if [ "$failed" != 0 ]; then
    echo
    echo "demo: some answers were not what the README promises" >&2
    show_logs
    exit 1
fi
