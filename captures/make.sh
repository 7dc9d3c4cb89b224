#!/usr/bin/env bash
# Remake the project's shipped sample captures from real traffic between two network
# namespaces (ss-client 10.99.0.1 <-> ss-server 10.99.0.2 on a veth pair), recorded with
# tcpdump on the client's interface. Idempotent: the captures are overwritten, the
# namespaces are deleted and every process started is ended by its PID afterwards.
# Usage: sudo captures/make.sh   (a few seconds; needs root)
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "captures/make.sh needs root (network namespaces, tcpdump): run it as root" >&2
  exit 1
fi
for tool in ip ss ethtool tcpdump nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install it)" >&2; exit 1; }
done
here="$(cd "$(dirname "$0")" && pwd)"
python3 "$here/../bench/corpus/corpus.py" samples "$here"
ls -l "$here"/*.pcap "$here"/pipelined.app.txt
