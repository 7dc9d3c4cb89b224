#!/bin/sh
# Capture reading and decoding throughput.
#
#   bench/read.sh [CAPTURE] [ROUNDS]
#
# 1. Decode only: the capture's frames held in memory, decoded ROUNDS times (packets/s).
# 2. Read + decode of a large file (CAPTURE repeated to ~200 MB with mergecap -a), timed side by
#    side with `tcpdump -r FILE -w /dev/null` (libpcap reading and writing the same file, no
#    decoding) as the baseline: the ratio is what to compare between runs and machines.
set -eu
cd "$(dirname "$0")/.."
CAP=${1:-/work/shared/eval/public/bulk-clean.pcap}
ROUNDS=${2:-500}
cargo build --release --example decode_rate >/dev/null 2>&1
BIN=target/release/examples/decode_rate
$BIN decode "$CAP" "$ROUNDS"

BIG=$(mktemp --suffix=.pcap)
trap 'rm -f "$BIG"' EXIT
COPIES=$(( 200000000 / $(stat -c %s "$CAP") + 1 ))
set --
i=0
while [ $i -lt "$COPIES" ]; do set -- "$@" "$CAP"; i=$((i + 1)); done
mergecap -a -F pcap -w "$BIG" "$@"
echo "large file: $(stat -c %s "$BIG") bytes"
$BIN read "$BIG"
if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 1 --runs 5 "$BIN read $BIG" "tcpdump -r $BIG -w /dev/null"
else
    /usr/bin/time -f "statescope read+decode: %e s, max RSS %M KB" "$BIN" read "$BIG"
    /usr/bin/time -f "tcpdump -r -w /dev/null: %e s, max RSS %M KB" tcpdump -r "$BIG" -w /dev/null
fi
/usr/bin/time -f "max RSS of read+decode: %M KB (must not grow with file size)" "$BIN" read "$BIG"
