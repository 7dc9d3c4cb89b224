//! Record decryption with secrets from a key log ([`super::keylog`]): the AEAD suites of TLS
//! 1.2 (AES-GCM, ChaCha20-Poly1305) and TLS 1.3 (all three of its suites).
//!
//! * TLS 1.2 (RFC 5246 §6.3, RFC 5288, RFC 7905): the key block is the PRF (HMAC with the
//!   suite's hash) of the master secret, "key expansion" and the server then client random;
//!   AEAD suites take no MAC keys, so it holds the client and server write keys then their
//!   IVs. AES-GCM's nonce is the 4-byte IV then the record's 8-byte explicit nonce; ChaCha20's
//!   is the 12-byte IV XOR the sequence number. The additional data is the sequence number,
//!   type, version and plaintext length. How the master secret was agreed (ECDHE or RSA key
//!   transport) makes no difference here.
//! * TLS 1.3 (RFC 8446 §5.2, §7.3): key and IV are HKDF-Expand-Label(secret, "key"/"iv", "",
//!   len); the nonce is the IV XOR the sequence number; the additional data is the record
//!   header; the plaintext ends with the real content type then zero padding.
//!
//! Every record's tag is checked: a wrong secret fails authentication, never yields garbage.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};

/// The bulk cipher of an AEAD suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Cipher {
    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::Chacha20Poly1305 => 32,
        }
    }
}

/// The hash of a suite's PRF / HKDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
}

/// A cipher suite this module decrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    pub cipher: Cipher,
    pub hash: Hash,
}

/// The suite with IANA number `id`, if it is one decrypted here: the TLS 1.3 suites and the
/// TLS 1.2 AEAD suites with RSA, DHE or ECDHE key exchange.
pub fn suite(id: u16) -> Option<Suite> {
    use Cipher::*;
    use Hash::*;
    let (cipher, hash) = match id {
        0x1301 => (Aes128Gcm, Sha256),
        0x1302 => (Aes256Gcm, Sha384),
        0x1303 => (Chacha20Poly1305, Sha256),
        // RSA, DHE_RSA, ECDHE_ECDSA, ECDHE_RSA with AES-128-GCM (SHA-256 PRF).
        0x009C | 0x009E | 0xC02B | 0xC02F => (Aes128Gcm, Sha256),
        // The same with AES-256-GCM (SHA-384 PRF).
        0x009D | 0x009F | 0xC02C | 0xC030 => (Aes256Gcm, Sha384),
        // ECDHE_RSA, ECDHE_ECDSA, DHE_RSA with ChaCha20-Poly1305.
        0xCCA8..=0xCCAA => (Chacha20Poly1305, Sha256),
        _ => return None,
    };
    Some(Suite { cipher, hash })
}

enum Aead {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    Chacha(Box<ChaCha20Poly1305>),
}

impl Aead {
    fn new(cipher: Cipher, key: &[u8]) -> Option<Aead> {
        Some(match cipher {
            Cipher::Aes128Gcm => Aead::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            Cipher::Aes256Gcm => Aead::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            Cipher::Chacha20Poly1305 => {
                Aead::Chacha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?))
            }
        })
    }

    /// Decrypt `buf` in place if `tag` authenticates it.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let n = nonce.into();
        let t = tag.into();
        match self {
            Aead::Aes128(c) => c.decrypt_in_place_detached(n, aad, buf, t).is_ok(),
            Aead::Aes256(c) => c.decrypt_in_place_detached(n, aad, buf, t).is_ok(),
            Aead::Chacha(c) => c.decrypt_in_place_detached(n, aad, buf, t).is_ok(),
        }
    }

    /// Heap bytes of the expanded key.
    fn footprint(&self) -> usize {
        match self {
            Aead::Aes128(_) => std::mem::size_of::<Aes128Gcm>(),
            Aead::Aes256(_) => std::mem::size_of::<Aes256Gcm>(),
            Aead::Chacha(_) => std::mem::size_of::<ChaCha20Poly1305>(),
        }
    }
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Aead::Aes128(_) => "AES-128-GCM",
            Aead::Aes256(_) => "AES-256-GCM",
            Aead::Chacha(_) => "ChaCha20-Poly1305",
        })
    }
}

const TAG: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce, carried before each record's ciphertext.
const EXPLICIT: usize = 8;

/// One direction's record protection: key, IV and the next record's sequence number.
#[derive(Debug)]
pub struct RecordKey {
    aead: Aead,
    iv: [u8; 12],
    /// TLS 1.2 AES-GCM: a 4-byte implicit IV and an explicit nonce in each record.
    explicit_nonce: bool,
    tls13: bool,
    pub seq: u64,
    /// What the last successful [`RecordKey::open`] gave.
    pub last: Opened,
}

/// What a record decrypted to: its (inner, for TLS 1.3) content type and the plaintext's place
/// in the buffer given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Opened {
    pub ctype: u8,
    pub range: std::ops::Range<usize>,
}

fn hmac_p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], seed: &[u8], out: &mut [u8]) {
    let mac = <M as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    // A(1) = HMAC(secret, seed); each block is HMAC(secret, A(i) + seed).
    let mut a = mac.clone().chain_update(seed).finalize().into_bytes();
    let mut at = 0;
    while at < out.len() {
        let block = mac
            .clone()
            .chain_update(&a)
            .chain_update(seed)
            .finalize()
            .into_bytes();
        let n = (out.len() - at).min(block.len());
        out[at..at + n].copy_from_slice(&block[..n]);
        at += n;
        a = mac.clone().chain_update(&a).finalize().into_bytes();
    }
}

/// The TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed).
pub fn prf12(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let mut s = Vec::with_capacity(label.len() + seed.len());
    s.extend_from_slice(label);
    s.extend_from_slice(seed);
    match hash {
        Hash::Sha256 => hmac_p_hash::<Hmac<Sha256>>(secret, &s, out),
        Hash::Sha384 => hmac_p_hash::<Hmac<Sha384>>(secret, &s, out),
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context; `None` for a secret shorter than
/// the hash.
pub fn expand_label(hash: Hash, secret: &[u8], label: &str, len: usize) -> Option<Vec<u8>> {
    let full = format!("tls13 {label}");
    let mut info = Vec::with_capacity(4 + full.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    match hash {
        Hash::Sha256 => Hkdf::<Sha256>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .ok()?,
        Hash::Sha384 => Hkdf::<Sha384>::from_prk(secret)
            .ok()?
            .expand(&info, &mut out)
            .ok()?,
    }
    Some(out)
}

/// The next TLS 1.3 application traffic secret after a KeyUpdate (RFC 8446 §7.2).
pub fn next_secret(hash: Hash, secret: &[u8]) -> Option<Vec<u8>> {
    expand_label(hash, secret, "traffic upd", secret.len())
}

impl RecordKey {
    /// TLS 1.2: the key of the client's (`client`) or the server's records, from the master
    /// secret and both hellos' randoms.
    pub fn tls12(
        suite: Suite,
        master: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        client: bool,
    ) -> Option<RecordKey> {
        let key_len = suite.cipher.key_len();
        let iv_len = match suite.cipher {
            Cipher::Chacha20Poly1305 => 12,
            _ => 4,
        };
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        let mut block = vec![0u8; 2 * (key_len + iv_len)];
        prf12(suite.hash, master, b"key expansion", &seed, &mut block);
        let (keys, ivs) = block.split_at(2 * key_len);
        let (key, iv) = if client {
            (&keys[..key_len], &ivs[..iv_len])
        } else {
            (&keys[key_len..], &ivs[iv_len..])
        };
        let mut iv12 = [0u8; 12];
        iv12[..iv_len].copy_from_slice(iv);
        Some(RecordKey {
            aead: Aead::new(suite.cipher, key)?,
            iv: iv12,
            explicit_nonce: iv_len == 4,
            tls13: false,
            seq: 0,
            last: Opened::default(),
        })
    }

    /// TLS 1.3: the key of records protected by traffic secret `secret`.
    pub fn tls13(suite: Suite, secret: &[u8]) -> Option<RecordKey> {
        let key = expand_label(suite.hash, secret, "key", suite.cipher.key_len())?;
        let iv = expand_label(suite.hash, secret, "iv", 12)?;
        Some(RecordKey {
            aead: Aead::new(suite.cipher, &key)?,
            iv: iv.try_into().ok()?,
            explicit_nonce: false,
            tls13: true,
            seq: 0,
            last: Opened::default(),
        })
    }

    /// Heap and inline bytes held.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + self.aead.footprint()
    }

    /// The IV XOR the sequence number, left-padded to 12 bytes.
    fn xor_nonce(&self, seq: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// Decrypt the record with header `header` whose body is `body`, in place. `None` when it
    /// is too short or does not authenticate (a wrong key). Either way the sequence number
    /// moves on, as the sender's did.
    pub fn open(&mut self, header: &[u8; 5], body: &mut [u8]) -> Option<Opened> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let (start, nonce) = if self.explicit_nonce {
            if body.len() < EXPLICIT + TAG {
                return None;
            }
            let mut n = self.iv;
            n[4..].copy_from_slice(&body[..EXPLICIT]);
            (EXPLICIT, n)
        } else {
            if body.len() < TAG {
                return None;
            }
            (0, self.xor_nonce(seq))
        };
        let end = body.len() - TAG;
        let (text, tag) = body[start..].split_at_mut(end - start);
        let ok = if self.tls13 {
            self.aead.open(&nonce, header, text, tag)
        } else {
            let mut aad = [0u8; 13];
            aad[..8].copy_from_slice(&seq.to_be_bytes());
            aad[8..11].copy_from_slice(&header[..3]);
            aad[11..].copy_from_slice(&((end - start) as u16).to_be_bytes());
            self.aead.open(&nonce, &aad, text, tag)
        };
        if !ok {
            return None;
        }
        self.last = if self.tls13 {
            // TLSInnerPlaintext: content, the real type, zeros.
            let last = text.iter().rposition(|&b| b != 0)?;
            Opened {
                ctype: text[last],
                range: 0..last,
            }
        } else {
            Opened {
                ctype: header[0],
                range: start..end,
            }
        };
        Some(self.last.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::types::hex;

    /// RFC 8448 §3 (a simple 1-RTT handshake): the server's handshake traffic secret gives the
    /// key and IV the RFC lists.
    #[test]
    fn expand_label_gives_rfc_8448_keys() {
        let secret = hex(
            "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d
                          42 be fd 59 d3 91 ad 38",
        );
        let suite = suite(0x1301).unwrap();
        assert_eq!(
            expand_label(suite.hash, &secret, "key", 16).unwrap(),
            hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(
            expand_label(suite.hash, &secret, "iv", 12).unwrap(),
            hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30")
        );
        // A different secret gives different keys: the check is not of a constant.
        let mut other = secret.clone();
        other[0] ^= 1;
        assert_ne!(
            expand_label(suite.hash, &other, "key", 16).unwrap(),
            hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
    }

    /// The TLS 1.2 PRF with SHA-256 against the test vector published for it on the IETF TLS
    /// list (secret, seed and label "test label", 100 bytes); another label gives another output.
    #[test]
    fn prf12_gives_the_published_sha256_vector() {
        let secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let want = hex(
            "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95
             32 9b 52 d4 e6 1e db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7
             07 7d ef 17 ab fd 37 97 c0 56 4b ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba
             a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01 87 34 7b 66",
        );
        let mut out = vec![0; 100];
        prf12(Hash::Sha256, &secret, b"test label", &seed, &mut out);
        assert_eq!(out, want);
        prf12(Hash::Sha256, &secret, b"test lable", &seed, &mut out);
        assert_ne!(out, want);
    }
}
