//! The per-request cost of auth + limits + budgets, and of the token estimate.
//! `cargo bench --bench limits`.
//!
//! - `auth/virtual_key`: a virtual key's secret to its record (hash + in-memory lookup).
//! - `limits/admit_settle_4_scopes`: admission and settlement of one request against key, end
//!   user, model group and gateway windows (one lock, both steps), with 1 000 users' windows live.
//! - `limits/two_step_4_scopes`: the same when the cache may answer (request first, tokens
//!   after the miss).
//! - `spend/check_record`: budget check and spend record (key with a budget, user, gateway).
//! - `request/auth_limits_spend`: all of the above for one request, what a request pays.
//! - `tokens/2kb_*`: estimating a 2 KB prompt with each tokenizer (BPE loaded beforehand).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::keys::{KeyChanges, KeyStore};
use sluice::limits::{Demand, Limiter, LimitsConfig, Rate, SystemClock};
use sluice::spend::{AlertsConfig, Budget, BudgetsConfig, Charge, Payer, Spend};
use sluice::store::Store;
use sluice::tokens::{self, Tokenizer};
use sluice::wire::{ChatRequest, Usage};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

fn limits_config() -> LimitsConfig {
    LimitsConfig {
        global: Rate {
            rpm: Some(u64::MAX / 2),
            tpm: Some(u64::MAX / 2),
            max_parallel_requests: None,
        },
        groups: BTreeMap::from([(
            "g".to_string(),
            Rate {
                rpm: Some(u64::MAX / 2),
                tpm: Some(u64::MAX / 2),
                max_parallel_requests: None,
            },
        )]),
        user: Rate {
            rpm: Some(u64::MAX / 2),
            tpm: None,
            max_parallel_requests: None,
        },
        users: BTreeMap::new(),
        cache_hits_count_tokens: false,
    }
}

/// About 2 KB of English prose as one user message.
fn prompt_2kb() -> ChatRequest {
    let sentence = "The gateway estimates tokens before a request goes upstream, then reconciles. ";
    let text: String = sentence.repeat(2048 / sentence.len() + 1)[..2048].to_string();
    serde_json::from_value(serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": text}
        ]
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let keys = KeyStore::load(Arc::clone(&store)).unwrap();
    let (key, secret) = keys
        .create(&KeyChanges {
            alias: Some(Some("bench".into())),
            rpm: Some(Some(u64::MAX / 2)),
            tpm: Some(Some(u64::MAX / 2)),
            max_parallel_requests: Some(Some(1_000)),
            max_budget: Some(Some(1e12)),
            budget_duration_secs: Some(Some(86_400)),
            ..KeyChanges::default()
        })
        .unwrap();
    let secret = secret.expose().to_string();
    c.bench_function("auth/virtual_key", |b| {
        b.iter(|| black_box(keys.authenticate(black_box(&secret)).is_ok()))
    });

    let limiter = Limiter::new(limits_config(), Arc::new(SystemClock));
    // Other users' windows are live, as on a busy gateway.
    for u in 0..1_000 {
        let s = limiter.scopes(None, Some(&format!("user-{u}")), "g");
        limiter
            .admit(
                &s,
                Demand {
                    request: true,
                    tokens: 100,
                },
            )
            .unwrap()
            .settle(120);
    }
    let scopes = limiter.scopes(Some(&key), Some("user-7"), "g");
    assert_eq!(scopes.len(), 4);
    c.bench_function("limits/admit_settle_4_scopes", |b| {
        b.iter(|| {
            let s = limiter.scopes(Some(&key), Some("user-7"), "g");
            let mut t = limiter
                .admit(
                    &s,
                    Demand {
                        request: true,
                        tokens: 600,
                    },
                )
                .unwrap();
            t.settle(black_box(650));
        })
    });
    c.bench_function("limits/two_step_4_scopes", |b| {
        b.iter(|| {
            let s = limiter.scopes(Some(&key), Some("user-7"), "g");
            let mut t = limiter
                .admit(
                    &s,
                    Demand {
                        request: true,
                        tokens: 0,
                    },
                )
                .unwrap();
            limiter.admit_tokens(&s, &mut t, 600).unwrap();
            t.settle(black_box(650));
        })
    });

    let spend = Spend::new(
        Arc::clone(&store),
        Arc::new(SystemClock),
        BudgetsConfig {
            global: Some(Budget {
                max_budget: 1e12,
                duration_secs: Some(30 * 86_400),
            }),
            user: Some(Budget {
                max_budget: 1e12,
                duration_secs: Some(86_400),
            }),
            users: BTreeMap::new(),
            count_cache_hits: false,
        },
        AlertsConfig::default(),
        &[],
    );
    let _flusher = spend.start_flusher();
    let payer = Payer {
        key_id: key.id.clone(),
        key: Some(Arc::clone(&key)),
        user: Some("user-7".into()),
    };
    let usage = Usage {
        prompt_tokens: 600,
        completion_tokens: 50,
        total_tokens: 650,
    };
    let charge = Charge {
        group: "g",
        usage,
        cost_usd: 0.0021,
        cache_hit: false,
    };
    c.bench_function("spend/check_record", |b| {
        b.iter(|| {
            spend.check(&payer).unwrap();
            spend.record(&payer, black_box(&charge));
        })
    });

    c.bench_function("request/auth_limits_spend", |b| {
        b.iter(|| {
            let key = keys.authenticate(black_box(&secret)).unwrap();
            let s = limiter.scopes(Some(&key), Some("user-7"), "g");
            spend.check(&payer).unwrap();
            let mut t = limiter
                .admit(
                    &s,
                    Demand {
                        request: true,
                        tokens: 600,
                    },
                )
                .unwrap();
            t.settle(650);
            spend.record(&payer, &charge);
        })
    });

    let req = prompt_2kb();
    tokens::warm_up();
    for (name, tok) in [
        ("tokens/2kb_o200k", Tokenizer::O200k),
        ("tokens/2kb_cl100k", Tokenizer::Cl100k),
        ("tokens/2kb_approximation", Tokenizer::Approximation),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| black_box(tokens::prompt_tokens_with(black_box(&req), tok)))
        });
    }
    // What the first request would pay without the warm-up at start-up.
    let started = std::time::Instant::now();
    let loaded = tiktoken_rs::o200k_base().is_ok();
    println!(
        "loading o200k_base once (done at start-up, off the request path): {:.1} ms (ok: {loaded})",
        started.elapsed().as_secs_f64() * 1e3
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
