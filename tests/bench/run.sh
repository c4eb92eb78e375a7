#!/usr/bin/env bash
# Reproducible proxy benchmark (ARCHITECTURE.md §7): on this machine, side by side, the mock
# provider reached directly, through nginx (plain reverse proxy) and through mnemom-gateway (AIP on,
# and AIP off). Prints a markdown table and writes it to target/bench/report.md.
#
#   tests/bench/run.sh                    # everything (installs nginx + wrk if missing, builds release)
#   BENCH_DURATION=5 tests/bench/run.sh   # shorter timed runs
#
# See tests/bench/README.md for what is measured and how to read the numbers. Every process this
# script starts is stopped on exit; all traffic goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

# ---------------------------------------------------------------------------------------------
# Knobs
DURATION=${BENCH_DURATION:-10}              # seconds of each timed wrk run (c=1 latency; c=32 RPS + CPU)
WARMUP=${BENCH_WARMUP:-2}                   # seconds of wrk warm-up before each timed run
ROUNDS=${BENCH_LATENCY_ROUNDS:-3}           # interleaved c=1 rounds; the median p50 is reported
CONNS=${BENCH_CONNS:-32}                    # concurrency of the RPS and CPU runs
TTFB_REQUESTS=${BENCH_TTFB_REQUESTS:-200}   # sequential streamed requests for time to first byte
TTFB_DELAY_MS=${BENCH_TTFB_CHUNK_DELAY_MS:-50}
TTFB_CHUNK=${BENCH_TTFB_CHUNK:-bytes:8192}  # mock framing for the TTFB stream (3 frames, 100 ms)
STREAMS=${BENCH_STREAMS:-1000}              # concurrent open streams for the RSS test
STREAM_DELAY_MS=${BENCH_STREAM_CHUNK_DELAY_MS:-500}
HOLD=${BENCH_HOLD_SECS:-5}                  # seconds all streams are held open while RSS is sampled
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-2}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
SKIP_INSTALL=${BENCH_SKIP_INSTALL:-0}
PERF=${BENCH_PERF:-0}                       # 1: also profile both gateways with perf (raw/perf-*.txt)

OUT=$ROOT/target/bench
WORK=$OUT/run
RAW=$OUT/raw
REPORT=$OUT/report.md
TARGETS=(direct nginx gateway gateway-noaip)
PROXIES=(nginx gateway gateway-noaip)
declare -A LABEL=(
    [direct]="direct (mock)"
    [nginx]="nginx ($NGINX_WORKERS workers)"
    [gateway]="mnemom-gateway (AIP on)"
    [gateway-noaip]="mnemom-gateway (AIP off)"
)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }  # calc EXPR [DECIMALS]
# kv KEY TEXT: the value of KEY=... in a line of space-separated (or newline-separated) pairs.
kv() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p" | head -n1; }
is_num() { [[ ${1:-} =~ ^-?[0-9]+(\.[0-9]+)?$ ]]; }
# line_val KEY TEXT [DEFAULT]: the value of a KEY=... line in TEXT (the mnemom-bench output).
line_val() { local x; x=$(sed -n "s/^$1=//p" <<<"$2" | head -n1); echo "${x:-${3:-}}"; }

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is recorded and stopped on exit.
STARTED=()
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        rm -f "/tmp/perf-$pid.map" # written by jit_perf_map (BENCH_PERF=1); a copy is in raw/
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Tools
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [[ $PERF == 1 ]]; then
        command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
        command -v readelf >/dev/null 2>&1 || missing+=(binutils)
    fi
    if ((${#missing[@]})); then
        [[ $SKIP_INSTALL == 1 ]] && die "missing tools: ${missing[*]} (BENCH_SKIP_INSTALL=1)"
        command -v apt-get >/dev/null 2>&1 || die "missing tools: ${missing[*]}, and no apt-get to install them"
        local sudo=()
        [[ $(id -u) -ne 0 ]] && sudo=(sudo)
        log "installing ${missing[*]} (Debian packages)"
        "${sudo[@]}" apt-get update -qq >/dev/null
        # Debian's postinst may try to start nginx on :80; that service is not used here.
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

build() {
    if [[ $SKIP_BUILD == 1 ]]; then
        log "skipping the build (BENCH_SKIP_BUILD=1)"
    else
        log "building mnemom-gateway and mock-provider (release; the first build compiles wasmtime, ~10 min)"
        cargo build --release -p mnemom-gateway -p mnemom-mock-provider >&2
        if cargo metadata --no-deps --format-version 1 2>/dev/null | grep -q '"name":"mnemom-bench"'; then
            log "building mnemom-bench (release)"
            cargo build --release -p mnemom-bench >&2
        else
            # Not (yet) a workspace member: build it in a scratch workspace with the same
            # dependency versions (the workspace's Cargo.lock) and lints.
            log "building mnemom-bench (release) in a scratch workspace (tests/bench is not a workspace member)"
            local ws=$OUT/ws
            rm -rf "$ws/bench" && mkdir -p "$ws"
            cp -r "$ROOT/tests/bench" "$ws/bench"
            awk 'BEGIN { skip = 0 }
                 /^members *= *\[/ { print "members = [\"bench\"]"; if ($0 !~ /\]/) skip = 1; next }
                 skip == 1 { if ($0 ~ /\]/) skip = 0; next }
                 { print }' "$ROOT/Cargo.toml" >"$ws/Cargo.toml"
            cp "$ROOT/Cargo.lock" "$ws/Cargo.lock"
            (cd "$ws" && cargo build --release -p mnemom-bench >&2)
            mkdir -p "$ROOT/target/release"
            cp "$ws/target/release/mnemom-bench" "$ROOT/target/release/mnemom-bench"
        fi
    fi
    GATEWAY_BIN=${GATEWAY_BIN:-$ROOT/target/release/mnemom-gateway}
    MOCK_BIN=${MOCK_BIN:-$ROOT/target/release/mock-provider}
    BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/mnemom-bench}
    for bin in "$GATEWAY_BIN" "$MOCK_BIN" "$BENCH_BIN"; do
        [[ -x $bin ]] || die "$bin is missing"
    done
}

# ---------------------------------------------------------------------------------------------
# Ports and readiness
USED_PORTS=" "
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $port "* ]] && continue
        # Nothing answers a connect on it (a listener would accept).
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return 0
        fi
    done
    die "no free loopback port found"
}

# wait_http URL EXPECTED_STATUS SECONDS: polls every 10 ms; prints the milliseconds it took.
wait_http() {
    local url=$1 want=$2 limit=$3 start now code
    start=$(date +%s%N)
    while :; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
        now=$(date +%s%N)
        if [[ $code == "$want" ]]; then
            echo $(((now - start) / 1000000))
            return 0
        fi
        (((now - start) / 1000000000 >= limit)) && return 1
        sleep 0.01
    done
}

# ---------------------------------------------------------------------------------------------
# /proc readings
CLK_TCK=$(getconf CLK_TCK)
# pids_of NAME: the process ids to account for a target (nginx: master and workers).
pids_of() {
    case $1 in
        nginx) echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')" ;;
        gateway) echo "$GW_PID" ;;
        gateway-noaip) echo "$GW_NOAIP_PID" ;;
        direct | mock) echo "$MOCK_PID" ;;
    esac
}
# cpu_ticks PID...: utime + stime (+ reaped children's) of every thread, summed, in clock ticks.
cpu_ticks() {
    local total=0 pid stat fields
    for pid in "$@"; do
        [[ -r /proc/$pid/stat ]] || continue
        stat=$(<"/proc/$pid/stat")
        read -ra fields <<<"${stat##*) }" # fields[0] is field 3 (state); utime is field 14
        total=$((total + fields[11] + fields[12] + fields[13] + fields[14]))
    done
    echo "$total"
}
# rss_kib PID...: summed VmRSS.
rss_kib() {
    local total=0 pid value
    for pid in "$@"; do
        value=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${value:-0}))
    done
    echo "$total"
}
mib() { calc "$1 / 1024" 1; }
# ctx_switches PID...: voluntary + involuntary context switches of every thread, summed.
ctx_switches() {
    local pid
    for pid in "$@"; do cat "/proc/$pid/task/"*/status 2>/dev/null; done | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'
}
# CPU of everything this run owns: the script and its reaped children (wrk, curl, mnemom-bench)
# plus the long-lived servers.
our_ticks() {
    # shellcheck disable=SC2046
    cpu_ticks $$ "$MOCK_PID" $(pids_of nginx) "$GW_PID" "$GW_NOAIP_PID"
}
# machine_ticks: "busy total steal softirq" ticks of all CPUs from /proc/stat. busy is user + nice +
# system, which is what per-process utime/stime add up to: with IRQ time accounting (as here)
# the kernel charges interrupt and softirq time (much of loopback TCP receive work) to no process.
machine_ticks() { awk '/^cpu / { busy = $2 + $3 + $4; total = 0; for (i = 2; i <= NF; i++) total += $i; print busy, total, $9, $7 + $8 }' /proc/stat; }

# ---------------------------------------------------------------------------------------------
# Start everything
start_mock() {
    log "starting the mock provider"
    : >"$RAW/mock.log" # exists before the child opens it (the loop below reads it at once)
    "$MOCK_BIN" --listen 127.0.0.1:0 >>"$RAW/mock.log" 2>&1 &
    MOCK_PID=$!
    STARTED+=("$MOCK_PID")
    local addr=""
    for _ in $(seq 200); do
        addr=$(sed -n 's/^listening on //p' "$RAW/mock.log" 2>/dev/null | head -n1 || true)
        [[ -n $addr ]] && break
        kill -0 "$MOCK_PID" 2>/dev/null || die "mock-provider exited: $(cat "$RAW/mock.log")"
        sleep 0.05
    done
    [[ -n $addr ]] || die "mock-provider did not start"
    MOCK_ADDR=$addr
}

start_nginx() {
    local port
    port=$(free_port)
    local dir=$WORK/nginx
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# Plain reverse proxy in front of the mock: the floor for one HTTP hop.
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile 16384;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream mock {
        server $MOCK_ADDR;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        # Non-stream: nginx's default buffering.
        location /anthropic/ {
            proxy_pass http://mock/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        # Streams: no buffering.
        location /anthropic-stream/ {
            proxy_pass http://mock/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
    log "starting nginx ($NGINX_WORKERS workers) on 127.0.0.1:$port"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' >"$RAW/nginx.log" 2>&1 &
    NGINX_PID=$!
    STARTED+=("$NGINX_PID")
    NGINX_ADDR=127.0.0.1:$port
    wait_http "http://$NGINX_ADDR/anthropic/v1/models" 200 10 >/dev/null || die "nginx did not start: $(cat "$RAW/nginx.log" "$dir/error.log" 2>/dev/null)"
}

# start_gateway NAME AIP_ENABLED: sets GW_PID/GW_NOAIP_PID, *_ADDR and STARTUP_MS[NAME].
declare -A STARTUP_MS
start_gateway() {
    local name=$1 aip=$2 port pid ms
    port=$(free_port)
    mkdir -p "$WORK/$name"
    log "starting mnemom-gateway ($name, AIP_ENABLED=$aip) on 127.0.0.1:$port"
    env HOST=127.0.0.1 PORT="$port" LOG_LEVEL=info AIP_ENABLED="$aip" \
        ANTHROPIC_BASE_URL="http://$MOCK_ADDR" OPENAI_BASE_URL="http://$MOCK_ADDR" GEMINI_BASE_URL="http://$MOCK_ADDR" \
        MNEMOM_DATA_DIR="$WORK/$name" MNEMOM_PLUGIN_CACHE_DIR="$WORK/plugin-cache" \
        MNEMOM_SHUTDOWN_GRACE_SECONDS=2 \
        "$GATEWAY_BIN" serve >"$RAW/$name.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    ms=$(wait_http "http://127.0.0.1:$port/health/ready" 200 60) || die "$name did not become ready: $(tail -n 20 "$RAW/$name.log")"
    STARTUP_MS[$name]=$ms
    if [[ $name == gateway ]]; then
        GW_PID=$pid GW_ADDR=127.0.0.1:$port
    else
        GW_NOAIP_PID=$pid GW_NOAIP_ADDR=127.0.0.1:$port
    fi
}

# Compiles the plugins once into the cache directory so the measured gateways start warm.
warm_plugin_cache() {
    local port pid
    port=$(free_port)
    log "warming the plugin artifact cache (one throw-away gateway start)"
    env HOST=127.0.0.1 PORT="$port" LOG_LEVEL=warn MNEMOM_DATA_DIR="$WORK/warm" MNEMOM_PLUGIN_CACHE_DIR="$WORK/plugin-cache" \
        ANTHROPIC_BASE_URL="http://$MOCK_ADDR" MNEMOM_SHUTDOWN_GRACE_SECONDS=1 \
        "$GATEWAY_BIN" serve >"$RAW/warm.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    COLD_STARTUP_MS=$(wait_http "http://127.0.0.1:$port/health/ready" 200 120) || die "gateway did not start: $(tail -n 20 "$RAW/warm.log")"
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    wait "$pid" 2>/dev/null || true
}

# URLs per target
url_of() { # url_of TARGET [stream]
    case $1 in
        direct) echo "http://$MOCK_ADDR/v1/messages" ;;
        nginx) if [[ ${2:-} == stream ]]; then echo "http://$NGINX_ADDR/anthropic-stream/v1/messages"; else echo "http://$NGINX_ADDR/anthropic/v1/messages"; fi ;;
        gateway) echo "http://$GW_ADDR/anthropic/v1/messages" ;;
        gateway-noaip) echo "http://$GW_NOAIP_ADDR/anthropic/v1/messages" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Measurements
declare -A R      # R[metric:target] = value
declare -A NOTE   # NOTE[target] = problems seen

note() { NOTE[$1]="${NOTE[$1]:-}$2; "; }

# run_wrk TARGET THREADS CONNS SECONDS TAG: runs wrk (output kept in raw/), prints its BENCH line.
run_wrk() {
    local target=$1 threads=$2 conns=$3 seconds=$4 tag=$5 out
    out=$RAW/wrk-$tag-$target.txt
    BENCH_BODY_FILE=$WORK/body.json \
        wrk -t"$threads" -c"$conns" -d"${seconds}s" --timeout 10s --latency -s "$ROOT/tests/bench/wrk.lua" "$(url_of "$target")" >"$out" 2>&1 || true
    grep '^BENCH ' "$out" | tail -n1
}

wrk_errors() { # total errors in a BENCH line
    local line=$1
    echo $(($(kv connect_errors "$line") + $(kv read_errors "$line") + $(kv write_errors "$line") + $(kv status_errors "$line") + $(kv timeouts "$line")))
}

sanity_check() {
    local target=$1 headers code
    headers=$(curl -s -D - -o "$RAW/sanity-$target.json" -w '%{http_code}' --max-time 10 \
        -H 'x-api-key: bench-key' -H 'content-type: application/json' --data-binary "@$WORK/body.json" "$(url_of "$target")" || true)
    code=${headers: -3}
    if [[ $code != 200 ]]; then
        note "$target" "sanity request answered $code"
        log "WARNING: $target answered $code to the benchmark request: $(head -c 300 "$RAW/sanity-$target.json")"
        return 1
    fi
    if [[ $target == gateway* ]] && ! grep -qi '^x-smoltbot-agent:' <<<"$headers"; then
        note "$target" "no x-smoltbot-agent header"
    fi
    return 0
}

# measure_latency TARGET ROUND: one wrk -c1 run; the rounds are interleaved across targets and
# the reported p50/p90/p99 are the medians over rounds.
measure_latency() {
    local target=$1 round=$2 line errs pids cs_before cs_after
    ((round > 1)) || run_wrk "$target" 1 1 "$WARMUP" warm-c1 >/dev/null
    pids=$(pids_of "$target")
    # shellcheck disable=SC2086
    cs_before=$(ctx_switches $pids)
    line=$(run_wrk "$target" 1 1 "$DURATION" "c1-r$round")
    # shellcheck disable=SC2086
    cs_after=$(ctx_switches $pids)
    [[ -n $line ]] || { note "$target" "wrk c=1 (round $round) printed no summary"; return; }
    ((round > 1)) || R[cs_c1:$target]=$(calc "($cs_after - $cs_before) / $(kv requests "$line")" 2)
    R[p50_r$round:$target]=$(kv p50_us "$line")
    R[p90_r$round:$target]=$(kv p90_us "$line")
    R[p99_r$round:$target]=$(kv p99_us "$line")
    errs=$(wrk_errors "$line")
    ((errs == 0)) || note "$target" "c=1 run (round $round): $errs errors"
}

median() { # median VALUE...
    printf '%s\n' "$@" | grep -E '^-?[0-9.]+$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

finish_latency() {
    local target=$1 q r vals
    for q in p50 p90 p99; do
        vals=()
        for r in $(seq "$ROUNDS"); do vals+=("${R[${q}_r$r:$target]:-}"); done
        R[$q:$target]=$(median "${vals[@]}")
        [[ -n ${R[$q:$target]} ]] || unset "R[$q:$target]"
    done
    vals=()
    for r in $(seq "$ROUNDS"); do vals+=("${R[p50_r$r:$target]:-?}"); done
    R[p50_rounds:$target]=$(IFS=/; echo "${vals[*]}")
}

# The c=32 run: requests per second, and the proxy's CPU time per request (clock ticks of its
# processes before and after, divided by the requests wrk completed).
measure_rps() {
    local target=$1 line errs pids before after mock_before mock_after n cs_before cs_after
    run_wrk "$target" 2 "$CONNS" "$WARMUP" warm-c32 >/dev/null
    pids=$(pids_of "$target")
    # shellcheck disable=SC2086
    cs_before=$(ctx_switches $pids)
    # shellcheck disable=SC2086
    before=$(cpu_ticks $pids)
    mock_before=$(cpu_ticks "$MOCK_PID")
    line=$(run_wrk "$target" 2 "$CONNS" "$DURATION" c32)
    sleep 1 # let in-flight work and background extraction finish inside the window
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)
    # shellcheck disable=SC2086
    cs_after=$(ctx_switches $pids)
    mock_after=$(cpu_ticks "$MOCK_PID")
    [[ -n $line ]] || { note "$target" "wrk c=$CONNS printed no summary"; return; }
    n=$(kv requests "$line")
    R[cs_c32:$target]=$(calc "($cs_after - $cs_before) / $n" 2)
    ((n > 0)) || { note "$target" "c=$CONNS run completed no request"; return; }
    R[rps:$target]=$(calc "$n / ($(kv duration_us "$line") / 1e6)" 0)
    R[p50c32:$target]=$(kv p50_us "$line")
    R[cpu_requests:$target]=$n
    R[cpu_ticks:$target]=$((after - before))
    R[cpu:$target]=$(calc "($after - $before) / $CLK_TCK / $n * 1e6" 1)
    R[mock_cpu:$target]=$(calc "($mock_after - $mock_before) / $CLK_TCK / $n * 1e6" 1)
    ((n >= 20000)) || note "$target" "CPU over only $n requests (tick resolution $((1000 / CLK_TCK)) ms): raise BENCH_DURATION"
    errs=$(wrk_errors "$line")
    ((errs == 0)) || note "$target" "c=$CONNS run: $errs errors"
}

measure_ttfb() {
    local target=$1 out
    out=$("$BENCH_BIN" ttfb --url "$(url_of "$target" stream)" --requests "$TTFB_REQUESTS" --warmup 10 --timeout-secs 30 \
        --header 'x-api-key: bench-key' --header 'content-type: application/json' \
        --header "x-mock-chunk-delay-ms: $TTFB_DELAY_MS" --header "x-mock-chunk: $TTFB_CHUNK" \
        --body-file "$WORK/body-stream.json" 2>"$RAW/ttfb-$target.err" || true)
    echo "$out" >"$RAW/ttfb-$target.txt"
    local ok
    ok=$(sed -n 's/^ok=//p' <<<"$out")
    R[ttfb:$target]=$(sed -n 's/^ttfb_p50_us=//p' <<<"$out")
    R[ttfb_p90:$target]=$(sed -n 's/^ttfb_p90_us=//p' <<<"$out")
    R[ttfb_total:$target]=$(sed -n 's/^total_p50_ms=//p' <<<"$out")
    R[ttfb_ok:$target]=${ok:-0}
    [[ ${ok:-0} == "$TTFB_REQUESTS" ]] || note "$target" "TTFB: ${ok:-0}/$TTFB_REQUESTS ok ($(sed -n 's/^last_error=//p' <<<"$out"; cat "$RAW/ttfb-$target.err"))"
    [[ $(sed -n 's/^not_sse=//p' <<<"$out") == 0 ]] || note "$target" "TTFB: a first chunk was not SSE"
}

measure_streams() {
    local target=$1 out pid_args=() pid
    for pid in $(pids_of "$target"); do pid_args+=(--pid "$pid"); done
    out=$("$BENCH_BIN" streams --url "$(url_of "$target" stream)" --count "$STREAMS" "${pid_args[@]}" \
        --hold-secs "$HOLD" --open-parallel 64 --open-timeout-secs 60 \
        --header 'x-api-key: bench-key' --header 'content-type: application/json' \
        --header "x-mock-chunk-delay-ms: $STREAM_DELAY_MS" \
        --body-file "$WORK/body-stream.json" 2>"$RAW/streams-$target.err" || true)
    echo "$out" >"$RAW/streams-$target.txt"
    local s200 peak before
    s200=$(sed -n 's/^status_200=//p' <<<"$out")
    peak=$(sed -n 's/^rss_peak_all_open_kib=//p' <<<"$out")
    before=$(sed -n 's/^rss_before_kib=//p' <<<"$out")
    R[streams_200:$target]=${s200:-0}
    R[streams_failed:$target]=$(sed -n 's/^failed=//p' <<<"$out")
    R[streams_open_s:$target]=$(sed -n 's/^open_seconds=//p' <<<"$out")
    R[streams_ended:$target]=$(($(line_val ended_before_hold "$out" 0) + $(line_val ended_during_hold "$out" 0)))
    if is_num "$peak" && ((peak > 0)); then
        R[rss_streams:$target]=$(mib "$peak")
        R[rss_before_streams:$target]=$(mib "${before:-0}")
    fi
    [[ ${s200:-0} == "$STREAMS" ]] || note "$target" "streams: ${s200:-0}/$STREAMS got 200 ($(sed -n 's/^first_failure=//p' <<<"$out"; cat "$RAW/streams-$target.err"))"
    [[ ${R[streams_ended:$target]} == 0 ]] || note "$target" "streams: ${R[streams_ended:$target]} ended while they should have been open"
}

# ---------------------------------------------------------------------------------------------
# Optional profile (BENCH_PERF=1)

# jit_perf_map PID: writes /tmp/perf-PID.map so perf can name the plugins' compiled wasm functions
# (wasmtime's JIT code is anonymous memory): every r-x anonymous mapping whose size equals the
# .text of a cached artifact gets that artifact's symbols (`wasm[0]::function[N]`, with names
# when the component kept its name section), prefixed by the first 8 hex of the plugin's sha256.
jit_perf_map() {
    local pid=$1 map=/tmp/perf-$1.map f size range perms rest start end value sz type name
    : >"$map"
    declare -A text_of=()
    for f in "$WORK"/plugin-cache/*.cwasm; do
        [[ -e $f ]] || continue
        size=$(readelf -S -W "$f" | sed -n 's/.*\] \.text *PROGBITS *[0-9a-f]* [0-9a-f]* \([0-9a-f]*\) .*/\1/p')
        [[ -n $size ]] && text_of[$((16#$size))]=$f
    done
    while read -r range perms _ _ inode rest; do
        [[ $perms == r-xp && $inode == 0 && -z ${rest:-} ]] || continue
        start=$((16#${range%-*}))
        end=$((16#${range#*-}))
        f=${text_of[$((end - start))]:-}
        [[ -n $f ]] || continue
        local plugin
        plugin=$(basename "$f" | cut -c1-8)
        while read -r _ value sz type _ _ _ name; do
            [[ $type == FUNC ]] || continue
            printf '%x %x plugin-%s::%s\n' $((start + 16#$value)) "$sz" "$plugin" "$name"
        done < <(readelf -s -W "$f") >>"$map"
    done <"/proc/$pid/maps"
}

profile_target() {
    local target=$1 pids pid data out
    pids=$(pids_of "$target" | xargs | tr ' ' ',')
    pid=${pids%%,*}
    data=$RAW/perf-$target.data
    out=$RAW/perf-$target.txt
    [[ $target == gateway* ]] && jit_perf_map "$pid"
    (BENCH_BODY_FILE=$WORK/body.json wrk -t2 -c"$CONNS" -d"$((DURATION + 2))s" -s "$ROOT/tests/bench/wrk.lua" "$(url_of "$target")" >"$RAW/wrk-perf-$target.txt" 2>&1 &)
    sleep 1
    perf record -q -e cpu-clock -F 999 -g -p "$pids" -o "$data" -- sleep "$DURATION" >/dev/null 2>&1 || { log "perf record failed for $target"; return; }
    sleep 2
    cp "/tmp/perf-$pid.map" "$RAW/perf-$target.map" 2>/dev/null || true
    {
        echo "# perf profile of $target (cpu-clock, 999 Hz, ${DURATION}s of wrk -c$CONNS); wasm plugin code is named plugin-<sha8>::wasm[..]"
        [[ $target == gateway* ]] && { curl -s "http://$(url_of "$target" | cut -d/ -f3)/health/ready" | tr ',' '\n' | grep -E '"(name|sha256)"' | paste - - || true; }
        echo; echo "## by shared object"
        perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/ *$//' | head -n 12
        echo; echo "## by symbol (self time)"
        perf report -i "$data" --stdio --no-children --sort dso,sym -g none --percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/ *$//' | cut -c1-200 | head -n 80
    } >"$out"
    log "profile of $target: ${out#"$ROOT"/}"
}

# ---------------------------------------------------------------------------------------------
# Report
v() { local x=${R[$1]:-}; [[ -n $x ]] && echo "$x" || echo "n/a"; }
verdict() { # verdict CONDITION_EXPR (awk) -> PASS/FAIL, n/a when an input is missing
    if [[ $1 == *n/a* ]]; then echo "n/a"; elif awk "BEGIN { exit !($1) }"; then echo "PASS"; else echo "FAIL"; fi
}

report() {
    local t added ratio
    local direct_p50=${R[p50:direct]:-} direct_ttfb=${R[ttfb:direct]:-}
    for t in "${TARGETS[@]}"; do
        if [[ $t != direct ]] && is_num "$direct_p50" && is_num "${R[p50:$t]:-}"; then
            R[added:$t]=$(calc "${R[p50:$t]} - $direct_p50" 1)
        fi
        if [[ $t != direct ]] && is_num "$direct_ttfb" && is_num "${R[ttfb:$t]:-}"; then
            R[ttfb_added:$t]=$(calc "${R[ttfb:$t]} - $direct_ttfb" 1)
        fi
    done
    {
        echo "# mnemom-gateway proxy benchmark"
        echo
        echo "$(date -u '+%Y-%m-%d %H:%M UTC') · $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')) · Linux $(uname -r)"
        echo "· commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$( [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n1) ]] && echo ' (+ uncommitted changes)')"
        echo "· $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') · $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}') · $(rustc --version 2>/dev/null | awk '{print $1, $2}')"
        echo
        echo "Upstream: mock-provider (release) on loopback, Anthropic fixture \`messages-thinking-signature-text.json\` (4.6 KB)."
        echo "CPU: utime+stime of the proxy's processes (all threads; nginx master+workers) across the c=$CONNS run, divided by the requests it completed."
        echo "Latency: wrk -t1 -c1 -d${DURATION}s p50 (median of $ROUNDS interleaved rounds). RPS: wrk -t2 -c$CONNS -d${DURATION}s. TTFB: $TTFB_REQUESTS sequential streamed requests"
        echo "(chunk delay ${TTFB_DELAY_MS} ms, \`$TTFB_CHUNK\`), request sent → first body byte, p50. Streams: $STREAMS concurrent SSE responses (chunk delay ${STREAM_DELAY_MS} ms) held ${HOLD} s."
        echo
        echo "| target | CPU µs/req | p50 c=1 µs | added p50 µs | RPS c=$CONNS | SSE TTFB p50 µs | TTFB − direct µs | idle RSS MiB | RSS $STREAMS streams MiB |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        for t in "${TARGETS[@]}"; do
            if [[ $t == direct ]]; then
                echo "| ${LABEL[$t]} | ($(v mock_cpu:$t) mock) | $(v p50:$t) | – | $(v rps:$t) | $(v ttfb:$t) | – | – | – |"
            else
                echo "| ${LABEL[$t]} | $(v cpu:$t) | $(v p50:$t) | $(v added:$t) | $(v rps:$t) | $(v ttfb:$t) | $(v ttfb_added:$t) | $(v rss_idle:$t) | $(v rss_streams:$t) |"
            fi
        done
        echo
        echo "## Targets (ARCHITECTURE.md §7)"
        echo
        echo "| target | measured | limit | result |"
        echo "|---|---|---|---|"
        local n_cpu=${R[cpu:nginx]:-n/a} n_added=${R[added:nginx]:-n/a} g
        for g in gateway gateway-noaip; do
            local gl=${LABEL[$g]} c=${R[cpu:$g]:-n/a} a=${R[added:$g]:-n/a} ta=${R[ttfb_added:$g]:-n/a}
            if is_num "$c" && is_num "$n_cpu" && [[ $n_cpu != 0.0 ]]; then ratio=$(calc "$c / $n_cpu" 2); else ratio=n/a; fi
            echo "| CPU per request, $gl vs nginx | ${ratio}× ($c vs $n_cpu µs) | ≤ 2× | $(verdict "$ratio <= 2") |"
            if is_num "$a" && is_num "$n_added" && awk "BEGIN { exit !($n_added > 0) }"; then ratio=$(calc "$a / $n_added" 2); else ratio=n/a; fi
            local p50_ratio=n/a
            if is_num "${R[p50:$g]:-}" && is_num "${R[p50:nginx]:-}"; then p50_ratio=$(calc "${R[p50:$g]} / ${R[p50:nginx]}" 2); fi
            echo "| added p50 at c=1, $gl vs nginx | ${ratio}× ($a vs $n_added µs; raw p50 ratio ${p50_ratio}×) | ≤ 1.5× | $(verdict "$ratio <= 1.5") |"
            echo "| SSE first byte, $gl − direct | $ta µs | ≤ 500 µs | $(verdict "$ta <= 500") |"
            echo "| idle RSS, $gl | $(v rss_idle:$g) MiB | < 64 MiB | $(verdict "$(v rss_idle:$g) < 64") |"
            local s_ok=n/a
            [[ -n ${R[streams_200:$g]:-} ]] && s_ok=$([[ ${R[streams_200:$g]} == "$STREAMS" && ${R[streams_ended:$g]:-1} == 0 ]] && echo 1 || echo 0)
            echo "| $STREAMS open streams, $gl | $(v rss_streams:$g) MiB peak, ${R[streams_200:$g]:-0}/$STREAMS status 200 | < 256 MiB, all 200 | $(verdict "$(v rss_streams:$g) < 256 && $s_ok == 1") |"
            echo "| start-up with cached plugins, $gl | ${STARTUP_MS[$g]:-n/a} ms | < 1000 ms | $(verdict "${STARTUP_MS[$g]:-n/a} < 1000") |"
        done
        echo
        echo "## Details"
        echo
        echo "| target | c=1 p50 per round µs | p90 / p99 c=1 µs | p50 c=$CONNS µs | c=$CONNS run: requests, CPU ticks | mock CPU µs/req in that run | context switches/req c=1, c=$CONNS | TTFB p90 µs | stream total p50 ms | streams: RSS before → peak MiB, open s | notes |"
        echo "|---|---|---|---:|---|---:|---|---:|---:|---|---|"
        for t in "${TARGETS[@]}"; do
            local streams_detail
            streams_detail="$(v rss_before_streams:$t) → $(v rss_streams:$t), $(v streams_open_s:$t)"
            [[ $t == direct ]] && streams_detail="–"
            echo "| ${LABEL[$t]} | $(v p50_rounds:$t) | $(v p90:$t) / $(v p99:$t) | $(v p50c32:$t) | $(v cpu_requests:$t), $(v cpu_ticks:$t) | $(v mock_cpu:$t) | $(v cs_c1:$t), $(v cs_c32:$t) | $(v ttfb_p90:$t) | $(v ttfb_total:$t) | $streams_detail | ${NOTE[$t]:-} |"
        done
        echo
        echo "Machine noise: processes other than this run's used ${FOREIGN_PCT:-?}% of the machine's CPU during the measurements (steal ${STEAL_PCT:-?}%; load average before ${LOAD_BEFORE:-?}, after ${LOAD_AFTER:-?}). Above ~5% the numbers are skewed: re-run on a quiet machine."
        echo "Interrupt + softirq time, charged to no process (so not in the CPU column), was ${IRQ_PCT:-?}% of the machine's CPU over the run."
        echo "Cold start (plugins compiled, empty cache): ${COLD_STARTUP_MS:-n/a} ms. Clock tick: $((1000 / CLK_TCK)) ms. File-descriptor limit: $(ulimit -n)."
        echo "nginx: $NGINX_WORKERS worker processes, access_log off, upstream keepalive 64, HTTP/1.1; /anthropic/ buffered (default), /anthropic-stream/ \`proxy_buffering off\`."
        echo "Raw outputs: \`target/bench/raw/\`."
    } >"$REPORT"
}

# ---------------------------------------------------------------------------------------------
main() {
    if ! ulimit -n 65536 2>/dev/null; then
        ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
        log "file-descriptor limit is $(ulimit -n) (65536 not allowed here)"
    fi
    (($(ulimit -n) >= STREAMS * 3 + 100)) || log "WARNING: ulimit -n $(ulimit -n) may be too low for $STREAMS streams"

    ensure_tools
    build
    rm -rf "$WORK" "$RAW"
    mkdir -p "$WORK" "$RAW"
    printf '%s' '{"model":"claude-sonnet-4-20250514","max_tokens":16000,"messages":[{"role":"user","content":"hi"}]}' >"$WORK/body.json"
    printf '%s' '{"model":"claude-sonnet-4-20250514","max_tokens":16000,"stream":true,"messages":[{"role":"user","content":"hi"}]}' >"$WORK/body-stream.json"

    start_mock
    start_nginx
    warm_plugin_cache
    start_gateway gateway true
    start_gateway gateway-noaip false
    log "mock $MOCK_ADDR · nginx $NGINX_ADDR · gateway $GW_ADDR · gateway (AIP off) $GW_NOAIP_ADDR"

    sleep 1
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    local ours_before machine_before
    ours_before=$(our_ticks)
    machine_before=$(machine_ticks)
    local t
    for t in "${PROXIES[@]}"; do
        # shellcheck disable=SC2046
        R[rss_idle:$t]=$(mib "$(rss_kib $(pids_of "$t"))")
    done
    log "idle RSS (MiB): nginx ${R[rss_idle:nginx]} · gateway ${R[rss_idle:gateway]} · gateway (AIP off) ${R[rss_idle:gateway-noaip]}"

    local ok_targets=()
    for t in "${TARGETS[@]}"; do
        if sanity_check "$t"; then ok_targets+=("$t"); fi
    done

    local round
    for round in $(seq "$ROUNDS"); do
        for t in "${ok_targets[@]}"; do
            log "latency c=1, round $round/$ROUNDS: $t"
            measure_latency "$t" "$round"
        done
    done
    for t in "${ok_targets[@]}"; do finish_latency "$t"; done
    for t in "${ok_targets[@]}"; do
        log "RPS and CPU per request, c=$CONNS: $t"
        measure_rps "$t"
    done
    for t in "${ok_targets[@]}"; do
        log "SSE time to first byte ($TTFB_REQUESTS requests): $t"
        measure_ttfb "$t"
    done
    for t in "${ok_targets[@]}"; do
        [[ $t == direct ]] && continue
        log "$STREAMS concurrent streams: $t"
        measure_streams "$t"
    done

    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    local ours_after machine_after
    ours_after=$(our_ticks)
    machine_after=$(machine_ticks)
    read -r b0 t0 s0 i0 <<<"$machine_before"
    read -r b1 t1 s1 i1 <<<"$machine_after"
    FOREIGN_PCT=$(calc "100 * (($b1 - $b0) - ($ours_after - $ours_before)) / ($t1 - $t0)" 1)
    STEAL_PCT=$(calc "100 * ($s1 - $s0) / ($t1 - $t0)" 1)
    IRQ_PCT=$(calc "100 * ($i1 - $i0) / ($t1 - $t0)" 1)
    if awk "BEGIN { exit !($FOREIGN_PCT > 10 || $STEAL_PCT > 10) }"; then
        log "WARNING: other processes used ${FOREIGN_PCT}% of the CPU (steal ${STEAL_PCT}%) during the measurements; the numbers are skewed"
    fi
    report
    if [[ $PERF == 1 ]]; then
        for t in gateway gateway-noaip nginx; do
            [[ " ${ok_targets[*]} " == *" $t "* ]] || continue
            log "profiling $t with perf (c=$CONNS, ${DURATION}s)"
            profile_target "$t" || log "WARNING: profiling $t failed"
        done
        echo "Profiles (BENCH_PERF=1): \`target/bench/raw/perf-*.txt\`." >>"$REPORT"
    fi
    cat "$REPORT"
    log "report written to ${REPORT#"$ROOT"/}"
}

main "$@"
