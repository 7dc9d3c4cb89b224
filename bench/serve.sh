#!/usr/bin/env bash
# Benchmark `statescope serve` against a bare hyper hello-world (examples/hello.rs), side by side.
#
# 1. Throughput: ROUNDS (default 10) rounds of wrk runs (wrk -tTHREADS -cCONNS -dDURs, default
#    2 threads, 50 connections, 5 s) on `GET /` of three servers, their order rotated each round
#    so drift in the machine's load favours none:
#      serve    `statescope serve` as a user starts it: access log on (the default), standard
#               error redirected to a file (LOG=file, truncated between rounds) or /dev/null
#               (LOG=null)
#      serve-q  `statescope serve -q` (no log)
#      hello    the bare hyper hello-world
#    All three use tokio's default multi-thread runtime (one worker per core). Prints each
#    round's req/s, and the ratios serve/hello and serve-q/hello: median and range over the
#    rounds (target: serve/hello >= 0.9). Also the CPU time each server spent per request (from
#    /proc/PID/stat), which other load on a shared machine disturbs less than req/s does.
# 2. Memory: a fresh `serve` with its log on; VmRSS (from /proc/PID/status) after 10 000,
#    100 000 and 1 000 000 requests, each phase ended at its count by a wrk Lua script (with -d
#    as a time bound); prints them, the growth from 10 000 to 1 000 000 (target: within 1 MiB),
#    and the counts /state reports.
#
# Usage: bench/serve.sh            (env: ROUNDS=10 DUR=5 THREADS=2 CONNS=50 LOG=file BUILD=1;
#                                   BUILD=0 measures the release binaries already built)
# Needs: wrk, curl. Everything runs on 127.0.0.1; only processes started here are stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
DUR=${DUR:-5}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
LOG=${LOG:-file}
SMALL=10000
MID=100000
BIG=1000000

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl is not installed" >&2; exit 1; }
case "$LOG" in file|null) ;; *) echo "bench: LOG must be file or null" >&2; exit 1 ;; esac

if [ "${BUILD:-1}" = 1 ]; then
    echo "building release binaries..." >&2
    cargo build --release --quiet --bin statescope --example hello
fi
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

# start NAME CMD... : run CMD in the background, standard error appended to $TMP/NAME.err
# (appended, so the file can be truncated under a running server), wait for its
# "listening on ADDR" line, and set ADDR_<NAME> and PID_<NAME>.
start() {
    local name=$1; shift
    : >"$TMP/$name.err"
    "$@" 2>>"$TMP/$name.err" &
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

# start_serve NAME: `statescope serve` with its log on and standard error redirected as LOG
# says: the file $TMP/NAME.err, or /dev/null (then the port is picked here, as the
# "listening on" line is not seen, and the server is polled until it answers).
start_serve() {
    if [ "$LOG" = file ]; then
        start "$1" "$SERVE" serve --listen 127.0.0.1:0
        return
    fi
    local port pid
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$SERVE" serve --listen "127.0.0.1:$port" 2>/dev/null &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/" >/dev/null && break
        sleep 0.05
    done
    printf -v "ADDR_$1" '%s' "127.0.0.1:$port"
    printf -v "PID_$1" '%s' "$pid"
}

median_range() { # numbers on stdin -> "MEDIAN (MIN-MAX)"
    sort -n | awk '{a[NR]=$1} END {printf "%s (%s-%s)", a[int((NR+1)/2)], a[1], a[NR]}'
}

# --- 1. throughput ---------------------------------------------------------------------------
NAMES=(serve serveq hello)
start_serve serve
start serveq "$SERVE" serve -q --listen 127.0.0.1:0
start hello "$HELLO" 127.0.0.1:0
echo "serve (log to $LOG) at $ADDR_serve, serve -q at $ADDR_serveq, hello at $ADDR_hello"
echo "warming up..." >&2
for n in "${NAMES[@]}"; do a="ADDR_$n"; reqs "http://${!a}/" 2 >/dev/null; done
: >"$TMP/serve.err"   # only the log lines of the measured runs from here on

declare -A total cpu0
for n in "${NAMES[@]}"; do p="PID_$n"; total[$n]=0; cpu0[$n]=$(cpu_ticks "${!p}"); done
r_log=(); r_q=()
printf '%-6s %14s %14s %14s %10s %10s\n' round serve_req_s serve-q_req_s hello_req_s serve/h serve-q/h
for r in $(seq "$ROUNDS"); do
    # Rotate the order, so drift in the machine's load favours none of the three.
    declare -A got
    for i in 0 1 2; do
        n=${NAMES[$(( (i + r) % 3 ))]}
        a="ADDR_$n"
        got[$n]=$(reqs "http://${!a}/" "$DUR")
        total[$n]=$(( ${total[$n]} + ${got[$n]} ))
    done
    : >"$TMP/serve.err"   # bounded disk use; the server appends, so truncating is safe
    rl=$(awk -v s="${got[serve]}" -v h="${got[hello]}" 'BEGIN {printf "%.3f", s / h}')
    rq=$(awk -v s="${got[serveq]}" -v h="${got[hello]}" 'BEGIN {printf "%.3f", s / h}')
    r_log+=("$rl"); r_q+=("$rq")
    printf '%-6s %14.0f %14.0f %14.0f %10s %10s\n' "$r" \
        "$(awk -v n="${got[serve]}" -v d="$DUR" 'BEGIN {print n / d}')" \
        "$(awk -v n="${got[serveq]}" -v d="$DUR" 'BEGIN {print n / d}')" \
        "$(awk -v n="${got[hello]}" -v d="$DUR" 'BEGIN {print n / d}')" "$rl" "$rq"
done
hz=$(getconf CLK_TCK)
median=$(printf '%s\n' "${r_log[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "ratio serve (log on, to $LOG)/hello, median (range) of $ROUNDS rounds: $(printf '%s\n' "${r_log[@]}" | median_range) (target >= 0.9)"
echo "ratio serve -q/hello, median (range) of $ROUNDS rounds:             $(printf '%s\n' "${r_q[@]}" | median_range)"
for n in "${NAMES[@]}"; do
    p="PID_$n"
    awk -v c="$(( $(cpu_ticks "${!p}") - ${cpu0[$n]} ))" -v r="${total[$n]}" -v hz="$hz" -v n="$n" \
        'BEGIN {printf "CPU per request: %-7s %.2f us\n", n, c / hz / r * 1e6}'
done
kill "$PID_serve" "$PID_serveq" "$PID_hello"

# --- 2. memory after 10k, 100k and 1M requests ------------------------------------------------
# One wrk thread that exits the moment its count is answered (wrk's own -d would otherwise be
# waited out in full); -d is only the time bound.
cat >"$TMP/limit.lua" <<'EOF'
local done_, limit = 0, 0
function init(args) limit = tonumber(args[1]) end
function response(status, headers, body)
    done_ = done_ + 1
    if done_ >= limit then os.exit(0) end
end
EOF
requests_total() {
    curl -s "http://$ADDR_mem/state" | awk -F': *' '/"requests_total"/ {gsub(/[ ,]/, "", $2); print $2}'
}
load_to() { # load_to TOTAL: send requests until /state counts about TOTAL
    local want
    want=$(( $1 - $(requests_total) ))
    [ "$want" -gt 0 ] || return 0
    wrk -t1 -c"$CONNS" -d300s -s "$TMP/limit.lua" "http://$ADDR_mem/" -- "$want" >/dev/null || true
}

start_serve mem   # log on, as a user runs it: its buffers count in the RSS
rss_start=$(rss_kib "$PID_mem")
declare -A n_at rss_at
for target in "$SMALL" "$MID" "$BIG"; do
    load_to "$target"
    sleep 0.5
    n_at[$target]=$(requests_total)
    rss_at[$target]=$(rss_kib "$PID_mem")
    : >"$TMP/mem.err"
done
retained=$(curl -s "http://$ADDR_mem/state" | awk -F': *' '/"records_retained"/ {gsub(/[ ,]/, "", $2); print $2}')
delta=$(( rss_at[$BIG] - rss_at[$SMALL] ))
echo "serve VmRSS: at start ${rss_start} KiB; after ${n_at[$SMALL]} requests ${rss_at[$SMALL]} KiB; after ${n_at[$MID]} ${rss_at[$MID]} KiB; after ${n_at[$BIG]} ${rss_at[$BIG]} KiB"
echo "RSS growth from ${n_at[$SMALL]} to ${n_at[$BIG]} requests: ${delta} KiB (target within 1024 KiB); from ${n_at[$MID]}: $(( rss_at[$BIG] - rss_at[$MID] )) KiB; /state records_retained after load: $retained"

ok=1
awk -v m="$median" 'BEGIN {exit !(m >= 0.9)}' || { echo "FAIL: throughput ratio $median < 0.9"; ok=0; }
[ "${delta#-}" -le 1024 ] || { echo "FAIL: RSS grew by $delta KiB"; ok=0; }
[ "$ok" = 1 ] && echo "PASS: both targets met"
[ "$ok" = 1 ]
