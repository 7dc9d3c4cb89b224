//! Login tracked two ways, side by side, so a student can see which survives a restart.
//!
//! - **Server-side session** ([`Sessions`]): login hands out a random session id in a cookie and
//!   remembers `id → user` in this process's memory. The cookie means nothing on its own; a
//!   restarted server, or a second instance, has never heard of it.
//! - **Signed token** ([`TokenKey`]): login hands out `user + expiry + HMAC-SHA256(key, …)`. The
//!   server remembers nothing; any instance holding the same key (the `--token-key-file`)
//!   recomputes the MAC and believes the token until it expires.
//!
//! Token format: `base64url(user) "." expiry "." base64url(mac)`, where `expiry` is Unix seconds
//! and `mac = HMAC-SHA256(key, "statescope-token-v1." base64url(user) "." expiry)`. The MAC is
//! compared in constant time (`Mac::verify_slice`).
//!
//! Also here: the small parsers login needs (one form field, one cookie) — written out because
//! they are a few lines each and the rules are the lesson's, not a framework's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes in a token key (the HMAC-SHA256 block would take up to 64; 32 is its output size and
/// plenty of entropy).
pub const KEY_LEN: usize = 32;

/// Longest user name accepted at login, in bytes.
pub const MAX_USER_LEN: usize = 64;

const MAC_CONTEXT: &[u8] = b"statescope-token-v1.";

type HmacSha256 = Hmac<Sha256>;

/// The secret that signs and verifies login tokens.
pub struct TokenKey {
    key: [u8; KEY_LEN],
    /// Where the key lives, or `None` for a key that dies with this process.
    file: Option<PathBuf>,
}

/// Why a key file could not be used. `what` names the key: `token` (`--token-key-file`) or
/// `ticket` (`serve --tls --ticket-key-file`, [`crate::server::tls`]).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {what} key file {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {what} key file {path}: {source}")]
    Create {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} key file {path} holds {len} bytes, not {KEY_LEN}; delete it to have a new key made"
    )]
    BadLength {
        what: &'static str,
        path: PathBuf,
        len: usize,
    },
    #[error(
        "{what} key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
}

impl TokenKey {
    /// A fresh random key held only in memory: tokens die with the process, like sessions.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        TokenKey { key, file: None }
    }

    /// Read the key at `path`, or create it (mode 0600) with fresh random bytes.
    ///
    /// Creation is atomic: the key is written to a private temporary file and hard-linked into
    /// place, so two instances starting together end up with the same key, never a half-written
    /// one.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        Self::load_or_create_as(path, "token")
    }

    /// [`TokenKey::load_or_create`] for a key of another use, named `what` in errors (the TLS
    /// ticket key shares the file format: 32 random bytes, mode 0600).
    pub fn load_or_create_as(path: &Path, what: &'static str) -> Result<Self, KeyError> {
        match read_key(path, what) {
            Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            }
            other => return other,
        }
        let create = |source| KeyError::Create {
            what,
            path: path.to_owned(),
            source,
        };
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let tmp = path.with_file_name(format!(
            ".{}.tmp{}-{:x}",
            path.file_name()
                .map_or("key".into(), |n| n.to_string_lossy()),
            std::process::id(),
            rand::rng().next_u64()
        ));
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(create)?;
            let written = f.write_all(&key).and_then(|_| f.sync_all());
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(create(e));
            }
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(TokenKey {
                key,
                file: Some(path.to_owned()),
            }),
            // Another instance created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key(path, what),
            Err(e) => Err(create(e)),
        }
    }

    /// The key file, if this key has one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The secret itself, for a key put to another use ([`TokenKey::load_or_create_as`]).
    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    fn mac(&self, user_b64: &str, expires: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(MAC_CONTEXT);
        mac.update(user_b64.as_bytes());
        mac.update(b".");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// A token saying `user` is logged in until `expires` (Unix seconds).
    pub fn sign(&self, user: &str, expires: u64) -> String {
        let user_b64 = B64.encode(user);
        let tag = self.mac(&user_b64, expires).finalize().into_bytes();
        format!("{user_b64}.{expires}.{}", B64.encode(tag))
    }

    /// Check a token's MAC, then its expiry against `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(user_b64), Some(expires), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        // Only canonical decimal: "+5" or "05" would let one MAC stand for several strings.
        let canonical = !expires.is_empty()
            && expires.bytes().all(|b| b.is_ascii_digit())
            && (expires == "0" || !expires.starts_with('0'));
        let expires: u64 = match expires.parse() {
            Ok(v) if canonical => v,
            _ => return Err(TokenError::Malformed),
        };
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(user_b64, expires)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let user = B64
            .decode(user_b64)
            .ok()
            .and_then(|u| String::from_utf8(u).ok())
            .ok_or(TokenError::Malformed)?;
        if now >= expires {
            return Err(TokenError::Expired { expires });
        }
        Ok(Claims { user, expires })
    }
}

fn read_key(path: &Path, what: &'static str) -> Result<TokenKey, KeyError> {
    use std::os::unix::fs::MetadataExt;
    let read = |source| KeyError::Read {
        what,
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    let key: [u8; KEY_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::BadLength {
            what,
            path: path.to_owned(),
            len: bytes.len(),
        })?;
    Ok(TokenKey {
        key,
        file: Some(path.to_owned()),
    })
}

/// What a token says, read without checking its signature: what anyone holding the token can
/// see (a token is signed, not encrypted). Never a reason to believe it; see [`TokenKey::verify`].
pub fn read_claims(token: &str) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(user_b64), Some(expires), Some(_tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let user = B64
        .decode(user_b64)
        .ok()
        .and_then(|u| String::from_utf8(u).ok())
        .ok_or(TokenError::Malformed)?;
    Ok(Claims { user, expires })
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: String,
    /// Unix seconds.
    pub expires: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not `user.expiry.mac`.
    Malformed,
    /// The MAC does not match: forged, altered, or signed with another key.
    BadSignature,
    /// Genuine but past its expiry.
    Expired { expires: u64 },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("token is malformed (expected USER.EXPIRY.MAC)"),
            TokenError::BadSignature => f.write_str(
                "token signature does not match (forged, altered, or signed with another key)",
            ),
            TokenError::Expired { expires } => write!(f, "token expired at {expires} (Unix time)"),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new session id: 32 bytes from the OS-seeded CSPRNG, base64url.
pub fn new_session_id() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    B64.encode(raw)
}

/// Server-side sessions kept in Redis (`SET statescope:session:ID USER EX TTL`), so every
/// instance given the same store knows every session, and a restarted instance still does.
/// The price is a round trip to the store on every request that needs the session.
pub struct SharedSessions {
    url: String,
    client: redis::Client,
    conn: tokio::sync::OnceCell<redis::aio::MultiplexedConnection>,
    ttl: Duration,
}

impl SharedSessions {
    /// Check the URL; the connection opens on first use.
    pub fn open(url: &str, ttl: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!("session store {url}: {e}; give a URL like redis://127.0.0.1:6379")
        })?;
        Ok(SharedSessions {
            url: url.to_string(),
            client,
            conn: tokio::sync::OnceCell::new(),
            ttl,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        self.conn
            .get_or_try_init(|| {
                self.client
                    .get_multiplexed_async_connection_with_config(&cfg)
            })
            .await
            .cloned()
    }

    fn key(id: &str) -> String {
        format!("statescope:session:{id}")
    }

    /// Log `user` in; returns the new session id.
    pub async fn create(&self, user: &str) -> Result<String, redis::RedisError> {
        let id = new_session_id();
        let mut c = self.conn().await?;
        let () = redis::cmd("SET")
            .arg(Self::key(&id))
            .arg(user)
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async(&mut c)
            .await?;
        Ok(id)
    }

    /// Who this session id belongs to, if the store knows it (Redis drops expired ones).
    pub async fn lookup(&self, id: &str) -> Result<Option<String>, redis::RedisError> {
        let mut c = self.conn().await?;
        redis::cmd("GET")
            .arg(Self::key(id))
            .query_async(&mut c)
            .await
    }

    /// Forget a session; true when it existed.
    pub async fn remove(&self, id: &str) -> Result<bool, redis::RedisError> {
        let mut c = self.conn().await?;
        let n: u64 = redis::cmd("DEL")
            .arg(Self::key(id))
            .query_async(&mut c)
            .await?;
        Ok(n > 0)
    }
}

/// Server-side sessions: `session id → user`, in this process's memory only.
///
/// Bounded: expired sessions are dropped when met, and when the store is full the oldest session
/// is forgotten to make room. So a flood of logins costs the earliest sessions their login,
/// never every new user theirs (refusing new logins when full locked real users out for the
/// TTL after 100 k anonymous logins).
pub struct Sessions {
    store: Mutex<Store>,
    /// Most sessions held at once.
    capacity: usize,
    /// How long a session lasts after login.
    ttl: Duration,
}

#[derive(Default)]
struct Store {
    by_id: HashMap<Arc<str>, Session>,
    /// Creation order. The TTL is the same for all, so this is also expiry order: the first
    /// entry is the next to expire and the one to evict.
    order: BTreeMap<u64, Arc<str>>,
    next: u64,
    evicted: u64,
}

struct Session {
    user: String,
    expires: Instant,
    /// Key in [`Store::order`].
    seq: u64,
}

impl Store {
    fn remove(&mut self, id: &str) -> bool {
        match self.by_id.remove(id) {
            Some(s) => {
                self.order.remove(&s.seq);
                true
            }
            None => false,
        }
    }
}

impl Sessions {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Sessions {
            store: Mutex::new(Store::default()),
            capacity,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic elsewhere while holding the lock leaves the store consistent (each change
        // touches both maps before anything can panic), so carry on rather than poison every
        // later login.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log `user` in; returns the new session id ([`new_session_id`]).
    pub fn create(&self, user: &str) -> String {
        let id: Arc<str> = new_session_id().into();
        let now = Instant::now();
        let mut store = self.lock();
        // Expired sessions first (they lead the order), then the oldest live ones.
        while let Some(entry) = store.order.first_entry() {
            let oldest = entry.get().clone();
            let expired = store.by_id.get(&oldest).is_none_or(|s| s.expires <= now);
            if !expired && store.by_id.len() < self.capacity.max(1) {
                break;
            }
            if !expired {
                store.evicted += 1;
            }
            store.remove(&oldest);
        }
        let seq = store.next;
        store.next += 1;
        store.order.insert(seq, id.clone());
        store.by_id.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                expires: now + self.ttl,
                seq,
            },
        );
        id.to_string()
    }

    /// Who this session id belongs to, if it is known and not expired.
    pub fn lookup(&self, id: &str) -> Option<String> {
        let mut store = self.lock();
        let s = store.by_id.get(id)?;
        if s.expires <= Instant::now() {
            store.remove(id);
            return None;
        }
        Some(s.user.clone())
    }

    /// Forget a session; true when it existed.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(id)
    }

    /// Sessions held right now (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live sessions forgotten so far to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// A user name fit to log in: 1..=64 bytes, no control characters.
pub fn valid_user(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Err("form field `user` is empty");
    }
    if user.len() > MAX_USER_LEN {
        return Err("form field `user` is longer than 64 bytes");
    }
    if user.chars().any(char::is_control) {
        return Err("form field `user` contains control characters");
    }
    Ok(())
}

/// The value of field `name` in an `application/x-www-form-urlencoded` body, decoded.
/// `None` when absent, or when its percent-encoding or UTF-8 is broken.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (form_decode(k)? == name).then(|| form_decode(v)).flatten()
    })
}

/// Undo form encoding: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn form_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The value of cookie `name` among `Cookie` header values (RFC 6265 §5.4: `a=b; c=d`).
pub fn cookie<'a>(headers: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    headers
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> TokenKey {
        TokenKey {
            key: [7; KEY_LEN],
            file: None,
        }
    }

    // ---- tokens ----

    #[test]
    fn claims_are_readable_without_the_key_but_only_verify_proves_them() {
        let t = key().sign("alice", 2_000);
        assert_eq!(
            read_claims(&t),
            Ok(Claims {
                user: "alice".into(),
                expires: 2_000
            })
        );
        // Another user with alice's signature: readable, and refused by verify.
        let forged = format!("{}.{}", B64.encode("mallory"), t.split_once('.').unwrap().1);
        assert_eq!(read_claims(&forged).unwrap().user, "mallory");
        assert_eq!(key().verify(&forged, 1_000), Err(TokenError::BadSignature));
        assert_eq!(read_claims("a.b"), Err(TokenError::Malformed));
        assert_eq!(read_claims("!!.5.x"), Err(TokenError::Malformed));
    }

    #[test]
    fn a_shared_store_url_is_checked_when_opened() {
        assert!(SharedSessions::open("redis://127.0.0.1:6379", Duration::from_secs(5)).is_ok());
        let e = SharedSessions::open("not a url", Duration::from_secs(5))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("redis://"), "{e}");
    }

    #[test]
    fn token_round_trip() {
        let t = key().sign("alice", 2000);
        let c = key().verify(&t, 1999).unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.expires, 2000);
    }

    #[test]
    fn token_expired() {
        let t = key().sign("alice", 2000);
        assert_eq!(
            key().verify(&t, 2000),
            Err(TokenError::Expired { expires: 2000 })
        );
    }

    #[test]
    fn token_other_key_is_bad_signature() {
        let t = key().sign("alice", 2000);
        assert_eq!(
            TokenKey::ephemeral().verify(&t, 1),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn token_altered_user_or_expiry_is_refused() {
        let t = key().sign("alice", 2000);
        let (_, rest) = t.split_once('.').unwrap();
        let forged = format!("{}.{rest}", B64.encode("mallory"));
        assert_eq!(key().verify(&forged, 1), Err(TokenError::BadSignature));
        let longer = t.replacen(".2000.", ".9000.", 1);
        assert_eq!(key().verify(&longer, 1), Err(TokenError::BadSignature));
        let padded = t.replacen(".2000.", ".02000.", 1);
        assert_eq!(key().verify(&padded, 1), Err(TokenError::Malformed));
    }

    #[test]
    fn token_malformed() {
        for t in ["", "a", "a.b", "a.1.c.d", "YQ.x.AA", "YQ.1.!!"] {
            assert_eq!(key().verify(t, 0), Err(TokenError::Malformed), "{t:?}");
        }
    }

    proptest! {
        #[test]
        fn token_verify_never_panics(s in ".{0,200}") {
            let _ = key().verify(&s, 0);
        }

        #[test]
        fn token_any_user_round_trips(user in "[^\\x00-\\x1f]{1,30}", exp in 1u64..u64::MAX) {
            let t = key().sign(&user, exp);
            prop_assert_eq!(key().verify(&t, exp - 1).unwrap().user, user);
        }

        #[test]
        fn form_field_never_panics(body in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = form_field(&body, "user");
        }
    }

    // ---- key file ----

    #[test]
    fn key_file_created_0600_and_reused() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let b = TokenKey::load_or_create(&path).unwrap();
        let t = a.sign("bob", 10);
        assert_eq!(b.verify(&t, 5).unwrap().user, "bob");
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_wrong_length_or_too_open_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = TokenKey::load_or_create(&path).err().unwrap();
        assert!(matches!(err, KeyError::BadLength { len: 5, .. }), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TokenKey::load_or_create(&path).err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn key_file_in_missing_dir_is_a_create_error() {
        let err = TokenKey::load_or_create(Path::new("/nonexistent-dir/k"))
            .err()
            .unwrap();
        assert!(matches!(err, KeyError::Create { .. }), "{err}");
    }

    // ---- sessions ----

    #[test]
    fn sessions_create_lookup_remove() {
        let s = Sessions::new(10, Duration::from_secs(60));
        let id = s.create("alice");
        assert_eq!(id.len(), 43);
        assert_eq!(s.lookup(&id).as_deref(), Some("alice"));
        assert_eq!(s.lookup("forged"), None);
        assert!(s.remove(&id));
        assert_eq!(s.lookup(&id), None);
        assert!(s.is_empty());
    }

    #[test]
    fn sessions_full_then_expired_swept_then_oldest_evicted() {
        let s = Sessions::new(2, Duration::ZERO);
        s.create("a");
        s.create("b");
        // Both already expired (ttl 0), so they make room without counting as evicted.
        s.create("c");
        assert_eq!(s.len(), 1);
        assert_eq!(s.evicted(), 0);
        let s = Sessions::new(2, Duration::from_secs(60));
        let a = s.create("a");
        let b = s.create("b");
        let c = s.create("c");
        assert_eq!(s.lookup(&a), None, "the oldest made room");
        assert_eq!(s.lookup(&b).as_deref(), Some("b"));
        assert_eq!(s.lookup(&c).as_deref(), Some("c"));
        assert_eq!((s.len(), s.evicted()), (2, 1));
        // A logged-out session leaves no trace in the order either.
        assert!(s.remove(&b));
        s.create("d");
        assert_eq!((s.len(), s.evicted()), (2, 1));
    }

    // ---- parsers ----

    #[test]
    fn form_field_decodes() {
        assert_eq!(form_field(b"user=alice", "user").as_deref(), Some("alice"));
        assert_eq!(
            form_field(b"x=1&user=a+b%21", "user").as_deref(),
            Some("a b!")
        );
        assert_eq!(form_field(b"user", "user").as_deref(), Some(""));
        assert_eq!(form_field(b"users=x", "user"), None);
        assert_eq!(form_field(b"user=%zz", "user"), None);
        assert_eq!(form_field(b"user=%ff", "user"), None);
        assert_eq!(form_field(b"user=%4", "user"), None);
    }

    #[test]
    fn cookie_finds_value() {
        let h: Vec<&[u8]> = vec![b"a=1; sid=xyz", b"b=2"];
        assert_eq!(cookie(h.iter().copied(), "sid"), Some("xyz"));
        assert_eq!(cookie(h.iter().copied(), "b"), Some("2"));
        assert_eq!(cookie(h.iter().copied(), "c"), None);
    }

    #[test]
    fn user_names() {
        assert!(valid_user("alice").is_ok());
        assert!(valid_user("").is_err());
        assert!(valid_user("a\nb").is_err());
        assert!(valid_user(&"x".repeat(65)).is_err());
    }
}
