#!/usr/bin/env bash
# PromQL query benchmark: Tidemark against Prometheus on this machine, on the
# same data, measured in the same run.
#
# Builds tidemark in release (SKIP_BUILD=1 uses the existing binary), then:
#   1. starts `tidemark -target=all` (embedded ingest log, data in a temporary
#      directory) on 127.0.0.1:19009 and a second process, `tidemark
#      -target=querier`, on 127.0.0.1:19010 that reads from the first through
#      -querier.ingester-addresses: the memory runs go to the querier, so
#      that its memory is the query's alone; the timed runs go to the
#      -target=all process (QUERY_TARGET=querier: to the querier);
#   2. starts Prometheus (Debian's 2.42, /usr/bin/prometheus; installed with
#      apt-get when missing) with the remote-write receiver on 127.0.0.1:19090;
#   3. loads the same data into each, one after the other, with `tidemark
#      bench --backfill $BACKFILL`: SERIES node_exporter-like series (plus an
#      http_request_duration_seconds histogram in current builds; the number
#      of hosts follows from the series per host) at INTERVAL, scrape after
#      scrape in time order (a series always goes through the same bench
#      worker, one request at a time; --prebuild-mib is kept small so that
#      workers never drift more than a few scrapes apart, which keeps every
#      sample within Prometheus' 1h out-of-bounds window). The bench runs
#      under libfaketime with its wall clock frozen at T - 7s (T: the
#      script's start, rounded down to INTERVAL), so both servers get
#      identical timestamps T - 7s - BACKFILL + k * INTERVAL. The 7s keep
#      samples off the query steps' grid, as with real scrapes: Prometheus
#      2.x's range selectors include a sample exactly at t - range, 3.x's
#      (and Tidemark's) do not, and on-grid data would make every rate
#      point differ. The bench has no scrape-count option, so
#      the script stops it once the server has taken scrapes 0 to
#      BACKFILL/INTERVAL + MARGIN_SCRAPES (the margin absorbs workers'
#      drift; those last samples lie after T and are never queried);
#   4. waits until Tidemark's ingester has consumed the log and Prometheus
#      has finished compacting its head into blocks, then checks that both
#      answer `count({__name__=~".+"})` and `count(up)` identically at T and
#      at the oldest scrape, and `count({__name__=~".+"})` = SERIES at T;
#      aborts otherwise;
#   5. runs the query set below as range queries ending at T over each of
#      RANGES (default 1h 6h 24h; ranges longer than BACKFILL are skipped),
#      step max(INTERVAL, range/300) rounded up to whole seconds, end aligned
#      down to a multiple of the step as Grafana does (the same for both):
#      every (query, range) once as warm-up, then REPEAT times; for each
#      (query, range) Tidemark's runs, then Prometheus' (one server queried
#      at a time, the other idle; taking the cases in turn lets both see the
#      machine alike, whose speed drifts by ±20% over minutes). Tidemark: POST /prometheus/api/v1/query_range with
#      X-Scope-OrgID: $TENANT; Prometheus: POST
#      /api/v1/query_range. Latency is curl's total time (same client, same
#      response sizes on both sides);
#   6. compares the warm-up answers of the two servers (series count, then
#      points: same timestamps, values within 1e-6 relative) and prints the
#      result; a query failing on either server (e.g. Tidemark's 422 "not
#      supported yet") is printed and marked, and the run goes on;
#   7. prints a table of medians and Tidemark/Prometheus ratios, and the
#      geometric mean and median of each ratio over the pairs that succeeded
#      on both servers. Issue's goal: latency ratio <= 0.5, memory <= 0.3.
#
# Peak memory of a query is measured in a phase of its own, after the timed
# runs, as the growth of the process' anonymous resident memory (RssAnon in
# /proc/<pid>/status, sampled every millisecond while the query runs) over
# its value just before: file-backed pages (Prometheus' mmapped blocks, the
# binaries) are not counted, and allocators' retained memory is kept small:
#   - Tidemark: the -target=querier process (it holds no data; the
#     -target=all process that serves it the series is not counted) is
#     restarted for every run and primed with an instant `count(up)`, so the
#     figure is the query's whole footprint in a fresh process;
#   - Prometheus: restarted once for this phase with GOGC=10,
#     GODEBUG=madvdontneed=1 and GOMEMLIMIT=1MiB, warmed up with the query,
#     and a GC is forced (GET /debug/pprof/heap?gc=1) one second before
#     every run. With a memory limit below its live heap, Go collects
#     continuously and its scavenger hands freed pages back to the OS at
#     once to get under the limit, so RSS follows the live heap: the figure
#     is the least memory Prometheus can run the query in. (Without the
#     limit Go keeps freed pages and the next query reuses them: the figure
#     then depends on what ran before, and reads ~0 for queries that need
#     tens of MiB once limited; runs of 2026-11-26 on the same data.)
#     Prometheus' own `stats=all` peakSamples of the warm-up run is shown
#     for reference.
#   Both err against Tidemark: its figure includes a fresh process' first
#   use of its allocator and connections; Prometheus' is warm and tight.
# MEM_REPEAT runs per (query, range) and server; medians.
# Every process it started is stopped on exit, and its temporary directory
# removed (KEEP_TMP=1 keeps it, with logs and every answer).
#
# Knobs (environment):
#   SERIES=10000 BACKFILL=24h INTERVAL=15s RANGES="1h 6h 24h" REPEAT=5
#   TENANT=bench CONCURRENCY=2 SERIES_PER_REQUEST=2000 MARGIN_SCRAPES=20
#   LOAD_TIMEOUT=60m       longest a load may take
#   TIDEMARK_PORT=19009 QUERIER_PORT=19010 PROMETHEUS_PORT=19090
#   PROMETHEUS=/usr/bin/prometheus
#   TIDEMARK_FLAGS="..."   extra flags for the -target=all process
#   QUERIER_FLAGS="..."    extra flags for the -target=querier process
#   MEM_REPEAT=3           memory runs per (query, range) and server
#   QUERY_TARGET=all       where Tidemark's timed runs go: `all` (the single
#                          process holding the data, as Prometheus is) or
#                          `querier` (the separate querier process)
#   SKIP_BUILD=1           use the existing release binary
#   KEEP_TMP=1             keep the temporary directory
#   CARGO_TARGET_DIR       default $HOME/.cache/tidemark/target
#
# Tidemark flags the script sets, and why:
#   -ingester.head-retention=BACKFILL+2h  the head drops samples older than
#       its newest sample minus this (default 24h), which would cut the
#       oldest scrapes of a 24h dataset (and a 24h range's first rate window);
#   -validation.create-grace-period=1h    the distributor refuses samples more
#       than this ahead of its clock (default 10m); the margin scrapes lie up
#       to MARGIN_SCRAPES * INTERVAL after T. There is no lower bound on a
#       sample's age in the distributor;
#   -ingest-storage.embedded.fsync=false  loading speed only; queries do not
#       touch the log.
# Prometheus: --storage.tsdb.retention.time=30d (the data is up to a day old
# and must not be deleted); everything else default (5m lookback, 50M max
# samples and 2m timeout, as Tidemark's defaults).
#
# Needs: curl, python3 (summary and answer comparison), faketime (libfaketime;
# installed with apt-get when missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidemark/target}"
BIN="$CARGO_TARGET_DIR/release/tidemark"

SERIES="${SERIES:-10000}"
BACKFILL="${BACKFILL:-24h}"
INTERVAL="${INTERVAL:-15s}"
RANGES="${RANGES:-1h 6h 24h}"
REPEAT="${REPEAT:-5}"
TENANT="${TENANT:-bench}"
CONCURRENCY="${CONCURRENCY:-2}"
SERIES_PER_REQUEST="${SERIES_PER_REQUEST:-2000}"
MARGIN_SCRAPES="${MARGIN_SCRAPES:-20}"
LOAD_TIMEOUT="${LOAD_TIMEOUT:-60m}"
TIDEMARK_PORT="${TIDEMARK_PORT:-19009}"
QUERIER_PORT="${QUERIER_PORT:-19010}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-19090}"
PROMETHEUS="${PROMETHEUS:-/usr/bin/prometheus}"
TIDEMARK_FLAGS="${TIDEMARK_FLAGS:-}"
QUERIER_FLAGS="${QUERIER_FLAGS:-}"
MEM_REPEAT="${MEM_REPEAT:-3}"
QUERY_TARGET="${QUERY_TARGET:-all}"
READY_TIMEOUT_SECS=60
QUIET_TIMEOUT_SECS=600

# name<TAB>expression; the names label the table.
QUERIES=(
    $'sum_rate\tsum by (instance) (rate(node_cpu_seconds_total[5m]))'
    $'hist_p99\thistogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))'
    $'topk\ttopk(5, rate(node_network_receive_bytes_total[5m]))'
    $'avg_otime\tavg_over_time(node_load1[5m])'
    $'group_left\tnode_filesystem_avail_bytes / on(instance) group_left node_memory_MemTotal_bytes'
    $'count_by\tcount by (mode) (node_cpu_seconds_total)'
    $'subquery\tmax_over_time(rate(node_cpu_seconds_total[5m])[30m:1m])'
)

log() { echo "promql: $*" >&2; }
die() { log "$*"; exit 1; }

TMP="$(mktemp -d -t tidemark-promql.XXXXXX)"
PIDS=()   # servers, stopped in reverse order
BENCH_PID=""
QUERIER_PID=""

# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"

cleanup() {
    stop_pid "$BENCH_PID"
    stop_pid "$QUERIER_PID"
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[$i]}"
    done
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# seconds DURATION: 90s, 15m, 24h, 2d (one unit) in seconds.
seconds() {
    local d="$1"
    [[ "$d" =~ ^([0-9]+)(s|m|h|d)$ ]] || die "cannot parse duration $d (use e.g. 15s, 30m, 24h)"
    local n="${BASH_REMATCH[1]}"
    case "${BASH_REMATCH[2]}" in
        s) echo "$n" ;;
        m) echo $((n * 60)) ;;
        h) echo $((n * 3600)) ;;
        d) echo $((n * 86400)) ;;
    esac
}

# metric BASE_URL NAME: sum of NAME's samples (any labels) on BASE_URL/metrics.
metric() {
    { curl -fsS "$1/metrics" 2>/dev/null || true; } |
        awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

rss_mib() {
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

# load NAME URL METRICS_URL COUNTER: pushes scrapes 0..TARGET_SCRAPES-1 with
# the bench (clock frozen at T) and stops it once COUNTER on METRICS_URL
# reaches SERIES * TARGET_SCRAPES.
load() {
    local name="$1" url="$2" metrics="$3" counter="$4"
    local want=$((SERIES * TARGET_SCRAPES)) started=$SECONDS got=0 last_report=$SECONDS
    local prev=-1 progress_at=$SECONDS
    local base
    base="$(metric "$metrics" "$counter")"
    log "loading $name: $TARGET_SCRAPES scrapes of $SERIES series = $want samples into $url"
    LD_PRELOAD="$FAKETIME_LIB" FAKETIME_FMT=%s FAKETIME="$T_DATA" FAKETIME_DONT_FAKE_MONOTONIC=1 \
        "$BIN" bench \
        --url "$url" \
        --tenant "$TENANT" \
        --series "$SERIES" \
        --concurrency "$CONCURRENCY" \
        --series-per-request "$SERIES_PER_REQUEST" \
        --interval "$INTERVAL" \
        --backfill "${BACKFILL_S}s" \
        --prebuild-mib 1 \
        --warmup 0s \
        --duration "$LOAD_TIMEOUT" \
        >"$TMP/load-$name.out" 2>&1 &
    BENCH_PID=$!
    while :; do
        got=$(($(metric "$metrics" "$counter") - base))
        ((got >= want)) && break
        if ! kill -0 "$BENCH_PID" 2>/dev/null; then
            cat "$TMP/load-$name.out" >&2
            die "the bench stopped after $got of $want samples into $name (output above)"
        fi
        if ((got != prev)); then
            prev=$got
            progress_at=$SECONDS
        elif ((SECONDS - progress_at >= 120)); then
            tail -n 20 "$TMP/$name.log" >&2 2>/dev/null || true
            die "$name took no sample for 120s, stuck at $got of $want (server log above; bench output in $TMP/load-$name.out)"
        fi
        if ((SECONDS - last_report >= 30)); then
            log "  $name: $got of $want samples after $((SECONDS - started))s"
            last_report=$SECONDS
        fi
        sleep 0.25
    done
    stop_pid "$BENCH_PID"
    BENCH_PID=""
    local secs=$((SECONDS - started))
    log "  $name: $got samples in ${secs}s ($((got / (secs > 0 ? secs : 1))) samples/s)"
    echo "$name $secs $got" >>"$TMP/load-times"
}

# wait_tidemark: until the ingester has consumed everything produced.
wait_tidemark() {
    local base="http://127.0.0.1:$TIDEMARK_PORT" prev=-1 cur
    for _ in $(seq 1 $((QUIET_TIMEOUT_SECS * 2))); do
        cur="$(metric "$base" tidemark_ingester_samples_appended_total)"
        if [[ "$(metric "$base" tidemark_ingester_lag_records)" == 0 && "$cur" == "$prev" ]]; then
            return 0
        fi
        prev="$cur"
        sleep 0.5
    done
    log "tidemark's ingester still busy after ${QUIET_TIMEOUT_SECS}s; going on"
}

# wait_prometheus: until the head is compacted down to <= 3h (+ margin) and
# no compaction ran for 20s.
wait_prometheus() {
    local base="http://127.0.0.1:$PROMETHEUS_PORT" started=$SECONDS quiet_since=$SECONDS prev="" cur
    local max_span_ms=$(((3 * 3600 + MARGIN_SCRAPES * INTERVAL_S + 300) * 1000))
    while ((SECONDS - started < QUIET_TIMEOUT_SECS)); do
        cur="$(metric "$base" prometheus_tsdb_compactions_total) $(metric "$base" prometheus_tsdb_compactions_triggered_total)"
        [[ "$cur" != "$prev" ]] && quiet_since=$SECONDS
        prev="$cur"
        local span=$(($(metric "$base" prometheus_tsdb_head_max_time) - $(metric "$base" prometheus_tsdb_head_min_time)))
        if ((span <= max_span_ms && SECONDS - quiet_since >= 20)); then
            log "prometheus quiet after $((SECONDS - started))s (head spans $((span / 60000))m, compactions: ${cur% *})"
            return 0
        fi
        sleep 1
    done
    log "prometheus still compacting after ${QUIET_TIMEOUT_SECS}s; going on"
}

# instant SERVER QUERY TIME: the single value of an instant query, or "error: ...".
instant() {
    local server="$1" q="$2" t="$3" out
    if [[ "$server" == tidemark ]]; then
        out="$(curl -sS -H "X-Scope-OrgID: $TENANT" --data-urlencode "query=$q" -d "time=$t" \
            "http://127.0.0.1:$QUERIER_PORT/prometheus/api/v1/query" 2>&1)" || true
    else
        out="$(curl -sS --data-urlencode "query=$q" -d "time=$t" \
            "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" 2>&1)" || true
    fi
    python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])
except Exception:
    print("error: " + sys.argv[1][:200]); sys.exit()
if d.get("status") != "success":
    print("error: " + str(d.get("error", d))[:200]); sys.exit()
r = d["data"]["result"]
print(r[0]["value"][1] if r else "empty")' "$out"
}

# run_one SERVER OUT QUERY START END STEP [EXTRA...]: one timed run;
# prints "<http code> <ms>".
run_one() {
    local server="$1" out="$2" q="$3" start="$4" end="$5" step="$6"
    shift 6
    local url
    local -a hdr=()
    if [[ "$server" == tidemark ]]; then
        url="http://127.0.0.1:$TIMED_PORT/prometheus/api/v1/query_range"
        hdr=(-H "X-Scope-OrgID: $TENANT")
    else
        url="http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query_range"
    fi
    local w
    w="$(curl -sS -o "$out" -w '%{http_code} %{time_total}' "${hdr[@]}" \
        --data-urlencode "query=$q" -d "start=$start" -d "end=$end" -d "step=$step" "$@" "$url" 2>/dev/null)" ||
        w="000 0"
    awk -v w="$w" 'BEGIN { split(w, a, " "); printf "%s %.3f\n", a[1], a[2] * 1000 }'
}

# mem_one SERVER PID QUERY START END STEP: one memory run; prints
# "<http code> <peak KiB>", the peak growth of PID's RssAnon over the run.
mem_one() {
    local server="$1" pid="$2" q="$3" start="$4" end="$5" step="$6"
    local TIMED_PORT=$QUERIER_PORT
    local samples="$TMP/rss-samples"
    rm -f "$samples"
    python3 - "$pid" "$samples" <<'PY' &
import signal, sys, time
pid, out = sys.argv[1], sys.argv[2]
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
def anon():
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
base = anon()
peak = base
with open(out + ".ready", "w") as f:
    f.write("1")
while running:
    peak = max(peak, anon())
    time.sleep(0.001)
peak = max(peak, anon())
with open(out, "w") as f:
    f.write(f"{base} {peak}\n")
PY
    local sampler=$!
    for _ in $(seq 1 500); do
        [[ -e "$samples.ready" ]] && break
        sleep 0.01
    done
    local code
    code="$(run_one "$server" "$TMP/answers/last.json" "$q" "$start" "$end" "$step" | cut -d' ' -f1)"
    kill -TERM "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    rm -f "$samples.ready"
    local base peak
    read -r base peak <"$samples" || { base=0; peak=0; }
    echo "$code $((peak - base))"
}

# start_querier: (re)starts the Tidemark querier; sets QUERIER_PID.
start_querier() {
    stop_pid "$QUERIER_PID"
    # shellcheck disable=SC2086 # QUERIER_FLAGS is a list of flags
    "$BIN" -target=querier -data-dir="$TMP/querier" \
        -server.http-listen-address=127.0.0.1 -server.http-listen-port="$QUERIER_PORT" \
        -auth.multitenancy-enabled=true -log.level=warn \
        -querier.ingester-addresses="http://127.0.0.1:$TIDEMARK_PORT" \
        $QUERIER_FLAGS >>"$TMP/querier.log" 2>&1 &
    QUERIER_PID=$!
    wait_ready tidemark-querier "http://127.0.0.1:$QUERIER_PORT/ready" "$TMP/querier.log" "$QUERIER_PID"
}

# start_prometheus [ENV...]: (re)starts Prometheus on the loaded data, with
# the given environment; sets PROMETHEUS_PID.
start_prometheus() {
    if [[ -n "${PROMETHEUS_PID:-}" ]]; then
        stop_pid "$PROMETHEUS_PID"
    fi
    env "$@" "$PROMETHEUS" \
        --config.file="$TMP/prometheus.yml" \
        --storage.tsdb.path="$TMP/prometheus" \
        --storage.tsdb.retention.time=30d \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
        --web.enable-remote-write-receiver \
        --log.level=warn \
        >>"$TMP/prometheus.log" 2>&1 &
    PROMETHEUS_PID=$!
    wait_ready prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" "$TMP/prometheus.log" "$PROMETHEUS_PID"
}

# each_case FUNCTION: calls FUNCTION NAME QUERY RANGE START END STEP for
# every query and range.
each_case() {
    local fn="$1" entry name q range range_s step start end
    for entry in "${QUERIES[@]}"; do
        name="${entry%%$'\t'*}"
        q="${entry#*$'\t'}"
        for range in $RANGES_RUN; do
            range_s="$(seconds "$range")"
            step=$(((range_s + 299) / 300))
            ((step < INTERVAL_S)) && step=$INTERVAL_S
            end=$((T - T % step))
            start=$((end - range_s))
            "$fn" "$name" "$q" "$range" "$start" "$end" "$step"
        done
    done
}

# time_case SERVER NAME QUERY RANGE START END STEP: warm-up (its answer is
# kept) and REPEAT timed runs; appends to latency.tsv.
time_case() {
    local server="$1" name="$2" q="$3" range="$4" start="$5" end="$6" step="$7"
    local answer="$TMP/answers/$server-$name-$range.json"
    local -a extra=()
    [[ "$server" == prometheus ]] && extra=(-d stats=all)
    local code ms
    read -r code ms < <(run_one "$server" "$answer" "$q" "$start" "$end" "$step" "${extra[@]}")
    if [[ "$code" != 200 ]]; then
        local msg
        msg="$(head -c 300 "$answer" 2>/dev/null | tr '\n\t' '  ')"
        log "$server $name $range: FAILED (HTTP $code) ${msg}"
        printf '%s\t%s\t%s\t%s\t\t%s\n' "$server" "$name" "$range" "$code" "$msg" >>"$TMP/latency.tsv"
        return
    fi
    local lat="" i
    for ((i = 0; i < REPEAT; i++)); do
        read -r code ms < <(run_one "$server" "$TMP/answers/last.json" "$q" "$start" "$end" "$step")
        [[ "$code" == 200 ]] && lat+="${lat:+,}$ms"
    done
    log "$server $name $range (step ${step}s): ms [$lat]"
    printf '%s\t%s\t%s\t%s\t%s\t\n' "$server" "$name" "$range" 200 "$lat" >>"$TMP/latency.tsv"
}

# time_both NAME QUERY RANGE START END STEP: Tidemark's runs, then
# Prometheus' on the same case, so that both see the machine alike.
time_both() {
    time_case tidemark "$@"
    time_case prometheus "$@"
}

# mem_tidemark NAME QUERY RANGE START END STEP: MEM_REPEAT runs, each on a
# fresh, primed querier; appends to memory.tsv.
mem_tidemark() {
    local name="$1" q="$2" range="$3" start="$4" end="$5" step="$6" peaks="" i code peak
    for ((i = 0; i < MEM_REPEAT; i++)); do
        start_querier
        instant tidemark 'count(up)' "$end" >/dev/null
        read -r code peak < <(mem_one tidemark "$QUERIER_PID" "$q" "$start" "$end" "$step")
        [[ "$code" == 200 ]] && peaks+="${peaks:+,}$peak"
    done
    log "tidemark $name $range: peak KiB [$peaks]"
    printf 'tidemark\t%s\t%s\t%s\n' "$name" "$range" "$peaks" >>"$TMP/memory.tsv"
}

# mem_prometheus NAME QUERY RANGE START END STEP: a warm-up, then
# MEM_REPEAT runs each one second after a forced GC; appends to memory.tsv.
mem_prometheus() {
    local name="$1" q="$2" range="$3" start="$4" end="$5" step="$6" peaks="" i code peak
    run_one prometheus "$TMP/answers/last.json" "$q" "$start" "$end" "$step" >/dev/null
    for ((i = 0; i < MEM_REPEAT; i++)); do
        curl -fsS -o /dev/null "http://127.0.0.1:$PROMETHEUS_PORT/debug/pprof/heap?gc=1" || true
        sleep 1
        read -r code peak < <(mem_one prometheus "$PROMETHEUS_PID" "$q" "$start" "$end" "$step")
        [[ "$code" == 200 ]] && peaks+="${peaks:+,}$peak"
    done
    log "prometheus $name $range: peak KiB [$peaks]"
    printf 'prometheus\t%s\t%s\t%s\n' "$name" "$range" "$peaks" >>"$TMP/memory.tsv"
}

command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"
for p in "$TIDEMARK_PORT" "$QUERIER_PORT" "$PROMETHEUS_PORT"; do
    port_free "$p" || die "port $p is in use"
done

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
if [[ ! -x "$PROMETHEUS" ]]; then
    log "installing Prometheus (Debian package)"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    [[ -x "$PROMETHEUS" ]] || die "no Prometheus at $PROMETHEUS after installing"
fi
FAKETIME_LIB="$(ls /usr/lib/*/faketime/libfaketimeMT.so.1 2>/dev/null | head -n 1 || true)"
if [[ -z "$FAKETIME_LIB" ]]; then
    log "installing libfaketime (Debian package faketime)"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
    FAKETIME_LIB="$(ls /usr/lib/*/faketime/libfaketimeMT.so.1 2>/dev/null | head -n 1 || true)"
    [[ -n "$FAKETIME_LIB" ]] || die "no libfaketimeMT.so.1 after installing faketime"
fi

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building tidemark (release)"
    (cd "$ROOT" && cargo build --release --locked --bin tidemark)
fi
[[ -x "$BIN" ]] || die "no binary at $BIN"

BACKFILL_S="$(seconds "$BACKFILL")"
INTERVAL_S="$(seconds "$INTERVAL")"
((BACKFILL_S % INTERVAL_S == 0)) || die "BACKFILL must be a multiple of INTERVAL"
# Scrapes 0..N land at T - BACKFILL .. T; then the margin.
TARGET_SCRAPES=$((BACKFILL_S / INTERVAL_S + 1 + MARGIN_SCRAPES))
NOW="$(date +%s)"
T=$((NOW - NOW % INTERVAL_S))
T_DATA=$((T - 7))
RANGES_RUN=""
for r in $RANGES; do
    if (($(seconds "$r") > BACKFILL_S)); then
        log "range $r is longer than the data (BACKFILL=$BACKFILL): skipped"
    else
        RANGES_RUN+="${RANGES_RUN:+ }$r"
    fi
done
[[ -n "$RANGES_RUN" ]] || die "no range fits in BACKFILL=$BACKFILL"
HEAD_RETENTION_S=$((BACKFILL_S + 7200))
mkdir -p "$TMP/answers" "$TMP/tidemark" "$TMP/querier" "$TMP/prometheus"
: >"$TMP/latency.tsv"
: >"$TMP/memory.tsv"
: >"$TMP/load-times"

log "settings: series=$SERIES backfill=$BACKFILL interval=$INTERVAL ranges=[$RANGES_RUN] repeat=$REPEAT; data at $(date -u -d "@$((T_DATA - BACKFILL_S))" +%FT%TZ) .. $(date -u -d "@$T_DATA" +%FT%TZ) (+$MARGIN_SCRAPES scrapes), queries end at $(date -u -d "@$T" +%FT%TZ)"

# --- Servers
# shellcheck disable=SC2086 # TIDEMARK_FLAGS is a list of flags
"$BIN" -target=all -data-dir="$TMP/tidemark" \
    -server.http-listen-address=127.0.0.1 -server.http-listen-port="$TIDEMARK_PORT" \
    -auth.multitenancy-enabled=true -log.level=warn \
    -ingester.head-retention="${HEAD_RETENTION_S}s" \
    -validation.create-grace-period=1h \
    -ingest-storage.embedded.fsync=false \
    -distributor.ingestion-rate-limit=0 -ingester.max-global-series-per-user=0 \
    -block-builder.consume-interval=24h \
    $TIDEMARK_FLAGS >"$TMP/tidemark.log" 2>&1 &
TIDEMARK_PID=$!
PIDS+=("$TIDEMARK_PID")
wait_ready tidemark "http://127.0.0.1:$TIDEMARK_PORT/ready" "$TMP/tidemark.log" "$TIDEMARK_PID"

start_querier

cat >"$TMP/prometheus.yml" <<'EOF'
global:
  scrape_interval: 15s
EOF
PROMETHEUS_PID=""
start_prometheus
PIDS+=("$PROMETHEUS_PID")
PROMETHEUS_VERSION="$("$PROMETHEUS" --version 2>&1 | head -n 1)"

# --- Loading, one server at a time
load tidemark "http://127.0.0.1:$TIDEMARK_PORT/api/v1/push" \
    "http://127.0.0.1:$TIDEMARK_PORT" tidemark_distributor_received_samples_total
load prometheus "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/write" \
    "http://127.0.0.1:$PROMETHEUS_PORT" prometheus_tsdb_head_samples_appended_total
wait_tidemark
wait_prometheus
log "tidemark: discarded $(metric "http://127.0.0.1:$TIDEMARK_PORT" tidemark_distributor_discarded_samples_total), rejected by the head $(metric "http://127.0.0.1:$TIDEMARK_PORT" tidemark_ingester_samples_rejected_total); prometheus: out of bounds $(metric "http://127.0.0.1:$PROMETHEUS_PORT" prometheus_tsdb_out_of_bound_samples_total), out of order $(metric "http://127.0.0.1:$PROMETHEUS_PORT" prometheus_tsdb_out_of_order_samples_total)"
log "RSS after loading: tidemark -target=all $(rss_mib "$TIDEMARK_PID") MiB, querier $(rss_mib "$QUERIER_PID") MiB, prometheus $(rss_mib "$PROMETHEUS_PID") MiB"

# --- Same data?
OLDEST=$((T_DATA - BACKFILL_S))
for at in "$T" "$OLDEST"; do
    for q in 'count({__name__=~".+"})' 'count(up)'; do
        tv="$(instant tidemark "$q" "$at")"
        pv="$(instant prometheus "$q" "$at")"
        log "check $q at $(date -u -d "@$at" +%FT%TZ): tidemark $tv, prometheus $pv"
        [[ "$tv" == "$pv" ]] || die "the servers disagree on $q: tidemark $tv, prometheus $pv"
    done
done
[[ "$(instant prometheus 'count({__name__=~".+"})' "$T")" == "$SERIES" ]] ||
    die "the servers do not hold $SERIES series at the newest scrape"

# --- Latency: Tidemark, then Prometheus, warm processes
case "$QUERY_TARGET" in
    all) TIMED_PORT=$TIDEMARK_PORT ;;
    querier) TIMED_PORT=$QUERIER_PORT ;;
    *) die "QUERY_TARGET must be all or querier" ;;
esac
# Memory runs always go to a fresh querier.
log "timing tidemark (-target=$QUERY_TARGET) and prometheus, one (query, range) after the other"
each_case time_both

# --- Memory: fresh queriers; Prometheus restarted with a tight GC
log "memory: tidemark on a fresh querier per run"
each_case mem_tidemark
log "memory: prometheus restarted with GOGC=10 GODEBUG=madvdontneed=1 GOMEMLIMIT=1MiB"
start_prometheus GOGC=10 GODEBUG=madvdontneed=1 GOMEMLIMIT=1MiB
PIDS+=("$PROMETHEUS_PID")
each_case mem_prometheus

# --- Summary
echo
echo "PromQL range-query benchmark, $(nproc) cores, client and servers on the same machine, one server queried at a time"
echo "  data: $SERIES series, $BACKFILL at $INTERVAL ending $(date -u -d "@$T_DATA" +%FT%TZ), identical in both (bench clock frozen); queries end at $(date -u -d "@$T" +%FT%TZ) (aligned down to the step)"
while read -r name secs samples; do
    echo "  load $name: $samples samples in ${secs}s"
done <"$TMP/load-times"
echo "  tidemark: $("$BIN" --version 2>&1 | head -n 1); timed queries on -target=$QUERY_TARGET, memory on a -target=querier process reading from -target=all"
echo "  prometheus: $PROMETHEUS_VERSION"
echo "  $REPEAT timed runs after 1 warm-up per (query, range); medians; ratios are tidemark/prometheus"
echo "  peak memory: growth of RssAnon during the query, median of $MEM_REPEAT runs; tidemark on a fresh querier per run, prometheus warm (GOGC=10, GOMEMLIMIT=1MiB: RSS follows the live heap) one second after a forced GC"
python3 - "$TMP" "$REPEAT" "${QUERIES[@]}" <<'PY'
import json, math, os, statistics, sys

tmp, repeat, queries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
exprs = dict(q.split("\t", 1) for q in queries)
rows = {}
for line in open(os.path.join(tmp, "latency.tsv")):
    server, name, rng, code, lat, msg = line.rstrip("\n").split("\t")
    rows[(server, name, rng)] = dict(
        code=code,
        lat=[float(x) for x in lat.split(",") if x],
        peak=[],
        msg=msg,
    )
for line in open(os.path.join(tmp, "memory.tsv")):
    server, name, rng, peaks = line.rstrip("\n").split("\t")
    if (server, name, rng) in rows:
        rows[(server, name, rng)]["peak"] = [int(x) for x in peaks.split(",") if x]

def load(server, name, rng):
    try:
        with open(os.path.join(tmp, "answers", f"{server}-{name}-{rng}.json")) as f:
            return json.load(f)
    except Exception:
        return None

def fnum(v):
    return float(v)  # "NaN", "+Inf" parse too

def compare(a, b):
    """Agreement of two query_range answers, as a short text."""
    def series(d):
        return {json.dumps(s["metric"], sort_keys=True): {t: v for t, v in s["values"]} for s in d["data"]["result"]}
    sa, sb = series(a), series(b)
    if not sa and not sb:
        return "both empty", True
    bad = total = 0
    worst = 0.0
    for k in set(sa) | set(sb):
        pa, pb = sa.get(k, {}), sb.get(k, {})
        for t in set(pa) | set(pb):
            total += 1
            if t not in pa or t not in pb:
                bad += 1
                continue
            x, y = fnum(pa[t]), fnum(pb[t])
            if x == y or (math.isnan(x) and math.isnan(y)):
                continue
            if abs(x - y) > 1e-6 * max(abs(x), abs(y)):
                bad += 1
                if math.isfinite(x) and math.isfinite(y):
                    worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
                else:
                    worst = math.inf
    head = "same series" if set(sa) == set(sb) else f"series {len(sa)} vs {len(sb)}"
    if bad == 0:
        return f"agree ({len(sa)} series, {total} points)", True
    return f"{head}, {bad} of {total} points differ (max rel. diff {worst:.2g})", False

names = [q.split("\t", 1)[0] for q in queries]
ranges = []
for (server, name, rng) in rows:
    if rng not in ranges:
        ranges.append(rng)

def mib(kib):
    return kib / 1024

hdr = f"{'query':<11} {'range':>5} {'tm ms':>9} {'prom ms':>9} {'lat x':>6} {'tm MiB':>8} {'prom MiB':>8} {'mem x':>6} {'peakSamples':>11}  answers"
print()
print(hdr)
print("-" * len(hdr))
lat_ratios, mem_ratios, failures = [], [], []
for name in names:
    for rng in ranges:
        t, p = rows.get(("tidemark", name, rng)), rows.get(("prometheus", name, rng))
        if t is None or p is None:
            continue
        cells = []
        ok = t["code"] == "200" and p["code"] == "200" and t["lat"] and p["lat"] and t["peak"] and p["peak"]
        tl = statistics.median(t["lat"]) if t["lat"] else None
        pl = statistics.median(p["lat"]) if p["lat"] else None
        # Peaks below 64 KiB are /proc noise; clamp so that ratios stay finite.
        tp = max(statistics.median(t["peak"]), 64) if t["peak"] else None
        pp = max(statistics.median(p["peak"]), 64) if p["peak"] else None
        pa = load("prometheus", name, rng)
        peak_samples = ""
        try:
            peak_samples = str(pa["data"]["stats"]["samples"]["peakSamples"])
        except Exception:
            pass
        if ok:
            lr, mr = tl / pl, tp / pp
            lat_ratios.append(lr)
            mem_ratios.append(mr)
            agree, _ = compare(load("tidemark", name, rng), pa)
            print(f"{name:<11} {rng:>5} {tl:>9.1f} {pl:>9.1f} {lr:>6.2f} {mib(tp):>8.1f} {mib(pp):>8.1f} {mr:>6.2f} {peak_samples:>11}  {agree}")
        else:
            why = []
            for server, r in (("tidemark", t), ("prometheus", p)):
                if r["code"] != "200" or not r["lat"]:
                    why.append(f"{server} FAILED (HTTP {r['code']})")
                    failures.append(f"{name} {rng} on {server}: HTTP {r['code']} {r['msg'][:160]}")
            f = lambda x, w, fmt: (format(x, fmt) if x is not None else "-").rjust(w)
            print(f"{name:<11} {rng:>5} {f(tl, 9, '.1f')} {f(pl, 9, '.1f')} {'-':>6} {f(tp and mib(tp), 8, '.1f')} {f(pp and mib(pp), 8, '.1f')} {'-':>6} {peak_samples:>11}  {'; '.join(why)}")

def gmean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))

print()
if lat_ratios:
    n = len(lat_ratios)
    print(f"over {n} (query, range) pairs that succeeded on both servers:")
    print(f"  latency ratio tidemark/prometheus: geometric mean {gmean(lat_ratios):.3f}, median {statistics.median(lat_ratios):.3f}  (goal <= 0.5)")
    print(f"  memory ratio tidemark/prometheus:  geometric mean {gmean(mem_ratios):.3f}, median {statistics.median(mem_ratios):.3f}  (goal <= 0.3)")
else:
    print("no (query, range) pair succeeded on both servers")
if failures:
    print(f"{len(failures)} failed (query, range, server) runs, excluded from the ratios:")
    for f in failures:
        print(f"  {f}")
PY
