#!/usr/bin/env bash
# Runs Tidemark's whole test suite: unit tests, the ingest-log conformance
# suite (embedded log, librdkafka's mock cluster and a real Kafka-protocol
# broker), and the end-to-end tests that start the real binary next to a
# real Prometheus and a real broker.
#
# It installs what the tests need (Debian's prometheus package, the Tansu
# broker, moto's S3-compatible server) and starts and stops the broker itself. The cargo target dir is
# cached outside the clone ($HOME/.cache/tidemark/target unless
# CARGO_TARGET_DIR is set).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
export TIDEMARK_TEST_STATE="${TIDEMARK_TEST_STATE:-$(mktemp -d /tmp/tidemark-test.XXXXXX)}"

log() { echo "test.sh: $*" >&2; }

# Debian packages the tests use.
if ! command -v prometheus >/dev/null 2>&1; then
    log "installing Debian's prometheus package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq prometheus >&2
fi
# A Debian install starts a Prometheus service on :9090; the tests start
# their own on free ports and need nothing from it.

# OpenTelemetry's Python SDK and OTLP/HTTP exporter, for tests/otlp_e2e.rs.
if ! python3 -c 'import opentelemetry.sdk.metrics, opentelemetry.exporter.otlp.proto.http.metric_exporter' >/dev/null 2>&1; then
    log "installing the OpenTelemetry Python SDK and OTLP/HTTP exporter"
    python3 -m pip install -q opentelemetry-sdk opentelemetry-exporter-otlp-proto-http >&2
fi

BROKER_PORT="${TIDEMARK_TEST_KAFKA_PORT:-19092}"
cleanup() {
    scripts/kafka-broker.sh stop >/dev/null 2>&1 || true
    scripts/s3-server.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "starting a Kafka-protocol broker (Tansu) on 127.0.0.1:$BROKER_PORT"
TIDEMARK_TEST_KAFKA_ADDRESS="$(scripts/kafka-broker.sh start "$BROKER_PORT" | tail -n 1)"
export TIDEMARK_TEST_KAFKA_ADDRESS
export TIDEMARK_TEST_PROMETHEUS="$(command -v prometheus)"
S3_PORT="${TIDEMARK_TEST_S3_PORT:-19900}"
log "starting an S3-compatible server (moto) on 127.0.0.1:$S3_PORT"
TIDEMARK_TEST_S3_ENDPOINT="$(scripts/s3-server.sh start "$S3_PORT" tidemark-e2e | tail -n 1)"
export TIDEMARK_TEST_S3_ENDPOINT TIDEMARK_TEST_S3_BUCKET=tidemark-e2e
log "S3 at $TIDEMARK_TEST_S3_ENDPOINT"
log "broker at $TIDEMARK_TEST_KAFKA_ADDRESS, prometheus at $TIDEMARK_TEST_PROMETHEUS"

# Build first (one cargo at a time on a 2-core machine), then run every
# test, the ones that need the broker and Prometheus included.
cargo test --workspace --no-run --locked >&2
cargo test --workspace --no-fail-fast --locked -- --include-ignored
