#!/usr/bin/env python3
"""Make real captures between network namespaces, with independent oracles beside them.

  corpus.py corpus OUTDIR [NAME...]  the generalisation corpus (see SCENARIOS and STATE_SCENARIOS)
  corpus.py states OUTDIR [NAME...]  the small endpoint-state fixture set (STATES: new state
                                     scenarios plus four of the corpus), snaplen 200
  corpus.py samples OUTDIR           the project's small shipped sample captures (captures/make.sh)

With NAMEs, only those scenarios are made and their rows are merged into an existing
OUTDIR/manifest.tsv (the other rows are kept byte for byte; see write_manifest).

For every corpus capture NAME.pcap it writes, in the format of the evaluation corpus:
NAME.packets.tsv and NAME.http.tsv (tshark), NAME.kernel.tsv (`ss -tan` in each namespace
taken just before tcpdump stops), NAME.transitions.tsv (every TCP state change of the
scenario's sockets from the kernel tracepoint sock:inet_sock_set_state, recorded in a private
tracefs instance; see Tracer), NAME.conv.txt (`tshark -q -z conv,tcp`; not in `states`) and
manifest.tsv. Captures marked `derived` in the manifest are a kernel capture with frames
removed (a FIN lost before the tap); their transitions are the kernel's truth of the real run.

Impairments: this kernel has no netem qdisc, so loss in a routed path is nftables
`numgen random` drops in a router namespace, and delay / duplication / reordering come from
fwd.py, a user-space Ethernet forwarder in a middle namespace. Needs root. Every process it
starts is ended by its PID and every namespace it adds is deleted, also on errors.
"""
import csv
import ipaddress
import os
import re
import struct
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable or "python3"
PEERS = [PY, os.path.join(HERE, "peers.py")]
FWD = [PY, os.path.join(HERE, "fwd.py")]

PACKET_FIELDS = (
    "frame.number frame.time_epoch tcp.stream ip.src ipv6.src tcp.srcport ip.dst ipv6.dst "
    "tcp.dstport tcp.flags.str tcp.seq tcp.seq_raw tcp.ack tcp.ack_raw tcp.len tcp.window_size "
    "tcp.analysis.retransmission tcp.analysis.fast_retransmission "
    "tcp.analysis.spurious_retransmission tcp.analysis.out_of_order tcp.analysis.duplicate_ack "
    "tcp.analysis.duplicate_ack_num tcp.analysis.zero_window tcp.analysis.zero_window_probe "
    "tcp.analysis.window_update tcp.analysis.window_full tcp.analysis.keep_alive "
    "tcp.analysis.keep_alive_ack tcp.analysis.lost_segment tcp.analysis.ack_lost_segment "
    "tcp.analysis.bytes_in_flight tcp.analysis.ack_rtt tcp.analysis.zero_window_probe_ack "
    "tcp.analysis.reused_ports tcp.nxtseq tcp.window_size_value tcp.window_size_scalefactor "
    "tcp.analysis.acks_frame tcp.analysis.duplicate_ack_frame frame.len frame.cap_len "
    "frame.interface_id").split()
HTTP_FIELDS = (
    "frame.number tcp.stream http.request.method http.request.uri http.response.code "
    "http.content_length websocket.opcode http.request.version http.response.phrase "
    "http.transfer_encoding http.upgrade websocket.fin websocket.mask websocket.payload_length "
    "websocket.payload_length_ext_16 websocket.payload_length_ext_64 http.request_in").split()
HTTP_FILTER = "http.request || http.response || websocket"
FLAG_COLUMNS = [
    "retransmission", "fast_retransmission", "spurious_retransmission", "out_of_order",
    "duplicate_ack", "zero_window", "zero_window_probe", "zero_window_probe_ack", "window_update",
    "window_full", "keep_alive", "keep_alive_ack", "lost_segment", "ack_lost_segment", "reused_ports"]
MANIFEST_COLUMNS = (["name", "file", "link_type", "format", "made", "exercises", "packets",
                     "tcp_streams"] + FLAG_COLUMNS +
                    ["syn", "fin", "rst", "truncated", "http_requests", "http_responses",
                     "ws_frames", "bytes", "kernel_tsv", "tshark_opts", "transitions",
                     "clock_check"])
SS_STATE = {"ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECEIVED",
            "FIN-WAIT-1": "FIN_WAIT_1", "FIN-WAIT-2": "FIN_WAIT_2", "TIME-WAIT": "TIME_WAIT",
            "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "CLOSING": "CLOSING",
            "LISTEN": "LISTEN", "CLOSED": "CLOSED", "UNCONN": "CLOSED"}


def log(msg):
    sys.stderr.write("[corpus %s] %s\n" % (time.strftime("%H:%M:%S"), msg))


def run(argv, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p


class Lab:
    """Namespaces, veth links and processes of one scenario; teardown() undoes all of it."""

    def __init__(self, names, workdir, snap=262144):
        self.names = names          # role -> namespace name, e.g. {"c": "cx-c", "s": "cx-s"}
        self.work = workdir
        self.procs = []             # Popen objects we started, ended by PID in teardown
        self.addrs = set()          # every address given to a namespace (filters the trace)
        self.snap = snap            # snaplen cap for every capture of this lab
        self.slack_ms = 0.0         # one-way delay of the path (clock check tolerance)
        self.lossy = False          # random loss on the path (far transitions are expected)
        for ns in names.values():
            run(["ip", "netns", "del", ns], check=False)
            run(["ip", "netns", "add", ns])
            self.ip(ns, "link", "set", "lo", "up")

    def ns(self, role):
        return self.names[role]

    def ip(self, ns, *args):
        return run(["ip", "-n", ns] + list(args))

    def exec(self, role, argv, check=True, timeout=60):
        return run(["ip", "netns", "exec", self.ns(role)] + argv, check=check, timeout=timeout)

    def sysctl(self, role, key, value):
        self.exec(role, ["sysctl", "-qw", "%s=%s" % (key, value)])

    def link(self, ra, ia, rb, ib):
        """A veth pair between two namespaces, offloads off so frames are wire-sized."""
        run(["ip", "link", "add", ia, "netns", self.ns(ra), "type", "veth", "peer", "name", ib,
             "netns", self.ns(rb)])
        for role, ifn in ((ra, ia), (rb, ib)):
            self.exec(role, ["ethtool", "-K", ifn, "tso", "off", "gso", "off", "gro", "off",
                             "tx", "off"], check=False)
            self.ip(self.ns(role), "link", "set", ifn, "up")

    def addr(self, role, ifn, cidr):
        extra = ["nodad"] if ":" in cidr else []
        self.addrs.add(str(ipaddress.ip_address(cidr.split("/")[0])))
        self.ip(self.ns(role), "addr", "add", cidr, "dev", ifn, *extra)

    def no_ipv6(self, role):
        self.sysctl(role, "net.ipv6.conf.all.disable_ipv6", 1)
        self.sysctl(role, "net.ipv6.conf.default.disable_ipv6", 1)

    def spawn(self, role, argv, name):
        out = open(os.path.join(self.work, "%s.log" % name), "a")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role)] + argv, stdout=out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def tcpdump(self, role, ifn, path, snaplen=262144):
        snaplen = min(snaplen, self.snap)
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role), "tcpdump", "-n", "-i", ifn,
                              "-s", str(snaplen), "-B", "16384", "--immediate-mode", "-U", "-Z", "root", "-w", path],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stderr.readline()  # "listening on ..." once the socket is bound
        if "listening" not in line:
            raise RuntimeError("tcpdump did not start: " + line.strip())
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5.0):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def wait(self, p, timeout, what):
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log("%s still running after %.0f s: ending it" % (what, timeout))
            self.stop(p)

    def must(self, p, timeout, what):
        """Like wait(), but a peer that hangs or fails fails the scenario."""
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(p)
            raise RuntimeError("%s still running after %.0f s" % (what, timeout))
        if p.returncode != 0:
            raise RuntimeError("%s exited %d" % (what, p.returncode))

    def socket_table(self, roles, path):
        """`ss -tan` in each namespace -> NAME.kernel.tsv (role: the namespace's)."""
        rows = []
        for role in roles:
            out = self.exec(role, ["ss", "-tanH"]).stdout
            entries = []
            for line in out.splitlines():
                f = line.split()
                if len(f) < 5:
                    continue
                entries.append((f[0], f[3], f[4]))
            who = "server" if role == "s" else "client"
            for st, local, remote in entries:
                rows.append([self.ns(role), who, local, remote, SS_STATE.get(st, st), st])
        with open(path, "w") as f:
            f.write("namespace\trole\tlocal\tremote\tstate\tss_state\n")
            for r in rows:
                f.write("\t".join(r) + "\n")

    def teardown(self):
        for p in reversed(self.procs):
            self.stop(p)
        self.procs = []
        for ns in self.names.values():
            run(["ip", "netns", "del", ns], check=False)


# ---- the kernel's own transition log (tracepoint sock:inet_sock_set_state) ------------------

TRACEFS = "/sys/kernel/tracing"
TRACE_PREFIX = "statescope-corpus-"
TRACE_RE = re.compile(
    r"\s(\d+\.\d+): inet_sock_set_state: family=(\S+) protocol=(\S+) sport=(\d+) dport=(\d+) "
    r"saddr=(\S+) daddr=(\S+) saddrv6=(\S+) daddrv6=(\S+) oldstate=TCP_(\S+) newstate=TCP_(\S+)")


def tai_offset():
    """CLOCK_TAI - CLOCK_REALTIME in seconds (the kernel's TAI offset; 0 or 37 s usually).
    Taken as the smallest-gap sample of a few, so scheduling noise does not enter it."""
    best = None
    for _ in range(5):
        a = time.time()
        t = time.clock_gettime(time.CLOCK_TAI)
        b = time.time()
        if best is None or b - a < best[0]:
            best = (b - a, t - (a + b) / 2)
    return best[1]


class Tracer:
    """A private tracefs instance recording sock:inet_sock_set_state (TCP only) with the TAI
    clock, so other users of tracing (the top-level buffer, other instances) are untouched.
    stop() returns the rows in epoch seconds; remove() deletes the instance (always called)."""

    def __init__(self):
        if not os.path.isdir(os.path.join(TRACEFS, "instances")):
            os.makedirs(TRACEFS, exist_ok=True)
            run(["mount", "-t", "tracefs", "nodev", TRACEFS])
        self.reap_stale()
        self.dir = os.path.join(TRACEFS, "instances", "%s%d" % (TRACE_PREFIX, os.getpid()))
        if os.path.isdir(self.dir):
            os.rmdir(self.dir)
        os.mkdir(self.dir)
        try:
            self.put("tracing_on", "0")
            self.put("trace_clock", "tai")
            self.put("buffer_size_kb", "4096")
            ev = os.path.join("events", "sock", "inet_sock_set_state")
            self.put(os.path.join(ev, "filter"), "protocol == 6")
            self.put(os.path.join(ev, "enable"), "1")
        except Exception:
            self.remove()
            raise

    @staticmethod
    def reap_stale():
        """Instances left by a run of ours that was killed (its PID is gone)."""
        base = os.path.join(TRACEFS, "instances")
        for name in os.listdir(base):
            if name.startswith(TRACE_PREFIX):
                pid = name[len(TRACE_PREFIX):]
                if pid.isdigit() and not os.path.exists("/proc/%s" % pid):
                    try:
                        os.rmdir(os.path.join(base, name))
                    except OSError:
                        pass

    def put(self, name, value):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)

    def start(self):
        self.put("trace", "")       # clear
        self.off0 = tai_offset()
        self.put("tracing_on", "1")

    def stop(self):
        self.put("tracing_on", "0")
        off1 = tai_offset()
        if abs(off1 - self.off0) > 0.001:
            log("WARNING: TAI-realtime offset moved by %.3f ms during the scenario"
                % ((off1 - self.off0) * 1e3))
        self.offset = (self.off0 + off1) / 2
        overrun = 0
        for cpu in os.listdir(os.path.join(self.dir, "per_cpu")):
            with open(os.path.join(self.dir, "per_cpu", cpu, "stats")) as f:
                for line in f:
                    if line.startswith("overrun:"):
                        overrun += int(line.split()[1])
        if overrun:
            log("WARNING: trace buffer overran: %d events lost" % overrun)
        rows = []
        with open(os.path.join(self.dir, "trace")) as f:
            for line in f:
                m = TRACE_RE.search(line)
                if not m or m.group(3) != "IPPROTO_TCP":
                    continue
                ts, fam, _, sp, dp, sa, da, sa6, da6, old, new = m.groups()
                if fam == "AF_INET6":
                    sa, da = unmap(sa6), unmap(da6)
                rows.append((float(ts) - self.offset, sa, int(sp), da, int(dp), old, new))
        rows.sort(key=lambda r: r[0])
        return rows

    def remove(self):
        try:
            self.put("tracing_on", "0")
            self.put(os.path.join("events", "sock", "inet_sock_set_state", "enable"), "0")
        except OSError:
            pass
        for _ in range(20):
            try:
                os.rmdir(self.dir)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)   # EBUSY while a reader still holds a file
        log("WARNING: could not remove tracefs instance %s" % self.dir)


def unmap(a):
    ip = ipaddress.ip_address(a)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


def hostport(ip, port):
    return "[%s]:%d" % (ip, port) if ":" in ip else "%s:%d" % (ip, port)


def write_transitions(path, rows, addrs):
    """Keep the scenario's sockets (both addresses in its namespaces; the tracepoint sees every
    namespace of the machine), drop connect()'s row before the port is bound (port 0) and the
    listeners' own rows; write `ts local remote old new` with Linux's names."""
    kept = []
    for ts, sa, sp, da, dp, old, new in rows:
        if sa not in addrs or da not in addrs or sp == 0 or dp == 0:
            continue
        if new == "LISTEN" or (old == "LISTEN" and new == "CLOSE"):
            continue
        kept.append((ts, hostport(sa, sp), hostport(da, dp), old, new))
    with open(path, "w") as f:
        f.write("ts\tlocal\tremote\told\tnew\n")
        for ts, l, r, old, new in kept:
            f.write("%.6f\t%s\t%s\t%s\t%s\n" % (ts, l, r, old, new))
    return kept


# ---- pcap: read frames, drop frames (derived captures) --------------------------------------

def pcap_frames(path):
    """-> (global header, [(ts, record header, data)]) of a classic pcap (us or ns, either
    byte order)."""
    with open(path, "rb") as f:
        raw = f.read()
    magic = raw[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError("%s: not a classic pcap" % path)
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    out, i = [], 24
    while i + 16 <= len(raw):
        sec, frac, incl, orig = struct.unpack(e + "IIII", raw[i:i + 16])
        out.append((sec + frac / (1e9 if nano else 1e6), raw[i:i + 16], raw[i + 16:i + 16 + incl]))
        i += 16 + incl
    return raw[:24], out


def tcp_of(frame):
    """Ethernet IPv4/IPv6 TCP -> (src ip, sport, dst ip, dport, flags, seq, payload len) or None."""
    if len(frame) < 14:
        return None
    et, off = struct.unpack("!H", frame[12:14])[0], 14
    if et == 0x8100:
        et, off = struct.unpack("!H", frame[16:18])[0], 18
    if et == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 6:
            return None
        src = str(ipaddress.ip_address(frame[off + 12:off + 16]))
        dst = str(ipaddress.ip_address(frame[off + 16:off + 20]))
        plen = struct.unpack("!H", frame[off + 2:off + 4])[0] - ihl
        t = off + ihl
    elif et == 0x86DD and len(frame) >= off + 40:
        if frame[off + 6] != 6:
            return None
        src = str(ipaddress.ip_address(frame[off + 8:off + 24]))
        dst = str(ipaddress.ip_address(frame[off + 24:off + 40]))
        plen = struct.unpack("!H", frame[off + 4:off + 6])[0]
        t = off + 40
    else:
        return None
    if len(frame) < t + 14:
        return None
    sport, dport, seq = struct.unpack("!HHI", frame[t:t + 8])
    doff, flags = frame[t + 12] >> 4, frame[t + 13] | ((frame[t + 12] & 1) << 8)
    return src, sport, dst, dport, flags, seq, plen - doff * 4


def clock_check(name, cap, kept, slack_ms, lossy=False):
    """Each kernel transition against the capture: the time to the nearest frame of the same
    connection. On a direct path a transition falls within a few hundred microseconds of the
    frame that causes or announces it; farther than 2 ms + the path's one-way delay is
    reported. Returns (n, median ms, max ms, far) for the log and the manifest."""
    _, frames = pcap_frames(cap)
    by_conn = {}
    for ts, _, data in frames:
        t = tcp_of(data)
        if t:
            key = frozenset((hostport(t[0], t[1]), hostport(t[2], t[3])))
            by_conn.setdefault(key, []).append(ts)
    gaps = []
    far = 0
    for ts, l, r, old, new in kept:
        near = by_conn.get(frozenset((l, r)))
        if not near:
            continue
        g = min(abs(x - ts) for x in near) * 1e3
        gaps.append(g)
        if g > 2.0 + slack_ms:
            far += 1
            if far <= 5:
                log("WARNING %s: %s %s %s->%s is %.3f ms from the nearest frame%s" % (
                    name, l, r, old, new, g,
                    " (lossy path: its frame may have been dropped before the tap, or no frame"
                    " shows it, e.g. a close in SYN_SENT)" if lossy else ""))
    if not gaps:
        return 0, 0.0, 0.0, 0
    gaps.sort()
    return len(gaps), gaps[len(gaps) // 2], gaps[-1], far


def drop_fin(src_cap, dst_cap):
    """Copy a capture without the FIN frame(s) of the endpoint that sent the first FIN (its
    retransmissions too): that FIN lost before the tap. Only bare FINs are dropped."""
    head, frames = pcap_frames(src_cap)
    kept, dropped, closer = [], 0, None
    for ts, rh, data in frames:
        t = tcp_of(data)
        if t and closer is None and t[4] & 0x01:
            closer = hostport(t[0], t[1])
        if t and hostport(t[0], t[1]) == closer and t[4] & 0x01:
            if t[6] != 0:
                raise RuntimeError("the FIN to drop carries %d bytes of payload" % t[6])
            dropped += 1
            continue
        kept.append(rh + data)
    if not dropped:
        raise RuntimeError("no FIN in %s" % src_cap)
    with open(dst_cap, "wb") as f:
        f.write(head + b"".join(kept))
    return closer, dropped


# ---- topologies ----------------------------------------------------------------------------

def direct(lab, v6=False):
    """client c0 <-> s0 server on one veth pair: 10.99.0.1/.2 (fd00::1/::2 when v6)."""
    lab.link("c", "c0", "s", "s0")
    for role, ifn, n in (("c", "c0", 1), ("s", "s0", 2)):
        if v6:
            lab.addr(role, ifn, "fd00::%d/64" % n)
        else:
            lab.no_ipv6(role)
            lab.addr(role, ifn, "10.99.0.%d/24" % n)
    return ("fd00::2" if v6 else "10.99.0.2")


def routed(lab, drop_s2c_permille=0, drop_c2s_permille=0):
    """client 10.99.1.1 -- router ns (nftables numgen drops) -- 10.99.2.2 server."""
    lab.link("c", "c0", "r", "r0")
    lab.link("r", "r1", "s", "s0")
    for role in ("c", "r", "s"):
        lab.no_ipv6(role)
    lab.addr("c", "c0", "10.99.1.1/24")
    lab.addr("r", "r0", "10.99.1.254/24")
    lab.addr("r", "r1", "10.99.2.254/24")
    lab.addr("s", "s0", "10.99.2.2/24")
    lab.ip(lab.ns("c"), "route", "add", "default", "via", "10.99.1.254")
    lab.ip(lab.ns("s"), "route", "add", "default", "via", "10.99.2.254")
    lab.sysctl("r", "net.ipv4.ip_forward", 1)
    lab.lossy = bool(drop_s2c_permille or drop_c2s_permille)
    rules = ""
    if drop_s2c_permille:
        rules += '  iifname "r1" meta l4proto tcp numgen random mod 1000 < %d drop\n' % drop_s2c_permille
    if drop_c2s_permille:
        rules += '  iifname "r0" meta l4proto tcp numgen random mod 1000 < %d drop\n' % drop_c2s_permille
    conf = ("table inet impair {\n chain impair_fwd {\n  type filter hook forward priority 0; policy accept;\n"
            + rules + " }\n}\n")
    path = os.path.join(lab.work, "impair.nft")
    with open(path, "w") as f:
        f.write(conf)
    lab.exec("r", ["nft", "-f", path])
    return "10.99.2.2"


def forwarded(lab, fwd_args, v6=False):
    """client c0 -- f0 [fwd.py] f1 -- s0 server, one L2 segment 10.99.0.0/24 or fd00::/64."""
    lab.link("c", "c0", "f", "f0")
    lab.link("f", "f1", "s", "s0")
    lab.no_ipv6("f")
    for ifn in ("f0", "f1"):
        lab.ip(lab.ns("f"), "link", "set", ifn, "promisc", "on")
    for role, ifn, n in (("c", "c0", 1), ("s", "s0", 2)):
        if v6:
            lab.addr(role, ifn, "fd00::%d/64" % n)
        else:
            lab.no_ipv6(role)
            lab.addr(role, ifn, "10.99.0.%d/24" % n)
    for i, arg in enumerate(fwd_args[:-1]):
        if arg == "--loss":
            lab.lossy = True
        if arg in ("--delay", "--reorder-ms"):
            lab.slack_ms += float(fwd_args[i + 1]) * (1.5 if arg == "--reorder-ms" else 1.0)
    lab.spawn("f", FWD + ["f0", "f1", "--max-seconds", "60"] + fwd_args, "fwd")
    time.sleep(0.2)
    return ("fd00::2" if v6 else "10.99.0.2")


def www(work):
    root = os.path.join(work, "www")
    os.makedirs(root, exist_ok=True)
    files = {"index.html": b"<html><body>" + b"statescope corpus page " * 24 + b"</body></html>\n",
             "small.txt": b"s" * 99 + b"\n",
             "mid.bin": os.urandom(1 << 20),
             "large.bin": os.urandom(3 << 19)}
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    os.chmod(work, 0o755)
    return root


def nginx(lab, role, port=80, v6=False):
    conf = os.path.join(lab.work, "nginx.conf")
    listen = "listen [::]:%d;" % port if v6 else "listen %d;" % port
    with open(conf, "w") as f:
        f.write("""user root; worker_processes 1; daemon off; pid %(w)s/nginx.pid;
error_log %(w)s/nginx-error.log;
events { worker_connections 512; }
http { access_log off; keepalive_requests 10000; keepalive_timeout 30s;
  client_body_temp_path %(w)s/body; proxy_temp_path %(w)s/proxy;
  server { %(listen)s root %(root)s; } }
""" % {"w": lab.work, "listen": listen, "root": www(lab.work)})
    p = lab.spawn(role, ["nginx", "-c", conf, "-p", lab.work], "nginx")
    for _ in range(50):
        if os.path.exists(os.path.join(lab.work, "nginx.pid")):
            break
        time.sleep(0.05)
    time.sleep(0.1)
    return p


def wait_listen(lab, role, port, tries=50):
    for _ in range(tries):
        if ":%d " % port in lab.exec(role, ["ss", "-tlnH"]).stdout:
            return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on port %d in %s" % (port, lab.ns(role)))


# ---- scenarios -----------------------------------------------------------------------------
# Each takes (lab, pcap_path) and returns (capture_roles, kernel_roles); the caller saves the
# socket table and stops tcpdump afterwards. The capture is started inside the scenario so that
# servers are already listening (the capture holds only the traffic of interest).

def curl(lab, urls, extra=(), timeout=60):
    p = lab.exec("c", ["curl", "-sS", "-o", "/dev/null", "--max-time", "30"] + list(extra) + urls,
                 check=False, timeout=timeout)
    if p.returncode != 0:
        log("curl exit %d: %s" % (p.returncode, p.stderr.strip()[-300:]))
    return p


def sc_bulk_loss_tx(lab, cap):
    srv = routed(lab, drop_s2c_permille=20, drop_c2s_permille=5)
    nginx(lab, "s")
    lab.cap = lab.tcpdump("s", "s0", cap)
    curl(lab, ["http://%s/large.bin" % srv])


def sc_loss_reorder_rx(lab, cap):
    srv = forwarded(lab, ["--loss", "0.03", "--reorder", "0.05", "--reorder-ms", "3", "--delay", "1"])
    nginx(lab, "s")
    lab.cap = lab.tcpdump("c", "c0", cap)
    curl(lab, ["http://%s/mid.bin" % srv])


def sc_dup_delay(lab, cap):
    srv = forwarded(lab, ["--dup", "0.02", "--delay", "5"])
    nginx(lab, "s")
    lab.cap = lab.tcpdump("c", "c0", cap)
    curl(lab, ["http://%s/mid.bin" % srv, "http://%s/index.html" % srv, "http://%s/small.txt" % srv])


def sc_ipv6_keepalive(lab, cap):
    srv = direct(lab, v6=True)
    nginx(lab, "s", v6=True)
    lab.cap = lab.tcpdump("c", "c0", cap)
    base = "http://[%s]" % srv
    curl(lab, [base + "/index.html", base + "/small.txt", base + "/missing", base + "/index.html",
               base + "/small.txt"], extra=["-g"])


def sc_many_conns_v6_loss(lab, cap):
    srv = forwarded(lab, ["--loss", "0.01", "--delay", "3"], v6=True)
    nginx(lab, "s", v6=True)
    lab.cap = lab.tcpdump("c", "c0", cap)
    lab.exec("c", ["wrk", "-t1", "-c4", "-d1s", "--timeout", "2s", "-H", "Connection: close",
                   "http://[%s]:80/small.txt" % srv], check=False, timeout=30)


def sc_abort_rst_srv(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-blast", "--port", "8001", "--size", str(1 << 20)], "srv")
    wait_listen(lab, "s", 8001)
    lab.cap = lab.tcpdump("s", "s0", cap)
    c = lab.spawn("c", PEERS + ["cli-abort", "--host", srv, "--port", "8001", "--size", "120000"], "cli")
    lab.wait(c, 20, "abort client")
    lab.wait(s, 5, "blast server")


def sc_keepalive_both(lab, cap):
    srv = direct(lab)
    lab.spawn("s", PEERS + ["srv-keepalive", "--port", "8002", "--ka-idle", "2", "--ka-intvl", "1",
                            "--hold", "12"], "srv")
    wait_listen(lab, "s", 8002)
    lab.cap = lab.tcpdump("c", "c0", cap)
    lab.spawn("c", PEERS + ["cli-keepalive", "--host", srv, "--port", "8002", "--ka-idle", "1",
                            "--ka-intvl", "1", "--hold", "12"], "cli")
    time.sleep(5.2)  # idle long enough for several probes from both ends; peers still alive


def sc_zero_window_tx(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-blast", "--port", "8006", "--size", "300000"], "srv")
    wait_listen(lab, "s", 8006)
    lab.cap = lab.tcpdump("s", "s0", cap)
    c = lab.spawn("c", PEERS + ["cli-stall", "--host", srv, "--port", "8006", "--rcvbuf", "4096",
                                "--stall", "1.0"], "cli")
    lab.wait(c, 30, "stalling client")
    lab.wait(s, 5, "blast server")


def sc_port_reuse5(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-reuse", "--port", "8003", "--count", "5"], "srv")
    wait_listen(lab, "s", 8003)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-reuse", "--host", srv, "--port", "8003", "--count", "5",
                                "--bind-port", "40000"], "cli")
    lab.wait(c, 30, "reuse client")
    lab.wait(s, 5, "reuse server")


def sc_post_expect_chunked(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-chunked", "--port", "8004", "--count", "1"], "srv")
    wait_listen(lab, "s", 8004)
    body = os.path.join(lab.work, "body.bin")
    with open(body, "wb") as f:
        f.write(b"b" * 6000)
    lab.cap = lab.tcpdump("c", "c0", cap)
    url = "http://%s:8004/upload" % srv
    # curl's --next starts a new option group; the connection is reused for the GET
    curl(lab, [url, "--next", "-sS", "-o", "/dev/null", "http://%s:8004/after" % srv],
         extra=["-H", "Expect: 100-continue", "--data-binary", "@" + body])
    lab.wait(s, 5, "chunked server")


def sc_snaplen96_loss(lab, cap):
    srv = routed(lab, drop_s2c_permille=20, drop_c2s_permille=5)
    nginx(lab, "s")
    lab.cap = lab.tcpdump("c", "c0", cap, snaplen=96)
    curl(lab, ["http://%s/mid.bin" % srv])


def sc_half_close_srv_first(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-halfclose", "--port", "8005"], "srv")
    wait_listen(lab, "s", 8005)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-halfclose", "--host", srv, "--port", "8005"], "cli")
    lab.wait(c, 20, "half-close client")
    lab.wait(s, 5, "half-close server")


def sc_tfo_ecn_urg(lab, cap):
    srv = direct(lab)
    lab.sysctl("c", "net.ipv4.tcp_fastopen", 1)
    lab.sysctl("s", "net.ipv4.tcp_fastopen", 2)
    lab.sysctl("c", "net.ipv4.tcp_ecn", 1)
    s = lab.spawn("s", PEERS + ["srv-tfo", "--port", "8007", "--count", "3"], "srv")
    wait_listen(lab, "s", 8007)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-tfo", "--host", srv, "--port", "8007", "--count", "3"], "cli")
    lab.wait(c, 20, "tfo client")
    lab.wait(s, 5, "tfo server")


def sc_bulk_loss_nosack(lab, cap):
    srv = routed(lab, drop_s2c_permille=20, drop_c2s_permille=5)
    for key in ("tcp_sack", "tcp_timestamps", "tcp_window_scaling"):
        lab.sysctl("c", "net.ipv4." + key, 0)
    nginx(lab, "s")
    lab.cap = lab.tcpdump("c", "c0", cap)
    curl(lab, ["http://%s/mid.bin" % srv])


def sc_pipelined_head(lab, cap):
    srv = direct(lab)
    nginx(lab, "s")
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-pipelined", "--host", srv, "--port", "80", "--out",
                                cap[:-len(".pcap")] + ".app.txt"], "cli")
    lab.wait(c, 20, "pipelined client")


def sc_rst_unread(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-unread", "--port", "8008"], "srv")
    wait_listen(lab, "s", 8008)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-bigpost", "--host", srv, "--port", "8008", "--size", "20000"], "cli")
    lab.wait(c, 20, "bigpost client")
    lab.wait(s, 5, "unread server")


# ---- endpoint-state scenarios (each with the kernel's transitions) ---------------------------

def changes(kept, local=None):
    """[(ts, local, old, new)] of the kept transition rows, optionally of one local address."""
    return [(ts, l, o, n) for ts, l, r, o, n in kept if local is None or l.startswith(local)]


def tcp_frames(cap):
    out = []
    for ts, _, data in pcap_frames(cap)[1]:
        t = tcp_of(data)
        if t:
            out.append((ts,) + t)
    return out


def expect_simultaneous(kept, cap):
    for host in ("10.99.0.1:", "10.99.0.2:"):
        seq = [(o, n) for _, _, o, n in changes(kept, host)]
        for step in (("SYN_SENT", "SYN_RECV"), ("FIN_WAIT1", "CLOSING")):
            if step not in seq:
                raise RuntimeError("%s: no %s->%s: the SYNs or FINs did not cross" % (host, *step))


def expect_rst_window(kept, cap):
    rsts = [f for f in tcp_frames(cap) if f[1] == "10.99.0.1" and f[5] & 0x04]
    closes = [c for c in changes(kept, "10.99.0.2:") if c[3] == "CLOSE"]
    if len(rsts) < 4 or len(closes) != 1:
        raise RuntimeError("rst-window: %d injected RSTs, %d server closes" % (len(rsts), len(closes)))
    dt = closes[0][0] - rsts[3][0]
    if not -0.0005 < dt < 0.002:
        raise RuntimeError("rst-window: server closed %.3f ms from the exact RST" % (dt * 1e3))


def expect_syn_retrans(kept, cap):
    syns = [f for f in tcp_frames(cap) if f[5] & 0x12 == 0x02]
    if len(syns) != 3 or not any(n == "ESTABLISHED" for _, _, _, n in changes(kept)):
        raise RuntimeError("syn-retrans: %d SYNs, handshake %s" % (len(syns), "done" if syns else "?"))


def expect_queue_reset(kept, cap):
    resets = [c for c in changes(kept, "10.99.0.2:") if c[2] == "ESTABLISHED" and c[3] == "CLOSE"]
    if len(resets) != 3:
        raise RuntimeError("listen-queue-close: %d queued children reset, want 3" % len(resets))


def sc_refused(lab, cap):
    srv = direct(lab)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-connect", "--host", srv, "--port", "8010", "--count", "2"], "cli")
    lab.must(c, 10, "connect client")


def sc_syn_retrans(lab, cap):
    srv = direct(lab)
    # the first two SYNs to port 8011 are dropped on the server's input (after its tap point
    # would be; the tap is on the client): the client retransmits at +1 s and +2 s (linear SYN timeouts, Linux 6.5+)
    path = os.path.join(lab.work, "syndrop.nft")
    with open(path, "w") as f:
        f.write("table inet syndrop {\n chain in {\n  type filter hook input priority 0; policy accept;\n"
                "  tcp dport 8011 tcp flags & (syn | ack) == syn numgen inc mod 1000 < 2 drop\n }\n}\n")
    lab.exec("s", ["nft", "-f", path])
    lab.expect = expect_syn_retrans
    s = lab.spawn("s", PEERS + ["srv-close-order", "--port", "8011", "--mode", "server"], "srv")
    wait_listen(lab, "s", 8011)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-close-order", "--host", srv, "--port", "8011", "--mode", "server"], "cli")
    lab.must(c, 15, "client")
    lab.must(s, 5, "server")


def sc_simultaneous(lab, cap):
    srv = forwarded(lab, ["--delay", "20"])
    lab.expect = expect_simultaneous
    lab.cap = lab.tcpdump("c", "c0", cap)
    rdv = os.path.join(lab.work, "rdv")
    os.mkdir(rdv)
    a = lab.spawn("c", PEERS + ["peer-simul", "--host", srv, "--port", "40002", "--bind-port", "40001",
                                "--out", rdv], "peer-a")
    b = lab.spawn("s", PEERS + ["peer-simul", "--host", "10.99.0.1", "--port", "40001",
                                "--bind-port", "40002", "--out", rdv], "peer-b")
    # both bound -> one start time for both (the SYNs must cross within the 20 ms path)
    for _ in range(500):
        if all(os.path.exists(os.path.join(rdv, "ready-%d" % p)) for p in (40001, 40002)):
            break
        time.sleep(0.01)
    else:
        raise RuntimeError("simultaneous peers never got ready")
    with open(os.path.join(rdv, "go.tmp"), "w") as f:
        f.write("%.6f" % (time.time() + 0.3))
    os.rename(os.path.join(rdv, "go.tmp"), os.path.join(rdv, "go"))
    lab.must(a, 10, "peer a")
    lab.must(b, 10, "peer b")


def sc_half_close_held(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-trickle", "--port", "8012", "--hold", "1.5"], "srv")
    wait_listen(lab, "s", 8012)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-shutwr", "--host", srv, "--port", "8012"], "cli")
    lab.must(c, 10, "client")
    lab.must(s, 5, "server")


def abort_in(mode, port):
    def sc(lab, cap):
        srv = direct(lab)
        s = lab.spawn("s", PEERS + ["srv-abort", "--port", str(port), "--mode", mode], "srv")
        wait_listen(lab, "s", port)
        lab.cap = lab.tcpdump("c", "c0", cap)
        c = lab.spawn("c", PEERS + ["cli-abort-state", "--host", srv, "--port", str(port),
                                    "--mode", mode], "cli")
        lab.must(c, 10, "client")
        lab.must(s, 5, "server")
    return sc


def sc_rst_window(lab, cap):
    srv = direct(lab)
    s = lab.spawn("s", PEERS + ["srv-hold", "--port", "8016", "--rcvbuf", "8192"], "srv")
    wait_listen(lab, "s", 8016)
    lab.expect = expect_rst_window
    lab.cap = lab.tcpdump("s", "s0", cap)
    done = os.path.join(lab.work, "inject.done")
    inj = lab.spawn("c", PEERS + ["rst-inject", "--host", srv, "--port", "8016", "--iface", "c0",
                                  "--out", done], "inject")
    time.sleep(0.3)   # the sniffer is bound before the handshake
    c = lab.spawn("c", PEERS + ["cli-hold", "--host", srv, "--port", "8016", "--pause", "0.3",
                                "--out", done], "cli")
    lab.must(inj, 20, "injector")
    lab.must(c, 15, "client")
    lab.must(s, 5, "server")
    with open(os.path.join(lab.work, "inject.log")) as f:
        lab.note = " ".join(l.strip() for l in f if "RST" in l or "rcv_nxt" in l)


def fin_order(mode, port):
    def sc(lab, cap):
        srv = direct(lab)
        s = lab.spawn("s", PEERS + ["srv-close-order", "--port", str(port), "--mode", mode,
                                    "--pause", "0.1"], "srv")
        wait_listen(lab, "s", port)
        lab.cap = lab.tcpdump("s", "s0", cap)
        c = lab.spawn("c", PEERS + ["cli-close-order", "--host", srv, "--port", str(port),
                                    "--mode", mode, "--pause", "0.1"], "cli")
        lab.must(c, 10, "client")
        lab.must(s, 5, "server")
    return sc


def sc_listen_queue_close(lab, cap):
    srv = direct(lab)
    lab.expect = expect_queue_reset
    s = lab.spawn("s", PEERS + ["srv-backlog", "--port", "8019", "--hold", "1.0"], "srv")
    wait_listen(lab, "s", 8019)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-queued", "--host", srv, "--port", "8019", "--count", "3"], "cli")
    lab.must(s, 10, "server")
    lab.must(c, 10, "client")


def expect_give_up(kept, cap):
    """Two abandoned connects: per client port one SYN_SENT -> CLOSE before its SYN-ACK came
    back, that SYN-ACK answered by a bare RST (no ACK), nothing logged on the server."""
    cli = changes(kept, "10.99.0.1:")
    if len(cli) != 2 or any((o, n) != ("SYN_SENT", "CLOSE") for _, _, o, n in cli) \
            or changes(kept, "10.99.0.2:"):
        raise RuntimeError("connect-give-up: kernel rows %s" % [(l, o, n) for _, l, o, n in changes(kept)])
    fr = tcp_frames(cap)
    for ts, local, _, _ in cli:
        port = int(local.rsplit(":", 1)[1])
        synack = [f for f in fr if f[4] == port and f[5] & 0x12 == 0x12]
        rst = [f for f in fr if f[2] == port and f[5] & 0x04]
        if len(synack) != 1 or len(rst) != 1 or rst[0][5] & 0x10 or synack[0][0] <= ts:
            raise RuntimeError("connect-give-up: port %d: %d SYN-ACK(s), %d RST(s)%s" % (
                port, len(synack), len(rst), ", SYN-ACK before the close" if synack and synack[0][0] <= ts else ""))


def expect_syn_unanswered(kept, cap):
    fr = tcp_frames(cap)
    syns = [f for f in fr if f[5] & 0x12 == 0x02]
    rows = changes(kept)
    if len(syns) < 3 or len(fr) != len(syns) or [(o, n) for _, _, o, n in rows] != [("SYN_SENT", "CLOSE")] \
            or not rows[0][1].startswith("10.99.0.1:") or not 6.0 < rows[0][0] - syns[0][0] < 8.5:
        raise RuntimeError("syn-unanswered: %d frames (%d SYNs), kernel rows %s" % (
            len(fr), len(syns), [(round(ts - syns[0][0], 3) if syns else ts, l, o, n) for ts, l, o, n in rows]))


def prime_arp(lab, dst, limit=5.0):
    """Resolve the client's neighbour entry for dst before the capture (UDP datagrams to the
    discard port, answered by ICMP unreachable, until the entry is REACHABLE): on a delayed path
    a SYN held back for ARP would leave only after an early close(). The forwarder, started just
    before, may not be up yet on a loaded machine: resend until it is."""
    t_end = time.monotonic() + limit
    send = ("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'arp', (%r, 9))"
            % dst)
    while time.monotonic() < t_end:
        lab.exec("c", [PY, "-c", send])
        for _ in range(10):
            if "REACHABLE" in lab.ip(lab.ns("c"), "neigh", "show", dst).stdout:
                time.sleep(0.2)   # the ICMP answer crosses the forwarder too
                return
            time.sleep(0.05)
    raise RuntimeError("no ARP answer from %s within %.0f s" % (dst, limit))


def sc_connect_give_up(lab, cap):
    srv = forwarded(lab, ["--delay", "40"])
    lab.expect = expect_give_up
    # the listener never accept()s; it is ended (by its PID) once the client is done
    s = lab.spawn("s", PEERS + ["srv-backlog", "--port", "8020", "--hold", "30"], "srv")
    wait_listen(lab, "s", 8020)
    prime_arp(lab, srv)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-give-up", "--host", srv, "--port", "8020", "--count", "2",
                                "--pause", "0.01", "--hold", "0.5"], "cli")
    lab.must(c, 15, "client")
    time.sleep(0.3)   # the last SYN-ACK and RST cross the forwarder
    if s.poll() is not None:
        raise RuntimeError("the listener ended before the client (exit %s)" % s.returncode)
    lab.stop(s)
    with open(os.path.join(lab.work, "cli.log")) as f:
        lab.note = " ".join(l.strip() for l in f if l.startswith("give-up"))


def sc_syn_unanswered(lab, cap):
    srv = direct(lab)
    # every SYN to port 8021 dropped on the server's input; the client gives up after 2 retries
    path = os.path.join(lab.work, "syndrop.nft")
    with open(path, "w") as f:
        f.write("table inet syndrop {\n chain in {\n  type filter hook input priority 0; policy accept;\n"
                "  tcp dport 8021 tcp flags & (syn | ack) == syn drop\n }\n}\n")
    lab.exec("s", ["nft", "-f", path])
    lab.sysctl("c", "net.ipv4.tcp_syn_retries", 2)
    # Linux 6.5+: the first tcp_syn_linear_timeouts (default 4) SYN retransmissions come 1 s
    # apart, and the give-up time is still the exponential model's 1+2+4 = 7 s for 2 retries:
    # 6 SYNs (0..+5 s) on such a kernel, 3 (0, +1, +3 s) where the sysctl is 0 or absent
    linear = lab.exec("c", ["sysctl", "-n", "net.ipv4.tcp_syn_linear_timeouts"], check=False)
    linear = linear.stdout.strip() if linear.returncode == 0 else "absent"
    lab.expect = expect_syn_unanswered
    s = lab.spawn("s", PEERS + ["srv-backlog", "--port", "8021", "--hold", "30"], "srv")
    wait_listen(lab, "s", 8021)
    lab.cap = lab.tcpdump("c", "c0", cap)
    c = lab.spawn("c", PEERS + ["cli-connect", "--host", srv, "--port", "8021", "--count", "1"], "cli")
    lab.must(c, 15, "client")
    if s.poll() is not None:
        raise RuntimeError("the listener ended before the client (exit %s)" % s.returncode)
    lab.stop(s)   # by its PID
    syns = syn_times(cap)
    with open(os.path.join(lab.work, "cli.log")) as f:
        lab.note = "tcp_syn_retries=2 tcp_syn_linear_timeouts=%s; %s; SYNs at %s" % (
            linear, " ".join(l.strip() for l in f if l.startswith("connect")),
            ", ".join("+%.2f s" % (t - syns[0]) for t in syns))


def syn_times(cap):
    return [f[0] for f in tcp_frames(cap) if f[5] & 0x12 == 0x02]


# With random loss tshark's HTTP body reassembly may never complete, and then it reports no
# response at all; as in the public corpus's lossy capture, body desegmentation is off there.
NOBODY = ["-o", "http.desegment_body:FALSE"]

# name, function, namespaces, exercises, tshark options
SCENARIOS = [
    ("bulk-loss-tx", sc_bulk_loss_tx, "crs", "1.5 MiB download, 2% data / 0.5% ACK random loss (nftables numgen in a router ns); SENDER-side vantage (lost segments present)", NOBODY),
    ("loss-reorder-rx", sc_loss_reorder_rx, "cfs", "1 MiB download through a user-space forwarder: 3% loss both ways, 5% of frames held 1.5-4.5 ms (reordering), 1 ms delay; receiver side", NOBODY),
    ("dup-delay", sc_dup_delay, "cfs", "forwarder duplicates 2% of TCP frames, 5 ms one-way delay; 1 MiB + 2 small GETs on one connection; client side", []),
    ("ipv6-keepalive", sc_ipv6_keepalive, "cs", "IPv6 (fd00::/64) 5 GETs (one 404) on one persistent connection to nginx; client closes first", []),
    ("many-conns-v6-loss", sc_many_conns_v6_loss, "cfs", "wrk -c4 1 s with Connection: close over IPv6 through a forwarder with 1% loss and 3 ms delay: many short connections", []),
    ("abort-rst-srv", sc_abort_rst_srv, "cs", "client reads 120 kB of 1 MiB then aborts with SO_LINGER{1,0} -> RST; server-side vantage", ["-d", "tcp.port==8001,http"]),
    ("keepalive-both", sc_keepalive_both, "cs", "idle connection, TCP keepalive on both ends (client idle 1 s / server idle 2 s, interval 1 s) for ~5 s; both ESTABLISHED at the end", ["-d", "tcp.port==8002,http"]),
    ("zero-window-tx", sc_zero_window_tx, "cs", "SO_RCVBUF=4096 reader stalling twice 1 s vs fast 300 kB sender; sender-side vantage", ["-d", "tcp.port==8006,http"]),
    ("port-reuse-5", sc_port_reuse5, "cs", "5 sequential connections on the same 4-tuple (client binds port 40000, SO_REUSEADDR); server closes first each time (TIME_WAIT accepts the new SYN)", ["-d", "tcp.port==8003,http"]),
    ("post-expect-chunked", sc_post_expect_chunked, "cs", "curl POST 6000 bytes with Expect: 100-continue to a python http.server (interim 100, chunked 200), then a GET on the same connection", ["-d", "tcp.port==8004,http"]),
    ("snaplen96-loss", sc_snaplen96_loss, "crs", "1 MiB download with 2% data / 0.5% ACK loss in a router ns, receiver side, snaplen 96 (payload cut)", NOBODY),
    ("half-close-srv-first", sc_half_close_srv_first, "cs", "server answers then SHUT_WR first (FIN_WAIT_2) while the client keeps sending 12 kB, then closes -> server TIME_WAIT", ["-d", "tcp.port==8005,http"]),
    ("tfo-ecn-urg", sc_tfo_ecn_urg, "cs", "3 connections with TCP Fast Open (first gets the cookie, then data in the SYN), ECN negotiated (ECE/CWR in the handshake), one URG byte after each response", ["-d", "tcp.port==8007,http"]),
    ("bulk-loss-nosack", sc_bulk_loss_nosack, "crs", "1 MiB download with 2% data / 0.5% ACK loss, client disables SACK, timestamps and window scaling; receiver side", NOBODY),
    ("pipelined-head", sc_pipelined_head, "cs", "GET, GET, HEAD, GET, GET 404 (Connection: close) pipelined in one segment to nginx; client log in .app.txt", []),
    ("rst-unread", sc_rst_unread, "cs", "server reads 200 bytes of a 20 kB POST, answers 413 and closes with data unread -> RST instead of FIN", ["-d", "tcp.port==8008,http"]),
]

HT = lambda port: ["-d", "tcp.port==%d,http" % port]
# The endpoint-state scenarios (issue 18); in `corpus` after SCENARIOS, in `states` with STATES.
STATE_SCENARIOS = [
    ("refused-connect", sc_refused, "cs", "two connect()s to a port with no listener, each SYN answered by RST+ACK: no socket ever exists on the server (client SYN_SENT -> CLOSED only); client side", []),
    ("syn-retrans", sc_syn_retrans, "cs", "the first two SYNs are dropped by nftables on the server's input (numgen inc); the client retransmits at +1 s and +2 s (linear SYN timeouts) and the third SYN completes the handshake; one GET, server closes first; client-side vantage (dropped SYNs present)", HT(8011)),
    ("simultaneous-open-close", sc_simultaneous, "cfs", "two peers bind 40001/40002 and connect() to each other at the same instant across a 20 ms one-way forwarder: crossing SYNs (SYN_SENT -> SYN_RECEIVED -> ESTABLISHED on both), a line each way, then SHUT_WR at the same instant: crossing FINs (FIN_WAIT_1 -> CLOSING -> TIME_WAIT on both); tap at 10.99.0.1", []),
    ("half-close-held", sc_half_close_held, "cs", "client SHUT_WR right after its request; the server keeps sending a line every 0.25 s for 1.5 s (client FIN_WAIT_2, server CLOSE_WAIT held), then closes -> server LAST_ACK, client TIME_WAIT; client side", HT(8012)),
    ("abort-estab", abort_in("estab", 8013), "cs", "client reads the answer and aborts in ESTABLISHED with SO_LINGER{1,0} -> RST; server ESTABLISHED -> CLOSED; client side", HT(8013)),
    ("abort-close-wait", abort_in("close-wait", 8014), "cs", "client SHUT_WR (server CLOSE_WAIT, client FIN_WAIT_2); the server answers, then aborts from CLOSE_WAIT with SO_LINGER{1,0} -> RST; client FIN_WAIT_2 -> CLOSED; client side", HT(8014)),
    ("abort-fin-wait2", abort_in("fin-wait2", 8015), "cs", "client SHUT_WR, the server ACKs and answers but keeps its side open (CLOSE_WAIT); the client aborts from FIN_WAIT_2 with SO_LINGER{1,0} -> RST; server CLOSE_WAIT -> CLOSED; client side", HT(8015)),
    ("rst-window", sc_rst_window, "cs", "four RSTs crafted by an AF_PACKET injector in the client ns on a live idle connection, towards the server (receive window a few kB): seq = RCV.NXT+10^9 and +70000 (out of window: dropped), +100 (in window, inexact: challenge ACK, still ESTABLISHED), then RCV.NXT exactly (server ESTABLISHED -> CLOSED); the client's next segment draws the server's RST (client -> CLOSED); server-side vantage", []),
    ("fin-cli-first", fin_order("client", 8017), "cs", "one GET; the client closes first, the server ACKs the FIN and closes 0.1 s later -> client TIME_WAIT, server LAST_ACK -> CLOSED; server-side vantage (the real capture behind fin-lost-cli-first)", HT(8017)),
    ("fin-srv-first", fin_order("server", 8018), "cs", "one GET; the server closes first, the client ACKs the FIN and closes 0.1 s later -> server TIME_WAIT, client LAST_ACK -> CLOSED; server-side vantage (the real capture behind fin-lost-srv-first)", HT(8018)),
    ("listen-queue-close", sc_listen_queue_close, "cs", "a listener (backlog 8) never accept()s; 3 clients connect (the kernel completes each handshake: children in the accept queue) and send a line; after 1 s the listener is closed and the kernel resets the 3 queued children; client side", []),
    ("connect-give-up", sc_connect_give_up, "cfs", "two non-blocking connect()s across a 40 ms one-way forwarder to a listener, each abandoned by close() 10 ms later while SYN_SENT (client SYN_SENT -> CLOSED, no frame); the server's SYN-ACK (from a request socket: nothing logged on the server) then finds no socket and draws a bare RST (no ACK); client side", []),
    ("syn-unanswered", sc_syn_unanswered, "cs", "every SYN dropped by nftables on the server's input (listener behind it); client tcp_syn_retries=2: SYN retransmissions (1 s apart while tcp_syn_linear_timeouts lasts), connect() fails with ETIMEDOUT at about +7 s (client SYN_SENT -> CLOSED, no frame: seconds after the last SYN); nothing on the server; client side", []),
]
# real capture -> (derived name, exercises): a copy without the first closer's FIN frame
DERIVED = {
    "fin-cli-first": ("fin-lost-cli-first", "fin-cli-first with the client's FIN frame removed (lost before the tap): only the server's ACK of it (ack+1) and the server's own FIN show that the client closed first; transitions are the kernel's of the real run"),
    "fin-srv-first": ("fin-lost-srv-first", "fin-srv-first with the server's FIN frame removed (lost before the tap): only the client's ACK of it (ack+1) and the client's own FIN show that the server closed first; transitions are the kernel's of the real run"),
}
DERIVED_MADE = "derived from a kernel capture (FIN frame removed)"
# `states`: the state scenarios plus four of the corpus
STATES = [sc[0] for sc in STATE_SCENARIOS] + ["half-close-srv-first", "port-reuse-5",
                                              "abort-rst-srv", "keepalive-both"]


def tshark(cap, opts, args):
    return run(["tshark", "-r", cap] + opts + args, timeout=300).stdout


def oracles(out, name, cap, opts, conv=True):
    base = os.path.join(out, name)
    fields = []
    for f in PACKET_FIELDS:
        fields += ["-e", f]
    with open(base + ".packets.tsv", "w") as f:
        f.write(tshark(cap, opts, ["-T", "fields", "-E", "header=y", "-E", "separator=/t"] + fields))
    fields = []
    for f in HTTP_FIELDS:
        fields += ["-e", f]
    with open(base + ".http.tsv", "w") as f:
        f.write(tshark(cap, opts, ["-Y", HTTP_FILTER, "-T", "fields", "-E", "header=y",
                                   "-E", "separator=/t"] + fields))
    if conv:
        with open(base + ".conv.txt", "w") as f:
            f.write(tshark(cap, opts, ["-q", "-z", "conv,tcp"]))


def manifest_row(out, name, fname, exercises, opts, made="kernel traffic"):
    base = os.path.join(out, name)
    with open(base + ".packets.tsv", newline="") as f:
        pk = list(csv.DictReader(f, delimiter="\t"))
    with open(base + ".http.tsv", newline="") as f:
        ht = list(csv.DictReader(f, delimiter="\t"))
    row = {"name": name, "file": fname, "link_type": "ether", "format": "pcap", "made": made,
           "exercises": exercises, "packets": str(len(pk)),
           "tcp_streams": str(len({r["tcp.stream"] for r in pk if r["tcp.stream"]}))}
    for col in FLAG_COLUMNS:
        row[col] = str(sum(1 for r in pk if r.get("tcp.analysis." + col)))
    flags = [r["tcp.flags.str"] for r in pk if r["tcp.flags.str"]]
    row["syn"] = str(sum("S" in x for x in flags))
    row["fin"] = str(sum("F" in x for x in flags))
    row["rst"] = str(sum("R" in x for x in flags))
    row["truncated"] = str(sum(1 for r in pk if int(r["frame.cap_len"]) < int(r["frame.len"])))
    row["http_requests"] = str(sum(len([m for m in r["http.request.method"].split(",") if m]) for r in ht))
    row["http_responses"] = str(sum(len([c for c in r["http.response.code"].split(",") if c]) for r in ht))
    row["ws_frames"] = str(sum(len([o for o in r["websocket.opcode"].split(",") if o]) for r in ht))
    row["bytes"] = str(os.path.getsize(os.path.join(out, fname)))
    row["kernel_tsv"] = "yes" if os.path.exists(base + ".kernel.tsv") else "no"
    row["tshark_opts"] = " ".join(opts) or "-"
    tr = base + ".transitions.tsv"
    row["transitions"] = "-"
    if os.path.exists(tr):
        with open(tr) as f:
            row["transitions"] = str(sum(1 for _ in f) - 1)
    row["clock_check"] = "-"
    return row


def run_scenario(out, name, fn, roles, opts, names, snap, conv):
    """One scenario: lab, trace, capture, socket table, transitions, oracles. Raises on
    failure; the namespaces, processes and the tracefs instance are gone either way."""
    work = tempfile.mkdtemp(prefix="corpus-%s-" % name)
    cap = os.path.join(out, name + ".pcap")
    tracer = Tracer()
    lab = None
    try:
        lab = Lab({r: names[r] for r in roles}, work, snap=snap)
        lab.cap = None
        lab.note = ""
        lab.expect = None   # scenario's own check of the kernel's transitions (raises)
        tracer.start()
        fn(lab, cap)
        time.sleep(0.4)  # let the last ACKs / FINs cross before the socket table
        lab.socket_table([r for r in ("c", "s") if r in roles], os.path.join(out, name + ".kernel.tsv"))
        lab.stop(lab.cap, signal.SIGINT)
        rows = tracer.stop()   # before teardown: the peers it ends are not the scenario
        kept = write_transitions(os.path.join(out, name + ".transitions.tsv"), rows, lab.addrs)
        check = clock_check(name, cap, kept, lab.slack_ms, lab.lossy)
        if lab.expect:
            lab.expect(kept, cap)
        note = lab.note
    except BaseException:
        log("%s FAILED (logs kept in %s)" % (name, work))
        raise
    finally:
        if lab is not None:
            lab.teardown()
        else:   # Lab() itself failed part-way
            for r in roles:
                run(["ip", "netns", "del", names[r]], check=False)
        tracer.remove()
    shutil.rmtree(work, ignore_errors=True)
    oracles(out, name, cap, opts, conv=conv)
    return cap, kept, check, note


def make_set(out, table, only=None, prefix="cx", snap=262144, conv=True):
    os.makedirs(out, exist_ok=True)
    rows, failed = [], []
    names = {r: "%s-%s" % (prefix, r) for r in "csrf"}
    offset = tai_offset()
    log("CLOCK_TAI - CLOCK_REALTIME = %.6f s (trace timestamps are shifted by it)" % offset)
    for name, fn, roles, exercises, opts in table:
        if only and name not in only and DERIVED.get(name, ("",))[0] not in only:
            continue
        t0 = time.monotonic()
        for attempt in (1, 2):   # one retry: a loaded machine may upset a timed scenario
            try:
                cap, kept, check, note = run_scenario(out, name, fn, roles, opts, names, snap, conv)
                break
            except Exception as e:
                log("%s FAILED (attempt %d): %s" % (name, attempt, e))
        else:
            failed.append(name)
            continue
        n, med, mx, far = check
        row = manifest_row(out, name, name + ".pcap", exercises + (" [" + note + "]" if note else ""), opts)
        row["clock_check"] = "%d transitions, nearest frame median %.3f ms max %.3f ms%s" % (
            n, med, mx, (", %d far" % far) if far else "")
        rows.append(row)
        log("%-24s %6s packets %8s bytes %4d transitions (clock: median %.3f ms, max %.3f ms%s) %.1f s"
            % (name, row["packets"], row["bytes"], len(kept), med, mx,
               ", %d FAR" % far if far else "", time.monotonic() - t0))
        if name in DERIVED:
            dname, dex = DERIVED[name]
            dcap = os.path.join(out, dname + ".pcap")
            closer, dropped = drop_fin(cap, dcap)
            for ext in (".transitions.tsv", ".kernel.tsv"):
                shutil.copyfile(os.path.join(out, name + ext), os.path.join(out, dname + ext))
            oracles(out, dname, dcap, opts, conv=conv)
            row = manifest_row(out, dname, dname + ".pcap", dex + " (%s's FIN, %d frame(s))" % (closer, dropped),
                               opts, made=DERIVED_MADE)
            row["clock_check"] = "see " + name
            rows.append(row)
            log("%-24s derived: %d FIN frame(s) of %s removed" % (dname, dropped, closer))
    if rows:
        order = []
        for sc in table:
            order += [sc[0]] + ([DERIVED[sc[0]][0]] if sc[0] in DERIVED else [])
        write_manifest(os.path.join(out, "manifest.tsv"), rows, order, merge=bool(only))
    return failed


def write_manifest(path, rows, order, merge):
    """Write manifest.tsv. With merge (scenarios named on the command line) and a manifest
    already there, its other rows are kept byte for byte: a row of the same name is replaced
    in place, a new one goes after the last row that comes before it in `order`."""
    header = "\t".join(MANIFEST_COLUMNS) + "\n"
    lines = [(r["name"], "\t".join(r[c] for c in MANIFEST_COLUMNS) + "\n") for r in rows]
    if merge and os.path.exists(path):
        with open(path, newline="") as f:
            old = f.readlines()
        if not old or old[0] != header:
            alt = path[:-len(".tsv")] + ".new.tsv"
            log("WARNING: %s has other columns: new rows written to %s instead" % (path, alt))
            path, merged = alt, lines
        else:
            merged = [(l.split("\t", 1)[0], l if l.endswith("\n") else l + "\n") for l in old[1:]]
            rank = {n: i for i, n in enumerate(order)}
            for name, line in lines:
                names = [n for n, _ in merged]
                if name in names:
                    merged[names.index(name)] = (name, line)
                    continue
                at = 0
                for i, n in enumerate(names):
                    if n in rank and rank[n] < rank.get(name, len(order)):
                        at = i + 1
                merged.insert(at, (name, line))
            log("manifest.tsv: %d row(s) merged, %d row(s) in all" % (len(lines), len(merged)))
    else:
        merged = lines
    with open(path, "w") as f:
        f.write(header)
        for _, line in merged:
            f.write(line)


def make_corpus(out, only=None):
    return make_set(out, SCENARIOS + STATE_SCENARIOS, only)


def make_states(out, only=None):
    """The endpoint-state fixture set: small captures (snaplen 200), no conv.txt."""
    table = {sc[0]: sc for sc in SCENARIOS + STATE_SCENARIOS}
    return make_set(out, [table[n] for n in STATES], only, prefix="st", snap=200, conv=False)


# ---- the project's shipped samples (captures/make.sh) --------------------------------------

def make_samples(out):
    os.makedirs(out, exist_ok=True)
    names = {"c": "ss-client", "s": "ss-server"}

    def one(name, body):
        work = tempfile.mkdtemp(prefix="sample-%s-" % name)
        lab = Lab(names, work)
        lab.cap = None
        cap = os.path.join(out, name + ".pcap")
        try:
            srv = direct(lab)
            body(lab, srv, cap)
            time.sleep(0.3)
            lab.stop(lab.cap, signal.SIGINT)
        finally:
            lab.teardown()
            shutil.rmtree(work, ignore_errors=True)
        log("%-16s %d bytes" % (name, os.path.getsize(cap)))

    def keepalive(lab, srv, cap):
        nginx(lab, "s")
        lab.cap = lab.tcpdump("c", "c0", cap)
        curl(lab, ["http://%s/index.html" % srv, "http://%s/small.txt" % srv,
                   "http://%s/missing" % srv, "http://%s/index.html" % srv])

    def clean_close(lab, srv, cap):
        nginx(lab, "s")
        lab.cap = lab.tcpdump("c", "c0", cap)
        curl(lab, ["http://%s/small.txt" % srv])

    def refused(lab, srv, cap):
        lab.cap = lab.tcpdump("c", "c0", cap)
        c = lab.spawn("c", PEERS + ["cli-connect", "--host", srv, "--port", "81", "--count", "2"], "cli")
        lab.wait(c, 10, "connect client")

    def websocket(lab, srv, cap):
        s = lab.spawn("s", PEERS + ["srv-websocket", "--port", "8080"], "srv")
        wait_listen(lab, "s", 8080)
        lab.cap = lab.tcpdump("c", "c0", cap)
        c = lab.spawn("c", PEERS + ["cli-websocket", "--host", srv, "--port", "8080"], "cli")
        lab.wait(c, 20, "websocket client")
        lab.wait(s, 5, "websocket server")

    def pipelined(lab, srv, cap):
        nginx(lab, "s")
        lab.cap = lab.tcpdump("c", "c0", cap)
        c = lab.spawn("c", PEERS + ["cli-pipelined", "--host", srv, "--port", "80", "--out",
                                    os.path.join(out, "pipelined.app.txt")], "cli")
        lab.wait(c, 20, "pipelined client")

    for name, body in (("http-keepalive", keepalive), ("clean-close", clean_close),
                       ("refused", refused), ("websocket", websocket), ("pipelined", pipelined)):
        one(name, body)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("corpus", "states", "samples"):
        sys.stderr.write("usage: corpus.py corpus|states|samples OUTDIR [SCENARIO...]\n")
        return 2
    if os.geteuid() != 0:
        sys.stderr.write("corpus.py needs root (network namespaces, tcpdump): run it as root\n")
        return 1
    # SIGTERM unwinds like ^C: every lab and the tracefs instance are removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = os.path.abspath(sys.argv[2])
    if sys.argv[1] in ("corpus", "states"):
        make = make_corpus if sys.argv[1] == "corpus" else make_states
        failed = make(out, set(sys.argv[3:]) or None)
        if failed:
            sys.stderr.write("scenarios that failed: %s\n" % " ".join(failed))
            return 1
    else:
        make_samples(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
