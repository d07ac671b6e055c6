#!/usr/bin/env bash
# End-to-end write benchmark: Tidemark against Prometheus on this machine.
#
# Builds tidemark in release, then, one server at a time (so that they never
# share the CPU):
#   1. starts `tidemark -target=all` (embedded ingest log) on 127.0.0.1:19009
#      and runs `tidemark bench` against /api/v1/push;
#   2. starts Prometheus (Debian's 2.42, /usr/bin/prometheus; installed with
#      apt-get when missing) with the remote-write receiver on 127.0.0.1:19090
#      and runs the same `tidemark bench` against /api/v1/write;
# and prints both rates, their ratio Tidemark/Prometheus, and each server's
# resident memory at the end of its run. Every process it started is stopped
# on exit, and its temporary directory removed (KEEP_TMP=1 keeps it).
#
# Knobs (environment):
#   SERIES=100000 CONCURRENCY=8 DURATION=30s WARMUP=5s SERIES_PER_REQUEST=2000
#   INTERVAL=15s BACKFILL=2h TENANT=bench
#   TIDEMARK_PORT=19009 PROMETHEUS_PORT=19090 PROMETHEUS=/usr/bin/prometheus
#   TIDEMARK_FLAGS="..."   extra server flags, e.g. -ingest-storage.embedded.fsync=false
#   SKIP_BUILD=1           use the existing release binary
#   CARGO_TARGET_DIR       default $HOME/.cache/tidemark/target
#
# SERIES defaults to 100k rather than the bench's 10k: the bench sends
# scrapes faster than real time, and with few series the timestamps outrun
# the clock (Tidemark refuses samples more than 10m in the future) and span
# more than 3h (Prometheus then compacts its head during the run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
BIN="$CARGO_TARGET_DIR/release/tidemark"

SERIES="${SERIES:-100000}"
CONCURRENCY="${CONCURRENCY:-8}"
DURATION="${DURATION:-30s}"
WARMUP="${WARMUP:-5s}"
SERIES_PER_REQUEST="${SERIES_PER_REQUEST:-2000}"
INTERVAL="${INTERVAL:-15s}"
BACKFILL="${BACKFILL:-2h}"
TENANT="${TENANT:-bench}"
TIDEMARK_PORT="${TIDEMARK_PORT:-19009}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-19090}"
PROMETHEUS="${PROMETHEUS:-/usr/bin/prometheus}"
TIDEMARK_FLAGS="${TIDEMARK_FLAGS:-}"
READY_TIMEOUT_SECS=60

log() { echo "e2e: $*" >&2; }
die() { log "$*"; exit 1; }

TMP="$(mktemp -d -t tidemark-e2e.XXXXXX)"
SERVER_PID=""

# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"

stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=""
}

cleanup() {
    stop_server
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_mib() {
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

# run_bench NAME URL OUT: runs the load generator; prints samples/s or "".
run_bench() {
    local name="$1" url="$2" out="$3"
    log "benchmarking $name at $url"
    if ! "$BIN" bench \
        --url "$url" \
        --tenant "$TENANT" \
        --series "$SERIES" \
        --concurrency "$CONCURRENCY" \
        --series-per-request "$SERIES_PER_REQUEST" \
        --duration "$DURATION" \
        --warmup "$WARMUP" \
        --interval "$INTERVAL" \
        --backfill "$BACKFILL" | tee "$out" >&2; then
        log "$name: the bench failed"
    fi
    sed -n 's/^RESULT .*samples_per_sec=\([0-9.]*\).*/\1/p' "$out" | tail -n 1
}

command -v curl >/dev/null || die "curl is needed"
port_free "$TIDEMARK_PORT" || die "port $TIDEMARK_PORT is in use"
port_free "$PROMETHEUS_PORT" || die "port $PROMETHEUS_PORT is in use"

if [[ ! -x "$PROMETHEUS" ]]; then
    log "installing Prometheus (Debian package)"
    SUDO=""
    [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    [[ -x "$PROMETHEUS" ]] || die "no Prometheus at $PROMETHEUS after installing"
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building tidemark (release)"
    (cd "$ROOT" && cargo build --release --bin tidemark)
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"

log "settings: series=$SERIES concurrency=$CONCURRENCY series-per-request=$SERIES_PER_REQUEST duration=$DURATION warmup=$WARMUP interval=$INTERVAL backfill=$BACKFILL"

# --- Tidemark
mkdir -p "$TMP/tidemark"
# shellcheck disable=SC2086 # TIDEMARK_FLAGS is a list of flags
"$BIN" -target=all -data-dir="$TMP/tidemark" \
    -server.http-listen-address=127.0.0.1 -server.http-listen-port="$TIDEMARK_PORT" \
    -auth.multitenancy-enabled=true -log.level=warn \
    -distributor.ingestion-rate-limit=0 -ingester.max-global-series-per-user=0 \
    $TIDEMARK_FLAGS >"$TMP/tidemark.log" 2>&1 &
SERVER_PID=$!
wait_ready tidemark "http://127.0.0.1:$TIDEMARK_PORT/ready" "$TMP/tidemark.log" "$SERVER_PID"
TIDEMARK_RATE="$(run_bench tidemark "http://127.0.0.1:$TIDEMARK_PORT/api/v1/push" "$TMP/tidemark.out")"
TIDEMARK_RSS="$(rss_mib "$SERVER_PID")"
stop_server

# --- Prometheus
mkdir -p "$TMP/prometheus"
cat >"$TMP/prometheus.yml" <<'EOF'
global:
  scrape_interval: 15s
EOF
"$PROMETHEUS" \
    --config.file="$TMP/prometheus.yml" \
    --storage.tsdb.path="$TMP/prometheus" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --web.enable-remote-write-receiver \
    --log.level=warn \
    >"$TMP/prometheus.log" 2>&1 &
SERVER_PID=$!
wait_ready prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "$TMP/prometheus.log" "$SERVER_PID"
PROMETHEUS_RATE="$(run_bench prometheus "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/write" "$TMP/prometheus.out")"
PROMETHEUS_RSS="$(rss_mib "$SERVER_PID")"
PROMETHEUS_VERSION="$("$PROMETHEUS" --version 2>&1 | head -n 1)"
stop_server

echo
echo "e2e write benchmark, $(nproc) cores, client and server on the same machine, one server at a time"
echo "  settings: $SERIES series, $SERIES_PER_REQUEST series/request, concurrency $CONCURRENCY, $WARMUP warm-up + $DURATION"
echo "  tidemark   (-target=all, embedded log${TIDEMARK_FLAGS:+, $TIDEMARK_FLAGS}): ${TIDEMARK_RATE:-failed} samples/s, RSS ${TIDEMARK_RSS} MiB at the end"
echo "  prometheus ($PROMETHEUS_VERSION): ${PROMETHEUS_RATE:-failed} samples/s, RSS ${PROMETHEUS_RSS} MiB at the end"
if [[ -n "$TIDEMARK_RATE" && -n "$PROMETHEUS_RATE" ]]; then
    awk -v t="$TIDEMARK_RATE" -v p="$PROMETHEUS_RATE" -v tr="$TIDEMARK_RSS" -v pr="$PROMETHEUS_RSS" 'BEGIN {
        if (p > 0) printf "  ratio tidemark/prometheus: %.2f (samples/s)\n", t / p;
        else print "  ratio tidemark/prometheus: n/a (prometheus acknowledged nothing)";
        if (pr + 0 > 0 && tr + 0 > 0) printf "  ratio tidemark/prometheus: %.2f (RSS)\n", tr / pr;
    }'
    echo "  note: Tidemark fsyncs its embedded log before acknowledging (default); Prometheus' WAL does not fsync per request."
    echo "  (TIDEMARK_FLAGS=-ingest-storage.embedded.fsync=false compares without it.)"
else
    exit 1
fi
