#!/usr/bin/env bash
# Benchmark `statescope serve` against a bare hyper hello-world (examples/hello.rs), side by side.
#
# 1. Throughput: ROUNDS (default 10) alternating wrk runs (wrk -t2 -c50 -dDURs, default 5 s) on
#    `GET /` of each server; prints each round's req/s and the median ratio serve/hello (target:
#    >= 0.9). Also the CPU time each server spent per request (from /proc/PID/stat), which
#    other load on a shared machine disturbs less than req/s does.
# 2. Memory: a fresh `serve`; VmRSS (from /proc/PID/status) after 10 000 requests and after
#    1 000 000 requests, each phase stopped at its count by a wrk Lua script (with -d as a time
#    bound); prints both, the difference (target: within 1 MiB), and the counts /state reports.
#
# Usage: bench/serve.sh            (env: ROUNDS=10 DUR=5 THREADS=2 CONNS=50)
# Needs: wrk, curl. Everything runs on 127.0.0.1; only processes started here are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
DUR=${DUR:-5}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
SMALL=10000
BIG=1000000

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl is not installed" >&2; exit 1; }

echo "building release binaries..." >&2
cargo build --release --quiet --bin statescope --example hello
SERVE=target/release/statescope
HELLO=target/release/examples/hello

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# start NAME CMD... : run CMD in the background, wait for its "listening on ADDR" line on
# standard error, and set ADDR_<NAME> and PID_<NAME>.
start() {
    local name=$1; shift
    "$@" 2>"$TMP/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    local addr=""
    for _ in $(seq 100); do
        addr=$(sed -n 's/^listening on //p' "$TMP/$name.err" | head -1)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "bench: $name did not start:" >&2; cat "$TMP/$name.err" >&2; exit 1; }
    printf -v "ADDR_$name" '%s' "$addr"
    printf -v "PID_$name" '%s' "$pid"
}

cpu_ticks() { # utime + stime of PID, in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}

reqs() { # reqs URL SECONDS -> requests completed
    wrk -t"$THREADS" -c"$CONNS" -d"$2"s "$1" | awk '/requests in/ {print $1}'
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# --- 1. throughput ---------------------------------------------------------------------------
start serve "$SERVE" serve --quiet --listen 127.0.0.1:0
start hello "$HELLO" 127.0.0.1:0
echo "serve at $ADDR_serve (pid $PID_serve), hello at $ADDR_hello (pid $PID_hello)"
echo "warming up..." >&2
reqs "http://$ADDR_serve/" 2 >/dev/null
reqs "http://$ADDR_hello/" 2 >/dev/null

ratios=()
s_reqs=0; h_reqs=0
s_cpu0=$(cpu_ticks "$PID_serve"); h_cpu0=$(cpu_ticks "$PID_hello")
printf '%-6s %14s %14s %8s\n' round serve_req_s hello_req_s ratio
for r in $(seq "$ROUNDS"); do
    # Alternate which goes first, so drift in the machine's load favours neither.
    if [ $((r % 2)) = 1 ]; then
        s=$(reqs "http://$ADDR_serve/" "$DUR"); h=$(reqs "http://$ADDR_hello/" "$DUR")
    else
        h=$(reqs "http://$ADDR_hello/" "$DUR"); s=$(reqs "http://$ADDR_serve/" "$DUR")
    fi
    s_reqs=$((s_reqs + s)); h_reqs=$((h_reqs + h))
    ratio=$(awk -v s="$s" -v h="$h" 'BEGIN {printf "%.3f", s / h}')
    ratios+=("$ratio")
    printf '%-6s %14.0f %14.0f %8s\n' "$r" "$(awk -v n="$s" -v d="$DUR" 'BEGIN {print n / d}')" \
        "$(awk -v n="$h" -v d="$DUR" 'BEGIN {print n / d}')" "$ratio"
done
s_cpu=$(( $(cpu_ticks "$PID_serve") - s_cpu0 )); h_cpu=$(( $(cpu_ticks "$PID_hello") - h_cpu0 ))
hz=$(getconf CLK_TCK)
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "throughput ratio serve/hello (median of $ROUNDS rounds, wrk -t$THREADS -c$CONNS -d${DUR}s): $median (target >= 0.9)"
awk -v sc="$s_cpu" -v hc="$h_cpu" -v sr="$s_reqs" -v hr="$h_reqs" -v hz="$hz" 'BEGIN {
    s = sc / hz / sr * 1e6; h = hc / hz / hr * 1e6
    printf "CPU per request: serve %.2f us, hello %.2f us (hello/serve efficiency ratio %.3f)\n", s, h, h / s
}'
kill "$PID_serve" "$PID_hello"

# --- 2. memory after 10k and 1M requests -------------------------------------------------------
# Each wrk thread stops itself after its share of the requests.
cat >"$TMP/limit.lua" <<'EOF'
local done_, limit = 0, 0
function init(args) limit = tonumber(args[1]) end
function response(status, headers, body)
    done_ = done_ + 1
    if done_ >= limit then wrk.thread:stop() end
end
EOF
requests_total() {
    curl -s "http://$ADDR_mem/state" | awk -F': *' '/"requests_total"/ {gsub(/[ ,]/, "", $2); print $2}'
}
load_to() { # load_to TOTAL: send requests until /state counts about TOTAL
    local have want per
    have=$(requests_total)
    want=$(( $1 - have ))
    per=$(( want / THREADS ))
    [ "$per" -gt 0 ] || return 0
    wrk -t"$THREADS" -c"$CONNS" -d120s -s "$TMP/limit.lua" "http://$ADDR_mem/" -- "$per" >/dev/null
}

start mem "$SERVE" serve --quiet --listen 127.0.0.1:0
rss_start=$(rss_kib "$PID_mem")
load_to "$SMALL"
sleep 0.5
n_small=$(requests_total)
rss_small=$(rss_kib "$PID_mem")
load_to "$BIG"
sleep 0.5
n_big=$(requests_total)
rss_big=$(rss_kib "$PID_mem")
retained=$(curl -s "http://$ADDR_mem/state" | awk -F': *' '/"records_retained"/ {gsub(/[ ,]/, "", $2); print $2}')
delta=$(( rss_big - rss_small ))
echo "serve VmRSS: at start ${rss_start} KiB; after $n_small requests ${rss_small} KiB; after $n_big requests ${rss_big} KiB"
echo "RSS growth between them: ${delta} KiB (target within 1024 KiB); /state records_retained after load: $retained"

ok=1
awk -v m="$median" 'BEGIN {exit !(m >= 0.9)}' || { echo "FAIL: throughput ratio $median < 0.9"; ok=0; }
[ "${delta#-}" -le 1024 ] || { echo "FAIL: RSS grew by $delta KiB"; ok=0; }
[ "$ok" = 1 ] && echo "PASS: both targets met"
[ "$ok" = 1 ]
