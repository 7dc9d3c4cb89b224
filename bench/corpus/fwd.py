#!/usr/bin/env python3
"""User-space Ethernet forwarder between two interfaces that impairs TCP frames.

Runs in a middle namespace joined to both peers by veth pairs (no IP on its own ends).
It is used instead of tc netem, which this kernel does not have: every TCP frame (IPv4 or
IPv6) may be dropped, duplicated, delayed, or held back a little longer so that later
frames overtake it (reordering). Other frames (ARP, neighbour discovery) pass unchanged.

  python3 fwd.py IF_A IF_B [--loss P] [--dup P] [--delay MS] [--reorder P] [--reorder-ms MS]
                 [--only a2b|b2a] [--seed N] [--max-seconds S]
Probabilities are fractions (0.03 = 3 %). Stops on SIGTERM or after --max-seconds.
"""
import argparse
import heapq
import random
import select
import signal
import socket
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def is_tcp(frame):
    et = int.from_bytes(frame[12:14], "big")
    off = 14
    if et == 0x8100:  # one VLAN tag
        et, off = int.from_bytes(frame[16:18], "big"), 18
    if et == 0x0800:
        return len(frame) > off + 9 and frame[off + 9] == 6
    if et == 0x86DD:
        return len(frame) > off + 6 and frame[off + 6] == 6
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("if_a")
    ap.add_argument("if_b")
    ap.add_argument("--loss", type=float, default=0.0)
    ap.add_argument("--dup", type=float, default=0.0)
    ap.add_argument("--delay", type=float, default=0.0, help="one-way delay, ms")
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--reorder-ms", type=float, default=2.0)
    ap.add_argument("--only", choices=("a2b", "b2a"), help="impair one direction only")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    socks = {}
    for name in (a.if_a, a.if_b):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((name, 0))
        s.setblocking(False)
        socks[name] = s
    peer = {socks[a.if_a]: (socks[a.if_b], "a2b"), socks[a.if_b]: (socks[a.if_a], "b2a")}
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    queue, n = [], 0  # heap of (due, n, out_socket, frame)
    deadline = time.monotonic() + a.max_seconds
    while running[0] and time.monotonic() < deadline:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
            except OSError:
                pass
        timeout = 0.05 if not queue else max(0.0, queue[0][0] - now)
        try:
            ready, _, _ = select.select(list(peer), [], [], timeout)
        except InterruptedError:
            continue
        for s in ready:
            for _ in range(64):
                try:
                    frame, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own transmissions seen again on this socket
                out, way = peer[s]
                now = time.monotonic()
                copies, delay = 1, a.delay / 1000.0
                if is_tcp(frame) and (a.only is None or a.only == way):
                    if rng.random() < a.loss:
                        continue
                    if rng.random() < a.dup:
                        copies = 2
                    if rng.random() < a.reorder:
                        delay += a.reorder_ms / 1000.0 * (0.5 + rng.random())
                for _ in range(copies):
                    n += 1
                    heapq.heappush(queue, (now + delay, n, out, frame))


if __name__ == "__main__":
    main()
