//! A read-only copy of the hnsw_rs graph laid out for search: neighbour lists as flat `u32`
//! arrays, vectors as int8 codes in one contiguous block, a per-thread visited table.
//!
//! hnsw_rs builds, updates and persists the graph; this only reads it. At 1M entries its own
//! search spends most of its time on memory, not arithmetic: per visited neighbour it follows two
//! `Arc`s, takes a lock, hashes the id into a `HashMap` and reads a 1.5 KB f32 vector on a cold
//! cache line (BENCHMARKS.md, profile of 1M searches). Here a visited neighbour costs one `u32`
//! read and a 384-byte int8 dot product, and the walk's top candidates are re-scored exactly
//! from the f32 vectors hnsw_rs keeps, so the similarities callers see are exact.
//!
//! The copy covers the points the graph held when it was taken. Points inserted later live in the
//! owner's tail (see `mod.rs`) until the next copy.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use hnsw_rs::hnsw::Point;
use hnsw_rs::prelude::{Hnsw, PointId};
use rayon::prelude::*;
use simsimd::SpatialSimilarity;

use super::{CosineDistance, DIMS};

/// A vector quantized to int8 with one scale: `v[i] ~= code[i] * scale`.
#[derive(Debug, Clone)]
pub(super) struct Code {
    /// `DIMS` codes.
    pub codes: Box<[i8]>,
    /// Multiplier back to the vector's units.
    pub scale: f32,
}

impl Code {
    /// Quantizes `v` with the scale that maps its largest component to ±127.
    pub fn of(v: &[f32]) -> Code {
        let mut codes = vec![0i8; v.len()].into_boxed_slice();
        let scale = quantize_into(v, &mut codes);
        Code { codes, scale }
    }

    /// Approximate dot product with another code.
    #[inline]
    pub fn dot(&self, codes: &[i8], scale: f32) -> f32 {
        dot_i8(&self.codes, codes) * self.scale * scale
    }
}

/// Writes the int8 codes of `v` into `out` and returns the scale.
fn quantize_into(v: &[f32], out: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        out.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        // In [-127, 127] by construction of `scale`; `as` saturates anyway.
        *o = (x / scale).round() as i8;
    }
    scale
}

/// Integer dot product of two code arrays (simsimd kernel, picked at run time).
#[inline]
fn dot_i8(a: &[i8], b: &[i8]) -> f32 {
    i8::dot(a, b).map_or(0.0, |d| d as f32)
}

/// Points indexed after the flat copy was taken, one contiguous array per field so that the
/// scan every search makes of them streams through memory.
#[derive(Debug, Default)]
pub(super) struct Tail {
    ids: Vec<u64>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    vectors: Vec<f32>,
}

impl Tail {
    /// Appends a point (`v` has `DIMS` components: the index checks before inserting).
    pub fn push(&mut self, id: u64, v: &[f32]) {
        let at = self.codes.len();
        self.codes.resize(at + DIMS, 0);
        let scale = self
            .codes
            .get_mut(at..)
            .map_or(0.0, |out| quantize_into(v, out));
        self.ids.push(id);
        self.scales.push(scale);
        self.vectors.extend_from_slice(v);
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Drops the first `n` points (the ones a new copy covers).
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len());
        self.ids.drain(..n);
        self.scales.drain(..n);
        self.codes.drain(..n * DIMS);
        self.vectors.drain(..n * DIMS);
    }

    /// The `keep` accepted points nearest to the query by code, as `(id, exact similarity)`.
    pub fn nearest(
        &self,
        q: &Code,
        query: &[f32],
        keep: usize,
        filter: &impl Fn(u64) -> bool,
    ) -> Vec<(u64, f32)> {
        let mut scored: Vec<Scored> = self
            .codes
            .chunks_exact(DIMS)
            .zip(&self.scales)
            .zip(&self.ids)
            .enumerate()
            .filter(|(_, (_, id))| filter(**id))
            .map(|(i, ((codes, scale), _))| Scored(q.dot(codes, *scale), i as u32))
            .collect();
        if scored.len() > keep {
            scored.select_nth_unstable_by(keep, |a, b| b.cmp(a));
            scored.truncate(keep);
        }
        scored
            .into_iter()
            .filter_map(|Scored(_, i)| {
                let i = i as usize;
                let v = self.vectors.get(i * DIMS..(i + 1) * DIMS)?;
                Some((*self.ids.get(i)?, super::dot(query, v)))
            })
            .collect()
    }
}

/// A similarity with the total order heaps need (similarities here are always finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Scored(pub f32, pub u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Per-thread "seen in this search" marks: an epoch per node, so starting a search is O(1).
struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped after 65,535 searches: old marks could collide with the new epoch.
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `i`; false if it already was in this search.
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        match self.marks.get_mut(i as usize) {
            Some(m) if *m != self.epoch => {
                *m = self.epoch;
                true
            }
            _ => false,
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

/// The graph's points, as hnsw_rs held them when the copy was taken.
type Points = Vec<Arc<Point<'static, f32>>>;

/// The search copy of an hnsw_rs graph. Nodes are numbered densely, layer by layer in hnsw_rs'
/// order, so that a node of level >= 1 is numbered at or after `upper_start`.
pub(super) struct FlatGraph {
    /// Entry id of each node.
    ids: Vec<u64>,
    /// `DIMS` int8 codes per node.
    codes: Vec<i8>,
    /// Quantization scale per node.
    scales: Vec<f32>,
    /// hnsw_rs' points, for the exact re-scoring of the best candidates.
    points: Points,
    /// Layer-0 neighbours of node `i`: `links0[offsets0[i]..offsets0[i + 1]]`.
    offsets0: Vec<usize>,
    links0: Vec<u32>,
    /// First node of level >= 1.
    upper_start: u32,
    /// `upper[i - upper_start][l - 1]`: neighbours of node `i` in layer `l >= 1`.
    upper: Vec<Vec<Vec<u32>>>,
    /// Where every search starts: a node of the top layer.
    entry: u32,
    top_level: usize,
}

impl std::fmt::Debug for FlatGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatGraph")
            .field("len", &self.len())
            .field("links", &self.links0.len())
            .field("top_level", &self.top_level)
            .finish_non_exhaustive()
    }
}

impl FlatGraph {
    /// An empty copy (searches find nothing).
    pub fn empty() -> FlatGraph {
        FlatGraph {
            ids: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            points: Vec::new(),
            offsets0: vec![0],
            links0: Vec::new(),
            upper_start: 0,
            upper: Vec::new(),
            entry: 0,
            top_level: 0,
        }
    }

    /// The points of each layer of `hnsw` (cheap: `Arc` clones). Call with inserts held back,
    /// so that no point is half-inserted; [`FlatGraph::build`] then runs without any lock.
    pub fn capture(hnsw: &Hnsw<'static, f32, CosineDistance>) -> Vec<Points> {
        let indexation = hnsw.get_point_indexation();
        let top = usize::from(indexation.get_max_level_observed());
        (0..=top)
            .map(|layer| indexation.get_layer_iterator(layer).collect())
            .collect()
    }

    /// Builds the copy from the captured layers (rayon's pool). Links to points that were not
    /// captured are left out.
    pub fn build(layers: Vec<Points>) -> FlatGraph {
        let Some(top_level) = layers.iter().rposition(|l| !l.is_empty()) else {
            return FlatGraph::empty();
        };
        let mut layer_start = Vec::with_capacity(layers.len() + 1);
        let mut total = 0usize;
        for l in &layers {
            layer_start.push(total);
            total += l.len();
        }
        layer_start.push(total);
        let dense = |p: &PointId| -> Option<u32> {
            let layer = usize::from(p.0);
            let rank = usize::try_from(p.1).ok()?;
            let start = *layer_start.get(layer)?;
            let end = *layer_start.get(layer + 1)?;
            (start + rank < end).then(|| (start + rank) as u32)
        };
        let points: Points = layers.into_iter().flatten().collect();
        let n = points.len();

        // Per node: layer-0 links and the links of its upper layers, mapped to dense numbers.
        let lists: Vec<(Vec<u32>, Vec<Vec<u32>>)> = points
            .par_iter()
            .map(|p| {
                let level = usize::from(p.get_point_id().0);
                let mut by_layer = p
                    .get_neighborhood_id()
                    .into_iter()
                    .take(level + 1)
                    .map(|l| {
                        l.iter()
                            .filter_map(|nb| dense(&nb.p_id))
                            .collect::<Vec<u32>>()
                    });
                let layer0 = by_layer.next().unwrap_or_default();
                (layer0, by_layer.collect())
            })
            .collect();

        let mut codes = vec![0i8; n * DIMS];
        let scales: Vec<f32> = codes
            .par_chunks_mut(DIMS)
            .zip(points.par_iter())
            .map(|(out, p)| quantize_into(p.get_v(), out))
            .collect();

        let upper_start = layer_start.get(1).copied().unwrap_or(n);
        let mut offsets0 = Vec::with_capacity(n + 1);
        let mut links0 = Vec::with_capacity(lists.iter().map(|(l0, _)| l0.len()).sum());
        let mut upper = Vec::with_capacity(n - upper_start);
        offsets0.push(0usize);
        for (i, (l0, up)) in lists.into_iter().enumerate() {
            links0.extend_from_slice(&l0);
            offsets0.push(links0.len());
            if i >= upper_start {
                upper.push(up);
            }
        }
        FlatGraph {
            ids: points.iter().map(|p| p.get_origin_id() as u64).collect(),
            codes,
            scales,
            points,
            offsets0,
            links0,
            upper_start: upper_start as u32,
            upper,
            // The first point of the top layer: hnsw_rs' own entry point unless parallel
            // inserts raced for it, and any top-layer node is a valid start.
            entry: layer_start[top_level] as u32,
            top_level,
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Approximate similarity of node `i` to the query code.
    #[inline]
    fn sim(&self, q: &Code, i: u32) -> f32 {
        let at = i as usize * DIMS;
        match (self.codes.get(at..at + DIMS), self.scales.get(i as usize)) {
            (Some(c), Some(s)) => q.dot(c, *s),
            _ => f32::NEG_INFINITY,
        }
    }

    /// Reads one byte of every cache line of the nodes' codes and their scales, so that their
    /// cache misses overlap instead of coming one dot product at a time: the search is bound by
    /// memory latency, and safe Rust has no prefetch instruction.
    #[inline]
    fn touch(&self, nodes: &[u32]) {
        let mut acc = 0i32;
        let mut scale = 0.0f32;
        for &i in nodes {
            let at = i as usize * DIMS;
            if let Some(c) = self.codes.get(at..at + DIMS) {
                acc = c
                    .iter()
                    .step_by(64)
                    .fold(acc, |a, b| a.wrapping_add(i32::from(*b)));
            }
            scale += self.scales.get(i as usize).copied().unwrap_or(0.0);
        }
        std::hint::black_box((acc, scale));
    }

    fn links0(&self, i: u32) -> &[u32] {
        let i = i as usize;
        match (self.offsets0.get(i), self.offsets0.get(i + 1)) {
            (Some(&a), Some(&b)) => self.links0.get(a..b).unwrap_or(&[]),
            _ => &[],
        }
    }

    fn upper_links(&self, i: u32, layer: usize) -> &[u32] {
        i.checked_sub(self.upper_start)
            .and_then(|u| self.upper.get(u as usize))
            .and_then(|layers| layers.get(layer - 1))
            .map_or(&[], Vec::as_slice)
    }

    /// Entry id of node `i`.
    pub fn id(&self, i: u32) -> u64 {
        self.ids.get(i as usize).copied().unwrap_or(u64::MAX)
    }

    /// Exact similarity of node `i` to `query`.
    pub fn exact(&self, query: &[f32], i: u32) -> f32 {
        self.points
            .get(i as usize)
            .map_or(f32::NEG_INFINITY, |p| super::dot(query, p.get_v()))
    }

    /// The `ef` nodes nearest to the query by approximate similarity, best first: a greedy
    /// descent through the upper layers, then beam searches of width `ef` in layers 1 and 0.
    pub fn search(&self, q: &Code, ef: usize) -> Vec<Scored> {
        if self.ids.is_empty() || ef == 0 {
            return Vec::new();
        }
        let mut cur = Scored(self.sim(q, self.entry), self.entry);
        // Greedy through the sparse top layers. Layer 1 gets a beam of the same width as layer 0,
        // which then starts from all it found rather than from one node: on clustered data a
        // single start leaves the walk in a neighbouring cluster. At 1M entries this raised
        // recall@1 at ef 48 from 0.946 to 1.000 for ~1.5x the time (BENCHMARKS.md).
        for layer in (2..=self.top_level).rev() {
            loop {
                let mut moved = false;
                for &nb in self.upper_links(cur.1, layer) {
                    let s = self.sim(q, nb);
                    if s > cur.0 {
                        cur = Scored(s, nb);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        VISITED.with(|v| {
            let mut visited = v.borrow_mut();
            let starts = if self.top_level >= 1 {
                visited.start(self.len());
                self.beam(q, ef, &[cur], &mut visited, |i| self.upper_links(i, 1))
            } else {
                vec![cur]
            };
            visited.start(self.len());
            self.beam(q, ef, &starts, &mut visited, |i| self.links0(i))
        })
    }

    /// Beam search of width `ef` in one layer from `starts`; best first.
    fn beam<'a>(
        &'a self,
        q: &Code,
        ef: usize,
        starts: &[Scored],
        visited: &mut Visited,
        links: impl Fn(u32) -> &'a [u32],
    ) -> Vec<Scored> {
        // Candidates to expand, best first; results kept so far, worst on top.
        let mut todo = BinaryHeap::with_capacity(ef * 4);
        let mut best = BinaryHeap::with_capacity(ef + 1);
        let mut fresh = Vec::with_capacity(64);
        for &s in starts {
            if visited.insert(s.1) {
                todo.push(s);
                best.push(Reverse(s));
                if best.len() > ef {
                    best.pop();
                }
            }
        }
        while let Some(c) = todo.pop() {
            let worst = best.peek().map_or(f32::NEG_INFINITY, |Reverse(w)| w.0);
            if best.len() >= ef && c.0 < worst {
                break;
            }
            fresh.clear();
            fresh.extend(links(c.1).iter().copied().filter(|nb| visited.insert(*nb)));
            self.touch(&fresh);
            for &nb in &fresh {
                let s = self.sim(q, nb);
                let worst = best.peek().map_or(f32::NEG_INFINITY, |Reverse(w)| w.0);
                if best.len() < ef || s > worst {
                    todo.push(Scored(s, nb));
                    best.push(Reverse(Scored(s, nb)));
                    if best.len() > ef {
                        best.pop();
                    }
                }
            }
        }
        best.into_sorted_vec()
            .into_iter()
            .map(|Reverse(s)| s)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_approximate_the_dot_product() {
        let vs = crate::index::tests::unit_vectors(50, 11);
        for w in vs.windows(2) {
            let exact = super::super::dot(&w[0], &w[1]);
            let (a, b) = (Code::of(&w[0]), Code::of(&w[1]));
            let approx = a.dot(&b.codes, b.scale);
            assert!((exact - approx).abs() < 0.01, "{exact} vs {approx}");
        }
        let zero = Code::of(&[0.0; DIMS]);
        assert_eq!(zero.scale, 0.0);
        assert!(zero.codes.iter().all(|c| *c == 0));
    }

    #[test]
    fn tail_ranks_by_code_reports_exact_similarity_and_drops_its_front() {
        let vs = crate::index::tests::unit_vectors(40, 12);
        let mut tail = Tail::default();
        for (i, v) in vs.iter().enumerate() {
            tail.push(i as u64, v);
        }
        assert_eq!(tail.len(), 40);
        let q = Code::of(&vs[9]);
        let found = tail.nearest(&q, &vs[9], 3, &|_| true);
        assert_eq!(found.len(), 3);
        let best = found.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(best.0, 9);
        assert!((best.1 - 1.0).abs() < 1e-5);
        let found = tail.nearest(&q, &vs[9], 3, &|id| id != 9);
        assert!(found.iter().all(|(id, _)| *id != 9));
        tail.drop_front(10);
        assert_eq!(tail.len(), 30);
        let found = tail.nearest(&Code::of(&vs[12]), &vs[12], 1, &|_| true);
        assert_eq!(found[0].0, 12, "ids stay with their vectors after the drop");
        assert!((found[0].1 - 1.0).abs() < 1e-5);
        tail.drop_front(99);
        assert_eq!(tail.len(), 0);
        assert!(tail.nearest(&q, &vs[9], 3, &|_| true).is_empty());
    }

    #[test]
    fn visited_marks_reset_per_search_and_across_the_wrap() {
        let mut v = Visited {
            marks: Vec::new(),
            epoch: 0,
        };
        v.start(4);
        assert!(v.insert(2));
        assert!(!v.insert(2));
        assert!(!v.insert(9), "out of range is never new");
        for _ in 0..70_000 {
            v.start(4);
        }
        assert!(v.insert(2));
        assert!(!v.insert(2));
    }
}
