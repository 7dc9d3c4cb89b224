//! One HTTP/2 stream as an observer sees it: both endpoints' states, both send windows and
//! the message each direction has in progress.

use crate::types::{Dir, Timestamp};

/// A message between its header block and END_STREAM (or a reset).
#[derive(Debug)]
pub(super) struct Msg {
    pub frame: u64,
    pub ts: Timestamp,
    pub request: bool,
    pub interim: bool,
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub status: Option<u16>,
    pub content_length: Option<u64>,
    pub body_len: u64,
    pub request_frame: Option<u64>,
    pub undecodable: bool,
    pub reset: bool,
    /// A request the server sent in a PUSH_PROMISE (its record says `s2c`).
    pub promised: bool,
    /// Requests: has `:authority` (or `host`), `cookie`, `authorization`.
    pub carries: [bool; 3],
}

impl Msg {
    pub fn new(frame: u64, ts: Timestamp) -> Self {
        Msg {
            frame,
            ts,
            request: false,
            interim: false,
            method: None,
            path: None,
            authority: None,
            status: None,
            content_length: None,
            body_len: 0,
            request_frame: None,
            undecodable: false,
            reset: false,
            promised: false,
            carries: [false; 3],
        }
    }
}

/// One stream. Indexed by [`Dir::idx`]: `ended[d]` means `d`'s sender set END_STREAM.
#[derive(Debug)]
pub(super) struct Stream {
    /// HEADERS opened it (or the HTTP/1.1 upgrade did).
    pub opened: bool,
    /// PUSH_PROMISE reserved it; the side that promised.
    pub reserved: Option<Dir>,
    pub ended: [bool; 2],
    pub reset: bool,
    /// What each direction may still send on the stream (flow control).
    pub window: [i64; 2],
    pub msg: [Option<Msg>; 2],
    /// Frame of the request's header block, for the response's record.
    pub request_frame: Option<u64>,
}

impl Stream {
    /// A new idle stream; `c2s_window` and `s2c_window` are the initial send windows.
    pub fn new(_id: u32, c2s_window: i64, s2c_window: i64) -> Self {
        Stream {
            opened: false,
            reserved: None,
            ended: [false; 2],
            reset: false,
            window: [c2s_window, s2c_window],
            msg: [None, None],
            request_frame: None,
        }
    }

    /// The state at the endpoint that sends in direction `at` (RFC 9113 §5.1): `C2s` for the
    /// client, `S2c` for the server.
    pub fn state(&self, at: Dir) -> &'static str {
        let (me, peer) = (at.idx(), at.reverse().idx());
        if self.reset || (self.ended[me] && self.ended[peer]) {
            return "closed";
        }
        if !self.opened {
            return match self.reserved {
                Some(d) if d == at => "reserved_local",
                Some(_) => "reserved_remote",
                None => "idle",
            };
        }
        match (self.ended[me], self.ended[peer]) {
            (false, false) => "open",
            (true, false) => "half_closed_local",
            (false, true) => "half_closed_remote",
            (true, true) => "closed",
        }
    }

    /// Closed, with nothing left to push: safe to forget.
    pub fn done(&self) -> bool {
        (self.reset || self.ended == [true, true]) && self.msg.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The §5.1 diagram walked for a request/response and for a pushed stream.
    #[test]
    fn states_per_endpoint() {
        let mut s = Stream::new(1, 65535, 65535);
        assert_eq!(s.state(Dir::C2s), "idle");
        s.opened = true;
        assert_eq!((s.state(Dir::C2s), s.state(Dir::S2c)), ("open", "open"));
        s.ended[Dir::C2s.idx()] = true;
        assert_eq!(
            (s.state(Dir::C2s), s.state(Dir::S2c)),
            ("half_closed_local", "half_closed_remote")
        );
        s.ended[Dir::S2c.idx()] = true;
        assert_eq!((s.state(Dir::C2s), s.state(Dir::S2c)), ("closed", "closed"));

        let mut p = Stream::new(2, 65535, 65535);
        p.reserved = Some(Dir::S2c);
        assert_eq!(
            (p.state(Dir::C2s), p.state(Dir::S2c)),
            ("reserved_remote", "reserved_local")
        );
        p.opened = true;
        p.ended[Dir::C2s.idx()] = true;
        assert_eq!(
            (p.state(Dir::C2s), p.state(Dir::S2c)),
            ("half_closed_local", "half_closed_remote")
        );
        p.reset = true;
        assert_eq!(p.state(Dir::S2c), "closed");
    }
}
