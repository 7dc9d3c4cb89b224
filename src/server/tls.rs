//! `serve --tls`: the same server behind rustls (ring provider), and the two ways a TLS server
//! lets a returning client skip the full handshake.
//!
//! - **Session IDs** (`--tls-resumption ids`): the server keeps each session's secrets in its
//!   own memory (rustls's `ServerSessionMemoryCache`, 1024 sessions) under an id it hands to the
//!   client. Only that process can resume it: another instance, or the same one restarted, has
//!   never heard of the id — a server-side session, like `/session/login`. With TLS 1.3 the id
//!   travels as a "stateful" ticket, still a key into this cache.
//! - **Tickets** (`--tls-resumption tickets`, the default, as nginx does it): the server keeps
//!   nothing; it seals the session's secrets into a ticket with a key of its own, and the client
//!   carries it back. Any instance holding the key opens it — a signed token, like
//!   `/token/login`. Without `--ticket-key-file` the key is made at start and dies with the
//!   process (as tokens do without `--token-key-file`).
//! - `none`: neither; every connection is a full handshake.
//!
//! Ticket format (ours; RFC 5077 leaves it to the server): `nonce (12 random bytes) ||
//! ChaCha20-Poly1305(key, nonce, aad = "statescope-ticket-v1", rustls's session state)`. The
//! key is the 32 bytes of `--ticket-key-file` (created, mode 0600, when missing: the token key's
//! format, [`super::auth::TokenKey::load_or_create_as`]). Random 96-bit nonces are safe far
//! beyond any number of tickets one key seals here. The key never rotates: restart with a new
//! file to retire it.
//!
//! The certificate is `--tls-cert FILE --tls-key FILE` (PEM), or else one self-signed for
//! `localhost` and `127.0.0.1` made with `rcgen` at start (clients must skip verification:
//! `curl -k`). `--tls-keylog FILE` appends each connection's secrets in the NSS key log format
//! (`SSLKEYLOGFILE`), so a capture of this server can be decrypted by tshark or Wireshark.
//! ALPN offers `http/1.1`; TLS 1.2 and 1.3 are both allowed unless `--tls-version` picks one.

use super::auth::TokenKey;
use anyhow::Context;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{NoServerSessionStorage, ProducesTickets, ServerSessionMemoryCache};
use rustls::KeyLog;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;

/// How returning clients may resume (`--tls-resumption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Resumption {
    /// A session cache in this process's memory.
    Ids,
    /// Stateless tickets sealed with the ticket key.
    #[default]
    Tickets,
    /// Every handshake is full.
    None,
}

impl Resumption {
    pub fn parse(s: &str) -> Option<Resumption> {
        match s {
            "ids" => Some(Resumption::Ids),
            "tickets" => Some(Resumption::Tickets),
            "none" => Some(Resumption::None),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Resumption::Ids => "ids",
            Resumption::Tickets => "tickets",
            Resumption::None => "none",
        }
    }
}

/// One protocol version only (`--tls-version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    V12,
    V13,
}

impl TlsVersion {
    pub fn parse(s: &str) -> Option<TlsVersion> {
        match s {
            "1.2" => Some(TlsVersion::V12),
            "1.3" => Some(TlsVersion::V13),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::V12 => "1.2",
            TlsVersion::V13 => "1.3",
        }
    }
}

/// `serve --tls` settings, checked by [`crate::cli`]; files are read when the server starts.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Certificate chain and private key (PEM); `None`: self-signed, made at start.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Append session secrets here, NSS key log format.
    pub keylog: Option<PathBuf>,
    pub resumption: Resumption,
    /// The ticket key shared by instances; `None`: one made at start for this process.
    pub ticket_key_file: Option<PathBuf>,
    /// Allow only this version; `None`: TLS 1.2 and 1.3.
    pub version: Option<TlsVersion>,
}

/// Seconds a ticket is said to be good for (a hint to clients; the key does not rotate).
const TICKET_LIFETIME: u32 = 6 * 3600;
/// Sessions the `ids` cache holds (the oldest are forgotten first).
const SESSION_CACHE: usize = 1024;
const TICKET_AAD: &[u8] = b"statescope-ticket-v1";

/// A ready TLS setup: the acceptor and one line saying what it does.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub about: String,
}

impl TlsOptions {
    /// Load or make the certificate, the ticket key and the key log: every failure is one line
    /// naming the file and what to do.
    pub fn build(&self) -> anyhow::Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match self.version {
            None => rustls::ALL_VERSIONS,
            Some(TlsVersion::V12) => &[&rustls::version::TLS12],
            Some(TlsVersion::V13) => &[&rustls::version::TLS13],
        };
        let (certs, key, cert_about) = match &self.cert {
            Some((cert, key)) => {
                let (c, k) = load_pem(cert, key)?;
                (c, k, format!("certificate {}", cert.display()))
            }
            None => {
                let made = rcgen::generate_simple_self_signed(vec![
                    "localhost".to_string(),
                    "127.0.0.1".to_string(),
                ])
                .context("cannot make a self-signed certificate")?;
                let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
                (
                    vec![made.cert.der().clone()],
                    PrivateKeyDer::from(key),
                    "self-signed certificate for localhost, 127.0.0.1 (made at start; clients need -k)"
                        .to_string(),
                )
            }
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .context("rustls refused the protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| match &self.cert {
                Some((c, k)) => anyhow::anyhow!(
                    "--tls-cert {} with --tls-key {}: {e} (does the key belong to the certificate?)",
                    c.display(),
                    k.display()
                ),
                None => anyhow::anyhow!("the self-signed certificate was refused: {e}"),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let resumption_about = match self.resumption {
            Resumption::Ids => {
                config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
                format!("session ids (a cache of {SESSION_CACHE} in this process)")
            }
            Resumption::Tickets => {
                config.session_storage = Arc::new(NoServerSessionStorage {});
                let (ticketer, whose) = match &self.ticket_key_file {
                    Some(path) => (
                        Ticketer::new(TokenKey::load_or_create_as(path, "ticket")?.secret())?,
                        format!("key {}", path.display()),
                    ),
                    None => (
                        Ticketer::new(TokenKey::ephemeral().secret())?,
                        "a per-process key: tickets die with this process; share one with --ticket-key-file".to_string(),
                    ),
                };
                config.ticketer = Arc::new(ticketer);
                format!("tickets ({whose})")
            }
            Resumption::None => {
                config.session_storage = Arc::new(NoServerSessionStorage {});
                config.send_tls13_tickets = 0;
                "none (every handshake is full)".to_string()
            }
        };
        let mut about = format!(
            "tls: {}; {cert_about}; resumption: {resumption_about}",
            match self.version {
                None => "TLS 1.2 and 1.3".to_string(),
                Some(v) => format!("TLS {} only", v.name()),
            }
        );
        if let Some(path) = &self.keylog {
            config.key_log = Arc::new(NssKeyLog::open(path)?);
            about.push_str(&format!("; key log {}", path.display()));
        }
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            about,
        })
    }
}

/// The certificate chain and private key from PEM files.
fn load_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("cannot read --tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "--tls-cert {}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "cannot read --tls-key {}: {e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    Ok((certs, key))
}

/// Tickets sealed with ChaCha20-Poly1305 under one fixed key (see the module's format).
struct Ticketer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.write_str("Ticketer(chacha20-poly1305)")
    }
}

impl Ticketer {
    fn new(secret: &[u8; 32]) -> anyhow::Result<Ticketer> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, secret)
            .map_err(|_| anyhow::anyhow!("the ticket key was refused by the cipher"))?;
        Ok(Ticketer {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut body = plain.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(TICKET_AAD),
                &mut body,
            )
            .ok()?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + body.len() + tag.as_ref().len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&body);
        sealed.extend_from_slice(tag.as_ref());
        Some(sealed)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, sealed) = cipher.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(TICKET_AAD), &mut buf)
            .ok()?;
        let n = plain.len();
        buf.truncate(n);
        Some(buf)
    }
}

/// Session secrets appended to a file in the NSS key log format: `LABEL CLIENT_RANDOM SECRET`,
/// both in hex, one line each (what `SSLKEYLOGFILE` holds).
struct NssKeyLog {
    file: Mutex<std::fs::File>,
    path: PathBuf,
}

impl std::fmt::Debug for NssKeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NssKeyLog({})", self.path.display())
    }
}

impl NssKeyLog {
    fn open(path: &Path) -> anyhow::Result<NssKeyLog> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot open --tls-keylog {}: {e}; give a file in a folder you can write",
                    path.display()
                )
            })?;
        Ok(NssKeyLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
        })
    }
}

/// One key log line.
fn keylog_line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut line =
        String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
    line.push_str(label);
    line.push(' ');
    for b in client_random {
        let _ = write!(line, "{b:02x}");
    }
    line.push(' ');
    for b in secret {
        let _ = write!(line, "{b:02x}");
    }
    line.push('\n');
    line
}

impl KeyLog for NssKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = keylog_line(label, client_random, secret);
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line, so lines from concurrent handshakes never interleave.
        if let Err(e) = f.write_all(line.as_bytes()) {
            eprintln!(
                "statescope serve: cannot write --tls-keylog {}: {e}",
                self.path.display()
            );
        }
    }
}

/// The TLS handshake, bounded by `--header-timeout` (a client that stalls in it holds a slot
/// no longer than one that stalls in its request head), then HTTP as on any connection.
pub(super) async fn connection(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    conn: Arc<super::ConnCtx>,
    http: Arc<super::Http>,
) {
    let limit = conn.app.config.header_timeout;
    let failed = match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // ALPN decides: a client that picked h2 speaks HTTP/2 from its first byte.
            let proto = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => super::Proto::H2,
                _ => super::Proto::H1,
            };
            return super::connection(tls, conn, http, proto).await;
        }
        Ok(Err(e)) => format!("TLS handshake failed: {e}"),
        Err(_) => format!("TLS handshake not finished within {limit:?}"),
    };
    if let Some(log) = &conn.app.log {
        log.line(format_args!("{} conn#{} {failed}", conn.peer, conn.serial));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_under_the_same_key_only() {
        let k1 = Ticketer::new(&[7; 32]).unwrap();
        let k1_again = Ticketer::new(&[7; 32]).unwrap();
        let k2 = Ticketer::new(&[8; 32]).unwrap();
        let t = k1.encrypt(b"session state").unwrap();
        assert_eq!(t.len(), NONCE_LEN + 13 + 16);
        assert_eq!(k1_again.decrypt(&t).unwrap(), b"session state");
        assert_eq!(k2.decrypt(&t), None);
        // Altered anywhere, or cut short: refused.
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert_eq!(k1.decrypt(&bad), None, "byte {i}");
        }
        assert_eq!(k1.decrypt(&t[..t.len() - 1]), None);
        assert_eq!(k1.decrypt(&[]), None);
        // Two tickets for the same state differ (fresh nonce each).
        assert_ne!(k1.encrypt(b"x").unwrap(), k1.encrypt(b"x").unwrap());
    }

    #[test]
    fn keylog_lines_are_nss_format() {
        assert_eq!(
            keylog_line("CLIENT_RANDOM", &[0, 0xab], &[0x10, 0xff, 1]),
            "CLIENT_RANDOM 00ab 10ff01\n"
        );
    }

    #[test]
    fn names_parse_back() {
        for r in [Resumption::Ids, Resumption::Tickets, Resumption::None] {
            assert_eq!(Resumption::parse(r.name()), Some(r));
        }
        for v in [TlsVersion::V12, TlsVersion::V13] {
            assert_eq!(TlsVersion::parse(v.name()), Some(v));
        }
        assert_eq!(Resumption::parse("cache"), None);
        assert_eq!(TlsVersion::parse("1.1"), None);
        assert_eq!(Resumption::default(), Resumption::Tickets);
    }

    #[test]
    fn bad_files_are_one_line_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let opts = TlsOptions {
            cert: Some((missing.clone(), missing.clone())),
            ..TlsOptions::default()
        };
        let e = format!("{:#}", opts.build().err().unwrap());
        assert!(e.contains("--tls-cert") && e.contains("nope.pem"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let opts = TlsOptions {
            cert: Some((junk.clone(), junk.clone())),
            ..TlsOptions::default()
        };
        let e = format!("{:#}", opts.build().err().unwrap());
        assert!(e.contains("no certificate"), "{e}");
        let opts = TlsOptions {
            keylog: Some(dir.path().join("no/such/dir/keys.log")),
            ..TlsOptions::default()
        };
        let e = format!("{:#}", opts.build().err().unwrap());
        assert!(e.contains("--tls-keylog"), "{e}");
        let short = dir.path().join("short.key");
        std::fs::write(&short, [1u8; 5]).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let opts = TlsOptions {
            ticket_key_file: Some(short),
            ..TlsOptions::default()
        };
        let e = format!("{:#}", opts.build().err().unwrap());
        assert!(e.starts_with("ticket key file"), "{e}");
    }

    #[test]
    fn self_signed_setup_builds_and_says_what_it_does() {
        let t = TlsOptions::default().build().unwrap();
        assert!(t.about.contains("self-signed"), "{}", t.about);
        assert!(t.about.contains("per-process key"), "{}", t.about);
    }
}
