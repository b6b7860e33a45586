//! The semantic cache end to end: real embedding model, real RocksDB, the real binary, a fake
//! upstream that counts calls (a hit is proven by the upstream not being called).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, config_for, TestGateway};
use serde_json::{json, Value};
use std::time::Duration;

const MASTER: &str = "mk-cache";

fn gateway(fake: &FakeOpenAi, extra_sluice: &str) -> TestGateway {
    let extra = format!(
        "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n{extra_sluice}"
    );
    TestGateway::builder()
        .config(config_for(
            &fake.base,
            &["gpt-x", "fake-broken-stream"],
            &extra,
        ))
        .spawn()
}

/// A config whose data directory the test chooses, to restart on the same data.
fn restartable_config(fake: &FakeOpenAi) -> String {
    config_for(
        &fake.base,
        &["gpt-x"],
        &format!("general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n"),
    )
}

struct Answer {
    cache: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn ask_with(gw: &TestGateway, body: Value, headers: &[(&str, &str)]) -> Answer {
    let mut rb = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let cache = headers
        .get("x-sluice-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        cache,
        status,
        headers,
        body,
    }
}

async fn ask(gw: &TestGateway, question: &str) -> Answer {
    ask_with(
        gw,
        json!({"model": "gpt-x", "messages": [{"role": "user", "content": question}]}),
        &[],
    )
    .await
}

async fn admin(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client().request(method, gw.url(path)).bearer_auth(MASTER);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn paraphrase_hits_and_look_alikes_miss() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "");
    let first = ask(&gw, "How do I reset my password?").await;
    assert_eq!(first.cache, "miss");
    assert_eq!(fake.call_count(), 1);

    let exact = ask(&gw, "How do I reset my password?").await;
    assert_eq!(exact.cache, "hit-exact");
    assert_eq!(
        exact.body["choices"][0]["message"]["content"],
        "You said: How do I reset my password?"
    );
    assert_ne!(exact.body["id"], first.body["id"], "a hit gets a fresh id");
    assert_eq!(
        exact.body["usage"]["prompt_tokens_details"]["cached_tokens"],
        11
    );
    assert!(exact.headers.contains_key("x-sluice-cache-entry"));
    assert!(exact.headers.contains_key("x-sluice-cache-age"));
    assert_eq!(fake.call_count(), 1);

    let para = ask(&gw, "how do i reset my password").await;
    assert_eq!(para.cache, "hit-semantic", "{:?}", para.body);
    let sim: f32 = para.headers["x-sluice-cache-similarity"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sim > 0.8 && sim <= 1.0);
    assert_eq!(fake.call_count(), 1);

    // Look-alikes that want another answer go upstream.
    ask(&gw, "What is the capital of France?").await;
    ask(&gw, "How much is 25 euros in dollars?").await;
    ask(&gw, "Should I enable two-factor authentication?").await;
    let calls = fake.call_count();
    for (q, why) in [
        ("What is the capital of Germany?", "swapped entity"),
        ("How much is 40 euros in dollars?", "changed number"),
        ("Should I disable two-factor authentication?", "negation"),
    ] {
        let a = ask(&gw, q).await;
        assert_eq!(a.cache, "miss", "{why}: {q}");
    }
    assert_eq!(fake.call_count(), calls + 3);

    // The dry-run lookup explains the verdicts.
    let (s, b) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/cache/lookup",
        Some(json!({"model": "gpt-x", "prompt": "What is the capital of Spain?"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let c = b["candidates"].as_array().unwrap();
    assert!(!c.is_empty());
    assert!(c.iter().all(|c| c["verdict"]["verdict"] == "reject"), "{b}");
}

#[tokio::test]
async fn scope_and_namespace_are_exact() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "");
    let q = "Summarise the plot of Hamlet in two sentences.";
    ask(&gw, q).await;
    let sys = ask_with(
        &gw,
        json!({"model": "gpt-x", "messages": [
        {"role": "system", "content": "Answer like a pirate."}, {"role": "user", "content": q}]}),
        &[],
    )
    .await;
    assert_eq!(sys.cache, "miss", "another system prompt");
    let hist = ask_with(
        &gw,
        json!({"model": "gpt-x", "messages": [
        {"role": "user", "content": "Tell me about Macbeth."},
        {"role": "assistant", "content": "Macbeth is a tragedy."},
        {"role": "user", "content": q}]}),
        &[],
    )
    .await;
    assert_eq!(hist.cache, "miss", "another history");
    let ns = ask_with(
        &gw,
        json!({"model": "gpt-x", "messages": [{"role": "user", "content": q}]}),
        &[("x-sluice-cache-namespace", "tenant-b")],
    )
    .await;
    assert_eq!(ns.cache, "miss", "another namespace");
    let temp = ask_with(
        &gw,
        json!({"model": "gpt-x", "temperature": 1.5, "messages": [{"role": "user", "content": q}]}),
        &[],
    )
    .await;
    assert_eq!(temp.cache, "miss", "another temperature");
    assert_eq!(fake.call_count(), 5);
    let again = ask_with(
        &gw,
        json!({"model": "gpt-x", "messages": [{"role": "user", "content": q}]}),
        &[("x-sluice-cache-namespace", "tenant-b")],
    )
    .await;
    assert_eq!(again.cache, "hit-exact");
}

#[tokio::test]
async fn streams_are_stored_when_complete_and_replayed() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "");
    let body = json!({"model": "gpt-x", "stream": true, "messages": [{"role": "user", "content": "Name three primary colours."}]});
    let first = ask_with(&gw, body.clone(), &[]).await;
    assert_eq!(first.cache, "miss");
    // The write-back completes before `[DONE]` goes out: the next request is a hit at once.
    let replay = ask_with(&gw, body.clone(), &[]).await;
    assert_eq!(replay.cache, "hit-exact", "the streamed answer was stored");
    let text = replay.body.as_str().unwrap().to_string();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    let content: String = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(content, "You said: Name three primary colours.");
    // The same cached answer as JSON.
    let json_hit = ask(&gw, "Name three primary colours.").await;
    assert_eq!(json_hit.cache, "hit-exact");
    assert_eq!(json_hit.body["choices"][0]["message"]["content"], content);

    // A stream that breaks off is never stored.
    let broken = json!({"model": "fake-broken-stream", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    ask_with(&gw, broken.clone(), &[]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ask_with(&gw, broken, &[]).await.cache, "miss");
}

#[tokio::test]
async fn controls_no_store_no_cache_ttl() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "");
    let body = |q: &str| json!({"model": "gpt-x", "messages": [{"role": "user", "content": q}]});
    ask_with(
        &gw,
        body("What is Rust's borrow checker?"),
        &[("cache-control", "no-store")],
    )
    .await;
    assert_eq!(
        ask(&gw, "What is Rust's borrow checker?").await.cache,
        "miss",
        "no-store kept nothing"
    );
    let skip = ask_with(
        &gw,
        body("What is Rust's borrow checker?"),
        &[("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(skip.cache, "bypass");
    let mut b = body("Explain TCP slow start.");
    b["cache"] = json!({"ttl": 1});
    ask_with(&gw, b, &[]).await;
    assert_eq!(ask(&gw, "Explain TCP slow start.").await.cache, "hit-exact");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        ask(&gw, "Explain TCP slow start.").await.cache,
        "miss",
        "expired entries are not served"
    );
    let bad = ask_with(&gw, body("x"), &[("x-sluice-cache-threshold", "1.5")]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["param"], "x-sluice-cache-threshold");
}

#[tokio::test]
async fn concurrent_identical_misses_make_one_upstream_call() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "");
    let body = json!({"model": "gpt-x", "stream": true, "messages": [{"role": "user", "content": "Write a haiku about the sea."}]});
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = gw.url("/v1/chat/completions");
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let r = client()
                .post(url)
                .bearer_auth(MASTER)
                .json(&body)
                .send()
                .await
                .unwrap();
            let cache = r.headers()["x-sluice-cache"].to_str().unwrap().to_string();
            (cache, r.text().await.unwrap())
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let (cache, text) = t.await.unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"));
        outcomes.push(cache);
    }
    assert_eq!(fake.call_count(), 1, "outcomes: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "miss").count(), 1);
}

#[tokio::test]
async fn admin_threshold_changes_outcome_and_survives_restart() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::builder()
        .config(restartable_config(&fake))
        .data_dir(data.path())
        .spawn();
    ask(&gw, "What's the best way to learn Rust?").await;
    let para = "how should i go about learning rust";
    let (s, b) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/cache/lookup",
        Some(json!({"model": "gpt-x", "prompt": para})),
    )
    .await;
    assert_eq!(s, 200);
    let sim = b["candidates"][0]["similarity"].as_f64().unwrap();
    // Raise the threshold above this pair's similarity: the next lookup misses.
    let (s, b) = admin(
        &gw,
        reqwest::Method::PUT,
        "/admin/cache/config",
        Some(json!({"group_thresholds": {"gpt-x": (sim + 0.01).min(1.0)}})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(ask(&gw, para).await.cache, "miss");
    // Invalid values are rejected naming the field.
    let (s, b) = admin(
        &gw,
        reqwest::Method::PUT,
        "/admin/cache/config",
        Some(json!({"default_threshold": 0})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (400, Some("default_threshold"))
    );
    let (s, b) = admin(
        &gw,
        reqwest::Method::PUT,
        "/admin/cache/config",
        Some(json!({"group_thresholds": {"nope": 0.9}})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (400, Some("group_thresholds.nope"))
    );
    let (s, _) = client()
        .get(gw.url("/admin/cache/config"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 401, "admin needs the master key");

    gw.terminate();
    assert_eq!(
        gw.wait_exit(Duration::from_secs(20)).unwrap().code(),
        Some(0)
    );
    let gw = TestGateway::builder()
        .config(restartable_config(&fake))
        .data_dir(data.path())
        .spawn();
    let (_, cfg) = admin(&gw, reqwest::Method::GET, "/admin/cache/config", None).await;
    assert!(
        (cfg["group_thresholds"]["gpt-x"].as_f64().unwrap() - (sim + 0.01).min(1.0)).abs() < 1e-4,
        "{cfg}"
    );
    assert_eq!(
        ask(&gw, "What's the best way to learn Rust?").await.cache,
        "hit-exact",
        "entries survive restart"
    );
    let (s, stats) = admin(&gw, reqwest::Method::GET, "/admin/cache/stats", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        stats["entries"], 2,
        "the first question and the paraphrase that missed"
    );
    assert_eq!(stats["hits"]["exact"], 1);
}

#[tokio::test]
async fn kill_9_and_damaged_snapshot_lose_nothing() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let cfg = restartable_config(&fake);
    let mut gw = TestGateway::builder()
        .config(cfg.clone())
        .data_dir(data.path())
        .spawn();
    ask(&gw, "How long should I boil an egg for a runny yolk?").await;
    // Graceful stop writes a snapshot; then one more entry and a hard kill.
    gw.terminate();
    gw.wait_exit(Duration::from_secs(20)).unwrap();
    let mut gw = TestGateway::builder()
        .config(cfg.clone())
        .data_dir(data.path())
        .spawn();
    ask(&gw, "What makes the sky look blue?").await;
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let gw = TestGateway::builder()
        .config(cfg.clone())
        .data_dir(data.path())
        .spawn();
    assert_eq!(
        ask(&gw, "why is the sky blue").await.cache,
        "hit-semantic",
        "entry written after the snapshot"
    );
    assert_eq!(
        ask(&gw, "how long should i boil an egg for a runny yolk")
            .await
            .cache,
        "hit-semantic"
    );
    drop(gw);

    // Damage every snapshot file: start-up says so, rebuilds from RocksDB, and still hits.
    for f in std::fs::read_dir(data.path().join("index")).unwrap() {
        let p = f.unwrap().path();
        if p.is_file() {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    let gw = TestGateway::builder()
        .config(cfg)
        .data_dir(data.path())
        .spawn();
    assert_eq!(ask(&gw, "why is the sky blue").await.cache, "hit-semantic");
    let log = gw.stderr();
    assert!(log.contains("rebuilding the index from RocksDB"), "{log}");
    assert_eq!(fake.call_count(), 2);
}

#[tokio::test]
async fn eviction_delete_and_flush() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "  cache:\n    max_entries: 2\n");
    for q in [
        "What is a monad?",
        "What is a functor?",
        "What is a semigroup?",
    ] {
        assert_eq!(ask(&gw, q).await.cache, "miss");
    }
    // The least recently used entry went when the third arrived.
    assert_eq!(ask(&gw, "What is a monad?").await.cache, "miss");
    let hit = ask(&gw, "What is a semigroup?").await;
    assert_eq!(hit.cache, "hit-exact");
    let id = hit.headers["x-sluice-cache-entry"]
        .to_str()
        .unwrap()
        .to_string();
    let (s, _) = admin(
        &gw,
        reqwest::Method::DELETE,
        &format!("/admin/cache/entries/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = admin(
        &gw,
        reqwest::Method::DELETE,
        &format!("/admin/cache/entries/{id}"),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(
        ask(&gw, "What is a semigroup?").await.cache,
        "miss",
        "deleted entries are not served"
    );
    let (s, b) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/cache/flush",
        Some(json!({"model": "gpt-x"})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["deleted"], 2);
    let (_, stats) = admin(&gw, reqwest::Method::GET, "/admin/cache/stats", None).await;
    assert_eq!(stats["entries"], 0);
    let (s, _) = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/cache/flush",
        Some(json!({"model": "nope"})),
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn switching_the_embedding_model_reembeds_stored_queries() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let with_model = |m: &str| {
        config_for(
            &fake.base,
            &["gpt-x"],
            &format!(
                "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n  cache:\n    embedding_model: {m}\n"
            ),
        )
    };
    let mut gw = TestGateway::builder()
        .config(with_model("reference"))
        .data_dir(data.path())
        .spawn();
    ask(&gw, "What makes the sky look blue?").await;
    gw.terminate();
    gw.wait_exit(Duration::from_secs(20)).unwrap();

    let gw = TestGateway::builder()
        .config(with_model("quantized"))
        .data_dir(data.path())
        .spawn();
    assert_eq!(ask(&gw, "why is the sky blue").await.cache, "hit-semantic");
    let log = gw.stderr();
    assert!(log.contains("embedding model changed"), "{log}");
    assert_eq!(fake.call_count(), 1);
}

/// How many embeddings `/metrics` reports from `source` (`model` or `memo`).
async fn embeddings_from(gw: &TestGateway, source: &str) -> u64 {
    let text = gw.metrics().await;
    let prefix = format!("sluice_embed_duration_seconds_count{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn a_repeated_paraphrase_takes_its_vector_from_the_memo_unless_it_is_off() {
    let fake = FakeOpenAi::start();
    for (extra, memo_hits) in [("", 1), ("  cache: {embedding_memo_entries: 0}\n", 0)] {
        let gw = gateway(&fake, extra);
        assert_eq!(ask(&gw, "How do I reset my password?").await.cache, "miss");
        for _ in 0..2 {
            let para = ask(&gw, "how do i reset my password").await;
            assert_eq!(para.cache, "hit-semantic", "{extra:?}: {:?}", para.body);
        }
        assert_eq!(embeddings_from(&gw, "memo").await, memo_hits, "{extra:?}");
        assert_eq!(
            embeddings_from(&gw, "model").await,
            3 - memo_hits,
            "{extra:?}"
        );
    }
}
