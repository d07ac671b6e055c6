#!/usr/bin/env bash
# Long-term storage benchmark: bytes per sample of Tidemark's blocks next to
# a Prometheus TSDB block of the same data (promtool, from Debian's
# prometheus package), block-builder throughput against the ingester path,
# and 24h range queries served from blocks against the ingester's head —
# every figure a ratio measured in the same run (see
# benches/long_term_storage.rs).
#
# Knobs (environment): SERIES=10000 HOURS=24 INTERVAL_S=15 REPEAT=3
# BENCH_DIR (where the log, the bucket and the Prometheus block go; default
# a temporary directory, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"

if ! command -v promtool >/dev/null 2>&1; then
    echo "blocks.sh: installing Debian's prometheus package (for promtool)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq prometheus >&2
fi
export PROMTOOL="${PROMTOOL:-$(command -v promtool)}"
exec cargo bench --locked --bench long_term_storage
