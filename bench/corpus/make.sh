#!/usr/bin/env bash
# Generalisation corpus: real captures between network namespaces plus independent oracles
# (tshark 4.0 packets/HTTP fields, the kernel's `ss -tan` socket table, the kernel's own
# state-transition log from the tracepoint sock:inet_sock_set_state, conv,tcp) in the
# format of the evaluation corpus, so that
#   python3 score.py OUTDIR --bin target/release/statescope
# scores the replay engine on traffic it was never tuned on.
# Usage: sudo bench/corpus/make.sh OUTDIR [SCENARIO...]          (about two minutes; needs root)
#        sudo bench/corpus/make.sh states OUTDIR [SCENARIO...]   (the small endpoint-state set,
#                                                                 tests/fixtures/states/rN)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/corpus/make.sh needs root (network namespaces, nftables, tcpdump, tracefs): run it as root" >&2
  exit 1
fi
mode=corpus
if [ "${1:-}" = states ]; then
  mode=states
  shift
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 [states] OUTDIR [SCENARIO...]" >&2
  exit 2
fi
for tool in ip ss nft ethtool tcpdump tshark nginx curl wrk python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install it)" >&2; exit 1; }
done
# the transition oracle needs tracefs (mounted by corpus.py at /sys/kernel/tracing if needed)
grep -qw tracefs /proc/filesystems || { echo "this kernel has no tracefs: no transition oracle" >&2; exit 1; }
here="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)
python3 "$here/corpus.py" "$mode" "$@"
echo "$mode made in $(( $(date +%s) - start )) s: $1" >&2
