//! Zeek's `conn_state` and `history` for one connection (zeek `conn/main.zeek`,
//! `TCPSessionAdapter.cc`, as described in shared/reference/wireshark-zeek.md §2.3).
//!
//! Zeek's originator is our client. History letters are upper case for the originator, lower
//! case for the responder: s SYN, h SYN-ACK, a pure ACK, d data, f FIN, r RST, t retransmitted
//! payload, g content gap, w zero window, q SYN+FIN or SYN+RST, i FIN+RST. a/d/q/i appear once
//! per direction; f/h/r/s repeat only when their seq changes; t/g/w are logarithmic (the second
//! letter at 10 events, the third at 100, …).

use crate::decode::Flags;

/// Zeek's per-endpoint TCP state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeekState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// History and Zeek endpoint states of one connection; index 0 = originator (client).
#[derive(Debug, Clone, Default)]
pub struct History {
    letters: String,
    state: [ZeekState; 2],
    once: [u8; 2],
    last_seq: [[Option<u32>; 4]; 2],
    counts: [[u32; 3]; 2],
    thresholds: [[u32; 3]; 2],
    bytes: [u64; 2],
}

const ONCE_A: u8 = 1;
const ONCE_D: u8 = 2;
const ONCE_Q: u8 = 4;
const ONCE_I: u8 = 8;

impl History {
    fn letter(&mut self, dir: usize, c: char) {
        self.letters
            .push(if dir == 0 { c.to_ascii_uppercase() } else { c });
    }

    fn once(&mut self, dir: usize, bit: u8, c: char) {
        if self.once[dir] & bit == 0 {
            self.once[dir] |= bit;
            self.letter(dir, c);
        }
    }

    /// f/h/r/s (index 0..4): repeated only when the seq differs from the last one.
    fn repeat(&mut self, dir: usize, which: usize, seq: u32, c: char) {
        if self.last_seq[dir][which] != Some(seq) {
            self.last_seq[dir][which] = Some(seq);
            self.letter(dir, c);
        }
    }

    /// t/g/w (index 0..3): a letter at the 1st, 10th, 100th … event.
    pub fn logarithmic(&mut self, dir: usize, which: usize, c: char) {
        self.counts[dir][which] += 1;
        let th = &mut self.thresholds[dir][which];
        if *th == 0 {
            *th = 1;
        }
        if self.counts[dir][which] >= *th {
            *th = th.saturating_mul(10);
            self.letter(dir, c);
        }
    }

    /// One segment from direction `dir` (0 = originator).
    pub fn on_segment(&mut self, dir: usize, flags: Flags, seq: u32, len: u32, window: u16) {
        let (syn, ack, fin, rst) = (flags.syn(), flags.ack(), flags.fin(), flags.rst());
        if syn && (fin || rst) {
            self.once(dir, ONCE_Q, 'q');
        } else if fin && rst {
            self.once(dir, ONCE_I, 'i');
        }
        if syn {
            if ack {
                self.repeat(dir, 1, seq, 'h');
            } else {
                self.repeat(dir, 3, seq, 's');
            }
        }
        if fin {
            self.repeat(dir, 0, seq, 'f');
        }
        if rst {
            self.repeat(dir, 2, seq, 'r');
        }
        if len > 0 {
            self.once(dir, ONCE_D, 'd');
        } else if ack && !syn && !fin && !rst {
            self.once(dir, ONCE_A, 'a');
        }
        if window == 0 && !syn && !fin && !rst {
            self.logarithmic(dir, 2, 'w');
        }
        self.bytes[dir] += len as u64;

        // Zeek's endpoint states.
        let other = 1 - dir;
        let st = &mut self.state[dir];
        if rst {
            *st = ZeekState::Reset;
        } else if fin {
            *st = ZeekState::Closed;
        } else if syn && !ack {
            if *st == ZeekState::Inactive {
                *st = ZeekState::SynSent;
            }
        } else if syn && ack {
            if matches!(*st, ZeekState::Inactive | ZeekState::SynSent) {
                *st = ZeekState::SynAckSent;
            }
        } else if matches!(*st, ZeekState::Inactive) {
            *st = ZeekState::Partial;
        }
        // A handshake completes both ends.
        if ack && !syn {
            let o = self.state[other];
            let s = self.state[dir];
            if matches!(s, ZeekState::SynSent | ZeekState::SynAckSent)
                && matches!(o, ZeekState::SynSent | ZeekState::SynAckSent)
            {
                self.state = [ZeekState::Established; 2];
            } else if matches!(s, ZeekState::SynSent | ZeekState::SynAckSent) {
                self.state[dir] = ZeekState::Established;
            }
        }
        if self.state[other] == ZeekState::SynAckSent
            && self.state[dir] == ZeekState::Established
            && self.state[other] != ZeekState::Established
        {
            self.state[other] = ZeekState::Established;
        }
    }

    /// A retransmission (`t`) or a content gap (`g`) in direction `dir`.
    pub fn retransmission(&mut self, dir: usize) {
        self.logarithmic(dir, 0, 't');
    }
    pub fn gap(&mut self, dir: usize) {
        self.logarithmic(dir, 1, 'g');
    }

    pub fn letters(&self) -> &str {
        &self.letters
    }

    /// Zeek's `conn_state` code.
    pub fn conn_state(&self) -> &'static str {
        use ZeekState::*;
        let [o, r] = self.state;
        let inactive = |s: ZeekState| matches!(s, Inactive | Partial);
        if r == Reset {
            if matches!(o, SynSent | SynAckSent) || (o == Reset && self.bytes == [0, 0]) {
                return "REJ";
            }
            if inactive(o) {
                return "RSTRH";
            }
            return "RSTR";
        }
        if o == Reset {
            if inactive(r) {
                let h = self.letters.trim_start_matches('^');
                let before_r = h.split('R').next().unwrap_or("");
                if h.starts_with('S') && !before_r.chars().any(|c| "HAFGIQ".contains(c)) {
                    return "RSTOS0";
                }
                return "OTH";
            }
            return "RSTO";
        }
        match (o, r) {
            (Closed, Closed) => "SF",
            (Closed, _) if inactive(r) => "SH",
            (Closed, _) => "S2",
            (_, Closed) if inactive(o) => "SHR",
            (_, Closed) => "S3",
            (SynSent, Inactive) => "S0",
            (Established, Established) => "S1",
            _ => "OTH",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(bits: u8) -> Flags {
        Flags(bits)
    }

    #[test]
    fn normal_connection_is_sf() {
        let mut h = History::default();
        h.on_segment(0, f(Flags::SYN), 100, 0, 64240);
        h.on_segment(1, f(Flags::SYN | Flags::ACK), 500, 0, 65160);
        h.on_segment(0, f(Flags::ACK), 101, 0, 502);
        h.on_segment(0, f(Flags::ACK | Flags::PSH), 101, 10, 502);
        h.on_segment(1, f(Flags::ACK | Flags::PSH), 501, 20, 509);
        h.on_segment(0, f(Flags::ACK | Flags::FIN), 111, 0, 502);
        h.on_segment(1, f(Flags::ACK | Flags::FIN), 521, 0, 509);
        h.on_segment(0, f(Flags::ACK), 112, 0, 502);
        assert_eq!(h.letters(), "ShADdFf");
        assert_eq!(h.conn_state(), "SF");
    }

    #[test]
    fn refused_is_rej() {
        let mut h = History::default();
        h.on_segment(0, f(Flags::SYN), 1, 0, 64240);
        h.on_segment(1, f(Flags::RST | Flags::ACK), 0, 0, 0);
        assert_eq!(h.letters(), "Sr");
        assert_eq!(h.conn_state(), "REJ");
    }

    #[test]
    fn unanswered_syn_is_s0_and_retries_with_same_seq_add_no_letter() {
        let mut h = History::default();
        for _ in 0..3 {
            h.on_segment(0, f(Flags::SYN), 7, 0, 64240);
        }
        assert_eq!(h.letters(), "S");
        assert_eq!(h.conn_state(), "S0");
    }

    #[test]
    fn logarithmic_letters() {
        let mut h = History::default();
        for _ in 0..100 {
            h.retransmission(1);
        }
        assert_eq!(h.letters(), "ttt");
    }
}
