//! One endpoint's RFC 9293 state, inferred by an observer at the capture point.
//!
//! Every transition lives in the one `match` of [`State::next`]. The observer sees a segment
//! once, somewhere between its sender and its receiver, so it applies "sent X" to the sender and
//! "received X" to the receiver at the same frame. Where a segment's ACK shows its sender had
//! *not* yet received something the observer already saw in flight (crossing FINs), the sender's
//! event says so and the transition follows what the sender really knew.

use std::fmt;

/// RFC 9293 §3.3.2 connection states, plus `Unknown` for an endpoint nothing has decided yet
/// (a connection picked up midstream).
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

impl State {
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

    /// The state after `ev`. Unlisted pairs leave the state as it is: the observer saw
    /// something (a retransmission, a stray ACK) that a real endpoint ignores in that state.
    pub fn next(self, ev: Event) -> State {
        use Event::*;
        use State::*;
        match (self, ev) {
            // ---- what the endpoint sends ----
            // Active OPEN: SYN sent (§3.5). From LISTEN it is a simultaneous open.
            (Unknown | Closed | Listen, SentSyn) => SynSent,
            // A SYN arrived and the endpoint answers SYN-ACK: passive open (§3.5).
            (Unknown | Closed | Listen, SentSynAck) => SynReceived,
            // Simultaneous open: having sent a SYN, it answers the peer's SYN (§3.5, fig. 8).
            (SynSent, SentSynAck) => SynReceived,
            // Midstream: an endpoint sending ACKs is synchronized (§3.3.2).
            (Unknown, SentAck) => Established,
            // CLOSE: FIN sent from ESTABLISHED or SYN-RECEIVED (§3.10.4).
            (Unknown | Established | SynReceived, SentFin { .. }) => FinWait1,
            // CLOSE after the peer's FIN was received (§3.10.4).
            (
                CloseWait,
                SentFin {
                    acks_peer_fin: true,
                },
            ) => LastAck,
            // The FIN does not ACK the peer's FIN: it was sent before that FIN arrived, so
            // the FINs crossed — simultaneous close (§3.6, fig. 13).
            (
                CloseWait,
                SentFin {
                    acks_peer_fin: false,
                },
            ) => Closing,
            // Abort: an endpoint that sends RST is done with the connection (§3.10.7).
            (_, SentRst) => Closed,

            // ---- what the endpoint receives ----
            // A SYN reaches a listener: it answers SYN-ACK and enters SYN-RECEIVED
            // (§3.10.7.2). Its reply may be lost before the capture point, so the observer
            // infers it from the SYN; an RST reply (nobody listening) moves it to CLOSED.
            (Unknown | Closed | Listen, RecvSyn) => SynReceived,
            // Simultaneous open: a SYN arrives in SYN-SENT (§3.10.7.3).
            (SynSent, RecvSyn) => SynReceived,
            // SYN-ACK acknowledging our SYN: ESTABLISHED (§3.10.7.3). From UNKNOWN the SYN was
            // not captured.
            (Unknown | SynSent | SynReceived, RecvSynAck { acks_syn: true }) => Established,
            // The ACK of our SYN-ACK: ESTABLISHED (§3.10.7.4, fifth check).
            (SynReceived, RecvAck { acks_syn: true, .. }) => Established,
            (SynReceived, RecvFin { acks_syn: true, .. }) => CloseWait,
            // Midstream: the peer sends ACKs, so this end is synchronized too.
            (Unknown, RecvAck { .. }) => Established,
            // The peer's FIN: CLOSE-WAIT (§3.10.7.4, eighth check).
            (Unknown | Established, RecvFin { .. }) => CloseWait,
            // Our FIN acknowledged: FIN-WAIT-2.
            (FinWait1, RecvAck { acks_fin: true, .. }) => FinWait2,
            // The peer's FIN also ACKs ours: straight to TIME-WAIT.
            (FinWait1, RecvFin { acks_fin: true, .. }) => TimeWait,
            // The peer's FIN without ACK of ours: simultaneous close, CLOSING.
            (
                FinWait1,
                RecvFin {
                    acks_fin: false, ..
                },
            ) => Closing,
            // The peer's FIN after ours was acknowledged: TIME-WAIT.
            (FinWait2, RecvFin { .. }) => TimeWait,
            // CLOSING and our FIN acknowledged: TIME-WAIT.
            (Closing, RecvAck { acks_fin: true, .. } | RecvFin { acks_fin: true, .. }) => TimeWait,
            // LAST-ACK and our FIN acknowledged: CLOSED.
            (LastAck, RecvAck { acks_fin: true, .. } | RecvFin { acks_fin: true, .. }) => Closed,
            // An RST to a listener concerns no connection of its own.
            (Listen, RecvRst { .. }) => Listen,
            // An acceptable RST ends the connection in any other state (§3.10.7.4, 3.10.7.3).
            (_, RecvRst { acceptable: true }) => Closed,

            // Everything else — retransmissions, duplicate ACKs, data — changes nothing.
            (s, _) => s,
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
    /// A SYN without ACK arrived.
    RecvSyn,
    /// A SYN-ACK arrived; `acks_syn` when it acknowledges this endpoint's SYN.
    RecvSynAck { acks_syn: bool },
    /// An ACK arrived (no SYN, FIN, RST).
    RecvAck { acks_syn: bool, acks_fin: bool },
    /// A FIN arrived; whether its ACK covers this endpoint's SYN and FIN.
    RecvFin { acks_syn: bool, acks_fin: bool },
    /// An RST arrived; `acceptable` when its sequence number is in the window (§3.10.7).
    RecvRst { acceptable: bool },
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
    fn closed_recv_syn() {
        assert_eq!(Unknown.next(RecvSyn), SynReceived);
        assert_eq!(Listen.next(RecvSyn), SynReceived);
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
        assert_eq!(Listen.next(RecvRst { acceptable: true }), Listen);
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
        assert_eq!(SynSent.next(RecvRst { acceptable: true }), Closed);
        assert_eq!(SynSent.next(RecvRst { acceptable: false }), SynSent);
    }

    // ---- SYN-RECEIVED ----
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
        assert_eq!(Established.next(RecvRst { acceptable: true }), Closed);
        assert_eq!(Established.next(RecvRst { acceptable: false }), Established);
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
        assert_eq!(
            CloseWait.next(SentFin {
                acks_peer_fin: false
            }),
            Closing
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
                SynReceived,
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
