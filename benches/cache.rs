//! Hit-rate bench: the labelled pairs in data/eval replayed through the real cache engine
//! (real model, RocksDB, index). Each pair's first prompt is stored; the second is looked up.
//! Reports hit rate, wrong-answer rate per category and lookup latency, then times lookups
//! with criterion. `cargo bench --bench cache`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use sluice::cache::{self, Answer, CacheEngine, CacheOptions, CacheOutcome, CacheSettings};
use sluice::wire::{parse_json, ChatRequest, Usage};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

fn request(prompt: &str) -> ChatRequest {
    parse_json(
        json!({"model": "bench", "messages": [{"role": "user", "content": prompt}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap()
}

fn completion(text: &str) -> Value {
    json!({"id": "x", "object": "chat.completion", "created": 0, "model": "bench",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
}

fn open(dir: &std::path::Path) -> Arc<CacheEngine> {
    CacheEngine::open(CacheOptions {
        data_dir: dir.to_path_buf(),
        embed: Default::default(),
        defaults: CacheSettings::default(),
        verify: Default::default(),
        groups: vec!["bench".into()],
        prices: Default::default(),
        sync_writes: false,
        store: None,
    })
    .unwrap()
}

/// Stores a canned answer under `keys`, as a write-back after a miss would.
fn store(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<CacheEngine>,
    ns: &str,
    keys: cache::CacheKeys,
) {
    let answer = completion("cached");
    let stored = Answer {
        completion: &answer,
        usage: Usage::default(),
        ttl: None,
    };
    rt.block_on(engine.store_answer(ns, "bench", keys, None, stored))
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let threshold = engine.settings().default_threshold;
    let pairs: Vec<Value> = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/eval/dev-pairs.jsonl"
    ))
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    // Each pair lives in its own namespace so pairs cannot answer each other.
    let mut per_cat: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let mut latencies = Vec::new();
    for p in &pairs {
        let ns = p["id"].as_str().unwrap();
        let a = request(p["a"].as_str().unwrap());
        let b = request(p["b"].as_str().unwrap());
        let ka = cache::keys(ns, "bench", &a);
        store(&rt, &engine, ns, ka);
        let kb = cache::keys(ns, "bench", &b);
        let started = Instant::now();
        let found = rt.block_on(engine.lookup("bench", &kb, threshold)).unwrap();
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let hit = found.hit.is_some_and(|h| h.kind != CacheOutcome::Miss);
        let e = per_cat
            .entry(p["category"].as_str().unwrap().to_string())
            .or_default();
        e.0 += 1;
        if hit {
            e.1 += 1;
            if !p["same_answer"].as_bool().unwrap() {
                e.2 += 1;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!("\nhit-rate replay over data/eval/dev-pairs.jsonl (threshold {threshold:.2}):");
    println!(
        "{:<14} {:>6} {:>6} {:>6}",
        "category", "pairs", "hits", "wrong"
    );
    let (mut n, mut h, mut w) = (0, 0, 0);
    for (cat, (pn, ph, pw)) in &per_cat {
        println!("{cat:<14} {pn:>6} {ph:>6} {pw:>6}");
        n += pn;
        h += ph;
        w += pw;
    }
    println!(
        "all            {n:>6} {h:>6} {w:>6}   hit rate {:.3}, wrong-answer rate {:.3} of hits",
        f64::from(h) / f64::from(n),
        if h == 0 {
            0.0
        } else {
            f64::from(w) / f64::from(h)
        }
    );
    println!(
        "lookup latency (embedding + search + verify): p50 {:.2} ms, p99 {:.2} ms\n",
        pct(0.5),
        pct(0.99)
    );

    let para = request("how should i go about learning the rust programming language");
    let seed = request("What's the best way to learn Rust?");
    store(
        &rt,
        &engine,
        "default",
        cache::keys("default", "bench", &seed),
    );
    let exact_keys = cache::keys("default", "bench", &seed);
    let para_keys = cache::keys("default", "bench", &para);
    c.bench_function("lookup/exact-hit", |b| {
        b.iter(|| {
            rt.block_on(engine.lookup("bench", &exact_keys, threshold))
                .unwrap()
        })
    });
    c.bench_function("lookup/semantic", |b| {
        b.iter(|| {
            rt.block_on(engine.lookup("bench", &para_keys, threshold))
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench
}
criterion_main!(benches);
