#!/usr/bin/env bash
# Builds Tidemark, starts it on its embedded defaults (state in ./data, port
# 9009), remote-writes generated node_exporter-like samples with
# `tidemark bench`, answers two PromQL queries, and leaves Tidemark running.
#
#   scripts/run.sh          build, start (if not running), ingest, query
#   scripts/run.sh --stop   stop the Tidemark this script started
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
BIN="$CARGO_TARGET_DIR/release/tidemark"
PORT="${TIDEMARK_PORT:-9009}"
URL="http://127.0.0.1:$PORT"
TENANT="${TIDEMARK_TENANT:-demo}"
PID_FILE="data/tidemark.pid"
LOG_FILE="data/tidemark.log"

if [[ "${1:-}" == "--stop" ]]; then
    if [[ -f "$PID_FILE" ]] && kill "$(cat "$PID_FILE")" 2>/dev/null; then
        echo "stopped Tidemark (pid $(cat "$PID_FILE"))"
    else
        echo "no Tidemark started by this script is running"
    fi
    rm -f "$PID_FILE"
    exit 0
fi

echo "==> building tidemark (release; the first build takes a while)"
cargo build --release --locked --bin tidemark

mkdir -p data
if [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    echo "==> Tidemark already running (pid $(cat "$PID_FILE"))"
else
    echo "==> starting Tidemark on $URL (embedded log in ./data, log in $LOG_FILE)"
    # The demo's load generator pushes as fast as it can, far above Mimir's
    # default per-tenant ingestion rate (10,000 samples/s), so the limit is
    # lifted here; see docs/limits.md.
    nohup "$BIN" -server.http-listen-port="$PORT" -data-dir=./data \
        -distributor.ingestion-rate-limit=0 >>"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
fi
for _ in $(seq 1 600); do
    if curl -fsS "$URL/ready" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
curl -fsS "$URL/ready" >/dev/null || { echo "Tidemark did not become ready; see $LOG_FILE"; exit 1; }

echo "==> remote-writing generated samples (tenant $TENANT)"
"$BIN" bench --url "$URL/api/v1/push" --tenant "$TENANT" --series 2000 --duration 3s --warmup 0s \
    --interval 15s --backfill 6h --prebuild-mib 32

# The bench's samples start six hours ago, one scrape every 15s.
T=$(( $(date +%s) - 6 * 3600 + 600 ))
FORMAT_RESULT='
import json, sys
for s in json.load(sys.stdin)["data"]["result"]:
    labels = ", ".join("%s=\"%s\"" % kv for kv in sorted(s["metric"].items()))
    print("  {%s}  %s" % (labels, s["value"][1]))
'
query() {
    echo
    echo "==> $1   (at $(date -u -d "@$T" +%H:%M:%SZ))"
    curl -fsS -G -H "X-Scope-OrgID: $TENANT" --data-urlencode "query=$1" --data-urlencode "time=$T" \
        "$URL/prometheus/api/v1/query" | python3 -c "$FORMAT_RESULT"
}
query 'count by (job) ({job="node"})'
query 'sum by (mode) (rate(node_cpu_seconds_total{mode=~"user|system|idle"}[5m]))'

cat <<TXT

Tidemark is running at $URL (pid $(cat "$PID_FILE")), tenant "$TENANT":
  push:   $URL/api/v1/push            (Prometheus remote_write, header X-Scope-OrgID)
  query:  $URL/prometheus/api/v1/query (Grafana: Prometheus data source at $URL/prometheus,
                                         custom header X-Scope-OrgID: $TENANT)
  status: $URL/ready  $URL/metrics  $URL/config
Stop it with: scripts/run.sh --stop
TXT
