//! TLS records and handshakes read on reassembled byte streams, beside [`crate::http`].
//!
//! [`TlsConn`] takes one connection's in-order bytes per direction (from
//! [`crate::tcp::reassembly`]) and emits a `tls_msg` [`Record`] per handshake message,
//! change-cipher-spec and alert, and at the end one `tls` record for the connection (version,
//! cipher suite, SNI, ALPN, certificate subject, how the session was set up). Messages are
//! parsed with the `tls-parser` crate, certificates with `x509-parser`. Nothing is decrypted:
//! application data is skipped record by record, counted and never stored.
//!
//! # Which connections
//!
//! The engine sends a connection here only when its first payload bytes look like a TLS
//! handshake record (type 22, version 3.x) or an SSLv2-format ClientHello ([`looks_like_tls`]),
//! a test of three bytes made once per connection: cleartext HTTP never reaches this module.
//!
//! # Each direction
//!
//! Record headers are read as they come; a handshake record's body is gathered into the
//! direction's handshake buffer, which yields each message once whole (messages may span
//! records, and records segments), at the frame that completed it. After a change-cipher-spec
//! (TLS 1.2 and older), or after the ServerHello (TLS 1.3), handshake records are encrypted
//! and only named. A gap, a record type that is not TLS or a message over [`MAX_MESSAGE`] stops
//! that direction (a diagnostic says why); what was read stays in the records.

pub mod decrypt;
pub mod keylog;
mod protected;

use crate::record::{Dir, Name, Record, TlsMsgRec, TlsRec};
use crate::types::Timestamp;
use std::borrow::Cow;
use tls_parser::{
    parse_tls_client_hello_extension, parse_tls_message_handshake,
    parse_tls_server_hello_extension, TlsCipherSuite, TlsClientHelloContents, TlsExtension,
    TlsMessage, TlsMessageHandshake, TlsServerHelloContents,
};

/// The largest handshake message gathered (certificate chains are the big ones, a few KiB to
/// tens of KiB); larger ones stop the direction rather than grow memory.
pub const MAX_MESSAGE: usize = 1 << 18;
/// Diagnostics kept per connection.
const MAX_DIAGNOSTICS: usize = 16;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

/// The ServerHello random that marks a HelloRetryRequest (RFC 8446 §4.1.3: SHA-256 of
/// "HelloRetryRequest").
const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// Do a stream's first bytes look like TLS: a handshake record (type 22, version 3.0 to 3.4),
/// or an SSLv2-format ClientHello (two-byte length with the high bit set, message type 1, a
/// version 2.0 or 3.x)? Cleartext protocols start with printable text and fail at the first
/// byte.
#[inline]
pub fn looks_like_tls(b: &[u8]) -> bool {
    match b {
        [HANDSHAKE, 3, minor, ..] => *minor <= 4,
        _ => is_sslv2_hello(b),
    }
}

fn is_sslv2_hello(b: &[u8]) -> bool {
    matches!(b, [len_hi, _, 1, major, minor, ..]
        if len_hi & 0x80 != 0 && ((*major == 0 && *minor == 2) || (*major == 3 && *minor <= 4)))
}

/// Wireshark's name for a protocol version.
pub fn version_name(v: u16) -> Name {
    Cow::Borrowed(match v {
        0x0002 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv1.0",
        0x0302 => "TLSv1.1",
        0x0303 => "TLSv1.2",
        0x0304 => "TLSv1.3",
        _ => return Cow::Owned(format!("0x{v:04x}")),
    })
}

/// The handshake message's name (RFC 8446 §4 and RFC 5246 §7.4).
fn handshake_name(t: u8) -> Name {
    Cow::Borrowed(match t {
        0 => "hello_request",
        1 => "client_hello",
        2 => "server_hello",
        3 => "hello_verify_request",
        4 => "new_session_ticket",
        5 => "end_of_early_data",
        8 => "encrypted_extensions",
        11 => "certificate",
        12 => "server_key_exchange",
        13 => "certificate_request",
        14 => "server_hello_done",
        15 => "certificate_verify",
        16 => "client_key_exchange",
        20 => "finished",
        21 => "certificate_url",
        22 => "certificate_status",
        24 => "key_update",
        67 => "next_protocol",
        _ => return Cow::Owned(format!("handshake_{t}")),
    })
}

/// `LEVEL DESCRIPTION` of an alert: tls-parser's name of the description, in snake case.
fn alert_text(level: u8, desc: u8) -> String {
    let level = match level {
        1 => "warning".to_string(),
        2 => "fatal".to_string(),
        n => format!("level_{n}"),
    };
    let name = tls_parser::TlsAlertDescription(desc).to_string();
    let desc = if name.chars().all(|c| c.is_ascii_alphanumeric()) {
        let mut s = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        }
        s
    } else {
        format!("alert_{desc}")
    };
    format!("{level} {desc}")
}

/// A hello's extensions, one at a time, up to the first that does not parse (the ones before
/// it are still worth having).
fn extensions<'a>(
    ext: Option<&'a [u8]>,
    parse: fn(&'a [u8]) -> tls_parser::IResult<&'a [u8], TlsExtension<'a>>,
) -> impl Iterator<Item = TlsExtension<'a>> {
    let mut rest = ext.unwrap_or_default();
    std::iter::from_fn(move || {
        let (r, e) = parse(rest).ok().filter(|_| !rest.is_empty())?;
        rest = r;
        Some(e)
    })
}

/// Where a direction is in its record stream.
#[derive(Debug, Default)]
enum Rec {
    /// Gathering a record header (`have` bytes of it so far).
    #[default]
    Header,
    /// Inside a record's body: `left` bytes still to come.
    Body { ctype: u8, len: u32, left: u32 },
    /// No more parsing on this direction.
    Stopped,
}

/// One direction's parser state.
#[derive(Debug, Default)]
struct Side {
    rec: Rec,
    header: [u8; 5],
    have: u8,
    /// The current record's body, for the records that are read (handshake in cleartext,
    /// alerts, change-cipher-spec).
    body: Vec<u8>,
    /// Handshake bytes not yet a whole message.
    hs: Vec<u8>,
    /// The first bytes were checked.
    started: bool,
    /// Handshake records from here on are encrypted.
    encrypted: bool,
}

/// What the hellos said, for the `tls` record.
#[derive(Debug, Default)]
struct Hellos {
    client_frame: Option<u64>,
    /// The ClientHello's random: what a key log's secrets are filed under.
    client_random: Option<keylog::Random>,
    client_session_id: Vec<u8>,
    client_ticket: bool,
    client_early_data: bool,
    sni: Option<String>,
    alpn_offered: Vec<String>,
    server: Option<ServerHello>,
    hello_retry: bool,
    cert_subject: Option<String>,
    sslv2: bool,
}

#[derive(Debug, Default)]
struct ServerHello {
    random: keylog::Random,
    version: u16,
    cipher: u16,
    session_id: Vec<u8>,
    psk: bool,
    alpn: Option<String>,
}

/// One connection's TLS state, both directions.
#[derive(Debug, Default)]
pub struct TlsConn {
    conn: u64,
    /// Push `tls_msg` records (otherwise only the connection's `tls` record).
    records: bool,
    sides: [Side; 2],
    hellos: Hellos,
    alerts: Vec<String>,
    app_records: [u64; 2],
    early_records: u64,
    diagnostics: Vec<String>,
    /// Decryption state, with a key log only ([`TlsConn::with_keys`]).
    dec: Option<Box<protected::Dec>>,
}

/// Where bytes came from, and where records go.
struct At<'o> {
    dir: Dir,
    frame: u64,
    out: &'o mut Vec<Record>,
}

impl TlsConn {
    /// Bytes held, for the engine's memory budget: the struct and its buffers.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .sides
                .iter()
                .map(|s| s.body.capacity() + s.hs.capacity())
                .sum::<usize>()
            + self.alerts.iter().map(|a| a.capacity()).sum::<usize>()
            + self.diagnostics.iter().map(|d| d.capacity()).sum::<usize>()
            + self.dec.as_ref().map_or(0, |d| d.footprint())
    }

    pub fn new(conn: u64) -> Self {
        TlsConn {
            conn,
            records: true,
            ..Default::default()
        }
    }

    /// A parser that pushes only the connection's `tls` record, no `tls_msg`.
    pub fn counting(conn: u64) -> Self {
        TlsConn {
            records: false,
            ..TlsConn::new(conn)
        }
    }

    /// The connection's index.
    pub fn conn(&self) -> u64 {
        self.conn
    }

    /// Whether it pushes `tls_msg` records (and its decrypted HTTP gets records too).
    pub fn makes_records(&self) -> bool {
        self.records
    }

    fn diag(&mut self, text: String) {
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics.push(text);
        }
    }

    /// In-order bytes of direction `dir`, delivered by the segment in `frame`.
    pub fn on_data(
        &mut self,
        dir: Dir,
        mut data: &[u8],
        frame: u64,
        _ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        let i = dir.idx();
        if !self.sides[i].started {
            self.sides[i].started = true;
            if is_sslv2_hello(data) {
                self.sslv2_hello(dir, data, frame, out);
                return;
            }
            // The connection began with a TLS handshake; the other side may well answer with
            // an alert, but must answer with a record.
            if !matches!(data, [CHANGE_CIPHER_SPEC..=HEARTBEAT, 3, 0..=4, ..]) && data.len() >= 3 {
                self.stop(dir, "does not start with a TLS record");
                return;
            }
        }
        let mut at = At { dir, frame, out };
        while !data.is_empty() {
            let tls13 = self.is_tls13();
            let decrypting = self.dec.is_some();
            let side = &mut self.sides[i];
            match side.rec {
                Rec::Stopped => return,
                Rec::Header => {
                    let take = (5 - side.have as usize).min(data.len());
                    side.header[side.have as usize..side.have as usize + take]
                        .copy_from_slice(&data[..take]);
                    side.have += take as u8;
                    data = &data[take..];
                    if side.have == 5 {
                        side.have = 0;
                        let [ctype, major, _, hi, lo] = side.header;
                        let len = u16::from_be_bytes([hi, lo]) as u32;
                        if !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&ctype) || major != 3 {
                            let why = format!(
                                "a record header that is not TLS (type {ctype}, version {major}.x)"
                            );
                            self.stop(dir, &why);
                            return;
                        }
                        side.body.clear();
                        side.rec = Rec::Body {
                            ctype,
                            len,
                            left: len,
                        };
                        if len == 0 {
                            self.record_done(&mut at, ctype, 0);
                        }
                    }
                }
                Rec::Body { ctype, len, left } => {
                    let take = (left as usize).min(data.len());
                    // Only records that are read are kept; application data is skipped.
                    let keep = match ctype {
                        HANDSHAKE if !side.encrypted => take,
                        // An alert's two bytes; nothing of an encrypted one is needed.
                        ALERT => take.min(2usize.saturating_sub(side.body.len())),
                        _ => 0,
                    };
                    side.body.extend_from_slice(&data[..keep]);
                    if decrypting && protected::protected(ctype, side.encrypted, tls13) {
                        if let Some(d) = self.dec.as_deref_mut() {
                            d.keep(dir, &data[..take]);
                        }
                    }
                    data = &data[take..];
                    let left = left - take as u32;
                    side.rec = Rec::Body { ctype, len, left };
                    if left == 0 {
                        self.record_done(&mut at, ctype, len);
                    }
                }
            }
        }
    }

    /// A record's body is complete: act on it, and expect the next header.
    fn record_done(&mut self, at: &mut At<'_>, ctype: u8, len: u32) {
        let i = at.dir.idx();
        if self.dec.is_some()
            && protected::protected(ctype, self.sides[i].encrypted, self.is_tls13())
        {
            self.open_record(at);
        }
        let side = &mut self.sides[i];
        side.rec = Rec::Header;
        match ctype {
            HANDSHAKE if side.encrypted => {
                self.msg(at, HANDSHAKE, None, "encrypted_handshake".into(), len, None)
            }
            HANDSHAKE => {
                let body = std::mem::take(&mut side.body);
                side.hs.extend_from_slice(&body);
                side.body = body;
                self.handshake_messages(at);
            }
            CHANGE_CIPHER_SPEC => {
                // TLS 1.3 sends it only for middleboxes' sake (RFC 8446 §D.4): keys change at
                // the ServerHello there, not here.
                if !self.is_tls13() {
                    self.sides[i].encrypted = true;
                }
                self.msg(at, ctype, None, "change_cipher_spec".into(), len, None)
            }
            ALERT => {
                let side = &self.sides[i];
                if len == 2 && !side.encrypted {
                    let text = alert_text(side.body[0], side.body[1]);
                    self.alerts.push(text.clone());
                    self.msg(at, ALERT, None, "alert".into(), len, Some(text))
                } else {
                    // Named when a key log opened it (TLS 1.2; 1.3's travel as application data).
                    let text = self.dec.as_deref_mut().and_then(|d| d.alert.take());
                    self.alerts.push(text.unwrap_or_else(|| "encrypted".into()));
                    self.msg(at, ALERT, None, "encrypted_alert".into(), len, None)
                }
            }
            APPLICATION_DATA => {
                self.app_records[i] += 1;
                if at.dir == Dir::C2s && self.hellos.server.is_none() {
                    // Before any ServerHello: 0-RTT early data (TLS 1.3).
                    self.early_records += 1;
                }
            }
            _ => {}
        }
    }

    fn is_tls13(&self) -> bool {
        self.hellos
            .server
            .as_ref()
            .is_some_and(|s| s.version == 0x0304)
    }

    /// Every whole message in the direction's handshake buffer.
    fn handshake_messages(&mut self, at: &mut At<'_>) {
        let i = at.dir.idx();
        loop {
            let hs = &self.sides[i].hs;
            if hs.len() < 4 {
                return;
            }
            let len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
            if len > MAX_MESSAGE {
                let t = hs[0];
                self.stop(
                    at.dir,
                    &format!("a handshake message (type {t}) of {len} bytes, over the cap"),
                );
                return;
            }
            if hs.len() < 4 + len {
                return;
            }
            let msg: Vec<u8> = self.sides[i].hs.drain(..4 + len).collect();
            self.handshake(at, &msg);
            if self.sides[i].encrypted {
                // The keys changed inside this record (TLS 1.3's ServerHello): what follows
                // in it is not cleartext.
                self.sides[i].hs.clear();
                return;
            }
        }
    }

    /// One whole handshake message (header included).
    fn handshake(&mut self, at: &mut At<'_>, raw: &[u8]) {
        let t = raw[0];
        let len = raw.len() as u32 - 4;
        let mut name = handshake_name(t);
        match parse_tls_message_handshake(raw) {
            Ok((_, TlsMessage::Handshake(m))) => match m {
                TlsMessageHandshake::ClientHello(ch) => {
                    if at.dir == Dir::C2s && self.hellos.client_frame.is_none() {
                        self.hellos.client_frame = Some(at.frame);
                        self.hellos.client_random = ch.random.try_into().ok();
                    }
                    self.client_hello(&ch);
                }
                TlsMessageHandshake::ServerHello(sh) => {
                    if sh.random == HRR_RANDOM {
                        self.hellos.hello_retry = true;
                        name = "hello_retry_request".into();
                    } else {
                        self.server_hello(&sh);
                        if self.is_tls13() {
                            // Everything after the ServerHello is encrypted, both ways.
                            for s in &mut self.sides {
                                s.encrypted = true;
                            }
                        }
                    }
                }
                TlsMessageHandshake::Certificate(c)
                    if at.dir == Dir::S2c && self.hellos.cert_subject.is_none() =>
                {
                    if let Some(first) = c.cert_chain.first() {
                        match x509_parser::parse_x509_certificate(first.data) {
                            Ok((_, cert)) => {
                                self.hellos.cert_subject = Some(cert.subject().to_string())
                            }
                            Err(e) => self.diag(format!(
                                "tls: the server's certificate at frame {} could not be read: {e}",
                                at.frame
                            )),
                        }
                    }
                }
                _ => {}
            },
            Ok(_) => {}
            Err(_) => self.diag(format!(
                "tls: a {name} message at frame {} could not be parsed",
                at.frame
            )),
        }
        self.msg(at, HANDSHAKE, Some(t), name, len, None);
    }

    fn client_hello(&mut self, ch: &TlsClientHelloContents<'_>) {
        let h = &mut self.hellos;
        h.client_session_id = ch.session_id.unwrap_or_default().to_vec();
        for e in extensions(ch.ext, parse_tls_client_hello_extension) {
            match e {
                TlsExtension::SNI(names) => {
                    if let Some((_, n)) = names.first() {
                        h.sni = Some(String::from_utf8_lossy(n).into_owned());
                    }
                }
                TlsExtension::ALPN(protos) => {
                    h.alpn_offered = protos
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                }
                TlsExtension::SessionTicket(t) => h.client_ticket = !t.is_empty(),
                TlsExtension::EarlyData(_) => h.client_early_data = true,
                _ => {}
            }
        }
    }

    fn server_hello(&mut self, sh: &TlsServerHelloContents<'_>) {
        let mut s = ServerHello {
            random: sh.random.try_into().unwrap_or([0; 32]),
            version: sh.version.0,
            cipher: sh.cipher.0,
            session_id: sh.session_id.unwrap_or_default().to_vec(),
            ..Default::default()
        };
        for e in extensions(sh.ext, parse_tls_server_hello_extension) {
            match e {
                TlsExtension::SupportedVersions(v) => {
                    if let Some(v) = v.first() {
                        s.version = v.0;
                    }
                }
                TlsExtension::PreSharedKey(_) => s.psk = true,
                TlsExtension::ALPN(p) => {
                    s.alpn = p.first().map(|p| String::from_utf8_lossy(p).into_owned())
                }
                _ => {}
            }
        }
        self.hellos.server = Some(s);
    }

    fn sslv2_hello(&mut self, dir: Dir, data: &[u8], frame: u64, out: &mut Vec<Record>) {
        self.hellos.sslv2 = true;
        let len = u16::from_be_bytes([data[0] & 0x7f, data[1]]) as u32;
        let mut at = At { dir, frame, out };
        self.msg(&mut at, 0, Some(1), "sslv2_client_hello".into(), len, None);
        // Named, not parsed further (SSLv2 is long dead; its hellos still open some scans).
        self.sides[dir.idx()].rec = Rec::Stopped;
    }

    fn msg(
        &mut self,
        at: &mut At<'_>,
        content_type: u8,
        handshake_type: Option<u8>,
        msg: Name,
        len: u32,
        alert: Option<String>,
    ) {
        if self.records {
            at.out.push(Record::TlsMsg(TlsMsgRec {
                conn: self.conn,
                dir: at.dir,
                frame: at.frame,
                content_type,
                handshake_type,
                msg,
                len,
                alert,
            }));
        }
    }

    fn stop(&mut self, dir: Dir, why: &str) {
        let side = &mut self.sides[dir.idx()];
        if matches!(side.rec, Rec::Stopped) {
            return;
        }
        side.rec = Rec::Stopped;
        side.hs = Vec::new();
        side.body = Vec::new();
        self.diag(format!("tls: {} stopped: {why}", dir.as_str()));
    }

    /// Bytes lost on `dir`: record boundaries are lost with them.
    pub fn on_gap(&mut self, dir: Dir, n: u64, frame: u64) {
        if !matches!(self.sides[dir.idx()].rec, Rec::Stopped) {
            self.protected_gap(dir);
            self.stop(
                dir,
                &format!("{n} bytes missing before frame {frame} (record boundaries lost)"),
            );
        }
    }

    /// The connection's `tls` record, and its diagnostics.
    pub fn finish(self) -> (TlsRec, Vec<String>) {
        let counts = self.decrypt_counts();
        let h = self.hellos;
        let mut rec = TlsRec {
            conn: self.conn,
            frame: h.client_frame,
            sni: h.sni,
            alpn_offered: h.alpn_offered,
            cert_subject: h.cert_subject,
            hello_retry: h.hello_retry,
            alerts: self.alerts,
            app_records: self.app_records,
            early_records: self.early_records,
            ..Default::default()
        };
        if h.sslv2 {
            rec.version = Some("SSLv2".into());
        }
        if let Some(s) = h.server {
            rec.version = Some(version_name(s.version));
            rec.cipher_id = Some(s.cipher);
            rec.cipher = Some(match TlsCipherSuite::from_id(s.cipher) {
                Some(c) => Cow::Borrowed(c.name),
                None => Cow::Owned(format!("0x{:04x}", s.cipher)),
            });
            rec.alpn = s.alpn;
            rec.setup = Some(Cow::Borrowed(if s.version == 0x0304 {
                match (s.psk, h.client_early_data) {
                    (false, _) => "full",
                    (true, false) => "resumed_psk",
                    (true, true) => "0rtt",
                }
            } else if !s.session_id.is_empty() && s.session_id == h.client_session_id {
                // The server echoed the client's session ID: an abbreviated handshake (RFC 5246
                // §7.4.1.3); with a ticket offered, the ticket is what resumed it (RFC 5077
                // §3.4).
                if h.client_ticket {
                    "resumed_ticket"
                } else {
                    "resumed_id"
                }
            } else {
                "full"
            }));
        }
        if let Some((decrypted, not)) = counts {
            rec.decrypted = Some(decrypted);
            rec.not_decrypted = not;
        }
        (rec, self.diagnostics)
    }
}

#[cfg(test)]
mod tests;
