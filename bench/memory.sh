#!/usr/bin/env bash
# Peak memory under attack, with the default --max-memory (issue 25's "done when").
#
#   bench/memory.sh [BIN] [OUTDIR]     BIN defaults to target/release/statescope
#
# Captures come from bench/attack.py (no scapy needed) into OUTDIR (default target/bench-memory;
# about 1.5 GB, deleted at the end):
#  1. a SYN flood: 1,000,000 SYNs from distinct addresses within one second of capture time;
#  2. an out-of-order attack: 300 connections, each sending 4.5 MiB behind a hole it never
#     fills (all 300 wait at once: 1.3 GB held with no budget);
#  3. the flood again with no limit (--max-memory 64G), for the calibration in README.
# Each is replayed with the summary printer; peak RSS from /usr/bin/time -v, and the summary
# line saying how many connections were evicted and reassembly bytes given up.
#
#   bench/memory.sh [BIN] [OUTDIR] [HTTP_PCAP]      ATTACKS=0 skips the attacks
#
# With HTTP_PCAP (a busy full-snaplen HTTP capture: `SNAPLEN=0 bench/make-capture.sh DIR 12`
# gives DIR/base.pcap, ~860k frames of nginx+wrk, and DIR/big.pcap, 12 copies, ~10M frames),
# also replay it as a user would: the summary (default threads), --threads 1, and JSON lines
# (three threads). Issue 26 asks for peak RSS below 64 MiB there on 10M frames; most of the
# capture's connections close within a second and linger 2 s in the table, so the table and
# the records of the sweeps that finish them dominate (measured, big.pcap with 12 copies:
# summary 89 -> 40 MiB, --threads 1 59 -> 35, JSON lines 106 -> 57).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/target/release/statescope}
out=${2:-$here/target/bench-memory}
http=${3:-}
[ -x "$bin" ] || { echo "memory.sh: build first: cargo build --release" >&2; exit 1; }
command -v /usr/bin/time >/dev/null || { echo "memory.sh: needs GNU time (apt-get install time)" >&2; exit 1; }
mkdir -p "$out"
trap 'rm -f "$out/flood.pcap" "$out/ooo.pcap"' EXIT

run() { # name, file, extra args...
  local name=$1 file=$2
  shift 2
  /usr/bin/time -v "$bin" replay "$file" "$@" >/dev/null 2>"$out/$name.err" || true
  local rss
  rss=$(awk '/Maximum resident set size/ {print $6}' "$out/$name.err")
  printf '%-28s %8.1f MiB peak RSS  %s\n' "$name" "$(echo "$rss / 1024" | bc -l)" \
    "$(grep '^statescope: .*frames' "$out/$name.err" | sed 's/^statescope: //')"
}
if [ "${ATTACKS:-1}" != 0 ]; then
  python3 "$here/bench/attack.py" synflood 1000000 "$out/flood.pcap"
  python3 "$here/bench/attack.py" ooo 300 4608 "$out/ooo.pcap"
  ls -la "$out/flood.pcap" "$out/ooo.pcap" | awk '{print $5, $9}'
  run "syn flood, default budget" "$out/flood.pcap"
  run "out of order, default" "$out/ooo.pcap"
  run "syn flood, no limit" "$out/flood.pcap" --max-memory 64G
fi
if [ -n "$http" ]; then
  [ -f "$http" ] || { echo "memory.sh: no such capture: $http" >&2; exit 1; }
  run "http, summary" "$http"
  run "http, summary, --threads 1" "$http" --threads 1
  run "http, JSON lines" "$http" --format jsonl
fi
