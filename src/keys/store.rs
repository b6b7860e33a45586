//! [`KeyStore`]: virtual keys in RocksDB, mirrored in memory so that checking a key never
//! touches the disk.
//!
//! Layout (column families owned by `keys`):
//! - `Cf::Keys`: key id (UTF-8) -> the [`VirtualKey`] as JSON. Revoked keys stay, with
//!   `revoked_at` set, so that spend and logs can still name them.
//! - `Cf::KeyHashes`: sha256 of a secret (32 bytes) -> `{"id", "valid_until_ms"}`. A key has
//!   one live secret (`valid_until_ms: null`) plus, after a rotation, old secrets that work until
//!   the end of their grace period.
//!
//! Hashing: secrets are `sk-sluice-` + 32 base62 characters from the OS-seeded CSPRNG, about
//! 190 bits, so a plain (unsalted, fast) sha256 is enough: nobody can search that space, and
//! a lookup by hash needs no constant-time compare. sha256 also matches LiteLLM, whose `token`
//! is the sha256 hex of a key.
//!
//! Writes go to RocksDB first and then to memory, one writer at a time; readers see either the
//! old or the new state of a key, never half of it. The store offers no multi-record batch, so
//! writes are ordered to be safe after a crash: a record before its hash (no hash without a key),
//! `revoked_at` before deleting hashes (start-up drops hashes of revoked keys).

use super::input::KeyChanges;
use super::{KeyCachePolicy, VirtualKey};
use crate::clock::system_now_ms;
use crate::config::Secret;
use crate::store::{Cf, Store, StoreError};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Every secret starts with this.
pub const SECRET_PREFIX: &str = "sk-sluice-";
/// Random base62 characters after the prefix (32 x log2(62) ~ 190 bits).
const SECRET_RANDOM_CHARS: usize = 32;
/// Every key id starts with this.
pub const ID_PREFIX: &str = "key_";
/// How long an old secret keeps working after a rotation, unless the caller says otherwise.
pub const DEFAULT_GRACE_SECS: u64 = 86_400;

/// sha256 of a secret: the only form in which secrets are stored.
pub type SecretHash = [u8; 32];

/// Unix time in milliseconds (injectable for tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Hashes a presented secret.
pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Lower-case hex of a hash (LiteLLM's `token`).
pub fn hash_hex(hash: &SecretHash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<SecretHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// `sk-sluice-...abcd`: enough to recognise a secret, useless to an attacker.
pub fn abbreviate(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{SECRET_PREFIX}...{tail}")
}

/// Masks every `sk-sluice-...` secret in `text` (for log lines that carry client-chosen text,
/// such as request paths).
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    if !text.contains(SECRET_PREFIX) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(SECRET_PREFIX) {
        let end = i + SECRET_PREFIX.len();
        out.push_str(&rest[..end]);
        out.push_str("*****");
        rest = &rest[end..];
        let n = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
        rest = &rest[n..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A value in `Cf::KeyHashes`.
#[derive(Debug, Serialize, Deserialize)]
struct HashRecord {
    id: String,
    #[serde(default)]
    valid_until_ms: Option<u64>,
}

/// What can go wrong managing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key has this id.
    #[error("no key with id '{0}'")]
    NotFound(String),
    /// The key is revoked and cannot be changed or rotated.
    #[error("key '{0}' is revoked")]
    Revoked(String),
    /// A field is invalid.
    #[error(transparent)]
    Invalid(#[from] super::input::KeyFieldError),
    /// The store failed.
    #[error("key storage: {0}")]
    Store(#[from] StoreError),
    /// A record could not be encoded.
    #[error("cannot encode key record: {0}")]
    Encode(String),
}

/// Why a presented secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown, revoked, or an old secret whose grace period is over.
    Unknown,
    /// The key expired at this Unix second.
    Expired {
        /// `expires_at` of the key.
        at: u64,
    },
}

/// A secret that currently opens a key.
#[derive(Debug)]
struct SecretEntry {
    key: Arc<VirtualKey>,
    /// Old secrets after a rotation: rejected from this Unix millisecond on.
    valid_until_ms: Option<u64>,
}

/// The in-memory mirror of both column families.
#[derive(Debug, Default)]
struct Index {
    /// Every key by id, revoked ones included.
    keys: HashMap<String, Arc<VirtualKey>>,
    /// Live secrets.
    secrets: HashMap<SecretHash, SecretEntry>,
    /// Hashes of each key's live secrets.
    hashes: HashMap<String, Vec<SecretHash>>,
}

impl Index {
    fn insert_secret(&mut self, hash: SecretHash, key: Arc<VirtualKey>, until: Option<u64>) {
        self.hashes.entry(key.id.clone()).or_default().push(hash);
        self.secrets.insert(
            hash,
            SecretEntry {
                key,
                valid_until_ms: until,
            },
        );
    }

    fn remove_secret(&mut self, hash: &SecretHash) {
        if let Some(entry) = self.secrets.remove(hash) {
            if let Some(list) = self.hashes.get_mut(&entry.key.id) {
                list.retain(|h| h != hash);
                if list.is_empty() {
                    self.hashes.remove(&entry.key.id);
                }
            }
        }
    }

    /// Replaces a key record everywhere it is referenced.
    fn replace_key(&mut self, key: Arc<VirtualKey>) {
        for h in self.hashes.get(&key.id).into_iter().flatten() {
            if let Some(entry) = self.secrets.get_mut(h) {
                entry.key = Arc::clone(&key);
            }
        }
        self.keys.insert(key.id.clone(), key);
    }
}

/// Virtual keys: durable in RocksDB, checked from memory.
pub struct KeyStore {
    store: Arc<Store>,
    index: RwLock<Index>,
    /// One change at a time, so the disk and memory agree.
    writer: Mutex<()>,
    clock: Clock,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ix = self.index.read();
        f.debug_struct("KeyStore")
            .field("keys", &ix.keys.len())
            .field("secrets", &ix.secrets.len())
            .finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, KeyError> {
    serde_json::to_vec(value).map_err(|e| KeyError::Encode(e.to_string()))
}

fn new_secret() -> Secret {
    let random: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(SECRET_RANDOM_CHARS)
        .map(char::from)
        .collect();
    Secret::new(format!("{SECRET_PREFIX}{random}"))
}

fn new_id() -> String {
    format!("{ID_PREFIX}{:016x}", rand::rng().random::<u64>())
}

impl KeyStore {
    /// Loads every key from the store (start-up), with the system clock.
    pub fn load(store: Arc<Store>) -> Result<KeyStore, KeyError> {
        Self::load_with_clock(store, Arc::new(system_now_ms))
    }

    /// Loads every key from the store, reading time from `clock` (Unix milliseconds).
    ///
    /// Unreadable records are logged and skipped, so their keys fail closed; secrets of revoked
    /// keys and old secrets past their grace period are deleted.
    pub fn load_with_clock(store: Arc<Store>, clock: Clock) -> Result<KeyStore, KeyError> {
        let now_ms = clock();
        let mut index = Index::default();
        for item in store.iter_from(Cf::Keys, b"")? {
            let (id, value) = item?;
            match serde_json::from_slice::<VirtualKey>(&value) {
                Ok(key) => {
                    index.keys.insert(key.id.clone(), Arc::new(key));
                }
                Err(e) => tracing::error!(
                    id = %String::from_utf8_lossy(&id),
                    error = %e,
                    "skipping an unreadable key record: this key will be refused"
                ),
            }
        }
        let mut stale = Vec::new();
        for item in store.iter_from(Cf::KeyHashes, b"")? {
            let (raw, value) = item?;
            let Ok(hash) = SecretHash::try_from(&*raw) else {
                tracing::error!(len = raw.len(), "skipping a key hash of the wrong length");
                continue;
            };
            let record: HashRecord = match serde_json::from_slice(&value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "skipping an unreadable key hash record");
                    continue;
                }
            };
            // A hash whose key record is missing or unreadable is left alone (and refused).
            let Some(key) = index.keys.get(&record.id).cloned() else {
                continue;
            };
            if key.revoked_at.is_some() || record.valid_until_ms.is_some_and(|t| t <= now_ms) {
                stale.push(hash);
                continue;
            }
            index.insert_secret(hash, key, record.valid_until_ms);
        }
        for hash in &stale {
            store.delete(Cf::KeyHashes, hash)?;
        }
        tracing::info!(
            keys = index.keys.len(),
            secrets = index.secrets.len(),
            "virtual keys loaded"
        );
        Ok(KeyStore {
            store,
            index: RwLock::new(index),
            writer: Mutex::new(()),
            clock,
        })
    }

    /// Now, in Unix seconds, by this store's clock.
    pub fn now(&self) -> u64 {
        (self.clock)() / 1_000
    }

    /// The key a secret opens, if it is live, not expired, and not an old secret past its grace.
    /// Memory only: no disk access.
    pub fn authenticate(&self, secret: &str) -> Result<Arc<VirtualKey>, AuthFailure> {
        let hash = hash_secret(secret);
        let ix = self.index.read();
        let entry = ix.secrets.get(&hash).ok_or(AuthFailure::Unknown)?;
        let now_ms = (self.clock)();
        if entry.valid_until_ms.is_some_and(|t| now_ms >= t) || entry.key.revoked_at.is_some() {
            return Err(AuthFailure::Unknown);
        }
        if let Some(at) = entry.key.expires_at {
            if now_ms >= at.saturating_mul(1_000) {
                return Err(AuthFailure::Expired { at });
            }
        }
        Ok(Arc::clone(&entry.key))
    }

    /// A key by id (revoked ones included).
    pub fn get(&self, id: &str) -> Option<Arc<VirtualKey>> {
        self.index.read().keys.get(id).cloned()
    }

    /// A key by id, secret, or sha256 hex of a secret (LiteLLM's `/key/info?key=`). Expired keys
    /// are found; revoked keys only by id.
    pub fn resolve(&self, reference: &str) -> Option<Arc<VirtualKey>> {
        let ix = self.index.read();
        if let Some(k) = ix.keys.get(reference) {
            return Some(Arc::clone(k));
        }
        let hash = parse_hex(reference).unwrap_or_else(|| hash_secret(reference));
        ix.secrets.get(&hash).map(|e| Arc::clone(&e.key))
    }

    /// Every key, oldest first.
    pub fn list(&self) -> Vec<Arc<VirtualKey>> {
        let mut all: Vec<_> = self.index.read().keys.values().cloned().collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        all
    }

    /// Number of keys, revoked ones included.
    pub fn len(&self) -> usize {
        self.index.read().keys.len()
    }

    /// Whether no key exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates a key; returns it with its secret, which is not kept anywhere.
    pub fn create(&self, changes: &KeyChanges) -> Result<(Arc<VirtualKey>, Secret), KeyError> {
        let _w = self.writer.lock();
        self.sweep()?;
        let id = loop {
            let id = new_id();
            if !self.index.read().keys.contains_key(&id) {
                break id;
            }
        };
        let mut key = VirtualKey {
            id,
            alias: None,
            models: Vec::new(),
            rpm: None,
            tpm: None,
            max_parallel_requests: None,
            max_budget: None,
            budget_duration_secs: None,
            expires_at: None,
            cache_namespace: None,
            cache_policy: KeyCachePolicy::Default,
            pii: Default::default(),
            metadata: serde_json::Map::new(),
            user_id: None,
            team_id: None,
            admin: false,
            created_at: self.now(),
            revoked_at: None,
        };
        changes.apply(&mut key);
        let secret = new_secret();
        let hash = hash_secret(secret.expose());
        self.put_key(&key)?;
        self.put_hash(&hash, &key.id, None)?;
        let key = Arc::new(key);
        let mut ix = self.index.write();
        ix.keys.insert(key.id.clone(), Arc::clone(&key));
        ix.insert_secret(hash, Arc::clone(&key), None);
        tracing::info!(key_id = %key.id, "virtual key created");
        Ok((key, secret))
    }

    /// Changes fields of a live key.
    pub fn update(&self, id: &str, changes: &KeyChanges) -> Result<Arc<VirtualKey>, KeyError> {
        let _w = self.writer.lock();
        let current = self.live(id)?;
        let mut key = (*current).clone();
        changes.apply(&mut key);
        self.put_key(&key)?;
        let key = Arc::new(key);
        self.index.write().replace_key(Arc::clone(&key));
        tracing::info!(key_id = %id, "virtual key updated");
        Ok(key)
    }

    /// Revokes a key: every secret of it stops working at once. The record stays (with
    /// `revoked_at`) so spend and logs can still name it. Revoking twice is not an error.
    pub fn revoke(&self, id: &str) -> Result<Arc<VirtualKey>, KeyError> {
        let _w = self.writer.lock();
        let current = self.get(id).ok_or_else(|| KeyError::NotFound(id.into()))?;
        if current.revoked_at.is_some() {
            return Ok(current);
        }
        let mut key = (*current).clone();
        key.revoked_at = Some(self.now());
        self.put_key(&key)?;
        let key = Arc::new(key);
        let hashes = {
            let mut ix = self.index.write();
            let hashes = ix.hashes.get(id).cloned().unwrap_or_default();
            for h in &hashes {
                ix.remove_secret(h);
            }
            ix.keys.insert(key.id.clone(), Arc::clone(&key));
            hashes
        };
        // Already refused in memory; a failure here leaves hashes that start-up deletes.
        for h in &hashes {
            self.store.delete(Cf::KeyHashes, h)?;
        }
        tracing::info!(key_id = %id, "virtual key revoked");
        Ok(key)
    }

    /// Gives a live key a new secret. The old secrets keep working for `grace_secs` (0: they stop
    /// at once); an old secret already in a grace period keeps the earlier end.
    pub fn rotate(&self, id: &str, grace_secs: u64) -> Result<(Arc<VirtualKey>, Secret), KeyError> {
        let _w = self.writer.lock();
        self.sweep()?;
        let key = self.live(id)?;
        let now_ms = (self.clock)();
        let until = now_ms.saturating_add(grace_secs.saturating_mul(1_000));
        let old: Vec<(SecretHash, u64)> = {
            let ix = self.index.read();
            ix.hashes
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|h| ix.secrets.get(h).map(|e| (*h, e.valid_until_ms)))
                .map(|(h, t)| (h, t.map_or(until, |t| t.min(until))))
                .collect()
        };
        let secret = new_secret();
        let hash = hash_secret(secret.expose());
        // Old secrets first: a crash before the new hash is written loses only the new secret,
        // which was never shown to anyone.
        for (h, t) in &old {
            if *t <= now_ms {
                self.store.delete(Cf::KeyHashes, h)?;
            } else {
                self.put_hash(h, id, Some(*t))?;
            }
        }
        self.put_hash(&hash, id, None)?;
        let mut ix = self.index.write();
        for (h, t) in &old {
            if *t <= now_ms {
                ix.remove_secret(h);
            } else if let Some(e) = ix.secrets.get_mut(h) {
                e.valid_until_ms = Some(*t);
            }
        }
        ix.insert_secret(hash, Arc::clone(&key), None);
        tracing::info!(key_id = %id, grace_secs, "virtual key rotated");
        Ok((key, secret))
    }

    /// A key that exists and is not revoked.
    fn live(&self, id: &str) -> Result<Arc<VirtualKey>, KeyError> {
        let key = self.get(id).ok_or_else(|| KeyError::NotFound(id.into()))?;
        if key.revoked_at.is_some() {
            return Err(KeyError::Revoked(id.into()));
        }
        Ok(key)
    }

    /// Deletes old secrets whose grace period is over (called with the writer lock held).
    fn sweep(&self) -> Result<(), KeyError> {
        let now_ms = (self.clock)();
        let done: Vec<SecretHash> = self
            .index
            .read()
            .secrets
            .iter()
            .filter(|(_, e)| e.valid_until_ms.is_some_and(|t| t <= now_ms))
            .map(|(h, _)| *h)
            .collect();
        for h in &done {
            self.store.delete(Cf::KeyHashes, h)?;
            self.index.write().remove_secret(h);
        }
        Ok(())
    }

    fn put_key(&self, key: &VirtualKey) -> Result<(), KeyError> {
        Ok(self.store.put(Cf::Keys, key.id.as_bytes(), &encode(key)?)?)
    }

    fn put_hash(&self, hash: &SecretHash, id: &str, until: Option<u64>) -> Result<(), KeyError> {
        let record = HashRecord {
            id: id.to_string(),
            valid_until_ms: until,
        };
        Ok(self.store.put(Cf::KeyHashes, hash, &encode(&record)?)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::keys::input::Dialect;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Fixture {
        dir: tempfile::TempDir,
        now: Arc<AtomicU64>,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                now: Arc::new(AtomicU64::new(1_700_000_000_000)),
            }
        }

        fn open(&self) -> KeyStore {
            let store = Arc::new(Store::open(self.dir.path()).unwrap());
            let now = Arc::clone(&self.now);
            KeyStore::load_with_clock(store, Arc::new(move || now.load(Ordering::SeqCst))).unwrap()
        }

        fn advance_ms(&self, ms: u64) {
            self.now.fetch_add(ms, Ordering::SeqCst);
        }
    }

    fn changes(body: serde_json::Value) -> KeyChanges {
        KeyChanges::from_json(&body, Dialect::Sluice, 1_700_000_000, &|_| true).unwrap()
    }

    #[test]
    fn secrets_and_ids_have_their_format() {
        let s = new_secret();
        let random = s.expose().strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(random.len(), 32);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(new_secret().expose(), s.expose());
        let id = new_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("key_"));
        assert_eq!(
            parse_hex(&hash_hex(&hash_secret("x"))),
            Some(hash_secret("x"))
        );
        assert_eq!(abbreviate("sk-sluice-abcdefgh"), "sk-sluice-...efgh");
        assert_eq!(
            redact_secrets("/admin/keys/sk-sluice-abc123/x?sk-sluice-Z"),
            "/admin/keys/sk-sluice-*****/x?sk-sluice-*****"
        );
        assert!(matches!(redact_secrets("/v1/models"), Cow::Borrowed(_)));
    }

    #[test]
    fn create_authenticate_update_and_persist() {
        let f = Fixture::new();
        let (id, secret) = {
            let ks = f.open();
            let (k, secret) = ks
                .create(&changes(serde_json::json!({"alias": "a", "rpm": 5})))
                .unwrap();
            assert_eq!(ks.authenticate(secret.expose()).unwrap().id, k.id);
            assert_eq!(ks.authenticate("sk-sluice-nope"), Err(AuthFailure::Unknown));
            let k2 = ks
                .update(&k.id, &changes(serde_json::json!({"rpm": 9})))
                .unwrap();
            assert_eq!(k2.rpm, Some(9));
            // The in-memory secret map sees the change at once.
            assert_eq!(ks.authenticate(secret.expose()).unwrap().rpm, Some(9));
            (k.id.clone(), secret)
        };
        let ks = f.open();
        let k = ks.authenticate(secret.expose()).unwrap();
        assert_eq!(
            (k.id.as_str(), k.rpm, k.alias.as_deref()),
            (id.as_str(), Some(9), Some("a"))
        );
        assert_eq!(ks.resolve(&id).unwrap().id, id);
        assert_eq!(ks.resolve(secret.expose()).unwrap().id, id);
        assert_eq!(
            ks.resolve(&hash_hex(&hash_secret(secret.expose())))
                .unwrap()
                .id,
            id
        );
        // Only the hash is on disk.
        let raw: Vec<_> = ks
            .store
            .iter_from(Cf::KeyHashes, b"")
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(raw.len(), 1);
        assert_eq!(&*raw[0].0, &hash_secret(secret.expose()));
        for cf in [Cf::Keys, Cf::KeyHashes] {
            for r in ks.store.iter_from(cf, b"").unwrap() {
                let (k, v) = r.unwrap();
                let all = [&*k, &*v].concat();
                assert!(!String::from_utf8_lossy(&all).contains(secret.expose()));
            }
        }
    }

    #[test]
    fn expiry_is_checked_per_request() {
        let f = Fixture::new();
        let ks = f.open();
        let (_, secret) = ks
            .create(&changes(serde_json::json!({"expires": "2s"})))
            .unwrap();
        assert!(ks.authenticate(secret.expose()).is_ok());
        f.advance_ms(2_000);
        assert_eq!(
            ks.authenticate(secret.expose()),
            Err(AuthFailure::Expired { at: 1_700_000_002 })
        );
    }

    #[test]
    fn revoke_stops_every_secret_at_once_and_survives_restart() {
        let f = Fixture::new();
        let (id, s1, s2) = {
            let ks = f.open();
            let (k, s1) = ks.create(&KeyChanges::default()).unwrap();
            let (_, s2) = ks.rotate(&k.id, 3_600).unwrap();
            let revoked = ks.revoke(&k.id).unwrap();
            assert!(revoked.revoked_at.is_some());
            assert_eq!(ks.authenticate(s1.expose()), Err(AuthFailure::Unknown));
            assert_eq!(ks.authenticate(s2.expose()), Err(AuthFailure::Unknown));
            assert!(ks.revoke(&k.id).is_ok(), "revoking twice is fine");
            assert!(matches!(ks.rotate(&k.id, 0), Err(KeyError::Revoked(_))));
            assert!(matches!(
                ks.update(&k.id, &KeyChanges::default()),
                Err(KeyError::Revoked(_))
            ));
            assert!(matches!(ks.revoke("key_none"), Err(KeyError::NotFound(_))));
            (k.id.clone(), s1, s2)
        };
        let ks = f.open();
        assert!(ks.get(&id).unwrap().revoked_at.is_some());
        assert_eq!(ks.authenticate(s1.expose()), Err(AuthFailure::Unknown));
        assert_eq!(ks.authenticate(s2.expose()), Err(AuthFailure::Unknown));
        assert_eq!(ks.store.iter_from(Cf::KeyHashes, b"").unwrap().count(), 0);
    }

    #[test]
    fn rotation_grace_ends_on_time_and_across_restarts() {
        let f = Fixture::new();
        let ks = f.open();
        let (k, old) = ks.create(&KeyChanges::default()).unwrap();
        let (_, new) = ks.rotate(&k.id, 10).unwrap();
        assert!(ks.authenticate(old.expose()).is_ok());
        assert!(ks.authenticate(new.expose()).is_ok());
        f.advance_ms(9_999);
        assert!(ks.authenticate(old.expose()).is_ok());
        drop(ks);
        let ks = f.open();
        assert!(
            ks.authenticate(old.expose()).is_ok(),
            "grace survives a restart"
        );
        f.advance_ms(1);
        assert_eq!(ks.authenticate(old.expose()), Err(AuthFailure::Unknown));
        assert!(ks.authenticate(new.expose()).is_ok());
        // A second rotation with a longer grace does not extend the first old secret.
        let (_, newer) = ks.rotate(&k.id, 0).unwrap();
        assert_eq!(ks.authenticate(new.expose()), Err(AuthFailure::Unknown));
        assert!(ks.authenticate(newer.expose()).is_ok());
        assert_eq!(ks.store.iter_from(Cf::KeyHashes, b"").unwrap().count(), 1);
    }

    #[test]
    fn list_is_ordered_and_resolve_skips_revoked_secrets() {
        let f = Fixture::new();
        let ks = f.open();
        let (a, sa) = ks.create(&KeyChanges::default()).unwrap();
        f.advance_ms(1_000);
        let (b, _) = ks.create(&KeyChanges::default()).unwrap();
        let ids: Vec<_> = ks.list().iter().map(|k| k.id.clone()).collect();
        assert_eq!(ids, vec![a.id.clone(), b.id.clone()]);
        ks.revoke(&a.id).unwrap();
        assert!(ks.resolve(sa.expose()).is_none());
        assert!(ks.resolve(&a.id).is_some());
        assert_eq!(ks.len(), 2);
    }
}
