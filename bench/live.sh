#!/usr/bin/env bash
# bench/live.sh — how many frames per second `statescope live` keeps up with on `lo` before the
# kernel reports drops, against `tcpdump -w` on the same load, side by side in one run.
#
# Load: a small C generator (compiled here with cc) sends SIZE-byte UDP datagrams to a socket
# on 127.0.0.1 at a fixed rate for a fixed count (bounded in count and time), in steps from
# RATES. At each step each capturer runs alone on identical load, filtered on the port, writing
# a pcap: `statescope live -w` (JSON lines to /dev/null) and `tcpdump -w`. A step is "kept up
# with" when the capturer reports no kernel drops and captured every datagram.
#
# Usage (root): bench/live.sh            RATES="50000 100000" SECS=2 SIZE=64 BIN=... bench/live.sh
# Prints one row per step and tool (with the capturer's CPU time per frame), then the highest rate each kept up with and their ratio.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/statescope}
RATES=${RATES:-"25000 50000 100000 200000 400000 800000"}
SECS=${SECS:-3}
SIZE=${SIZE:-64}

[ "$(id -u)" = 0 ] || { echo "bench/live.sh: needs root (CAP_NET_RAW)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "bench/live.sh: build first: cargo build --release" >&2; exit 1; }
command -v tcpdump >/dev/null || { echo "bench/live.sh: tcpdump is not installed" >&2; exit 1; }

work=$(mktemp -d)
cap_pid=""
cleanup() {
    [ -n "$cap_pid" ] && kill "$cap_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The generator: sendmmsg batches of 32, paced against the clock; it binds the receiving
# socket itself (never read; the kernel drops at the socket, after the capture taps) so no
# ICMP port-unreachable traffic is added.
cat > "$work/blast.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: blast PORT RATE COUNT SIZE\n"); return 2; }
    int port = atoi(argv[1]); double rate = atof(argv[2]); long count = atol(argv[3]); int size = atoi(argv[4]);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int r = socket(AF_INET, SOCK_DGRAM, 0), small = 4096;
    setsockopt(r, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    if (bind(r, (struct sockaddr *)&a, sizeof a)) { perror("bind"); return 1; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
    char buf[65536]; memset(buf, 'x', sizeof buf);
    enum { B = 32 };
    struct mmsghdr m[B]; struct iovec v[B];
    for (int i = 0; i < B; i++) { v[i].iov_base = buf; v[i].iov_len = size; memset(&m[i], 0, sizeof m[i]); m[i].msg_hdr.msg_iov = &v[i]; m[i].msg_hdr.msg_iovlen = 1; }
    double start = now(), deadline = start + 3.0 * count / rate + 10; long sent = 0;
    while (sent < count && now() < deadline) {
        while (now() < start + sent / rate) ;
        int n = count - sent < B ? count - sent : B;
        int k = sendmmsg(s, m, n, 0);
        if (k > 0) sent += k;
    }
    printf("%ld %.0f\n", sent, sent / (now() - start));
    return 0;
}
C
cc -O2 -o "$work/blast" "$work/blast.c"

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# wait_for FILE TEXT: until TEXT appears in FILE (at most 10 s).
wait_for() {
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "bench/live.sh: capture did not start: $(cat "$1")" >&2; exit 1
}

# step TOOL RATE: prints "sent achieved captured dropped cpu_ns_per_frame"
step() {
    local tool=$1 rate=$2 count=$(( $2 * SECS ))
    : > "$work/err"
    if [ "$tool" = statescope ]; then
        "$BIN" live -i lo --filter "udp port $port" -w "$work/cap.pcap" --format jsonl -q \
            > /dev/null 2> "$work/err" &
        cap_pid=$!
        wait_for "$work/err" "capturing on"
    else
        # tcpdump: its default 2 MiB ring; tcpdump-B64M: the same 64 MiB queue statescope asks for.
        local buf=()
        [ "$tool" = tcpdump-B64M ] && buf=(-B 65536)
        tcpdump -i lo -n "${buf[@]}" -w "$work/cap.pcap" "udp port $port" 2> "$work/err" &
        cap_pid=$!
        wait_for "$work/err" "listening on"
    fi
    read -r sent achieved < <("$work/blast" "$port" "$rate" "$count" "$SIZE")
    sleep 1
    # CPU time (user + system, in clock ticks) the capturer spent on the step.
    local ticks
    ticks=$(awk '{ print $14 + $15 }' "/proc/$cap_pid/stat")
    kill -INT "$cap_pid"; wait "$cap_pid" || true; cap_pid=""
    local captured dropped
    if [ "$tool" = statescope ]; then
        captured=$(sed -nE 's/.* ([0-9]+) frames, ([0-9]+) dropped by kernel.*/\1/p' "$work/err")
        dropped=$(sed -nE 's/.* ([0-9]+) frames, ([0-9]+) dropped by kernel.*/\2/p' "$work/err")
    else
        captured=$(sed -nE 's/^([0-9]+) packets? captured.*/\1/p' "$work/err")
        dropped=$(sed -nE 's/^([0-9]+) packets? dropped by kernel.*/\1/p' "$work/err")
    fi
    local per_frame
    per_frame=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$sent" \
        'BEGIN { printf "%.0f", t / hz * 1e9 / n }')
    echo "$sent $achieved ${captured:-?} ${dropped:-?} $per_frame"
}

best_s=0; best_t=0; best_b=0
printf '%-12s %10s %10s %10s %10s %8s %13s\n' tool target_fps sent_fps captured dropped kept_up cpu_ns/frame
for rate in $RATES; do
    for tool in statescope tcpdump tcpdump-B64M; do
        read -r sent achieved captured dropped cpu < <(step "$tool" "$rate")
        ok=no
        if [ "$dropped" = 0 ] && [ "$captured" = "$sent" ]; then ok=yes; fi
        printf '%-12s %10s %10s %10s %10s %8s %13s\n' "$tool" "$rate" "$achieved" "$captured" \
            "$dropped" "$ok" "$cpu"
        if [ "$ok" = yes ]; then
            if [ "$tool" = statescope ]; then
                [ "$achieved" -gt "$best_s" ] && best_s=$achieved
            elif [ "$tool" = tcpdump ]; then
                [ "$achieved" -gt "$best_t" ] && best_t=$achieved
            else
                [ "$achieved" -gt "$best_b" ] && best_b=$achieved
            fi
        fi
    done
done
echo "highest rate kept up with ($SIZE-byte UDP payloads on lo, ${SECS}s per step):" \
    "statescope live -w $best_s frames/s, tcpdump -w $best_t, tcpdump -B 65536 -w $best_b"
awk -v s="$best_s" -v t="$best_t" -v b="$best_b" 'BEGIN {
    if (t > 0) printf "ratio statescope/tcpdump: %.2f\n", s / t
    if (b > 0) printf "ratio statescope/tcpdump-B64M: %.2f\n", s / b
}'
echo "(the generator shares the CPUs: when sent_fps falls short of target_fps, the machine is the limit)"
