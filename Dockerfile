# syntax=docker/dockerfile:1
#
# sink-dingtalk: docker build -t sink-dingtalk .
# No protoc needed: connector-sdk/build.rs compiles the proto in pure Rust.

# The exact toolchain sink-dingtalk/link-order.txt was written with: symbol
# names carry its version, and the start-up layout needs the names to match
# (docs/development.md#footprint).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# make: tikv-jemalloc-sys builds jemalloc, the release allocator
# (sink-dingtalk/src/allocator.rs), with its configure script and make.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
# The whole workspace (see .dockerignore): every member must be present for
# cargo to load the workspace, even though only sink-dingtalk is built.
COPY . .
RUN cargo build --release --locked -p sink-dingtalk \
    && cp target/release/sink-dingtalk /sink-dingtalk

FROM debian:bookworm-slim
# rustls verifies DingTalk's certificate against the system's trust store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin vanus \
    && mkdir -p /vanus-connect/data \
    && chown 10001:10001 /vanus-connect/data
COPY --from=build /sink-dingtalk /usr/local/bin/sink-dingtalk
# Mount config.yml here (a ConfigMap in Kubernetes, -v in Docker).
ENV CONNECTOR_CONFIG=/vanus-connect/config/config.yml
# The store (store.path): the delivered-ledger, each robot's send log and
# outbox. Keep it on a volume so a new container keeps the budget and what
# was queued.
VOLUME /vanus-connect/data
USER 10001:10001
# 8080 HTTP CloudEvents and probes; 8081 gRPC when grpc_port is set.
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/sink-dingtalk"]
