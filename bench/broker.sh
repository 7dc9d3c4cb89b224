#!/usr/bin/env bash
# Fan-out throughput, 3 servers: Redis pub-sub measured against the embedded broker (the
# baseline), side by side, at two levels (see examples/broker_fanout.rs):
#   broker  3 publishers and 3 subscriptions on the broker API alone
#   chat    the whole path of `lab scale-stateful`: 3 WebSocket chat servers, 1 user each
# Runs alternate (embedded, redis, embedded, redis, ...) so both see the same machine load;
# the summary gives medians and the ratio redis/embedded.
#
#   bench/broker.sh                 # MESSAGES=30000 ROUNDS=3
#   MESSAGES=90000 ROUNDS=5 bench/broker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-30000}
ROUNDS=${ROUNDS:-3}
command -v redis-server >/dev/null || { echo "bench/broker.sh: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }

cargo build --release --quiet --example broker_fanout
BIN=target/release/examples/broker_fanout

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --save '' --appendonly no --port "$PORT" --bind 127.0.0.1 >/dev/null &
RPID=$!
trap 'kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
  sleep 0.05
done

OUT=$(mktemp)
for level in broker chat; do
  for round in $(seq "$ROUNDS"); do
    for b in embedded "redis://127.0.0.1:$PORT"; do
      "$BIN" "$b" "$level" "$MESSAGES" | tee -a "$OUT"
    done
  done
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print()
print(f"{'level':<7} {'broker':<10} {'msgs/s (median)':>16} {'deliveries/s':>14} {'lost':>6}")
for level in ("broker", "chat"):
    med = {}
    for kind in ("embedded", "redis"):
        rs = [r for r in rows if r["level"] == level and (r["broker"] == "embedded") == (kind == "embedded")]
        m = statistics.median(r["messages_per_s"] for r in rs)
        d = statistics.median(r["deliveries_per_s"] for r in rs)
        lost = sum(r["lost"] for r in rs)
        med[kind] = m
        print(f"{level:<7} {kind:<10} {m:>16,.0f} {d:>14,.0f} {lost:>6}")
    print(f"{level:<7} redis/embedded throughput ratio: {med['redis'] / med['embedded']:.3f}")
PY
rm -f "$OUT"
