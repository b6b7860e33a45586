//! Benchmark of the HNSW index (`sluice::index`) at cache scale: build rate, search latency and
//! recall against brute force, memory per entry, snapshot save and load.
//!
//! Data: `SLUICE_BENCH_INDEX_N` (default 1,000,000) synthetic 384-d unit vectors shaped like
//! sentence embeddings rather than uniform noise: `N / 250` random unit centroids ("topics"),
//! each point a centroid plus gaussian noise with a per-topic spread, normalised. Members of a
//! topic have cosine ~0.4-0.8 to each other and ~0 to other topics, so near neighbours are not
//! all equally far, as with real embeddings. Two query sets of 500 each:
//! - paraphrases: a stored vector plus noise, cosine ~0.9 to it (what a cache hit looks like);
//! - fresh: a new member of a random topic (what a miss looks like).
//!
//! Everything is seeded. Knobs: `SLUICE_BENCH_INDEX_M` (max_nb_connection),
//! `SLUICE_BENCH_INDEX_EFC` (ef_construction), `SLUICE_BENCH_INDEX_EF` (comma list of search ef),
//! `SLUICE_BENCH_INDEX_DIR` (snapshot directory, default a temp dir). The custom figures are
//! printed first; then criterion times single searches.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::index::{dot, IndexParams, VectorIndex, DEFAULT_EF_SEARCH, DIMS};

const QUERIES_PER_SET: usize = 500;
const POINTS_PER_TOPIC: usize = 250;
const SEED: u64 = 0x5eed_1de8;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => Ok(v.replace('_', "").parse()?),
        Err(_) => Ok(default),
    }
}

/// A standard normal sample (Box-Muller; rand 0.9 has no normal distribution without rand_distr).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn normalise(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn noisy(rng: &mut StdRng, base: &[f32], sigma: f32) -> Vec<f32> {
    let mut v: Vec<f32> = base.iter().map(|x| x + sigma * gaussian(rng)).collect();
    normalise(&mut v);
    v
}

struct Topics {
    centroids: Vec<Vec<f32>>,
    /// Per-topic noise: cosine of a member to its centroid is 1/sqrt(1 + DIMS sigma^2).
    sigmas: Vec<f32>,
}

impl Topics {
    fn new(n: usize, rng: &mut StdRng) -> Self {
        let centroids = (0..n)
            .map(|_| {
                let mut c: Vec<f32> = (0..DIMS).map(|_| gaussian(rng)).collect();
                normalise(&mut c);
                c
            })
            .collect();
        // sigma 0.035..0.07: member-to-centroid cosine ~0.9..0.75.
        let sigmas = (0..n).map(|_| rng.random_range(0.035..0.07)).collect();
        Topics { centroids, sigmas }
    }

    fn sample(&self, rng: &mut StdRng) -> Vec<f32> {
        let t = rng.random_range(0..self.centroids.len());
        noisy(rng, &self.centroids[t], self.sigmas[t])
    }
}

/// `n` points, generated on every core with one seeded RNG per chunk (deterministic).
fn points(topics: &Topics, n: usize) -> Vec<Vec<f32>> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .enumerate()
            .map(|(i, start)| {
                let len = chunk.min(n - start);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(SEED ^ (i as u64 + 1));
                    (0..len)
                        .map(|_| topics.sample(&mut rng))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Exact nearest neighbour of every query, blocked so a slice of the base stays in cache.
fn brute_force(base: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<u64> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let per = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per)
            .map(|qs| {
                s.spawn(move || {
                    let mut best = vec![(f32::MIN, 0u64); qs.len()];
                    for (b, block) in base.chunks(1024).enumerate() {
                        for (qi, q) in qs.iter().enumerate() {
                            for (j, v) in block.iter().enumerate() {
                                let sim = dot(q, v);
                                if sim > best[qi].0 {
                                    best[qi] = (sim, (b * 1024 + j) as u64);
                                }
                            }
                        }
                    }
                    best.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Fixture {
    index: VectorIndex,
    paraphrases: Vec<Vec<f32>>,
    fresh: Vec<Vec<f32>>,
}

fn run() -> Result<Fixture> {
    let n = env_usize("SLUICE_BENCH_INDEX_N", 1_000_000)?;
    let defaults = IndexParams::default();
    let params = IndexParams {
        max_nb_connection: env_usize("SLUICE_BENCH_INDEX_M", defaults.max_nb_connection)?,
        ef_construction: env_usize("SLUICE_BENCH_INDEX_EFC", defaults.ef_construction)?,
        capacity_hint: n,
    };
    let efs: Vec<usize> = match std::env::var("SLUICE_BENCH_INDEX_EF") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<std::result::Result<_, _>>()?,
        Err(_) => vec![16, 32, DEFAULT_EF_SEARCH, 64, 96],
    };
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    println!("index bench: n={n} dims={DIMS} params={params:?} threads={threads}");

    let t = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let topics = Topics::new((n / POINTS_PER_TOPIC).max(1), &mut rng);
    let base = points(&topics, n);
    let paraphrases: Vec<Vec<f32>> = (0..QUERIES_PER_SET)
        .map(|_| {
            let i = rng.random_range(0..base.len());
            // sigma 0.023 -> cosine ~0.9 to the stored vector.
            noisy(&mut rng, &base[i], 0.023)
        })
        .collect();
    let fresh: Vec<Vec<f32>> = (0..QUERIES_PER_SET)
        .map(|_| topics.sample(&mut rng))
        .collect();
    println!("generated data in {:.1?}", t.elapsed());

    let t = Instant::now();
    let truth_para = brute_force(&base, &paraphrases);
    let truth_fresh = brute_force(&base, &fresh);
    println!("brute force ground truth in {:.1?}", t.elapsed());
    let para_sim: f32 = paraphrases
        .iter()
        .zip(&truth_para)
        .map(|(q, &i)| dot(q, &base[i as usize]))
        .sum::<f32>()
        / QUERIES_PER_SET as f32;
    let fresh_sim: f32 = fresh
        .iter()
        .zip(&truth_fresh)
        .map(|(q, &i)| dot(q, &base[i as usize]))
        .sum::<f32>()
        / QUERIES_PER_SET as f32;
    println!("mean cosine to true nearest: paraphrases {para_sim:.3}, fresh {fresh_sim:.3}");

    // Build: batches of 10k through insert_batch (rayon, all cores).
    let rss_before = rss_bytes();
    let index = VectorIndex::new(params);
    let t = Instant::now();
    let mut batch: Vec<(u64, Vec<f32>)> = Vec::with_capacity(10_000);
    for (start, chunk) in base.chunks(10_000).enumerate() {
        batch.clear();
        batch.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(j, v)| ((start * 10_000 + j) as u64, v.clone())),
        );
        index.insert_batch(&batch)?;
        if start % 10 == 9 {
            let done = (start + 1) * 10_000;
            println!(
                "  built {done} in {:.1?} ({:.0}/s)",
                t.elapsed(),
                done as f64 / t.elapsed().as_secs_f64()
            );
        }
    }
    drop(batch);
    let build = t.elapsed();
    let rss_after = rss_bytes();
    let per_entry = rss_after.saturating_sub(rss_before) as f64 / n as f64;
    println!(
        "build: {n} in {build:.1?} = {:.0} inserts/s on {threads} threads",
        n as f64 / build.as_secs_f64()
    );
    println!(
        "memory: RSS +{:.0} MiB = {per_entry:.0} B/entry (vector alone {} B)",
        rss_after.saturating_sub(rss_before) as f64 / (1 << 20) as f64,
        DIMS * 4
    );

    println!("search (1 thread), recall@1 vs brute force:");
    println!("  k  ef   p50 us  p99 us  recall@1 para  recall@1 fresh");
    for &k in &[1usize, 5, 10] {
        for &ef in &efs {
            let mut lat = Vec::with_capacity(2 * QUERIES_PER_SET);
            let mut hits = [0usize; 2];
            for (set, (queries, truth)) in [(&paraphrases, &truth_para), (&fresh, &truth_fresh)]
                .into_iter()
                .enumerate()
            {
                for (q, &want) in queries.iter().zip(truth.iter()) {
                    let t = Instant::now();
                    let found = index.search(q, k, ef, |_| true);
                    lat.push(t.elapsed());
                    if found.first().map(|(id, _)| *id) == Some(want) {
                        hits[set] += 1;
                    }
                }
            }
            lat.sort_unstable();
            println!(
                "  {k:2} {ef:3} {:8.0} {:7.0} {:14.3} {:15.3}",
                percentile(&lat, 0.5).as_secs_f64() * 1e6,
                percentile(&lat, 0.99).as_secs_f64() * 1e6,
                hits[0] as f64 / QUERIES_PER_SET as f64,
                hits[1] as f64 / QUERIES_PER_SET as f64,
            );
        }
    }

    // Snapshot: save, then load as a restart would (manifest check + blake3 + hnsw_rs reload).
    let tmp = tempfile::tempdir()?;
    let dir = std::env::var_os("SLUICE_BENCH_INDEX_DIR")
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let t = Instant::now();
    let info = index.save(&dir, n as u64)?;
    println!(
        "snapshot save: {:.1?} ({:.0} MiB)",
        t.elapsed(),
        info.bytes as f64 / (1 << 20) as f64
    );
    let t = Instant::now();
    let loaded = VectorIndex::load(&dir)?;
    let load = t.elapsed();
    match loaded {
        Some((loaded, last_id)) => {
            let same = paraphrases
                .iter()
                .take(100)
                .filter(|q| {
                    loaded.search(q, 1, DEFAULT_EF_SEARCH, |_| true)
                        == index.search(q, 1, DEFAULT_EF_SEARCH, |_| true)
                })
                .count();
            println!(
                "snapshot load (restart-to-ready): {load:.1?}, {} points, last_id {last_id}, \
                 {same}/100 answers identical",
                loaded.len()
            );
        }
        None => println!("snapshot load: no snapshot found"),
    }

    Ok(Fixture {
        index,
        paraphrases,
        fresh,
    })
}

fn criterion_part(fixture: &Fixture) {
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("index_search");
    for (name, queries) in [
        ("paraphrase", &fixture.paraphrases),
        ("fresh", &fixture.fresh),
    ] {
        for k in [1usize, 10] {
            let mut i = 0usize;
            group.bench_function(format!("{name}/k={k}/ef={DEFAULT_EF_SEARCH}"), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    black_box(
                        fixture
                            .index
                            .search(&queries[i], k, DEFAULT_EF_SEARCH, |_| true),
                    )
                })
            });
        }
    }
    group.finish();
    c.final_summary();
}

fn main() {
    match run() {
        Ok(fixture) => {
            if std::env::var_os("SLUICE_BENCH_INDEX_NO_CRITERION").is_none() {
                criterion_part(&fixture);
            }
        }
        Err(e) => {
            eprintln!("index bench failed: {e}");
            std::process::exit(1);
        }
    }
}
