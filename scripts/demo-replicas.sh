#!/usr/bin/env bash
# `make demo-replicas`: three sink-dingtalk replicas sharing one robot through
# Redis, a storm of alerts spread over them, one replica killed with SIGKILL
# halfway, and what DingTalk received.
#
# Needs cargo, curl and redis-server (Debian: apt-get install -y redis-server).
# Uses 127.0.0.1 ports 9100 (fake DingTalk), 31379 (Redis) and 31180-31182
# (the sinks).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FAKE_PORT=9100
REDIS_PORT=31379
SINK_PORTS=(31180 31181 31182)
ALERTS=60

# shellcheck source=scripts/common.sh
. scripts/common.sh
require_tools demo-replicas "redis-server: apt-get install -y redis-server" cargo curl redis-server
require_free_ports demo-replicas "$FAKE_PORT" "$REDIS_PORT" "${SINK_PORTS[@]}"
build_release

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sink-dingtalk-replicas.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() { # wait_for PORT WHAT: up to ~10 s for PORT to accept a connection
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo-replicas: $2 did not start" >&2
    exit 1
}

wait_ready() { # wait_ready PORT: up to ~10 s for the sink on PORT to answer /readyz 200
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "demo-replicas: the sink on port $1 did not get ready; its log:" >&2
    cat "$WORK/sink-$1.log" >&2 || true
    exit 1
}

echo "==> Starting Redis on 127.0.0.1:$REDIS_PORT, and the fake DingTalk (one robot, 20 a minute)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_for "$REDIS_PORT" "redis-server"
target/release/fake-dingtalk --listen "127.0.0.1:$FAKE_PORT" --robot demo-token \
    >"$WORK/fake.out" 2>"$WORK/fake.err" &
PIDS+=($!)
wait_for "$FAKE_PORT" "the fake DingTalk"

cat >"$WORK/config.yml" <<YAML
bind: 127.0.0.1
store:
  redis:
    url: "redis://127.0.0.1:$REDIS_PORT/0"
bot:
  webhooks:
    - chat_group: ops
      url: "http://127.0.0.1:$FAKE_PORT/robot/send?access_token=demo-token"
YAML

SINK_PIDS=()
for port in "${SINK_PORTS[@]}"; do
    CONNECTOR_CONFIG="$WORK/config.yml" CONNECTOR_PORT="$port" \
        target/release/sink-dingtalk >"$WORK/sink-$port.log" 2>&1 &
    SINK_PIDS+=($!)
    PIDS+=($!)
done
for port in "${SINK_PORTS[@]}"; do
    wait_ready "$port"
done
echo "==> Three replicas on ports ${SINK_PORTS[*]}, sharing the robot's budget through Redis"

# send I: the alert to its replica; on failure to the next, as a trigger
# behind a Service would retry.
send() {
    local i=$1 attempt port status
    for attempt in 0 1 2; do
        port=${LIVE[$(((i + attempt) % ${#LIVE[@]}))]}
        status=$(curl -sS --max-time 6 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port" \
            -H 'Content-Type: application/cloudevents+json' \
            --data-raw '{"specversion":"1.0","id":"alert-'"$i"'","source":"alertmanager","type":"alert","datacontenttype":"text/plain","data":"alert#'"$(printf '%02d' "$i")"' disk full on db-'"$((i % 7))"'"}' \
            2>/dev/null) || status=000
        [ "$status" = 200 ] && return 0
        sleep 1
    done
    echo "  alert $i was not accepted" >&2
}

# storm FIRST LAST: sends those alerts at once and waits for their answers.
storm() {
    local i sends=()
    for i in $(seq "$1" "$2"); do
        send "$i" &
        sends+=($!)
    done
    wait "${sends[@]}" 2>/dev/null || true
}

LIVE=("${SINK_PORTS[@]}")
echo "==> $((ALERTS / 2)) alerts at once, spread over the three"
storm 1 $((ALERTS / 2))
echo "==> SIGKILL to the replica on ${SINK_PORTS[1]}"
kill -KILL "${SINK_PIDS[1]}"
LIVE=("${SINK_PORTS[0]}" "${SINK_PORTS[2]}")
echo "==> $((ALERTS / 2)) more, spread over the two left"
storm $((ALERTS / 2 + 1)) "$ALERTS"

echo "==> Waiting for every alert to reach the group (a replica that dies holding the outbox's lease"
echo "    hands it over within 15 s)"
shown=0
for _ in $(seq 1 300); do
    shown=0
    for i in $(seq 1 "$ALERTS"); do
        grep -qE "alert#$(printf '%02d' "$i")([^0-9]|$)" "$WORK/fake.out" && shown=$((shown + 1))
    done
    [ "$shown" = "$ALERTS" ] && break
    sleep 0.2
done

echo
echo "What DingTalk received:"
sed 's/^/  /' "$WORK/fake.out"
echo
posts=$(grep -c '^\[demo-token\] ' "$WORK/fake.out" || true)
twice=0
for i in $(seq 1 "$ALERTS"); do
    n=$(grep -oE "alert#$(printf '%02d' "$i")([^0-9]|$)" "$WORK/fake.out" | wc -l)
    [ "$n" -gt 1 ] && twice=$((twice + 1))
done
throttled=$(grep -c 'errcode=410100' "$WORK/fake.out" || true)
echo "$shown of $ALERTS alerts shown, $twice twice, in $posts posts; DingTalk throttled $throttled."
[ "$shown" = "$ALERTS" ] && [ "$twice" = 0 ] && [ "$throttled" = 0 ]
