# Shell helpers shared by the benchmark scripts (sourced; they define `log`).

# stop_pid PID: SIGTERM, up to 10s for it to exit, then SIGKILL.
stop_pid() {
    local pid="$1"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop in 10s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
}

# port_free PORT: whether nothing listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_ready NAME URL LOG PID: polls URL until it answers 2xx, while PID
# lives; dies with the log's tail otherwise (callers define `die` and
# READY_TIMEOUT_SECS).
wait_ready() {
    local name="$1" url="$2" logfile="$3" pid="$4"
    for _ in $(seq 1 $((READY_TIMEOUT_SECS * 5))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "$name exited during startup (log above)"
        fi
        if curl -fsS -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$logfile" >&2 || true
    die "$name not ready at $url after ${READY_TIMEOUT_SECS}s (log above)"
}
