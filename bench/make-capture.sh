#!/usr/bin/env bash
# Make the replay benchmark's input from real loopback traffic, then scale it up.
#
#   bench/make-capture.sh [OUTDIR] [COPIES]
#   CLOSE_SECS=1 KEEP_SECS=4 bench/make-capture.sh ...   (how long each wrk phase runs)
#   SNAPLEN=0 bench/make-capture.sh ...                  (full payloads; default 256)
#
# 1. nginx on 127.0.0.1 (a private config in a temp dir) serves a 2 KiB file.
# 2. tcpdump -i lo records wrk's load: 1 s with "Connection: close" (many short connections,
#    the ephemeral port range wraps: real port reuse) and 4 s of keep-alive requests.
# 3. examples/replicate.rs writes COPIES back-to-back copies with remapped addresses
#    (16 address areas, so copies 16 apart reuse the same 4-tuples).
# Needs root (tcpdump on lo), nginx, wrk, tcpdump. Every process started here is stopped by PID.
set -euo pipefail
out=${1:-bench/out}
copies=${2:-40}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
for t in nginx wrk tcpdump; do
  command -v $t >/dev/null || { echo "make-capture: $t is missing (apt-get install nginx-light wrk tcpdump)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "make-capture: needs root for tcpdump on lo" >&2; exit 1; }

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/www" "$work/tmp"
chmod 755 "$work"  # nginx workers run unprivileged
head -c 2048 /dev/urandom | base64 > "$work/www/index.html"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$port; root $work/www; }
}
CONF
nginx -c "$work/nginx.conf" -g 'daemon off;' & ngx=$!
cleanup() { kill "$ngx" 2>/dev/null || true; [ -n "${tcpd:-}" ] && kill "$tcpd" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

tcpdump -i lo -s "${SNAPLEN:-256}" -B 65536 -w "$out/base.pcap" "tcp port $port" 2>"$work/tcpdump.err" & tcpd=$!
sleep 1
wrk -t2 -c32 -d"${CLOSE_SECS:-1}"s -H 'Connection: close' "http://127.0.0.1:$port/index.html" | sed 's/^/  /'
wrk -t2 -c16 -d"${KEEP_SECS:-4}"s "http://127.0.0.1:$port/index.html" | sed 's/^/  /'
sleep 1
kill -INT "$tcpd"; wait "$tcpd" || true
tcpd=
cat "$work/tcpdump.err" | grep -E 'captured|dropped' | sed 's/^/  tcpdump: /'

(cd "$here" && cargo build --release --example replicate -q)
"$here/target/release/examples/replicate" "$out/base.pcap" "$out/big.pcap" "$copies" 16
ls -la "$out/base.pcap" "$out/big.pcap"
