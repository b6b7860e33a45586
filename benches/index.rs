//! Benchmark of the HNSW index (`sluice::index`) at cache scale: build rate, search latency and
//! recall against brute force, memory per entry, snapshot save and load, and (optionally) the
//! cache engine's restart-to-ready over a store of the same size.
//!
//! Data: `SLUICE_BENCH_INDEX_N` (default 1,000,000) synthetic 384-d unit vectors generated to
//! match statistics measured on real all-MiniLM-L6-v2 embeddings of the sentences in
//! `data/eval/*.jsonl` (printed side by side at the start when the model is in `models/`):
//!
//! - a shared mean direction (real embeddings are not centred: every pair has a positive cosine);
//! - a hierarchy: domains -> topics (about `POINTS_PER_TOPIC` points each) -> points, each level
//!   an offset drawn from the same anisotropic gaussian;
//! - anisotropic noise: the variance of coordinate `i` decays as `(1 + i)^-alpha`, so a few
//!   directions carry most of the variance, as the PCA spectrum of real embeddings shows. Only
//!   dot products matter to the index and they are rotation-invariant, so the decaying spectrum
//!   can lie along the coordinate axes.
//!
//! Two query sets of 500 each:
//! - paraphrases: a stored vector plus anisotropic noise, cosine ~0.9 to it (a cache hit);
//! - fresh: a new point of a random topic (a miss: its nearest neighbour is a topic sibling).
//!
//! Everything is seeded. Knobs: `SLUICE_BENCH_INDEX_M` (max_nb_connection),
//! `SLUICE_BENCH_INDEX_EFC` (ef_construction), `SLUICE_BENCH_INDEX_KEEP_PRUNED=1`,
//! `SLUICE_BENCH_INDEX_EF` (comma list of search ef),
//! `SLUICE_BENCH_INDEX_DIR` (directory for the snapshot and store, default a temp dir),
//! `SLUICE_BENCH_INDEX_REUSE=1` (load the snapshot an earlier run left in that directory instead
//! of building, and reuse its store for the restart phase),
//! `SLUICE_BENCH_INDEX_COMPARE=1` (also time hnsw_rs' own search, before the flat copy),
//! `SLUICE_BENCH_INDEX_STATS_ONLY=1` (print the data statistics and stop),
//! `SLUICE_BENCH_INDEX_RESTART=1` (after the search figures, write the entries to RocksDB and time
//! `CacheEngine::open` to ready and to the full graph; needs the model), and the generator's
//! `SLUICE_BENCH_GEN=alpha,mean,domain,topic,leaf,domains` (weights; see `GenParams`). The custom
//! figures are printed first; then criterion times single searches.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice::index::{dot, IndexParams, VectorIndex, DEFAULT_EF_SEARCH, DIMS};

const QUERIES_PER_SET: usize = 500;
const POINTS_PER_TOPIC: usize = 20;
const SEED: u64 = 0x5eed_1de8;
/// Cosine from which a neighbour is a candidate hit (the default threshold).
const HIT_THRESHOLD: f32 = 0.8;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

// The allocator of the `sluice` binary: build, snapshot load and search allocate per point.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// Generator weights, calibrated against real MiniLM statistics (see the module docs).
#[derive(Debug, Clone, Copy)]
struct GenParams {
    /// Spectrum decay: coordinate `i` has variance proportional to `(1 + i)^-alpha`.
    alpha: f32,
    /// Weight of the shared mean direction.
    mean: f32,
    /// Weight of the domain offset.
    domain: f32,
    /// Weight of the topic offset.
    topic: f32,
    /// Weight of a point's own offset.
    leaf: f32,
    /// Number of domains.
    domains: usize,
}

impl GenParams {
    fn from_env() -> Result<Self> {
        let mut p = GenParams {
            alpha: 0.7,
            mean: 0.28,
            domain: 0.5,
            topic: 0.6,
            leaf: 0.6,
            domains: 64,
        };
        if let Ok(list) = std::env::var("SLUICE_BENCH_GEN") {
            let f: Vec<f32> = list
                .split(',')
                .map(|s| s.trim().parse())
                .collect::<std::result::Result<_, _>>()?;
            if f.len() != 6 {
                return Err("SLUICE_BENCH_GEN wants alpha,mean,domain,topic,leaf,domains".into());
            }
            p = GenParams {
                alpha: f[0],
                mean: f[1],
                domain: f[2],
                topic: f[3],
                leaf: f[4],
                domains: (f[5] as usize).max(1),
            };
        }
        Ok(p)
    }
}

/// Hierarchical, anisotropic generator of unit vectors shaped like sentence embeddings.
struct Generator {
    params: GenParams,
    /// Standard deviation of each coordinate of an offset (squares sum to 1).
    scale: Vec<f32>,
    /// Unnormalised topic centres: mean + domain + topic offsets.
    topics: Vec<Vec<f32>>,
}

impl Generator {
    fn new(params: GenParams, topics: usize, rng: &mut StdRng) -> Self {
        let raw: Vec<f32> = (0..DIMS)
            .map(|i| (1.0 + i as f32).powf(-params.alpha / 2.0))
            .collect();
        let norm = dot(&raw, &raw).sqrt();
        let scale: Vec<f32> = raw.iter().map(|s| s / norm).collect();
        let offset = |rng: &mut StdRng| -> Vec<f32> {
            scale
                .iter()
                .map(|s| s * gaussian(rng))
                .collect::<Vec<f32>>()
        };
        // The mean direction is isotropic: it need not line up with the noise axes.
        let mut mean: Vec<f32> = (0..DIMS).map(|_| gaussian(rng)).collect();
        normalise(&mut mean);
        let domains: Vec<Vec<f32>> = (0..params.domains).map(|_| offset(rng)).collect();
        let topics = (0..topics)
            .map(|_| {
                let d = &domains[rng.random_range(0..domains.len())];
                let t = offset(rng);
                (0..DIMS)
                    .map(|i| params.mean * mean[i] + params.domain * d[i] + params.topic * t[i])
                    .collect()
            })
            .collect();
        Generator {
            params,
            scale,
            topics,
        }
    }

    /// `base + weight * anisotropic offset`, normalised.
    fn perturb(&self, rng: &mut StdRng, base: &[f32], weight: f32) -> Vec<f32> {
        let mut v: Vec<f32> = base
            .iter()
            .zip(&self.scale)
            .map(|(b, s)| b + weight * s * gaussian(rng))
            .collect();
        normalise(&mut v);
        v
    }

    fn sample(&self, rng: &mut StdRng) -> Vec<f32> {
        let t = rng.random_range(0..self.topics.len());
        self.perturb(rng, &self.topics[t], self.params.leaf)
    }
}

/// Summary statistics of a set of unit vectors, to compare real and synthetic embeddings.
struct SetStats {
    n: usize,
    pair_mean: f64,
    pair_sd: f64,
    pair_p: [f64; 4],
    mean_norm: f64,
    to_mean: (f64, f64),
    top_share: [f64; 3],
    participation: f64,
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Eigenvalues of a symmetric `n x n` matrix (cyclic Jacobi; fine for a few hundred rows).
fn symmetric_eigenvalues(mut a: Vec<f64>, n: usize) -> Vec<f64> {
    let total: f64 = a.iter().map(|x| x * x).sum();
    for _sweep in 0..60 {
        let mut off = 0.0;
        for p in 0..n {
            for q in p + 1..n {
                off += a[p * n + q] * a[p * n + q];
            }
        }
        if off <= 1e-22 * total {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
        }
    }
    let mut eig: Vec<f64> = (0..n).map(|i| a[i * n + i].max(0.0)).collect();
    eig.sort_by(|x, y| y.total_cmp(x));
    eig
}

impl SetStats {
    fn of(vs: &[Vec<f32>]) -> SetStats {
        let n = vs.len();
        let mut pairs = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        for (i, a) in vs.iter().enumerate() {
            for b in &vs[i + 1..] {
                pairs.push(f64::from(dot(a, b)));
            }
        }
        let (pair_mean, pair_sd) = mean_sd(&pairs);
        pairs.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| pairs[((pairs.len() - 1) as f64 * p).round() as usize];
        let pair_p = [q(0.01), q(0.5), q(0.99), q(1.0)];

        let mut mean = vec![0f64; DIMS];
        for v in vs {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += f64::from(*x) / n as f64;
            }
        }
        let mean_norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
        let to_mean: Vec<f64> = vs
            .iter()
            .map(|v| {
                v.iter()
                    .zip(&mean)
                    .map(|(x, m)| f64::from(*x) * m)
                    .sum::<f64>()
                    / mean_norm
            })
            .collect();

        // PCA through the centred Gram matrix: same non-zero eigenvalues as the covariance.
        let centred: Vec<Vec<f64>> = vs
            .iter()
            .map(|v| {
                v.iter()
                    .zip(&mean)
                    .map(|(x, m)| f64::from(*x) - m)
                    .collect()
            })
            .collect();
        let mut gram = vec![0f64; n * n];
        for i in 0..n {
            for j in i..n {
                let g = centred[i]
                    .iter()
                    .zip(&centred[j])
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    / n as f64;
                gram[i * n + j] = g;
                gram[j * n + i] = g;
            }
        }
        let eig = symmetric_eigenvalues(gram, n);
        let total: f64 = eig.iter().sum();
        let share = |k: usize| eig.iter().take(k).sum::<f64>() / total;
        let participation = total * total / eig.iter().map(|l| l * l).sum::<f64>();
        SetStats {
            n,
            pair_mean,
            pair_sd,
            pair_p,
            mean_norm,
            to_mean: mean_sd(&to_mean),
            top_share: [share(1), share(10), share(50)],
            participation,
        }
    }

    fn print(&self, name: &str) {
        println!(
            "  {name:<10} n={:4}  pairwise cos mean {:.3} sd {:.3} p1 {:.3} p50 {:.3} p99 {:.3} \
             max {:.3} | |mean| {:.3}, cos to mean {:.3} sd {:.3} | PCA variance top1 {:.3} \
             top10 {:.3} top50 {:.3}, participation ratio {:.1}",
            self.n,
            self.pair_mean,
            self.pair_sd,
            self.pair_p[0],
            self.pair_p[1],
            self.pair_p[2],
            self.pair_p[3],
            self.mean_norm,
            self.to_mean.0,
            self.to_mean.1,
            self.top_share[0],
            self.top_share[1],
            self.top_share[2],
            self.participation,
        );
    }
}

/// Real embeddings and the cosines of the pairs that should hit.
type RealSample = (Vec<Vec<f32>>, Vec<f64>);

/// Texts of `data/eval`: both sides of every pair and every conversation message, deduplicated;
/// plus the cosines of the pairs that should hit (paraphrase, near_repeat).
fn real_embeddings() -> Result<Option<RealSample>> {
    let config = sluice::embed::EmbedConfig::default();
    let embedder = match sluice::embed::Embedder::load(&config) {
        Ok(e) => e,
        Err(e) => {
            println!("real embeddings skipped (model not loaded: {e})");
            return Ok(None);
        }
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/eval");
    let mut texts: Vec<String> = Vec::new();
    let mut hit_pairs: Vec<(String, String)> = Vec::new();
    for line in std::fs::read_to_string(root.join("dev-pairs.jsonl"))?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let (a, b) = (v["a"].as_str(), v["b"].as_str());
        if let (Some(a), Some(b)) = (a, b) {
            texts.push(a.to_string());
            texts.push(b.to_string());
            if v["same_answer"].as_bool() == Some(true) {
                hit_pairs.push((a.to_string(), b.to_string()));
            }
        }
    }
    for line in std::fs::read_to_string(root.join("dev-conversations.jsonl"))?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        for side in ["a", "b"] {
            for m in v[side].as_array().into_iter().flatten() {
                if let Some(c) = m["content"].as_str() {
                    texts.push(c.to_string());
                }
            }
        }
    }
    texts.sort();
    texts.dedup();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vs = embedder.embed_batch(&refs)?;
    let mut pair_cos = Vec::new();
    for (a, b) in &hit_pairs {
        let ea = embedder.embed_batch(&[a.as_str(), b.as_str()])?;
        if let [x, y] = ea.as_slice() {
            pair_cos.push(f64::from(dot(x, y)));
        }
    }
    Ok(Some((vs, pair_cos)))
}

/// `n` points, generated on every core with one seeded RNG per chunk (deterministic).
fn points(generator: &Generator, n: usize) -> Vec<Vec<f32>> {
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
                        .map(|_| generator.sample(&mut rng))
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

/// Exact nearest neighbour (index into `base`, cosine) of every query, blocked so a slice of
/// the base stays in cache.
fn brute_force(base: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<(usize, f32)> {
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    let per = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per)
            .map(|qs| {
                s.spawn(move || {
                    let mut best = vec![(0usize, f32::MIN); qs.len()];
                    for (b, block) in base.chunks(1024).enumerate() {
                        for (qi, q) in qs.iter().enumerate() {
                            for (j, v) in block.iter().enumerate() {
                                let sim = dot(q, v);
                                if sim > best[qi].1 {
                                    best[qi] = (b * 1024 + j, sim);
                                }
                            }
                        }
                    }
                    best
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

/// Entry id of `base[i]`: ids start at 1, as the store's do.
fn id_of(i: usize) -> u64 {
    i as u64 + 1
}

struct Fixture {
    index: VectorIndex,
    paraphrases: Vec<Vec<f32>>,
    fresh: Vec<Vec<f32>>,
}

fn print_stats(generator_params: GenParams) -> Result<()> {
    println!("data statistics (real: data/eval sentences through the cache's model; synthetic: the same number of generated points):");
    let real = real_embeddings()?;
    let n = real.as_ref().map_or(400, |(vs, _)| vs.len());
    if let Some((vs, pair_cos)) = &real {
        SetStats::of(vs).print("real");
        let (m, sd) = mean_sd(pair_cos);
        println!(
            "  real paraphrase / near-repeat pairs (same answer): n={} cosine mean {m:.3} sd {sd:.3}",
            pair_cos.len()
        );
    }
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xfeed);
    // As many topics as at 1M points: a sample of n rarely holds two of one topic.
    let generator = Generator::new(generator_params, 1_000_000 / POINTS_PER_TOPIC, &mut rng);
    let sample: Vec<Vec<f32>> = (0..n).map(|_| generator.sample(&mut rng)).collect();
    SetStats::of(&sample).print("synthetic");
    // Siblings of one topic, and paraphrase queries against their source.
    let t = &generator.topics[0];
    let sib: Vec<f32> = (0..200)
        .map(|_| {
            let a = generator.perturb(&mut rng, t, generator_params.leaf);
            let b = generator.perturb(&mut rng, t, generator_params.leaf);
            dot(&a, &b)
        })
        .collect();
    let para: Vec<f32> = (0..200)
        .map(|_| {
            let a = generator.sample(&mut rng);
            dot(&a, &generator.perturb(&mut rng, &a, PARAPHRASE_NOISE))
        })
        .collect();
    let avg = |xs: &[f32]| xs.iter().sum::<f32>() / xs.len().max(1) as f32;
    println!(
        "  synthetic: same-topic siblings cosine mean {:.3}; paraphrase queries cosine to their source mean {:.3}",
        avg(&sib),
        avg(&para)
    );
    Ok(())
}

/// Weight of the anisotropic noise that turns a stored vector into a paraphrase query.
const PARAPHRASE_NOISE: f32 = 0.45;

fn run() -> Result<Fixture> {
    let n = env_usize("SLUICE_BENCH_INDEX_N", 1_000_000)?;
    let defaults = IndexParams::default();
    let params = IndexParams {
        max_nb_connection: env_usize("SLUICE_BENCH_INDEX_M", defaults.max_nb_connection)?,
        ef_construction: env_usize("SLUICE_BENCH_INDEX_EFC", defaults.ef_construction)?,
        capacity_hint: n,
        keep_pruned: std::env::var("SLUICE_BENCH_INDEX_KEEP_PRUNED")
            .map_or(defaults.keep_pruned, |v| v == "1"),
    };
    let efs: Vec<usize> = match std::env::var("SLUICE_BENCH_INDEX_EF") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<std::result::Result<_, _>>()?,
        Err(_) => vec![8, 16, 24, 32, DEFAULT_EF_SEARCH, 64, 96],
    };
    let gen_params = GenParams::from_env()?;
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get());
    println!("index bench: n={n} dims={DIMS} params={params:?} threads={threads}");
    println!("generator: {gen_params:?}, {POINTS_PER_TOPIC} points per topic");
    print_stats(gen_params)?;
    if std::env::var_os("SLUICE_BENCH_INDEX_STATS_ONLY").is_some() {
        std::process::exit(0);
    }

    let t = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    let generator = Generator::new(gen_params, (n / POINTS_PER_TOPIC).max(1), &mut rng);
    let base = points(&generator, n);
    let paraphrases: Vec<Vec<f32>> = (0..QUERIES_PER_SET)
        .map(|_| {
            let i = rng.random_range(0..base.len());
            generator.perturb(&mut rng, &base[i], PARAPHRASE_NOISE)
        })
        .collect();
    let fresh: Vec<Vec<f32>> = (0..QUERIES_PER_SET)
        .map(|_| generator.sample(&mut rng))
        .collect();
    println!("generated data in {:.1?}", t.elapsed());

    let t = Instant::now();
    let truth_para = brute_force(&base, &paraphrases);
    let truth_fresh = brute_force(&base, &fresh);
    println!("brute force ground truth in {:.1?}", t.elapsed());
    let above = |truth: &[(usize, f32)]| truth.iter().filter(|(_, s)| *s >= HIT_THRESHOLD).count();
    let mean_sim =
        |truth: &[(usize, f32)]| truth.iter().map(|(_, s)| s).sum::<f32>() / truth.len() as f32;
    println!(
        "cosine to the true nearest: paraphrases mean {:.3} ({} of {QUERIES_PER_SET} >= {HIT_THRESHOLD}), \
         fresh mean {:.3} ({} of {QUERIES_PER_SET} >= {HIT_THRESHOLD})",
        mean_sim(&truth_para),
        above(&truth_para),
        mean_sim(&truth_fresh),
        above(&truth_fresh)
    );

    let tmp = tempfile::tempdir()?;
    let root = std::env::var_os("SLUICE_BENCH_INDEX_DIR")
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let dir = root.join("index");
    let reuse = std::env::var_os("SLUICE_BENCH_INDEX_REUSE").is_some();
    let index = if reuse {
        // The snapshot an earlier run with the same N and seed saved in `dir`: times the load
        // (what the engine's background loader does) in place of a build.
        let t = Instant::now();
        let (loaded, last_id) = VectorIndex::load(&dir)?
            .ok_or("SLUICE_BENCH_INDEX_REUSE: no snapshot in SLUICE_BENCH_INDEX_DIR/index")?;
        println!(
            "snapshot load (reused): {:.1?}, {} points, last_id {last_id}, params {:?}",
            t.elapsed(),
            loaded.len(),
            loaded.params()
        );
        if loaded.len() != n {
            return Err(format!("the snapshot holds {} points, not N={n}", loaded.len()).into());
        }
        loaded
    } else {
        build(params, &base, threads)?
    };
    if std::env::var_os("SLUICE_BENCH_INDEX_COMPARE").is_some() {
        println!("hnsw_rs' own search (before the flat copy):");
        search_table(
            &index,
            &efs,
            &paraphrases,
            &truth_para,
            &fresh,
            &truth_fresh,
        );
    }
    // What the engine does once a graph is built or loaded: take the flat copy searches walk.
    let rss_before = rss_bytes();
    let t = Instant::now();
    index.refresh();
    println!(
        "flat copy: {:.1?} for {:?} (copy, tail) points, RSS +{:.0} B/entry",
        t.elapsed(),
        index.flat_sizes(),
        rss_bytes().saturating_sub(rss_before) as f64 / n as f64
    );
    search_table(
        &index,
        &efs,
        &paraphrases,
        &truth_para,
        &fresh,
        &truth_fresh,
    );
    if !reuse {
        save_and_load(&index, &dir, n, &paraphrases)?;
    }
    // After the save: the snapshot a later REUSE run loads must hold exactly N points.
    tail_table(&index, n, &base, &efs, &paraphrases, &truth_para);
    if std::env::var_os("SLUICE_BENCH_INDEX_RESTART").is_some() {
        restart(&root, &base, reuse)?;
    }

    Ok(Fixture {
        index,
        paraphrases,
        fresh,
    })
}

/// Builds the index from `base` in batches of 10k through `insert_batch` (rayon, all cores).
fn build(params: IndexParams, base: &[Vec<f32>], threads: usize) -> Result<VectorIndex> {
    let n = base.len();
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
                .map(|(j, v)| (id_of(start * 10_000 + j), v.clone())),
        );
        index.insert_batch(&batch)?;
        if start % 20 == 19 {
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
    Ok(index)
}

/// Search latency and recall@1 against brute force for each `ef`, k=1 and k=10.
fn search_table(
    index: &VectorIndex,
    efs: &[usize],
    paraphrases: &[Vec<f32>],
    truth_para: &[(usize, f32)],
    fresh: &[Vec<f32>],
    truth_fresh: &[(usize, f32)],
) {
    let above = |truth: &[(usize, f32)]| truth.iter().filter(|(_, s)| *s >= HIT_THRESHOLD).count();
    println!("search (1 thread), recall@1 vs brute force; 'fresh >= 0.8' counts only fresh queries whose true nearest has cosine >= {HIT_THRESHOLD} (the ones a cache could hit):");
    println!("  k  ef   p50 us  p99 us  recall@1 para  recall@1 fresh  recall@1 fresh>=0.8");
    let fresh_above = above(truth_fresh);
    for &k in &[1usize, 10] {
        for &ef in efs {
            let mut lat = Vec::with_capacity(2 * QUERIES_PER_SET);
            let mut hits = [0usize; 3];
            for (set, (queries, truth)) in [(&paraphrases, &truth_para), (&fresh, &truth_fresh)]
                .into_iter()
                .enumerate()
            {
                for (q, &(want, sim)) in queries.iter().zip(truth.iter()) {
                    let t = Instant::now();
                    let found = index.search(q, k, ef, |_| true);
                    lat.push(t.elapsed());
                    if found.first().map(|(id, _)| *id) == Some(id_of(want)) {
                        hits[set] += 1;
                        if set == 1 && sim >= HIT_THRESHOLD {
                            hits[2] += 1;
                        }
                    }
                }
            }
            lat.sort_unstable();
            println!(
                "  {k:2} {ef:3} {:8.0} {:7.0} {:14.3} {:15.3} {:14.3} (n={fresh_above})",
                percentile(&lat, 0.5).as_secs_f64() * 1e6,
                percentile(&lat, 0.99).as_secs_f64() * 1e6,
                hits[0] as f64 / QUERIES_PER_SET as f64,
                hits[1] as f64 / QUERIES_PER_SET as f64,
                hits[2] as f64 / fresh_above.max(1) as f64,
            );
        }
    }
}

/// Search latency with the longest tail a flat copy lives with (`TAIL_MAX - 1` points indexed
/// after it, scanned on every search), then the refresh that folds them in. The tail vectors are
/// negated base vectors, never anyone's nearest: this times the scan, recall is unchanged.
fn tail_table(
    index: &VectorIndex,
    n: usize,
    base: &[Vec<f32>],
    efs: &[usize],
    paraphrases: &[Vec<f32>],
    truth_para: &[(usize, f32)],
) {
    let tail: Vec<(u64, Vec<f32>)> = base
        .iter()
        .take(sluice::index::TAIL_MAX - 1)
        .enumerate()
        .map(|(i, v)| (id_of(n + i), v.iter().map(|x| -x).collect()))
        .collect();
    for (id, v) in &tail {
        if index.insert(*id, v).is_err() {
            println!("tail: insert failed");
            return;
        }
    }
    println!(
        "with a full tail {:?} (copy, tail), k=1:",
        index.flat_sizes()
    );
    println!("  ef   p50 us  p99 us  recall@1 para");
    for &ef in efs {
        let mut lat = Vec::with_capacity(paraphrases.len());
        let mut hits = 0usize;
        for (q, &(want, _)) in paraphrases.iter().zip(truth_para) {
            let t = Instant::now();
            let found = index.search(q, 1, ef, |_| true);
            lat.push(t.elapsed());
            hits += usize::from(found.first().map(|(id, _)| *id) == Some(id_of(want)));
        }
        lat.sort_unstable();
        println!(
            "  {ef:3} {:8.0} {:7.0} {:14.3}",
            percentile(&lat, 0.5).as_secs_f64() * 1e6,
            percentile(&lat, 0.99).as_secs_f64() * 1e6,
            hits as f64 / paraphrases.len() as f64
        );
    }
    let t = Instant::now();
    index.refresh();
    println!(
        "refresh folding the tail in: {:.1?}, now {:?}",
        t.elapsed(),
        index.flat_sizes()
    );
}

/// Snapshot save, then load as the background loader does (manifest check + blake3 + hnsw_rs
/// reload), and a check that the loaded graph answers as the built one.
fn save_and_load(
    index: &VectorIndex,
    dir: &std::path::Path,
    n: usize,
    paraphrases: &[Vec<f32>],
) -> Result<()> {
    let t = Instant::now();
    let info = index.save(dir, id_of(n - 1))?;
    println!(
        "snapshot save: {:.1?} ({:.0} MiB)",
        t.elapsed(),
        info.bytes as f64 / (1 << 20) as f64
    );
    let t = Instant::now();
    let loaded = VectorIndex::load(dir)?;
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
                "snapshot load: {load:.1?}, {} points, last_id {last_id}, \
                 {same}/100 answers identical",
                loaded.len()
            );
        }
        None => println!("snapshot load: no snapshot found"),
    }
    Ok(())
}

/// Restart-to-ready of the cache engine over `base` stored as cache entries, with the snapshot
/// just saved in `root/index`: writes the entries to `root/db`, then times `CacheEngine::open`
/// (ready to serve) and the background load of the graph (semantic lookups in large scopes).
/// With `reuse`, entries an earlier run left in `root/db` are used as they are.
fn restart(root: &std::path::Path, base: &[Vec<f32>], reuse: bool) -> Result<()> {
    use sluice::cache::entry::{now_ms, CacheEntry, EntryHead};
    use sluice::cache::{CacheEngine, CacheOptions, CacheSettings};
    use sluice::store::{CacheStore, Store, StoreOptions};

    /// Scopes the entries are spread over: each far above the brute-force limit.
    const SCOPES: u64 = 8;
    let completion = serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": "A cached answer of a few sentences, about the length of a short reply. ".repeat(5)}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 90, "total_tokens": 102}
    })
    .to_string();
    let t = Instant::now();
    let reuse_db = reuse && root.join("db").join("CURRENT").exists();
    if reuse_db {
        println!(
            "restart: reusing the entries already in {}",
            root.join("db").display()
        );
    } else {
        let store = Store::open_with(&root.join("db"), StoreOptions { sync_writes: false })?;
        let now = now_ms();
        for (i, v) in base.iter().enumerate() {
            let id = id_of(i);
            let exact = *blake3::hash(&id.to_le_bytes()).as_bytes();
            let scope = *blake3::hash(&(id % SCOPES).to_le_bytes()).as_bytes();
            let entry = CacheEntry::new(
                "bench",
                "bench",
                exact,
                Some(scope),
                Some(format!(
                    "synthetic question number {id}, about as long as a real one?"
                )),
                Some(v.clone()),
                completion.clone(),
                sluice::wire::Usage {
                    prompt_tokens: 12,
                    completion_tokens: 90,
                    total_tokens: 102,
                },
                now,
                0,
            );
            store.put_entry(id, &entry.encode()?, Some(&exact))?;
        }
        // The engine re-embeds every entry when the recorded model differs from its own.
        let model = sluice::embed::EmbedConfig::default().model;
        store.put_setting("cache.embedding_model", model.as_str().as_bytes())?;
        store.sync()?;
        println!(
            "restart: wrote {} entries to RocksDB in {:.1?} ({:.0} MiB on disk)",
            base.len(),
            t.elapsed(),
            dir_bytes(&root.join("db")) as f64 / (1 << 20) as f64
        );
    }

    let t = Instant::now();
    let engine = CacheEngine::open(CacheOptions {
        data_dir: root.to_path_buf(),
        embed: Default::default(),
        defaults: CacheSettings::default(),
        verify: Default::default(),
        groups: vec!["bench".into()],
        prices: Default::default(),
        sync_writes: false,
        store: None,
    })?;
    let ready = t.elapsed();
    let loading_at_ready = !engine.index_ready();
    engine.wait_index_ready();
    let full = t.elapsed();
    // The flat copy searches walk is taken in the background once the graph is in.
    while engine.stats()["index_tail"].is_null() && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let flat = t.elapsed();
    let stats = engine.stats();
    println!(
        "restart: CacheEngine::open -> ready {ready:.2?} (index still loading: {loading_at_ready}); \
         full graph in {full:.2?}; its flat copy in {flat:.2?}; entries {}, index_size {}",
        stats["entries"], stats["index_size"]
    );
    drop(engine);

    // The start-up scan alone: every entry read from RocksDB and its head decoded (what `open`
    // does), then the same with the full decode it used before.
    let store = Store::open(&root.join("db"))?;
    for (what, full) in [("head", false), ("full", true)] {
        let t = Instant::now();
        let mut count = 0usize;
        for record in store.entries_from(0) {
            let (_, bytes) = record?;
            let ok = if full {
                CacheEntry::decode(&bytes).is_ok()
            } else {
                EntryHead::decode(&bytes).is_ok()
            };
            count += usize::from(ok);
        }
        println!(
            "restart: RocksDB scan + {what} decode of {count} entries alone: {:.2?}",
            t.elapsed()
        );
    }
    Ok(())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
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
