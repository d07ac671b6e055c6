#!/usr/bin/env bash
# Starts and stops a real S3-compatible server for the object storage tests:
# moto's standalone server (PyPI `moto[server]`), an HTTP process speaking the
# S3 REST API with SigV4, with one empty bucket.
#
#   scripts/s3-server.sh start [PORT] [BUCKET]   install moto if needed, start
#                                                it on 127.0.0.1:PORT (default
#                                                19900), create BUCKET (default
#                                                tidemark-e2e), print host:port
#   scripts/s3-server.sh stop                    stop it
#
# State (pid, log) lives in ${TIDEMARK_TEST_STATE:-/tmp/tidemark-test}.
set -euo pipefail

STATE_DIR="${TIDEMARK_TEST_STATE:-/tmp/tidemark-test}"
PID_FILE="$STATE_DIR/s3.pid"
LOG_FILE="$STATE_DIR/s3.log"
START_TIMEOUT_SECS=30

log() { echo "s3-server: $*" >&2; }

start() {
    local port="${1:-19900}" bucket="${2:-tidemark-e2e}"
    mkdir -p "$STATE_DIR"
    stop >/dev/null 2>&1 || true
    if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
        log "installing moto[server] from PyPI"
        python3 -m pip install -q "moto[server]" >&2
    fi
    python3 -m moto.server -H 127.0.0.1 -p "$port" >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do
        if ((SECONDS > deadline)); then
            log "did not start in ${START_TIMEOUT_SECS}s; log:"
            cat "$LOG_FILE" >&2
            exit 1
        fi
        sleep 0.2
    done
    curl -sf -o /dev/null -X PUT "http://127.0.0.1:$port/$bucket"
    echo "127.0.0.1:$port"
}

stop() {
    if [[ -f "$PID_FILE" ]]; then
        kill "$(cat "$PID_FILE")" 2>/dev/null || true
        rm -f "$PID_FILE"
    fi
}

case "${1:-}" in
start) shift; start "$@" ;;
stop) stop ;;
*) echo "usage: $0 start [PORT] [BUCKET] | stop" >&2; exit 2 ;;
esac
