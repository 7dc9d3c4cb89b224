#!/usr/bin/env python3
"""Hostile captures for bench/memory.sh and tests/memory.rs, written as pcap (Ethernet/IPv4,
microsecond timestamps) to a file or to standard output ("-"), so large ones need no disk.

  attack.py synflood N OUT       N SYNs from distinct client addresses/ports to one server,
                                 spread evenly over one second of capture time; no replies
  attack.py ooo CONNS KIB OUT    CONNS connections: handshakes, then each client sends KIB KiB
                                 in 8 KiB segments, round robin across connections, all but
                                 its first segment (a hole the receiver waits behind forever)

No checksums (statescope, tcpdump and tshark read them unverified by default).
"""
import struct
import sys

T0 = 1_700_000_000


def pcap_header():
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def frame(ts_us, src, dst, sport, dport, seq, ack, flags, payload=b"", mss=False):
    opts = struct.pack("!BBH", 2, 4, 1460) if mss else b""
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
        (5 + len(opts) // 4) << 4, flags, 65535, 0, 0,
    ) + opts
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, src, dst)
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
    data = eth + ip + tcp
    n = len(data) + len(payload)
    sec, us = divmod(ts_us, 1_000_000)
    return struct.pack("<IIII", T0 + sec, us, n, n) + data + payload


SYN, ACK, PSH = 0x02, 0x10, 0x08
SERVER = bytes([192, 168, 0, 1])


def client(i):
    """Distinct client address per 60,000 connections, distinct port within."""
    a = i // 60000
    return bytes([10, (a >> 8) & 255, a & 255, 1]), 1024 + i % 60000


def synflood(n, out):
    out.write(pcap_header())
    for i in range(n):
        src, sport = client(i)
        out.write(frame(i * 1_000_000 // n, src, SERVER, sport, 80, 1000 + i, 0, SYN, mss=True))


def ooo(conns, kib, out):
    out.write(pcap_header())
    seg = 8192
    payload = bytes(range(256)) * (seg // 256)
    t = 0
    isn_c, isn_s = 5000, 9000
    for i in range(conns):
        src, sport = client(i)
        out.write(frame(t, src, SERVER, sport, 80, isn_c, 0, SYN, mss=True))
        out.write(frame(t + 10, SERVER, src, 80, sport, isn_s, isn_c + 1, SYN | ACK, mss=True))
        out.write(frame(t + 20, src, SERVER, sport, 80, isn_c + 1, isn_s + 1, ACK))
        t += 100
    segs = kib * 1024 // seg
    for k in range(1, segs):
        for i in range(conns):
            src, sport = client(i)
            out.write(frame(t, src, SERVER, sport, 80, isn_c + 1 + k * seg, isn_s + 1, ACK | PSH,
                            payload))
            t += 10


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[0] not in ("synflood", "ooo"):
        sys.exit(__doc__)
    path = args[-1]
    out = sys.stdout.buffer if path == "-" else open(path, "wb")
    try:
        if args[0] == "synflood":
            synflood(int(args[1]), out)
        else:
            ooo(int(args[1]), int(args[2]), out)
        out.flush()
    except BrokenPipeError:
        pass


if __name__ == "__main__":
    main()
