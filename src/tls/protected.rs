//! The protected records of a connection, decrypted when a key log is given
//! ([`TlsConn::with_keys`]): which key each direction uses when, and what became of each record.
//!
//! * TLS 1.2: from a direction's change-cipher-spec on, its records (Finished, application
//!   data, alerts) are opened with the key made from the master secret, sequence numbers from 0.
//! * TLS 1.3: after the ServerHello each direction uses its handshake traffic secret, and its
//!   application traffic secret from the record after its own Finished (KeyUpdate moves it on).
//!   Decrypted handshake messages are read too: the server's certificate subject and chosen
//!   ALPN, which TLS 1.3 no longer sends in cleartext.
//! * TLS 1.3 0-RTT: the client's records before the ServerHello, and those after it that the
//!   handshake key does not open while the client offered early data (more early data, its
//!   EndOfEarlyData), are opened with the client's early traffic secret, under the suite that
//!   opens the first of them. Without that secret they are counted `early_data`.
//!
//! Decrypted alerts are named in `alerts` (`warning close_notify`) instead of `encrypted`; TLS
//! 1.3's, which travel as application data, are listed too.
//!
//! Application data is handed on as plaintext ([`TlsConn::plaintext`]) for the engine to parse
//! as HTTP. Records that are not decrypted are counted by reason, `not_decrypted` in the `tls`
//! record.

use super::decrypt::{next_secret, suite, Hash, Opened, RecordKey, Suite};
use super::keylog::{KeyStore, Random, Secrets};
use super::{extensions, At, TlsConn, ALERT, APPLICATION_DATA, HANDSHAKE, MAX_MESSAGE};
use crate::record::Dir;
use std::collections::BTreeMap;
use std::sync::Arc;
use tls_parser::{parse_tls_server_hello_extension, TlsExtension};

/// Why a protected record was not decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The key log has no secret for this connection's client random (or no ClientHello was
    /// seen to take the random from).
    NoKey,
    /// A cipher suite not decrypted here (CBC suites, TLS 1.1 and older).
    Unsupported,
    /// Bytes of the stream were not captured: the record was cut (and the direction's records
    /// after it are not read).
    Gap,
    /// The record's tag did not authenticate: the secret is not this connection's.
    AuthFailed,
    /// TLS 1.3 0-RTT data without the client's early traffic secret in the key log.
    EarlyData,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::NoKey => "no_key",
            Reason::Unsupported => "unsupported_cipher",
            Reason::Gap => "gap",
            Reason::AuthFailed => "auth_failed",
            Reason::EarlyData => "early_data",
        }
    }
}

/// One direction's decryption state.
#[derive(Debug, Default)]
struct DirDec {
    key: Option<RecordKey>,
    /// Set once keys were sought and could not be had: every later record is counted so.
    fail: Option<Reason>,
    /// TLS 1.3: the current application traffic secret (for KeyUpdate).
    app_secret: Option<Vec<u8>>,
    /// TLS 1.3: the handshake key is in use (until this direction's Finished).
    handshake: bool,
    /// The current record's ciphertext.
    buf: Vec<u8>,
    /// TLS 1.3: decrypted handshake bytes not yet a whole message.
    hs: Vec<u8>,
    /// Protected records seen since the ServerHello (the sequence number of a key made late).
    seen: u64,
    /// TLS 1.3, the client: the 0-RTT key, once a record opened with it.
    early: Option<RecordKey>,
}

/// A connection's decryption state (boxed in [`TlsConn`], only with a key log).
#[derive(Debug)]
pub struct Dec {
    keys: Arc<KeyStore>,
    /// The key log's secrets for this connection, once found.
    secrets: Option<Secrets>,
    dirs: [DirDec; 2],
    /// Application data decrypted by the last `on_data` call.
    plain: Vec<u8>,
    decrypted: [u64; 2],
    not_decrypted: BTreeMap<&'static str, u64>,
    /// TLS 1.2: the alert the record being finished decrypted to.
    pub(super) alert: Option<String>,
    /// No suite opened the first 0-RTT record with the early secret.
    early_failed: bool,
}

/// Above this, the plaintext buffer is given back after use.
const PLAIN_KEEP: usize = 1 << 16;
/// Above this, a record's ciphertext buffer is given back once the record is opened.
const RECORD_KEEP: usize = 4096;

impl Dec {
    pub fn new(keys: Arc<KeyStore>) -> Self {
        Dec {
            keys,
            secrets: None,
            dirs: Default::default(),
            plain: Vec::new(),
            decrypted: [0; 2],
            not_decrypted: BTreeMap::new(),
            alert: None,
            early_failed: false,
        }
    }

    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .dirs
                .iter()
                .map(|d| {
                    d.buf.capacity()
                        + d.hs.capacity()
                        + d.key.as_ref().map_or(0, |k| k.footprint())
                        + d.early.as_ref().map_or(0, |k| k.footprint())
                        + d.app_secret.as_ref().map_or(0, |s| s.capacity())
                })
                .sum::<usize>()
            + self.plain.capacity()
            + 256 * usize::from(self.secrets.is_some())
    }

    /// Keep `bytes` of a protected record's body on `dir`.
    pub(super) fn keep(&mut self, dir: Dir, bytes: &[u8]) {
        self.dirs[dir.idx()].buf.extend_from_slice(bytes);
    }

    fn count(&mut self, r: Reason) {
        *self.not_decrypted.entry(r.name()).or_default() += 1;
    }
}

/// Is a record of type `ctype` protected, on a direction whose keys changed (`encrypted`)?
pub(super) fn protected(ctype: u8, encrypted: bool, tls13: bool) -> bool {
    ctype == APPLICATION_DATA || (encrypted && !tls13 && (ctype == HANDSHAKE || ctype == ALERT))
}

impl TlsConn {
    /// A parser that also decrypts, with the secrets in `keys`.
    pub fn with_keys(mut self, keys: Arc<KeyStore>) -> Self {
        self.dec = Some(Box::new(Dec::new(keys)));
        self
    }

    /// The application data the last [`TlsConn::on_data`] decrypted, in order (empty without a
    /// key log); the caller parses and clears it.
    pub fn plaintext(&mut self) -> Option<&mut Vec<u8>> {
        self.dec.as_deref_mut().map(|d| &mut d.plain)
    }

    /// Give back a large plaintext buffer once it was used.
    pub fn plaintext_done(&mut self) {
        if let Some(d) = self.dec.as_deref_mut() {
            d.plain.clear();
            if d.plain.capacity() > PLAIN_KEEP {
                d.plain = Vec::new();
            }
        }
    }

    /// Counts for the `tls` record: records decrypted each way, and not, by reason.
    pub(super) fn decrypt_counts(&self) -> Option<([u64; 2], BTreeMap<String, u64>)> {
        let d = self.dec.as_deref()?;
        Some((
            d.decrypted,
            d.not_decrypted
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        ))
    }

    /// `dir` lost bytes: the record they belonged to is not decrypted.
    pub(super) fn protected_gap(&mut self, dir: Dir) {
        let i = dir.idx();
        let encrypted = self.sides[i].encrypted
            || matches!(
                self.sides[i].rec,
                super::Rec::Body {
                    ctype: APPLICATION_DATA,
                    ..
                }
            );
        if let Some(d) = self.dec.as_deref_mut() {
            if encrypted {
                d.count(Reason::Gap);
            }
            d.dirs[i].buf = Vec::new();
            d.dirs[i].hs = Vec::new();
        }
    }

    /// A protected record (its body kept by [`Dec::keep`]) is whole.
    pub(super) fn open_record(&mut self, at: &mut At<'_>) {
        let i = at.dir.idx();
        let header = self.sides[i].header;
        let Some(d) = self.dec.as_deref_mut() else {
            return;
        };
        let mut buf = std::mem::take(&mut d.dirs[i].buf);
        if self.hellos.server.is_none() {
            // Before any ServerHello only the client's 0-RTT data is protected.
            match self.open_early(&header, &mut buf) {
                Ok(o) => self.opened(at, o, &buf),
                Err(r) => self.dec_mut().count(r),
            }
        } else {
            let made = self.key_for(at.dir);
            self.dec_mut().dirs[i].seen += 1;
            match made {
                Err(r) => self.dec_mut().count(r),
                Ok(()) => self.open_protected(at, &header, &mut buf),
            }
        }
        // A full-size record's buffer (16 KiB) is not held between records: many connections
        // sit idle between them.
        buf.clear();
        if buf.capacity() <= RECORD_KEEP {
            self.dec_mut().dirs[i].buf = buf;
        }
    }

    /// Decrypted: count it and pass its plaintext on.
    fn opened(&mut self, at: &mut At<'_>, o: Opened, buf: &[u8]) {
        self.dec_mut().decrypted[at.dir.idx()] += 1;
        let tls13 = self.is_tls13() || self.hellos.server.is_none();
        self.on_plain(at, o.ctype, &buf[o.range], tls13);
    }

    /// A record after the ServerHello, with the direction's key made.
    fn open_protected(&mut self, at: &mut At<'_>, header: &[u8; 5], buf: &mut [u8]) {
        let i = at.dir.idx();
        let tls13 = self.is_tls13();
        let early_offered = self.hellos.client_early_data && at.dir == Dir::C2s;
        let d = self.dec_mut();
        // TLS 1.3 under the handshake key: keep the ciphertext for a second try, with the early
        // key (0-RTT data and EndOfEarlyData come before the client's handshake records) or the
        // application key (should this direction's Finished have gone unseen).
        let handshake = tls13 && d.dirs[i].handshake;
        let mut second = handshake.then(|| buf.to_vec());
        let key = d.dirs[i].key.as_mut().expect("key_for made it");
        if let Some(o) = key.open(header, buf) {
            return self.opened(at, o, buf);
        }
        if handshake && early_offered {
            let d = self.dec_mut();
            // Not a record of the handshake key: its sequence number stays.
            if let Some(k) = d.dirs[i].key.as_mut() {
                k.seq -= 1;
            }
            let again = second.as_mut().expect("kept for the handshake key");
            let opened = match d.dirs[i].early.as_mut() {
                Some(k) => k.open(header, again),
                // The early secret opened nothing before (a wrong one), or there is none.
                None if d.early_failed => return d.count(Reason::AuthFailed),
                None => return d.count(Reason::EarlyData),
            };
            match opened {
                Some(o) => self.opened(at, o, again),
                None => d.count(Reason::AuthFailed),
            }
            return;
        }
        let opened = second.and_then(|mut again| {
            self.app_key_opens(at.dir, header, &mut again)
                .then_some(again)
        });
        match opened {
            Some(again) => {
                let key = self.dec_mut().dirs[i]
                    .key
                    .as_ref()
                    .expect("made by app_key_opens");
                let o = key.last.clone();
                self.opened(at, o, &again);
            }
            None => self.dec_mut().count(Reason::AuthFailed),
        }
    }

    /// TLS 1.3 0-RTT data: the client's early traffic secret, under the suite that opens the
    /// first record (the PSK's; the secret's length tells its hash), kept for the records after.
    fn open_early(&mut self, header: &[u8; 5], buf: &mut [u8]) -> Result<Opened, Reason> {
        let d = self.dec_mut();
        if let Some(k) = d.dirs[0].early.as_mut() {
            return k.open(header, buf).ok_or(Reason::AuthFailed);
        }
        if d.early_failed {
            return Err(Reason::AuthFailed);
        }
        let secret = self
            .secrets()?
            .client_early
            .clone()
            .ok_or(Reason::EarlyData)?;
        let candidates: &[u16] = if secret.len() == 48 {
            &[0x1302]
        } else {
            &[0x1301, 0x1303]
        };
        for &id in candidates {
            let Some(mut k) = suite(id).and_then(|s| RecordKey::tls13(s, &secret)) else {
                continue;
            };
            let mut again = buf.to_vec();
            if let Some(o) = k.open(header, &mut again) {
                buf.copy_from_slice(&again);
                self.dec_mut().dirs[0].early = Some(k);
                return Ok(o);
            }
        }
        // No suite opens it: the early records after it are not tried again.
        self.dec_mut().early_failed = true;
        Err(Reason::AuthFailed)
    }

    fn dec_mut(&mut self) -> &mut Dec {
        self.dec.as_deref_mut().expect("decrypting")
    }

    /// TLS 1.3: does this record open with `dir`'s application key (sequence number 0)? If so
    /// the direction goes over to it, the record opened in `buf` (see [`RecordKey::last`]).
    fn app_key_opens(&mut self, dir: Dir, header: &[u8; 5], buf: &mut [u8]) -> bool {
        let secret = self.secrets().ok().and_then(|s| match dir {
            Dir::C2s => s.client_app.clone(),
            Dir::S2c => s.server_app.clone(),
        });
        let s = self.hellos.server.as_ref().and_then(|s| suite(s.cipher));
        let Some(mut key) = s
            .zip(secret.as_deref())
            .and_then(|(s, secret)| RecordKey::tls13(s, secret))
        else {
            return false;
        };
        if key.open(header, buf).is_none() {
            return false;
        }
        let dd = &mut self.dec_mut().dirs[dir.idx()];
        dd.handshake = false;
        dd.key = Some(key);
        dd.app_secret = secret;
        true
    }

    /// Make `dir`'s key if it has none yet, or say why there is none.
    fn key_for(&mut self, dir: Dir) -> Result<(), Reason> {
        let i = dir.idx();
        let d = self.dec_mut();
        if d.dirs[i].key.is_some() {
            return Ok(());
        }
        if let Some(r) = d.dirs[i].fail {
            return Err(r);
        }
        // Before any ServerHello only the client's 0-RTT data is protected.
        let Some(sh) = self.hellos.server.as_ref() else {
            return Err(Reason::EarlyData);
        };
        let (version, cipher, server_random) = (sh.version, sh.cipher, sh.random);
        let made = self.make_key(dir, version, cipher, server_random);
        let d = self.dec_mut();
        match made {
            Ok(mut k) => {
                // Keys found late (a key log still being written, `live`): the records before
                // were numbered all the same.
                k.seq = d.dirs[i].seen;
                d.dirs[i].handshake = version == 0x0304;
                d.dirs[i].key = Some(k);
                Ok(())
            }
            // A key log still being written may have it by the next record.
            Err(Reason::NoKey) if d.keys.is_growing() => Err(Reason::NoKey),
            Err(r) => {
                d.dirs[i].fail = Some(r);
                Err(r)
            }
        }
    }

    fn secrets(&mut self) -> Result<&Secrets, Reason> {
        let random: Random = self.hellos.client_random.ok_or(Reason::NoKey)?;
        let d = self.dec.as_deref_mut().expect("decrypting");
        if d.secrets.is_none() {
            d.secrets = d.keys.lookup(&random);
        }
        d.secrets.as_ref().ok_or(Reason::NoKey)
    }

    fn make_key(
        &mut self,
        dir: Dir,
        version: u16,
        cipher: u16,
        server_random: Random,
    ) -> Result<RecordKey, Reason> {
        let tls13 = version == 0x0304;
        let s = suite(cipher)
            .filter(|_| (cipher >> 8 == 0x13) == tls13 && version >= 0x0303)
            .ok_or(Reason::Unsupported)?;
        let client_random = self.hellos.client_random.ok_or(Reason::NoKey)?;
        let secrets = self.secrets()?;
        let key = if tls13 {
            let secret = match dir {
                Dir::C2s => secrets.client_handshake.as_deref(),
                Dir::S2c => secrets.server_handshake.as_deref(),
            };
            RecordKey::tls13(s, secret.ok_or(Reason::NoKey)?)
        } else {
            let master = secrets.master.as_deref().ok_or(Reason::NoKey)?;
            RecordKey::tls12(s, master, &client_random, &server_random, dir == Dir::C2s)
        };
        key.ok_or(Reason::NoKey)
    }

    /// A record's plaintext, of (inner) content type `ctype`.
    fn on_plain(&mut self, at: &mut At<'_>, ctype: u8, text: &[u8], tls13: bool) {
        match ctype {
            APPLICATION_DATA => self.dec_mut().plain.extend_from_slice(text),
            ALERT if text.len() == 2 => {
                let a = super::alert_text(text[0], text[1]);
                if tls13 {
                    self.alerts.push(a);
                } else {
                    // The record's own turn names it in `alerts`.
                    self.dec_mut().alert = Some(a);
                }
            }
            HANDSHAKE if tls13 => {
                let i = at.dir.idx();
                let d = self.dec_mut();
                d.dirs[i].hs.extend_from_slice(text);
                self.protected_handshakes(at);
            }
            _ => {}
        }
    }

    /// TLS 1.3: every whole decrypted handshake message of `at.dir`.
    fn protected_handshakes(&mut self, at: &mut At<'_>) {
        let i = at.dir.idx();
        loop {
            let hs = &self.dec_mut().dirs[i].hs;
            if hs.len() < 4 {
                return;
            }
            let len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
            if len > MAX_MESSAGE {
                // Nothing more of this direction's handshake is read; its key stays.
                self.dec_mut().dirs[i].hs = Vec::new();
                return;
            }
            if hs.len() < 4 + len {
                return;
            }
            let msg: Vec<u8> = self.dec_mut().dirs[i].hs.drain(..4 + len).collect();
            let hs = &mut self.dec_mut().dirs[i].hs;
            if hs.is_empty() && hs.capacity() > RECORD_KEEP {
                // The certificate's buffer is not kept for the tickets and KeyUpdates after it.
                *hs = Vec::new();
            }
            self.protected_handshake(at, msg[0], &msg[4..]);
        }
    }

    fn protected_handshake(&mut self, at: &mut At<'_>, t: u8, body: &[u8]) {
        let i = at.dir.idx();
        let hash = match self.hellos.server.as_ref().and_then(|s| suite(s.cipher)) {
            Some(Suite { hash, .. }) => hash,
            None => Hash::Sha256,
        };
        match t {
            // EncryptedExtensions: the ALPN the server chose.
            8 if at.dir == Dir::S2c && body.len() >= 2 => {
                for e in extensions(Some(&body[2..]), parse_tls_server_hello_extension) {
                    if let TlsExtension::ALPN(p) = e {
                        if let Some(s) = self.hellos.server.as_mut() {
                            s.alpn = p.first().map(|p| String::from_utf8_lossy(p).into_owned());
                        }
                    }
                }
            }
            // Certificate: request context, then the list; the first entry is the server's own.
            11 if at.dir == Dir::S2c && self.hellos.cert_subject.is_none() => {
                let ctx = *body.first().unwrap_or(&0) as usize;
                let first = body.get(1 + ctx + 3..1 + ctx + 6).and_then(|l| {
                    let n = u32::from_be_bytes([0, l[0], l[1], l[2]]) as usize;
                    body.get(1 + ctx + 6..1 + ctx + 6 + n)
                });
                if let Some(Ok((_, cert))) = first.map(x509_parser::parse_x509_certificate) {
                    self.hellos.cert_subject = Some(cert.subject().to_string());
                }
            }
            // Finished: this direction's next record uses its application secret.
            20 => {
                let secret = self.secrets().ok().and_then(|s| match at.dir {
                    Dir::C2s => s.client_app.clone(),
                    Dir::S2c => s.server_app.clone(),
                });
                self.app_key(i, secret);
            }
            // KeyUpdate: the next secret.
            24 => {
                let d = self.dec_mut();
                let next = d.dirs[i]
                    .app_secret
                    .as_deref()
                    .and_then(|s| next_secret(hash, s));
                self.app_key(i, next);
            }
            _ => {}
        }
    }

    /// Direction `i` goes over to the application traffic secret `secret`.
    fn app_key(&mut self, i: usize, secret: Option<Vec<u8>>) {
        let s = self.hellos.server.as_ref().and_then(|s| suite(s.cipher));
        let d = self.dec_mut();
        let dd = &mut d.dirs[i];
        dd.handshake = false;
        dd.key = s
            .zip(secret.as_deref())
            .and_then(|(s, secret)| RecordKey::tls13(s, secret));
        if dd.key.is_none() {
            dd.fail = Some(Reason::NoKey);
        }
        dd.app_secret = secret;
    }
}
