//! One endpoint's RFC 9293 state, inferred by an observer at the capture point.
//!
//! Two pieces, both pure:
//! - [`read_segment`]: from what the observer knows of a segment's sender and receiver
//!   ([`View`]) and the segment itself ([`SegFacts`]), the events of the state machine for each
//!   side ([`Reading`]). It does not look at Wireshark's analysis: the states are the same with
//!   or without it.
//! - [`State::step`]: every transition, in one `match`. Besides the RFC's own arrows it holds
//!   what an observer has to decide that an endpoint does not: whether an RST would be taken
//!   (exact, in the window, outside: RFC 9293 §3.10.7.4 with RFC 5961 §3, as Linux does), that a
//!   SYN reaching a closed or listening endpoint changes nothing *visible* until its reply shows
//!   whether anybody listened, and that a FIN missing from the capture can show later in the
//!   sequence numbers.
//!
//! The observer sees a segment once, somewhere between its sender and its receiver, so it applies
//! "sent X" to the sender and "received X" to the receiver at the same frame. Where a later
//! segment shows that its sender had *not* yet received something the observer already applied
//! (crossing FINs, a SYN-ACK reaching a client that had already given up), [`Change::Redo`]
//! withdraws that step and follows what the endpoint really knew.

use super::seq::Seq;
use std::fmt;

/// RFC 9293 §3.3.2 connection states, plus `Unknown` for an endpoint nothing has decided yet
/// (a connection picked up midstream, or a server whose SYN drew no answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum State {
    #[default]
    Unknown,
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

/// What one event does to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: the endpoint ignores the segment, or the observer cannot tell yet.
    Stay,
    /// The endpoint enters this state.
    To(State),
    /// The endpoint's last change was applied too early: what caused it had not reached the
    /// endpoint when it sent this segment. Withdraw that change and go through these instead.
    Redo(&'static [State]),
    /// The endpoint's last change was wrongly put down to it (an RST it did not send, since it
    /// goes on sending): withdraw it and return to the state before.
    Withdraw,
}

/// How an RST's sequence number fits the receiver's window (RFC 9293 §3.10.7.4, RFC 5961 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstFit {
    /// `SEG.SEQ == RCV.NXT` (or, in SYN-SENT, an ACK of the SYN): the connection is reset.
    Exact,
    /// Inside the window but not exact: the receiver sends a challenge ACK and carries on.
    InWindow,
    /// Outside the window: dropped without a word.
    Outside,
}

impl State {
    /// Every state, in the order declared.
    pub const ALL: [State; 12] = [
        State::Unknown,
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// The state spelled `name` in the contract (`SYN_SENT`, …).
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The contract's spelling: `SYN_SENT`, `TIME_WAIT`, …
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "UNKNOWN",
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT_1",
            State::FinWait2 => "FIN_WAIT_2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
        }
    }

    /// Is the endpoint done with this connection (nothing more will change it but a new SYN)?
    pub fn is_closed(self) -> bool {
        matches!(self, State::Closed | State::TimeWait)
    }

    /// Has the endpoint synchronized sequence numbers with its peer (RFC 9293 §3.3.2)?
    pub fn is_synchronized(self) -> bool {
        matches!(
            self,
            State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
                | State::Closing
                | State::LastAck
                | State::TimeWait
        )
    }

    /// The state after `ev`, ignoring a [`Change::Redo`]'s withdrawal (for tests and callers
    /// that keep no history).
    pub fn next(self, ev: Event) -> State {
        match self.step(ev) {
            Change::Stay => self,
            Change::To(s) => s,
            Change::Redo(path) => path.last().copied().unwrap_or(self),
            Change::Withdraw => self,
        }
    }

    /// Every transition. Unlisted pairs change nothing: the observer saw something (a
    /// retransmission, a stray ACK) that a real endpoint ignores in that state.
    pub fn step(self, ev: Event) -> Change {
        use Change::{Redo, Stay, To, Withdraw};
        use Event::*;
        use State::*;
        match (self, ev) {
            // ---- what the endpoint sends ----
            // Active OPEN: SYN sent (§3.5). From LISTEN it is a simultaneous open.
            (Unknown | Closed | Listen, SentSyn) => To(SynSent),
            // A SYN arrived and the endpoint answers SYN-ACK: passive open (§3.5). The observer
            // learns only now that a listener took the SYN (the caller places the change at it).
            (Unknown | Closed | Listen, SentSynAck) => To(SynReceived),
            // Simultaneous open: having sent a SYN, it answers the peer's SYN (§3.5, fig. 8).
            (SynSent, SentSynAck) => To(SynReceived),
            // Midstream: an endpoint sending ACKs is synchronized (§3.3.2).
            (Unknown, SentAck) => To(Established),
            // It acknowledges the peer's SYN-ACK although that was not captured (§3.10.7.3).
            (SynSent, SentAck) => To(Established),
            // CLOSE: FIN sent from ESTABLISHED or SYN-RECEIVED (§3.10.4).
            (Unknown | Established | SynReceived, SentFin { .. }) => To(FinWait1),
            // CLOSE after the peer's FIN was received: its FIN acknowledges that FIN (§3.10.4).
            (
                CloseWait,
                SentFin {
                    acks_peer_fin: true,
                },
            ) => To(LastAck),
            // A FIN that does not acknowledge the peer's FIN was sent before that FIN arrived:
            // the FINs crossed (§3.6, fig. 13). CLOSE-WAIT was applied too early; the endpoint
            // went ESTABLISHED -> FIN-WAIT-1, and the peer's FIN then makes it CLOSING.
            (
                CloseWait,
                SentFin {
                    acks_peer_fin: false,
                },
            ) => Redo(&[FinWait1, Closing]),
            // An RST without ACK answering a SYN-ACK is what TCP sends for a connection that does
            // not exist (§3.10.7.1): the client had given up before the SYN-ACK arrived, so it
            // never reached ESTABLISHED (the caller sends this only while nothing else was sent).
            (Established, SentRstNoConnection) => Redo(&[Closed]),
            // Abort: an endpoint that sends RST is done with the connection (§3.10.7).
            (_, SentRst | SentRstNoConnection) => To(Closed),
            // An endpoint shown CLOSED by an RST from its address goes on sending on the same
            // connection: that RST was not its own (crafted by a third party, RFC 5961 §1).
            (Closed, SentAck | SentFin { .. }) => Withdraw,
            // An RST carrying a sequence number the sender's TCP would not use (neither its
            // SND.NXT nor the peer's ACK) came from somewhere else: the sender stays as it was.
            (_, SentForeignRst) => Stay,

            // ---- what the endpoint receives ----
            // A SYN reaching a closed or listening endpoint: only its reply tells whether a
            // listener took it (SYN-ACK: SYN-RECEIVED since the SYN) or nobody did (RST), and a
            // SYN dropped before the endpoint draws no reply at all (§3.10.7.1-2).
            (Unknown | Closed | Listen, RecvSyn) => Stay,
            // Simultaneous open: a SYN arrives in SYN-SENT (§3.10.7.3).
            (SynSent, RecvSyn) => To(SynReceived),
            // A SYN in a synchronized state draws a challenge ACK and changes nothing (RFC 9293
            // §3.10.7.4 fourth check, RFC 5961 §4); a new connection on the same ports is the
            // connection table's business.
            (_, RecvSyn) => Stay,
            // SYN-ACK acknowledging our SYN: ESTABLISHED (§3.10.7.3). From UNKNOWN the SYN was
            // not captured.
            (Unknown | SynSent | SynReceived, RecvSynAck { acks_syn: true }) => To(Established),
            // The ACK of our SYN-ACK: ESTABLISHED (§3.10.7.4, fifth check).
            (SynReceived, RecvAck { acks_syn: true, .. }) => To(Established),
            (SynReceived, RecvFin { acks_syn: true, .. }) => To(CloseWait),
            // Midstream: the peer sends ACKs, so this end is synchronized too.
            (Unknown, RecvAck { .. }) => To(Established),
            // The peer's FIN: CLOSE-WAIT (§3.10.7.4, eighth check).
            (Unknown | Established, RecvFin { .. }) => To(CloseWait),
            // Our FIN acknowledged: FIN-WAIT-2.
            (FinWait1, RecvAck { acks_fin: true, .. }) => To(FinWait2),
            // The peer's FIN also ACKs ours: straight to TIME-WAIT.
            (FinWait1, RecvFin { acks_fin: true, .. }) => To(TimeWait),
            // The peer's FIN without ACK of ours: simultaneous close, CLOSING.
            (
                FinWait1,
                RecvFin {
                    acks_fin: false, ..
                },
            ) => To(Closing),
            // The peer's FIN after ours was acknowledged: TIME-WAIT.
            (FinWait2, RecvFin { .. }) => To(TimeWait),
            // CLOSING and our FIN acknowledged: TIME-WAIT.
            (Closing, RecvAck { acks_fin: true, .. } | RecvFin { acks_fin: true, .. }) => {
                To(TimeWait)
            }
            // LAST-ACK and our FIN acknowledged: CLOSED.
            (LastAck, RecvAck { acks_fin: true, .. } | RecvFin { acks_fin: true, .. }) => {
                To(Closed)
            }
            // RST acceptability (§3.10.7). A listener has no connection to reset.
            (Listen, RecvRst { .. }) => Stay,
            // SYN-SENT takes only an RST that acknowledges its SYN (§3.10.7.3).
            (SynSent, RecvRst { fit: RstFit::Exact }) => To(Closed),
            (SynSent, RecvRst { .. }) => Stay,
            // Not yet synchronized (SYN-RECEIVED, or nothing known): any RST in the window.
            (
                Unknown | SynReceived,
                RecvRst {
                    fit: RstFit::Exact | RstFit::InWindow,
                },
            ) => To(Closed),
            // Synchronized: only an exact RST resets; one elsewhere in the window draws a
            // challenge ACK (RFC 5961 §3.2), one outside it is dropped.
            (_, RecvRst { fit: RstFit::Exact }) => To(Closed),
            (_, RecvRst { .. }) => Stay,

            // Everything else — retransmissions, duplicate ACKs, data — changes nothing.
            (_, _) => Stay,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one endpoint did or had done to it by one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// It sent a SYN without ACK.
    SentSyn,
    /// It sent a SYN-ACK.
    SentSynAck,
    /// It sent a segment with ACK and neither SYN, FIN nor RST.
    SentAck,
    /// It sent a FIN; `acks_peer_fin` when the segment's ACK covers the peer's FIN.
    SentFin { acks_peer_fin: bool },
    /// It sent an RST.
    SentRst,
    /// It sent an RST without ACK in answer to a SYN-ACK, having sent nothing since: no
    /// connection existed on its side any more.
    SentRstNoConnection,
    /// An RST came from its address with a sequence number its TCP would not send.
    SentForeignRst,
    /// A SYN without ACK arrived.
    RecvSyn,
    /// A SYN-ACK arrived; `acks_syn` when it acknowledges this endpoint's SYN.
    RecvSynAck { acks_syn: bool },
    /// An ACK arrived (no SYN, FIN, RST).
    RecvAck { acks_syn: bool, acks_fin: bool },
    /// A FIN arrived; whether its ACK covers this endpoint's SYN and FIN.
    RecvFin { acks_syn: bool, acks_fin: bool },
    /// An RST arrived, fitting the receiver's window as `fit`.
    RecvRst { fit: RstFit },
}

/// What the observer knows of one endpoint: enough to judge how it takes a segment.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    pub state: State,
    /// The state before the last change (to withdraw it).
    pub before: State,
    /// Sequence number of its SYN.
    pub iss: Option<Seq>,
    /// One past the highest sequence number it was seen to send (SYN and FIN count one).
    pub snd_nxt: Option<Seq>,
    /// One past its FIN, seen or inferred.
    pub fin_end: Option<Seq>,
    /// The highest acknowledgement it sent: what it had received, by its own word.
    pub rcv_nxt: Option<Seq>,
    /// Its last advertised receive window in bytes (scaled where the scale is known).
    pub rcv_wnd: u32,
    /// Frame of the latest SYN from the peer that this endpoint has not answered yet.
    pub syn_unanswered: Option<u64>,
    /// It reached ESTABLISHED on a SYN-ACK and has sent nothing since.
    pub quiet_since_synack: bool,
}

/// The parts of a segment the state machine reads.
#[derive(Debug, Clone, Copy)]
pub struct SegFacts {
    pub seq: Seq,
    /// The acknowledgement number when ACK is set.
    pub ack: Option<Seq>,
    pub len: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

impl SegFacts {
    /// One past the last sequence number the segment occupies.
    pub fn end(&self) -> Seq {
        self.seq.plus(self.len + self.syn as u32 + self.fin as u32)
    }

    fn acks(&self, s: Option<Seq>) -> bool {
        matches!((self.ack, s), (Some(a), Some(s)) if a >= s)
    }
}

/// The events one segment causes, in the order they are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// A FIN of the *receiver's* that the capture missed, shown by this segment acknowledging
    /// one past everything the receiver was seen to send: (receiver's event, sender's event).
    pub receiver_lost_fin: Option<(Event, Event)>,
    /// A FIN of the *sender's* that the capture missed, shown by this bare segment's sequence
    /// number one past everything it was seen to send: (sender's event, receiver's event).
    pub sender_lost_fin: Option<(Event, Event)>,
    /// The receiver had a SYN from the sender waiting while in SYN-SENT: it takes that SYN
    /// before this segment (the path keeps order).
    pub receiver_takes_syn: bool,
    pub sent: Option<Event>,
    pub recv: Option<Event>,
}

/// Read one segment sent by `snd` to `rcv` (both as known *before* it).
pub fn read_segment(snd: &View, rcv: &View, seg: &SegFacts) -> Reading {
    let mut out = Reading::default();
    let ack = seg.ack.is_some();
    let bare = !seg.syn && !seg.fin && !seg.rst;

    // A FIN lost before the capture point shows in the numbers that follow it.
    if ack
        && !seg.syn
        && !seg.rst
        && rcv.fin_end.is_none()
        && matches!(rcv.state, State::Established | State::CloseWait)
        && matches!((seg.ack, rcv.snd_nxt), (Some(a), Some(n)) if a == n.plus(1))
    {
        // The sender acknowledges one past all the receiver sent: the receiver's FIN reached it
        // before it sent this segment.
        let acks_peer_fin = snd.fin_end.is_some() && rcv.rcv_nxt >= snd.fin_end;
        out.receiver_lost_fin = Some((
            Event::SentFin { acks_peer_fin },
            Event::RecvFin {
                acks_syn: true,
                acks_fin: acks_peer_fin,
            },
        ));
    }
    if bare
        && seg.len == 0
        && snd.fin_end.is_none()
        && matches!(snd.snd_nxt, Some(n) if seg.seq == n.plus(1))
    {
        // The sender's own numbers run one past all it sent: it had sent a FIN. It acknowledged
        // the peer's FIN in it only if it had done so before this segment.
        let acks_peer_fin = rcv.fin_end.is_some() && snd.rcv_nxt >= rcv.fin_end;
        out.sender_lost_fin = Some((
            Event::SentFin { acks_peer_fin },
            Event::RecvFin {
                acks_syn: true,
                acks_fin: rcv.fin_end.is_some() && seg.acks(rcv.fin_end),
            },
        ));
    }

    let acks_syn = ack && (rcv.iss.is_none() || seg.acks(rcv.iss.map(|s| s.plus(1))));
    // A receiver's FIN inferred just now counts as sent.
    let rcv_fin_end = match out.receiver_lost_fin {
        Some(_) => rcv.snd_nxt.map(|n| n.plus(1)),
        None => rcv.fin_end,
    };
    let acks_fin = seg.acks(rcv_fin_end);
    out.sent = if seg.rst {
        // TCP sends an RST at its SND.NXT (an abort), or at the ACK it answers (no connection).
        let own = match snd.snd_nxt {
            None => true,
            Some(n) => seg.seq == n || Some(seg.seq) == rcv.rcv_nxt,
        };
        Some(if !own && snd.state.is_synchronized() {
            Event::SentForeignRst
        } else if !ack && snd.quiet_since_synack && snd.state == State::Established {
            Event::SentRstNoConnection
        } else {
            Event::SentRst
        })
    } else if seg.syn && !ack {
        Some(Event::SentSyn)
    } else if seg.syn {
        Some(Event::SentSynAck)
    } else if seg.fin {
        Some(Event::SentFin {
            acks_peer_fin: acks_fin,
        })
    } else if ack {
        Some(Event::SentAck)
    } else {
        None
    };
    out.receiver_takes_syn =
        rcv.state == State::SynSent && rcv.syn_unanswered.is_some() && (ack || !seg.syn);
    out.recv = if seg.rst {
        Some(Event::RecvRst {
            fit: rst_fit(snd, rcv, seg),
        })
    } else if seg.syn && !ack {
        Some(Event::RecvSyn)
    } else if seg.syn {
        Some(Event::RecvSynAck { acks_syn })
    } else if seg.fin {
        Some(Event::RecvFin { acks_syn, acks_fin })
    } else if ack {
        Some(Event::RecvAck { acks_syn, acks_fin })
    } else {
        None
    };
    out
}

/// How an RST from `snd` fits `rcv`'s window. `RCV.NXT` is not on the wire: the receiver's own
/// last acknowledgement is its lower bound and everything the sender sent its upper bound, so
/// an RST at either is exact (Linux takes `RCV.NXT`, and `RCV.NXT - 1` after a FIN in
/// CLOSE-WAIT, CLOSING and LAST-ACK). With nothing known of the receiver, it is taken.
fn rst_fit(snd: &View, rcv: &View, seg: &SegFacts) -> RstFit {
    if rcv.state == State::SynSent {
        return match (seg.ack, rcv.iss) {
            (Some(a), Some(iss)) if a == iss.plus(1) => RstFit::Exact,
            _ => RstFit::Outside,
        };
    }
    let Some(lo) = rcv.rcv_nxt else {
        return RstFit::Exact;
    };
    let hi = snd.snd_nxt.map_or(lo, |n| n.max(lo));
    let after_fin = matches!(
        rcv.state,
        State::CloseWait | State::Closing | State::LastAck
    ) && snd.fin_end == Some(seg.seq.plus(1));
    if seg.seq == lo || seg.seq == hi || after_fin {
        RstFit::Exact
    } else if seg.seq >= lo && seg.seq.since(hi) <= rcv.rcv_wnd as i32 {
        RstFit::InWindow
    } else {
        RstFit::Outside
    }
}

#[cfg(test)]
mod tests {
    //! One test per RFC transition, named `<state>_<event>`.
    use super::Event::*;
    use super::State::*;
    use super::*;

    const ACK_NONE: Event = RecvAck {
        acks_syn: false,
        acks_fin: false,
    };

    /// Run events from `start` and return every state reached.
    fn walk(start: State, evs: &[Event]) -> Vec<State> {
        let mut s = start;
        evs.iter()
            .map(|e| {
                s = s.next(*e);
                s
            })
            .collect()
    }

    // ---- CLOSED / UNKNOWN ----
    #[test]
    fn closed_sent_syn() {
        assert_eq!(Closed.next(SentSyn), SynSent);
        assert_eq!(Unknown.next(SentSyn), SynSent);
    }
    #[test]
    fn closed_recv_syn_waits_for_the_reply() {
        // Whether a listener took the SYN shows only in the reply.
        assert_eq!(Unknown.step(RecvSyn), Change::Stay);
        assert_eq!(Listen.step(RecvSyn), Change::Stay);
        assert_eq!(Closed.step(RecvSyn), Change::Stay);
    }
    #[test]
    fn closed_sent_rst_refused_never_was_syn_received() {
        assert_eq!(Unknown.next(SentRst), Closed);
    }
    #[test]
    fn syn_received_sent_rst_refused() {
        assert_eq!(SynReceived.next(SentRst), Closed);
    }
    #[test]
    fn unknown_sent_ack_midstream() {
        assert_eq!(Unknown.next(SentAck), Established);
        assert_eq!(Unknown.next(ACK_NONE), Established);
    }
    #[test]
    fn unknown_fin_midstream() {
        assert_eq!(
            Unknown.next(SentFin {
                acks_peer_fin: false
            }),
            FinWait1
        );
        assert_eq!(
            Unknown.next(RecvFin {
                acks_syn: false,
                acks_fin: false
            }),
            CloseWait
        );
    }
    #[test]
    fn unknown_recv_synack_syn_not_captured() {
        assert_eq!(Unknown.next(RecvSynAck { acks_syn: true }), Established);
    }

    // ---- LISTEN ----
    #[test]
    fn listen_sent_synack() {
        assert_eq!(Listen.next(SentSynAck), SynReceived);
    }
    #[test]
    fn listen_sent_rst_refused() {
        assert_eq!(Listen.next(SentRst), Closed);
    }
    #[test]
    fn listen_recv_rst_ignored() {
        assert_eq!(Listen.next(RecvRst { fit: RstFit::Exact }), Listen);
    }
    #[test]
    fn listen_sent_syn_simultaneous_open() {
        assert_eq!(Listen.next(SentSyn), SynSent);
    }

    // ---- SYN-SENT ----
    #[test]
    fn syn_sent_recv_synack() {
        assert_eq!(SynSent.next(RecvSynAck { acks_syn: true }), Established);
    }
    #[test]
    fn syn_sent_recv_synack_wrong_ack() {
        assert_eq!(SynSent.next(RecvSynAck { acks_syn: false }), SynSent);
    }
    #[test]
    fn syn_sent_recv_syn_simultaneous() {
        assert_eq!(SynSent.next(RecvSyn), SynReceived);
    }
    #[test]
    fn syn_sent_sent_syn_retransmission() {
        assert_eq!(SynSent.next(SentSyn), SynSent);
    }
    #[test]
    fn syn_sent_recv_rst() {
        assert_eq!(SynSent.next(RecvRst { fit: RstFit::Exact }), Closed);
        assert_eq!(
            SynSent.next(RecvRst {
                fit: RstFit::Outside
            }),
            SynSent
        );
    }

    // ---- SYN-RECEIVED ----
    #[test]
    fn syn_received_rst_in_window() {
        assert_eq!(
            SynReceived.next(RecvRst {
                fit: RstFit::InWindow
            }),
            Closed
        );
        assert_eq!(
            SynReceived.step(RecvRst {
                fit: RstFit::Outside
            }),
            Change::Stay
        );
    }
    #[test]
    fn syn_sent_sent_ack_synack_not_captured() {
        assert_eq!(SynSent.next(SentAck), Established);
    }
    #[test]
    fn syn_received_recv_ack() {
        assert_eq!(
            SynReceived.next(RecvAck {
                acks_syn: true,
                acks_fin: false
            }),
            Established
        );
        assert_eq!(SynReceived.next(ACK_NONE), SynReceived);
    }
    #[test]
    fn syn_received_recv_synack_simultaneous() {
        assert_eq!(SynReceived.next(RecvSynAck { acks_syn: true }), Established);
    }
    #[test]
    fn syn_received_sent_fin() {
        assert_eq!(
            SynReceived.next(SentFin {
                acks_peer_fin: false
            }),
            FinWait1
        );
    }
    #[test]
    fn syn_received_recv_fin() {
        assert_eq!(
            SynReceived.next(RecvFin {
                acks_syn: true,
                acks_fin: false
            }),
            CloseWait
        );
    }

    // ---- ESTABLISHED ----
    #[test]
    fn established_sent_fin() {
        assert_eq!(
            Established.next(SentFin {
                acks_peer_fin: false
            }),
            FinWait1
        );
    }
    #[test]
    fn established_recv_fin() {
        assert_eq!(
            Established.next(RecvFin {
                acks_syn: true,
                acks_fin: false
            }),
            CloseWait
        );
    }
    #[test]
    fn established_data_changes_nothing() {
        assert_eq!(Established.next(SentAck), Established);
        assert_eq!(Established.next(ACK_NONE), Established);
    }
    #[test]
    fn established_rst() {
        assert_eq!(Established.next(SentRst), Closed);
        assert_eq!(Established.next(RecvRst { fit: RstFit::Exact }), Closed);
        // RFC 5961 §3.2: in the window but inexact draws a challenge ACK; outside is dropped.
        assert_eq!(
            Established.step(RecvRst {
                fit: RstFit::InWindow
            }),
            Change::Stay
        );
        assert_eq!(
            Established.step(RecvRst {
                fit: RstFit::Outside
            }),
            Change::Stay
        );
    }
    #[test]
    fn rst_not_from_the_endpoint() {
        assert_eq!(Established.step(SentForeignRst), Change::Stay);
        // Shown CLOSED by an RST from its address, it goes on sending: the RST was not its own.
        assert_eq!(Closed.step(SentAck), Change::Withdraw);
    }
    #[test]
    fn established_recv_syn_challenge_ack() {
        assert_eq!(Established.step(RecvSyn), Change::Stay);
        assert_eq!(CloseWait.step(RecvSyn), Change::Stay);
    }
    #[test]
    fn established_sent_rst_without_connection_withdraws() {
        assert_eq!(
            Established.step(SentRstNoConnection),
            Change::Redo(&[Closed])
        );
        assert_eq!(SynSent.step(SentRstNoConnection), Change::To(Closed));
    }

    // ---- closing states ----
    #[test]
    fn fin_wait_1_recv_ack_of_fin() {
        assert_eq!(
            FinWait1.next(RecvAck {
                acks_syn: true,
                acks_fin: true
            }),
            FinWait2
        );
        assert_eq!(FinWait1.next(ACK_NONE), FinWait1);
    }
    #[test]
    fn fin_wait_1_recv_fin_ack() {
        assert_eq!(
            FinWait1.next(RecvFin {
                acks_syn: true,
                acks_fin: true
            }),
            TimeWait
        );
    }
    #[test]
    fn fin_wait_1_recv_fin_simultaneous() {
        assert_eq!(
            FinWait1.next(RecvFin {
                acks_syn: true,
                acks_fin: false
            }),
            Closing
        );
    }
    #[test]
    fn fin_wait_2_recv_fin() {
        assert_eq!(
            FinWait2.next(RecvFin {
                acks_syn: true,
                acks_fin: true
            }),
            TimeWait
        );
    }
    #[test]
    fn close_wait_sent_fin() {
        assert_eq!(
            CloseWait.next(SentFin {
                acks_peer_fin: true
            }),
            LastAck
        );
    }
    #[test]
    fn close_wait_sent_fin_crossing() {
        // CLOSE-WAIT was applied too early: it was ESTABLISHED -> FIN-WAIT-1 -> CLOSING.
        assert_eq!(
            CloseWait.step(SentFin {
                acks_peer_fin: false
            }),
            Change::Redo(&[FinWait1, Closing])
        );
    }
    #[test]
    fn closing_recv_ack_of_fin() {
        assert_eq!(
            Closing.next(RecvAck {
                acks_syn: true,
                acks_fin: true
            }),
            TimeWait
        );
    }
    #[test]
    fn last_ack_recv_ack_of_fin() {
        assert_eq!(
            LastAck.next(RecvAck {
                acks_syn: true,
                acks_fin: true
            }),
            Closed
        );
        assert_eq!(LastAck.next(ACK_NONE), LastAck);
    }
    #[test]
    fn time_wait_stays() {
        assert_eq!(TimeWait.next(SentAck), TimeWait);
        assert_eq!(
            TimeWait.next(RecvFin {
                acks_syn: true,
                acks_fin: true
            }),
            TimeWait
        );
    }

    // ---- sanity: whole conversations arrive where the RFC says ----
    #[test]
    fn sanity_active_close() {
        let client = walk(
            Closed,
            &[
                SentSyn,
                RecvSynAck { acks_syn: true },
                SentAck,
                SentFin {
                    acks_peer_fin: false,
                },
                RecvAck {
                    acks_syn: true,
                    acks_fin: true,
                },
                RecvFin {
                    acks_syn: true,
                    acks_fin: true,
                },
                SentAck,
            ],
        );
        assert_eq!(client.last(), Some(&TimeWait));
        let server = walk(
            Unknown,
            &[
                RecvSyn,
                SentSynAck,
                RecvAck {
                    acks_syn: true,
                    acks_fin: false,
                },
                RecvFin {
                    acks_syn: true,
                    acks_fin: false,
                },
                SentAck,
                SentFin {
                    acks_peer_fin: true,
                },
                RecvAck {
                    acks_syn: true,
                    acks_fin: true,
                },
            ],
        );
        assert_eq!(
            server,
            vec![
                Unknown,
                SynReceived,
                Established,
                CloseWait,
                CloseWait,
                LastAck,
                Closed
            ]
        );
    }

    #[test]
    fn sanity_simultaneous_close() {
        // A's FIN seen first; B's FIN crossed it (does not ACK it).
        let a = walk(
            Established,
            &[
                SentFin {
                    acks_peer_fin: false,
                },
                RecvFin {
                    acks_syn: true,
                    acks_fin: false,
                },
                RecvAck {
                    acks_syn: true,
                    acks_fin: true,
                },
            ],
        );
        let b = walk(
            Established,
            &[
                RecvFin {
                    acks_syn: true,
                    acks_fin: false,
                },
                SentFin {
                    acks_peer_fin: false,
                },
                RecvAck {
                    acks_syn: true,
                    acks_fin: true,
                },
            ],
        );
        assert_eq!(a.last(), Some(&TimeWait));
        assert_eq!(b.last(), Some(&TimeWait));
    }

    #[test]
    fn display_uses_contract_spelling() {
        assert_eq!(FinWait1.to_string(), "FIN_WAIT_1");
        assert_eq!(SynReceived.to_string(), "SYN_RECEIVED");
    }
}
