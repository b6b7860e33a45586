//! The RocksDB implementation of [`CacheStore`]: the only file in the crate that imports `rocksdb`.
//!
//! Durability: the write-ahead log is always on. With `sync_writes = false` (the default) every
//! write reaches the WAL file through `write(2)` before the call returns, so it sits in the OS page
//! cache and survives `kill -9` of the process; only a power loss or kernel crash can drop the
//! last few writes (a cache entry is re-creatable by asking upstream again). With
//! `sync_writes = true` every write is also `fsync`ed before it is acknowledged, which also
//! survives power loss at the price of one disk flush per write.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Direction,
    IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};

use super::{CacheStore, EntryRecord, ExactKey, StoreError};
use crate::crypto::{self, CryptoError, KeyId, Keyring};

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

impl Cf {
    /// Whether values of this column family are encrypted at rest: the ones holding prompts and
    /// answers (cache entries, stored Responses, audit records with their bodies).
    pub const fn is_sealed(self) -> bool {
        matches!(self, Cf::Entries | Cf::Responses | Cf::Audit)
    }
}

/// A raw record as read by [`Store::iter_from`]: `(key, value)`.
pub type RawRecord = (Box<[u8]>, Box<[u8]>);

/// Key in [`Cf::Meta`] of the ids of every key that may have sealed records (hex, one per line).
/// Checked at open, so a missing key is a start-up error instead of unreadable records later.
const META_KEY_IDS: &[u8] = b"encryption_key_ids";

/// Records re-sealed per write batch of the rotation pass (writes to sealed families wait
/// meanwhile, so the batch stays small).
const RESEAL_BATCH: usize = 256;

/// Memory all column families' memtables may hold together before RocksDB flushes them.
const MEMTABLE_BUDGET: usize = 32 << 20;
/// Writes one column family buffers before its memtable is flushed (RocksDB's default: 64 MB).
const CF_WRITE_BUFFER: usize = 8 << 20;
/// The block cache every column family shares (RocksDB's default: one per family).
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Read-ahead of full scans (RocksDB's own starts at 8 KiB and grows as the scan goes on).
const SCAN_READAHEAD: usize = 2 << 20;

/// What [`Store::reseal_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Records read.
    pub scanned: u64,
    /// Records re-sealed under the current key (plaintext or under a previous key before).
    pub resealed: u64,
}

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
    /// Seals and opens the values of [`Cf::is_sealed`] families.
    keyring: Arc<Keyring>,
    /// Writers to sealed families share it; the rotation pass takes it exclusively per batch so
    /// that re-sealing a record never overwrites a newer write or revives a deleted record.
    sealed_writes: RwLock<()>,
    /// Whether records under another key, or plaintext, may exist (set at open).
    rotation_pending: std::sync::atomic::AtomicBool,
    /// Held by the one rotation pass that may run at a time.
    rotation_running: Mutex<()>,
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

    /// Opens (or creates) the store in `dir`, storing every value as plaintext.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        Self::open_encrypted(dir, options, Arc::new(Keyring::none()))
    }

    /// Opens (or creates) the store in `dir`, sealing the values of [`Cf::is_sealed`] families
    /// with `keyring`'s current key (plaintext when it has none).
    ///
    /// Fails with [`StoreError::WrongKey`] when the directory holds records under a key the
    /// keyring does not have, instead of serving as if they were not there.
    pub fn open_encrypted(
        dir: &Path,
        options: StoreOptions,
        keyring: Arc<Keyring>,
    ) -> Result<Store, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_keep_log_file_num(4);
        // Built without compression libraries (default-features = false): say so explicitly.
        db_opts.set_compression_type(DBCompressionType::None);
        // Bounded memory: RocksDB's defaults let each of the column families buffer 64 MB of
        // writes (and keep its own block cache), so a long-running gateway's RSS kept growing
        // until far more than it needs. One budget for all memtables, flushed early, and one
        // shared block cache keep it flat; the WAL is trimmed once the memtables are flushed.
        db_opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        db_opts.set_max_total_wal_size(2 * MEMTABLE_BUDGET as u64);
        let block_cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&block_cache);

        let descriptors = Cf::ALL.iter().map(|cf| {
            let mut cf_opts = Options::default();
            cf_opts.set_compression_type(DBCompressionType::None);
            cf_opts.set_write_buffer_size(CF_WRITE_BUFFER);
            cf_opts.set_block_based_table_factory(&table);
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
            keyring,
            sealed_writes: RwLock::new(()),
            rotation_pending: std::sync::atomic::AtomicBool::new(false),
            rotation_running: Mutex::new(()),
        };
        store.check_keys(dir)?;
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

    /// The keyring sealing this store's records (also used for the index snapshot).
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Associated data of a sealed record: its column family and key, so that a sealed value
    /// copied to another record or family fails to open.
    fn aad(cf: Cf, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(cf.name().len() + 1 + key.len());
        aad.extend_from_slice(cf.name().as_bytes());
        aad.push(0);
        aad.extend_from_slice(key);
        aad
    }

    /// The stored form of a value: sealed for sealed families with a key configured.
    fn seal<'v>(&self, cf: Cf, key: &[u8], value: &'v [u8]) -> Result<Cow<'v, [u8]>, StoreError> {
        if !cf.is_sealed() {
            return Ok(Cow::Borrowed(value));
        }
        self.keyring
            .seal(&Self::aad(cf, key), value)
            .map_err(|source| StoreError::Encryption {
                cf: cf.name(),
                source,
            })
    }

    /// The plaintext of a stored value.
    fn open_value(&self, cf: Cf, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        if !cf.is_sealed() {
            return Ok(stored);
        }
        match self.keyring.open(&Self::aad(cf, key), &stored) {
            Ok(Cow::Borrowed(_)) => Ok(stored),
            Ok(Cow::Owned(plain)) => Ok(plain),
            Err(source) => Err(StoreError::Encryption {
                cf: cf.name(),
                source,
            }),
        }
    }

    /// Reads a record (opened, for sealed families).
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(cf)?, key)?
            .map(|stored| self.open_value(cf, key, stored))
            .transpose()
    }

    /// Writes a record (sealed, for sealed families).
    pub fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let stored = self.seal(cf, key, value)?;
        let _shared = cf.is_sealed().then(|| self.sealed_writes.read());
        Ok(self
            .db
            .put_cf_opt(self.cf(cf)?, key, &stored, &self.write_opts)?)
    }

    /// Writes records to several column families atomically, with one WAL append (values
    /// sealed, for sealed families): a request that makes more than one record pays one write.
    pub fn put_all(&self, puts: &[(Cf, &[u8], &[u8])]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for &(cf, key, value) in puts {
            batch.put_cf(self.cf(cf)?, key, self.seal(cf, key, value)?);
        }
        let _shared = puts
            .iter()
            .any(|(cf, _, _)| cf.is_sealed())
            .then(|| self.sealed_writes.read());
        Ok(self.db.write_opt(batch, &self.write_opts)?)
    }

    /// Deletes a record.
    pub fn delete(&self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        let _shared = cf.is_sealed().then(|| self.sealed_writes.read());
        Ok(self.db.delete_cf_opt(self.cf(cf)?, key, &self.write_opts)?)
    }

    /// Writes `puts` and `deletes` to one column family atomically: after a crash either all of
    /// them are there or none (values sealed, for sealed families).
    pub fn write_batch(
        &self,
        cf: Cf,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        self.write_with(cf, puts, |batch, handle| {
            for key in deletes {
                batch.delete_cf(handle, key);
            }
        })
    }

    /// Writes `puts` and deletes every key in `from..to` of one column family atomically. The
    /// range costs one tombstone however many keys it holds (thousands of spent deltas per
    /// flush would otherwise be as many deletes).
    pub fn write_batch_deleting_range(
        &self,
        cf: Cf,
        puts: &[(Vec<u8>, Vec<u8>)],
        from: &[u8],
        to: &[u8],
    ) -> Result<(), StoreError> {
        self.write_with(cf, puts, |batch, handle| {
            if from < to {
                batch.delete_range_cf(handle, from, to);
            }
        })
    }

    /// One atomic batch of one column family: `puts` (sealed where they must be), then what
    /// `deletes` adds.
    fn write_with(
        &self,
        cf: Cf,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: impl FnOnce(&mut WriteBatch, &ColumnFamily),
    ) -> Result<(), StoreError> {
        let handle = self.cf(cf)?;
        let mut batch = WriteBatch::default();
        for (key, value) in puts {
            batch.put_cf(handle, key, self.seal(cf, key, value)?);
        }
        deletes(&mut batch, handle);
        let _shared = cf.is_sealed().then(|| self.sealed_writes.read());
        Ok(self.db.write_opt(batch, &self.write_opts)?)
    }

    /// Records of one column family with key `>= from`, in key byte order (values opened, for
    /// sealed families).
    pub fn iter_from<'a>(
        &'a self,
        cf: Cf,
        from: &[u8],
    ) -> Result<impl Iterator<Item = Result<RawRecord, StoreError>> + 'a, StoreError> {
        // Scans read on to the end: large reads from a cold page cache (the start-up scan of
        // 1M entries reads 2.3 GB), and no eviction of the shared block cache's hot blocks.
        let mut read = ReadOptions::default();
        read.set_readahead_size(SCAN_READAHEAD);
        read.fill_cache(false);
        let iter = self.db.iterator_cf_opt(
            self.cf(cf)?,
            read,
            IteratorMode::From(from, Direction::Forward),
        );
        Ok(iter.map(move |item| {
            let (key, value) = item?;
            if !cf.is_sealed() {
                return Ok((key, value));
            }
            let plain = self.open_value(cf, &key, value.into_vec())?;
            Ok((key, plain.into_boxed_slice()))
        }))
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

/// Encryption at rest: the start-up key check and the rotation pass.
impl Store {
    /// Key ids recorded as possibly having sealed records.
    fn recorded_key_ids(&self) -> Result<Vec<KeyId>, StoreError> {
        let Some(bytes) = self.get(Cf::Meta, META_KEY_IDS)? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                KeyId::from_hex(l.trim()).ok_or_else(|| StoreError::Corrupt {
                    cf: Cf::Meta.name(),
                    detail: "bad key id in encryption_key_ids".into(),
                })
            })
            .collect()
    }

    fn write_key_ids(&self, ids: &[KeyId]) -> Result<(), StoreError> {
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        self.put(Cf::Meta, META_KEY_IDS, text.as_bytes())
    }

    /// Refuses a keyring that cannot open the records in `dir`, records the current key id, and
    /// notes whether a rotation pass has work to do.
    fn check_keys(&self, dir: &Path) -> Result<(), StoreError> {
        let mut ids = self.recorded_key_ids()?;
        // The first record of each sealed family is a second opinion, should the meta record
        // have been lost.
        let mut has_records = false;
        for cf in Cf::ALL.iter().filter(|cf| cf.is_sealed()) {
            let mut iter = self.db.iterator_cf(self.cf(*cf)?, IteratorMode::Start);
            if let Some(item) = iter.next() {
                has_records = true;
                let (_, value) = item?;
                let found =
                    crypto::sealed_key_id(&value).map_err(|source| StoreError::Encryption {
                        cf: cf.name(),
                        source,
                    })?;
                if let Some(id) = found.filter(|id| !ids.contains(id)) {
                    ids.push(id);
                }
            }
        }
        let current = self.keyring.current_id();
        if let Some(missing) = ids.iter().find(|id| !self.keyring.knows(**id)) {
            let configured = match current {
                Some(c) => format!("the configured key is {c}"),
                None => "no key is configured (sluice.encryption)".to_string(),
            };
            return Err(StoreError::WrongKey(format!(
                "data in {} was encrypted with key id {missing}; {configured}. Configure that \
                 key as sluice.encryption.key (or in previous_keys while rotating); starting \
                 would otherwise serve as if the data were not there",
                dir.display()
            )));
        }
        let Some(current) = current else {
            return Ok(());
        };
        // Plaintext from before encryption was turned on, or records under a previous key.
        let pending =
            ids.iter().any(|id| *id != current) || (!ids.contains(&current) && has_records);
        self.rotation_pending.store(pending, Ordering::Release);
        if !ids.contains(&current) {
            ids.push(current);
            self.write_key_ids(&ids)?;
        }
        Ok(())
    }

    /// Whether a rotation pass is running now.
    pub fn rotation_running(&self) -> bool {
        self.rotation_running.is_locked()
    }

    /// Whether records under another key, or plaintext written before encryption was turned
    /// on, may exist: [`Store::reseal_all`] has work to do.
    pub fn rotation_pending(&self) -> bool {
        self.rotation_pending.load(Ordering::Acquire)
    }

    /// Re-seals every record of the sealed families under the current key: plaintext and
    /// records under previous keys. Reads keep working throughout (both forms open); writes to
    /// sealed families wait for one batch at a time. Afterwards only the current key is
    /// recorded, so the previous keys can be removed from the config.
    pub fn reseal_all(&self) -> Result<ResealReport, StoreError> {
        let mut report = ResealReport::default();
        let Some(current) = self.keyring.current_id() else {
            return Ok(report);
        };
        let Some(_running) = self.rotation_running.try_lock() else {
            return Err(StoreError::Engine(
                "a key rotation pass is already running".into(),
            ));
        };
        for cf in Cf::ALL.iter().copied().filter(|cf| cf.is_sealed()) {
            let handle = self.cf(cf)?;
            let mut from: Vec<u8> = Vec::new();
            loop {
                let _exclusive = self.sealed_writes.write();
                let mut batch = WriteBatch::default();
                let mut last = None;
                let mut n = 0;
                let iter = self
                    .db
                    .iterator_cf(handle, IteratorMode::From(&from, Direction::Forward));
                for item in iter {
                    let (key, value) = item?;
                    if n >= RESEAL_BATCH {
                        break;
                    }
                    n += 1;
                    report.scanned += 1;
                    let wrap = |source: CryptoError| StoreError::Encryption {
                        cf: cf.name(),
                        source,
                    };
                    if self.keyring.needs_reseal(&value).map_err(wrap)? {
                        let aad = Self::aad(cf, &key);
                        let plain = self.keyring.open(&aad, &value).map_err(wrap)?;
                        let sealed = self.keyring.seal(&aad, &plain).map_err(wrap)?;
                        batch.put_cf(handle, &key, &sealed);
                        report.resealed += 1;
                    }
                    last = Some(key);
                }
                self.db.write_opt(batch, &self.write_opts)?;
                match last {
                    // Continue just after the last key seen.
                    Some(key) if n >= RESEAL_BATCH => {
                        from = key.into_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
        }
        // The old forms (plaintext, or under the previous key) stay in older SST and WAL files
        // until compaction drops them: flush and compact now, so they leave the live files.
        // Force: without it RocksDB may move files down a level as they are ("trivial move"),
        // old versions included.
        if report.resealed > 0 {
            let mut opts = rocksdb::CompactOptions::default();
            opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            for cf in Cf::ALL.iter().copied().filter(|cf| cf.is_sealed()) {
                let handle = self.cf(cf)?;
                self.db.flush_cf(handle)?;
                self.db
                    .compact_range_cf_opt(handle, None::<&[u8]>, None::<&[u8]>, &opts);
            }
        }
        self.write_key_ids(&[current])?;
        self.rotation_pending.store(false, Ordering::Release);
        Ok(report)
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
        let stored = self.seal(Cf::Entries, &id.to_be_bytes(), value)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(Cf::Entries)?, id.to_be_bytes(), &stored);
        if let Some(key) = exact_key {
            batch.put_cf(self.cf(Cf::Exact)?, key, id.to_be_bytes());
        }
        let _shared = self.sealed_writes.read();
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
        let _shared = self.sealed_writes.read();
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

    fn keyring(n: u8, previous: &[u8]) -> Arc<Keyring> {
        let key = |n: u8| crate::crypto::Key::from_bytes(&[n; 32]).unwrap();
        Arc::new(Keyring::new(
            key(n),
            previous.iter().map(|p| key(*p)).collect(),
        ))
    }

    fn open_with_keys(dir: &Path, keys: Arc<Keyring>) -> Result<Store, StoreError> {
        Store::open_encrypted(dir, StoreOptions::default(), keys)
    }

    /// The bytes RocksDB holds for a record, bypassing the keyring.
    fn stored(store: &Store, cf: Cf, key: &[u8]) -> Vec<u8> {
        store
            .db
            .get_cf(store.cf(cf).unwrap(), key)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_batch_deletes_a_key_range_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let k = |n: u64| [b"d".as_slice(), &n.to_be_bytes()].concat();
        {
            let store = Store::open(dir.path()).unwrap();
            for n in 0..6 {
                store.put(Cf::Spend, &k(n), b"delta").unwrap();
            }
            let puts = vec![(b"row".to_vec(), b"folded".to_vec())];
            store
                .write_batch_deleting_range(Cf::Spend, &puts, &k(1), &k(4))
                .unwrap();
            // An empty range deletes nothing.
            store
                .write_batch_deleting_range(Cf::Spend, &[], &k(5), &k(5))
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let left: Vec<bool> = (0..6)
            .map(|n| store.get(Cf::Spend, &k(n)).unwrap().is_some())
            .collect();
        assert_eq!(left, [true, false, false, false, true, true]);
        assert_eq!(store.get(Cf::Spend, b"row").unwrap().unwrap(), b"folded");
    }

    #[test]
    fn put_all_writes_every_family_sealed_where_it_must_be() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_keys(dir.path(), keyring(1, &[])).unwrap();
        store
            .put_all(&[
                (Cf::Audit, &7u64.to_be_bytes(), b"{\"body\":\"zebras\"}"),
                (Cf::Meta, b"audit_head", b"{\"seq\":7}"),
            ])
            .unwrap();
        let raw = stored(&store, Cf::Audit, &7u64.to_be_bytes());
        assert!(raw.starts_with(&crypto::MAGIC));
        assert_eq!(
            store.get(Cf::Audit, &7u64.to_be_bytes()).unwrap().unwrap(),
            b"{\"body\":\"zebras\"}"
        );
        assert_eq!(
            store.get(Cf::Meta, b"audit_head").unwrap().unwrap(),
            b"{\"seq\":7}"
        );
    }

    #[test]
    fn sealed_families_are_encrypted_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_with_keys(dir.path(), keyring(1, &[])).unwrap();
        let id = store.next_id().unwrap();
        store
            .put_entry(id, b"prompt about zebras", Some(&key(1)))
            .unwrap();
        store
            .put(Cf::Responses, b"resp_1", b"{\"answer\":\"zebras\"}")
            .unwrap();
        store
            .put(Cf::Audit, &1u64.to_be_bytes(), b"{\"body\":\"zebras\"}")
            .unwrap();
        store.put_setting("threshold", b"0.9").unwrap();
        for (cf, k) in [
            (Cf::Entries, id.to_be_bytes().to_vec()),
            (Cf::Responses, b"resp_1".to_vec()),
            (Cf::Audit, 1u64.to_be_bytes().to_vec()),
        ] {
            let raw = stored(&store, cf, &k);
            assert!(raw.starts_with(&crypto::MAGIC), "{cf:?}");
            assert!(!raw.windows(6).any(|w| w == b"zebras"), "{cf:?}");
        }
        // Not sealed: settings, exact keys.
        assert_eq!(stored(&store, Cf::Settings, b"threshold"), b"0.9");
        assert_eq!(
            store.get_entry(id).unwrap().unwrap(),
            b"prompt about zebras"
        );
        let all: Vec<_> = store
            .iter_from(Cf::Responses, b"")
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(&*all[0].1, b"{\"answer\":\"zebras\"}");
        assert_eq!(
            store.entries_from(0).next().unwrap().unwrap().1,
            b"prompt about zebras"
        );

        // A sealed value copied to another record does not open.
        let raw = stored(&store, Cf::Responses, b"resp_1");
        store
            .db
            .put_cf(store.cf(Cf::Responses).unwrap(), b"resp_2", &raw)
            .unwrap();
        assert!(matches!(
            store.get(Cf::Responses, b"resp_2"),
            Err(StoreError::Encryption { .. })
        ));
    }

    #[test]
    fn a_wrong_or_missing_key_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open_with_keys(dir.path(), keyring(1, &[])).unwrap();
            store.put(Cf::Responses, b"r", b"x").unwrap();
        }
        let a = keyring(1, &[]).current_id().unwrap();
        let b = keyring(2, &[]).current_id().unwrap();
        let err = open_with_keys(dir.path(), keyring(2, &[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("encrypted with key id {a}")), "{err}");
        assert!(err.contains(&format!("the configured key is {b}")), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no key is configured"), "{err}");
        // The right key still opens it.
        let store = open_with_keys(dir.path(), keyring(1, &[])).unwrap();
        assert_eq!(store.get(Cf::Responses, b"r").unwrap().unwrap(), b"x");
        assert!(!store.rotation_pending());
    }

    #[test]
    fn rotation_reseals_everything_under_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            // Plaintext from before encryption, then records under key 1.
            let store = Store::open(dir.path()).unwrap();
            store
                .put(Cf::Audit, &1u64.to_be_bytes(), b"plain audit")
                .unwrap();
        }
        {
            let store = open_with_keys(dir.path(), keyring(1, &[])).unwrap();
            assert!(store.rotation_pending(), "plaintext records exist");
            for i in 0..600u64 {
                let id = store.next_id().unwrap();
                store.put_entry(id, &i.to_be_bytes(), None).unwrap();
            }
        }
        let store = open_with_keys(dir.path(), keyring(2, &[1])).unwrap();
        assert!(store.rotation_pending());
        // Readable during the rotation: old key through previous_keys, plaintext as is.
        assert_eq!(store.entries_from(0).count(), 600);
        assert_eq!(
            store.get(Cf::Audit, &1u64.to_be_bytes()).unwrap().unwrap(),
            b"plain audit"
        );
        let report = store.reseal_all().unwrap();
        assert_eq!(report.scanned, 601);
        assert_eq!(report.resealed, 601);
        assert!(!store.rotation_pending());
        assert_eq!(store.reseal_all().unwrap().resealed, 0);
        drop(store);

        // Key 2 alone now opens everything.
        let store = open_with_keys(dir.path(), keyring(2, &[])).unwrap();
        let values: Vec<Vec<u8>> = store.entries_from(0).map(|r| r.unwrap().1).collect();
        assert_eq!(values.len(), 600);
        assert_eq!(values[599], 599u64.to_be_bytes());
        let raw = stored(&store, Cf::Audit, &1u64.to_be_bytes());
        assert!(raw.starts_with(&crypto::MAGIC));
        drop(store);
        assert!(open_with_keys(dir.path(), keyring(1, &[])).is_err());
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
