//! The RocksDB implementation of [`CacheStore`]: the only file in the crate that imports `rocksdb`.
//!
//! Durability: the write-ahead log is always on. With `sync_writes = false` (the default) every
//! write reaches the WAL file through `write(2)` before the call returns, so it sits in the OS page
//! cache and survives `kill -9` of the process; only a power loss or kernel crash can drop the
//! last few writes (a cache entry is re-creatable by asking upstream again). With
//! `sync_writes = true` every write is also `fsync`ed before it is acknowledged, which also
//! survives power loss at the price of one disk flush per write.

use std::path::Path;

use parking_lot::Mutex;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions, DB,
};

use super::{CacheStore, EntryRecord, ExactKey, StoreError};

/// Declares the column families: one line per kind of record.
macro_rules! column_families {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// A column family: one per kind of record.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Cf {
            $($(#[$doc])* $variant,)+
        }

        impl Cf {
            /// Every column family, opened (and created if missing) at [`Store::open`].
            pub const ALL: &'static [Cf] = &[$(Cf::$variant,)+];

            /// The name RocksDB knows this column family by.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Cf::$variant => $name,)+
                }
            }
        }
    };
}

column_families! {
    /// entry id (u64 big-endian, so byte order is id order) -> encoded entry.
    Entries => "entries",
    /// 32-byte request hash -> entry id (u64 big-endian).
    Exact => "exact",
    /// setting name (UTF-8) -> value, for settings changed at run time.
    Settings => "settings",
    /// counter name -> value, e.g. the entry id ceiling.
    Meta => "meta",
    /// virtual key id -> key record (owned by `keys`).
    Keys => "keys",
    /// sha256 of a key secret -> key id and validity (owned by `keys`).
    KeyHashes => "key_hashes",
    /// spend and usage rollups, budget windows (owned by `spend`).
    Spend => "spend",
    /// stored Responses API objects and their input items (owned by `responses`).
    Responses => "responses",
    /// audit record seq (u64 big-endian) -> sealed JSON record, hash-chained (owned by `audit`).
    Audit => "audit",
    /// dashboard per-minute rollups: scope, 0, minute (u64 big-endian) -> JSON bucket (owned by
    /// `dashboard`).
    Rollups => "rollups",
}

/// A raw record as read by [`Store::iter_from`]: `(key, value)`.
pub type RawRecord = (Box<[u8]>, Box<[u8]>);

/// Key in [`Cf::Meta`] of the id ceiling: every id handed out so far is below it.
const META_ID_CEILING: &[u8] = b"id_ceiling";

/// Ids are reserved in blocks so that `next_id` writes the ceiling once per block, not per id.
/// A restart skips the rest of the block: u64 ids make that free.
const ID_BLOCK: u64 = 1024;

/// Options for [`Store::open_with`].
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// `fsync` the WAL on every write: survives power loss, costs one disk flush per write.
    /// Without it, writes survive `kill -9` of the process but not a power loss.
    pub sync_writes: bool,
}

/// Ids handed out by `next_id`: `next` is the next to give, `ceiling` the persisted bound.
#[derive(Debug)]
struct IdState {
    next: u64,
    ceiling: u64,
}

/// RocksDB-backed store, one column family per kind of record.
pub struct Store {
    db: DB,
    write_opts: WriteOptions,
    ids: Mutex<IdState>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Engine(e.into_string())
    }
}

fn decode_u64(cf: Cf, bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        cf: cf.name(),
        detail: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

impl Store {
    /// Opens (or creates) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_keep_log_file_num(4);
        // Built without compression libraries (default-features = false): say so explicitly.
        db_opts.set_compression_type(DBCompressionType::None);

        let descriptors = Cf::ALL.iter().map(|cf| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(DBCompressionType::None);
            ColumnFamilyDescriptor::new(cf.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, dir, descriptors)?;

        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(options.sync_writes);

        let mut store = Store {
            db,
            write_opts,
            ids: Mutex::new(IdState {
                next: 1,
                ceiling: 0,
            }),
        };
        let persisted = match store.get(Cf::Meta, META_ID_CEILING)? {
            Some(bytes) => decode_u64(Cf::Meta, &bytes)?,
            None => 0,
        };
        // The ceiling alone is enough; the last entry key is a second opinion in case the meta
        // record was lost. Ids start at 1 so that 0 can mean "nothing yet" to callers.
        let after_last = store.last_entry_id()?.map_or(0, |id| id.saturating_add(1));
        let next = persisted.max(after_last).max(1);
        *store.ids.get_mut() = IdState {
            next,
            ceiling: next,
        };
        Ok(store)
    }

    fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StoreError::Engine(format!("column family {} not open", cf.name())))
    }

    /// Reads a raw record.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    /// Writes a raw record.
    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        Ok(self
            .db
            .put_cf_opt(self.cf(cf)?, key, value, &self.write_opts)?)
    }

    /// Deletes a raw record.
    pub fn delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        Ok(self.db.delete_cf_opt(self.cf(cf)?, key, &self.write_opts)?)
    }

    /// Raw records of one column family with key `>= from`, in key byte order.
    pub fn iter_from<'a>(
        &'a self,
        cf: Cf,
        from: &[u8],
    ) -> Result<impl Iterator<Item = Result<RawRecord, StoreError>> + 'a, StoreError> {
        let iter = self
            .db
            .iterator_cf(self.cf(cf)?, IteratorMode::From(from, Direction::Forward));
        Ok(iter.map(|item| item.map_err(StoreError::from)))
    }

    /// Entries with id `>= from`, in increasing id order.
    pub fn iter_entries_from(
        &self,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<EntryRecord, StoreError>> + '_, StoreError> {
        let iter = self.iter_from(Cf::Entries, &from.to_be_bytes())?;
        Ok(iter.map(|item| {
            let (key, value) = item?;
            Ok((decode_u64(Cf::Entries, &key)?, value.into_vec()))
        }))
    }

    /// All entries, in increasing id order.
    pub fn iter_entries(
        &self,
    ) -> Result<impl Iterator<Item = Result<EntryRecord, StoreError>> + '_, StoreError> {
        self.iter_entries_from(0)
    }

    /// The largest entry id stored, if any.
    pub fn last_entry_id(&self) -> Result<Option<u64>, StoreError> {
        let mut iter = self
            .db
            .iterator_cf(self.cf(Cf::Entries)?, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (key, _) = item?;
                Ok(Some(decode_u64(Cf::Entries, &key)?))
            }
            None => Ok(None),
        }
    }

    /// RocksDB's estimate of the number of entries (cheap; exact only after compaction).
    pub fn approximate_entry_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .db
            .property_int_value_cf(self.cf(Cf::Entries)?, "rocksdb.estimate-num-keys")?
            .unwrap_or(0))
    }

    /// Approximate bytes used by all column families: SST files plus memtables.
    pub fn approximate_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for cf in Cf::ALL {
            let handle = self.cf(*cf)?;
            for prop in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total =
                    total.saturating_add(self.db.property_int_value_cf(handle, prop)?.unwrap_or(0));
            }
        }
        Ok(total)
    }

    /// Flushes and fsyncs the WAL: call on clean shutdown when `sync_writes` is off.
    pub fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.flush_wal(true)?)
    }
}

impl CacheStore for Store {
    fn next_id(&self) -> Result<u64, StoreError> {
        let mut ids = self.ids.lock();
        if ids.next == u64::MAX {
            return Err(StoreError::IdsExhausted);
        }
        if ids.next >= ids.ceiling {
            // Persist the new bound before handing out any id below it, so that no id is ever
            // reused after a restart, even one whose entry was never written or was deleted.
            let ceiling = ids.next.saturating_add(ID_BLOCK);
            self.put(Cf::Meta, META_ID_CEILING, &ceiling.to_be_bytes())?;
            ids.ceiling = ceiling;
        }
        let id = ids.next;
        ids.next += 1;
        Ok(id)
    }

    fn put_entry(
        &self,
        id: u64,
        value: &[u8],
        exact_key: Option<&ExactKey>,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(Cf::Entries)?, id.to_be_bytes(), value);
        if let Some(key) = exact_key {
            batch.put_cf(self.cf(Cf::Exact)?, key, id.to_be_bytes());
        }
        Ok(self.db.write_opt(batch, &self.write_opts)?)
    }

    fn get_entry(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::Entries, &id.to_be_bytes())
    }

    fn delete_entry(&self, id: u64, exact_key: Option<&ExactKey>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(Cf::Entries)?, id.to_be_bytes());
        if let Some(key) = exact_key {
            // Only drop the mapping if it still points at this entry: a newer entry for the same
            // request may have replaced it.
            if self.get_exact(key)? == Some(id) {
                batch.delete_cf(self.cf(Cf::Exact)?, key);
            }
        }
        Ok(self.db.write_opt(batch, &self.write_opts)?)
    }

    fn get_exact(&self, key: &ExactKey) -> Result<Option<u64>, StoreError> {
        self.get(Cf::Exact, key)?
            .map(|bytes| decode_u64(Cf::Exact, &bytes))
            .transpose()
    }

    fn entries_from(
        &self,
        from: u64,
    ) -> Box<dyn Iterator<Item = Result<EntryRecord, StoreError>> + '_> {
        match self.iter_entries_from(from) {
            Ok(iter) => Box::new(iter),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn put_setting(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.put(Cf::Settings, key.as_bytes(), value)
    }

    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::Settings, key.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(n: u8) -> ExactKey {
        [n; 32]
    }

    #[test]
    fn reopen_keeps_entries_exact_keys_and_settings() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let id = store.next_id().unwrap();
            store.put_entry(id, b"hello", Some(&key(1))).unwrap();
            store.put_setting("threshold", b"0.92").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let id = store.get_exact(&key(1)).unwrap().unwrap();
        assert_eq!(store.get_entry(id).unwrap().unwrap(), b"hello");
        assert_eq!(
            store.get_setting("threshold").unwrap().unwrap(),
            b"0.92".to_vec()
        );
        assert_eq!(store.get_exact(&key(2)).unwrap(), None);
    }

    /// Child half of the crash test: writes, then dies without running any destructor.
    /// A no-op when run as an ordinary test.
    #[test]
    fn crash_child() {
        let Some(dir) = std::env::var_os("SLUICE_STORE_CRASH_DIR") else {
            return;
        };
        let store = Store::open(Path::new(&dir)).unwrap();
        for i in 0..100u8 {
            let id = store.next_id().unwrap();
            store.put_entry(id, &[i], Some(&key(i))).unwrap();
        }
        // Like kill -9: no memtable flush, no WAL sync, no close.
        std::process::abort();
    }

    #[test]
    fn acknowledged_writes_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::rocks::tests::crash_child", "--nocapture"])
            .env("SLUICE_STORE_CRASH_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child should have aborted");
        let store = Store::open(dir.path()).unwrap();
        let entries: Vec<_> = store.iter_entries().unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(entries.len(), 100);
        for (i, (_, value)) in entries.iter().enumerate() {
            assert_eq!(value, &vec![i as u8]);
        }
        assert_eq!(store.get_exact(&key(42)).unwrap(), Some(entries[42].0));
        assert!(store.next_id().unwrap() > entries[99].0);
    }

    #[test]
    fn next_id_is_monotonic_across_reopen_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let mut last = 0;
        for _ in 0..3 {
            let store = Store::open(dir.path()).unwrap();
            for _ in 0..5 {
                let id = store.next_id().unwrap();
                assert!(id > last, "{id} <= {last}");
                store.put_entry(id, b"x", None).unwrap();
                last = id;
            }
            // Deleting the newest entry must not make its id come back.
            store.delete_entry(last, None).unwrap();
        }
    }

    #[test]
    fn next_id_is_unique_under_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..3000)
                        .map(|_| store.next_id().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn delete_removes_entry_and_its_exact_key_only_if_it_still_points_there() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (store.next_id().unwrap(), store.next_id().unwrap());
        store.put_entry(a, b"old", Some(&key(7))).unwrap();
        store.put_entry(b, b"new", Some(&key(7))).unwrap();
        store.delete_entry(a, Some(&key(7))).unwrap();
        assert_eq!(store.get_entry(a).unwrap(), None);
        assert_eq!(store.get_exact(&key(7)).unwrap(), Some(b));
        store.delete_entry(b, Some(&key(7))).unwrap();
        assert_eq!(store.get_exact(&key(7)).unwrap(), None);
    }

    #[test]
    fn iterates_from_an_id_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in [3u64, 1, 300, 2, 256] {
            store.put_entry(id, &id.to_le_bytes(), None).unwrap();
        }
        let ids: Vec<u64> = store.entries_from(3).map(|r| r.unwrap().0).collect();
        assert_eq!(ids, vec![3, 256, 300]);
        assert_eq!(store.last_entry_id().unwrap(), Some(300));
        // Ids written without next_id (an import, say) are seen at the next open.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.next_id().unwrap() > 300);
        assert!(store.approximate_bytes().unwrap() > 0);
    }
}
