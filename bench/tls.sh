#!/usr/bin/env bash
# TLS decryption benchmark: statescope --tls-keylog against tshark -o tls.keylog_file on the
# same TLS-heavy capture, the same HTTP fields out of both.
#
#   bench/tls.sh [OUTDIR]                 (default bench/out; makes OUTDIR/tls.pcap + tls.keylog)
#   CONNS=200 REQS=200 bench/tls.sh       (connections, requests on each; default 200 x 200)
#   BIN=target/debug/statescope RUNS=1 CONNS=5 REQS=5 bench/tls.sh /tmp/x   (a quick check)
#
# 1. nginx on 127.0.0.1 (a private config, a fresh P-256 self-signed certificate) serves a
#    2 KiB file over TLS 1.2 and 1.3.
# 2. tcpdump -i lo records CONNS curl runs (SSLKEYLOGFILE), each one keep-alive connection of
#    REQS requests, alternating TLS 1.3 (AES-128-GCM, ChaCha20) and TLS 1.2 (AES-128/256-GCM).
#    Bounded: CONNS x REQS requests, then everything started here is stopped by PID.
# 3. Times (median of RUNS, default 3) both decrypting the capture and printing the HTTP
#    messages: statescope as JSON lines, tshark as -T fields (frame, stream, method, uri,
#    code); both must find the same number of requests and responses. Prints the ratio.
# Needs root (tcpdump on lo), nginx, openssl, curl, tcpdump, tshark.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/bench/out}
conns=${CONNS:-200}
reqs=${REQS:-200}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cap=$out/tls.pcap
keys=$out/tls.keylog
for t in nginx openssl curl tcpdump tshark; do
  command -v $t >/dev/null || { echo "tls.sh: $t is missing (apt-get install nginx-light curl tcpdump tshark)" >&2; exit 1; }
done

work=$(mktemp -d)
srv= tcpd=
cleanup() {
  [ -n "$srv" ] && kill "$srv" 2>/dev/null || true
  [ -n "$tcpd" ] && kill "$tcpd" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if [ ! -f "$cap" ] || [ ! -f "$keys" ] || [ -n "${REMAKE:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "tls.sh: needs root for tcpdump on lo" >&2; exit 1; }
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/www" "$work/tmp"
  head -c 1536 /dev/urandom | base64 -w 76 > "$work/www/index.html"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=localhost" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  cat > "$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_tickets off;
    root $work/www;
  }
}
CONF
  nginx -c "$work/nginx.conf" -e "$work/error.log" & srv=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  rm -f "$keys"
  tcpdump -i lo -s 0 -U -w "$cap" "tcp port $port" 2>"$work/tcpdump.err" & tcpd=$!
  for _ in $(seq 50); do grep -q listening "$work/tcpdump.err" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  opts=("--tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256"
        "--tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256"
        "--tlsv1.3 --tls13-ciphers TLS_CHACHA20_POLY1305_SHA256"
        "--tlsv1.2 --tls-max 1.2 --ciphers ECDHE-ECDSA-AES256-GCM-SHA384")
  for i in $(seq "$conns"); do
    # shellcheck disable=SC2086
    SSLKEYLOGFILE="$keys" curl -sk --http1.1 --resolve "localhost:$port:127.0.0.1" \
      ${opts[$((i % 4))]} "https://localhost:$port/index.html?[1-$reqs]" > /dev/null
  done
  sleep 1.5
  kill -INT "$tcpd"; wait "$tcpd" 2>/dev/null || true; tcpd=
  kill "$srv"; wait "$srv" 2>/dev/null || true; srv=
fi

if [ -z "${BIN:-}" ]; then
  (cd "$here" && cargo build --release -q)
  BIN=$here/target/release/statescope
fi
frames=$(capinfos -Mc "$cap" 2>/dev/null | awk '/Number of packets/ {print $NF}')
echo "capture: $cap (${frames:-?} frames, $(du -h "$cap" | cut -f1)), key log $keys"

tmp=$(mktemp -d); trap 'cleanup; rm -rf "$tmp"' EXIT
# run NAME CMD...: RUNS times; prints the median wall and cpu seconds; keeps the last output.
run() {
  local name=$1; shift
  : > "$tmp/$name.all"
  for _ in $(seq "${RUNS:-3}"); do
    /usr/bin/time -f "%e %U %S %M" -o "$tmp/t" "$@" > "$tmp/$name.out" 2> "$tmp/err" \
      || { echo "$name failed: $(tail -1 "$tmp/err")" >&2; exit 1; }
    cat "$tmp/t" >> "$tmp/$name.all"
  done
  python3 - "$name" "$tmp/$name.all" "$tmp/$name" <<'PY'
import sys
name, runs, out = sys.argv[1:4]
rows = sorted(tuple(map(float, l.split())) for l in open(runs) if l.strip())
e, u, s, m = rows[len(rows) // 2]
print(f"{name:<12} {e:7.2f} s wall {u + s:7.2f} s cpu {max(r[3] for r in rows) / 1024:7.1f} MiB peak")
open(out + ".wall", "w").write(f"{max(e, 0.001)}\n")
open(out + ".cpu", "w").write(f"{max(u + s, 0.001)}\n")
PY
}
run statescope "$BIN" replay -q --format jsonl --tls-keylog "$keys" "$cap"
run tshark tshark -r "$cap" -o "tls.keylog_file:$keys" -Y http -T fields -E separator=/t \
  -e frame.number -e tcp.stream -e http.request.method -e http.request.uri -e http.response.code

# The same work on both sides: as many requests and responses.
ours_req=$(grep -c '"type":"http".*"method".*"tls":true' "$tmp/statescope.out" || true)
ours_resp=$(grep -c '"type":"http".*"status".*"tls":true' "$tmp/statescope.out" || true)
theirs_req=$(awk -F'\t' '$3 != ""' "$tmp/tshark.out" | wc -l)
theirs_resp=$(awk -F'\t' '$5 != ""' "$tmp/tshark.out" | wc -l)
echo "HTTP requests/responses: statescope $ours_req/$ours_resp, tshark $theirs_req/$theirs_resp"
python3 - "$tmp" <<'PY'
import sys
t = sys.argv[1]
r = lambda n, k: float(open(f"{t}/{n}.{k}").read())
print(f"statescope is {r('tshark', 'wall') / r('statescope', 'wall'):.1f}x faster than tshark (wall), "
      f"{r('tshark', 'cpu') / r('statescope', 'cpu'):.1f}x (cpu)")
PY
