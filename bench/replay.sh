#!/usr/bin/env bash
# Replay benchmark: statescope against tcpdump and tshark on the same capture, side by side.
#
#   bench/replay.sh [CAPTURE]     (default: makes bench/out/big.pcap with bench/make-capture.sh)
#
# Reports packets/s from CPU time (user+sys: steadier than wall time on a shared machine), the
# ratios the replay issue asks for, and peak RSS. tshark is far slower, so it runs on the first
# TSHARK_FRAMES frames and its rate is compared per packet.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cap=${1:-$here/bench/out/big.pcap}
if [ ! -f "$cap" ]; then "$here/bench/make-capture.sh" "$here/bench/out" 6; fi
(cd "$here" && cargo build --release -q)
bin=$here/target/release/statescope
frames=$(capinfos -Mc "$cap" 2>/dev/null | awk '/Number of packets/ {print $NF}')
[ -n "$frames" ] || frames=$("$bin" replay -q --no-http --format jsonl --no-analysis "$cap" 2>&1 >/dev/null | awk '{print $2; exit}')
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# run NAME CMD... : prints cpu seconds and peak KiB
run() {
  local name=$1; shift
  /usr/bin/time -f "%U %S %M" -o "$tmp/t" "$@" > /dev/null 2> "$tmp/err" || { echo "$name failed: $(tail -1 "$tmp/err")" >&2; exit 1; }
  read -r u s m < "$tmp/t"
  cpu=$(python3 -c "print(max($u + $s, 0.001))")
  printf '%-34s %8.2f s cpu %10.0f pkt/s %8.1f MiB peak\n' "$name" "$cpu" "$(python3 -c "print(${FR:-$frames} / $cpu)")" "$(python3 -c "print($m / 1024)")"
  echo "$cpu" > "$tmp/$name.cpu"
}
echo "capture: $cap ($frames frames, $(du -h "$cap" | cut -f1))"
run tcpdump            tcpdump -nr "$cap" -w /dev/null
run summary            "$bin" replay -q "$cap"
run summary-no-http    "$bin" replay -q --no-http "$cap"
run tracking-only      "$bin" replay -q --no-http --no-analysis "$cap"
run jsonl              "$bin" replay -q --format jsonl "$cap"
run jsonl-no-http      "$bin" replay -q --no-http --format jsonl "$cap"

n=${TSHARK_FRAMES:-100000}
editcap -r "$cap" "$tmp/head.pcap" "1-$n" >/dev/null 2>&1
FR=$n run tshark-fields-head  tshark -r "$tmp/head.pcap" -T fields -e frame.number -e tcp.stream -e tcp.seq -e tcp.ack -e tcp.analysis.flags
FR=$n run jsonl-head          "$bin" replay -q --format jsonl "$tmp/head.pcap"

c() { cat "$tmp/$1.cpu"; }
python3 - "$(c tcpdump)" "$(c summary)" "$(c summary-no-http)" "$(c tracking-only)" "$(c jsonl)" "$(c tshark-fields-head)" "$(c jsonl-head)" <<'PY'
import sys
tcpd, summ, summ_nh, track, jsonl, tsh, jh = map(float, sys.argv[1:])
print()
print(f"summary (table) vs tcpdump -nr -w /dev/null:        {tcpd / summ:.2f}x  (no HTTP: {tcpd / summ_nh:.2f}x; target >= 0.5x)")
print(f"jsonl, every packet record vs tshark -T fields:      {tsh / jh:.1f}x   (target >= 50x, same head of the capture)")
print(f"cost of Wireshark analysis over tracking alone:      {summ_nh / track:.2f}x cpu")
print(f"cost of HTTP/WebSocket parsing over replay without:  {summ / summ_nh:.2f}x cpu")
PY
