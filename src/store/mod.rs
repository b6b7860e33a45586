//! Durable storage: the source of truth for cache entries, exact-match keys, settings and counters.
//!
//! `rocks.rs` is the only file in the crate that imports `rocksdb`. The rest of the crate talks to
//! the [`CacheStore`] trait, so a shared backend (Redis/Valkey, see DESIGN.md "Scale beyond one
//! machine") can be added later as another implementation instead of a rewrite.
//!
//! Values are opaque bytes: the cache layer encodes its entries (bincode) and owns their format.
//!
//! Encryption at rest happens here and nowhere else: values of the column families that hold
//! prompts and answers ([`Cf::is_sealed`]) are sealed on write and opened on read with the
//! keyring given to [`Store::open_encrypted`], so callers always see plaintext. See `crypto`.

mod rocks;

pub use rocks::{Cf, RawRecord, ResealReport, Store, StoreOptions};

/// Key of the exact-match table: a 32-byte hash (blake3) of the canonical request.
pub type ExactKey = [u8; 32];

/// An entry as read back in id order: `(entry id, encoded value)`.
pub type EntryRecord = (u64, Vec<u8>);

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine reported an error (I/O, corruption, lock held by another process...).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored key or value does not have the shape this code wrote (e.g. an id that is not 8 bytes).
    #[error("corrupt record in column family {cf}: {detail}")]
    Corrupt { cf: &'static str, detail: String },
    /// Entry ids are exhausted (u64::MAX handed out).
    #[error("entry id space exhausted")]
    IdsExhausted,
    /// A sealed record could not be opened (wrong key, tampered) or sealed.
    #[error("encrypted record in column family {cf}: {source}")]
    Encryption {
        /// Column family of the record.
        cf: &'static str,
        /// What failed.
        source: crate::crypto::CryptoError,
    },
    /// The data directory holds records the configured keys cannot open.
    #[error("{0}")]
    WrongKey(String),
}

/// What the cache needs from durable storage.
///
/// Every method that returns `Ok` after a write has made that write durable against a crash of
/// the process (`kill -9`); see [`StoreOptions::sync_writes`] for power loss.
pub trait CacheStore: Send + Sync {
    /// A fresh entry id: strictly greater than every id handed out before, also across restarts.
    fn next_id(&self) -> Result<u64, StoreError>;

    /// Writes an entry and, when given, its exact-match key, atomically. `id` comes from
    /// [`CacheStore::next_id`].
    fn put_entry(
        &self,
        id: u64,
        value: &[u8],
        exact_key: Option<&ExactKey>,
    ) -> Result<(), StoreError>;

    /// Reads an entry.
    fn get_entry(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes an entry and, when given, its exact-match key, atomically. Deleting a missing entry
    /// is not an error.
    fn delete_entry(&self, id: u64, exact_key: Option<&ExactKey>) -> Result<(), StoreError>;

    /// Looks up the entry id stored for an exact-match key.
    fn get_exact(&self, key: &ExactKey) -> Result<Option<u64>, StoreError>;

    /// Entries with id `>= from`, in increasing id order (index catch-up after a snapshot).
    fn entries_from(
        &self,
        from: u64,
    ) -> Box<dyn Iterator<Item = Result<EntryRecord, StoreError>> + '_>;

    /// Stores a run-time setting (e.g. a threshold changed through the admin API).
    fn put_setting(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Reads a run-time setting.
    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}
