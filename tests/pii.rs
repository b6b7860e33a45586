//! The PII guard end to end through the real binary: masking before the upstream and the cache,
//! originals restored in JSON and streamed answers, shared cache hits across users, `block`,
//! per-key overrides, the Responses surface, and metrics that name kinds, never values.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, config_for, TestGateway};
use serde_json::{json, Value};

const MASTER: &str = "mk-pii";

fn gateway(fake: &FakeOpenAi, pii: &str, cache: bool) -> TestGateway {
    let cache = if cache {
        ""
    } else {
        "  cache: {enabled: false}\n"
    };
    let extra = format!(
        "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n{cache}  pii: {pii}\n"
    );
    TestGateway::builder()
        .config(config_for(&fake.base, &["gpt-x"], &extra))
        .spawn()
}

async fn post(gw: &TestGateway, key: &str, path: &str, body: Value) -> (u16, String, String) {
    let resp = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cache = resp
        .headers()
        .get("x-sluice-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, cache, resp.text().await.unwrap())
}

fn chat(text: &str) -> Value {
    json!({"model": "gpt-x", "messages": [{"role": "user", "content": text}]})
}

fn content(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The text of a streamed chat answer.
fn streamed(body: &str) -> String {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

fn last_user_sent(fake: &FakeOpenAi) -> String {
    let calls = fake.calls();
    let body = &calls.last().unwrap().body;
    let msgs = body["messages"].as_array().unwrap();
    msgs.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn masked_upstream_restored_for_the_caller_json_and_stream() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "{prompts: mask}", false);
    let (status, _, body) = post(
        &gw,
        MASTER,
        "/v1/chat/completions",
        chat("Email jane.doe@example.com the card 4111 1111 1111 1111 receipt"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The upstream saw placeholders only.
    let sent = last_user_sent(&fake);
    assert_eq!(sent, "Email [EMAIL_1] the card [CARD_1] receipt");
    // The caller gets its own values back (the fake echoes the prompt).
    assert_eq!(
        content(&body),
        "You said: Email jane.doe@example.com the card 4111 1111 1111 1111 receipt"
    );

    let mut s = chat("Call me at jane.doe@example.com please");
    s["stream"] = json!(true);
    let (status, _, body) = post(&gw, MASTER, "/v1/chat/completions", s).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_user_sent(&fake), "Call me at [EMAIL_1] please");
    assert_eq!(
        streamed(&body),
        "You said: Call me at jane.doe@example.com please"
    );
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    // Metrics count kinds and directions, never values.
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("sluice_pii_detections_total{kind=\"email\",direction=\"prompt\"} 2"),
        "{metrics}"
    );
    assert!(!metrics.contains("jane.doe"));
}

#[tokio::test]
async fn two_users_differing_only_in_their_address_share_a_hit_and_keep_their_own() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "{prompts: mask}", true);
    let (s1, c1, b1) = post(
        &gw,
        MASTER,
        "/v1/chat/completions",
        chat("Draft a short welcome note for alice@example.com"),
    )
    .await;
    assert_eq!((s1, c1.as_str()), (200, "miss"), "{b1}");
    let (s2, c2, b2) = post(
        &gw,
        MASTER,
        "/v1/chat/completions",
        chat("Draft a short welcome note for bob@example.org"),
    )
    .await;
    assert_eq!((s2, c2.as_str()), (200, "hit-exact"), "{b2}");
    assert_eq!(fake.call_count(), 1, "one upstream call for both");
    assert_eq!(
        content(&b1),
        "You said: Draft a short welcome note for alice@example.com"
    );
    assert_eq!(
        content(&b2),
        "You said: Draft a short welcome note for bob@example.org"
    );
}

#[tokio::test]
async fn block_refuses_naming_kinds_and_keys_override_the_gateway() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "{prompts: block}", false);
    let (status, _, body) = post(
        &gw,
        MASTER,
        "/v1/chat/completions",
        chat("my SSN is 123-45-6789, key AKIAIOSFODNN7EXAMPLE"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["type"], "pii_detected");
    assert_eq!(e["error"]["code"], "pii_detected");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("ssn") && msg.contains("secret"), "{msg}");
    assert!(!msg.contains("123-45") && !msg.contains("AKIA"), "{msg}");
    assert_eq!(fake.call_count(), 0, "a blocked prompt never leaves");
    // The same refusal on the Anthropic surface.
    let (status, _, body) = post(
        &gw,
        MASTER,
        "/v1/messages",
        json!({"model": "gpt-x", "max_tokens": 50,
               "messages": [{"role": "user", "content": "reach me at ann@example.com"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("email"), "{body}");
    assert_eq!(fake.call_count(), 0);

    // A key whose policy is `mask` overrides the gateway's `block`.
    let resp = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"alias": "masker", "pii": {"prompts": "mask"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let key: Value = resp.json().await.unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let (status, _, body) = post(
        &gw,
        &key,
        "/v1/chat/completions",
        chat("reach me at ann@example.com"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_user_sent(&fake), "reach me at [EMAIL_1]");
    assert_eq!(content(&body), "You said: reach me at ann@example.com");
    // Bad overrides are refused with the field named.
    let resp = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"pii": {"prompts": "hide"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "pii.prompts");
}

#[tokio::test]
async fn responses_surface_is_masked_too() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake, "{prompts: mask}", false);
    let (status, _, body) = post(
        &gw,
        MASTER,
        "/v1/responses",
        json!({"model": "gpt-x", "input": "Send it to +44 20 7946 0958 today"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(last_user_sent(&fake), "Send it to [PHONE_1] today");
    let v: Value = serde_json::from_str(&body).unwrap();
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "You said: Send it to +44 20 7946 0958 today");
}

/// The data payloads of an SSE body.
fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect()
}

#[tokio::test]
async fn streamed_answers_are_masked_or_stopped_by_the_answer_policy() {
    let fake = FakeOpenAi::start();
    let said = "Reach bob.smith@example.org or 4111 1111 1111 1111 today";
    let masked = "You said: Reach [EMAIL_1] or [CARD_1] today";
    let stream = |path: &str| {
        let mut b = if path == "/v1/responses" {
            json!({"model": "gpt-x", "input": said})
        } else {
            chat(said)
        };
        if path == "/v1/messages" {
            b["max_tokens"] = json!(64);
        }
        b["stream"] = json!(true);
        b
    };

    // mask: the value never leaves Sluice, on every surface.
    let gw = gateway(&fake, "{prompts: 'off', responses: mask}", false);
    let (status, _, body) = post(&gw, MASTER, "/v1/chat/completions", stream("chat")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(streamed(&body), masked);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let (status, _, body) = post(&gw, MASTER, "/v1/responses", stream("/v1/responses")).await;
    assert_eq!(status, 200, "{body}");
    let text: String = events(&body)
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .filter_map(|e| e["delta"].as_str().map(String::from))
        .collect();
    assert_eq!(text, masked);
    let (status, _, body) = post(&gw, MASTER, "/v1/messages", stream("/v1/messages")).await;
    assert_eq!(status, 200, "{body}");
    let text: String = events(&body)
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .filter_map(|e| e["delta"]["text"].as_str().map(String::from))
        .collect();
    assert_eq!(text, masked);
    drop(gw);

    // block: the stream ends with a pii_detected error before any byte of a value.
    let gw = gateway(&fake, "{prompts: 'off', responses: block}", false);
    let (status, _, body) = post(&gw, MASTER, "/v1/chat/completions", stream("chat")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("bob.smith") && !body.contains("4111"),
        "{body}"
    );
    let last = events(&body).pop().unwrap();
    assert_eq!(last["error"]["type"], "pii_detected", "{body}");
    assert_eq!(last["error"]["code"], "pii_detected", "{body}");
    assert!(
        last["error"]["message"].as_str().unwrap().contains("card"),
        "{body}"
    );
    assert!(!body.contains("[DONE]"), "{body}");
    let (_, _, body) = post(&gw, MASTER, "/v1/responses", stream("/v1/responses")).await;
    assert!(!body.contains("bob.smith"), "{body}");
    let failed = events(&body).pop().unwrap();
    assert_eq!(failed["type"], "response.failed", "{body}");
    assert_eq!(
        failed["response"]["error"]["code"], "pii_detected",
        "{body}"
    );
    let (_, _, body) = post(&gw, MASTER, "/v1/messages", stream("/v1/messages")).await;
    assert!(!body.contains("bob.smith"), "{body}");
    let error = events(&body).pop().unwrap();
    assert_eq!(error["type"], "error", "{body}");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
}
