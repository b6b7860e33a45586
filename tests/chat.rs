//! Chat completions, embeddings and models through the real binary against a fake OpenAI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::{stream_frames, FakeOpenAi};
use common::{client, config_for, post_json, TestGateway};
use serde_json::{json, Value};

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn non_streaming_passes_fields_through_both_ways() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(
            &fake.base,
            &["gpt-x"],
            "general_settings:\n  master_key: mk-test\n",
        ))
        .spawn();
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("mk-test")
        .header("x-request-id", "req-123")
        .json(&json!({
            "model": "gpt-x",
            "messages": user("hello"),
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "seed": 42,
            "vendor_extension": {"a": 1}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let route = resp.headers()["x-sluice-route"].to_str().unwrap();
    assert!(route.starts_with("gpt-x/0; simple-shuffle: "), "{route}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "You said: hello");
    assert_eq!(
        body["x_vendor_extra"]["kept"], true,
        "response extras pass through"
    );
    assert_eq!(body["usage"]["total_tokens"], 16);

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let sent = &calls[0];
    assert_eq!(
        sent.authorization.as_deref(),
        Some("Bearer sk-upstream-secret")
    );
    assert_eq!(sent.body["seed"], 42);
    assert_eq!(sent.body["vendor_extension"]["a"], 1);
    assert_eq!(sent.body["tools"][0]["function"]["name"], "f");
    assert_eq!(sent.body["model"], "gpt-x");
    // The provider key never shows up in logs.
    assert!(!gw.stderr().contains("sk-upstream-secret"));
}

#[tokio::test]
async fn request_id_is_generated_and_prefix_is_optional() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(&fake.base, &["gpt-x"], ""))
        .spawn();
    let resp = post_json(
        &gw,
        "/chat/completions",
        &json!({"model": "gpt-x", "messages": user("hi")}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "uuid generated: {id}");
}

async fn read_sse(resp: reqwest::Response) -> (Vec<Value>, bool, String) {
    let text = resp.text().await.unwrap();
    let mut chunks = Vec::new();
    let mut done = false;
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event.trim().strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done, text)
}

#[tokio::test]
async fn streaming_passes_chunks_and_strips_usage_it_added() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(&fake.base, &["gpt-x"], ""))
        .spawn();
    // Without include_usage: Sluice asks upstream for usage (to count tokens) and strips it.
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt-x", "messages": user("one two three"), "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (chunks, done, raw) = read_sse(resp).await;
    assert!(done);
    let expected: String = stream_frames("gpt-x", "You said: one two three", false).concat();
    assert_eq!(raw, expected, "bytes pass through unchanged");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(
        fake.calls()[0].body["stream_options"]["include_usage"],
        true
    );

    // With include_usage: the usage chunk reaches the client.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(
            &json!({"model": "gpt-x", "messages": user("hey"), "stream": true,
                      "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    let (chunks, done, _) = read_sse(resp).await;
    assert!(done);
    let last = chunks.last().unwrap();
    assert_eq!(last["usage"]["total_tokens"], 16);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: hey");
}

#[tokio::test]
async fn chunks_arrive_before_the_stream_ends() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(&fake.base, &["fake-slow-stream"], ""))
        .spawn();
    let mut resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "fake-slow-stream", "messages": user("x"), "stream": true}),
    )
    .await;
    // The upstream sends a chunk every 100 ms for ~4 s; the first must arrive long before.
    let started = std::time::Instant::now();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Client goes away: the upstream stream is cancelled, not read to the end.
    drop(resp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fake
        .shared
        .streams_cancelled
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "upstream stream was not cancelled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        fake.shared
            .streams_completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn broken_upstream_stream_is_passed_on_as_is() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(&fake.base, &["fake-broken-stream"], ""))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "fake-broken-stream", "messages": user("x"), "stream": true}),
    )
    .await;
    let (chunks, done, _) = read_sse(resp).await;
    assert!(!done, "no [DONE] is invented");
    assert_eq!(chunks.len(), 2);
}

#[tokio::test]
async fn embeddings_and_models() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(&fake.base, &["emb", "gpt-x"], ""))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "emb", "input": "hello", "encoding_format": "float"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"][1], -0.5);
    assert_eq!(fake.calls()[0].path, "/v1/embeddings");
    assert_eq!(fake.calls()[0].body["encoding_format"], "float");

    let models: Value = client()
        .get(gw.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["emb", "gpt-x"]);
    let one = client()
        .get(gw.url("/v1/models/gpt-x"))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
}

#[tokio::test]
async fn builtin_config_serves_the_mock_without_keys() {
    let gw = TestGateway::builder().spawn();
    let body: Value = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "mock", "messages": user("ping")}),
    )
    .await
    .json()
    .await
    .unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("mock") && content.ends_with("You said: ping"),
        "{content}"
    );
    assert!(gw.stderr().contains("no master key configured"));
    let emb: Value = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "mock-embedding", "input": ["a", "b"], "dimensions": 8}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(emb["data"].as_array().unwrap().len(), 2);
    assert_eq!(emb["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn metrics_report_requests_tokens_and_latency() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(&fake.base, &["gpt-x", "fake-500"], ""))
        .spawn();
    let c = client();
    c.post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-x", "messages": user("a")}))
        .send()
        .await
        .unwrap();
    c.post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "fake-500", "messages": user("a")}))
        .send()
        .await
        .unwrap();
    let text = gw.metrics().await;
    for needle in [
        "sluice_requests_total{model_group=\"gpt-x\",status=\"200\",outcome=\"miss\"} 1",
        "sluice_requests_total{model_group=\"fake-500\",status=\"502\",outcome=\"error\"} 1",
        "sluice_tokens_total{model_group=\"gpt-x\",direction=\"in\"} 11",
        "sluice_tokens_total{model_group=\"gpt-x\",direction=\"out\"} 5",
        // The first call and two retries (router_settings.num_retries defaults to 2).
        "sluice_upstream_errors_total{deployment=\"fake-500/0\",kind=\"server_status\"} 3",
        "sluice_routing_retries_total{kind=\"retry\"} 2",
        "sluice_routing_decisions_total{model_group=\"gpt-x\",deployment=\"gpt-x/0\",strategy=\"simple-shuffle\"} 1",
        "sluice_request_duration_seconds_bucket",
        "sluice_upstream_duration_seconds_bucket{deployment=\"gpt-x/0\"",
        "sluice_requests_in_flight",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn json_logs_carry_the_request_line() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config_for(
            &fake.base,
            &["gpt-x"],
            "sluice:\n  log_format: json\n  cache: {enabled: false}\n",
        ))
        .spawn();
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-request-id", "log-me-1")
        .json(&json!({"model": "gpt-x", "messages": user("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-sluice-cache"], "bypass");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = gw.stderr();
        let line = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["request_id"] == "log-me-1");
        if let Some(v) = line {
            assert_eq!(v["status"], 200);
            assert!(v["route"].as_str().unwrap().starts_with("gpt-x/0; "), "{v}");
            assert_eq!(v["path"], "/v1/chat/completions");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no JSON request line in:\n{log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
