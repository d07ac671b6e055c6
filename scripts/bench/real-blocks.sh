#!/usr/bin/env bash
# Bytes per sample on real data: what a real node_exporter and Prometheus
# expose, scraped by Prometheus 2.42 (Debian's packages) every 15s, stored
# once as Prometheus TSDB blocks and once as Tidemark blocks, from the same
# OpenMetrics file (see docs/benchmarks.md):
#
#   promtool tsdb dump  ->  OpenMetrics  ->  promtool tsdb create-blocks-from openmetrics
#                                        ->  tidemark backfill -> block-builder replay
#
#   scripts/bench/real-blocks.sh                 collect for COLLECT (default 2h15m), then measure
#   TSDB=/path/to/prometheus/data scripts/bench/real-blocks.sh   measure data already collected
#
# Knobs (environment): COLLECT (a `sleep` duration), BENCH_DIR (work
# directory; default a temporary one, removed at the end), PROM_PORT=29190,
# NODE_PORT=29191.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
log() { echo "real-blocks: $*" >&2; }
die() { log "$*"; exit 1; }
READY_TIMEOUT_SECS=60
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
BIN="$CARGO_TARGET_DIR/release/tidemark"

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus-node-exporter >/dev/null 2>&1; then
    log "installing Debian's prometheus and prometheus-node-exporter packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq prometheus prometheus-node-exporter >&2
fi

WORK="${BENCH_DIR:-$(mktemp -d)}"
[[ -n "${BENCH_DIR:-}" ]] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"

if [[ -z "${TSDB:-}" ]]; then
    PROM_PORT="${PROM_PORT:-29190}" NODE_PORT="${NODE_PORT:-29191}"
    TSDB="$WORK/prometheus-data"
    cat > "$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 15s
scrape_configs:
  - job_name: prometheus
    static_configs: [{targets: ['127.0.0.1:$PROM_PORT']}]
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:$NODE_PORT']}]
YAML
    prometheus-node-exporter --web.listen-address="127.0.0.1:$NODE_PORT" >"$WORK/node.log" 2>&1 &
    NODE_PID=$!
    prometheus --config.file="$WORK/prometheus.yml" --web.listen-address="127.0.0.1:$PROM_PORT" \
        --storage.tsdb.path="$TSDB" >"$WORK/prometheus.log" 2>&1 &
    PROM_PID=$!
    trap 'stop_pid "$PROM_PID"; stop_pid "$NODE_PID"; [[ -n "${BENCH_DIR:-}" ]] || rm -rf "$WORK"' EXIT
    wait_ready prometheus "http://127.0.0.1:$PROM_PORT/-/ready" "$WORK/prometheus.log" "$PROM_PID"
    log "collecting for ${COLLECT:-2h15m} (node_exporter and Prometheus itself, every 15s)"
    sleep "$(( $(echo "${COLLECT:-2h15m}" | sed -E 's/([0-9]+)h/\1*3600+/; s/([0-9]+)m/\1*60+/; s/([0-9]+)s/\1+/; s/\+$//') ))"
    stop_pid "$PROM_PID"
fi

log "building tidemark (release)"
cargo build --release --locked --bin tidemark >&2

log "exporting $TSDB"
promtool tsdb dump "$TSDB" > "$WORK/dump.txt"
SAMPLES=$(python3 scripts/bench/prom_dump_to_openmetrics.py "$WORK/dump.txt" "$WORK/data.om")
SERIES=$(cut -d' ' -f1 "$WORK/data.om" | sort -u | wc -l)
rm -f "$WORK/dump.txt"
log "$SAMPLES samples of $((SERIES - 1)) series"

log "Prometheus: promtool tsdb create-blocks-from openmetrics"
rm -rf "$WORK/prometheus-blocks"
promtool tsdb create-blocks-from openmetrics "$WORK/data.om" "$WORK/prometheus-blocks" >/dev/null
PROM_BYTES=$(du -sb "$WORK/prometheus-blocks" | cut -f1)

log "Tidemark: backfill, then block-builder replay of every partition"
rm -rf "$WORK/tidemark"
FLAGS=(-data-dir="$WORK/tidemark" -distributor.ingestion-rate-limit=0)
"$BIN" backfill --from-openmetrics "$WORK/data.om" "${FLAGS[@]}" >&2
PARTITIONS=$(python3 - "$WORK/tidemark" <<'PY'
import os, sys
print(len([d for d in os.listdir(os.path.join(sys.argv[1], "log")) if d.startswith("partition")]) if os.path.isdir(os.path.join(sys.argv[1], "log")) else 0)
PY
)
[[ "$PARTITIONS" -gt 0 ]] || PARTITIONS=2
for p in $(seq 0 $((PARTITIONS - 1))); do
    "$BIN" block-builder replay --partition "$p" --from start "${FLAGS[@]}" >&2
done
read -r TM_BYTES TM_SAMPLES TM_BLOCKS < <(python3 - "$WORK/tidemark/blocks" <<'PY'
import json, os, sys
size = samples = blocks = 0
for root, _, files in os.walk(sys.argv[1]):
    if "meta.json" in files and not os.path.basename(root).startswith("@"):
        meta = json.load(open(os.path.join(root, "meta.json")))
        size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        samples += meta["num_samples"]
        blocks += 1
print(size, samples, blocks)
PY
)
[[ "$TM_SAMPLES" == "$SAMPLES" ]] || die "Tidemark blocks hold $TM_SAMPLES samples of $SAMPLES"
PROM_BLOCKS=$(find "$WORK/prometheus-blocks" -name meta.json | wc -l)
python3 - "$SAMPLES" "$PROM_BYTES" "$PROM_BLOCKS" "$TM_BYTES" "$TM_BLOCKS" <<'PY'
import sys
samples, pb, pn, tb, tn = map(int, sys.argv[1:])
print(f"real data: {samples} samples")
print(f"Prometheus 2.42 TSDB blocks (promtool): {pb} bytes in {pn} blocks, {pb / samples:.3f} bytes/sample")
print(f"Tidemark blocks:                        {tb} bytes in {tn} blocks, {tb / samples:.3f} bytes/sample")
print(f"ratio Tidemark / Prometheus: {tb / pb:.2f}")
PY
