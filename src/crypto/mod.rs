//! Encryption at rest: the sealed-record envelope and the keys that open it.
//!
//! Owns the envelope format ([`Keyring::seal`] / [`Keyring::open`]), key ids and the keyring of
//! the current and previous keys. It knows nothing of the store, the cache or the index: callers
//! hand it bytes and the associated data that binds them to where they live (column family and
//! record key, or snapshot file), and get bytes back.
//!
//! Envelope (all integers big-endian, 45 bytes of overhead):
//!
//! ```text
//! MAGIC (8) = F0 'S' 'L' 'U' 'I' 'C' 'E' 00 | VERSION (1) = 1 | key id (8) | nonce (12) |
//! AES-256-GCM ciphertext || tag (16)
//! ```
//!
//! Bytes that do not start with the magic are plaintext written before encryption was turned on;
//! [`Keyring::open`] passes them through so they keep reading, and the rotation pass seals them.
//! The magic starts with 0xF0, which no JSON text starts with, and eight fixed bytes make a
//! collision with a bincode cache entry vanishingly unlikely.
//!
//! Nonces are 96 random bits per record (ring's system RNG). NIST's bound for random nonces is
//! 2^32 records per key, far above what one gateway writes between rotations.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// First bytes of every sealed record.
pub const MAGIC: [u8; 8] = [0xF0, b'S', b'L', b'U', b'I', b'C', b'E', 0x00];
/// Envelope format version.
const VERSION: u8 = 1;
/// Bytes of a key id.
const KEY_ID_LEN: usize = 8;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// Everything before the ciphertext.
const HEADER_LEN: usize = MAGIC.len() + 1 + KEY_ID_LEN + NONCE_LEN;
/// Bytes a sealed record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Bytes of an AES-256 key.
pub const KEY_LEN: usize = 32;

/// Identifies a key without revealing it: the first 8 bytes of SHA-256("sluice-key-id" || key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// Parses the 16 hex digits [`KeyId`] displays as.
    pub fn from_hex(text: &str) -> Option<KeyId> {
        if text.len() != KEY_ID_LEN * 2 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; KEY_ID_LEN];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(KeyId(out))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key or a sealed record could not be used. Never contains key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A configured key is not 32 bytes.
    #[error("key must be {KEY_LEN} bytes, got {0}")]
    KeyLength(usize),
    /// The record was sealed under a key the keyring does not hold.
    #[error("record was encrypted with key id {found}; the configured key ids are {configured}")]
    UnknownKey {
        /// Key id named by the record.
        found: KeyId,
        /// Ids of the configured keys, comma separated (`none` without a key).
        configured: String,
    },
    /// Authentication failed: the record, its place (associated data) or the key is wrong.
    #[error("record failed authentication (changed, moved, or a different key with the same id)")]
    Tampered,
    /// Too short to be an envelope, or an unknown envelope version.
    #[error("malformed encrypted record: {0}")]
    Malformed(&'static str),
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Rng,
}

/// One AES-256-GCM key and its id.
pub struct Key {
    id: KeyId,
    aead: LessSafeKey,
}

impl Key {
    /// Builds a key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Key, CryptoError> {
        if bytes.len() != KEY_LEN {
            return Err(CryptoError::KeyLength(bytes.len()));
        }
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::KeyLength(bytes.len()))?;
        let mut h = Sha256::new();
        h.update(b"sluice-key-id");
        h.update(bytes);
        let digest = h.finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Ok(Key {
            id: KeyId(id),
            aead: LessSafeKey::new(unbound),
        })
    }

    /// The key's id, as written into every record it seals.
    pub fn id(&self) -> KeyId {
        self.id
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The current key (seals new records) and previous keys (still open old records).
///
/// Without a current key the keyring seals nothing: records are written as plaintext.
#[derive(Debug)]
pub struct Keyring {
    current: Option<Key>,
    previous: Vec<Key>,
    rng: SystemRandom,
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring {
            current: None,
            previous: Vec::new(),
            rng: SystemRandom::new(),
        }
    }
}

impl Keyring {
    /// A keyring without keys: writes plaintext, opens only plaintext.
    pub fn none() -> Keyring {
        Keyring::default()
    }

    /// A keyring sealing with `current` and also opening records under `previous`.
    pub fn new(current: Key, previous: Vec<Key>) -> Keyring {
        let previous = previous
            .into_iter()
            .filter(|k| k.id != current.id)
            .collect();
        Keyring {
            current: Some(current),
            previous,
            rng: SystemRandom::new(),
        }
    }

    /// Whether new records are sealed.
    pub fn is_enabled(&self) -> bool {
        self.current.is_some()
    }

    /// Id of the key that seals new records.
    pub fn current_id(&self) -> Option<KeyId> {
        self.current.as_ref().map(|k| k.id)
    }

    /// Whether a record sealed under `id` can be opened.
    pub fn knows(&self, id: KeyId) -> bool {
        self.key(id).is_some()
    }

    /// Ids of every key held, current first, for error messages.
    pub fn describe_ids(&self) -> String {
        let ids: Vec<String> = self
            .current
            .iter()
            .chain(&self.previous)
            .map(|k| k.id.to_string())
            .collect();
        if ids.is_empty() {
            "none (no sluice.encryption key)".to_string()
        } else {
            ids.join(", ")
        }
    }

    fn key(&self, id: KeyId) -> Option<&Key> {
        self.current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Seals `plaintext` under the current key, bound to `aad`; without a key returns it as is.
    pub fn seal<'a>(&self, aad: &[u8], plaintext: &'a [u8]) -> Result<Cow<'a, [u8]>, CryptoError> {
        match &self.current {
            None => Ok(Cow::Borrowed(plaintext)),
            Some(key) => self.seal_with(key, aad, plaintext).map(Cow::Owned),
        }
    }

    fn seal_with(&self, key: &Key, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| CryptoError::Rng)?;
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&key.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| CryptoError::Malformed("record too large"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a record: plaintext (no magic) passes through, a sealed record is authenticated
    /// against `aad` and decrypted with the key its envelope names.
    pub fn open<'a>(&self, aad: &[u8], stored: &'a [u8]) -> Result<Cow<'a, [u8]>, CryptoError> {
        let Some(id) = sealed_key_id(stored)? else {
            return Ok(Cow::Borrowed(stored));
        };
        let key = self.key(id).ok_or_else(|| CryptoError::UnknownKey {
            found: id,
            configured: self.describe_ids(),
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&stored[MAGIC.len() + 1 + KEY_ID_LEN..HEADER_LEN]);
        let mut buf = stored[HEADER_LEN..].to_vec();
        let len = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Tampered)?
            .len();
        buf.truncate(len);
        Ok(Cow::Owned(buf))
    }

    /// Whether a stored record needs the rotation pass: plaintext while a key is configured, or
    /// sealed under a key other than the current one.
    pub fn needs_reseal(&self, stored: &[u8]) -> Result<bool, CryptoError> {
        Ok(match (sealed_key_id(stored)?, self.current_id()) {
            (None, current) => current.is_some(),
            (Some(id), Some(current)) => id != current,
            (Some(_), None) => false,
        })
    }
}

/// The key id a stored record was sealed under; `None` for plaintext.
pub fn sealed_key_id(stored: &[u8]) -> Result<Option<KeyId>, CryptoError> {
    if !stored.starts_with(&MAGIC) {
        return Ok(None);
    }
    if stored.len() < OVERHEAD {
        return Err(CryptoError::Malformed("shorter than an envelope"));
    }
    if stored[MAGIC.len()] != VERSION {
        return Err(CryptoError::Malformed("unknown envelope version"));
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&stored[MAGIC.len() + 1..MAGIC.len() + 1 + KEY_ID_LEN]);
    Ok(Some(KeyId(id)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key::from_bytes(&[n; KEY_LEN]).unwrap()
    }

    fn ring(n: u8) -> Keyring {
        Keyring::new(key(n), vec![])
    }

    #[test]
    fn round_trip_hides_the_plaintext() {
        let k = ring(1);
        let text = b"the secret prompt about zebras";
        let sealed = k.seal(b"entries\0k1", text).unwrap().into_owned();
        assert_eq!(sealed.len(), text.len() + OVERHEAD);
        assert!(sealed.starts_with(&MAGIC));
        assert!(!sealed.windows(6).any(|w| w == b"zebras"));
        assert_eq!(sealed_key_id(&sealed).unwrap(), k.current_id());
        assert_eq!(k.open(b"entries\0k1", &sealed).unwrap().as_ref(), text);
        // A fresh nonce each time: the same plaintext never seals to the same bytes.
        assert_ne!(k.seal(b"entries\0k1", text).unwrap().as_ref(), &sealed[..]);
        // Empty plaintext works too.
        let empty = k.seal(b"a", b"").unwrap().into_owned();
        assert_eq!(k.open(b"a", &empty).unwrap().as_ref(), b"");
    }

    #[test]
    fn any_changed_byte_is_an_error() {
        let k = ring(1);
        let sealed = k.seal(b"aad", b"hello world").unwrap().into_owned();
        for i in MAGIC.len() + 1 + KEY_ID_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(k.open(b"aad", &bad), Err(CryptoError::Tampered), "byte {i}");
        }
        assert!(matches!(
            k.open(b"aad", &sealed[..OVERHEAD - 1]),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn a_record_moved_elsewhere_does_not_open() {
        let k = ring(1);
        let sealed = k.seal(b"entries\0id-1", b"answer").unwrap().into_owned();
        assert_eq!(
            k.open(b"entries\0id-2", &sealed),
            Err(CryptoError::Tampered)
        );
        assert_eq!(
            k.open(b"responses\0id-1", &sealed),
            Err(CryptoError::Tampered)
        );
    }

    #[test]
    fn wrong_key_names_both_ids() {
        let a = ring(1);
        let b = ring(2);
        let sealed = a.seal(b"x", b"data").unwrap().into_owned();
        match b.open(b"x", &sealed) {
            Err(CryptoError::UnknownKey { found, configured }) => {
                assert_eq!(Some(found), a.current_id());
                assert_eq!(configured, b.current_id().unwrap().to_string());
            }
            other => panic!("{other:?}"),
        }
        // A key whose id was forged onto the record still fails authentication.
        let mut forged = sealed.clone();
        forged[MAGIC.len() + 1..MAGIC.len() + 1 + KEY_ID_LEN]
            .copy_from_slice(&b.current_id().unwrap().0);
        assert_eq!(b.open(b"x", &forged), Err(CryptoError::Tampered));
        assert!(matches!(
            Keyring::none().open(b"x", &sealed),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn previous_keys_open_and_plaintext_passes_through() {
        let old = ring(1);
        let sealed = old.seal(b"x", b"old data").unwrap().into_owned();
        let rotated = Keyring::new(key(2), vec![key(1)]);
        assert_eq!(rotated.open(b"x", &sealed).unwrap().as_ref(), b"old data");
        assert!(rotated.needs_reseal(&sealed).unwrap());
        let fresh = rotated.seal(b"x", b"new").unwrap().into_owned();
        assert!(!rotated.needs_reseal(&fresh).unwrap());
        assert_eq!(sealed_key_id(&fresh).unwrap(), Some(key(2).id()));

        let plain = br#"{"id":"resp_1"}"#;
        assert_eq!(rotated.open(b"x", plain).unwrap().as_ref(), plain);
        assert!(rotated.needs_reseal(plain).unwrap());
        assert!(!Keyring::none().needs_reseal(plain).unwrap());
        assert_eq!(Keyring::none().seal(b"x", plain).unwrap().as_ref(), plain);
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert_eq!(
            Key::from_bytes(&[7; 16]).unwrap_err(),
            CryptoError::KeyLength(16)
        );
        let k = Keyring::new(key(0x41), vec![key(0x42)]);
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("AAAA") && !shown.contains("65, 65"),
            "{shown}"
        );
        let id = k.current_id().unwrap();
        assert_eq!(KeyId::from_hex(&id.to_string()), Some(id));
        assert_eq!(KeyId::from_hex("zz"), None);
        assert_eq!(k.describe_ids().split(", ").count(), 2);
    }
}
