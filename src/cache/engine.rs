//! The cache engine: exact and semantic lookups, verified hits, write-back, coalescing of
//! identical misses, TTL and size bounds, tombstones and background rebuild, snapshots.
//!
//! RocksDB (through `store`) is the source of truth; the HNSW index and the in-memory table of
//! live entries are derived from it at start-up.
//!
//! Start-up does not wait for the graph: [`CacheEngine::open`] scans the store into the live table
//! and returns, and a background thread loads the snapshot (or rebuilds the graph) and swaps it
//! in. Until then exact hits and small scopes (compared one by one) are served as usual, and
//! semantic lookups in larger scopes are misses, never wrong answers.

use super::entry::{expired_at, now_ms, CacheEntry, EntryHead};
use super::key::CacheKeys;
use super::settings::CacheSettings;
use super::verify::{verify, Verdict, VerifyConfig};
use super::CacheOutcome;
use crate::embed::{EmbedConfig, EmbedError, Embedder, EmbeddingModel};
use crate::index::{IndexParams, SharedIndex, VectorIndex, DEFAULT_EF_SEARCH};
use crate::store::{CacheStore, Store, StoreError, StoreOptions};
use crate::telemetry as t;
use crate::wire::Usage;
use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Scopes with at most this many entries are compared one by one instead of through the index:
/// exact, and cheaper than a filtered graph walk that rejects almost everything.
const BRUTE_FORCE_MAX: usize = 64;
/// Candidates above the threshold that are verified before giving up.
const MAX_VERIFIED: usize = 4;
/// Neighbours asked of the index.
const SEARCH_K: usize = 8;
/// Rebuild the index when tombstones pass this share of it.
const TOMBSTONE_FRACTION: f64 = 0.2;
/// Take a snapshot after this many inserts...
const SNAPSHOT_AFTER_INSERTS: usize = 10_000;
/// ...or this long after the last one, when anything was inserted since.
const SNAPSHOT_AFTER: Duration = Duration::from_secs(300);
/// Key of the persisted settings.
const SETTINGS_KEY: &str = "cache.settings";
/// Setting naming the embedding model the stored vectors came from.
const MODEL_KEY: &str = "cache.embedding_model";
/// Buckets of the similarity histogram (0.0-0.05, ..., 0.95-1.0).
const SIM_BUCKETS: usize = 20;

/// Cache failures. None of them fails a request: the pipeline falls back to upstream.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Embedding failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A stored entry could not be decoded.
    #[error("corrupt cache entry {id}: {detail}")]
    Corrupt {
        /// Entry id.
        id: u64,
        /// Decoder message.
        detail: String,
    },
    /// Start-up failed.
    #[error("cache start-up failed: {0}")]
    Startup(String),
    /// Writing the index snapshot failed.
    #[error("index snapshot failed: {0}")]
    Snapshot(String),
}

/// A served answer.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Exact, semantic or coalesced.
    pub kind: CacheOutcome,
    /// Entry id (0 for a coalesced answer that was not stored).
    pub entry_id: u64,
    /// Cosine similarity for semantic hits.
    pub similarity: Option<f32>,
    /// Age of the answer.
    pub age: Duration,
    /// The cached `chat.completion`.
    pub completion: Arc<Value>,
    /// Tokens the original call used.
    pub usage: Usage,
}

/// What a lookup found, plus the embedding it computed (reused by the write-back).
#[derive(Debug, Default)]
pub struct Lookup {
    /// The hit, if any.
    pub hit: Option<Hit>,
    /// The query embedding, when one was computed.
    pub embedding: Option<Vec<f32>>,
}

/// One neighbour in a dry-run lookup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Candidate {
    /// Entry id.
    pub entry_id: u64,
    /// Cosine similarity.
    pub similarity: f32,
    /// The cached question.
    pub cached_query: Option<String>,
    /// Whether it passes the threshold.
    pub above_threshold: bool,
    /// The verifier's verdict.
    pub verdict: Verdict,
}

#[derive(Debug)]
struct Meta {
    namespace: String,
    group: String,
    exact: [u8; 32],
    scope: Option<[u8; 32]>,
    expires_ms: u64,
    bytes: u64,
    last_access_ms: AtomicU64,
}

impl Meta {
    fn of(entry: &CacheEntry, bytes: usize, last_access_ms: u64) -> Self {
        Self::new(
            &entry.namespace,
            &entry.model_group,
            entry.exact,
            entry.scope,
            entry.expires_ms,
            bytes,
            last_access_ms,
        )
    }

    fn new(
        namespace: &str,
        group: &str,
        exact: [u8; 32],
        scope: Option<[u8; 32]>,
        expires_ms: u64,
        bytes: usize,
        last_access_ms: u64,
    ) -> Self {
        Self {
            namespace: namespace.to_string(),
            group: group.to_string(),
            exact,
            scope,
            expires_ms,
            bytes: bytes as u64,
            last_access_ms: AtomicU64::new(last_access_ms),
        }
    }
}

#[derive(Debug, Default)]
struct Live {
    entries: HashMap<u64, Meta>,
    scopes: HashMap<[u8; 32], Vec<u64>>,
    bytes: u64,
}

impl Live {
    fn insert(&mut self, id: u64, m: Meta) {
        self.bytes += m.bytes;
        if let Some(s) = m.scope {
            self.scopes.entry(s).or_default().push(id);
        }
        self.entries.insert(id, m);
    }

    fn remove(&mut self, id: u64) -> Option<Meta> {
        let m = self.entries.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(m.bytes);
        if let Some(s) = m.scope {
            if let Some(ids) = self.scopes.get_mut(&s) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    self.scopes.remove(&s);
                }
            }
        }
        Some(m)
    }
}

/// Counters behind `/admin/cache/stats`.
#[derive(Debug, Default)]
struct Stats {
    lookups: AtomicU64,
    hits_exact: AtomicU64,
    hits_semantic: AtomicU64,
    hits_coalesced: AtomicU64,
    misses: AtomicU64,
    tokens_saved: AtomicU64,
    /// Micro-dollars.
    usd_saved_micros: AtomicU64,
    similarity: [AtomicU64; SIM_BUCKETS],
    /// Semantic lookups answered as misses because the index was still loading.
    lookups_index_loading: AtomicU64,
}

/// State of one in-flight miss that others wait on.
#[derive(Debug, Clone)]
pub enum FlightState {
    /// Still going.
    Pending,
    /// The leader got an answer.
    Done(Arc<Value>, Usage),
    /// The leader failed or was not cacheable: followers go upstream themselves.
    Failed,
}

/// The leader's side of a coalesced miss. Dropping it without [`FlightGuard::complete`] tells
/// followers to go upstream themselves.
pub struct FlightGuard {
    engine: Arc<CacheEngine>,
    key: [u8; 32],
    tx: watch::Sender<FlightState>,
    done: bool,
}

impl FlightGuard {
    /// Hands the answer to every follower.
    pub fn complete(mut self, completion: Arc<Value>, usage: Usage) {
        self.done = true;
        self.engine.inflight.lock().remove(&self.key);
        let _ = self.tx.send(FlightState::Done(completion, usage));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.done {
            self.engine.inflight.lock().remove(&self.key);
            let _ = self.tx.send(FlightState::Failed);
        }
    }
}

/// An upstream answer to store.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The `chat.completion` object.
    pub completion: &'a Value,
    /// What it cost upstream.
    pub usage: Usage,
    /// Time to live; `None` uses the default.
    pub ttl: Option<Duration>,
}

/// Leader or follower of an identical in-flight miss.
pub enum Flight {
    /// Go upstream and complete the guard.
    Leader(FlightGuard),
    /// Wait for the leader.
    Follower(watch::Receiver<FlightState>),
}

/// Where the cache keeps its files and how it finds the model.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Data directory (RocksDB in `db/`, the index snapshot in `index/`).
    pub data_dir: PathBuf,
    /// Embedding model.
    pub embed: EmbedConfig,
    /// Settings used when none were persisted.
    pub defaults: CacheSettings,
    /// Verifier knobs.
    pub verify: VerifyConfig,
    /// Model groups (to validate per-group thresholds).
    pub groups: Vec<String>,
    /// USD per prompt and completion token, per group (for savings).
    pub prices: HashMap<String, (f64, f64)>,
    /// fsync every write (when the cache opens its own store).
    pub sync_writes: bool,
    /// The gateway's store, shared with keys and spend; `None` opens `data_dir/db`.
    pub store: Option<Arc<Store>>,
}

/// The semantic cache.
pub struct CacheEngine {
    store: Arc<Store>,
    index: SharedIndex,
    embedder: Embedder,
    verify: VerifyConfig,
    settings: RwLock<CacheSettings>,
    live: RwLock<Live>,
    inflight: Mutex<HashMap<[u8; 32], watch::Receiver<FlightState>>>,
    stats: Stats,
    tombstones: AtomicUsize,
    inserts_since_snapshot: AtomicUsize,
    rebuilding: Mutex<()>,
    last_snapshot: Mutex<Instant>,
    snapshot_dir: PathBuf,
    groups: Vec<String>,
    prices: HashMap<String, (f64, f64)>,
    /// Whether the background start-up load has swapped the real graph in.
    readiness: Arc<Readiness>,
}

/// Start-up load state, shared with the loader thread so that it can signal after letting go of
/// the engine (a waiter may drop the engine and reopen the store at once).
#[derive(Debug, Default)]
struct Readiness {
    ready: AtomicBool,
    lock: Mutex<bool>,
    changed: Condvar,
}

impl Readiness {
    fn set(&self) {
        self.ready.store(true, Ordering::Release);
        *self.lock.lock() = true;
        self.changed.notify_all();
    }
}

fn sim_bucket(sim: f32) -> usize {
    ((sim.clamp(0.0, 0.9999) * SIM_BUCKETS as f32) as usize).min(SIM_BUCKETS - 1)
}

/// Re-embeds every stored query when the data was written by another embedding model, rewrites
/// the entries with the new vectors and records the model. `ids` are the live entries that carry
/// a vector. Returns whether anything changed.
fn reembed_if_model_changed(
    store: &Store,
    embedder: &Embedder,
    ids: &[u64],
) -> Result<bool, CacheError> {
    let current = embedder.model().as_str();
    // Data from before the model was recorded came from the reference model.
    let stored = store.get_setting(MODEL_KEY)?.map_or_else(
        || EmbeddingModel::Reference.as_str().to_string(),
        |b| String::from_utf8_lossy(&b).into_owned(),
    );
    if stored == current || ids.is_empty() {
        if stored != current {
            store.put_setting(MODEL_KEY, current.as_bytes())?;
        }
        return Ok(false);
    }
    let started = Instant::now();
    tracing::warn!(
        from = %stored,
        to = current,
        entries = ids.len(),
        "embedding model changed: re-embedding the cached queries and rebuilding the index"
    );
    let mut count = 0usize;
    for batch in ids.chunks(256) {
        let mut entries = Vec::with_capacity(batch.len());
        for id in batch {
            let Some(bytes) = store.get_entry(*id)? else {
                continue;
            };
            match CacheEntry::decode(&bytes) {
                Ok(e) if e.query.is_some() => entries.push((*id, e)),
                _ => {}
            }
        }
        let texts: Vec<&str> = entries
            .iter()
            .filter_map(|(_, e)| e.query.as_deref())
            .collect();
        let embedded = embedder.embed_batch(&texts)?;
        for ((id, mut entry), v) in entries.into_iter().zip(embedded) {
            entry.embedding = Some(v);
            let bytes = entry.encode().map_err(CacheError::Startup)?;
            store.put_entry(id, &bytes, Some(&entry.exact))?;
            count += 1;
        }
    }
    store.put_setting(MODEL_KEY, current.as_bytes())?;
    tracing::info!(
        entries = count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "cached queries re-embedded"
    );
    Ok(true)
}

impl CacheEngine {
    /// Opens storage, loads (or rebuilds) the index and loads the model. Blocking.
    pub fn open(opts: CacheOptions) -> Result<Arc<Self>, CacheError> {
        let started = Instant::now();
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            CacheError::Startup(format!("cannot create {}: {e}", opts.data_dir.display()))
        })?;
        // The model loads on its own thread while the store is opened and scanned: each takes
        // seconds with a large cache, and readiness waits for both.
        let model = {
            let config = opts.embed.clone();
            std::thread::Builder::new()
                .name("sluice-model-load".into())
                .spawn(move || Embedder::load(&config))
                .map_err(|e| CacheError::Startup(format!("cannot start the model loader: {e}")))?
        };
        let store = match &opts.store {
            Some(s) => Arc::clone(s),
            None => Arc::new(Store::open_with(
                &opts.data_dir.join("db"),
                StoreOptions {
                    sync_writes: opts.sync_writes,
                },
            )?),
        };
        let settings = match store.get_setting(SETTINGS_KEY)? {
            Some(bytes) => {
                match serde_json::from_slice::<CacheSettings>(&bytes) {
                    Ok(s) if s.validate(&opts.groups).is_ok() => {
                        tracing::info!(
                            "cache settings loaded from the store (set through the admin API)"
                        );
                        s
                    }
                    _ => {
                        tracing::warn!("persisted cache settings are invalid for this config; using the config's");
                        opts.defaults.clone()
                    }
                }
            }
            None => opts.defaults.clone(),
        };

        // Live entries from the source of truth. Their vectors are not kept: the snapshot holds
        // them, and the loader reads the few written after it from the store again.
        let scan_started = Instant::now();
        let now = now_ms();
        let mut live = Live::default();
        let mut with_vector: Vec<u64> = Vec::new();
        let mut expired = Vec::new();
        for record in store.entries_from(0) {
            let (id, bytes) = record?;
            // The head only: at 1M entries, copying every answer and vector doubled the scan.
            let entry = match EntryHead::decode(&bytes) {
                Ok(e) => e,
                Err(detail) => {
                    tracing::warn!(id, %detail, "skipping undecodable cache entry");
                    continue;
                }
            };
            if entry.expired(now) {
                expired.push((id, entry.exact));
                continue;
            }
            live.insert(
                id,
                Meta::new(
                    entry.namespace,
                    entry.model_group,
                    entry.exact,
                    entry.scope,
                    entry.expires_ms,
                    bytes.len(),
                    entry.created_ms,
                ),
            );
            if entry.embedding.is_some() {
                with_vector.push(id);
            }
        }
        for (id, exact) in &expired {
            store.delete_entry(*id, Some(exact))?;
        }
        let scan_ms = scan_started.elapsed().as_millis() as u64;
        let embedder = model
            .join()
            .map_err(|_| CacheError::Startup("the model loader panicked".into()))??;

        let snapshot_dir = opts.data_dir.join("index");
        // Vectors of different models do not mix: after a model change, re-embed the stored
        // queries and rebuild the index rather than load a snapshot of the old vectors.
        if reembed_if_model_changed(&store, &embedder, &with_vector)? {
            let _ = std::fs::remove_dir_all(&snapshot_dir);
        }
        let entries_with_vector = with_vector.len();
        drop(with_vector);
        // Until the loader swaps the real graph in, writes go to this placeholder; the loader
        // replays them from the store after the swap.
        let placeholder = VectorIndex::new(IndexParams {
            capacity_hint: 1024,
            ..IndexParams::default()
        });
        let engine = Arc::new(Self {
            store,
            index: SharedIndex::new(placeholder),
            embedder,
            verify: opts.verify,
            settings: RwLock::new(settings),
            live: RwLock::new(live),
            inflight: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            tombstones: AtomicUsize::new(0),
            inserts_since_snapshot: AtomicUsize::new(0),
            rebuilding: Mutex::new(()),
            last_snapshot: Mutex::new(Instant::now()),
            snapshot_dir,
            groups: opts.groups,
            prices: opts.prices,
            readiness: Arc::new(Readiness::default()),
        });
        engine.update_gauges();
        metrics::gauge!(t::CACHE_INDEX_LOADING).set(1.0);
        let weak = Arc::downgrade(&engine);
        let readiness = Arc::clone(&engine.readiness);
        let spawned = std::thread::Builder::new()
            .name("sluice-index-load".into())
            .spawn(move || {
                Self::load_index(weak, entries_with_vector);
                // Also when the engine was dropped meanwhile: nobody must wait forever.
                readiness.set();
            });
        if let Err(e) = spawned {
            return Err(CacheError::Startup(format!(
                "cannot start the index loader: {e}"
            )));
        }
        tracing::info!(
            entries = engine.live.read().entries.len(),
            scan_ms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "cache ready (index loading in the background)"
        );
        Ok(engine)
    }

    /// Background start-up: loads the snapshot, or rebuilds from the store when there is none or
    /// it is damaged, swaps the graph in, replays the entries written after the snapshot (and
    /// during the load), then marks the index ready.
    ///
    /// Holds only a weak reference while loading so that dropping the engine is not delayed by
    /// the snapshot read; a rebuild holds a strong one (it reads the store throughout).
    fn load_index(engine: Weak<Self>, entries_with_vector: usize) {
        #[cfg(test)]
        let _held = tests::LOADER_HOLD.read();
        let started = Instant::now();
        let Some((dir, keyring)) = engine
            .upgrade()
            .map(|e| (e.snapshot_dir.clone(), Arc::clone(e.store.keyring())))
        else {
            return;
        };
        let loaded = VectorIndex::load_sealed(&dir, &keyring);
        let Some(this) = engine.upgrade() else {
            return;
        };
        // maybe_rebuild waits for readiness; the guard also keeps it out until the swap is done.
        let _rebuild_guard = this.rebuilding.lock();
        let params = IndexParams {
            capacity_hint: entries_with_vector.max(10_000),
            ..IndexParams::default()
        };
        let snapshot = match loaded {
            Ok(Some((index, last_id))) => {
                tracing::info!(
                    snapshot_entries = index.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "index snapshot loaded"
                );
                Some((index, last_id))
            }
            Ok(None) => {
                tracing::info!(
                    entries = entries_with_vector,
                    "no index snapshot: rebuilding the index from RocksDB"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, entries = entries_with_vector, "index snapshot is damaged: rebuilding the index from RocksDB");
                None
            }
        };
        let rebuilt = snapshot.is_none();
        let (index, covered) = match snapshot {
            Some(loaded) => loaded,
            None => {
                let vectors = this
                    .store
                    .last_entry_id()
                    .map_err(CacheError::from)
                    .and_then(|upto| {
                        let upto = upto.unwrap_or(0);
                        this.live_vectors(0, upto).map(|v| (v, upto))
                    });
                match vectors {
                    Ok((vectors, upto)) => (VectorIndex::rebuild(params, vectors), upto),
                    Err(e) => {
                        // Replaying everything below still indexes what can be read.
                        tracing::error!(error = %e, "index rebuild could not read the store");
                        (VectorIndex::new(params), 0)
                    }
                }
            }
        };
        // Swap first, then replay from the store: an entry written before the swap went to the
        // placeholder but is in the store; one written after goes to the new graph (and may be
        // replayed too: searches report an id once).
        this.index.swap(index);
        let caught_up = match this.live_vectors(covered.saturating_add(1), u64::MAX) {
            Ok(newer) => {
                let index = this.index.get();
                if let Err(e) = index.insert_batch(&newer) {
                    tracing::warn!(error = %e, "could not replay entries after the snapshot");
                }
                // Searches walk hnsw_rs' graph until the flat copy is ready.
                index.refresh_if_due();
                newer.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not replay entries after the snapshot");
                0
            }
        };
        let live_vectors = this
            .live
            .read()
            .entries
            .values()
            .filter(|m| m.scope.is_some())
            .count();
        this.tombstones.store(
            this.index.get().len().saturating_sub(live_vectors),
            Ordering::Relaxed,
        );
        metrics::gauge!(t::CACHE_INDEX_LOADING).set(0.0);
        tracing::info!(
            index_size = this.index.get().len(),
            caught_up,
            rebuilt,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index ready"
        );
    }

    /// Whether the start-up load of the index is done (semantic lookups in scopes too large to
    /// compare one by one are misses until then).
    pub fn index_ready(&self) -> bool {
        self.readiness.ready.load(Ordering::Acquire)
    }

    /// Blocks until the start-up load of the index is done (tests, benches, tools).
    pub fn wait_index_ready(&self) {
        let mut ready = self.readiness.lock.lock();
        while !*ready {
            self.readiness.changed.wait(&mut ready);
        }
    }

    /// Current settings.
    pub fn settings(&self) -> CacheSettings {
        self.settings.read().clone()
    }

    /// Whether lookups and write-backs are on (read without copying the settings).
    pub fn enabled(&self) -> bool {
        self.settings.read().enabled
    }

    /// The threshold for a namespace and model group (read without copying the settings).
    pub fn threshold(&self, namespace: &str, group: &str) -> f32 {
        self.settings.read().threshold(namespace, group)
    }

    /// Replaces the settings (validated by the caller) and persists them.
    pub fn set_settings(&self, s: CacheSettings) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(&s).map_err(|e| CacheError::Startup(e.to_string()))?;
        self.store.put_setting(SETTINGS_KEY, &bytes)?;
        *self.settings.write() = s;
        self.enforce_bounds();
        Ok(())
    }

    /// Model groups known to the config.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    fn load_entry(&self, id: u64) -> Result<Option<CacheEntry>, CacheError> {
        match self.store.get_entry(id)? {
            None => Ok(None),
            Some(bytes) => CacheEntry::decode(&bytes)
                .map(Some)
                .map_err(|detail| CacheError::Corrupt { id, detail }),
        }
    }

    /// Whether `id` is live (not deleted, not expired) and in `scope`.
    fn servable(live: &Live, id: u64, scope: Option<&[u8; 32]>, now: u64) -> bool {
        live.entries.get(&id).is_some_and(|m| {
            !expired_at(m.expires_ms, now) && scope.is_none_or(|s| m.scope.as_ref() == Some(s))
        })
    }

    fn hit(
        &self,
        kind: CacheOutcome,
        id: u64,
        entry: &CacheEntry,
        similarity: Option<f32>,
    ) -> Result<Hit, CacheError> {
        let completion: Value =
            serde_json::from_str(&entry.completion).map_err(|e| CacheError::Corrupt {
                id,
                detail: e.to_string(),
            })?;
        let now = now_ms();
        if let Some(m) = self.live.read().entries.get(&id) {
            m.last_access_ms.store(now, Ordering::Relaxed);
        }
        Ok(Hit {
            kind,
            entry_id: id,
            similarity,
            age: Duration::from_millis(now.saturating_sub(entry.created_ms)),
            completion: Arc::new(completion),
            usage: Usage {
                prompt_tokens: entry.prompt_tokens,
                completion_tokens: entry.completion_tokens,
                total_tokens: entry.prompt_tokens + entry.completion_tokens,
            },
        })
    }

    /// Nearest servable entries in the scope, best first, with similarity (no threshold).
    fn neighbours(
        &self,
        query: &[f32],
        scope: &[u8; 32],
    ) -> Result<Vec<(u64, f32, Option<CacheEntry>)>, CacheError> {
        let now = now_ms();
        let in_scope: Vec<u64> = {
            let live = self.live.read();
            live.scopes
                .get(scope)
                .map(|ids| {
                    ids.iter()
                        .copied()
                        .filter(|id| Self::servable(&live, *id, Some(scope), now))
                        .collect()
                })
                .unwrap_or_default()
        };
        if in_scope.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut found: Vec<(u64, f32, Option<CacheEntry>)> = if in_scope.len() <= BRUTE_FORCE_MAX {
            let mut out = Vec::with_capacity(in_scope.len());
            for id in in_scope {
                if let Some(e) = self.load_entry(id)? {
                    if let Some(v) = &e.embedding {
                        out.push((id, crate::index::dot(query, v), Some(e)));
                    }
                }
            }
            out.sort_by(|a, b| b.1.total_cmp(&a.1));
            out
        } else if !self.index_ready() {
            // The graph in use is the start-up placeholder, holding only entries written since:
            // answer a miss rather than the best of a few.
            self.stats
                .lookups_index_loading
                .fetch_add(1, Ordering::Relaxed);
            Vec::new()
        } else {
            let index = self.index.get();
            let live = self.live.read();
            index
                .search(query, SEARCH_K, DEFAULT_EF_SEARCH, |id| {
                    Self::servable(&live, id, Some(scope), now)
                })
                .into_iter()
                .map(|(id, sim)| (id, sim, None))
                .collect()
        };
        metrics::histogram!(t::CACHE_SEARCH_DURATION).record(started.elapsed().as_secs_f64());
        found.truncate(SEARCH_K);
        Ok(found)
    }

    /// Looks a request up: exact first, then semantic within its scope, verified.
    pub async fn lookup(
        &self,
        group: &str,
        keys: &CacheKeys,
        threshold: f32,
    ) -> Result<Lookup, CacheError> {
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        if let Some(id) = self.store.get_exact(&keys.exact)? {
            let live_ok = Self::servable(&self.live.read(), id, None, now);
            if live_ok {
                if let Some(entry) = self.load_entry(id)? {
                    let hit = self.hit(CacheOutcome::HitExact, id, &entry, None)?;
                    self.count_hit(&hit, group);
                    return Ok(Lookup {
                        hit: Some(hit),
                        embedding: None,
                    });
                }
            }
        }
        let (Some(scope), Some(query)) = (&keys.scope, &keys.query) else {
            self.count_miss();
            return Ok(Lookup::default());
        };
        let has_scope = self.live.read().scopes.contains_key(scope);
        if !has_scope {
            // Nothing cached in this scope: no embedding needed until the write-back.
            self.count_miss();
            return Ok(Lookup::default());
        }
        let embedding = self.embed(query).await?;
        let neighbours = self.neighbours(&embedding, scope)?;
        if let Some((_, best, _)) = neighbours.first() {
            self.stats.similarity[sim_bucket(*best)].fetch_add(1, Ordering::Relaxed);
            metrics::histogram!(t::CACHE_SIMILARITY).record(f64::from(*best));
        }
        for (id, sim, entry) in neighbours.into_iter().take(MAX_VERIFIED) {
            if sim < threshold {
                break;
            }
            let entry = match entry {
                Some(e) => e,
                None => match self.load_entry(id)? {
                    Some(e) => e,
                    None => continue,
                },
            };
            let cached_query = entry.query.as_deref().unwrap_or_default();
            if verify(query, cached_query, sim, &self.verify).is_accept() {
                let hit = self.hit(CacheOutcome::HitSemantic, id, &entry, Some(sim))?;
                self.count_hit(&hit, group);
                return Ok(Lookup {
                    hit: Some(hit),
                    embedding: Some(embedding),
                });
            }
        }
        self.count_miss();
        Ok(Lookup {
            hit: None,
            embedding: Some(embedding),
        })
    }

    /// The top-k neighbours of a prompt with their verdicts, for tuning (no side effects).
    pub async fn dry_run(
        &self,
        keys: &CacheKeys,
        threshold: f32,
    ) -> Result<Vec<Candidate>, CacheError> {
        let (Some(scope), Some(query)) = (&keys.scope, &keys.query) else {
            return Ok(Vec::new());
        };
        let embedding = self.embed(query).await?;
        let mut out = Vec::new();
        for (id, sim, entry) in self.neighbours(&embedding, scope)? {
            let entry = match entry {
                Some(e) => Some(e),
                None => self.load_entry(id)?,
            };
            let cached_query = entry.and_then(|e| e.query);
            let verdict = verify(
                query,
                cached_query.as_deref().unwrap_or_default(),
                sim,
                &self.verify,
            );
            out.push(Candidate {
                entry_id: id,
                similarity: sim,
                cached_query,
                above_threshold: sim >= threshold,
                verdict,
            });
        }
        Ok(out)
    }

    async fn embed(&self, text: &str) -> Result<Vec<f32>, CacheError> {
        let started = Instant::now();
        let embedded = self.embedder.embed(text).await?;
        metrics::histogram!(t::EMBED_DURATION, "source" => embedded.source.as_str())
            .record(started.elapsed().as_secs_f64());
        Ok(embedded.vector)
    }

    fn count_miss(&self) {
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a hit served (including coalesced ones) and what it saved.
    pub fn count_hit(&self, hit: &Hit, group: &str) {
        let counter = match hit.kind {
            CacheOutcome::HitExact => &self.stats.hits_exact,
            CacheOutcome::HitSemantic => &self.stats.hits_semantic,
            _ => &self.stats.hits_coalesced,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats
            .tokens_saved
            .fetch_add(hit.usage.total_tokens, Ordering::Relaxed);
        metrics::counter!(t::CACHE_TOKENS_SAVED_TOTAL, "model_group" => group.to_string())
            .increment(hit.usage.total_tokens);
        if let Some((pin, pout)) = self.prices.get(group) {
            let usd =
                hit.usage.prompt_tokens as f64 * pin + hit.usage.completion_tokens as f64 * pout;
            self.stats
                .usd_saved_micros
                .fetch_add((usd * 1e6).round() as u64, Ordering::Relaxed);
            metrics::gauge!(t::CACHE_USD_SAVED, "model_group" => group.to_string()).increment(usd);
        }
    }

    /// Joins an identical in-flight miss, or becomes its leader.
    pub fn join_flight(self: &Arc<Self>, key: [u8; 32]) -> Flight {
        let mut map = self.inflight.lock();
        if let Some(rx) = map.get(&key) {
            return Flight::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(FlightState::Pending);
        map.insert(key, rx);
        Flight::Leader(FlightGuard {
            engine: Arc::clone(self),
            key,
            tx,
            done: false,
        })
    }

    /// Stores an answer if it finished cleanly (`stop` / `tool_calls`): RocksDB, then the index.
    /// Returns the entry id, or `None` when the answer is not cacheable.
    pub async fn store_answer(
        self: &Arc<Self>,
        namespace: &str,
        group: &str,
        keys: CacheKeys,
        embedding: Option<Vec<f32>>,
        answer: Answer<'_>,
    ) -> Result<Option<u64>, CacheError> {
        let Answer {
            completion,
            usage,
            ttl,
        } = answer;
        if !cacheable(completion) {
            return Ok(None);
        }
        let embedding = match (&keys.query, embedding) {
            (Some(_), Some(e)) => Some(e),
            (Some(q), None) if keys.scope.is_some() => Some(self.embed(q).await?),
            _ => None,
        };
        let now = now_ms();
        let ttl = ttl.or_else(|| {
            self.settings
                .read()
                .default_ttl_seconds
                .map(Duration::from_secs)
        });
        let expires_ms = ttl.map_or(0, |d| now.saturating_add(d.as_millis() as u64).max(1));
        let entry = CacheEntry::new(
            namespace,
            group,
            keys.exact,
            keys.scope,
            keys.query,
            embedding,
            completion.to_string(),
            usage,
            now,
            expires_ms,
        );
        // RocksDB writes and the graph insert block: keep them off the async workers.
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.write_entry(entry, now))
            .await
            .map_err(|e| {
                CacheError::Store(StoreError::Engine(format!("write-back task failed: {e}")))
            })?
            .map(Some)
    }

    /// Stores an entry: RocksDB first (durable once this returns), then the live table and index.
    fn write_entry(&self, entry: CacheEntry, now: u64) -> Result<u64, CacheError> {
        let bytes = entry
            .encode()
            .map_err(|detail| CacheError::Corrupt { id: 0, detail })?;
        let id = self.store.next_id()?;
        let previous = self.store.get_exact(&entry.exact)?;
        self.store.put_entry(id, &bytes, Some(&entry.exact))?;
        // An older entry under the same exact key is superseded.
        let old = previous.filter(|old| *old != id);
        {
            let mut live = self.live.write();
            if let Some(old_id) = old {
                live.remove(old_id);
            }
            live.insert(id, Meta::of(&entry, bytes.len(), now));
        }
        if let Some(old_id) = old {
            self.store.delete_entry(old_id, None)?;
            self.tombstones.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(v) = &entry.embedding {
            let index = self.index.get();
            if let Err(e) = index.insert(id, v) {
                tracing::warn!(id, error = %e, "entry stored but not indexed");
            }
            index.refresh_if_due();
        }
        self.inserts_since_snapshot.fetch_add(1, Ordering::Relaxed);
        self.enforce_bounds();
        Ok(id)
    }

    /// Deletes one entry; returns whether it existed.
    pub fn delete(&self, id: u64) -> Result<bool, CacheError> {
        let removed = self.live.write().remove(id);
        match removed {
            Some(m) => {
                self.store.delete_entry(id, Some(&m.exact))?;
                if m.scope.is_some() {
                    self.tombstones.fetch_add(1, Ordering::Relaxed);
                }
                self.update_gauges();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Deletes every entry, or those of one namespace and/or model group. Returns how many.
    pub fn flush(&self, namespace: Option<&str>, group: Option<&str>) -> Result<usize, CacheError> {
        let ids: Vec<u64> = self
            .live
            .read()
            .entries
            .iter()
            .filter(|(_, m)| {
                namespace.is_none_or(|n| m.namespace == n) && group.is_none_or(|g| m.group == g)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.delete(*id)?;
        }
        Ok(ids.len())
    }

    /// Evicts least recently used entries beyond the size bounds.
    fn enforce_bounds(&self) {
        let (max_entries, max_bytes) = {
            let s = self.settings.read();
            (s.max_entries, s.max_bytes)
        };
        let over = |live: &Live| {
            max_entries.is_some_and(|m| live.entries.len() as u64 > m)
                || max_bytes.is_some_and(|m| live.bytes > m)
        };
        if !over(&self.live.read()) {
            self.update_gauges();
            return;
        }
        let mut by_age: Vec<(u64, u64)> = self
            .live
            .read()
            .entries
            .iter()
            .map(|(id, m)| (m.last_access_ms.load(Ordering::Relaxed), *id))
            .collect();
        by_age.sort_unstable();
        for (_, id) in by_age {
            if !over(&self.live.read()) {
                break;
            }
            if let Err(e) = self.delete(id) {
                tracing::warn!(id, error = %e, "eviction failed");
                break;
            }
        }
        self.update_gauges();
    }

    /// Removes expired entries from the store and the live table.
    pub fn sweep_expired(&self) -> usize {
        let now = now_ms();
        let ids: Vec<u64> = self
            .live
            .read()
            .entries
            .iter()
            .filter(|(_, m)| expired_at(m.expires_ms, now))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            let _ = self.delete(*id);
        }
        ids.len()
    }

    /// Rebuilds the index from the store when tombstones pass the threshold, then swaps it in.
    /// Lookups keep using the old index meanwhile. Blocking.
    pub fn maybe_rebuild(&self) -> Result<bool, CacheError> {
        if !self.index_ready() {
            // The start-up loader swaps its own graph in; a rebuild now would race it.
            return Ok(false);
        }
        let index_len = self.index.get().len();
        let tomb = self.tombstones.load(Ordering::Relaxed);
        if tomb < 64 || (tomb as f64) < TOMBSTONE_FRACTION * index_len as f64 {
            return Ok(false);
        }
        let Some(_guard) = self.rebuilding.try_lock() else {
            return Ok(false);
        };
        let started = Instant::now();
        let upto = self.store.last_entry_id()?.unwrap_or(0);
        let vectors = self.live_vectors(0, upto)?;
        let count = vectors.len();
        let fresh = VectorIndex::rebuild(
            IndexParams {
                capacity_hint: count.max(10_000),
                ..IndexParams::default()
            },
            vectors,
        );
        // The old index serves while the new one gets its flat copy.
        fresh.refresh();
        self.index.swap(fresh);
        self.tombstones.store(0, Ordering::Relaxed);
        // Entries written while the rebuild ran went into the old index: replay them.
        let newer = self.live_vectors(upto + 1, u64::MAX)?;
        if let Err(e) = self.index.get().insert_batch(&newer) {
            tracing::warn!(error = %e, "replay after rebuild failed");
        }
        tracing::info!(
            entries = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index rebuilt and swapped in"
        );
        Ok(true)
    }

    fn live_vectors(&self, from: u64, to: u64) -> Result<Vec<(u64, Vec<f32>)>, CacheError> {
        let mut out = Vec::new();
        for record in self.store.entries_from(from) {
            let (id, bytes) = record?;
            if id > to {
                break;
            }
            if !self.live.read().entries.contains_key(&id) {
                continue;
            }
            if let Ok(CacheEntry {
                embedding: Some(v), ..
            }) = CacheEntry::decode(&bytes)
            {
                out.push((id, v));
            }
        }
        Ok(out)
    }

    /// Writes an index snapshot covering every entry up to the current last id. Blocking.
    pub fn snapshot(&self) -> Result<(), CacheError> {
        if !self.index_ready() {
            // The graph in use is the start-up placeholder: saving it would replace the good
            // snapshot that is still being loaded. That snapshot plus the store covers everything.
            return Ok(());
        }
        *self.last_snapshot.lock() = Instant::now();
        let index = self.index.get();
        if index.is_empty() {
            // Nothing to save: start-up rebuilds an empty index for free.
            return Ok(());
        }
        let last = self.store.last_entry_id()?.unwrap_or(0);
        self.inserts_since_snapshot.store(0, Ordering::Relaxed);
        index
            .save_sealed(&self.snapshot_dir, last, self.store.keyring())
            .map_err(|e| CacheError::Snapshot(e.to_string()))?;
        self.store.sync()?;
        Ok(())
    }

    /// Periodic upkeep: expiry, rebuild, snapshot. Blocking; run off the HTTP workers.
    pub fn maintain(&self) {
        let expired = self.sweep_expired();
        if expired > 0 {
            tracing::debug!(expired, "expired cache entries removed");
        }
        if let Err(e) = self.maybe_rebuild() {
            tracing::warn!(error = %e, "index rebuild failed");
        }
        // A snapshot blocks inserts while it dumps the graph: take one after many inserts, or
        // after a quiet spell, not on every tick.
        let pending = self.inserts_since_snapshot.load(Ordering::Relaxed);
        let since = self.last_snapshot.lock().elapsed();
        if pending >= SNAPSHOT_AFTER_INSERTS || (pending > 0 && since >= SNAPSHOT_AFTER) {
            if let Err(e) = self.snapshot() {
                tracing::warn!(error = %e, "index snapshot failed");
            }
        }
    }

    fn update_gauges(&self) {
        let live = self.live.read();
        metrics::gauge!(t::CACHE_ENTRIES).set(live.entries.len() as f64);
        metrics::gauge!(t::CACHE_BYTES).set(live.bytes as f64);
    }

    /// Everything `/admin/cache/stats` reports.
    pub fn stats(&self) -> Value {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let hits = get(&s.hits_exact) + get(&s.hits_semantic) + get(&s.hits_coalesced);
        let served = hits + get(&s.misses);
        let live = self.live.read();
        let histogram: Vec<Value> = s
            .similarity
            .iter()
            .enumerate()
            .map(|(i, c)| {
                serde_json::json!({
                    "from": i as f32 / SIM_BUCKETS as f32,
                    "to": (i + 1) as f32 / SIM_BUCKETS as f32,
                    "count": get(c)
                })
            })
            .collect();
        let index = self.index.get();
        serde_json::json!({
            "entries": live.entries.len(),
            "bytes": live.bytes,
            "index_size": index.len(),
            // Indexed entries not yet in the flat copy searches walk (null before the first).
            "index_tail": index.flat_sizes().map(|(_, tail)| tail),
            "index_loading": !self.index_ready(),
            "lookups_while_index_loading": get(&s.lookups_index_loading),
            "tombstones": self.tombstones.load(Ordering::Relaxed),
            "lookups": get(&s.lookups),
            "hits": {"exact": get(&s.hits_exact), "semantic": get(&s.hits_semantic), "coalesced": get(&s.hits_coalesced), "total": hits},
            "misses": get(&s.misses),
            "hit_rate": if served == 0 { 0.0 } else { hits as f64 / served as f64 },
            "tokens_saved": get(&s.tokens_saved),
            "usd_saved": get(&s.usd_saved_micros) as f64 / 1e6,
            "similarity_histogram": histogram,
        })
    }
}

/// Only answers that finished normally are worth serving again.
pub fn cacheable(completion: &Value) -> bool {
    completion
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(|choices| {
            !choices.is_empty()
                && choices.iter().all(|c| {
                    matches!(
                        c.get("finish_reason").and_then(Value::as_str),
                        Some("stop" | "tool_calls")
                    )
                })
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    /// Held for writing by a test that wants the start-up loader to wait.
    pub(super) static LOADER_HOLD: RwLock<()> = parking_lot::const_rwlock(());

    const SCOPE: [u8; 32] = [7; 32];

    fn open(dir: &std::path::Path) -> Arc<CacheEngine> {
        CacheEngine::open(CacheOptions {
            data_dir: dir.to_path_buf(),
            embed: EmbedConfig::default(),
            defaults: CacheSettings::default(),
            verify: VerifyConfig::default(),
            groups: vec!["g".into()],
            prices: HashMap::new(),
            sync_writes: false,
            store: None,
        })
        .unwrap()
    }

    fn unit(rng: &mut StdRng) -> Vec<f32> {
        let mut v: Vec<f32> = (0..crate::index::DIMS)
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        crate::embed::normalize(&mut v);
        v
    }

    /// Writes an entry of `SCOPE` with `vector`, as a write-back does; returns its id.
    fn put(engine: &CacheEngine, i: u64, vector: Vec<f32>) -> u64 {
        let mut exact = [0u8; 32];
        exact[..8].copy_from_slice(&i.to_le_bytes());
        let entry = CacheEntry::new(
            "ns",
            "g",
            exact,
            Some(SCOPE),
            Some(format!("question {i}")),
            Some(vector),
            "{}".into(),
            Usage::default(),
            now_ms(),
            0,
        );
        engine.write_entry(entry, now_ms()).unwrap()
    }

    fn nearest(engine: &CacheEngine, query: &[f32]) -> Option<u64> {
        engine
            .neighbours(query, &SCOPE)
            .unwrap()
            .first()
            .map(|n| n.0)
    }

    /// A scope too large to compare one by one goes through the index; while the snapshot is
    /// loading it misses, entries written meanwhile are not lost, and the loaded graph is used.
    #[test]
    fn large_scope_misses_while_the_index_loads_then_the_loaded_graph_answers() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        let vectors: Vec<Vec<f32>> = (0..BRUTE_FORCE_MAX as u64 * 2)
            .map(|_| unit(&mut rng))
            .collect();
        let mut ids = Vec::new();
        {
            let engine = open(dir.path());
            engine.wait_index_ready();
            for (i, v) in vectors.iter().enumerate() {
                ids.push(put(&engine, i as u64, v.clone()));
            }
            assert_eq!(nearest(&engine, &vectors[3]), Some(ids[3]));
            engine.snapshot().unwrap();
        }
        let manifest = std::fs::read_to_string(dir.path().join("index/MANIFEST")).unwrap();

        let hold = LOADER_HOLD.write();
        let engine = open(dir.path());
        assert!(!engine.index_ready());
        assert_eq!(engine.stats()["index_loading"], true);
        // Served meanwhile: nothing from the graph, so a miss rather than a wrong neighbour.
        assert_eq!(nearest(&engine, &vectors[3]), None);
        let late_vector = unit(&mut rng);
        let late = put(&engine, 10_000, late_vector.clone());
        assert_eq!(nearest(&engine, &late_vector), None);
        // A snapshot now would save the placeholder over the good snapshot: it is skipped.
        engine.snapshot().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("index/MANIFEST")).unwrap(),
            manifest
        );
        drop(hold);

        engine.wait_index_ready();
        assert!(engine.index_ready());
        assert_eq!(engine.stats()["index_loading"], false);
        assert_eq!(engine.stats()["lookups_while_index_loading"], 2);
        for i in [0usize, 3, 77, vectors.len() - 1] {
            assert_eq!(nearest(&engine, &vectors[i]), Some(ids[i]), "entry {i}");
        }
        assert_eq!(
            nearest(&engine, &late_vector),
            Some(late),
            "written during the load"
        );
        assert_eq!(engine.index.get().len(), vectors.len() + 1);
    }

    #[test]
    fn damaged_snapshot_is_rebuilt_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = StdRng::seed_from_u64(10);
        let vectors: Vec<Vec<f32>> = (0..BRUTE_FORCE_MAX as u64 + 10)
            .map(|_| unit(&mut rng))
            .collect();
        let mut ids = Vec::new();
        {
            let engine = open(dir.path());
            engine.wait_index_ready();
            for (i, v) in vectors.iter().enumerate() {
                ids.push(put(&engine, i as u64, v.clone()));
            }
            engine.snapshot().unwrap();
        }
        for f in std::fs::read_dir(dir.path().join("index")).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "graph") {
                std::fs::write(&p, b"garbage").unwrap();
            }
        }
        let engine = open(dir.path());
        engine.wait_index_ready();
        assert_eq!(engine.index.get().len(), vectors.len());
        for i in [1usize, 40, vectors.len() - 1] {
            assert_eq!(nearest(&engine, &vectors[i]), Some(ids[i]));
        }
    }
}
