#!/usr/bin/env bash
# Ingester replay speed at start-up (benches/replay.rs): from the embedded
# log, and from a real Kafka-protocol broker (Tansu, started here on
# BROKER_PORT and stopped at the end; KAFKA=host:port uses another broker
# instead). Knobs: SERIES=100000 SCRAPES=20 REPEAT=5 (the median of REPEAT
# replays is reported; from the broker, alternating with an embedded log
# holding the same records), KAFKA_SERIES=100000 KAFKA_SCRAPES=20 (broker),
# KAFKA_EXTRA=name=value,... (librdkafka settings), KAFKA_ONLY=1 (the broker
# comparison alone). Tansu runs in
# memory (TIDEMARK_TANSU_STORAGE=memory://tansu/; sqlite://tansu.db to
# measure it on SQLite, with a smaller KAFKA_SERIES x KAFKA_SCRAPES).
# Rates are per core: samples per second of the process' CPU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
if [[ -z "${KAFKA:-}" ]]; then
    export TIDEMARK_TEST_STATE="${TIDEMARK_TEST_STATE:-/tmp/tidemark-replay-bench}"
    export TIDEMARK_TANSU_STORAGE="${TIDEMARK_TANSU_STORAGE:-memory://tansu/}"
    KAFKA="$(scripts/kafka-broker.sh start "${BROKER_PORT:-29392}" | tail -n 1)"
    trap 'scripts/kafka-broker.sh stop >/dev/null 2>&1 || true' EXIT
fi
export KAFKA
cargo bench --locked --bench replay
