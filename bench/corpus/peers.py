#!/usr/bin/env python3
"""Small TCP/HTTP/WebSocket peers for making real captures (standard library only).

Each subcommand is one side of one scenario; corpus.py and captures/make.sh start them
inside network namespaces. Every loop is bounded in count and every socket has a timeout,
so a peer whose partner vanished ends by itself.

  python3 peers.py ROLE [options]      (see ROLES at the bottom)
"""
import argparse
import base64
import errno
import hashlib
import http.server
import os
import socket
import struct
import sys
import time

TIMEOUT = 20.0
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listener(host, port, rcvbuf=None):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((host, port))
    s.listen(16)
    s.settimeout(TIMEOUT)
    return s


def connect(host, port, bind_port=0, rcvbuf=None):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if rcvbuf:
        # Set before connect so the window scale in the SYN reflects the small buffer.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if bind_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if ":" in host else "0.0.0.0", bind_port))
    s.connect((host, port))
    return s


def read_request_head(c):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        d = c.recv(4096)
        if not d:
            break
        buf += d
    return buf


def keepalive_opts(s, idle, intvl, cnt=5):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)


def drain_until_eof(c, limit=64 << 20):
    n = 0
    while n < limit:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    return n


# ---- servers -------------------------------------------------------------------------------

def srv_blast(a):
    """Accept one connection, read a request, answer with a large HTTP body until done or reset."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    read_request_head(c)
    body = bytes(range(256)) * (a.size // 256)
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        c.sendall(body)
        if a.wait_eof:
            drain_until_eof(c)
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    c.close()
    ls.close()


def srv_keepalive(a):
    """Accept, answer one small request, then stay idle with keepalive probes enabled."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    if a.ka_idle:
        keepalive_opts(c, a.ka_idle, a.ka_intvl)
    read_request_head(c)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    time.sleep(a.hold)
    ls.close()
    os._exit(0)  # leave the connection ESTABLISHED for the socket table


def srv_reuse(a):
    """Serve a.count sequential connections; the server closes each first (-> server TIME_WAIT)."""
    ls = listener(a.host, a.port)
    for i in range(a.count):
        c, _ = ls.accept()
        c.settimeout(TIMEOUT)
        read_request_head(c)
        body = b"connection %d\n" % i
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        c.close()
    ls.close()


def srv_halfclose(a):
    """Answer, shut our side first (FIN_WAIT_2), keep reading what the client still sends."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    read_request_head(c)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\nConnection: close\r\n\r\n" + b"s" * 4000)
    c.shutdown(socket.SHUT_WR)
    n = drain_until_eof(c)
    sys.stderr.write("halfclose server read %d bytes after its FIN\n" % n)
    c.close()
    ls.close()


class ChunkedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # enables keep-alive and the interim 100 Continue

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        digest = hashlib.sha256(body).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"received %d bytes\n" % n, b"sha256 " + digest + b"\n", b"x" * 3000):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def srv_chunked(a):
    cls = http.server.HTTPServer
    if ":" in a.host:
        cls = type("HTTPServer6", (http.server.HTTPServer,), {"address_family": socket.AF_INET6})
    httpd = cls((a.host, a.port), ChunkedHandler)
    httpd.timeout = TIMEOUT
    for _ in range(a.count):
        httpd.handle_request()
    httpd.server_close()


def ws_frame(opcode, payload, fin=True, mask=None):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def ws_read(sock, buf):
    """Read one frame: returns (opcode, fin, payload, rest_of_buffer)."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = sock.recv(65536)
            if not d:
                raise ConnectionError("eof inside a websocket frame")
            buf += d
    need(2)
    b0, b1 = buf[0], buf[1]
    n, off = b1 & 0x7F, 2
    if n == 126:
        need(4)
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        need(10)
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    mask = None
    if b1 & 0x80:
        need(off + 4)
        mask, off = buf[off:off + 4], off + 4
    need(off + n)
    payload = buf[off:off + n]
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return b0 & 0x0F, bool(b0 & 0x80), payload, buf[off + n:]


def srv_websocket(a):
    """Upgrade, echo text/binary, answer ping with pong, answer close with close."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    head = read_request_head(c)
    key = ""
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"sec-websocket-key:"):
            key = line.split(b":", 1)[1].strip().decode()
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    buf = b""
    for _ in range(32):
        op, fin, payload, buf = ws_read(c, buf)
        if op == 9:
            c.sendall(ws_frame(10, payload))
        elif op == 8:
            c.sendall(ws_frame(8, payload[:2]))
            break
        else:
            c.sendall(ws_frame(op, payload[::-1]))
    # the client closes the TCP connection first after the close handshake
    drain_until_eof(c)
    c.close()
    ls.close()


def srv_tfo(a):
    """TCP Fast Open server: answer a.count connections, then read each to EOF (URG bytes too)."""
    ls = listener(a.host, a.port)
    ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
    for _ in range(a.count):
        c, _ = ls.accept()
        c.settimeout(TIMEOUT)
        read_request_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        drain_until_eof(c)
        c.close()
    ls.close()


def srv_unread(a):
    """Read only part of what the client sends, answer, close: unread data -> RST, not FIN."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    c.recv(200)
    c.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)  # let the whole body arrive so that it is unread at close
    c.close()
    ls.close()


# ---- clients -------------------------------------------------------------------------------

def cli_abort(a):
    """Request a big body, read part of it, then abort with SO_LINGER {1,0} -> RST."""
    s = connect(a.host, a.port)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    while got < a.size:
        d = s.recv(16384)
        if not d:
            break
        got += len(d)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def cli_stall(a):
    """Small receive buffer; stall twice, then read everything until EOF and close."""
    s = connect(a.host, a.port, rcvbuf=a.rcvbuf)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    got = 0
    for stall in (a.stall, a.stall):
        time.sleep(stall)
        t_end = time.monotonic() + 0.3
        while time.monotonic() < t_end:
            d = s.recv(2048)
            if not d:
                break
            got += len(d)
    got += drain_until_eof(s)
    s.close()
    sys.stderr.write("stall client read %d bytes\n" % got)


def cli_keepalive(a):
    s = connect(a.host, a.port)
    keepalive_opts(s, a.ka_idle, a.ka_intvl)
    s.sendall(b"GET /ka HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(4096)
    time.sleep(a.hold)
    os._exit(0)  # connection stays ESTABLISHED while the socket table is taken


def cli_reuse(a):
    for i in range(a.count):
        for attempt in range(20):
            try:
                s = connect(a.host, a.port, bind_port=a.bind_port)
                break
            except OSError:
                time.sleep(0.1)  # previous 4-tuple not free yet on our side
        else:
            raise SystemExit("could not reuse port %d" % a.bind_port)
        s.sendall(b"GET /conn/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        drain_until_eof(s)
        s.close()
        time.sleep(0.15)


def cli_halfclose(a):
    """Read the response until the server's FIN, then keep sending (CLOSE_WAIT), then close."""
    s = connect(a.host, a.port)
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 12000\r\n\r\n")
    n = drain_until_eof(s)
    for i in range(4):
        s.sendall(b"c" * 3000)
        time.sleep(0.05)
    s.close()
    sys.stderr.write("halfclose client got %d bytes, sent 12000 after the server's FIN\n" % n)


def cli_websocket(a):
    s = connect(a.host, a.port)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /chat HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (a.host, a.port, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            raise SystemExit("no upgrade response")
        head += d
    buf = head.split(b"\r\n\r\n", 1)[1]
    msgs = [(1, b"hello websocket"), (2, bytes(range(40))), (9, b"ping-1"), (1, b"x" * 300)]
    for op, payload in msgs:
        s.sendall(ws_frame(op, payload, mask=os.urandom(4)))
        op2, _, _, buf = ws_read(s, buf)
        time.sleep(0.02)
    s.sendall(ws_frame(8, struct.pack("!H", 1000) + b"bye", mask=os.urandom(4)))
    ws_read(s, buf)
    s.close()


def parse_responses(data, methods):
    """Split a byte stream of HTTP/1.1 responses; HEAD and 1xx/204/304 carry no body."""
    out, i = [], 0
    for m in methods:
        while True:
            j = data.find(b"\r\n\r\n", i)
            if j < 0:
                return out
            head = data[i:j].decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            hdrs = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            i = j + 4
            if 100 <= status < 200:
                out.append((m, status, 0))
                continue
            n = 0
            if m != "HEAD" and status not in (204, 304):
                if hdrs.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        k = data.find(b"\r\n", i)
                        size = int(data[i:k].split(b";")[0], 16)
                        i = k + 2 + size + 2
                        n += size
                        if size == 0:
                            break
                else:
                    n = int(hdrs.get("content-length", "0"))
                    i += n
            out.append((m, status, n))
            break
    return out


def cli_pipelined(a):
    """Send GET, GET, HEAD, GET, GET(404, Connection: close) in one write; log what came back."""
    reqs = [("GET", "/small.txt"), ("GET", "/index.html"), ("HEAD", "/mid.bin"),
            ("GET", "/small.txt"), ("GET", "/missing", "close")]
    blob = b""
    for r in reqs:
        blob += ("%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            r[0], r[1], a.host, "Connection: close\r\n" if len(r) > 2 else "")).encode()
    s = connect(a.host, a.port)
    s.sendall(blob)
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    lines = ["# client log (ground truth from the application): method status body_bytes"]
    for m, st, n in parse_responses(data, [r[0] for r in reqs]):
        lines.append("%s %d %d" % (m, st, n))
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")


def cli_tfo(a):
    """a.count connections with data in the SYN (MSG_FASTOPEN); the first only gets the cookie.
    After each response one urgent byte (MSG_OOB -> URG flag), then close."""
    for i in range(a.count):
        s = socket.socket(family(a.host), socket.SOCK_STREAM)
        # blocking for the implicit connect: with a timeout set Python's socket is
        # non-blocking underneath and sendto(MSG_FASTOPEN) fails with EINPROGRESS
        s.sendto(b"GET /tfo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i, socket.MSG_FASTOPEN, (a.host, a.port))
        s.settimeout(TIMEOUT)
        s.recv(4096)
        s.send(b"!", socket.MSG_OOB)
        time.sleep(0.05)
        s.close()
        time.sleep(0.1)


def cli_bigpost(a):
    """POST a body the server will not read; report how the connection ended."""
    s = connect(a.host, a.port)
    body = b"p" * a.size
    try:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.5)
        while s.recv(4096):
            pass
    except OSError as e:
        sys.stderr.write("bigpost: %s\n" % e)
    s.close()


def cli_connect(a):
    """Plain connect attempts (for refused ports): report errno, never raise."""
    for _ in range(a.count):
        try:
            connect(a.host, a.port).close()
        except OSError as e:
            sys.stderr.write("connect: %s\n" % e)
        time.sleep(0.1)


# ---- state scenarios (corpus.py states) ------------------------------------------------------

def linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def wait_until(t_epoch, limit=10.0):
    dt = t_epoch - time.time()
    if 0 < dt < limit:
        time.sleep(dt)


def read_until(c, token, limit=1 << 20):
    buf = b""
    while token not in buf and len(buf) < limit:
        d = c.recv(4096)
        if not d:
            break
        buf += d
    return buf


def srv_close_order(a):
    """One request/response; --mode client: the client closes first (we read EOF, pause, close);
    --mode server: we answer and close first (the client then closes)."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    read_request_head(c)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello world\n")
    if a.mode == "client":
        drain_until_eof(c)
        time.sleep(a.pause)       # the client's FIN is ACKed alone, our FIN follows later
    else:
        time.sleep(0.05)
    c.close()
    ls.close()


def cli_close_order(a):
    s = connect(a.host, a.port)
    s.sendall(b"GET /order HTTP/1.1\r\nHost: x\r\n\r\n")
    if a.mode == "client":
        read_until(s, b"hello world\n")
        time.sleep(0.05)
        s.close()
    else:
        drain_until_eof(s)
        time.sleep(a.pause)       # the server's FIN is ACKed alone, our FIN follows later
        s.close()


def srv_trickle(a):
    """Read the request to EOF (client SHUT_WR -> CLOSE_WAIT here), then keep sending
    small chunks for a.hold seconds (the client sits in FIN_WAIT_2), then close."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    drain_until_eof(c)
    t_end = time.monotonic() + a.hold
    for i in range(200):
        if time.monotonic() >= t_end:
            break
        c.sendall(b"chunk %03d\n" % i)
        time.sleep(0.25)
    c.close()
    ls.close()


def cli_shutwr(a):
    """Send a request, SHUT_WR at once, read until the server's FIN, close."""
    s = connect(a.host, a.port)
    s.sendall(b"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    n = drain_until_eof(s)
    s.close()
    sys.stderr.write("shutwr client read %d bytes after its FIN\n" % n)


def srv_abort(a):
    """--mode estab / fin-wait2: answer, then wait for the client's RST.
    --mode close-wait: read to EOF (CLOSE_WAIT), answer, pause, abort with SO_LINGER{1,0}."""
    ls = listener(a.host, a.port)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    if a.mode == "estab":
        read_until(c, b"\r\n\r\n")
    else:
        drain_until_eof(c)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    if a.mode == "close-wait":
        time.sleep(a.pause)
        linger0(c)
        c.close()
    elif a.mode == "fin-wait2":
        # the client's FIN is in (EOF); hold CLOSE_WAIT until its RST has come and gone
        time.sleep(a.pause + 0.7)
        c.close()
    else:
        try:
            drain_until_eof(c)
        except ConnectionResetError:
            pass
        c.close()
    ls.close()


def cli_abort_state(a):
    """--mode estab: request, read the answer, pause, abort (ESTABLISHED -> RST).
    --mode fin-wait2: request, SHUT_WR, read the answer, pause (FIN_WAIT_2), abort.
    --mode close-wait: request, SHUT_WR, wait for the server's RST."""
    s = connect(a.host, a.port)
    s.sendall(b"GET /abort HTTP/1.1\r\nHost: x\r\n\r\n")
    if a.mode != "estab":
        s.shutdown(socket.SHUT_WR)
    if a.mode == "close-wait":
        try:
            drain_until_eof(s)
        except ConnectionResetError:
            sys.stderr.write("abort client: reset by the server, as planned\n")
        s.close()
        return
    read_until(s, b"ok\n")
    time.sleep(a.pause)
    linger0(s)
    s.close()


def peer_simul(a):
    """Simultaneous open and close: bind a.bind_port, connect() to the peer at the epoch
    time a.at (the peer does the same, SYNs cross on a delayed path), exchange a line,
    shutdown(SHUT_WR) at a.at + 1 s on both sides (FINs cross), read EOF, close."""
    s = socket.socket(family(a.host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if ":" in a.host else "0.0.0.0", a.bind_port))
    s.settimeout(5.0)
    if a.out != "/dev/null":
        # rendezvous: say we are bound, then wait for the common start time (file a.out/go)
        open(os.path.join(a.out, "ready-%d" % a.bind_port), "w").close()
        go = os.path.join(a.out, "go")
        t_end = time.monotonic() + 10.0
        while not os.path.exists(go) and time.monotonic() < t_end:
            time.sleep(0.002)
        time.sleep(0.01)
        with open(go) as f:
            a.at = float(f.read())
    if time.time() > a.at + 0.005:
        raise SystemExit("peer-simul: started %.3f s late" % (time.time() - a.at))
    wait_until(a.at)
    s.connect((a.host, a.port))
    s.sendall(b"hello from %d\n" % a.bind_port)
    read_until(s, b"\n")
    wait_until(a.at + 1.0)
    s.shutdown(socket.SHUT_WR)
    drain_until_eof(s)
    s.close()


def srv_hold(a):
    """Small receive buffer (window well under 70,000); echo lines until the peer goes."""
    ls = listener(a.host, a.port, rcvbuf=a.rcvbuf)
    c, _ = ls.accept()
    c.settimeout(TIMEOUT)
    try:
        for _ in range(16):
            d = c.recv(4096)
            if not d:
                break
            c.sendall(b"echo " + d)
    except (ConnectionResetError, socket.timeout) as e:
        sys.stderr.write("hold server: %s\n" % e)
    c.close()
    ls.close()


def cli_hold(a):
    """Send a line after a.pause s (the injector is sniffing by then), wait until the
    injector is done (file a.out exists, bounded), send a last line (-> RST from a server
    that has no socket any more), close."""
    s = connect(a.host, a.port)
    time.sleep(a.pause)
    s.sendall(b"ping\n")
    read_until(s, b"\n")
    t_end = time.monotonic() + 10.0
    while not os.path.exists(a.out) and time.monotonic() < t_end:
        time.sleep(0.05)
    time.sleep(0.2)
    try:
        s.sendall(b"still there?\n")
        s.recv(4096)
    except (ConnectionResetError, BrokenPipeError) as e:
        sys.stderr.write("hold client: %s\n" % e)
    s.close()


def srv_backlog(a):
    """Listen with a backlog, never accept(); after a.hold s close the listener: the
    kernel resets the connections waiting in the accept queue."""
    s = socket.socket(family(a.host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.host, a.port))
    s.listen(8)
    time.sleep(a.hold)
    s.close()


def cli_queued(a):
    """a.count connections to a listener that never accepts; send a line on each, then
    wait (bounded) for each to be reset."""
    socks = []
    for i in range(a.count):
        s = connect(a.host, a.port)
        s.sendall(b"queued %d\n" % i)
        socks.append(s)
        time.sleep(0.05)
    for s in socks:
        s.settimeout(5.0)
        try:
            s.recv(4096)
        except (ConnectionResetError, socket.timeout) as e:
            sys.stderr.write("queued client: %s\n" % e)
        s.close()


def cli_give_up(a):
    """a.count non-blocking connect()s, each abandoned (close()) a.pause s later, while the
    socket is still SYN_SENT on a delayed path; a.hold s between attempts, so that the
    SYN-ACK (answered by an RST: no socket any more) comes before the next SYN."""
    for i in range(a.count):
        s = socket.socket(family(a.host), socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((a.host, a.port))
        t0 = time.monotonic()
        port = s.getsockname()[1]
        time.sleep(a.pause)
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        s.close()
        state = {1: "ESTABLISHED", 2: "SYN_SENT", 7: "CLOSE"}.get(info[0], str(info[0]))
        sys.stderr.write("give-up %d: port %d connect %s, %s at close() +%.1f ms\n" % (
            i, port, errno.errorcode.get(err, err), state, (time.monotonic() - t0) * 1e3))
        if i + 1 < a.count:
            time.sleep(a.hold)


# ---- raw RST injection (IPv4, AF_PACKET) -----------------------------------------------------

def csum(data):
    if len(data) % 2:
        data += b"\0"
    n = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while n >> 16:
        n = (n & 0xFFFF) + (n >> 16)
    return ~n & 0xFFFF


def parse_eth_tcp4(frame):
    """-> dict of an Ethernet/IPv4/TCP frame or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[9] != 6 or len(ip) < ihl + 20:
        return None
    tot = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:tot]
    sport, dport, seq, ack, off_flags, win = struct.unpack("!HHIIHH", tcp[:16])
    doff = (off_flags >> 12) * 4
    wscale = None
    opts = tcp[20:doff]
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts):
            break
        ln = opts[i + 1]
        if kind == 3 and ln == 3:
            wscale = opts[i + 2]
        i += max(ln, 2)
    return {"dst_mac": frame[0:6], "src_mac": frame[6:12], "src": ip[12:16], "dst": ip[16:20],
            "sport": sport, "dport": dport, "seq": seq, "ack": ack, "flags": off_flags & 0x1FF,
            "win": win, "wscale": wscale, "len": len(tcp) - doff}


def build_rst4(src_mac, dst_mac, src, dst, sport, dport, seq, ack):
    flags = 0x14  # RST + ACK
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (5 << 12) | flags, 0, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), int.from_bytes(os.urandom(2), "big"),
                      0x4000, 64, 6, 0, src, dst)
    iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
    return dst_mac + src_mac + b"\x08\x00" + iph + tcp


def rst_inject(a):
    """In the client's namespace: sniff the connection to a.host:a.port on a.iface (the
    handshake for the server's window scale, then the client's segments for its snd_nxt =
    the server's rcv_nxt), then inject RSTs towards the server, 0.4 s apart:
      1. seq = rcv_nxt + 10^9              (far out of window: dropped)
      2. seq = rcv_nxt + 70000             (beyond the window, which is smaller: dropped)
      3. seq = rcv_nxt + 100               (in window, inexact: challenge ACK, no change)
      4. seq = rcv_nxt                     (exact: the server's socket closes)
    Writes a log line per RST to stdout and touches a.out when done."""
    ETH_P_ALL = 0x0003
    sk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sk.bind((a.iface, 0))
    sk.settimeout(0.1)
    srv = socket.inet_aton(a.host)
    state = {"wscale": 0, "win": None, "last_cli": None, "last_t": None}
    t_end = time.monotonic() + 15.0

    def absorb(frame):
        p = parse_eth_tcp4(frame)
        if p is None:
            return
        if p["src"] == srv and p["sport"] == a.port:
            if p["flags"] & 0x12 == 0x12 and p["wscale"] is not None:
                state["wscale"] = p["wscale"]
            if not p["flags"] & 0x02:
                state["win"] = p["win"] << state["wscale"]
            state["last_t"] = time.monotonic()
        elif p["dst"] == srv and p["dport"] == a.port:
            state["last_cli"] = p
            state["last_t"] = time.monotonic()

    # 1) wait for data from the client plus a quiet 0.4 s (its ACK of the echo has gone)
    while time.monotonic() < t_end:
        try:
            frame, addr = sk.recvfrom(65535)
            absorb(frame)
        except socket.timeout:
            pass
        lc = state["last_cli"]
        if (lc and lc["len"] == 0 and state["win"] and state["last_t"]
                and time.monotonic() - state["last_t"] > 0.4 and state.get("saw_data")):
            break
        if lc and lc["len"] > 0:
            state["saw_data"] = True
    else:
        raise SystemExit("rst-inject: connection never went quiet")
    lc = state["last_cli"]
    rcv_nxt = (lc["seq"] + lc["len"]) & 0xFFFFFFFF
    win = state["win"]
    if win >= 70000:
        raise SystemExit("rst-inject: server window %d not below 70000" % win)
    print("server rcv_nxt %d window %d (scale %d)" % (rcv_nxt, win, state["wscale"]), flush=True)
    for label, delta in (("far 1e9", 10 ** 9), ("beyond +70000", 70000), ("in-window +100", 100),
                         ("exact", 0)):
        fr = build_rst4(lc["src_mac"], lc["dst_mac"], lc["src"], lc["dst"], lc["sport"],
                        lc["dport"], rcv_nxt + delta, lc["ack"])
        sk.send(fr)
        print("%.6f RST %s seq %d" % (time.time(), label, (rcv_nxt + delta) & 0xFFFFFFFF), flush=True)
        t_next = time.monotonic() + 0.4
        while time.monotonic() < t_next:
            try:
                sk.recvfrom(65535)
            except socket.timeout:
                pass
    sk.close()
    open(a.out, "w").close()


ROLES = {
    "srv-blast": srv_blast, "srv-keepalive": srv_keepalive, "srv-reuse": srv_reuse,
    "srv-halfclose": srv_halfclose, "srv-chunked": srv_chunked, "srv-websocket": srv_websocket,
    "srv-tfo": srv_tfo, "srv-unread": srv_unread, "cli-tfo": cli_tfo, "cli-bigpost": cli_bigpost,
    "cli-abort": cli_abort, "cli-stall": cli_stall, "cli-keepalive": cli_keepalive,
    "cli-reuse": cli_reuse, "cli-halfclose": cli_halfclose, "cli-websocket": cli_websocket,
    "cli-pipelined": cli_pipelined, "cli-connect": cli_connect,
    "srv-close-order": srv_close_order, "cli-close-order": cli_close_order,
    "srv-trickle": srv_trickle, "cli-shutwr": cli_shutwr, "srv-abort": srv_abort,
    "cli-abort-state": cli_abort_state, "peer-simul": peer_simul, "srv-hold": srv_hold,
    "cli-hold": cli_hold, "srv-backlog": srv_backlog, "cli-queued": cli_queued,
    "rst-inject": rst_inject,
    "cli-give-up": cli_give_up,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=sorted(ROLES))
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--bind-port", type=int, default=0)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    ap.add_argument("--stall", type=float, default=1.0)
    ap.add_argument("--hold", type=float, default=4.0)
    ap.add_argument("--ka-idle", type=int, default=1)
    ap.add_argument("--ka-intvl", type=int, default=1)
    ap.add_argument("--wait-eof", action="store_true")
    ap.add_argument("--out", default="/dev/null")
    ap.add_argument("--mode", default="client")
    ap.add_argument("--pause", type=float, default=0.3)
    ap.add_argument("--at", type=float, default=0.0, help="epoch time to act (peer-simul)")
    ap.add_argument("--iface", default="c0")
    a = ap.parse_args()
    ROLES[a.role](a)


if __name__ == "__main__":
    main()
