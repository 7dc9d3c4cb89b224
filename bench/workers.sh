#!/usr/bin/env bash
# In-process workers (`replay --workers N`) against one tracking thread, on one capture.
#
#   bench/workers.sh CAPTURE [N...]        (default N: 2 4; BIN=path to use another binary)
#
# A machine with more cores than this one's two is what --workers is for, so wall time here
# says little. What this measures instead is each thread's work, with callgrind
# (--separate-threads=yes: instructions per thread, repeatable whatever else the machine does):
# the run can finish no sooner than its busiest thread, so that thread's instructions against
# the instructions of the default run's tracking thread (and of a one-thread run) give the
# speed-up the same run would have with a core per thread. Then, for honesty, wall seconds on
# this machine (median of ROUNDS, default 3), and peak RSS.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cap=${1:?usage: bench/workers.sh CAPTURE [N...]}; shift
ns=("$@"); [ ${#ns[@]} -gt 0 ] || ns=(2 4)
if [ -z "${BIN:-}" ]; then (cd "$here" && cargo build --release -q); fi
bin=${BIN:-$here/target/release/statescope}
command -v valgrind >/dev/null || { echo "bench: valgrind is not installed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# threads NAME ARGS... : instructions of each thread of `replay -q ARGS CAPTURE`, busiest first.
threads() {
  local name=$1; shift
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$tmp/cg.$name" \
    "$bin" replay -q "$@" "$cap" > /dev/null 2> "$tmp/$name.err"
  for f in "$tmp/cg.$name"-*; do awk '/^totals:/ {print $2}' "$f"; done | sort -rn > "$tmp/$name.threads"
}
wall() {
  local r
  for r in $(seq "${ROUNDS:-3}"); do
    /usr/bin/time -f "%e %M" -o "$tmp/t" "$bin" replay -q "$@" "$cap" > /dev/null
    cat "$tmp/t"
  done | sort -n | awk '{w[NR]=$1; if ($2>m) m=$2} END {printf "%.2f s wall (median of %d), %.0f MiB peak", w[int((NR+1)/2)], NR, m/1024}'
}
for mode in summary jsonl; do
  fmt=(); [ "$mode" = jsonl ] && fmt=(--format jsonl)
  echo "== $mode"
  threads one "${fmt[@]}" --threads 1
  threads default "${fmt[@]}"
  one=$(head -1 "$tmp/one.threads"); def=$(head -1 "$tmp/default.threads")
  printf "  %-12s busiest thread %6.0f M instr   threads: %s   %s\n" "one thread" "$((one / 1000000))" "$(tr '\n' ' ' < "$tmp/one.threads" | awk '{for(i=1;i<=NF;i++) printf "%.0fM ", $i/1e6}')" "$(wall "${fmt[@]}" --threads 1)"
  printf "  %-12s busiest thread %6.0f M instr   threads: %s   %s\n" "default" "$((def / 1000000))" "$(tr '\n' ' ' < "$tmp/default.threads" | awk '{for(i=1;i<=NF;i++) printf "%.0fM ", $i/1e6}')" "$(wall "${fmt[@]}")"
  for n in "${ns[@]}"; do
    threads "w$n" "${fmt[@]}" --workers "$n"
    b=$(head -1 "$tmp/w$n.threads"); sum=$(awk '{s+=$1} END {print s}' "$tmp/w$n.threads")
    printf "  %-12s busiest thread %6.0f M instr   threads: %s   %s\n" "--workers $n" "$((b / 1000000))" "$(tr '\n' ' ' < "$tmp/w$n.threads" | awk '{for(i=1;i<=NF;i++) printf "%.0fM ", $i/1e6}')" "$(wall "${fmt[@]}" --workers "$n")"
    python3 -c "print('    with a core per thread: %.2fx the default run, %.2fx one thread; all threads together %.2fx one thread\'s work' % ($def/$b, $one/$b, $sum/$one))"
  done
done
