# Set-up shared by scripts/demo.sh and scripts/demo-replicas.sh; sourced, not
# run. Each function takes the calling script's name first, for its messages.

# Cargo installed by rustup but not on PATH (a fresh shell): load its env.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# require_tools NAME HINT TOOL...: exits unless every TOOL is on PATH; HINT
# (may be empty) follows the message.
require_tools() {
    local name=$1 hint=$2 tool
    shift 2
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "$name: $tool is required${hint:+ ($hint)}" >&2
            exit 1
        }
    done
}

# require_free_ports NAME PORT...: a port that already accepts connections on
# 127.0.0.1 belongs to something else, and the demo would talk to the wrong
# process.
require_free_ports() {
    local name=$1 port
    shift
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$name: port $port is already in use; stop whatever listens there and retry" >&2
            exit 1
        fi
    done
}

# build_release: target/release/sink-dingtalk and fake-dingtalk. Two cargo
# calls: built together, feature unification would compile connector-sdk's
# `testing` feature (the fake's package needs it) into the sink, a binary
# other than the one `make build` and the Dockerfile produce.
build_release() {
    echo "==> Building sink-dingtalk and fake-dingtalk (release)"
    cargo build --release -p sink-dingtalk
    cargo build --release -p fake-dingtalk
}
