#!/usr/bin/env bash
# Starts and stops a real Kafka-protocol broker (Tansu, in-memory storage) for
# the Kafka tests.
#
#   scripts/kafka-broker.sh start [PORT]   install Tansu if needed, start it on
#                                          127.0.0.1:PORT (default 19092) and
#                                          print the address
#   scripts/kafka-broker.sh stop           stop it
#   scripts/kafka-broker.sh status         print the address if running
#
# State (pid, log, address, database) lives in
# ${TIDEMARK_TEST_STATE:-/tmp/tidemark-test}; every start begins with an empty
# log.
#
# Storage: Tansu's SQLite engine (a throw-away file in the state directory),
# not memory://. Tansu 0.6.0's memory:// (dynostore) engine answers
# ListOffsets(latest) with "base offset of the newest batch + 1", which is
# wrong as soon as a batch holds more than one record, so latest_offset breaks
# there; the SQLite engine answers per record. Override with
# TIDEMARK_TANSU_STORAGE (e.g. memory://tansu/).
#
# Tansu 0.6.0 works with librdkafka for produce (acks=all, idempotent), consume
# with headers, commits, watermarks and offsets-for-times with compression
# none/lz4/zstd; on SQLite it cannot serve fetches of snappy-compressed
# batches (in memory it can), so do not test with snappy.
set -euo pipefail

TANSU_VERSION=0.6.0
TOOLS_ROOT="$HOME/.cache/tidemark/tools"
TANSU="$TOOLS_ROOT/bin/tansu"
STATE_DIR="${TIDEMARK_TEST_STATE:-/tmp/tidemark-test}"
PID_FILE="$STATE_DIR/tansu.pid"
LOG_FILE="$STATE_DIR/tansu.log"
ADDRESS_FILE="$STATE_DIR/tansu.address"
DATA_DIR="$STATE_DIR/tansu-data"
# SQLite paths are relative to the broker's working directory (DATA_DIR).
STORAGE="${TIDEMARK_TANSU_STORAGE:-sqlite://tansu.db}"
START_TIMEOUT_SECS=30

log() { echo "kafka-broker: $*" >&2; }

install_tansu() {
    if [[ -x "$TANSU" ]]; then
        return
    fi
    log "installing tansu $TANSU_VERSION into $TOOLS_ROOT (a long build, once)"
    CARGO_TARGET_DIR="$HOME/.cache/tidemark/tansu-target" \
        cargo install tansu --version "$TANSU_VERSION" --locked \
        --features dynostore,libsql --root "$TOOLS_ROOT" >&2
    [[ -x "$TANSU" ]] || { log "cargo install finished but $TANSU is missing"; exit 1; }
}

# The pid of our running broker, or nothing.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 0
    local pid
    pid="$(cat "$PID_FILE")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "tansu"; then
        echo "$pid"
    fi
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    local port="${1:-19092}"
    [[ "$port" =~ ^[0-9]+$ ]] || { log "invalid port: $port"; exit 2; }
    mkdir -p "$STATE_DIR"

    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        log "tansu already running (pid $pid)"
        cat "$ADDRESS_FILE"
        return
    fi
    if port_open "$port"; then
        log "port $port is taken by another process; pick another: $0 start PORT"
        exit 1
    fi

    install_tansu

    local address="127.0.0.1:$port"
    rm -rf "$DATA_DIR"
    mkdir -p "$DATA_DIR"
    # setsid: the broker outlives this shell and its process group.
    (
        cd "$DATA_DIR"
        exec setsid "$TANSU" broker \
            --listener-url "tcp://$address" \
            --advertised-listener-url "tcp://$address" \
            --storage-engine "$STORAGE" \
            >"$LOG_FILE" 2>&1 </dev/null
    ) &
    pid=$!
    echo "$pid" >"$PID_FILE"

    local deadline=$((SECONDS + START_TIMEOUT_SECS))
    until port_open "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "tansu exited during start-up; log $LOG_FILE:"
            tail -n 30 "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "tansu did not listen on $address within ${START_TIMEOUT_SECS}s; log $LOG_FILE:"
            tail -n 30 "$LOG_FILE" >&2 || true
            stop
            exit 1
        fi
        sleep 0.1
    done
    echo "$address" >"$ADDRESS_FILE"
    log "tansu $TANSU_VERSION running (pid $pid, log $LOG_FILE)"
    echo "$address"
}

stop() {
    local pid
    pid="$(running_pid)"
    if [[ -z "$pid" ]]; then
        log "tansu is not running"
        rm -f "$PID_FILE" "$ADDRESS_FILE"
        return
    fi
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "tansu (pid $pid) ignored SIGTERM; killing it"
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE" "$ADDRESS_FILE"
    log "tansu stopped"
}

status() {
    local pid
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
        cat "$ADDRESS_FILE"
    else
        log "tansu is not running"
        exit 1
    fi
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 start [PORT] | stop | status" >&2
        exit 2
        ;;
esac
