//! Crash safety: requests the gateway acknowledged (200 fully received) survive `kill -9` of the
//! process. After SIGKILL (no graceful shutdown, no final flush) and a restart on the same data
//! directory, every acknowledged miss is still a cache hit, the spend report counts every
//! acknowledged request and its cost, every request id is in the audit log, and
//! `sluice audit verify` finds the chain intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, TestGateway};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const MASTER: &str = "sk-durability-master";

fn gateway_on(data: &Path) -> TestGateway {
    TestGateway::builder()
        .config(format!(
            "model_list:\n  - {{model_name: g, litellm_params: {{model: mock/g}}, model_info: {{input_cost_per_token: 0.002, output_cost_per_token: 0.001}}}}\ngeneral_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n"
        ))
        .data_dir(data)
        .spawn()
}

/// One acknowledged answer: what the client can later ask the gateway about.
struct Acked {
    request_id: String,
    prompt: String,
    cache: String,
    cost_usd: f64,
}

async fn ask(gw: &TestGateway, prompt: &str) -> Acked {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "g", "messages": [{"role": "user", "content": prompt}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let request_id = header("x-request-id").expect("x-request-id on every answer");
    let cache = header("x-sluice-cache").expect("x-sluice-cache on a chat answer");
    let cost_usd = header("x-sluice-cost-usd").map_or(0.0, |v| v.parse().unwrap());
    // Acknowledged: the whole body has arrived.
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    Acked {
        request_id,
        prompt: prompt.to_string(),
        cache,
        cost_usd,
    }
}

async fn admin_get(gw: &TestGateway, path: &str) -> Value {
    let resp = client()
        .get(gw.url(path))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.unwrap()
}

/// Request ids of every request record in the audit log, paging to the end.
async fn audited_request_ids(gw: &TestGateway) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/admin/audit?kind=request&limit=100".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = admin_get(gw, &path).await;
        for r in page["data"].as_array().unwrap() {
            ids.insert(r["request"]["request_id"].as_str().unwrap().to_string());
        }
        match &page["next_cursor"] {
            Value::Null => return ids,
            Value::String(c) => cursor = Some(c.clone()),
            other => cursor = Some(other.to_string()),
        }
    }
}

fn sigkill(mut gw: TestGateway) {
    gw.child.kill().unwrap(); // SIGKILL: no shutdown hook, no final flush
    gw.child.wait().unwrap();
}

#[tokio::test]
async fn acknowledged_cache_spend_and_audit_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let gw = gateway_on(data.path());
    // Misses (distinct topics, so no semantic hit between them) and repeats of some of them.
    let topics = [
        "How do I bake sourdough bread at home?",
        "Explain the offside rule in football.",
        "What is the capital of Mongolia?",
        "Write a haiku about autumn rain.",
        "How does a heat pump work in winter?",
        "List three uses of baking soda for cleaning.",
    ];
    let mut acked = Vec::new();
    for t in &topics {
        acked.push(ask(&gw, t).await);
    }
    for t in topics.iter().take(3) {
        acked.push(ask(&gw, t).await);
    }
    let misses: Vec<&Acked> = acked.iter().filter(|a| a.cache == "miss").collect();
    let hits = acked.iter().filter(|a| a.cache.starts_with("hit")).count();
    assert_eq!(misses.len(), topics.len(), "first asks are misses");
    assert_eq!(hits, 3, "repeats are hits");
    let cost: f64 = acked.iter().map(|a| a.cost_usd).sum();
    assert!(cost > 0.0, "misses have a price");

    sigkill(gw);
    let gw = gateway_on(data.path());

    // Spend: every acknowledged request and its cost, before any new request adds to it.
    let report = admin_get(&gw, "/admin/spend?group_by=key").await;
    let master = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "master")
        .unwrap_or_else(|| panic!("no master row in {report}"));
    assert_eq!(master["requests"], acked.len() as u64, "{report}");
    assert_eq!(master["cache_hits"], hits as u64, "{report}");
    let spent = master["spend_usd"].as_f64().unwrap();
    assert!(
        (spent - cost).abs() < 1e-6,
        "spent {spent}, acknowledged {cost}"
    );

    // Audit: every acknowledged request id.
    let audited = audited_request_ids(&gw).await;
    for a in &acked {
        assert!(
            audited.contains(&a.request_id),
            "request {} ({}) not in the audit log",
            a.request_id,
            a.prompt
        );
    }

    // Cache: every acknowledged miss's answer was stored.
    for m in &misses {
        let again = ask(&gw, &m.prompt).await;
        assert!(
            again.cache.starts_with("hit"),
            "'{}' is a {} after the restart",
            m.prompt,
            again.cache
        );
    }

    // The chain is intact: the offline verifier needs the store to itself.
    let mut gw = gw;
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(30)).is_some());
    drop(gw);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data.path())
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "audit verify: {text}");
    assert!(text.contains("intact"), "{text}");
}
