#!/usr/bin/env bash
# Replay benchmark: statescope against tcpdump and tshark on the same capture, side by side.
#
#   bench/replay.sh [CAPTURE]     (default: makes bench/out/big.pcap with bench/make-capture.sh)
#
# Reports packets/s from wall-clock time (what a user waits for; statescope reads ahead, and for
# JSON lines prints, on other threads) and from CPU time (user+sys), the ratios the replay issue
# asks for on both, and peak RSS. tshark is far slower, so it runs on the first TSHARK_FRAMES
# frames (default 1 000 000) and its rate is compared per packet.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cap=${1:-$here/bench/out/big.pcap}
# Only the default capture is made when missing; a named one must exist.
if [ ! -f "$cap" ]; then
  [ $# -eq 0 ] || { echo "bench: no capture file at $cap (give an existing pcap, or none to make bench/out/big.pcap)" >&2; exit 1; }
  "$here/bench/make-capture.sh" "$here/bench/out" 6
fi
# Absolute, so that the head's symbolic link (a capture shorter than the head) resolves.
cap=$(realpath "$cap")
case ${CACHE:-reread} in
  reread | asis) ;;
  *) echo "bench: CACHE must be reread or asis, not '$CACHE'" >&2; exit 1 ;;
esac
(cd "$here" && cargo build --release -q)
bin=$here/target/release/statescope
frames=$(capinfos -Mc "$cap" 2>/dev/null | awk '/Number of packets/ {print $NF}')
[ -n "$frames" ] || frames=$("$bin" replay -q --no-http --format jsonl --no-analysis "$cap" 2>&1 >/dev/null | awk '{print $2; exit}')
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Read the capture once first, so the first timed run does not pay for the disk alone (between
# sessions the page cache here had kept 1.7 of a 12 GB capture's GB; reading the rest took 23 s).
# How the pages got into the cache matters too: a file just written in small writes (tcpdump,
# editcap) is cached in 4 KiB folios, one read from disk in large ones on kernels with large
# folios for its file system (ext4 since Linux 6.16). A mapped read of large folios is mapped
# 2 MiB at a time: on this machine's 6.18 kernel, touching each KiB of a 2.4 GB capture through
# a map cost 0.22 s of CPU in 36 k faults over small folios and 0.03 s in 2 k faults over
# large ones; medians of 5 alternating runs over the same 2 M frames cached both ways: JSON
# lines 0.93 -> 0.84 s (CPU 1.77 -> 1.56 s), summary 0.61 -> 0.53 s, tcpdump 0.87 -> 0.82 s. So by
# default the capture's cached pages are dropped first (POSIX_FADV_DONTNEED: clean pages only,
# no privilege needed) and read again, the state a capture copied in or read before is in;
# CACHE=asis keeps whatever the cache holds.
if [ "${CACHE:-reread}" = reread ]; then
  python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$cap"
fi
cat "$cap" > /dev/null

# run NAME CMD... : runs CMD ${RUNS:-3} times (RUNS=1 for the slow tshark run) and prints the
# run with the median wall time: wall and cpu seconds, packets/s on each, and the highest peak
# RSS of all runs. A single run of a one-second command on a shared machine is mostly noise.
# MORE=1 adds to the runs NAME already has instead of starting afresh.
run() {
  local name=$1; shift
  local i
  [ -n "${MORE:-}" ] || : > "$tmp/$name.all"
  for i in $(seq "${RUNS:-3}"); do
    /usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$@" > /dev/null 2> "$tmp/err" || { echo "$name failed: $(tail -1 "$tmp/err")" >&2; exit 1; }
    cat "$tmp/t" >> "$tmp/$name.all"
  done
  python3 - "$name" "${FR:-$frames}" "$tmp/$name.all" "$tmp/$name" <<'PY'
import sys
name, n, runs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rows = sorted(tuple(map(float, l.split())) for l in open(runs) if l.strip())
e, u, s, _ = rows[len(rows) // 2]
m = max(r[3] for r in rows)
e, cpu = max(e, 0.001), max(u + s, 0.001)
walls = " ".join(f"{r[0]:.2f}" for r in rows)
print(f"{name:<22} {e:7.2f} s wall {n / e:10.0f} pkt/s {cpu:7.2f} s cpu {n / cpu:10.0f} pkt/s {m / 1024:7.1f} MiB peak  (walls {walls})")
open(out + ".wall", "w").write(f"{e}\n")
open(out + ".cpu", "w").write(f"{cpu}\n")
PY
}
echo "capture: $cap ($frames frames, $(du -h "$cap" | cut -f1)); page cache: ${CACHE:-reread}"
run tcpdump            tcpdump -nr "$cap" -w /dev/null
run summary            "$bin" replay -q "$cap"
run summary-no-http    "$bin" replay -q --no-http "$cap"
run tracking-only      "$bin" replay -q --no-http --no-analysis "$cap"
run jsonl              "$bin" replay -q --format jsonl "$cap"
run jsonl-no-http      "$bin" replay -q --no-http --format jsonl "$cap"

n=${TSHARK_FRAMES:-1000000}
# TSHARK_FRAMES=all: tshark reads the whole capture (a 10 M-frame capture takes it ~8 minutes
# and ~6.5 GiB). A capture shorter than the head is its own head: the rates below divide by the
# frames read.
[ "$n" = all ] && n=$frames
[ "$n" -le "$frames" ] || n=$frames
# The head in the capture's own format (editcap writes pcapng unless told), so both programs
# read the same kind of file the whole-capture runs read; the whole capture is read as it is.
fmt=pcap
if capinfos -t "$cap" 2>/dev/null | grep -q pcapng; then fmt=pcapng; fi
if [ "$n" -eq "$frames" ]; then
  ln -s "$cap" "$tmp/head.$fmt"
else
  editcap -F "$fmt" -r "$cap" "$tmp/head.$fmt" "1-$n" >/dev/null 2>&1
fi
# statescope's head runs go on both sides of the long tshark run: the machine's speed drifts
# over half a minute of load, and neither program should get only the fresh or only the tired
# side of it.
FR=$n RUNS=2 run jsonl-head   "$bin" replay -q --format jsonl "$tmp/head.$fmt" > /dev/null
FR=$n RUNS=1 run tshark-fields-head  tshark -r "$tmp/head.$fmt" -T fields -e frame.number -e tcp.stream -e tcp.seq -e tcp.ack -e tcp.analysis.flags
FR=$n RUNS=2 MORE=1 run jsonl-head "$bin" replay -q --format jsonl "$tmp/head.$fmt"

ratios() {
  local kind=$1
  c() { cat "$tmp/$1.$kind"; }
  python3 - "$kind" "$(c tcpdump)" "$(c summary)" "$(c summary-no-http)" "$(c tracking-only)" "$(c jsonl)" "$(c jsonl-no-http)" "$(c tshark-fields-head)" "$(c jsonl-head)" "$frames" "$n" "$tmp" <<'PY'
import sys
kind = sys.argv[1]
tcpd, summ, summ_nh, track, jsonl, jsonl_nh, tsh, jh = map(float, sys.argv[2:10])
frames, n, tmp = int(sys.argv[10]), int(sys.argv[11]), sys.argv[12]
def runs(name):
    rows = [list(map(float, l.split())) for l in open(f"{tmp}/{name}.all") if l.strip()]
    return [max(r[0] if kind == "wall" else r[1] + r[2], 0.001) for r in rows]
tsh_rate = n / tsh
print()
print(f"ratios of packets/s on {kind} time:")
print(f"  summary (table) vs tcpdump -nr -w /dev/null:   {tcpd / summ:.2f}x  (no HTTP: {tcpd / summ_nh:.2f}x; target >= 1.0x)")
print(f"  jsonl, every packet record vs tshark -T fields: {frames / jsonl / tsh_rate:.1f}x whole capture, {tsh / jh:.1f}x same head  (no HTTP: {frames / jsonl_nh / tsh_rate:.1f}x; target >= 100x)")
print(f"  analysis over tracking alone:                   {summ_nh / track:.2f}x")
print(f"  HTTP/WebSocket parsing over replay without:     {summ / summ_nh:.2f}x")
# Each statescope run against the other program's median: how far the machine's noise moves them.
span = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}x" if max(xs) < 10 else f"{min(xs):.1f}-{max(xs):.1f}x"
print(f"  ranges over runs: summary {span([tcpd / t for t in runs('summary')])} tcpdump; jsonl {span([frames / t / tsh_rate for t in runs('jsonl')])} tshark whole, {span([tsh / t for t in runs('jsonl-head')])} same head")
PY
}
ratios wall
ratios cpu
