#!/usr/bin/env bash
# How quickly a report for a ~100 000-segment capture opens in a real browser.
#
# Builds two large record sets from the real bulk-loss-rx records (5147 segments, 216 analysis
# events): "one" stitches 20 copies into a single 102 940-segment connection (sequence numbers,
# times and frames shifted, so it reads as one long lossy transfer); "many" keeps the 20 copies
# as 20 connections. Renders each to HTML, then measures headless chromium opening it:
#  - in the page: the self-check line's parse_ms is performance.now() when the page's last
#    script runs (the DOM is parsed: DOM-ready), check_ms the layout and counting after it;
#  - whole browser runs, side by side with hyperfine against a small report as the baseline:
#    --screenshot (start, load, lay out, paint, exit) and --dump-dom (the same, plus
#    serialising the whole DOM back out, which large pages pay for and users do not).
#
# Usage: bench/report.sh [OUT_DIR]   (needs chromium, hyperfine, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-report}
mkdir -p "$out"
src=tests/fixtures/records/bulk-loss-rx.jsonl
small=tests/fixtures/records/http-keepalive.jsonl

python3 - "$src" "$out" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
recs = [json.loads(l) for l in open(src) if l.strip()]
pk = [r for r in recs if r["type"] == "packet"]
conn = [r for r in recs if r["type"] == "conn"][0]
span_t = pk[-1]["ts"] - pk[0]["ts"] + 0.001
span_f = pk[-1]["frame"]
bytes_ = {"c2s": conn["bytes_c2s"], "s2c": conn["bytes_s2c"]}
COPIES = 20
with open(f"{out}/one.jsonl", "w") as one, open(f"{out}/many.jsonl", "w") as many:
    for k in range(COPIES):
        for p in pk:
            q = dict(p)
            q["ts"] = p["ts"] + k * span_t
            q["frame"] = p["frame"] + k * span_f
            q["conn"] = k
            many.write(json.dumps(q, separators=(",", ":")) + "\n")
            # One connection: only the first copy's handshake and the last copy's close.
            if (k > 0 and "SYN" in p["flags"]) or (k < COPIES - 1 and "FIN" in p["flags"]):
                continue
            q = dict(q)
            q["conn"] = 0
            back = "s2c" if p["dir"] == "c2s" else "c2s"
            q["seq"] = (p["seq"] + k * bytes_[p["dir"]]) % 2**32
            if "ack" in p:
                q["ack"] = (p["ack"] + k * bytes_[back]) % 2**32
            one.write(json.dumps(q, separators=(",", ":")) + "\n")
        c = dict(conn)
        c["conn"] = k
        c["first_ts"] += k * span_t
        c["last_ts"] += k * span_t
        many.write(json.dumps(c, separators=(",", ":")) + "\n")
    c = dict(conn)
    c["last_ts"] += (COPIES - 1) * span_t
    one.write(json.dumps(c, separators=(",", ":")) + "\n")
PY

cargo build -q --example report_from_jsonl
gen=target/debug/examples/report_from_jsonl
for name in one many; do
    echo "== $name: $(grep -c '"type":"packet"' "$out/$name.jsonl") segments"
    /usr/bin/time -f "render: %es, %MKB max RSS" "$gen" "$out/$name.jsonl" "$out/$name.html"
    ls -l "$out/$name.html" | awk '{printf "html: %.1f MB\n", $5/1e6}'
done
"$gen" "$small" "$out/small.html" 2>/dev/null

chrome() {
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d)" "$@" 2>/dev/null
}
for name in small one many; do
    echo "== $name in the browser: $(chrome --dump-dom "file://$PWD/$out/$name.html" | grep -o 'id="selfcheck">conns=[^<]*')"
done
flags="--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync --user-data-dir=$(mktemp -d)"
hyperfine --warmup 1 --runs 5 -N \
    -n small "chromium $flags --dump-dom file://$PWD/$out/small.html" \
    -n one-100k "chromium $flags --dump-dom file://$PWD/$out/one.html" \
    -n many-100k "chromium $flags --dump-dom file://$PWD/$out/many.html" \
    -n one-100k-screenshot "chromium $flags --screenshot=$PWD/$out/one.png --window-size=1400,2000 file://$PWD/$out/one.html" \
    -n many-100k-screenshot "chromium $flags --screenshot=$PWD/$out/many.png --window-size=1400,2000 file://$PWD/$out/many.html"
