#!/usr/bin/env bash
# The whole cluster as processes on this machine: a Kafka-protocol broker
# (Tansu, scripts/kafka-broker.sh), an S3-compatible server (moto,
# scripts/s3-server.sh), one distributor, two zones of two ingesters, the
# block-builder, store-gateway, compactor and querier — each a `tidemark`
# process with its own -target — and prints the URLs.
#
#   scripts/local-stack.sh          build (release) and start everything
#   scripts/local-stack.sh --stop   stop what it started
#
# The processes find each other over gossip (-memberlist.join, the
# distributor's gossip port as the seed): no address lists.
#
# State and logs: ${TIDEMARK_STACK_DIR:-./data/local-stack}. HTTP ports: broker
# 29092, S3 29000, distributor 29100, ingesters 29110-29113, block-builder
# 29120, store-gateway 29121, compactor 29122, querier 29130; each process
# gossips on its HTTP port + 100 (UDP).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
STACK="${TIDEMARK_STACK_DIR:-$PWD/data/local-stack}"
export TIDEMARK_TEST_STATE="$STACK/deps"
BIN="$CARGO_TARGET_DIR/release/tidemark"
log() { echo "local-stack: $*" >&2; }

stop() {
    if [[ -d "$STACK/pids" ]]; then
        local pids=()
        for f in "$STACK"/pids/*; do
            [[ -f "$f" ]] || continue
            pids+=("$(cat "$f")")
            kill "${pids[-1]}" 2>/dev/null || true
            rm -f "$f"
        done
        # Each leaves the ring, drains and commits; wait for all.
        for _ in $(seq 1 100); do
            local alive=0
            for p in "${pids[@]}"; do
                kill -0 "$p" 2>/dev/null && alive=1
            done
            [[ $alive == 0 ]] && break
            sleep 0.1
        done
    fi
    scripts/kafka-broker.sh stop >/dev/null 2>&1 || true
    scripts/s3-server.sh stop >/dev/null 2>&1 || true
    log "stopped"
}

if [[ "${1:-}" == "--stop" ]]; then
    stop
    exit 0
fi

mkdir -p "$STACK/pids" "$STACK/logs"
cargo build --release --locked --bin tidemark >&2
KAFKA="$(scripts/kafka-broker.sh start 29092 | tail -n 1)"
S3="$(scripts/s3-server.sh start 29000 tidemark-blocks | tail -n 1)"
TOPIC="local-stack"
COMMON=(-ingest-storage.kafka.address="$KAFKA" -ingest-storage.kafka.topic="$TOPIC"
    -ingest-storage.kafka.auto-create-topic-default-partitions=2
    -server.http-listen-address=127.0.0.1 -log.level=info
    -memberlist.join=127.0.0.1:29200 -memberlist.bind-addr=127.0.0.1)
BLOCKS=(-blocks-storage.backend=s3 -blocks-storage.s3.endpoint="$S3"
    -blocks-storage.s3.bucket-name=tidemark-blocks -blocks-storage.s3.access-key-id=tidemark
    -blocks-storage.s3.secret-access-key=tidemark-secret -blocks-storage.s3.insecure=true)

run() {
    local name="$1" port="$2"
    shift 2
    "$BIN" "${COMMON[@]}" -server.http-listen-port="$port" -memberlist.bind-port=$((port + 100)) \
        -ingester.ring.instance-id="$name" -data-dir="$STACK/$name" "$@" \
        >"$STACK/logs/$name.log" 2>&1 &
    echo $! >"$STACK/pids/$name"
    for _ in $(seq 1 600); do
        if curl -sf "http://127.0.0.1:$port/ready" >/dev/null; then
            return
        fi
        if ! kill -0 "$(cat "$STACK/pids/$name")" 2>/dev/null; then
            log "$name exited; its log:"
            tail -n 20 "$STACK/logs/$name.log" >&2
            stop
            exit 1
        fi
        sleep 0.1
    done
    log "$name not ready in 60s"
    stop
    exit 1
}

run distributor 29100 -target=distributor
run ingester-zone-a-0 29110 -target=ingester
run ingester-zone-a-1 29111 -target=ingester
run ingester-zone-b-0 29112 -target=ingester
run ingester-zone-b-1 29113 -target=ingester
run block-builder 29120 -target=block-builder "${BLOCKS[@]}"
run store-gateway 29121 -target=store-gateway "${BLOCKS[@]}"
run compactor 29122 -target=compactor "${BLOCKS[@]}"
run querier 29130 -target=querier

# Writes are taken once the partitions are active in the partition ring
# (after -ingester.partition-ring.min-partition-owners-duration, 10s).
active=""
for _ in $(seq 1 300); do
    active="$(curl -sf -H 'Accept: application/json' http://127.0.0.1:29100/ingester/partition-ring \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["active"])' 2>/dev/null || true)"
    [[ "$active" == "[0, 1]" ]] && break
    sleep 0.1
done
if [[ "$active" != "[0, 1]" ]]; then
    log "partitions not active after 30s (active: ${active:-unknown}); see http://127.0.0.1:29100/ingester/partition-ring"
fi

cat <<EOT
Tidemark's local stack is running (state and logs in $STACK):
  push:    http://127.0.0.1:29100/api/v1/push          (header X-Scope-OrgID)
  OTLP:    http://127.0.0.1:29100/otlp/v1/metrics
  query:   http://127.0.0.1:29130/prometheus/api/v1/query
  ingesters: zone a http://127.0.0.1:29110 (partition 0), :29111 (1); zone b :29112 (0), :29113 (1)
  block-builder :29120, store-gateway :29121, compactor :29122 (each with /metrics)
  ring:    http://127.0.0.1:29130/memberlist, /ingester/ring, /ingester/partition-ring (on every process)
  Kafka-protocol broker: $KAFKA (topic $TOPIC); S3: http://$S3 (bucket tidemark-blocks)
Stop it with: scripts/local-stack.sh --stop
EOT
