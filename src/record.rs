//! The JSON-lines records (documented field by field in `docs/records.md`), one Rust type per
//! `"type"`.
//!
//! Field names are the contract's, so serde needs no renames. Optional fields are omitted from
//! the JSON when absent (`skip_serializing_if`). Bytes that are not UTF-8 (URIs, reasons) are
//! converted lossily: invalid sequences become U+FFFD.
//!
//! Records are produced by [`crate::engine`] and [`crate::lab`], printed by [`crate::output`],
//! and read back (they derive `Deserialize`) by tests and by [`crate::report`].

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

pub use crate::types::Dir;

/// A name from a fixed set (flags, analysis events, states): borrowed when the engine makes
/// it, so building a packet record allocates almost nothing; owned when read back from JSON.
pub type Name = Cow<'static, str>;

/// Every subset of `names` as a list, at the index whose bit `i` stands for `names[i]`, in
/// `names`' order. Records borrow their flag and field lists from such a table, made once,
/// instead of allocating a list each.
pub fn name_subsets(names: &[&'static str]) -> Vec<Vec<Name>> {
    (0..1usize << names.len())
        .map(|bits| {
            names
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, n)| Cow::Borrowed(*n))
                .collect()
        })
        .collect()
}

/// The list of the names in `names` (three: an `http` record's `carries`) whose flag is set,
/// borrowed from a table made once.
pub fn carried_names(names: &[&'static str; 3], carries: [bool; 3]) -> &'static [Name] {
    static LISTS: std::sync::OnceLock<Vec<Vec<Name>>> = std::sync::OnceLock::new();
    let bits = carries
        .iter()
        .enumerate()
        .fold(0, |acc, (i, &c)| acc | (usize::from(c) << i));
    &LISTS.get_or_init(|| name_subsets(names))[bits]
}

/// For `skip_serializing_if`: an empty list of names is left out.
fn no_names(names: &[Name]) -> bool {
    names.is_empty()
}

/// An endpoint of a packet: IP address and port, written `10.0.0.1:80` or `[::1]:80` (as
/// `SocketAddr` displays them). A plain value rather than shared text: a packet record is made
/// for every segment, and copying a value costs neither an allocation nor the atomic count
/// updates (and the cache misses on the counts) that sharing a string does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Addr(pub SocketAddr);

impl Default for Addr {
    fn default() -> Self {
        Addr(SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr(a)
    }
}

impl std::str::FromStr for Addr {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Addr)
    }
}

impl Addr {
    /// The text, formatted by hand for IPv4 (each connection's endpoints are formatted for
    /// its record and printed lines; `fmt` machinery was a visible share of that).
    pub fn text(self) -> String {
        match self.v4_text() {
            Some(t) => t.as_str().to_owned(),
            None => self.0.to_string(),
        }
    }

    /// [`Addr::text`] as a shared string, made with one allocation.
    pub fn shared_text(self) -> Arc<str> {
        match self.v4_text() {
            Some(t) => Arc::from(t.as_str()),
            None => Arc::from(self.0.to_string()),
        }
    }

    /// The text of an IPv4 endpoint (`10.0.0.1:80`; `None` for IPv6), written in place: at
    /// most `255.255.255.255:65535`, 21 bytes. A connection's endpoints are written for its
    /// record and for its first packet line each way: one octet or port at a time through
    /// itoa and into a vector that cost ~290 instructions an endpoint, 3% of a JSON-lines run;
    /// from the octet table, ~160.
    #[inline]
    pub fn v4_text(self) -> Option<V4Text> {
        let SocketAddr::V4(a) = self.0 else {
            return None;
        };
        let mut t = V4Text {
            bytes: [0; 24],
            len: 0,
        };
        let b = &mut t.bytes;
        let mut n = 0;
        for octet in a.ip().octets() {
            // Its digits, then a dot over whatever the table row has after them.
            let [d0, d1, d2, len] = OCTETS[octet as usize];
            b[n..n + 3].copy_from_slice(&[d0, d1, d2]);
            n += len as usize;
            b[n] = b'.';
            n += 1;
        }
        b[n - 1] = b':';
        let port = a.port() as u32;
        let digits = 1
            + (port >= 10) as usize
            + (port >= 100) as usize
            + (port >= 1000) as usize
            + (port >= 10_000) as usize;
        let mut v = port;
        for i in (n..n + digits).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        t.len = (n + digits) as u8;
        Some(t)
    }
}

/// Each octet's decimal digits, then how many there are.
const OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let (h, d, o) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        t[i] = if i >= 100 {
            [b'0' + h, b'0' + d, b'0' + o, 3]
        } else if i >= 10 {
            [b'0' + d, b'0' + o, 0, 2]
        } else {
            [b'0' + o, 0, 0, 1]
        };
        i += 1;
    }
    t
};

/// An IPv4 endpoint's text ([`Addr::v4_text`]).
pub struct V4Text {
    /// Room for the longest text, 21 bytes, and for writing an octet's three table bytes
    /// wherever it may start.
    bytes: [u8; 24],
    len: u8,
}

impl V4Text {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn as_str(&self) -> &str {
        // Digits, dots and a colon only.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Addr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One record of the contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    Packet(PacketRec),
    Conn(ConnRec),
    /// Boxed: the HTTP layer builds each message's record in its box when the head arrives and
    /// hands the box over when the message ends, rather than moving 280 bytes twice.
    Http(Box<HttpRec>),
    Ws(WsRec),
    Lab(LabRec),
    Tls(TlsRec),
    #[serde(rename = "tls_msg")]
    TlsMsg(TlsMsgRec),
    H2(H2Rec),
}

impl Record {
    /// The connection index it belongs to, to renumber (`None`: a lab record, of no
    /// connection).
    pub fn conn_mut(&mut self) -> Option<&mut u64> {
        match self {
            Record::Packet(r) => Some(&mut r.conn),
            Record::Conn(r) => Some(&mut r.conn),
            Record::Http(r) => Some(&mut r.conn),
            Record::Ws(r) => Some(&mut r.conn),
            Record::Tls(r) => Some(&mut r.conn),
            Record::TlsMsg(r) => Some(&mut r.conn),
            Record::H2(r) => Some(&mut r.conn),
            Record::Lab(_) => None,
        }
    }
}

/// `"type": "packet"`: one per TCP segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PacketRec {
    pub frame: u64,
    pub ts: f64,
    pub conn: u64,
    pub dir: Dir,
    pub src: Addr,
    pub dst: Addr,
    /// Borrowed from a table made once per flag combination: no allocation per packet.
    pub flags: Cow<'static, [Name]>,
    pub seq: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ack: Option<u32>,
    pub seq_raw: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ack_raw: Option<u32>,
    pub len: u32,
    pub win: u64,
    pub analysis: Vec<Name>,
    /// Event name → one sentence saying why Wireshark's rule fired, with the values compared.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub why: BTreeMap<String, String>,
    /// Beyond Wireshark: what most likely happened where the capture point misleads its label.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub likely: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dup_ack_num: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dup_ack_frame: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes_in_flight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ack_rtt: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub acks_frame: Option<u64>,
    pub client_state: Name,
    pub server_state: Name,
}

/// `"type": "conn"`: one per connection, when it finishes or at the end of input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ConnRec {
    pub conn: u64,
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub first_ts: f64,
    pub last_ts: f64,
    pub packets_c2s: u64,
    pub packets_s2c: u64,
    pub bytes_c2s: u64,
    pub bytes_s2c: u64,
    pub client_state: Name,
    pub server_state: Name,
    pub conn_state: Name,
    pub history: String,
    pub http_requests: u64,
    pub http_responses: u64,
    /// Handshake round-trip time at the capture point (Wireshark's `tcp.analysis.initial_rtt`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub initial_rtt: Option<f64>,
    /// How many packets carried each analysis event.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub analysis_counts: BTreeMap<Name, u64>,
    /// Every state change of each endpoint: (frame, endpoint, new state).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub transitions: Vec<Transition>,
    /// Bytes reassembly could not deliver (never captured, or over the buffer cap), each way.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub gap_bytes: u64,
    /// Why the tracker finished the connection before it ended: `"idle"` (no packet for
    /// `--idle-timeout`) or `"memory"` (evicted to stay within `--max-memory`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evicted: Option<Name>,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub ws_frames: u64,
    /// Counted problems on this connection (HTTP parse errors, WebSocket errors, caps hit).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub diagnostics: Vec<String>,
    /// The tunnel the connection ran in, innermost layer first (`["vxlan vni=42",
    /// "ipv4 10.0.0.1>10.0.0.2"]`); absent when it ran in none.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub encap: Vec<String>,
    /// This record continues connection `conn` after it was evicted for idleness (its earlier
    /// record says `evicted: "idle"`): the same 5-tuple went on without a new SYN.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub resumed: bool,
    /// For HTTP/2 connections: frames, streams and each direction's HPACK table at the end
    /// (boxed: most connections have none).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub h2: Option<Box<H2Summary>>,
}

/// The `h2` object of a `conn` record: what an HTTP/2 connection's state came to. Pairs are
/// `[c2s, s2c]`: the client's header blocks (decoded with the table the client's encoder
/// keeps) and the server's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct H2Summary {
    /// How HTTP/2 began: `prior_knowledge` (the preface first), `upgrade` (after an HTTP/1.1
    /// `101` to `Upgrade: h2c`) or `midstream` (frames found without a preface: the HPACK
    /// tables are unknown).
    pub start: Name,
    pub frames: [u64; 2],
    /// Streams opened (by HEADERS or PUSH_PROMISE), and of those, reset by RST_STREAM.
    pub streams: u64,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub streams_reset: u64,
    /// Dynamic table size in bytes (RFC 7541 §4.1) and entry count at the end; `null` where
    /// the table is unknown.
    pub hpack_size: [Option<u64>; 2],
    pub hpack_entries: [Option<u64>; 2],
    /// The table's maximum size (the last size update, 4096 by default).
    pub hpack_max: [u64; 2],
    /// Header blocks decoded, and blocks that could not be (the table was unknown or out of
    /// step).
    pub header_blocks: [u64; 2],
    #[serde(skip_serializing_if = "no_pair", default)]
    pub undecodable_blocks: [u64; 2],
    /// Connection flow-control windows at the end: what each side may still send (absent for
    /// a connection picked up mid-way, whose windows are unknown).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conn_window: Option<[i64; 2]>,
}

fn no_pair(v: &[u64; 2]) -> bool {
    *v == [0, 0]
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One endpoint's state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub frame: u64,
    /// `"client"` or `"server"`.
    pub endpoint: Name,
    pub state: Name,
    /// Why the change is inferred rather than seen (a reply showed it, or the numbers after a
    /// segment the capture missed); absent for changes a captured segment caused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub inferred: Option<Name>,
}

/// `"type": "http"`: one per HTTP/1.x message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HttpRec {
    pub conn: u64,
    pub dir: Dir,
    pub frame: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uri: Option<String>,
    pub version: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_length: Option<u64>,
    pub body_len: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upgrade: Option<String>,
    /// Transfer-Encoding: chunked was used.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub chunked: bool,
    /// For responses: the frame of the request it answers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_frame: Option<u64>,
    /// The state this request carries itself: which of Host, Cookie, Authorization it has.
    /// Borrowed from a table of the eight combinations: no allocation per request.
    #[serde(skip_serializing_if = "no_names", default)]
    pub carries: Cow<'static, [Name]>,
    /// Frame in which the whole message (body included) was complete.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub end_frame: Option<u64>,
    /// Left out of request/response pairing: a request that arrived while too many were
    /// unanswered to queue it, or a final response to such a request (so `request_frame` is
    /// absent, and a response to a HEAD among them may be framed as if it had a body).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unpaired: bool,
    /// HTTP/2 (`version: "2"`): the stream the message travelled on.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stream: Option<u32>,
    /// HTTP/2 requests: the `:authority` pseudo-header.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authority: Option<String>,
    /// HTTP/2: the header block could not be decoded (the HPACK table is unknown: the capture
    /// began mid-connection or lost a header block), so method, URI and status are absent.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub undecodable: bool,
    /// HTTP/2: the stream was reset (RST_STREAM) before this message ended.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub reset: bool,
    /// Read inside TLS, decrypted with `--tls-keylog`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub tls: bool,
}

/// `"type": "ws"`: one per WebSocket frame after an upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WsRec {
    pub conn: u64,
    pub dir: Dir,
    pub frame: u64,
    pub opcode: u8,
    pub fin: bool,
    pub masked: bool,
    pub len: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub close_code: Option<u16>,
}

/// `"type": "tls"`: one per connection whose streams are TLS, just before its `conn` record.
/// Only what a passive observer sees in cleartext: TLS 1.3 encrypts everything after the
/// ServerHello (the certificate, the chosen ALPN, whether early data was accepted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TlsRec {
    pub conn: u64,
    /// Frame of the ClientHello (absent for an SSLv2 hello or streams that only looked like TLS).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frame: Option<u64>,
    /// The negotiated version as Wireshark names it (`TLSv1.2`, `TLSv1.3`; for 1.3 the
    /// ServerHello's supported_versions), or `SSLv2` for an SSLv2-format hello. Absent without
    /// a ServerHello.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<Name>,
    /// The cipher suite the server chose, by its IANA name and number.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cipher: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cipher_id: Option<u16>,
    /// Server Name Indication from the ClientHello.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sni: Option<String>,
    /// The protocol the server chose (ALPN; in the ServerHello up to TLS 1.2 only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alpn: Option<String>,
    /// The protocols the client offered.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub alpn_offered: Vec<String>,
    /// The subject of the server's first certificate (RFC 4514 style), where it travels in
    /// cleartext (TLS 1.2 and older, full handshakes).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cert_subject: Option<String>,
    /// How the session was set up: `full`, `resumed_id` (the server's session cache),
    /// `resumed_ticket` (a TLS 1.2 ticket the client carried), `resumed_psk` (TLS 1.3: the server
    /// accepted a pre_shared_key), `0rtt` (that, with early_data offered by the client). Absent
    /// without a ServerHello.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub setup: Option<Name>,
    /// The server answered with a HelloRetryRequest (TLS 1.3) before its ServerHello.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub hello_retry: bool,
    /// Alerts in cleartext, `LEVEL DESCRIPTION` (`fatal protocol_version`), and `encrypted` for
    /// each one sent after the keys changed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub alerts: Vec<String>,
    /// Application-data records each way (`c2s`, `s2c`), counted, never read.
    pub app_records: [u64; 2],
    /// Of the client's, those sent before the ServerHello: TLS 1.3 early (0-RTT) data.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub early_records: u64,
    /// With `--tls-keylog`: protected records decrypted each way (`c2s`, `s2c`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decrypted: Option<[u64; 2]>,
    /// With `--tls-keylog`: protected records not decrypted, by reason (`no_key`,
    /// `unsupported_cipher`, `gap`, `auth_failed`, `early_data`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub not_decrypted: BTreeMap<String, u64>,
}

impl TlsRec {
    /// A one-line hint for tables: `TLSv1.3 sni=example.com`, `TLSv1.2 sni=a.example
    /// http/1.1 resumed_id`; with a key log, `decrypted` or the records not decrypted by reason
    /// (`no_key 13`).
    pub fn hint(&self) -> String {
        let mut s = self.version.as_deref().unwrap_or("TLS").to_string();
        if let Some(sni) = &self.sni {
            s.push_str(" sni=");
            s.push_str(sni);
        }
        if let Some(a) = &self.alpn {
            s.push(' ');
            s.push_str(a);
        }
        if let Some(setup) = self.setup.as_deref().filter(|s| *s != "full") {
            s.push(' ');
            s.push_str(setup);
        }
        // With a key log: `decrypted`, or what was not and why (`no_key 13`).
        if self.decrypted.is_some() {
            if self.not_decrypted.is_empty() {
                s.push_str(" decrypted");
            } else {
                for (why, n) in &self.not_decrypted {
                    s.push_str(&format!(" {why} {n}"));
                }
            }
        }
        s
    }
}

/// `"type": "tls_msg"`: one per handshake message, change-cipher-spec and alert, at the frame
/// that completed it (as tshark reports them). Made for the connections whose packets are
/// printed (`--packets`, `--conn N`, JSON lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TlsMsgRec {
    pub conn: u64,
    pub dir: Dir,
    pub frame: u64,
    /// The record's content type: 20 change_cipher_spec, 21 alert, 22 handshake.
    pub content_type: u8,
    /// The handshake message type (RFC 8446 §4), for handshake messages read in cleartext.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub handshake_type: Option<u8>,
    /// `client_hello`, `server_hello`, `hello_retry_request`, `certificate`, ...,
    /// `change_cipher_spec`, `alert`, `encrypted_handshake`, `encrypted_alert`,
    /// `sslv2_client_hello`.
    pub msg: Name,
    /// The message's length (handshake body, or record body).
    pub len: u32,
    /// For a cleartext alert: `LEVEL DESCRIPTION`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alert: Option<String>,
}

/// `"type": "h2"`: one per HTTP/2 frame, at the frame that completed it (as tshark reports
/// them). Made for the connections whose packets are printed (`--packets`, `--conn N`, JSON
/// lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct H2Rec {
    pub conn: u64,
    pub dir: Dir,
    pub frame: u64,
    /// The frame type's number (0 DATA ... 9 CONTINUATION; others are unknown types).
    pub frame_type: u8,
    /// `DATA`, `HEADERS`, ..., `CONTINUATION`, or `UNKNOWN`.
    pub name: Name,
    pub flags: u8,
    /// The payload length from the frame header.
    pub length: u32,
    pub stream: u32,
    /// PADDED frames: the pad length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pad_len: Option<u8>,
    /// RST_STREAM and GOAWAY: the error code and its name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<Name>,
    /// SETTINGS: `[identifier, value]` pairs in order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub settings: Vec<(u16, u32)>,
    /// WINDOW_UPDATE: the increment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub window_increment: Option<u32>,
    /// GOAWAY: the last stream the sender processed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_stream: Option<u32>,
    /// PUSH_PROMISE: the stream it reserves.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub promised_stream: Option<u32>,
    /// DATA: what the sender may still send after this frame, on the stream and on the
    /// connection (flow control, RFC 9113 §6.9; negative means the sender overran it).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stream_window: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub conn_window: Option<i64>,
    /// The frame ended a header block that could not be decoded (HPACK table unknown).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub undecodable: bool,
    /// Frames on a stream: the stream's state at each endpoint after this frame (RFC 9113
    /// §5.1: `idle`, `reserved_local`, `reserved_remote`, `open`, `half_closed_local`,
    /// `half_closed_remote`, `closed`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_state: Option<Name>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_state: Option<Name>,
    /// A frame that ends a header block (END_HEADERS): the sender's HPACK dynamic table
    /// after that block, in bytes as RFC 7541 §4.1 counts them and in entries; absent when
    /// the table is unknown.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hpack_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hpack_entries: Option<u64>,
}

/// `"type": "lab"`: one at the end of every lab run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LabRec {
    pub name: String,
    pub question: String,
    pub answer: String,
    /// Only what was measured; the lab's own knobs go in `settings`.
    pub facts: serde_json::Map<String, serde_json::Value>,
    pub ok: bool,
    /// The lab's settings (request counts, users, timings it chose), kept apart from `facts`
    /// so that nothing the lab decided is read as a measurement.
    #[serde(skip_serializing_if = "serde_json::Map::is_empty", default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The name of every check that did not hold (empty when `ok`), so a failed run says why.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub failed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-made IPv4 form is the standard library's, for every octet value and ports at
    /// the edges.
    #[test]
    fn v4_endpoints_format_as_display_does() {
        for o in 0..=255u8 {
            for (a, port) in [
                ([o, 0, 9, 255], 0),
                ([10, o, 100, 1], 65535),
                ([1, 2, 3, o], 80),
            ] {
                let addr = SocketAddr::from((a, port));
                assert_eq!(Addr(addr).text(), addr.to_string());
            }
        }
        // Every port length at its edges.
        for port in [1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 10009, 60000] {
            let addr = SocketAddr::from(([255, 255, 255, 255], port));
            assert_eq!(Addr(addr).text(), addr.to_string());
            assert_eq!(Addr(addr).v4_text().unwrap().as_str(), addr.to_string());
            assert_eq!(&*Addr(addr).shared_text(), addr.to_string());
        }
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        assert_eq!(Addr(v6).text(), "[2001:db8::1]:443");
    }

    /// JSON carries the text; reading it back gives the address.
    #[test]
    fn addr_round_trips_through_json() {
        for text in ["10.0.0.1:80", "[2001:db8::1]:443", "0.0.0.0:0"] {
            let a: Addr = text.parse().unwrap();
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Addr>(&json).unwrap(), a);
        }
        assert!(serde_json::from_str::<Addr>("\"not an address\"").is_err());
    }
}
