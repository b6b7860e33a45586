//! Cost of one routing decision with 100 deployments in a group, per strategy, and for `auto`
//! over all of them (capability filter + ranking). `cargo bench --bench routing`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::config::Config;
use sluice::router::{Needs, Router, RoutingStrategy};
use std::hint::black_box;
use std::time::{Duration, Instant};

const DEPLOYMENTS: usize = 100;

fn router(strategy: RoutingStrategy) -> Router {
    let mut y = String::from("model_list:\n");
    for i in 0..DEPLOYMENTS {
        y.push_str(&format!(
            "  - model_name: g\n    litellm_params: {{model: mock/m{i}, rpm: 1000, tpm: 100000}}\n    model_info: {{input_cost_per_token: {}, output_cost_per_token: {}, max_input_tokens: {}}}\n",
            1e-7 * (1 + i % 17) as f64,
            3e-7 * (1 + i % 13) as f64,
            8_000 * (1 + i % 5),
        ));
    }
    y.push_str(&format!(
        "router_settings: {{routing_strategy: {}}}\nsluice: {{routing: {{seed: 1}}}}\n",
        strategy.as_str()
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, y).unwrap();
    let r = Router::new(&Config::load(&path).unwrap());
    // Give every deployment some history so latency and error terms are live.
    for (i, t) in r.targets().iter().enumerate() {
        let ms = Duration::from_millis(50 + (i as u64 * 37) % 900);
        t.health.record_success(Some(ms / 4), Some(ms));
    }
    r
}

fn bench(c: &mut Criterion) {
    let needs = Needs {
        prompt_tokens: 1_200,
        max_output: Some(300),
        ..Needs::default()
    };
    let mut group = c.benchmark_group("route_100_deployments");
    for s in [
        RoutingStrategy::SimpleShuffle,
        RoutingStrategy::LeastBusy,
        RoutingStrategy::LatencyBased,
        RoutingStrategy::CostBased,
        RoutingStrategy::UsageBased,
        RoutingStrategy::Balanced,
    ] {
        let r = router(s);
        group.bench_function(s.as_str(), |b| {
            b.iter(|| black_box(r.route(black_box("g"), &needs).unwrap()))
        });
    }
    let r = router(RoutingStrategy::Balanced);
    group.bench_function("auto-balanced", |b| {
        b.iter(|| black_box(r.route(black_box("auto"), &needs).unwrap()))
    });
    group.finish();

    // A plain figure for BENCHMARKS.md without criterion's statistics.
    let r = router(RoutingStrategy::Balanced);
    let n = 20_000;
    let started = Instant::now();
    for _ in 0..n {
        black_box(r.route("g", &needs).unwrap());
    }
    eprintln!(
        "balanced, {DEPLOYMENTS} deployments: {:.1} us per decision",
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
