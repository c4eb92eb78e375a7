#!/usr/bin/env bash
# Reproducible proxy benchmark (ARCHITECTURE.md §7): on this machine, side by side, the mock
# provider reached directly, through nginx (plain reverse proxy) and through mnemom-gateway (AIP on,
# AIP off, and AIP on with PostgreSQL and Redis attached instead of the embedded SQLite and
# in-process cache). Prints a markdown table and writes it to target/bench/report.md.
#
#   tests/bench/run.sh                    # everything (installs nginx + wrk if missing, builds release)
#   BENCH_DURATION=5 tests/bench/run.sh   # shorter timed runs
#   BENCH_PG_REDIS=0 tests/bench/run.sh   # without the Postgres + Redis row
#
# See tests/bench/README.md for what is measured and how to read the numbers. Every process this
# script starts is stopped on exit; the Postgres + Redis row's fresh database is dropped and its
# Redis keys are deleted on exit; all traffic goes to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

# ---------------------------------------------------------------------------------------------
# Knobs
DURATION=${BENCH_DURATION:-10}              # seconds of each timed wrk run (c=1 latency; c=32 RPS + CPU)
WARMUP=${BENCH_WARMUP:-2}                   # seconds of wrk warm-up before each timed run
ROUNDS=${BENCH_LATENCY_ROUNDS:-3}           # interleaved c=1 rounds; the median p50 is reported
CPU_ROUNDS=${BENCH_CPU_ROUNDS:-3}           # interleaved c=32 rounds; the median CPU/req and RPS are reported
CONNS=${BENCH_CONNS:-32}                    # concurrency of the RPS and CPU runs
TTFB_REQUESTS=${BENCH_TTFB_REQUESTS:-200}   # sequential streamed requests for time to first byte
TTFB_DELAY_MS=${BENCH_TTFB_CHUNK_DELAY_MS:-50}
TTFB_CHUNK=${BENCH_TTFB_CHUNK:-bytes:8192}  # mock framing for the TTFB stream (3 frames, 100 ms)
STREAMS=${BENCH_STREAMS:-1000}              # concurrent open streams for the RSS test
STREAM_DELAY_MS=${BENCH_STREAM_CHUNK_DELAY_MS:-500}
HOLD=${BENCH_HOLD_SECS:-5}                  # seconds all streams are held open while RSS is sampled
NGINX_WORKERS=${BENCH_NGINX_WORKERS:-2}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
GATEWAY_BIN_GIVEN=${GATEWAY_BIN:-}          # a gateway binary from elsewhere: the report names it
SKIP_INSTALL=${BENCH_SKIP_INSTALL:-0}
PERF=${BENCH_PERF:-0}                       # 1: also profile the gateways with perf (raw/perf-*.txt)
# The gateway with PostgreSQL and Redis attached (AIP on): a fresh database created from
# BENCH_PG_ADMIN_URL's server (and dropped on exit), Redis keys under a fresh prefix (deleted on exit).
PG_REDIS=${BENCH_PG_REDIS:-1}               # 0: leave that row out
PG_ADMIN_URL=${BENCH_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}
BENCH_REDIS=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}

OUT=$ROOT/target/bench
WORK=$OUT/run
RAW=$OUT/raw
REPORT=$OUT/report.md
TARGETS=(direct nginx gateway gateway-noaip)
PROXIES=(nginx gateway gateway-noaip)
GATEWAYS=(gateway gateway-noaip)
if [[ $PG_REDIS == 1 ]]; then
    TARGETS+=(gateway-pg)
    PROXIES+=(gateway-pg)
    GATEWAYS+=(gateway-pg)
elif [[ $PG_REDIS != 0 ]]; then
    echo "BENCH_PG_REDIS must be 0 or 1" >&2
    exit 2
fi
declare -A LABEL=(
    [direct]="direct (mock)"
    [nginx]="nginx ($NGINX_WORKERS workers)"
    [gateway]="mnemom-gateway (AIP on)"
    [gateway-noaip]="mnemom-gateway (AIP off)"
    [gateway-pg]="mnemom-gateway (AIP on, Postgres + Redis)"
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
    STARTED=()
    cleanup_pg_redis
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# PostgreSQL and Redis for the gateway-pg row (BENCH_PG_REDIS=1). The servers are the machine's own
# and are not started or stopped here: the run creates a database and a key prefix of its own and
# removes both on exit (DROP DATABASE; SCAN + DEL of the prefix, never FLUSHALL).
PG_DB="" PG_URL="" PG_DB_CREATED=0 PG_POSTMASTER="" PG_VERSION=""
REDIS_PREFIX="" REDIS_USED=0 REDIS_PID="" REDIS_VERSION=""
GW_PG_PID="" GW_PG_ADDR=""
rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
# url_host URL: the host part of a postgres:// or redis:// URL.
url_host() {
    local h=${1#*://}
    h=${h%%[/?]*}
    h=${h##*@}
    if [[ $h == \[* ]]; then h=${h%%]*} h=${h#\[}; else h=${h%%:*}; fi
    echo "$h"
}
is_loopback() { [[ $1 == 127.* || $1 == localhost || $1 == ::1 ]]; }
pg() { PGCONNECT_TIMEOUT=5 timeout 60 psql "$1" -X -v ON_ERROR_STOP=1 -Atq -c "$2"; } # pg URL SQL
rcli() { timeout 60 redis-cli -u "$BENCH_REDIS" "$@"; }
ppid_of() { local stat fields; stat=$(<"/proc/$1/stat") && read -ra fields <<<"${stat##*) }" && echo "${fields[1]}"; }

setup_pg_redis() {
    local url aux suffix base query=""
    for url in "$PG_ADMIN_URL" "$BENCH_REDIS"; do
        is_loopback "$(url_host "$url")" || die "$url is not a loopback address (all benchmark traffic stays on this machine)"
    done
    command -v psql >/dev/null 2>&1 || die "psql is missing"
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli is missing"
    pg "$PG_ADMIN_URL" 'SELECT 1' >/dev/null 2>"$RAW/pg-admin.err" ||
        die "PostgreSQL at $PG_ADMIN_URL does not answer ($(head -c 300 "$RAW/pg-admin.err")); start it, point BENCH_PG_ADMIN_URL at it, or set BENCH_PG_REDIS=0"
    [[ $(rcli ping 2>&1) == PONG ]] || die "Redis at $BENCH_REDIS does not answer PING; start it, point BENCH_REDIS_URL at it, or set BENCH_PG_REDIS=0"
    suffix=$(rand_hex 6)
    PG_DB=mnemom_bench_$suffix
    REDIS_PREFIX=bench-$suffix:
    base=${PG_ADMIN_URL%%\?*}
    [[ $PG_ADMIN_URL == *\?* ]] && query="?${PG_ADMIN_URL#*\?}"
    PG_URL=${base%/*}/$PG_DB$query
    log "creating database $PG_DB and migrating it (mnemom-gateway migrate); Redis prefix $REDIS_PREFIX"
    PG_DB_CREATED=1 # before: a CREATE whose answer got lost is dropped too (IF EXISTS)
    pg "$PG_ADMIN_URL" "CREATE DATABASE $PG_DB" || die "CREATE DATABASE $PG_DB failed"
    env -u REDIS_URL DATABASE_URL="$PG_URL" LOG_LEVEL=info MNEMOM_DATA_DIR="$WORK/migrate" \
        timeout 120 "$GATEWAY_BIN" migrate >"$RAW/migrate.log" 2>&1 || die "mnemom-gateway migrate failed: $(tail -n 20 "$RAW/migrate.log")"
    REDIS_USED=1
    # The servers' processes, for their CPU: the postmaster (the parent of every backend and
    # background process; exited children are in its reaped-children time) and redis-server.
    aux=$(pg "$PG_URL" "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    PG_POSTMASTER=$(ppid_of "$aux" 2>/dev/null || true)
    [[ -n $PG_POSTMASTER && -r /proc/$PG_POSTMASTER/stat ]] || die "the PostgreSQL server's processes are not visible here (checkpointer pid '${aux}'): it must run on this machine"
    REDIS_PID=$(rcli info server | tr -d '\r' | sed -n 's/^process_id://p')
    [[ -n $REDIS_PID && -r /proc/$REDIS_PID/stat && $(cat "/proc/$REDIS_PID/comm" 2>/dev/null) == redis-server* ]] ||
        die "redis-server (pid '${REDIS_PID}') is not a process of this machine"
    PG_VERSION=$(pg "$PG_URL" 'SHOW server_version' | awk '{ print $1 }')
    REDIS_VERSION=$(rcli info server | tr -d '\r' | sed -n 's/^redis_version://p')
}

# check_backends NAME: the gateway's readiness body must name Postgres and Redis as its backends.
check_backends() {
    local body
    body=$(curl -s --max-time 5 "http://$(url_of "$1" | cut -d/ -f3)/health/ready" || true)
    echo "$body" >"$RAW/ready-$1.json"
    [[ $(grep -o '"database":{[^}]*}' <<<"$body") == *'"backend":"postgres"'* ]] || die "$1 is not on Postgres: $body"
    [[ $(grep -o '"cache":{[^}]*}' <<<"$body") == *'"backend":"redis"'* ]] || die "$1 is not on Redis: $body"
}

# After the measurements: what reached the database and the cache (a check that the row really ran
# on them), and the gateway's cache operation counters. Sets PG_USAGE_ROWS, PG_AGENT_ROWS,
# REDIS_KEYS and CACHE_OPS.
pg_redis_summary() {
    local metrics
    sleep 2 # the writer's last batches
    metrics=$(curl -s --max-time 5 "http://$GW_PG_ADDR/metrics" || true)
    echo "$metrics" >"$RAW/metrics-gateway-pg.txt"
    PG_USAGE_ROWS=$(pg "$PG_URL" 'SELECT count(*) FROM usage_events' 2>/dev/null || echo '?')
    PG_AGENT_ROWS=$(pg "$PG_URL" 'SELECT count(*) FROM agents' 2>/dev/null || echo '?')
    REDIS_KEYS=$(rcli --scan --pattern "$REDIS_PREFIX*" 2>/dev/null | wc -l || echo '?')
    # Non-zero gateway_cache_operations_total{operation="get",result="hit"} N as "get/hit N".
    CACHE_OPS=$(sed -n 's/^gateway_cache_operations_total{operation="\([a-z_]*\)",result="\([a-z_]*\)"} \([0-9.e+]*\)$/\1\/\2 \3/p' <<<"$metrics" |
        awk '$2 != 0 { printf "%s%s", sep, $0; sep = ", " }')
    CACHE_OPS=${CACHE_OPS:-none}
}

# Drops the database and deletes the prefix's keys (idempotent; runs from the EXIT trap after
# every process here is stopped, so no gateway still holds a connection or writes a key).
cleanup_pg_redis() {
    if [[ $PG_DB_CREATED == 1 ]]; then
        PG_DB_CREATED=0
        if pg "$PG_ADMIN_URL" "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" 2>/dev/null ||
            pg "$PG_ADMIN_URL" "DROP DATABASE IF EXISTS $PG_DB" 2>/dev/null; then
            log "dropped database $PG_DB"
        else
            log "WARNING: could not drop database $PG_DB; drop it by hand"
        fi
    fi
    if [[ $REDIS_USED == 1 ]]; then
        REDIS_USED=0
        local deleted
        deleted=$(rcli --scan --pattern "$REDIS_PREFIX*" 2>/dev/null |
            xargs -r -d '\n' -n 100 timeout 60 redis-cli -u "$BENCH_REDIS" DEL 2>/dev/null |
            awk '{ s += $1 } END { print s + 0 }' || true)
        log "deleted ${deleted:-0} Redis keys under $REDIS_PREFIX"
    fi
}

# ---------------------------------------------------------------------------------------------
# Tools
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if [[ $PG_REDIS == 1 ]]; then # clients only: the servers are the machine's own
        command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
        command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
    fi
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
        if ! rustup target list --installed | grep -qx wasm32-wasip2; then
            log "installing the wasm32-wasip2 target (the embedded plugins are built for it)"
            rustup target add wasm32-wasip2 >&2
        fi
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
        gateway-pg) echo "$GW_PG_PID" ;;
        direct | mock) echo "$MOCK_PID" ;;
        # The servers behind gateway-pg: the postmaster and all its children (backends, background
        # writer, WAL writer, checkpointer, autovacuum), redis-server and any save child.
        postgres) echo "$PG_POSTMASTER $(pgrep -P "$PG_POSTMASTER" | tr '\n' ' ')" ;;
        redis) echo "$REDIS_PID $(pgrep -P "$REDIS_PID" | tr '\n' ' ')" ;;
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
# plus the long-lived servers (with BENCH_PG_REDIS=1 also PostgreSQL and Redis, all their work).
our_ticks() {
    local extra=()
    # shellcheck disable=SC2207
    [[ $PG_REDIS == 1 ]] && extra=("$GW_PG_PID" $(pids_of postgres) $(pids_of redis))
    # shellcheck disable=SC2046
    cpu_ticks $$ "$MOCK_PID" $(pids_of nginx) "$GW_PID" "$GW_NOAIP_PID" "${extra[@]}"
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

# start_gateway NAME AIP_ENABLED [VAR=VALUE...]: sets GW_PID/GW_NOAIP_PID/GW_PG_PID, *_ADDR and
# STARTUP_MS[NAME]. Without VAR=VALUEs naming them, the gateway runs on its embedded defaults
# (SQLite under MNEMOM_DATA_DIR, in-process cache), whatever this shell's environment says.
declare -A STARTUP_MS
start_gateway() {
    local name=$1 aip=$2 port pid ms
    shift 2
    port=$(free_port)
    mkdir -p "$WORK/$name"
    log "starting mnemom-gateway ($name, AIP_ENABLED=$aip${*:+, $*}) on 127.0.0.1:$port"
    env -u DATABASE_URL -u REDIS_URL -u MNEMOM_CACHE_PREFIX \
        HOST=127.0.0.1 PORT="$port" LOG_LEVEL=info AIP_ENABLED="$aip" \
        ANTHROPIC_BASE_URL="http://$MOCK_ADDR" OPENAI_BASE_URL="http://$MOCK_ADDR" GEMINI_BASE_URL="http://$MOCK_ADDR" \
        MNEMOM_DATA_DIR="$WORK/$name" MNEMOM_PLUGIN_CACHE_DIR="$WORK/plugin-cache" \
        MNEMOM_SHUTDOWN_GRACE_SECONDS=2 "$@" \
        "$GATEWAY_BIN" serve >"$RAW/$name.log" 2>&1 &
    pid=$!
    STARTED+=("$pid")
    ms=$(wait_http "http://127.0.0.1:$port/health/ready" 200 60) || die "$name did not become ready: $(tail -n 20 "$RAW/$name.log")"
    STARTUP_MS[$name]=$ms
    case $name in
        gateway) GW_PID=$pid GW_ADDR=127.0.0.1:$port ;;
        gateway-noaip) GW_NOAIP_PID=$pid GW_NOAIP_ADDR=127.0.0.1:$port ;;
        gateway-pg) GW_PG_PID=$pid GW_PG_ADDR=127.0.0.1:$port ;;
    esac
}

# Compiles the plugins once into the cache directory so the measured gateways start warm.
warm_plugin_cache() {
    local port pid
    port=$(free_port)
    log "warming the plugin artifact cache (one throw-away gateway start)"
    env -u DATABASE_URL -u REDIS_URL HOST=127.0.0.1 PORT="$port" LOG_LEVEL=warn MNEMOM_DATA_DIR="$WORK/warm" MNEMOM_PLUGIN_CACHE_DIR="$WORK/plugin-cache" \
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
        gateway-pg) echo "http://$GW_PG_ADDR/anthropic/v1/messages" ;;
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
    local target=$1 round=$2 line errs pids cs_before cs_after n
    local pg_before redis_before pg_after redis_after
    ((round > 1)) || run_wrk "$target" 1 1 "$WARMUP" warm-c1 >/dev/null
    pids=$(pids_of "$target")
    # shellcheck disable=SC2086
    cs_before=$(ctx_switches $pids)
    read -r pg_before redis_before <<<"$(server_ticks)"
    line=$(run_wrk "$target" 1 1 "$DURATION" "c1-r$round")
    # shellcheck disable=SC2086
    cs_after=$(ctx_switches $pids)
    read -r pg_after redis_after <<<"$(server_ticks)"
    [[ -n $line ]] || { note "$target" "wrk c=1 (round $round) printed no summary"; return; }
    n=$(kv requests "$line")
    if ((round == 1 && n > 0)); then
        R[cs_c1:$target]=$(calc "($cs_after - $cs_before) / $n" 2)
        if [[ $PG_REDIS == 1 ]]; then # at c=1 the writer's batches are small: what one request costs the servers
            R[pg_cpu_c1:$target]=$(calc "($pg_after - $pg_before) / $CLK_TCK / $n * 1e6" 1)
            R[redis_cpu_c1:$target]=$(calc "($redis_after - $redis_before) / $CLK_TCK / $n * 1e6" 1)
            R[srv_cpu_c1:$target]=$(calc "($pg_after - $pg_before + $redis_after - $redis_before) / $CLK_TCK / $n * 1e6" 1)
        fi
    fi
    R[p50_r$round:$target]=$(kv p50_us "$line")
    R[p90_r$round:$target]=$(kv p90_us "$line")
    R[p99_r$round:$target]=$(kv p99_us "$line")
    errs=$(wrk_errors "$line")
    ((errs == 0)) || note "$target" "c=1 run (round $round): $errs errors"
}

median() { # median VALUE...
    printf '%s\n' "$@" | grep -E '^-?[0-9.]+$' | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }' || true # no values: empty
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

# server_ticks: "postgres redis" clock ticks of the servers behind gateway-pg (0 0 without them).
server_ticks() {
    if [[ $PG_REDIS == 1 ]]; then
        # shellcheck disable=SC2046
        echo "$(cpu_ticks $(pids_of postgres)) $(cpu_ticks $(pids_of redis))"
    else
        echo "0 0"
    fi
}

# One c=32 run (MEASURE_RPS TARGET ROUND): requests per second, and the proxy's CPU time per
# request (clock ticks of its processes before and after, divided by the requests wrk completed).
# The mock's, Postgres's and Redis's CPU in the same window are kept apart (the proxy column never
# includes them). The rounds are interleaved across targets, like the c=1 rounds: a few seconds of
# machine noise then moves one round of one target, not the whole column of one target.
measure_rps() {
    local target=$1 round=$2 line errs pids before after mock_before mock_after n cs_before cs_after
    local pg_before redis_before pg_after redis_after
    run_wrk "$target" 2 "$CONNS" "$WARMUP" warm-c32 >/dev/null
    pids=$(pids_of "$target")
    # shellcheck disable=SC2086
    cs_before=$(ctx_switches $pids)
    # shellcheck disable=SC2086
    before=$(cpu_ticks $pids)
    mock_before=$(cpu_ticks "$MOCK_PID")
    read -r pg_before redis_before <<<"$(server_ticks)"
    line=$(run_wrk "$target" 2 "$CONNS" "$DURATION" "c32-r$round")
    sleep 1 # let in-flight work, background extraction and the writer's batches finish inside the window
    # shellcheck disable=SC2086
    after=$(cpu_ticks $pids)
    # shellcheck disable=SC2086
    cs_after=$(ctx_switches $pids)
    mock_after=$(cpu_ticks "$MOCK_PID")
    read -r pg_after redis_after <<<"$(server_ticks)"
    [[ -n $line ]] || { note "$target" "wrk c=$CONNS (round $round) printed no summary"; return; }
    n=$(kv requests "$line")
    ((n > 0)) || { note "$target" "c=$CONNS run (round $round) completed no request"; return; }
    local r=_r$round
    R[cs_c32$r:$target]=$(calc "($cs_after - $cs_before) / $n" 2)
    R[rps$r:$target]=$(calc "$n / ($(kv duration_us "$line") / 1e6)" 0)
    R[p50c32$r:$target]=$(kv p50_us "$line")
    R[cpu_requests$r:$target]=$n
    R[cpu_ticks$r:$target]=$((after - before))
    R[cpu$r:$target]=$(calc "($after - $before) / $CLK_TCK / $n * 1e6" 1)
    R[mock_cpu$r:$target]=$(calc "($mock_after - $mock_before) / $CLK_TCK / $n * 1e6" 1)
    if [[ $PG_REDIS == 1 ]]; then
        R[pg_cpu$r:$target]=$(calc "($pg_after - $pg_before) / $CLK_TCK / $n * 1e6" 1)
        R[redis_cpu$r:$target]=$(calc "($redis_after - $redis_before) / $CLK_TCK / $n * 1e6" 1)
        R[srv_cpu$r:$target]=$(calc "($pg_after - $pg_before + $redis_after - $redis_before) / $CLK_TCK / $n * 1e6" 1)
    fi
    ((n >= 20000)) || note "$target" "CPU over only $n requests in round $round (tick resolution $((1000 / CLK_TCK)) ms): raise BENCH_DURATION"
    errs=$(wrk_errors "$line")
    ((errs == 0)) || note "$target" "c=$CONNS run (round $round): $errs errors"
}

# Medians over the c=32 rounds (per metric), the per-round CPU/req, and the summed requests/ticks.
finish_rps() {
    local target=$1 q r vals requests=0 ticks=0
    for q in cpu rps p50c32 mock_cpu cs_c32 pg_cpu redis_cpu srv_cpu; do
        vals=()
        for r in $(seq "$CPU_ROUNDS"); do vals+=("${R[${q}_r$r:$target]:-}"); done
        R[$q:$target]=$(median "${vals[@]}")
        [[ -n ${R[$q:$target]} ]] || unset "R[$q:$target]"
    done
    vals=()
    for r in $(seq "$CPU_ROUNDS"); do
        vals+=("${R[cpu_r$r:$target]:-?}")
        requests=$((requests + ${R[cpu_requests_r$r:$target]:-0}))
        ticks=$((ticks + ${R[cpu_ticks_r$r:$target]:-0}))
    done
    R[cpu_rounds:$target]=$(IFS=/; echo "${vals[*]}")
    if ((requests > 0)); then
        R[cpu_requests:$target]=$requests
        R[cpu_ticks:$target]=$ticks
    fi
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
        [[ -n $GATEWAY_BIN_GIVEN ]] && echo "· gateway binary \`$GATEWAY_BIN_GIVEN\` (GATEWAY_BIN: not necessarily built from that commit)"
        echo "· $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') · $(wrk -v 2>&1 | head -n1 | awk '{print "wrk " $2}') · $(rustc --version 2>/dev/null | awk '{print $1, $2}')"
        echo
        echo "Upstream: mock-provider (release) on loopback, Anthropic fixture \`messages-thinking-signature-text.json\` (4.6 KB)."
        echo "CPU: utime+stime of the proxy's processes (all threads; nginx master+workers) across each c=$CONNS run, divided by the requests it completed."
        echo "Latency: wrk -t1 -c1 -d${DURATION}s p50 (median of $ROUNDS interleaved rounds). CPU and RPS: wrk -t2 -c$CONNS -d${DURATION}s (median of $CPU_ROUNDS interleaved rounds). TTFB: $TTFB_REQUESTS sequential streamed requests"
        echo "(chunk delay ${TTFB_DELAY_MS} ms, \`$TTFB_CHUNK\`), request sent → first body byte, p50. Streams: $STREAMS concurrent SSE responses (chunk delay ${STREAM_DELAY_MS} ms) held ${HOLD} s."
        echo
        echo "| target | CPU µs/req | p50 c=1 µs | added p50 µs | RPS c=$CONNS | SSE TTFB p50 µs | TTFB − direct µs | idle RSS MiB | RSS $STREAMS streams MiB |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
        for t in "${TARGETS[@]}"; do
            if [[ $t == direct ]]; then
                echo "| ${LABEL[$t]} | ($(v "mock_cpu:$t") mock) | $(v "p50:$t") | – | $(v "rps:$t") | $(v "ttfb:$t") | – | – | – |"
            else
                echo "| ${LABEL[$t]} | $(v "cpu:$t") | $(v "p50:$t") | $(v "added:$t") | $(v "rps:$t") | $(v "ttfb:$t") | $(v "ttfb_added:$t") | $(v "rss_idle:$t") | $(v "rss_streams:$t") |"
            fi
        done
        echo
        echo "## Targets (ARCHITECTURE.md §7)"
        echo
        echo "| target | measured | limit | result |"
        echo "|---|---|---|---|"
        local n_cpu=${R[cpu:nginx]:-n/a} n_added=${R[added:nginx]:-n/a} g
        for g in "${GATEWAYS[@]}"; do
            local gl=${LABEL[$g]} c=${R[cpu:$g]:-n/a} a=${R[added:$g]:-n/a} ta=${R[ttfb_added:$g]:-n/a}
            if is_num "$c" && is_num "$n_cpu" && [[ $n_cpu != 0.0 ]]; then ratio=$(calc "$c / $n_cpu" 2); else ratio=n/a; fi
            echo "| CPU per request, $gl vs nginx | ${ratio}× ($c vs $n_cpu µs) | ≤ 2× | $(verdict "$ratio <= 2") |"
            if is_num "$a" && is_num "$n_added" && awk "BEGIN { exit !($n_added > 0) }"; then ratio=$(calc "$a / $n_added" 2); else ratio=n/a; fi
            local p50_ratio=n/a
            if is_num "${R[p50:$g]:-}" && is_num "${R[p50:nginx]:-}"; then p50_ratio=$(calc "${R[p50:$g]} / ${R[p50:nginx]}" 2); fi
            echo "| added p50 at c=1, $gl vs nginx | ${ratio}× ($a vs $n_added µs; raw p50 ratio ${p50_ratio}×) | ≤ 1.5× | $(verdict "$ratio <= 1.5") |"
            echo "| SSE first byte, $gl − direct | $ta µs | ≤ 500 µs | $(verdict "$ta <= 500") |"
            echo "| idle RSS, $gl | $(v "rss_idle:$g") MiB | < 64 MiB | $(verdict "$(v "rss_idle:$g") < 64") |"
            local s_ok=n/a
            [[ -n ${R[streams_200:$g]:-} ]] && s_ok=$([[ ${R[streams_200:$g]} == "$STREAMS" && ${R[streams_ended:$g]:-1} == 0 ]] && echo 1 || echo 0)
            echo "| $STREAMS open streams, $gl | $(v "rss_streams:$g") MiB peak, ${R[streams_200:$g]:-0}/$STREAMS status 200 | < 256 MiB, all 200 | $(verdict "$(v "rss_streams:$g") < 256 && $s_ok == 1") |"
            echo "| start-up with cached plugins, $gl | ${STARTUP_MS[$g]:-n/a} ms | < 1000 ms | $(verdict "${STARTUP_MS[$g]:-n/a} < 1000") |"
        done
        if [[ $PG_REDIS == 1 ]]; then
            # Issue 3: attaching Postgres and Redis must not cost the request path more than 10%.
            local c=${R[cpu:gateway-pg]:-n/a} c0=${R[cpu:gateway]:-n/a} a=${R[added:gateway-pg]:-n/a} a0=${R[added:gateway]:-n/a}
            local cr=n/a ar=n/a cpct=n/a apct=n/a
            if is_num "$c" && is_num "$c0" && awk "BEGIN { exit !($c0 > 0) }"; then
                cr=$(calc "$c / $c0" 3) cpct=$(awk "BEGIN { printf \"%+.1f%%\", 100 * ($c / $c0 - 1) }")
            fi
            if is_num "$a" && is_num "$a0" && awk "BEGIN { exit !($a0 > 0) }"; then
                ar=$(calc "$a / $a0" 3) apct=$(awk "BEGIN { printf \"%+.1f%%\", 100 * ($a / $a0 - 1) }")
            fi
            # The same comparison per interleaved round (the two gateways ran seconds apart), so a
            # machine state that moves one round is visible as such.
            local r x y d x0 y0 cround=() around=()
            for r in $(seq "$CPU_ROUNDS"); do
                x=${R[cpu_r$r:gateway-pg]:-} y=${R[cpu_r$r:gateway]:-}
                if is_num "$x" && is_num "$y" && awk "BEGIN { exit !($y > 0) }"; then cround+=("$(awk "BEGIN { printf \"%+.1f\", 100 * ($x / $y - 1) }")"); else cround+=("?"); fi
            done
            for r in $(seq "$ROUNDS"); do
                x=${R[p50_r$r:gateway-pg]:-} y=${R[p50_r$r:gateway]:-} d=${R[p50_r$r:direct]:-}
                if is_num "$x" && is_num "$y" && is_num "$d" && awk "BEGIN { exit !($y - $d > 0) }"; then
                    x0=$(calc "$x - $d" 1) y0=$(calc "$y - $d" 1)
                    around+=("$(awk "BEGIN { printf \"%+.1f\", 100 * ($x0 / $y0 - 1) }")")
                else around+=("?"); fi
            done
            echo "| CPU per request and added p50 with Postgres+Redis within 10% of the embedded-default (AIP on) figures | CPU $c vs $c0 µs ($cpct; per round $(IFS=/; echo "${cround[*]}")%); added p50 $a vs $a0 µs ($apct; per round $(IFS=/; echo "${around[*]}")%) | ≤ +10% each (medians) | $(verdict "$cr <= 1.10 && $ar <= 1.10") |"
        fi
        echo
        echo "## Details"
        echo
        local srv_head="" srv_align=""
        if [[ $PG_REDIS == 1 ]]; then
            srv_head=" Postgres + Redis CPU µs/req: c=1 (round 1); c=$CONNS |"
            srv_align="---|"
        fi
        echo "| target | c=1 p50 per round µs | p90 / p99 c=1 µs | CPU µs/req per c=$CONNS round | p50 c=$CONNS µs | c=$CONNS runs: requests, CPU ticks | mock CPU µs/req in those runs |$srv_head context switches/req c=1, c=$CONNS | TTFB p90 µs | stream total p50 ms | streams: RSS before → peak MiB, open s | notes |"
        echo "|---|---|---|---|---:|---|---:|$srv_align---|---:|---:|---|---|"
        for t in "${TARGETS[@]}"; do
            local streams_detail srv=""
            streams_detail="$(v "rss_before_streams:$t") → $(v "rss_streams:$t"), $(v "streams_open_s:$t")"
            [[ $t == direct ]] && streams_detail="–"
            [[ $PG_REDIS == 1 ]] && srv=" $(v "srv_cpu_c1:$t") ($(v "pg_cpu_c1:$t") + $(v "redis_cpu_c1:$t")); $(v "srv_cpu:$t") ($(v "pg_cpu:$t") + $(v "redis_cpu:$t")) |"
            echo "| ${LABEL[$t]} | $(v "p50_rounds:$t") | $(v "p90:$t") / $(v "p99:$t") | $(v "cpu_rounds:$t") | $(v "p50c32:$t") | $(v "cpu_requests:$t"), $(v "cpu_ticks:$t") | $(v "mock_cpu:$t") |$srv $(v "cs_c1:$t"), $(v "cs_c32:$t") | $(v "ttfb_p90:$t") | $(v "ttfb_total:$t") | $streams_detail | ${NOTE[$t]:-} |"
        done
        echo
        echo "Machine noise: processes other than this run's used ${FOREIGN_PCT:-?}% of the machine's CPU during the measurements (steal ${STEAL_PCT:-?}%; load average before ${LOAD_BEFORE:-?}, after ${LOAD_AFTER:-?}). Above ~5% the numbers are skewed: re-run on a quiet machine."
        echo "Interrupt + softirq time, charged to no process (so not in the CPU column), was ${IRQ_PCT:-?}% of the machine's CPU over the run."
        echo "Cold start (plugins compiled, empty cache): ${COLD_STARTUP_MS:-n/a} ms. Clock tick: $((1000 / CLK_TCK)) ms. File-descriptor limit: $(ulimit -n)."
        echo "nginx: $NGINX_WORKERS worker processes, access_log off, upstream keepalive 64, HTTP/1.1; /anthropic/ buffered (default), /anthropic-stream/ \`proxy_buffering off\`."
        if [[ $PG_REDIS == 1 ]]; then
            echo "Postgres + Redis row: PostgreSQL ${PG_VERSION:-?} (fresh database \`$PG_DB\`, \`mnemom-gateway migrate\`d before the start, dropped on exit) and Redis ${REDIS_VERSION:-?} (\`MNEMOM_CACHE_PREFIX=$REDIS_PREFIX\`, keys deleted on exit), both on loopback;"
            echo "the other rows use the embedded defaults (SQLite under \`MNEMOM_DATA_DIR\`, in-process cache). Its CPU column is the gateway process only; the servers' CPU is the details column (whole servers: postmaster with every backend and background process, reaped ones included, and redis-server; in the other rows that column is their background)."
            echo "At the end: ${PG_USAGE_ROWS:-?} usage_events rows and ${PG_AGENT_ROWS:-?} agents in the database, ${REDIS_KEYS:-?} Redis keys under the prefix; the gateway's cache operations: ${CACHE_OPS:-?}."
        fi
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
    if [[ $PG_REDIS == 1 ]]; then
        setup_pg_redis
        start_gateway gateway-pg true DATABASE_URL="$PG_URL" REDIS_URL="$BENCH_REDIS" MNEMOM_CACHE_PREFIX="$REDIS_PREFIX"
        check_backends gateway-pg
    fi
    log "mock $MOCK_ADDR · nginx $NGINX_ADDR · gateway $GW_ADDR · gateway (AIP off) $GW_NOAIP_ADDR${GW_PG_ADDR:+ · gateway (Postgres + Redis) $GW_PG_ADDR}"

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
    log "idle RSS (MiB): nginx ${R[rss_idle:nginx]} · gateway ${R[rss_idle:gateway]} · gateway (AIP off) ${R[rss_idle:gateway-noaip]}${GW_PG_ADDR:+ · gateway (Postgres + Redis) ${R[rss_idle:gateway-pg]}}"

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
    for round in $(seq "$CPU_ROUNDS"); do
        for t in "${ok_targets[@]}"; do
            log "RPS and CPU per request, c=$CONNS, round $round/$CPU_ROUNDS: $t"
            measure_rps "$t" "$round"
        done
    done
    for t in "${ok_targets[@]}"; do finish_rps "$t"; done
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
    [[ $PG_REDIS == 1 ]] && pg_redis_summary
    report
    if [[ $PERF == 1 ]]; then
        for t in "${GATEWAYS[@]}" nginx; do
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
