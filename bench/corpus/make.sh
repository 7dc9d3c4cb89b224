#!/usr/bin/env bash
# Generalisation corpus: real captures between network namespaces plus independent oracles
# (tshark 4.0 packets/HTTP fields, the kernel's `ss -tan` socket table, conv,tcp) in the
# format of the evaluation corpus, so that
#   python3 score.py OUTDIR --bin target/release/statescope
# scores the replay engine on traffic it was never tuned on.
# Usage: sudo bench/corpus/make.sh OUTDIR [SCENARIO...]   (about a minute; needs root)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "bench/corpus/make.sh needs root (network namespaces, nftables, tcpdump): run it as root" >&2
  exit 1
fi
if [ $# -lt 1 ]; then
  echo "usage: $0 OUTDIR [SCENARIO...]" >&2
  exit 2
fi
for tool in ip ss nft ethtool tcpdump tshark nginx curl wrk python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install it)" >&2; exit 1; }
done
here="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)
python3 "$here/corpus.py" corpus "$@"
echo "corpus made in $(( $(date +%s) - start )) s: $1" >&2
