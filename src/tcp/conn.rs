//! One TCP connection as the observer sees it: both endpoints' state machines, relative
//! sequence numbers, window scaling, Wireshark analysis and Zeek history, per segment.

use super::analysis::{self, ev, Analysis, ConnCtx, Flow, SegView};
use super::history::History;
use super::reassembly::{Chunk, Reassembler};
use super::seq::{ge, Seq, Unwrapper};
use super::state::{read_segment, Change, Event, SegFacts, State, View};
use super::Events;
use crate::decode::{Flags, Segment};
use crate::record::{Addr, ConnRec, Name, PacketRec, Record, Transition};
use crate::types::{Dir, PacketSel, Timestamp};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Settings the tracker applies to every connection.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Finish a connection idle this long (capture time, ns).
    pub idle_timeout_ns: i64,
    /// Finish a connection whose both endpoints are closed after this long without packets (ns).
    pub closed_linger_ns: i64,
    /// Which connections get `packet` records (none for the plain summary, which is faster).
    pub emit_packets: PacketSel,
    /// Add the `why` sentences to packet records.
    pub explain: bool,
    /// Reassemble streams and hand them upward (for HTTP and --follow).
    pub reassemble: bool,
    /// Most bytes held out of order per direction.
    pub reassembly_cap: usize,
    /// Keep every endpoint state change on the connection record.
    pub keep_transitions: bool,
    /// Run Wireshark's analysis (off only to measure its cost).
    pub analysis: bool,
    /// Most bytes the connection table, reassembly buffers and the layer above's state may
    /// take together (approximately; see [`super::table`]); `usize::MAX`: no limit.
    pub memory_budget: usize,
    /// Connection indices are `shard.0 + shard.1 * n` for the n-th connection started
    /// (`replay --shard I/N`: indices unique across the N shards); `(0, 1)`: 0, 1, 2, ...
    pub index_shard: (u64, u64),
}

impl TrackerConfig {
    /// Whether connection `index` keeps its state changes for its record (only where its
    /// packet records are wanted too).
    fn keeps_transitions(&self, index: u64) -> bool {
        self.keep_transitions && self.emit_packets.wants(index)
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            idle_timeout_ns: 300_000_000_000,
            closed_linger_ns: 2_000_000_000,
            emit_packets: PacketSel::All,
            explain: false,
            reassemble: true,
            reassembly_cap: 4 << 20,
            keep_transitions: true,
            analysis: true,
            memory_budget: usize::MAX,
            index_shard: (0, 1),
        }
    }
}

/// One endpoint: what it sent, and its inferred state.
#[derive(Debug, Default)]
struct Endpoint {
    addr: Option<SocketAddr>,
    /// Relative-number base of what this endpoint sends (Wireshark's `base_seq`).
    base: Option<u32>,
    unwrap: Unwrapper,
    /// What the state machine knows of this endpoint (state, ISN, FIN, what it sent and
    /// acknowledged), kept apart from the analysis so states never depend on it.
    view: View,
    packets: u64,
    bytes: u64,
    flow: Flow,
    reasm: Option<Reassembler>,
    ended: bool,
}

/// Transitions of a connection opened and closed the usual way, both endpoints' (SYN_SENT,
/// SYN_RECEIVED, ESTABLISHED twice, FIN_WAIT_1, CLOSE_WAIT, LAST_ACK or FIN_WAIT_2, TIME_WAIT,
/// CLOSED).
const TYPICAL_STEPS: usize = 10;

/// One endpoint's state change: at `frame`, endpoint `who` (0 client, 1 server) entered
/// `state`; `inferred` names a change shown only indirectly (by a reply, or by numbers after
/// a segment the capture missed).
#[derive(Debug, Clone, Copy)]
struct Step {
    frame: u64,
    who: u8,
    state: State,
    inferred: Option<Inferred>,
}

/// Why a change was inferred rather than seen: a byte in each kept [`Step`] (16 bytes a step
/// rather than 32 with the text's pointer; a connection keeps ten or so, issue 26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inferred {
    FinAcked,
    FinBySeq,
    BySynAck,
    /// No handshake in view: the endpoint was synchronized before the capture began, and the
    /// frame only shows it.
    Midstream,
    /// The same, in a record that continues one evicted for idleness (the handshake is in
    /// that earlier record).
    Resumed,
    /// A SYN was seen but not the rest of the handshake: the ACKs show the endpoint
    /// synchronized, not when it became so.
    PartHandshake,
}

const _: () = assert!(std::mem::size_of::<Step>() == 16);

impl Inferred {
    fn why(self) -> &'static str {
        match self {
            Inferred::FinAcked => "FIN not captured: acknowledged by the peer",
            Inferred::FinBySeq => "FIN not captured: shown by the next sequence number",
            Inferred::BySynAck => "shown by the SYN-ACK",
            Inferred::Midstream => {
                "no handshake captured: its ACKs show it synchronized before the capture began"
            }
            Inferred::Resumed => {
                "continued after an idle eviction: its ACKs show it still synchronized"
            }
            Inferred::PartHandshake => {
                "handshake only partly captured: the ACKs show it synchronized"
            }
        }
    }
}

/// An open connection as it stands, for displays that refresh while capturing
/// ([`super::Tracker::open_now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenConn {
    pub conn: u64,
    pub client: Option<SocketAddr>,
    pub server: Option<SocketAddr>,
    /// Both ways.
    pub packets: u64,
    /// Payload bytes, both ways.
    pub bytes: u64,
    pub client_state: State,
    pub server_state: State,
    /// Capture time of its latest segment.
    pub last_ts: Timestamp,
    /// No SYN or SYN-ACK seen (and not continuing a connection that had one): the client is
    /// only the sender of the first segment seen, and ESTABLISHED only what ACKs show.
    pub no_handshake: bool,
}

impl OpenConn {
    /// Both endpoints are done (CLOSED or TIME_WAIT): only a new SYN changes it now.
    pub fn closed(&self) -> bool {
        self.client_state.is_closed() && self.server_state.is_closed()
    }
}

/// A connection: index, the two endpoints (0 = client, 1 = server) and what was seen.
#[derive(Debug)]
pub struct Conn<U = ()> {
    pub index: u64,
    ep: [Endpoint; 2],
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    last_frame: u64,
    /// Time of the most recent pure SYN, and the handshake RTT once known.
    mru_syn: Option<Timestamp>,
    irtt_ns: i64,
    pub saw_fin: bool,
    pub saw_rst: bool,
    history: History,
    counts: [u64; 14],
    transitions: Vec<Step>,
    gap_bytes: u64,
    /// The tunnel it runs in (0: none; see [`crate::decode::tunnel_path`]).
    pub tunnel: u64,
    /// Why the tracker finished it before it ended: "idle" or "memory" (the `conn` record's
    /// `evicted`).
    pub evicted: Option<&'static str>,
    /// It continues a connection evicted for idleness (same index; the `conn` record's
    /// `resumed`).
    pub resumed: bool,
    /// Its footprint when last counted against the memory budget (see [`super::table`]).
    pub(super) counted: usize,
    /// The layer above's state for this connection (see [`Events`]).
    pub upper: U,
}

/// What an idle-evicted connection leaves behind so that, if its 5-tuple continues without a
/// SYN, the continuation is the same connection (tshark keeps one `tcp.stream`): its index,
/// which side was the client, and the numbers that make relative sequence numbers and windows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tomb {
    pub index: u64,
    pub client: SocketAddr,
    base: [Option<u32>; 2],
    win_scale: [i8; 2],
}

impl<U: Default> Conn<U> {
    /// What to keep of this connection once it is evicted for idleness.
    pub(super) fn tomb(&self) -> Option<Tomb> {
        Some(Tomb {
            index: self.index,
            client: self.ep[0].addr?,
            base: [self.ep[0].base, self.ep[1].base],
            win_scale: [self.ep[0].flow.win_scale, self.ep[1].flow.win_scale],
        })
    }

    /// Continue an evicted connection: its relative-number bases and window scales.
    pub(super) fn resume(&mut self, t: &Tomb) {
        for i in 0..2 {
            if let Some(b) = t.base[i] {
                self.ep[i].base = Some(b);
                self.ep[i].unwrap = Unwrapper::new(b);
            }
            self.ep[i].flow.win_scale = t.win_scale[i];
        }
        self.resumed = true;
    }

    /// A new connection whose client is `client`.
    pub fn new(
        index: u64,
        client: SocketAddr,
        server: SocketAddr,
        ts: Timestamp,
        cfg: &TrackerConfig,
    ) -> Self {
        let mk = |addr| Endpoint {
            addr: Some(addr),
            reasm: cfg.reassemble.then(|| Reassembler::new(cfg.reassembly_cap)),
            ..Default::default()
        };
        Conn {
            index,
            ep: [mk(client), mk(server)],
            first_ts: ts,
            last_ts: ts,
            last_frame: 0,
            mru_syn: None,
            irtt_ns: 0,
            saw_fin: false,
            saw_rst: false,
            history: History::default(),
            counts: [0; 14],
            // A whole handshake and close is nine or ten steps: room for them at once rather
            // than growing 4 -> 8 -> 16 (three allocations a connection, 1% of a JSON-lines
            // run), and `settle` then has little or nothing to give back.
            transitions: if cfg.keeps_transitions(index) {
                Vec::with_capacity(TYPICAL_STEPS)
            } else {
                Vec::new()
            },
            gap_bytes: 0,
            tunnel: 0,
            evicted: None,
            resumed: false,
            counted: 0,
            upper: U::default(),
        }
    }

    /// First to go under memory pressure (conntrack's early drop, Zeek's "unreplied"): a
    /// handshake not completed, one side never heard from, or both endpoints closed already.
    pub fn expendable(&self) -> bool {
        let [c, s] = &self.ep;
        c.packets == 0
            || s.packets == 0
            || matches!(c.view.state, State::SynSent | State::SynReceived)
            || matches!(s.view.state, State::SynSent | State::SynReceived)
            || self.both_closed()
    }

    /// Bytes held out of order for reassembly, both directions.
    pub fn reassembly_held(&self) -> usize {
        self.ep
            .iter()
            .filter_map(|e| e.reasm.as_ref())
            .map(Reassembler::held)
            .sum()
    }

    /// Memory pressure: give up every hole in both directions and deliver what was held, at
    /// the last segment's frame and time. Returns the bytes given up as gaps.
    pub fn release_reassembly(&mut self, events: &mut dyn Events<U>) -> u64 {
        let (index, frame, ts) = (self.index, self.last_frame, self.last_ts);
        let mut given_up = 0;
        for (who, d) in [(0, Dir::C2s), (1, Dir::S2c)] {
            let Some(ra) = self.ep[who].reasm.as_mut() else {
                continue;
            };
            given_up += ra.release(&mut |c| events.chunk(index, &mut self.upper, d, c, frame, ts));
        }
        self.gap_bytes += given_up;
        given_up
    }

    /// Direction of a segment sent from `src`.
    pub fn dir_of(&self, src: SocketAddr) -> Dir {
        if self.ep[0].addr == Some(src) {
            Dir::C2s
        } else {
            Dir::S2c
        }
    }

    /// The relative-number base of what the sender in `dir` sends, if set.
    pub fn base(&self, dir: Dir) -> Option<u32> {
        self.ep[dir.idx()].base
    }

    /// Both endpoints are done (CLOSED or TIME_WAIT).
    pub fn both_closed(&self) -> bool {
        self.ep[0].view.state.is_closed() && self.ep[1].view.state.is_closed()
    }

    pub fn state(&self, dir: Dir) -> State {
        self.ep[dir.idx()].view.state
    }

    /// Apply `ev` to endpoint `who`, keeping the change (when `keep`) at `frame`.
    fn apply(&mut self, who: usize, ev: Event, at: Placed) {
        let from = self.ep[who].view.state;
        match from.step(ev) {
            Change::Stay => {}
            Change::To(to) => {
                if to == State::Established && matches!(ev, Event::RecvSynAck { .. }) {
                    self.ep[who].view.quiet_since_synack = true;
                }
                // An ACK from or to an endpoint nothing had decided shows it synchronized, not
                // when it became so: that was before anything in view (a FIN, an RST, a SYN or
                // a SYN-ACK, by contrast, is a change at its own frame).
                let at = match (from, ev) {
                    (State::Unknown, Event::SentAck | Event::RecvAck { .. })
                        if at.inferred.is_none() =>
                    {
                        at.inferred(if self.resumed {
                            Inferred::Resumed
                        } else if self.syn_seen() {
                            Inferred::PartHandshake
                        } else {
                            Inferred::Midstream
                        })
                    }
                    _ => at,
                };
                self.enter(who, to, at);
            }
            Change::Withdraw => self.withdraw(who, at),
            Change::Redo(path) => {
                self.withdraw(who, at);
                for &to in path {
                    self.enter(who, to, at);
                }
            }
        }
    }

    /// Take back endpoint `who`'s last change: the state before it, and its kept record.
    fn withdraw(&mut self, who: usize, at: Placed) {
        let v = &mut self.ep[who].view;
        let from = std::mem::replace(&mut v.state, v.before);
        if at.keep {
            if let Some(i) = self
                .transitions
                .iter()
                .rposition(|t| t.who as usize == who && t.state == from)
            {
                self.transitions.remove(i);
            }
        }
    }

    fn enter(&mut self, who: usize, to: State, at: Placed) {
        if self.ep[who].view.state != to {
            self.ep[who].view.before = self.ep[who].view.state;
            self.ep[who].view.state = to;
            if at.keep {
                self.transitions.push(Step {
                    frame: at.frame,
                    who: who as u8,
                    state: to,
                    inferred: at.inferred,
                });
            }
            if to.is_closed() && self.ep[1 - who].view.state.is_closed() {
                self.settle();
            }
        }
    }

    /// Both endpoints have just closed: the connection now mostly waits out its linger
    /// ([`TrackerConfig::closed_linger_ns`]), where short connections spend most of their time
    /// in the table. Give back room its vectors grew for and no longer use (issue 26: on a
    /// busy HTTP capture most connections held are these). Nothing they hold changes, so
    /// neither does any record; a late segment grows them again.
    #[cold]
    fn settle(&mut self) {
        self.transitions.shrink_to_fit();
        for e in &mut self.ep {
            e.flow.shrink();
        }
    }

    /// Process one segment sent in direction `dir`.
    pub fn on_segment(
        &mut self,
        seg: &Segment<'_>,
        dir: Dir,
        frame: u64,
        ts: Timestamp,
        cfg: &TrackerConfig,
        events: &mut dyn Events<U>,
    ) {
        let (f, r) = (dir.idx(), dir.reverse().idx());
        let flags = seg.flags;
        let (syn, ack, fin, rst) = (flags.syn(), flags.ack(), flags.fin(), flags.rst());
        self.last_ts = ts;
        self.last_frame = frame;

        // Relative-number bases: the SYN's seq, else the first seq - 1; the reverse base from
        // the first ACK - 1 (Wireshark, "solves bug 1542").
        if self.ep[f].base.is_none() {
            let base = if syn {
                seg.seq
            } else {
                seg.seq.wrapping_sub(1)
            };
            self.ep[f].base = Some(base);
            self.ep[f].unwrap = Unwrapper::new(base);
        }
        if ack && self.ep[r].base.is_none() {
            let base = seg.ack.wrapping_sub(1);
            self.ep[r].base = Some(base);
            self.ep[r].unwrap = Unwrapper::new(base);
        }
        let fbase = self.ep[f].base.unwrap_or(0);
        let rbase = self.ep[r].base.unwrap_or(0);

        // Handshake RTT: first ACK without SYN after a pure SYN.
        if syn && !ack {
            self.mru_syn = Some(ts);
        } else if ack && !syn && self.irtt_ns == 0 {
            if let Some(t) = self.mru_syn {
                self.irtt_ns = (ts.0 - t.0).max(0);
            }
        }

        // Window scaling (RFC 7323): each side's shift comes from its SYN; a SYN-ACK without
        // the option means neither side scales. Shifts over 14 are clamped, as Wireshark does.
        if syn {
            if let Some(s) = seg.options.wscale {
                self.ep[f].flow.win_scale = s.min(14) as i8;
            }
            if let Some(m) = seg.options.mss {
                self.ep[f].flow.mss = m;
            }
            if ack && (self.ep[f].flow.win_scale == -1 || self.ep[r].flow.win_scale == -1) {
                self.ep[f].flow.win_scale = -2;
                self.ep[r].flow.win_scale = -2;
            }
        }
        let win = if syn {
            seg.window as u64
        } else {
            match self.ep[f].flow.win_scale {
                s if s >= 0 => (seg.window as u64) << s,
                _ => seg.window as u64,
            }
        };

        // Wireshark's analysis.
        let cx = ConnCtx {
            irtt_ns: self.irtt_ns,
            fwd_base: fbase,
            rev_base: rbase,
            explain: cfg.explain,
        };
        let view = SegView {
            frame,
            ts,
            seq: seg.seq,
            ack: seg.ack,
            len: seg.len,
            flags,
            window: seg.window,
            sack: seg.options.sack_blocks(),
        };
        let a = if !cfg.analysis {
            Analysis::default()
        } else {
            let [e0, e1] = &mut self.ep;
            let (fw, rv) = if f == 0 {
                (&mut e0.flow, &mut e1.flow)
            } else {
                (&mut e1.flow, &mut e0.flow)
            };
            analysis::analyze(fw, rv, &view, &cx)
        };
        for i in ev::set(a.bits) {
            if let Some(c) = self.counts.get_mut(i) {
                *c += 1;
            }
        }

        // Zeek history.
        self.history
            .on_segment(f, flags, seg.seq, seg.len, seg.window);
        if seg.len > 0 && a.has(ev::RETRANSMISSION) {
            self.history.retransmission(f);
        }
        if a.has(ev::LOST_SEGMENT) {
            self.history.gap(f);
        }

        // Both endpoints' state machines: what the segment means for each (a pure reading of
        // the two views), then each event through the one `match` in `state.rs`.
        let facts = SegFacts {
            seq: Seq(seg.seq),
            ack: ack.then_some(Seq(seg.ack)),
            len: seg.len,
            syn,
            fin,
            rst,
        };
        let reading = read_segment(&self.ep[f].view, &self.ep[r].view, &facts);
        let keep = cfg.keeps_transitions(self.index);
        let here = Placed {
            frame,
            keep,
            inferred: None,
        };
        if let Some((rx_ev, tx_ev)) = reading.receiver_lost_fin {
            let fin_end = self.ep[r].view.snd_nxt.map(|n| n.plus(1));
            self.ep[r].view.fin_end = fin_end;
            self.saw_fin = true;
            let at = here.inferred(Inferred::FinAcked);
            self.apply(r, rx_ev, at);
            self.apply(f, tx_ev, at);
        }
        if let Some((tx_ev, rx_ev)) = reading.sender_lost_fin {
            self.ep[f].view.fin_end = Some(facts.seq);
            self.saw_fin = true;
            let at = here.inferred(Inferred::FinBySeq);
            self.apply(f, tx_ev, at);
            self.apply(r, rx_ev, at);
        }
        if let Some(e) = reading.sent {
            // A passive open shows only in the SYN-ACK; the listener took the SYN it answers.
            let at = match (e, self.ep[f].view.state, self.ep[f].view.syn_unanswered) {
                (Event::SentSynAck, State::Unknown | State::Closed | State::Listen, Some(n)) => {
                    Placed {
                        frame: n,
                        ..here.inferred(Inferred::BySynAck)
                    }
                }
                _ => here,
            };
            self.apply(f, e, at);
        }
        if reading.receiver_takes_syn {
            self.apply(r, Event::RecvSyn, here);
        }
        if let Some(e) = reading.recv {
            self.apply(r, e, here);
        }

        // What each side is now known to have sent and received.
        {
            let v = &mut self.ep[f].view;
            if syn {
                v.iss = Some(facts.seq);
            }
            let end = facts.end();
            v.snd_nxt = Some(v.snd_nxt.map_or(end, |n| n.max(end)));
            if fin {
                v.fin_end = Some(end);
            }
            if let Some(a) = facts.ack {
                v.rcv_nxt = Some(v.rcv_nxt.map_or(a, |n| n.max(a)));
                v.rcv_wnd = win.min(u32::MAX as u64) as u32;
                v.syn_unanswered = None;
            }
            if rst {
                v.syn_unanswered = None;
            }
            v.quiet_since_synack &= reading.sent.is_none();
        }
        if syn && !ack {
            self.ep[r].view.syn_unanswered = Some(frame);
        }
        if fin {
            self.saw_fin = true;
        }
        if rst {
            self.saw_rst = true;
        }

        self.ep[f].packets += 1;
        self.ep[f].bytes += seg.len as u64;

        if cfg.emit_packets.wants(self.index) {
            events.record(Record::Packet(
                self.packet_record(seg, dir, frame, ts, win, &a),
            ));
        }

        if cfg.reassemble {
            self.reassemble(seg, dir, frame, ts, events);
        }
    }

    fn packet_record(
        &self,
        seg: &Segment<'_>,
        dir: Dir,
        frame: u64,
        ts: Timestamp,
        win: u64,
        a: &Analysis,
    ) -> PacketRec {
        let (f, r) = (dir.idx(), dir.reverse().idx());
        let addr = |i: usize| Addr(self.ep[i].addr.unwrap_or(Addr::default().0));
        let ack = seg.flags.ack();
        let mut why = BTreeMap::new();
        for (bit, text) in &a.why {
            why.insert(
                ev::NAMES[bit.trailing_zeros() as usize].to_string(),
                text.clone(),
            );
        }
        let likely = if a.has(ev::OUT_OF_ORDER) && a.already_seen {
            Some("retransmission: these bytes were seen before; the handshake RTT at the capture point is smaller than the gap, so Wireshark calls it out-of-order".to_string())
        } else if a.has(ev::RETRANSMISSION) && !a.already_seen && seg.len > 0 {
            Some(
                "the original was lost before the capture point (it was never captured)"
                    .to_string(),
            )
        } else {
            None
        };
        PacketRec {
            frame,
            ts: ts.as_secs_f64(),
            conn: self.index,
            dir,
            src: addr(f),
            dst: addr(r),
            flags: Cow::Borrowed(flag_names(seg.flags)),
            seq: seg.seq.wrapping_sub(self.ep[f].base.unwrap_or(0)),
            ack: ack.then(|| seg.ack.wrapping_sub(self.ep[r].base.unwrap_or(0))),
            seq_raw: seg.seq,
            ack_raw: ack.then_some(seg.ack),
            len: seg.len,
            win,
            analysis: ev::names(a.bits).map(Cow::Borrowed).collect(),
            why,
            likely,
            dup_ack_num: a.dup_ack_num,
            dup_ack_frame: a.dup_ack_frame,
            bytes_in_flight: a.bytes_in_flight,
            ack_rtt: a.ack_rtt,
            acks_frame: a.acks_frame,
            client_state: Cow::Borrowed(self.ep[0].view.state.as_str()),
            server_state: Cow::Borrowed(self.ep[1].view.state.as_str()),
        }
    }

    /// Feed the payload to this direction's reassembler; an ACK beyond what the other direction
    /// delivered marks bytes that were never captured.
    fn reassemble(
        &mut self,
        seg: &Segment<'_>,
        dir: Dir,
        frame: u64,
        ts: Timestamp,
        events: &mut dyn Events<U>,
    ) {
        let (f, r) = (dir.idx(), dir.reverse().idx());
        let index = self.index;
        let mut gaps = 0u64;
        let upper = &mut self.upper;
        let mut deliver = |d: Dir, c: Chunk<'_>, gaps: &mut u64| {
            if let Chunk::Gap(n) = c {
                *gaps += n;
            }
            events.chunk(index, upper, d, c, frame, ts);
        };
        // RFC 1122 §4.2.2.12: a RST's data is a diagnostic, never the application's (tshark
        // dissects none). A receiver that took such a RST gets nothing more, so bytes after it
        // show it was not taken (an injected reset): it ends no stream either.
        let rst_data = seg.flags.rst() && seg.len > 0;
        if seg.len > 0 || seg.flags.syn() {
            let ep = &mut self.ep[f];
            let base = ep.base.unwrap_or(0);
            let start = seg.seq.wrapping_add(seg.flags.syn() as u32);
            let pos = ep.unwrap.unwrap(start) as i64 - ((1i64 << 32) + base as i64);
            if let Some(ra) = ep.reasm.as_mut() {
                if seg.len > 0 && !rst_data {
                    // Bytes before the base (pos < 1) belong to nothing we follow.
                    let skip = (1 - pos).max(0) as u64;
                    if skip < seg.len as u64 {
                        let data = seg.payload.get(skip as usize..).unwrap_or(&[]);
                        ra.push(pos.max(1) as u64, seg.len - skip as u32, data, &mut |c| {
                            deliver(dir, c, &mut gaps)
                        });
                    }
                }
            }
        }
        if seg.flags.ack() {
            let ep = &mut self.ep[r];
            if let (Some(base), Some(ra)) = (ep.base, ep.reasm.as_mut()) {
                let pos = ep.unwrap.peek(seg.ack) as i64 - ((1i64 << 32) + base as i64);
                // The ACK counts the peer's FIN too: never treat that byte as missing data.
                let limit = match ep.view.fin_end {
                    Some(e) if ge(seg.ack, e.0) => pos - 1,
                    _ => pos,
                };
                if limit > ra.next() as i64 {
                    ra.acked(limit as u64, &mut |c| deliver(dir.reverse(), c, &mut gaps));
                }
            }
        }
        self.gap_bytes += gaps;
        if gaps > 0 {
            self.history.gap(f);
        }
        let reset = seg.flags.rst() && !rst_data;
        if seg.flags.fin() || reset {
            self.end_direction(f, frame, ts, events);
            if reset {
                self.end_direction(r, frame, ts, events);
            }
        }
    }

    fn end_direction(&mut self, who: usize, frame: u64, ts: Timestamp, events: &mut dyn Events<U>) {
        let index = self.index;
        let ep = &mut self.ep[who];
        if ep.ended {
            return;
        }
        ep.ended = true;
        let d = if who == 0 { Dir::C2s } else { Dir::S2c };
        let mut gaps = 0;
        if let Some(ra) = ep.reasm.as_mut() {
            ra.finish(&mut |c| {
                if let Chunk::Gap(n) = c {
                    gaps += n;
                }
                events.chunk(index, &mut self.upper, d, c, frame, ts)
            });
        }
        self.gap_bytes += gaps;
        events.end(index, &mut self.upper, d, frame, ts);
    }

    /// Finish the connection: end both directions and hand its summary upward.
    pub fn finish(mut self, events: &mut dyn Events<U>) {
        let (frame, ts) = (self.last_frame, self.last_ts);
        if self.ep[0].reasm.is_some() {
            self.end_direction(0, frame, ts, events);
            self.end_direction(1, frame, ts, events);
        }
        let rec = self.summary();
        events.conn_finished(rec, std::mem::take(&mut self.upper));
    }

    /// Endpoint `i`'s address as text.
    fn addr_text(&self, i: usize) -> Arc<str> {
        self.ep[i]
            .addr
            .map_or_else(|| Arc::from(""), |a| Addr(a).shared_text())
    }

    /// A SYN or SYN-ACK of this record was seen (either side's initial sequence number is
    /// known): its roles come from the handshake, not from who sent first.
    fn syn_seen(&self) -> bool {
        self.ep.iter().any(|e| e.view.iss.is_some())
    }

    /// What a live display shows of the connection now (no allocation; nothing changes).
    pub fn now(&self) -> OpenConn {
        let [c, s] = &self.ep;
        OpenConn {
            conn: self.index,
            client: c.addr,
            server: s.addr,
            packets: c.packets + s.packets,
            bytes: c.bytes + s.bytes,
            client_state: c.view.state,
            server_state: s.view.state,
            last_ts: self.last_ts,
            no_handshake: !self.resumed && !self.syn_seen(),
        }
    }

    /// The `conn` record (HTTP counts are filled in by the engine).
    pub fn summary(&self) -> ConnRec {
        let mut analysis_counts = BTreeMap::new();
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 {
                analysis_counts.insert(ev::NAMES[i].into(), n);
            }
        }
        ConnRec {
            conn: self.index,
            client: self.addr_text(0),
            server: self.addr_text(1),
            first_ts: self.first_ts.as_secs_f64(),
            last_ts: self.last_ts.as_secs_f64(),
            packets_c2s: self.ep[0].packets,
            packets_s2c: self.ep[1].packets,
            bytes_c2s: self.ep[0].bytes,
            bytes_s2c: self.ep[1].bytes,
            client_state: self.ep[0].view.state.as_str().into(),
            server_state: self.ep[1].view.state.as_str().into(),
            conn_state: self.history.conn_state().into(),
            history: self.history.letters().into(),
            http_requests: 0,
            http_responses: 0,
            initial_rtt: (self.irtt_ns > 0).then(|| self.irtt_ns as f64 / 1e9),
            analysis_counts,
            transitions: self
                .transitions
                .iter()
                .map(|t| Transition {
                    frame: t.frame,
                    endpoint: if t.who == 0 { "client" } else { "server" }.into(),
                    state: t.state.as_str().into(),
                    inferred: t.inferred.map(|i| Name::Borrowed(i.why())),
                })
                .collect(),
            gap_bytes: self.gap_bytes,
            evicted: self.evicted.map(Name::Borrowed),
            ws_frames: 0,
            diagnostics: Vec::new(),
            encap: crate::decode::tunnel_path(self.tunnel),
            resumed: self.resumed,
            h2: None,
        }
    }
}

/// Heap bytes of a connection beyond its own struct and what [`Conn::footprint`] counts
/// field by field: the allocator's rounding and the history's letters, calibrated against
/// peak RSS (bench/memory.sh: a SYN flood with no limit, RSS over connections).
const CONN_SLACK: usize = 208;

/// Heap bytes per piece a reassembler holds beyond what its cost counts (the B-tree's slot and
/// the allocator's rounding of the piece's bytes).
const PIECE_SLACK: usize = 48;

impl<U: Default + super::Footprint> Conn<U> {
    /// Approximate heap bytes this connection holds, its own box included: what the tracker
    /// counts against [`TrackerConfig::memory_budget`]. On the path of every segment, so it
    /// reads capacities and counters only, and is inlined there (called, it cost 0.7% more
    /// instructions on the bench capture's summary).
    #[inline(always)]
    pub fn footprint(&self) -> usize {
        let mut n = std::mem::size_of::<Self>()
            + CONN_SLACK
            + self.transitions.capacity() * std::mem::size_of::<Step>()
            + self.upper.footprint();
        for e in &self.ep {
            n += e.flow.heap_bytes();
            if let Some(ra) = &e.reasm {
                n += ra.held() + ra.pieces() * PIECE_SLACK;
            }
        }
        n
    }
}

/// The names of the set flags, borrowed from a table of all 256 combinations.
fn flag_names(flags: Flags) -> &'static [Name] {
    static LISTS: std::sync::OnceLock<Vec<Vec<Name>>> = std::sync::OnceLock::new();
    &LISTS.get_or_init(|| crate::record::name_subsets(&Flags::NAMES))[flags.0 as usize]
}

/// Where a state change is kept: its frame, whether changes are kept at all, and why it was
/// inferred rather than seen.
#[derive(Debug, Clone, Copy)]
struct Placed {
    frame: u64,
    keep: bool,
    inferred: Option<Inferred>,
}

impl Placed {
    fn inferred(self, why: Inferred) -> Placed {
        Placed {
            inferred: Some(why),
            ..self
        }
    }
}

/// Is this a SYN without ACK?
pub fn pure_syn(flags: Flags) -> bool {
    flags.syn() && !flags.ack()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The borrowed table names exactly the flags each combination sets, in the usual order.
    #[test]
    fn flag_names_table_matches_the_flags() {
        for bits in 0..=u8::MAX {
            let from_table: Vec<&str> = flag_names(Flags(bits)).iter().map(|n| &**n).collect();
            let direct: Vec<&str> = Flags(bits).names().collect();
            assert_eq!(from_table, direct, "flags {bits:#04x}");
        }
    }
}

/// The observer fed whole segments, one test per case, grouped by the state the case is about.
#[cfg(test)]
mod observer {
    use super::*;
    use crate::tcp::reassembly::Chunk;
    use State::*;

    struct Quiet;
    impl Events for Quiet {
        fn record(&mut self, _: Record) {}
        fn midstream(&mut self, _: u64, _: &mut ()) {}
        fn chunk(&mut self, _: u64, _: &mut (), _: Dir, _: Chunk<'_>, _: u64, _: Timestamp) {}
        fn end(&mut self, _: u64, _: &mut (), _: Dir, _: u64, _: Timestamp) {}
        fn conn_finished(&mut self, _: ConnRec, _: ()) {}
    }

    const C: &str = "10.0.0.1:40000";
    const S: &str = "10.0.0.2:80";
    const SYN: u8 = Flags::SYN;
    const ACK: u8 = Flags::ACK;
    const FIN: u8 = Flags::FIN | Flags::ACK;
    const RST: u8 = Flags::RST;
    const RST_ACK: u8 = Flags::RST | Flags::ACK;
    /// Client and server initial sequence numbers.
    const CI: u32 = 1000;
    const SI: u32 = 5000;

    struct Drive {
        conn: Conn,
        cfg: TrackerConfig,
        frame: u64,
    }

    impl Drive {
        fn new() -> Drive {
            let cfg = TrackerConfig::default();
            Drive {
                conn: Conn::new(
                    0,
                    C.parse().unwrap(),
                    S.parse().unwrap(),
                    Timestamp(0),
                    &cfg,
                ),
                cfg,
                frame: 0,
            }
        }

        /// Feed one segment from the client (`c2s`) or the server; both states after it.
        fn seg(&mut self, c2s: bool, flags: u8, seq: u32, ack: u32, len: u32) -> (State, State) {
            let (src, dst) = if c2s { (C, S) } else { (S, C) };
            let s = Segment::for_test(src, dst, flags, seq, ack, len);
            self.frame += 1;
            let dir = if c2s { Dir::C2s } else { Dir::S2c };
            let ts = Timestamp(self.frame as i64 * 1000);
            self.conn
                .on_segment(&s, dir, self.frame, ts, &self.cfg, &mut Quiet);
            (self.conn.state(Dir::C2s), self.conn.state(Dir::S2c))
        }
        fn c(&mut self, flags: u8, seq: u32, ack: u32) -> (State, State) {
            self.seg(true, flags, seq, ack, 0)
        }
        fn s(&mut self, flags: u8, seq: u32, ack: u32) -> (State, State) {
            self.seg(false, flags, seq, ack, 0)
        }
        /// SYN, SYN-ACK, ACK: both ESTABLISHED.
        fn open() -> Drive {
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            d.s(SYN | ACK, SI, CI + 1);
            assert_eq!(d.c(ACK, CI + 1, SI + 1), (Established, Established));
            d
        }
        /// One endpoint's (frame, state, inferred) changes.
        fn changes(&self, who: &str) -> Vec<(u64, &'static str, bool)> {
            self.conn
                .summary()
                .transitions
                .iter()
                .filter(|t| t.endpoint == who)
                .map(|t| {
                    let st = State::from_name(&t.state).unwrap();
                    (t.frame, st.as_str(), t.inferred.is_some())
                })
                .collect()
        }
        fn states(&self, who: &str) -> Vec<&'static str> {
            self.changes(who).into_iter().map(|c| c.1).collect()
        }
    }

    mod listen_or_closed {
        use super::*;

        #[test]
        fn an_unanswered_syn_leaves_the_server_unknown() {
            let mut d = Drive::new();
            assert_eq!(d.c(SYN, CI, 0), (SynSent, Unknown));
            assert_eq!(d.c(SYN, CI, 0), (SynSent, Unknown));
            assert!(d.states("server").is_empty());
        }

        #[test]
        fn a_refused_syn_never_makes_syn_received() {
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            assert_eq!(d.s(RST_ACK, 0, CI + 1), (Closed, Closed));
            assert_eq!(d.states("server"), ["CLOSED"]);
            assert_eq!(d.states("client"), ["SYN_SENT", "CLOSED"]);
        }

        #[test]
        fn a_passive_open_is_placed_at_the_syn_it_answers() {
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            d.c(SYN, CI, 0); // retransmitted: the SYN-ACK answers this one
            assert_eq!(d.s(SYN | ACK, SI, CI + 1), (Established, SynReceived));
            assert_eq!(d.changes("server"), [(2, "SYN_RECEIVED", true)]);
        }
    }

    mod syn_sent {
        use super::*;

        #[test]
        fn a_syn_ack_answered_by_rst_without_ack_never_was_established() {
            // The client gave up before the SYN-ACK came: its kernel answers for no connection.
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            d.s(SYN | ACK, SI, CI + 1);
            assert_eq!(d.c(RST, CI + 1, 0), (Closed, Closed));
            assert_eq!(d.states("client"), ["SYN_SENT", "CLOSED"]);
        }

        #[test]
        fn an_rst_that_does_not_ack_the_syn_is_dropped() {
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            assert_eq!(d.s(RST_ACK, 0, CI + 7), (SynSent, Closed));
        }

        #[test]
        fn simultaneous_open_goes_through_syn_received_on_both_sides() {
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            // The server's SYN crossed the client's: it had not received it.
            assert_eq!(d.s(SYN, SI, 0), (SynReceived, SynSent));
            d.c(SYN | ACK, CI, SI + 1);
            assert_eq!(d.s(SYN | ACK, SI, CI + 1), (Established, Established));
            for who in ["client", "server"] {
                assert_eq!(d.states(who), ["SYN_SENT", "SYN_RECEIVED", "ESTABLISHED"]);
            }
        }
    }

    /// Picked up without a handshake: the states an endpoint's ACKs show are marked as shown,
    /// not seen entered; what happens in view is not.
    mod midstream {
        use super::*;

        #[test]
        fn acks_show_both_ends_synchronized_as_inferred() {
            let mut d = Drive::new();
            assert_eq!(
                d.seg(true, ACK, CI + 1, SI + 1, 100),
                (Established, Established)
            );
            assert_eq!(d.changes("client"), [(1, "ESTABLISHED", true)]);
            assert_eq!(d.changes("server"), [(1, "ESTABLISHED", true)]);
            let why = d.conn.summary().transitions[0].inferred.clone().unwrap();
            assert!(why.contains("no handshake captured"), "{why}");
            assert!(d.conn.now().no_handshake, "the live view marks it");
        }

        #[test]
        fn a_fin_in_view_is_seen_though_the_handshake_was_not() {
            let mut d = Drive::new();
            d.c(ACK, CI + 1, SI + 1);
            assert_eq!(d.s(FIN, SI + 1, CI + 1), (CloseWait, FinWait1));
            assert_eq!(
                d.changes("server"),
                [(1, "ESTABLISHED", true), (2, "FIN_WAIT_1", false)]
            );
            assert_eq!(
                d.changes("client"),
                [(1, "ESTABLISHED", true), (2, "CLOSE_WAIT", false)]
            );
        }

        /// A SYN seen but not its SYN-ACK: the server's ESTABLISHED, shown by the client's
        /// ACK, is inferred, and says the handshake was only partly captured.
        #[test]
        fn a_missing_syn_ack_leaves_the_server_established_by_inference() {
            let mut d = Drive::new();
            d.c(SYN, CI, 0);
            assert_eq!(d.c(ACK, CI + 1, SI + 1), (Established, Established));
            assert_eq!(d.changes("server"), [(2, "ESTABLISHED", true)]);
            let why = d.conn.summary().transitions;
            let why = why.iter().find(|t| t.endpoint == "server").unwrap();
            let why = why.inferred.as_deref().unwrap();
            assert!(why.contains("partly captured"), "{why}");
            assert!(!d.conn.now().no_handshake);
        }

        #[test]
        fn a_first_fin_from_an_unknown_end_is_seen() {
            let mut d = Drive::new();
            assert_eq!(d.c(FIN, CI + 1, SI + 1), (FinWait1, CloseWait));
            assert_eq!(d.changes("client"), [(1, "FIN_WAIT_1", false)]);
            assert_eq!(d.changes("server"), [(1, "CLOSE_WAIT", false)]);
        }

        /// Control: with the handshake in view, ESTABLISHED is seen (only the passive open,
        /// placed at the SYN, is shown by the SYN-ACK).
        #[test]
        fn a_captured_handshake_is_seen() {
            let d = Drive::open();
            assert!(!d.conn.now().no_handshake);
            // A SYN-ACK alone names the server too.
            let mut synack_only = Drive::new();
            synack_only.s(SYN | ACK, SI, CI + 1);
            assert!(!synack_only.conn.now().no_handshake);
            assert_eq!(
                d.changes("client"),
                [(1, "SYN_SENT", false), (2, "ESTABLISHED", false)]
            );
            assert_eq!(
                d.changes("server"),
                [(1, "SYN_RECEIVED", true), (3, "ESTABLISHED", false)]
            );
        }
    }

    mod established {
        use super::*;

        #[test]
        fn an_rst_outside_the_window_is_dropped() {
            let mut d = Drive::open();
            assert_eq!(
                d.s(RST, SI + 1 + 1_000_000_000, 0),
                (Established, Established)
            );
            assert_eq!(d.s(RST, SI + 1 + 70_000, 0), (Established, Established));
        }

        #[test]
        fn an_rst_in_the_window_but_not_exact_draws_a_challenge_ack() {
            let mut d = Drive::open();
            assert_eq!(d.s(RST, SI + 1 + 100, 0), (Established, Established));
        }

        #[test]
        fn an_exact_rst_resets() {
            let mut d = Drive::open();
            assert_eq!(d.s(RST_ACK, SI + 1, CI + 1), (Closed, Closed));
        }

        #[test]
        fn an_rst_its_sender_did_not_send_is_withdrawn_when_it_goes_on() {
            let mut d = Drive::open();
            // Exact, from the client's address: the server is reset.
            assert_eq!(d.c(RST, CI + 1, 0), (Closed, Closed));
            // The client goes on: the RST was not its own.
            assert_eq!(d.c(ACK, CI + 1, SI + 1), (Established, Closed));
            // The server, with no connection, answers with an RST at the ACK it was sent.
            assert_eq!(d.s(RST, SI + 1, 0), (Closed, Closed));
            assert_eq!(d.states("client"), ["SYN_SENT", "ESTABLISHED", "CLOSED"]);
            assert_eq!(d.changes("client")[2].0, 6);
        }

        #[test]
        fn a_syn_in_a_synchronized_state_changes_nothing() {
            let mut d = Drive::open();
            assert_eq!(d.c(SYN, CI + 50, 0).1, Established);
        }
    }

    mod closing {
        use super::*;

        #[test]
        fn a_fin_lost_before_the_tap_shows_in_the_peer_ack() {
            let mut d = Drive::open();
            // The client's FIN (seq CI+1) was never captured; the server acknowledges it.
            assert_eq!(d.s(ACK, SI + 1, CI + 2), (FinWait2, CloseWait));
            assert_eq!(d.s(FIN, SI + 1, CI + 2), (TimeWait, LastAck));
            assert_eq!(d.c(ACK, CI + 2, SI + 2), (TimeWait, Closed));
            assert_eq!(
                d.changes("client")[2..],
                [
                    (4, "FIN_WAIT_1", true),
                    (4, "FIN_WAIT_2", false),
                    (5, "TIME_WAIT", false)
                ]
            );
            assert_eq!(
                d.states("server"),
                [
                    "SYN_RECEIVED",
                    "ESTABLISHED",
                    "CLOSE_WAIT",
                    "LAST_ACK",
                    "CLOSED"
                ]
            );
        }

        #[test]
        fn a_lost_fin_acknowledged_by_the_peer_fin_is_not_a_crossing() {
            let mut d = Drive::open();
            assert_eq!(d.s(FIN, SI + 1, CI + 2), (TimeWait, LastAck));
            assert_eq!(d.c(ACK, CI + 2, SI + 2), (TimeWait, Closed));
        }

        #[test]
        fn crossing_fins_go_through_closing_never_close_wait() {
            let mut d = Drive::open();
            d.c(FIN, CI + 1, SI + 1);
            // The server's FIN does not acknowledge the client's: sent before it arrived.
            assert_eq!(d.s(FIN, SI + 1, CI + 1), (Closing, Closing));
            d.c(ACK, CI + 2, SI + 2);
            assert_eq!(d.s(ACK, SI + 2, CI + 2), (TimeWait, TimeWait));
            let want = ["ESTABLISHED", "FIN_WAIT_1", "CLOSING", "TIME_WAIT"];
            assert_eq!(d.states("server")[1..], want);
            assert_eq!(d.states("client")[1..], want);
        }

        #[test]
        fn a_half_close_holds_fin_wait_2_and_close_wait() {
            let mut d = Drive::open();
            d.c(FIN, CI + 1, SI + 1);
            assert_eq!(d.s(ACK, SI + 1, CI + 2), (FinWait2, CloseWait));
            assert_eq!(
                d.seg(false, ACK, SI + 1, CI + 2, 100),
                (FinWait2, CloseWait)
            );
            assert_eq!(d.s(FIN, SI + 101, CI + 2), (TimeWait, LastAck));
            assert_eq!(d.c(ACK, CI + 2, SI + 102), (TimeWait, Closed));
        }
    }
}
