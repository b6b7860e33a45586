//! HNSW vector index over cache entry ids: the only module that imports `hnsw_rs`.
//!
//! The graph is derived data: RocksDB (`crate::store`) is the source of truth. The index is
//! snapshotted next to it with the last entry id it covers ([`VectorIndex::save`]); start-up loads
//! the snapshot and re-inserts the entries written after it, or rebuilds from the store when the
//! snapshot is missing or damaged ([`VectorIndex::rebuild`]). hnsw_rs cannot delete: callers
//! filter tombstoned ids at search time and rebuild in the background when they pile up, then
//! swap the new index in through [`SharedIndex`].
//!
//! Searches do not walk hnsw_rs' own structure once the index is large: [`VectorIndex::refresh`]
//! takes a flat copy of the graph (`flat.rs`, int8 codes, exact re-scoring), and the points
//! inserted after the copy form a short tail that is scanned one by one until the next copy.
//! hnsw_rs still builds, persists and reloads the graph, and answers filtered searches that the
//! copy cannot.
//!
//! Concurrency: hnsw_rs inserts and searches through `&self` with per-point locks, so searches
//! run while inserts are under way. The exclusive sections are [`VectorIndex::save`], which
//! holds back inserts (not searches) so that the dump is a consistent graph, and the listing of
//! points at the start of a refresh.

mod distance;
mod flat;
mod snapshot;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hnsw_rs::prelude::{FilterT, Hnsw};
use parking_lot::RwLock;

pub use distance::{dot, CosineDistance};
pub use snapshot::SnapshotInfo;

/// Dimensions of the embeddings Sluice indexes (all-MiniLM-L6-v2).
pub const DIMS: usize = 384;

/// hnsw_rs caps the number of layers at 16.
const MAX_LAYERS: usize = 16;

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector of the wrong length, or with NaN / infinite components.
    #[error("invalid vector: {0}")]
    InvalidVector(String),
    /// An entry id that does not fit hnsw_rs' `usize` ids (only on 32-bit targets).
    #[error("entry id {0} does not fit in usize")]
    IdOutOfRange(u64),
    /// Reading or writing the snapshot failed.
    #[error("snapshot I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The snapshot exists but cannot be trusted: rebuild from the store.
    #[error("snapshot damaged: {0}")]
    Damaged(String),
    /// hnsw_rs reported an error (or panicked) while dumping or loading.
    #[error("hnsw_rs: {0}")]
    Hnsw(String),
}

/// Graph parameters. The defaults were picked by measurement on clustered 384-d vectors shaped
/// like MiniLM embeddings (`benches/index.rs`, BENCHMARKS.md): at 200k entries, M=32 and
/// ef_construction=200 find the true nearest of every paraphrase query at ef 48, where M=16 and
/// ef_construction=100 found 87 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexParams {
    /// Neighbours kept per node and layer (`M`; layer 0 keeps `2 * M`). At most 256.
    pub max_nb_connection: usize,
    /// Candidate list size while inserting: larger builds a better graph, more slowly.
    pub ef_construction: usize,
    /// Expected number of entries: only pre-sizes tables, not a limit.
    pub capacity_hint: usize,
    /// Fill neighbour lists with the candidates the selection heuristic pruned (hnsw_rs'
    /// `keep_pruned`). Off: on clustered data it fills the lists with near duplicates and halves recall (BENCHMARKS.md).
    pub keep_pruned: bool,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            max_nb_connection: 32,
            ef_construction: 200,
            capacity_hint: 100_000,
            keep_pruned: false,
        }
    }
}

/// Default candidate list size for searches (`ef`, in layers 1 and 0 of the flat copy), picked
/// with the parameters above: at 1M entries recall@1 1.000 at p99 0.62 ms (BENCHMARKS.md).
pub const DEFAULT_EF_SEARCH: usize = 48;

/// Vectors inserted per parallel batch during a rebuild.
const REBUILD_BATCH: usize = 8192;

/// Points inserted after the flat copy that make it due for a refresh. The tail is scanned in
/// full on every search (int8, ~0.1 ms for this many), and a refresh at 1M entries costs a few
/// CPU seconds in the background (BENCHMARKS.md).
pub const TAIL_MAX: usize = 4096;

/// Candidates of the approximate walk re-scored with the exact f32 dot product (at least `k`).
const RESCORE: usize = 32;

/// What searches read besides hnsw_rs.
#[derive(Default)]
struct View {
    /// The flat copy, once a refresh made one.
    flat: Option<Arc<flat::FlatGraph>>,
    /// Points inserted since the copy being built or in use was taken; `None` until the first
    /// refresh starts (inserts are not recorded twice before anyone needs them).
    tail: Option<flat::Tail>,
}

/// An HNSW index of L2-normalised `DIMS`-dimensional vectors keyed by entry id.
pub struct VectorIndex {
    /// `'static`: built here (owns its data) or loaded from a snapshot whose loader is leaked on
    /// purpose (see `snapshot.rs`).
    /// Declared before `view`: dropping hnsw_rs' structure first breaks its reference cycles,
    /// then the copy's `Arc`s free the points.
    hnsw: Hnsw<'static, f32, CosineDistance>,
    /// Inserts hold it shared, `save` and the start of a refresh exclusively: neither ever sees a
    /// half-inserted point.
    insert_gate: RwLock<()>,
    /// Lock order: `insert_gate`, then `view`.
    view: RwLock<View>,
    /// A refresh is under way.
    refreshing: AtomicBool,
    params: IndexParams,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("len", &self.len())
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

fn check_vector(v: &[f32]) -> Result<(), IndexError> {
    if v.len() != DIMS {
        return Err(IndexError::InvalidVector(format!(
            "{} dimensions, expected {DIMS}",
            v.len()
        )));
    }
    if !v.iter().all(|x| x.is_finite()) {
        return Err(IndexError::InvalidVector("non-finite component".into()));
    }
    Ok(())
}

/// The first `k` distinct ids of a best-first list. A snapshot taken while inserts were racing
/// can hold an id that start-up inserts again: each is reported once, with its best similarity.
fn first_k_distinct(found: impl IntoIterator<Item = (u64, f32)>, k: usize) -> Vec<(u64, f32)> {
    let mut out: Vec<(u64, f32)> = Vec::with_capacity(k);
    for (id, sim) in found {
        if out.len() == k {
            break;
        }
        if out.iter().all(|(seen, _)| *seen != id) {
            out.push((id, sim));
        }
    }
    out
}

fn to_data_id(id: u64) -> Result<usize, IndexError> {
    usize::try_from(id).map_err(|_| IndexError::IdOutOfRange(id))
}

impl VectorIndex {
    /// An empty index.
    pub fn new(params: IndexParams) -> Self {
        let hnsw = Hnsw::new(
            params.max_nb_connection.clamp(2, 256),
            params.capacity_hint,
            MAX_LAYERS,
            params.ef_construction.max(1),
            CosineDistance,
        );
        Self::from_hnsw(hnsw, params)
    }

    fn from_hnsw(mut hnsw: Hnsw<'static, f32, CosineDistance>, params: IndexParams) -> Self {
        hnsw.set_keeping_pruned(params.keep_pruned);
        VectorIndex {
            hnsw,
            insert_gate: RwLock::new(()),
            view: RwLock::new(View::default()),
            refreshing: AtomicBool::new(false),
            params,
        }
    }

    /// The parameters the graph was built with.
    pub fn params(&self) -> IndexParams {
        self.params
    }

    /// Number of vectors in the graph (tombstoned ones included).
    pub fn len(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    /// True when nothing has been inserted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts one vector. Inserting an id twice stores it twice; searches report it once.
    pub fn insert(&self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        check_vector(vector)?;
        let id = to_data_id(id)?;
        let _gate = self.insert_gate.read();
        self.hnsw.insert_slice((vector, id));
        self.record_tail(std::iter::once((id as u64, vector)));
        Ok(())
    }

    /// Inserts many vectors in parallel (rayon's global pool). Validates all before inserting any.
    pub fn insert_batch(&self, items: &[(u64, Vec<f32>)]) -> Result<(), IndexError> {
        let mut batch = Vec::with_capacity(items.len());
        for (id, vector) in items {
            check_vector(vector)?;
            batch.push((vector.as_slice(), to_data_id(*id)?));
        }
        let _gate = self.insert_gate.read();
        self.hnsw.parallel_insert_slice(&batch);
        self.record_tail(items.iter().map(|(id, v)| (*id, v.as_slice())));
        Ok(())
    }

    /// Adds just-inserted points to the tail, if a flat copy is in use or being built.
    /// Call with `insert_gate` held shared.
    fn record_tail<'a>(&self, points: impl IntoIterator<Item = (u64, &'a [f32])>) {
        let mut view = self.view.write();
        if let Some(tail) = view.tail.as_mut() {
            for (id, v) in points {
                tail.push(id, v);
            }
        }
    }

    /// Whether a refresh of the flat copy is due: none yet (and something to copy), or the tail
    /// is long. A young cache is thus searched mostly by scanning its tail: exact recall, and
    /// cheaper than a graph walk at that size.
    pub fn refresh_due(&self) -> bool {
        if self.refreshing.load(Ordering::Acquire) {
            return false;
        }
        let view = self.view.read();
        match (&view.flat, &view.tail) {
            (None, _) => !self.is_empty(),
            (Some(_), Some(tail)) => tail.len() >= TAIL_MAX,
            (Some(_), None) => false,
        }
    }

    /// Starts a refresh on rayon's pool if one is due (see [`VectorIndex::refresh_due`]).
    pub fn refresh_if_due(self: &Arc<Self>) {
        if self.refresh_due() {
            let index = Arc::clone(self);
            rayon::spawn(move || index.refresh());
        }
    }

    /// Takes a new flat copy of the graph for searches to walk, and drops the tail it covers.
    /// Inserts wait only while the points are listed (`Arc` clones); the copy is built without
    /// locks, and searches use the previous copy plus the tail meanwhile. A refresh already
    /// under way makes this a no-op.
    pub fn refresh(&self) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (layers, covered) = {
            let _gate = self.insert_gate.write();
            let layers = flat::FlatGraph::capture(&self.hnsw);
            let covered = self
                .view
                .write()
                .tail
                .get_or_insert_with(Default::default)
                .len();
            (layers, covered)
        };
        let copy = Arc::new(flat::FlatGraph::build(layers));
        {
            let mut view = self.view.write();
            if let Some(tail) = view.tail.as_mut() {
                tail.drop_front(covered);
            }
            view.flat = Some(copy);
        }
        self.refreshing.store(false, Ordering::Release);
    }

    /// Number of points in the flat copy and in the tail after it (`None` before any refresh).
    pub fn flat_sizes(&self) -> Option<(usize, usize)> {
        let view = self.view.read();
        let flat = view.flat.as_ref()?;
        Some((flat.len(), view.tail.as_ref().map_or(0, flat::Tail::len)))
    }

    /// The `k` nearest ids accepted by `filter`, best first, with their cosine similarity.
    ///
    /// `ef` is the candidate list size (raised to `k` if smaller): larger is slower and finds
    /// more true neighbours. `filter` should accept most ids (tombstones, expired entries): a
    /// filter that rejects most of the graph makes hnsw_rs walk much more of it.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: impl Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        if k == 0 || check_vector(query).is_err() {
            return Vec::new();
        }
        let ef = ef.max(k);
        let flat = self.view.read().flat.clone();
        let found = match flat {
            Some(flat) => self.search_flat(&flat, query, k, ef, &filter),
            None => self.search_hnsw(query, ef, &filter),
        };
        let mut out = first_k_distinct(found, k);
        if out.len() < k {
            // Too few accepted among the candidates (a filter that rejects many): hnsw_rs'
            // filtered search walks on until it finds `k`.
            let accept = |id: &usize| filter(*id as u64);
            let found = self
                .hnsw
                .search_filter(query, k, ef, Some(&accept as &dyn FilterT));
            out = first_k_distinct(found.iter().map(|n| (n.d_id as u64, 1.0 - n.distance)), k);
        }
        out
    }

    /// hnsw_rs' own search, accepted ids only, best first.
    fn search_hnsw(
        &self,
        query: &[f32],
        ef: usize,
        filter: &impl Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        // hnsw_rs' filtered search never takes its early exit, which made it ~4x slower in the
        // bench even with a filter that accepts everything. Tombstones are few: search without
        // the filter and keep the accepted ones among the `ef` candidates.
        let mut found = self.hnsw.search(query, ef, ef);
        found.retain(|n| filter(n.d_id as u64));
        found
            .into_iter()
            .map(|n| (n.d_id as u64, (1.0 - n.distance)))
            .collect()
    }

    /// The flat copy's walk plus a scan of the tail, on int8 codes; the best accepted
    /// candidates are re-scored with the exact dot product. Best first.
    fn search_flat(
        &self,
        flat: &flat::FlatGraph,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &impl Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        let code = flat::Code::of(query);
        let keep = k.max(RESCORE);
        let mut out: Vec<(u64, f32)> = flat
            .search(&code, ef)
            .into_iter()
            .filter(|s| filter(flat.id(s.1)))
            .take(keep)
            .map(|s| (flat.id(s.1), flat.exact(query, s.1)))
            .collect();
        {
            let view = self.view.read();
            if let Some(tail) = view.tail.as_ref() {
                out.extend(tail.nearest(&code, query, keep, filter));
            }
        }
        for (_, sim) in out.iter_mut() {
            // The same cap as hnsw_rs' clamped distance: rounding can push a dot past 1.
            *sim = sim.min(1.0);
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// Builds a fresh index from `(id, vector)` pairs, inserting in parallel batches. Invalid
    /// vectors are skipped with a warning, so that one bad entry cannot block a rebuild.
    pub fn rebuild(
        params: IndexParams,
        items: impl IntoIterator<Item = (u64, Vec<f32>)>,
    ) -> VectorIndex {
        let index = VectorIndex::new(params);
        let mut batch = Vec::with_capacity(REBUILD_BATCH);
        let mut skipped = 0usize;
        let mut flush = |batch: &mut Vec<(u64, Vec<f32>)>| {
            if index.insert_batch(batch).is_err() {
                // insert_batch validates all first: fall back to one by one to skip the bad ones.
                for (id, v) in batch.iter() {
                    if index.insert(*id, v).is_err() {
                        skipped += 1;
                    }
                }
            }
            batch.clear();
        };
        for item in items {
            batch.push(item);
            if batch.len() == REBUILD_BATCH {
                flush(&mut batch);
            }
        }
        flush(&mut batch);
        if skipped > 0 {
            tracing::warn!(skipped, "index rebuild skipped invalid vectors");
        }
        index
    }
}

/// The index currently in use, swappable as a whole after a background rebuild.
///
/// Readers take an `Arc` clone (a read lock held for a pointer copy) and search without any
/// lock. Swap protocol for a rebuild: build from the store up to id `n`, swap, then insert the
/// entries with id `> n` into the new index (inserts that raced into the old one are lost with
/// it, so replay them from the store).
#[derive(Debug)]
pub struct SharedIndex {
    current: RwLock<Arc<VectorIndex>>,
}

impl SharedIndex {
    /// Wraps the index to start with.
    pub fn new(index: VectorIndex) -> Self {
        SharedIndex {
            current: RwLock::new(Arc::new(index)),
        }
    }

    /// The index in use now. Cheap: clone of an `Arc`.
    pub fn get(&self) -> Arc<VectorIndex> {
        Arc::clone(&self.current.read())
    }

    /// Puts `index` in use and returns the previous one (dropped when its last reader is done).
    pub fn swap(&self, index: VectorIndex) -> Arc<VectorIndex> {
        std::mem::replace(&mut *self.current.write(), Arc::new(index))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    pub(crate) fn unit_vectors(n: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut v: Vec<f32> = (0..DIMS).map(|_| rng.random::<f32>() - 0.5).collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect()
    }

    /// A cheaper graph than the defaults: these tests are about behaviour, not recall.
    fn small_params() -> IndexParams {
        IndexParams {
            max_nb_connection: 16,
            ef_construction: 100,
            capacity_hint: 2000,
            ..IndexParams::default()
        }
    }

    #[test]
    fn finds_itself_with_similarity_one() {
        let vs = unit_vectors(2000, 1);
        let items: Vec<(u64, Vec<f32>)> = vs
            .iter()
            .cloned()
            .zip(1u64..)
            .map(|(v, i)| (i, v))
            .collect();
        let index = VectorIndex::rebuild(small_params(), items);
        assert_eq!(index.len(), 2000);
        for (i, v) in vs.iter().enumerate().step_by(97) {
            let hits = index.search(v, 3, DEFAULT_EF_SEARCH, |_| true);
            assert_eq!(hits[0].0, i as u64 + 1);
            assert!(hits[0].1 > 0.9999, "{}", hits[0].1);
            assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }

    #[test]
    fn filter_hides_tombstoned_ids() {
        let vs = unit_vectors(500, 2);
        let index = VectorIndex::new(small_params());
        for (i, v) in vs.iter().enumerate() {
            index.insert(i as u64, v).unwrap();
        }
        let hits = index.search(&vs[10], 5, 32, |id| id != 10);
        assert!(!hits.is_empty());
        assert!(hits.iter().all(|(id, _)| *id != 10));
    }

    #[test]
    fn rejects_bad_vectors_and_empty_search_is_empty() {
        let index = VectorIndex::new(small_params());
        assert!(index.search(&[0.0; DIMS], 1, 10, |_| true).is_empty());
        assert!(matches!(
            index.insert(1, &[1.0; 3]),
            Err(IndexError::InvalidVector(_))
        ));
        let mut nan = vec![0.0; DIMS];
        nan[0] = f32::NAN;
        assert!(index.insert(1, &nan).is_err());
        assert!(index.is_empty());
    }

    #[test]
    fn duplicate_ids_are_reported_once() {
        let vs = unit_vectors(50, 3);
        let index = VectorIndex::new(small_params());
        for (i, v) in vs.iter().enumerate() {
            index.insert(i as u64, v).unwrap();
        }
        index.insert(7, &vs[7]).unwrap();
        let hits = index.search(&vs[7], 5, 32, |_| true);
        assert_eq!(hits.iter().filter(|(id, _)| *id == 7).count(), 1);
    }

    #[test]
    fn searches_run_while_inserting_and_swap_replaces() {
        let vs = unit_vectors(3000, 4);
        let shared = Arc::new(SharedIndex::new(VectorIndex::new(small_params())));
        let writer = {
            let shared = shared.clone();
            let vs = vs.clone();
            std::thread::spawn(move || {
                let index = shared.get();
                for (i, v) in vs.iter().enumerate() {
                    index.insert(i as u64, v).unwrap();
                }
            })
        };
        let mut rng = StdRng::seed_from_u64(5);
        while !writer.is_finished() {
            let q = &vs[rng.random_range(0..vs.len())];
            let _ = shared.get().search(q, 1, 16, |_| true);
        }
        writer.join().unwrap();
        assert_eq!(shared.get().len(), 3000);
        let old = shared.swap(VectorIndex::new(small_params()));
        assert_eq!(old.len(), 3000);
        assert!(shared.get().is_empty());
    }

    /// Each vector's own id comes back first, with similarity ~1.
    fn assert_finds_each(index: &VectorIndex, vs: &[Vec<f32>], step: usize) {
        for (i, v) in vs.iter().enumerate().step_by(step) {
            let hits = index.search(v, 3, DEFAULT_EF_SEARCH, |_| true);
            assert_eq!(hits[0].0, i as u64, "vector {i}");
            assert!(hits[0].1 > 0.9999 && hits[0].1 <= 1.0, "{}", hits[0].1);
            assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }

    #[test]
    fn flat_copy_answers_like_brute_force_with_exact_similarities() {
        let vs = unit_vectors(3000, 6);
        let index = VectorIndex::new(small_params());
        let items: Vec<(u64, Vec<f32>)> = vs
            .iter()
            .cloned()
            .zip(0u64..)
            .map(|(v, i)| (i, v))
            .collect();
        index.insert_batch(&items).unwrap();
        assert!(index.refresh_due(), "no copy yet");
        index.refresh();
        assert_eq!(index.flat_sizes(), Some((3000, 0)));
        assert!(!index.refresh_due(), "empty tail");
        assert_finds_each(&index, &vs, 7);
        // Noisy queries: the top hit and its similarity are the brute-force ones.
        let noise = unit_vectors(200, 7);
        let mut agree = 0;
        for (j, n) in noise.iter().enumerate() {
            let base = &vs[j * 13];
            let mut q: Vec<f32> = base.iter().zip(n).map(|(a, b)| a + 0.6 * b).collect();
            let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
            q.iter_mut().for_each(|x| *x /= norm);
            let truth = vs
                .iter()
                .enumerate()
                .map(|(i, v)| (i as u64, dot(&q, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let hit = index.search(&q, 1, 64, |_| true)[0];
            if hit.0 == truth.0 {
                assert!((hit.1 - truth.1).abs() < 1e-5, "{hit:?} vs {truth:?}");
                agree += 1;
            }
        }
        assert!(agree >= 190, "{agree}/200 agree with brute force");
    }

    #[test]
    fn points_inserted_after_the_copy_are_found_until_the_next_one() {
        let vs = unit_vectors(1500, 8);
        let index = VectorIndex::new(small_params());
        for (i, v) in vs.iter().enumerate().take(1000) {
            index.insert(i as u64, v).unwrap();
        }
        assert_eq!(index.flat_sizes(), None);
        index.refresh();
        for (i, v) in vs.iter().enumerate().skip(1000) {
            index.insert(i as u64, v).unwrap();
        }
        assert_eq!(index.flat_sizes(), Some((1000, 500)));
        assert_finds_each(&index, &vs, 3);
        // The filter applies to the tail too, and a restrictive one still gets its `k`.
        let hits = index.search(&vs[1200], 5, 32, |id| id != 1200);
        assert!(hits.iter().all(|(id, _)| *id != 1200));
        let hits = index.search(&vs[5], 2, 32, |id| id == 1400 || id == 3);
        let mut ids: Vec<u64> = hits.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![3, 1400]);
        // A point in both the copy and the tail is reported once.
        index.insert(7, &vs[7]).unwrap();
        let hits = index.search(&vs[7], 5, 32, |_| true);
        assert_eq!(hits.iter().filter(|(id, _)| *id == 7).count(), 1);
        index.refresh();
        assert_eq!(index.flat_sizes(), Some((1501, 0)));
        assert_finds_each(&index, &vs, 3);
    }

    #[test]
    fn refreshes_racing_inserts_lose_no_point() {
        let vs = unit_vectors(4000, 9);
        let index = Arc::new(VectorIndex::new(small_params()));
        index.insert_batch(&[(0, vs[0].clone())]).unwrap();
        index.refresh();
        let writer = {
            let index = index.clone();
            let vs = vs.clone();
            std::thread::spawn(move || {
                for (i, v) in vs.iter().enumerate().skip(1) {
                    index.insert(i as u64, v).unwrap();
                }
            })
        };
        let mut refreshes = 0;
        while !writer.is_finished() {
            index.refresh();
            refreshes += 1;
        }
        writer.join().unwrap();
        assert!(refreshes > 0);
        let (copied, tail) = index.flat_sizes().unwrap();
        assert_eq!(
            copied + tail,
            4000,
            "every point in exactly one of copy and tail"
        );
        assert_finds_each(&index, &vs, 1);
    }
}
