//! Live capture from a network interface: [`LiveSource`], a [`FrameSource`] over a Linux
//! `AF_PACKET` socket. (The `statescope live` command that drives it is
//! [`crate::commands::live`].)
//!
//! # Which parts use pnet, and why
//!
//! Interfaces are listed and looked up with `pnet_datalink::interfaces()` (name, index, flags,
//! addresses). The receive path is our own `AF_PACKET` socket through `libc`, because
//! `pnet_datalink` 0.35's channel cannot give what a correct capture needs: it reads one frame
//! per `recvfrom` into a buffer whose overflow it cuts silently (no `MSG_TRUNC`), it throws away
//! the `sockaddr_ll` that says a frame was outgoing (so every `lo` frame arrives twice), and it
//! has no kernel filter, no kernel timestamps and no drop counters. Owning the socket we set:
//!
//! - `SO_ATTACH_FILTER`: the `--port`/`--host`/`--filter` program from [`super::bpf`], attached
//!   before the socket is bound so no unfiltered frame slips in first;
//! - `TPACKET_V3` (`PACKET_VERSION`, `PACKET_RX_RING`, `mmap`): the receive ring, whose frame
//!   headers carry the kernel's receive time in nanoseconds (`SO_TIMESTAMPNS` gives the same
//!   on the copying path, from each message's control data);
//! - `PACKET_IGNORE_OUTGOING` on loopback, where every frame passes twice (out and back in);
//!   `sll_pkttype == PACKET_OUTGOING` is checked as well for kernels without the option;
//! - `PACKET_ADD_MEMBERSHIP`/`PACKET_MR_PROMISC` for `--promisc` (undone by the kernel when the
//!   socket closes);
//! - a 64 MiB ring (or `SO_RCVBUFFORCE` queue) so bursts wait instead of being dropped;
//! - `PACKET_STATISTICS`: the frames the kernel dropped because our queue was full.
//!
//! Frames are read from a `TPACKET_V3` ring shared with the kernel ([`super::ring`]): no copy
//! and no system call per frame, one wake-up per block, like tcpdump. Where the kernel refuses
//! a ring, frames are read in batches with `recvmmsg` (up to [`BATCH`] per call), each into a
//! [`SNAPLEN`]-byte slot, with `MSG_TRUNC` reporting a frame's real length. Either way 64 KiB
//! `lo` frames arrive whole. The socket is non-blocking and waits in `poll` with a short
//! timeout, so Ctrl-C, `--duration` and `--count` are honoured on an idle interface.
//! [`FrameSource::poll_frame`] returns after a given wait even without a frame, so the live
//! view can redraw on its timer.
//!
//! `-i any` (like libpcap's): a `SOCK_DGRAM` socket bound to every interface (index 0). Frames
//! of different interfaces have different link layers, so they arrive without one, each read
//! into its slot after 20 bytes of room where a `LINUX_SLL2` header is written from its
//! `sockaddr_ll` (protocol, interface index, hardware type, packet type, address). The kernel
//! filter sees the packet from its network header, so it is compiled as for raw IP. Outgoing
//! copies are dropped on `lo` only (elsewhere they are real traffic); `any` uses the copying
//! path, not the ring.

use super::filter::Expr;
use super::ring::Ring;
use super::{bpf, CaptureError, Frame, FrameSource, LinkType, Polled, Timestamp};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Bytes kept of each frame (tcpdump's default): more than the largest `lo` frame (64 KiB).
pub const SNAPLEN: u32 = 262_144;
/// Frames read per `recvmmsg` call.
pub const BATCH: usize = 64;
/// The kernel queue we ask for.
const RCVBUF: i32 = 64 << 20;
/// Pause after a short batch (see `next_frame`): at most this much capture latency.
const COALESCE: Duration = Duration::from_micros(500);
/// Longest wait in `poll` before checking the stop conditions again.
const POLL_MS: i32 = 100;
/// The name that captures on every interface (Linux cooked capture, like tcpdump's).
pub const ANY: &str = "any";
/// The Linux cooked capture v2 header put before each frame on "any".
const SLL2_LEN: usize = 20;

// From linux/if_packet.h and linux/if_ether.h; spelled out so the code does not depend on which
// of them the libc crate exports for this target.
const ETH_P_ALL: u16 = 0x0003;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_STATISTICS: i32 = 6;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_FANOUT: i32 = 18;
/// By the kernel's flow hash, which is the same both ways (`__flow_hash_consistentify`).
const PACKET_FANOUT_HASH: u32 = 0;
/// Fragments reassembled before hashing, so a fragmented segment goes where its flow goes.
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const PACKET_OUTGOING: u8 = 4;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_NONE: u16 = 65534;

/// `struct tpacket_stats`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// `struct packet_mreq`.
#[repr(C)]
struct PacketMreq {
    mr_ifindex: i32,
    mr_type: u16,
    mr_alen: u16,
    mr_address: [u8; 8],
}

/// How to open a capture.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Only frames this expression accepts (compiled to a kernel filter).
    pub filter: Option<Expr>,
    /// Put the interface in promiscuous mode.
    pub promisc: bool,
    /// End after this many frames.
    pub count: Option<u64>,
    /// End this long after opening.
    pub duration: Option<Duration>,
    /// Print a one-line status on standard error about twice a second.
    pub status: bool,
    /// Read with `recvmmsg` copies instead of the `TPACKET_V3` ring (the fallback when the
    /// kernel refuses a ring; also for testing that path).
    pub no_ring: bool,
    /// End when this becomes true (for labs capturing in a thread while they make traffic);
    /// SIGINT/SIGTERM end every capture as well, once [`install_stop_signals`] ran.
    pub stop: Option<Arc<AtomicBool>>,
    /// Join this `PACKET_FANOUT` group with the kernel's flow hash (`live --fanout ID`):
    /// the sockets of every process in the group share the interface's frames, each
    /// connection's frames (both directions) going to one of them.
    pub fanout: Option<u16>,
}

/// Counters of a capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    /// Frames handed on (after the filter and the loopback de-duplication).
    pub frames: u64,
    /// Frames the kernel dropped because our queue was full (`PACKET_STATISTICS`).
    pub dropped: u64,
}

pub use super::stop::{install_stop_signals, stop_requested};

/// The link type the interface's frames have on an `AF_PACKET` `SOCK_RAW` socket.
fn link_type(name: &str) -> Result<LinkType, CaptureError> {
    let path = format!("/sys/class/net/{name}/type");
    let arphrd: u16 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| CaptureError::Open {
            path: name.into(),
            what: format!("cannot read the interface's hardware type from {path}"),
        })?;
    match arphrd {
        // Linux `lo` hands packet sockets a 14-byte Ethernet header of zeros.
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Ok(LinkType::ETHERNET),
        ARPHRD_NONE | ARPHRD_RAWIP => Ok(LinkType::RAW),
        other => Err(CaptureError::Open {
            path: name.into(),
            what: format!(
                "hardware type {other} is not supported (Ethernet, loopback and raw-IP \
                 interfaces are)"
            ),
        }),
    }
}

/// One line per interface: name, up/down, addresses.
pub fn describe_interfaces() -> Vec<String> {
    let mut ifaces = pnet_datalink::interfaces();
    ifaces.sort_by_key(|i| i.index);
    let any = format!("{ANY:<16} all interfaces, Linux cooked capture (SLL2)");
    ifaces
        .iter()
        .map(|i| {
            let addrs: Vec<String> = i.ips.iter().map(|n| n.to_string()).collect();
            let mac = i.mac.filter(|m| !m.is_zero()).map(|m| format!(" ({m})"));
            format!(
                "{:<16} {:<4}{}{}{}",
                i.name,
                if i.is_up() { "up" } else { "down" },
                if addrs.is_empty() { "" } else { " " },
                addrs.join(" "),
                mac.unwrap_or_default()
            )
        })
        .chain(std::iter::once(any))
        .collect()
}

fn os_error(iface: &str, what: &str) -> CaptureError {
    CaptureError::Open {
        path: iface.into(),
        what: format!("{what}: {}", io::Error::last_os_error()),
    }
}

/// Set an integer-sized socket option; `Err` carries errno.
fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Frames from a live interface. See the module doc for what the socket is set up to do.
pub struct LiveSource {
    fd: OwnedFd,
    iface: String,
    linktype: LinkType,
    /// Drop `PACKET_OUTGOING` frames of this interface (`lo`): each comes back as an
    /// incoming frame.
    skip_outgoing_on: Option<i32>,
    /// "any": frames arrive without a link-layer header and get an SLL2 one.
    cooked: bool,
    /// The shared-memory ring, or `None` for the copying path below.
    ring: Option<Ring>,
    /// `BATCH` slots of `SNAPLEN` bytes (copying path only).
    buf: Vec<u8>,
    /// Per slot: the sender address (packet type) and control data (timestamp).
    addrs: Vec<libc::sockaddr_ll>,
    cmsgs: Vec<[u64; 8]>,
    /// Per slot: the frame's real length and its kernel timestamp.
    lens: Vec<(usize, Timestamp)>,
    /// Slots filled by the last `recvmmsg`, and the next one to hand out.
    filled: usize,
    next: usize,
    stats: LiveStats,
    opts: LiveOptions,
    started: Instant,
    last_status: Instant,
}

impl LiveSource {
    /// Open interface `iface` for capture.
    pub fn open(iface: &str, opts: LiveOptions) -> Result<LiveSource, CaptureError> {
        let all = pnet_datalink::interfaces();
        // `lo`'s frames pass twice (out and back in): its outgoing copies are dropped.
        let lo_index = all.iter().find(|i| i.is_loopback()).map(|i| i.index as i32);
        let any = iface == ANY;
        let (index, linktype, skip_outgoing_on) = if any {
            if opts.promisc {
                return Err(CaptureError::Open {
                    path: iface.into(),
                    what: "--promisc is not supported on \"any\"; name one interface".into(),
                });
            }
            (0, LinkType::LINUX_SLL2, lo_index)
        } else {
            let Some(ni) = all.iter().find(|i| i.name == iface) else {
                let mut names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
                names.sort();
                return Err(CaptureError::Open {
                    path: iface.into(),
                    what: format!(
                        "no such interface (there are: {}, and \"any\" for all)",
                        names.join(", ")
                    ),
                });
            };
            if !ni.is_up() {
                return Err(CaptureError::Open {
                    path: iface.into(),
                    what: format!(
                        "the interface is down; bring it up with `ip link set {iface} up`"
                    ),
                });
            }
            let skip = ni.is_loopback().then_some(ni.index as i32);
            (ni.index as i32, link_type(iface)?, skip)
        };
        // On "any" the kernel filter sees the packet from its network header (a cooked
        // socket), as on a raw-IP interface.
        let filter_link = if any { LinkType::RAW } else { linktype };
        let program = opts
            .filter
            .as_ref()
            .map(|e| bpf::compile(e, filter_link, SNAPLEN))
            .transpose()
            .map_err(|e| CaptureError::Open {
                path: iface.into(),
                what: e.to_string(),
            })?;

        // Protocol 0 receives nothing until bind: the filter is in place before any frame.
        // "any" mixes link layers, so it reads packets without theirs (SOCK_DGRAM) and each
        // frame gets a Linux cooked (SLL2) header made from its sender address, as libpcap does.
        let kind = if any {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_RAW
        };
        // SAFETY: plain system call; the fd is owned right after.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let what = if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                // The binary's own path: `$(which statescope)` fails when it is not on the
                // PATH (run from target/), and sudo does not search ~/.cargo/bin.
                let exe = std::env::current_exe().map_or_else(
                    |_| "$(command -v statescope)".into(),
                    |p| p.display().to_string(),
                );
                format!(
                    "capturing needs root or the CAP_NET_RAW capability: run `sudo {exe} ...`, \
                     or once `sudo setcap cap_net_raw,cap_net_admin+eip {exe}`"
                )
            } else {
                format!("cannot open a packet socket: {e}")
            };
            return Err(CaptureError::Open {
                path: iface.into(),
                what,
            });
        }
        // SAFETY: `raw` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();

        if let Some(prog) = &program {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            setsockopt(s, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
                .map_err(|_| os_error(iface, "the kernel refused the capture filter"))?;
        }
        setsockopt(s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1i32)
            .map_err(|_| os_error(iface, "cannot turn on kernel timestamps"))?;
        // FORCE lifts the rmem_max limit (needs CAP_NET_ADMIN); otherwise take what is allowed.
        if setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF).is_err() {
            let _ = setsockopt(s, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF);
        }
        if !any && skip_outgoing_on.is_some() {
            // Kernels before 4.20 lack the option; the packet type check below still applies.
            // (Not on "any": other interfaces' outgoing frames are real traffic.)
            let _ = setsockopt(s, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32);
        }

        // The ring is set up before bind, like the filter. A kernel that refuses it (memory
        // limits) still gives the copying path, which is correct, only slower. "any" takes
        // the copying path, which leaves room for the cooked header before each frame.
        let ring = if opts.no_ring || any {
            None
        } else {
            Ring::new(s).ok()
        };

        // SAFETY: a zeroed sockaddr_ll is valid; we fill the fields bind reads.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = index;
        // SAFETY: `sll` is a valid sockaddr_ll of the size given.
        let r = unsafe {
            libc::bind(
                s,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(os_error(iface, "cannot bind to the interface"));
        }
        if opts.promisc {
            let mreq = PacketMreq {
                mr_ifindex: index,
                mr_type: PACKET_MR_PROMISC,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(s, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)
                .map_err(|_| os_error(iface, "cannot turn on promiscuous mode"))?;
        }
        if let Some(group) = opts.fanout {
            // After bind, as the kernel requires; every member must ask the same mode.
            let arg = u32::from(group) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
            setsockopt(s, libc::SOL_PACKET, PACKET_FANOUT, &arg).map_err(|_| {
                os_error(
                    iface,
                    &format!(
                        "cannot join fanout group {group} (another program uses the id with \
                         another mode or interface? pick another --fanout id)"
                    ),
                )
            })?;
        }

        let mut src = LiveSource {
            fd,
            iface: iface.into(),
            linktype,
            skip_outgoing_on,
            cooked: any,
            buf: if ring.is_some() {
                Vec::new()
            } else {
                vec![0; BATCH * SNAPLEN as usize]
            },
            ring,
            // SAFETY: all-zero is a valid sockaddr_ll.
            addrs: vec![unsafe { mem::zeroed() }; BATCH],
            cmsgs: vec![[0; 8]; BATCH],
            lens: vec![(0, Timestamp(0)); BATCH],
            filled: 0,
            next: 0,
            stats: LiveStats::default(),
            opts,
            started: Instant::now(),
            last_status: Instant::now(),
        };
        // Reading the counters resets them: start from zero.
        src.kernel_stats();
        Ok(src)
    }

    /// The link type of the frames (what a pcap file of them says).
    pub fn linktype(&self) -> LinkType {
        self.linktype
    }

    /// Does the capture read from the shared-memory ring (else from `recvmmsg` copies)?
    pub fn uses_ring(&self) -> bool {
        self.ring.is_some()
    }

    pub fn interface(&self) -> &str {
        &self.iface
    }

    /// Frames handed on and frames the kernel dropped, up to now.
    pub fn stats(&mut self) -> LiveStats {
        self.kernel_stats();
        self.stats
    }

    /// Fold the kernel's counters (reset on every read) into ours.
    fn kernel_stats(&mut self) {
        let mut st = TpacketStats::default();
        let mut len = mem::size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` is a tpacket_stats of `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                &mut st as *mut TpacketStats as *mut libc::c_void,
                &mut len,
            )
        };
        if r == 0 {
            self.stats.dropped += u64::from(st.tp_drops);
        }
    }

    /// Should the capture end now (signal, `--duration`, `--count`)?
    fn done(&self) -> bool {
        stop_requested()
            || self
                .opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            || self.opts.count.is_some_and(|c| self.stats.frames >= c)
            || self
                .opts
                .duration
                .is_some_and(|d| self.started.elapsed() >= d)
    }

    /// Read up to `BATCH` frames without blocking; returns how many (0: none waiting).
    fn receive(&mut self) -> Result<usize, CaptureError> {
        let slot = SNAPLEN as usize;
        // Cooked frames are read after room for their header.
        let head = if self.cooked { SLL2_LEN } else { 0 };
        let base = self.buf.as_mut_ptr();
        let mut iovs: Vec<libc::iovec> = (0..BATCH)
            .map(|i| libc::iovec {
                // SAFETY: slot i lies inside `buf`, and `head` inside the slot.
                iov_base: unsafe { base.add(i * slot + head) } as *mut libc::c_void,
                iov_len: slot - head,
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = (0..BATCH)
            .map(|i| {
                // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the call.
                let mut h: libc::msghdr = unsafe { mem::zeroed() };
                h.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_ll as *mut libc::c_void;
                h.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
                h.msg_controllen = mem::size_of::<[u64; 8]>() as _;
                libc::mmsghdr {
                    msg_hdr: h,
                    msg_len: 0,
                }
            })
            .collect();
        // MSG_TRUNC: msg_len is the frame's real length even when it exceeds the slot.
        // SAFETY: every msghdr points into buffers owned by self or by this frame.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(CaptureError::Other(format!(
                    "{}: reading frames failed: {e}",
                    self.iface
                ))),
            };
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            let ts = timestamp(&m.msg_hdr).unwrap_or_else(now);
            self.lens[i] = (m.msg_len as usize + head, ts);
        }
        if self.cooked {
            for i in 0..n {
                let h = sll2_header(&self.addrs[i]);
                self.buf[i * slot..i * slot + SLL2_LEN].copy_from_slice(&h);
            }
        }
        Ok(n)
    }

    /// Wait until a frame may be ready, at most `POLL_MS` (less when `--duration` ends or
    /// the caller's `deadline` comes sooner).
    fn wait(&mut self, deadline: Option<Instant>) {
        let mut ms = POLL_MS;
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            ms = ms.min(left.as_millis() as i32 + 1);
        }
        if let Some(d) = self.opts.duration {
            let left = d.saturating_sub(self.started.elapsed());
            ms = ms.min(left.as_millis() as i32 + 1);
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd. EINTR (a signal) simply returns early.
        unsafe { libc::poll(&mut pfd, 1, ms) };
    }

    fn status(&mut self, force: bool) {
        if !self.opts.status || (!force && self.last_status.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.last_status = Instant::now();
        let st = self.stats();
        eprint!(
            "\r\x1b[Kcapturing on {}: {} frames, {} dropped by kernel, {:.0} s (Ctrl-C to stop)",
            self.iface,
            st.frames,
            st.dropped,
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Erase the status line (before the final output).
    pub fn clear_status(&self) {
        if self.opts.status {
            eprint!("\r\x1b[K");
        }
    }
}

/// The `DLT_LINUX_SLL2` header of a frame from its sender address (libpcap's `sll2_header`,
/// every field in network byte order).
fn sll2_header(a: &libc::sockaddr_ll) -> [u8; SLL2_LEN] {
    let mut h = [0u8; SLL2_LEN];
    // sll_protocol is kept in network byte order already: its bytes as they lie.
    h[0..2].copy_from_slice(&a.sll_protocol.to_ne_bytes());
    h[4..8].copy_from_slice(&a.sll_ifindex.to_be_bytes());
    h[8..10].copy_from_slice(&a.sll_hatype.to_be_bytes());
    h[10] = a.sll_pkttype;
    h[11] = a.sll_halen.min(8);
    h[12..20].copy_from_slice(&a.sll_addr);
    h
}

/// The kernel's receive time from a message's `SCM_TIMESTAMPNS` control data.
fn timestamp(h: &libc::msghdr) -> Option<Timestamp> {
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                return Some(Timestamp::from_secs_nanos(ts.tv_sec, ts.tv_nsec));
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_secs_nanos(d.as_secs() as i64, d.subsec_nanos().into())
}

/// What [`LiveSource::ready`] found.
enum Ready {
    /// A frame is ready: in the ring (`Ring::current`) or in slot `usize`.
    Frame(Option<usize>),
    Idle,
    End,
}

impl LiveSource {
    /// Move to the next frame, waiting until `deadline` at most (`None`: as long as the
    /// capture runs).
    fn ready(&mut self, deadline: Option<Instant>) -> Result<Ready, CaptureError> {
        loop {
            if self.done() {
                self.status(true);
                return Ok(Ready::End);
            }
            if let Some(ring) = self.ring.as_mut() {
                if ring.advance(self.skip_outgoing_on.is_some()) {
                    self.stats.frames += 1;
                    return Ok(Ready::Frame(None));
                }
            } else {
                while self.next < self.filled {
                    let i = self.next;
                    self.next += 1;
                    let a = &self.addrs[i];
                    if a.sll_pkttype == PACKET_OUTGOING
                        && self.skip_outgoing_on == Some(a.sll_ifindex)
                    {
                        continue;
                    }
                    self.stats.frames += 1;
                    return Ok(Ready::Frame(Some(i)));
                }
                self.status(false);
                // A short batch means we drain faster than frames arrive: pause a moment so
                // the next call reads a full batch, instead of waking (and paying a system
                // call) for every frame or two. The kernel queue holds what arrives meanwhile.
                if self.filled > 0 && self.filled < BATCH {
                    std::thread::sleep(COALESCE);
                }
                self.filled = self.receive()?;
                self.next = 0;
                if self.filled > 0 {
                    continue;
                }
            }
            self.status(false);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Ready::Idle);
            }
            self.wait(deadline);
        }
    }

    /// The frame [`LiveSource::ready`] moved to: in the ring, or in slot `slot`.
    fn frame(&self, slot: Option<usize>) -> Frame<'_> {
        match slot {
            None => {
                let f = self.ring.as_ref().expect("a ring frame").current();
                Frame {
                    number: self.stats.frames,
                    ts: Timestamp::from_secs_nanos(f.sec.into(), f.nsec.into()),
                    linktype: self.linktype,
                    data: f.data,
                    orig_len: f.orig_len,
                }
            }
            Some(i) => {
                let (len, ts) = self.lens[i];
                let slot = SNAPLEN as usize;
                Frame {
                    number: self.stats.frames,
                    ts,
                    linktype: self.linktype,
                    data: &self.buf[i * slot..i * slot + len.min(slot)],
                    orig_len: len as u32,
                }
            }
        }
    }
}

impl FrameSource for LiveSource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        Ok(match self.ready(None)? {
            Ready::Frame(slot) => Some(self.frame(slot)),
            Ready::Idle | Ready::End => None,
        })
    }

    fn poll_frame(&mut self, wait: Duration) -> Result<Polled<'_>, CaptureError> {
        // A wait too long to add to now is a wait without limit (and reads no clock).
        let deadline = if wait == Duration::MAX {
            None
        } else {
            Instant::now().checked_add(wait)
        };
        Ok(match self.ready(deadline)? {
            Ready::Frame(slot) => Polled::Frame(self.frame(slot)),
            Ready::Idle => Polled::Idle,
            Ready::End => Polled::End,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::filter;
    use std::net::UdpSocket;

    /// The cooked header carries the sender address's fields, in network byte order.
    #[test]
    fn sll2_header_from_a_sender_address() {
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut a: libc::sockaddr_ll = unsafe { mem::zeroed() };
        a.sll_protocol = 0x86ddu16.to_be();
        a.sll_ifindex = 0x0102_0304;
        a.sll_hatype = ARPHRD_ETHER;
        a.sll_pkttype = PACKET_OUTGOING;
        a.sll_halen = 6;
        a.sll_addr = [1, 2, 3, 4, 5, 6, 0, 0];
        let h = sll2_header(&a);
        assert_eq!(
            h,
            [0x86, 0xdd, 0, 0, 1, 2, 3, 4, 0, 1, 4, 6, 1, 2, 3, 4, 5, 6, 0, 0]
        );
    }

    /// The kernel's verifier accepts every kind of program the compiler makes.
    #[test]
    fn kernel_accepts_compiled_filters() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: needs root (CAP_NET_RAW)");
            return;
        }
        for e in [
            "tcp",
            "ip6 or ip",
            "port 80",
            "udp src port 53",
            "host ::1 and not host 127.0.0.1",
            "(tcp port 1 or tcp port 2) and dst host 10.0.0.1",
        ] {
            let opts = LiveOptions {
                filter: Some(filter::parse(e).unwrap()),
                ..LiveOptions::default()
            };
            if let Err(err) = LiveSource::open("lo", opts) {
                panic!("{e:?}: {err}");
            }
        }
    }

    /// `--promisc` sets IFF_PROMISC while the capture is open. (Not checked after close:
    /// another capture, tcpdump's by default, may hold the flag too.)
    #[test]
    fn promisc_sets_the_interface_flag() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: needs root (CAP_NET_RAW)");
            return;
        }
        let flags = || {
            let s = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap();
            u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap()
        };
        let opts = LiveOptions {
            promisc: true,
            ..LiveOptions::default()
        };
        let src = LiveSource::open("lo", opts).unwrap();
        assert_ne!(flags() & libc::IFF_PROMISC as u32, 0);
        drop(src);
    }

    /// In-process use, as a lab would: a capture in a thread, stopped by its flag, sees the
    /// datagrams this test sends on `lo` once each, with kernel timestamps.
    #[test]
    fn capture_in_a_thread_stops_on_its_flag() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: needs root (CAP_NET_RAW)");
            return;
        }
        capture_in_a_thread(false);
        capture_in_a_thread(true);
    }

    fn capture_in_a_thread(no_ring: bool) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let mut src = LiveSource::open(
            "lo",
            LiveOptions {
                filter: filter::parse(&format!("udp dst port {port}")).ok(),
                stop: Some(stop.clone()),
                no_ring,
                ..LiveOptions::default()
            },
        )
        .unwrap();
        assert_eq!(src.uses_ring(), !no_ring);
        assert_eq!(src.linktype(), LinkType::ETHERNET);
        let before = now();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            tx.send_to(&[i; 100], ("127.0.0.1", port)).unwrap();
        }
        let capture = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(f) = src.next_frame().unwrap() {
                got.push((f.number, f.ts, f.data.len(), f.data[f.data.len() - 1]));
            }
            (got, src.stats())
        });
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (got, stats) = capture.join().unwrap();
        // 14 Ethernet + 20 IPv4 + 8 UDP + 100 payload; each datagram once, in order.
        let expect: Vec<(u64, usize, u8)> = (0..5).map(|i| (i as u64 + 1, 142, i)).collect();
        let seen: Vec<(u64, usize, u8)> = got.iter().map(|g| (g.0, g.2, g.3)).collect();
        assert_eq!(seen, expect);
        assert!(got.iter().all(|g| g.1 >= before && g.1 <= now()));
        assert_eq!(
            stats,
            LiveStats {
                frames: 5,
                dropped: 0
            }
        );
    }
}
