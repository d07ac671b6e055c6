#!/usr/bin/env bash
# Write-to-queryable freshness with strong read consistency under load, on
# loopback (benches/freshness.rs): starts `tidemark -target=all` (embedded
# log, fsync on), loads it with `tidemark bench` for the whole run, and
# probes. Knobs: PROBES=300 LOAD_SERIES=20000 PORT=19109.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
PORT="${PORT:-19109}"
TMP="$(mktemp -d /tmp/tidemark-freshness.XXXXXX)"
log() { echo "freshness.sh: $*" >&2; }
# shellcheck source=scripts/bench/lib.sh
source scripts/bench/lib.sh
cargo build --release --locked --bin tidemark >&2
BIN="$CARGO_TARGET_DIR/release/tidemark"
"$BIN" -target=all -data-dir="$TMP/data" -server.http-listen-address=127.0.0.1 \
    -server.http-listen-port="$PORT" -log.level=warn \
    -distributor.ingestion-rate-limit=0 -ingester.max-global-series-per-user=0 \
    >"$TMP/server.log" 2>&1 &
SERVER=$!
LOAD=""
cleanup() { [[ -n "$LOAD" ]] && stop_pid "$LOAD"; stop_pid "$SERVER"; rm -rf "$TMP"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
    sleep 0.1
done
"$BIN" bench --url "http://127.0.0.1:$PORT/api/v1/push" --tenant load \
    --series "${LOAD_SERIES:-20000}" --concurrency 2 --duration 600s --warmup 0s \
    >"$TMP/load.log" 2>&1 &
LOAD=$!
sleep 3
TIDEMARK_URL="http://127.0.0.1:$PORT" cargo bench --locked --bench freshness
tail -n 3 "$TMP/load.log" >&2 || true
