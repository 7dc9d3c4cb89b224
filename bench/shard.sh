#!/usr/bin/env bash
# Scale-out benchmark: one `replay` run against two `replay --shard I/2` processes at once, on the
# same capture, alternating, wall seconds (median and range of ROUNDS), summary and JSON lines,
# default threads and --threads 1.
#
#   bench/shard.sh CAPTURE [ROUNDS]      (ROUNDS default 4; BIN=path to use another binary)
#
# A capture with many flows splits evenly (examples/replicate makes one from
# bench/make-capture.sh's base: `target/release/examples/replicate base.pcap big4.pcap 4 16`).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
F=${1:?usage: bench/shard.sh CAPTURE [ROUNDS]}; R=${2:-4}
if [ -z "${BIN:-}" ]; then (cd "$here" && cargo build --release -q); fi
B=${BIN:-$here/target/release/statescope}
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); python3 -c "print($e - $s)"; }
two() { "$B" replay -q $1 $2 --shard 0/2 "$F" >/dev/null & local p=$!; "$B" replay -q $1 $2 --shard 1/2 "$F" >/dev/null; wait $p; }
for r in $(seq "$R"); do
  for mode in "" "--format jsonl"; do
    for th in "" "--threads 1"; do
      a=$(t "$B" replay -q $mode $th "$F"); b=$(t two "$mode" "$th")
      echo "[$mode|$th] one $a two $b"
    done
  done
done | python3 -c "
import sys,collections
d=collections.defaultdict(list)
for l in sys.stdin:
    k,rest=l.split('] '); p=rest.split(); d[k+']'].append((float(p[1]),float(p[3])))
for k,v in d.items():
    one=sorted(x[0] for x in v); two=sorted(x[1] for x in v); sp=sorted(x[0]/x[1] for x in v)
    print(k,'one %.2f (%.2f-%.2f)'%(one[len(one)//2],one[0],one[-1]),'two shards %.2f (%.2f-%.2f)'%(two[len(two)//2],two[0],two[-1]),'speed-up median %.2fx range %.2f-%.2f'%(sp[len(sp)//2],sp[0],sp[-1]))
"
