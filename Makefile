# sink-dingtalk: common tasks. `make` alone lists them.

CARGO  ?= cargo
CONFIG ?= config/config.yml
STORE  ?= target/sink-dingtalk-data
IMAGE  ?= sink-dingtalk

.DEFAULT_GOAL := help
.PHONY: help build demo demo-replicas run test bench docker clean

help: ## List the targets
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  make %-14s %s\n", $$1, $$2}'
	@echo "Variables: CONFIG=$(CONFIG) and STORE=$(STORE) (for run), IMAGE=$(IMAGE) (for docker)"

build: ## Build the release sink: target/release/sink-dingtalk
	$(CARGO) build --release -p sink-dingtalk

demo: ## Run the sink against a local fake DingTalk and show what it receives
	bash scripts/demo.sh

demo-replicas: ## Three replicas sharing Redis, a storm over them, one killed: what DingTalk receives
	bash scripts/demo-replicas.sh

run: build ## Run the release sink with CONFIG (default config/config.yml), state in STORE
	CONNECTOR_CONFIG=$(CONFIG) CONNECTOR_STORE__PATH=$(STORE) ./target/release/sink-dingtalk

test: ## Install what the tests need (redis-server), check doc links, fmt, clippy and rustdoc -D warnings, every test
	bash scripts/test-deps.sh
	python3 scripts/doc-links.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
	$(CARGO) test --workspace

# Two cargo calls: built together, feature unification would compile
# connector-sdk's `testing` feature (the bench and the fake DingTalk need it)
# into the sink, and the bench would measure a binary other than the one
# `make build` ships.
bench: ## Benchmark the release sink against a bare relay; writes BENCHMARKS.md and docs/bench.svg
	bash scripts/test-deps.sh
	$(CARGO) build --release -p sink-dingtalk
	$(CARGO) build --release -p bench
	./target/release/bench

docker: ## Build the container image (needs a Docker engine)
	docker build -t $(IMAGE) .

clean: ## Remove build output
	$(CARGO) clean
