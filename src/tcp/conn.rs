//! One TCP connection as the observer sees it: both endpoints' state machines, relative
//! sequence numbers, window scaling, Wireshark analysis and Zeek history, per segment.

use super::analysis::{self, ev, Analysis, ConnCtx, Flow, SegView};
use super::history::History;
use super::reassembly::{Chunk, Reassembler};
use super::seq::{ge, Unwrapper};
use super::state::{Event, State};
use super::{Events, UpperState};
use crate::capture::Timestamp;
use crate::decode::{Flags, Segment};
use crate::record::{Addr, ConnRec, Dir, Name, PacketRec, Record, Transition};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Which connections' segments become `packet` records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PacketSel {
    #[default]
    All,
    None,
    /// Connections with an index below `below`, and those listed.
    Some {
        below: u64,
        list: Vec<u64>,
    },
}

impl PacketSel {
    pub fn wants(&self, conn: u64) -> bool {
        match self {
            PacketSel::All => true,
            PacketSel::None => false,
            PacketSel::Some { below, list } => conn < *below || list.contains(&conn),
        }
    }
}

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
    /// ISN of this endpoint's SYN, and the sequence number just after its FIN.
    syn_seq: Option<u32>,
    fin_end: Option<u32>,
    state: State,
    packets: u64,
    bytes: u64,
    flow: Flow,
    reasm: Option<Reassembler>,
    ended: bool,
}

/// A connection: index, the two endpoints (0 = client, 1 = server) and what was seen.
#[derive(Debug)]
pub struct Conn {
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
    transitions: Vec<(u64, u8, State)>,
    gap_bytes: u64,
    /// The layer above's state for this connection (see [`UpperState`]).
    pub upper: UpperState,
}

impl Conn {
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
            transitions: Vec::new(),
            gap_bytes: 0,
            upper: None,
        }
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
        self.ep[0].state.is_closed() && self.ep[1].state.is_closed()
    }

    pub fn state(&self, dir: Dir) -> State {
        self.ep[dir.idx()].state
    }

    fn set_state(&mut self, who: usize, to: State, frame: u64, keep: bool) {
        if self.ep[who].state != to {
            self.ep[who].state = to;
            if keep {
                self.transitions.push((frame, who as u8, to));
            }
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
        events: &mut dyn Events,
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

        // What the sender had sent before this segment, for the unseen-FIN check below.
        let prev_next = self.ep[f].flow.nextseq;

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
        for (i, c) in self.counts.iter_mut().enumerate() {
            *c += (a.bits >> i & 1) as u64;
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

        // Both endpoints' state machines.
        let acceptable_rst = rst && self.rst_acceptable(seg, f, r);
        let acks_syn = ack
            && self.ep[r]
                .syn_seq
                .is_none_or(|s| ge(seg.ack, s.wrapping_add(1)));
        let acks_fin = ack && self.ep[r].fin_end.is_some_and(|e| ge(seg.ack, e));
        let sent = if rst {
            Some(Event::SentRst)
        } else if syn && !ack {
            Some(Event::SentSyn)
        } else if syn {
            Some(Event::SentSynAck)
        } else if fin {
            Some(Event::SentFin {
                acks_peer_fin: acks_fin,
            })
        } else if ack {
            Some(Event::SentAck)
        } else {
            None
        };
        let recv = if rst {
            Some(Event::RecvRst {
                acceptable: acceptable_rst,
            })
        } else if syn && !ack {
            Some(Event::RecvSyn)
        } else if syn {
            Some(Event::RecvSynAck { acks_syn })
        } else if fin {
            Some(Event::RecvFin { acks_syn, acks_fin })
        } else if ack {
            Some(Event::RecvAck { acks_syn, acks_fin })
        } else {
            None
        };
        if syn {
            self.ep[f].syn_seq = Some(seg.seq);
        }
        if fin {
            self.ep[f].fin_end = Some(seg.seq.wrapping_add(seg.len).wrapping_add(1 + syn as u32));
            self.saw_fin = true;
        }
        if rst {
            self.saw_rst = true;
        }
        let keep = cfg.keep_transitions && cfg.emit_packets.wants(self.index);
        // A bare segment one past everything the sender was seen to send reveals a FIN that was
        // lost before the capture point: the sender closed earlier than the capture shows. If
        // it had received the peer's FIN first it would not have had a FIN in flight, so this
        // is the crossing-FINs case (ESTABLISHED -> FIN-WAIT-1, CLOSE-WAIT -> CLOSING).
        if !syn
            && !fin
            && !rst
            && seg.len == 0
            && prev_next != 0
            && self.ep[f].fin_end.is_none()
            && seg.seq == prev_next.wrapping_add(1)
        {
            self.ep[f].fin_end = Some(seg.seq);
            self.saw_fin = true;
            let to = self.ep[f].state.next(Event::SentFin {
                acks_peer_fin: false,
            });
            self.set_state(f, to, frame, keep);
        }
        if let Some(e) = sent {
            let to = self.ep[f].state.next(e);
            self.set_state(f, to, frame, keep);
        }
        if let Some(e) = recv {
            let to = self.ep[r].state.next(e);
            self.set_state(r, to, frame, keep);
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

    /// An RST is acceptable when it is in the receiver's window (RFC 9293 §3.10.7.4), or, in
    /// SYN-SENT, when it acknowledges the SYN (§3.10.7.3).
    fn rst_acceptable(&self, seg: &Segment<'_>, f: usize, r: usize) -> bool {
        let rx = &self.ep[r];
        if rx.state == State::SynSent {
            return seg.flags.ack() && rx.syn_seq.is_some_and(|s| seg.ack == s.wrapping_add(1));
        }
        let rcv_nxt = rx.flow.lastack;
        if rcv_nxt == 0 || rx.flow.window == u32::MAX {
            return true;
        }
        let scale = rx.flow.win_scale.max(0) as u32;
        let wnd = (rx.flow.window << scale).max(1);
        let off = seg.seq.wrapping_sub(rcv_nxt);
        off <= wnd || seg.seq == self.ep[f].flow.nextseq || seg.seq.wrapping_add(1) == rcv_nxt
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
            client_state: Cow::Borrowed(self.ep[0].state.as_str()),
            server_state: Cow::Borrowed(self.ep[1].state.as_str()),
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
        events: &mut dyn Events,
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
                let limit = match ep.fin_end {
                    Some(e) if ge(seg.ack, e) => pos - 1,
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

    fn end_direction(&mut self, who: usize, frame: u64, ts: Timestamp, events: &mut dyn Events) {
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
    pub fn finish(mut self, events: &mut dyn Events) {
        let (frame, ts) = (self.last_frame, self.last_ts);
        if self.ep[0].reasm.is_some() {
            self.end_direction(0, frame, ts, events);
            self.end_direction(1, frame, ts, events);
        }
        let rec = self.summary();
        events.conn_finished(rec, self.upper.take());
    }

    /// Endpoint `i`'s address as text.
    fn addr_text(&self, i: usize) -> String {
        self.ep[i].addr.map(|a| Addr(a).text()).unwrap_or_default()
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
            client: self.addr_text(0).into(),
            server: self.addr_text(1).into(),
            first_ts: self.first_ts.as_secs_f64(),
            last_ts: self.last_ts.as_secs_f64(),
            packets_c2s: self.ep[0].packets,
            packets_s2c: self.ep[1].packets,
            bytes_c2s: self.ep[0].bytes,
            bytes_s2c: self.ep[1].bytes,
            client_state: self.ep[0].state.as_str().into(),
            server_state: self.ep[1].state.as_str().into(),
            conn_state: self.history.conn_state().into(),
            history: self.history.letters().into(),
            http_requests: 0,
            http_responses: 0,
            initial_rtt: (self.irtt_ns > 0).then(|| self.irtt_ns as f64 / 1e9),
            analysis_counts,
            transitions: self
                .transitions
                .iter()
                .map(|&(frame, who, st)| Transition {
                    frame,
                    endpoint: if who == 0 { "client" } else { "server" }.into(),
                    state: st.as_str().into(),
                })
                .collect(),
            gap_bytes: self.gap_bytes,
            ws_frames: 0,
            diagnostics: Vec::new(),
        }
    }
}

/// The names of the set flags, borrowed from a table of all 256 combinations.
fn flag_names(flags: Flags) -> &'static [Name] {
    static LISTS: std::sync::OnceLock<Vec<Vec<Name>>> = std::sync::OnceLock::new();
    &LISTS.get_or_init(|| crate::record::name_subsets(&Flags::NAMES))[flags.0 as usize]
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
