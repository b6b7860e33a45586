//! Bad input and upstream failures: every case gets the right status and an OpenAI error body.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, config_for, TestGateway};
use serde_json::{json, Value};

const MODELS: &[&str] = &[
    "gpt-x",
    "fake-400",
    "fake-401",
    "fake-429",
    "fake-500",
    "fake-html",
    "fake-garbage",
    "fake-slow",
];

fn gateway(fake: &FakeOpenAi) -> TestGateway {
    let extra = "  - model_name: down\n    litellm_params:\n      model: openai/down\n      api_base: http://127.0.0.1:9/v1\n      api_key: k\n      connect_timeout: 1\ngeneral_settings:\n  master_key: mk-test\nsluice:\n  max_request_body_bytes: 2048\n";
    TestGateway::builder()
        .config(config_for(&fake.base, MODELS, extra))
        .spawn()
}

async fn post(gw: &TestGateway, body: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("mk-test")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.expect("error bodies are JSON");
    (status, body, headers)
}

fn assert_error(body: &Value, kind: &str, param: Option<&str>) {
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(e["type"], kind, "{body}");
    match param {
        Some(p) => assert_eq!(e["param"], p, "{body}"),
        None => assert!(e["param"].is_null(), "{body}"),
    }
    assert!(e.as_object().unwrap().contains_key("code"));
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_field() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let (s, b, _) = post(&gw, "{not json").await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", None);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    let (s, b, _) = post(
        &gw,
        r#"{"model":"gpt-x","messages":[{"role":"boss","content":"x"}]}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", Some("messages[0].role"));

    let (s, b, _) = post(
        &gw,
        r#"{"model":"gpt-x","messages":[{"role":"user","content":7}]}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", Some("messages[0].content"));

    let (s, b, _) = post(&gw, r#"{"model":"gpt-x","messages":"hi"}"#).await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", Some("messages"));

    let (s, b, _) = post(&gw, r#"{"model":"gpt-x","messages":[],"stream":"yes"}"#).await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", Some("stream"));

    let (s, b, _) = post(&gw, r#"{"messages":[{"role":"user","content":"x"}]}"#).await;
    assert_eq!(s, 400);
    assert!(b["error"]["message"].as_str().unwrap().contains("model"));

    let (s, b, _) = post(&gw, r#"{"model":"gpt-x","messages":[]}"#).await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", Some("messages"));
    assert_eq!(fake.call_count(), 0, "nothing bad reaches the upstream");
}

#[tokio::test]
async fn auth_failures_are_401() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let body = json!({"model": "gpt-x", "messages": [{"role": "user", "content": "x"}]});
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "missing_api_key");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "invalid_api_key");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", "mk-test")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "x-api-key works too");
    let r = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(
        client()
            .get(gw.url("/health/liveliness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_model_is_404_listing_models() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let (s, b, _) = post(
        &gw,
        r#"{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(s, 404);
    assert_error(&b, "invalid_request_error", Some("model"));
    assert_eq!(b["error"]["code"], "model_not_found");
    let m = b["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("gpt-9") && m.contains("gpt-x") && m.contains("fake-500"),
        "{m}"
    );
}

#[tokio::test]
async fn oversized_body_is_413() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let big = format!(
        r#"{{"model":"gpt-x","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    let (s, b, _) = post(&gw, &big).await;
    assert_eq!(s, 413);
    assert_eq!(b["error"]["code"], "request_too_large");
    // Chunked upload without a content-length is caught too.
    let stream =
        futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.clone().into_bytes())]);
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("mk-test")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn upstream_failures_map_to_clear_statuses() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let req =
        |m: &str| format!(r#"{{"model":"{m}","messages":[{{"role":"user","content":"x"}}]}}"#);

    // The client's fault upstream: the upstream's status and error, naming the deployment.
    let (s, b, _) = post(&gw, &req("fake-400")).await;
    assert_eq!(s, 400);
    assert_error(&b, "invalid_request_error", Some("temperature"));
    let m = b["error"]["message"].as_str().unwrap();
    assert!(m.contains("fake-400/0") && m.contains("temperature"), "{m}");

    let (s, b, h) = post(&gw, &req("fake-429")).await;
    assert_eq!(s, 429);
    assert_eq!(h["retry-after"], "7");
    assert_eq!(b["error"]["code"], "rate_limit_exceeded");

    // Sluice's provider key is wrong: a gateway error, and the key is not echoed.
    let (s, b, _) = post(&gw, &req("fake-401")).await;
    assert_eq!(s, 502);
    assert_eq!(b["error"]["code"], "upstream_auth_failed");
    assert!(!b.to_string().contains("sk-upstream-secret"), "{b}");

    let (s, b, _) = post(&gw, &req("fake-500")).await;
    assert_eq!(s, 502);
    assert!(b["error"]["message"].as_str().unwrap().contains("HTTP 500"));

    let (s, b, _) = post(&gw, &req("fake-html")).await;
    assert_eq!(s, 502);
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("bad gateway"));

    let (s, b, _) = post(&gw, &req("fake-garbage")).await;
    assert_eq!(s, 502);
    assert_eq!(b["error"]["code"], "upstream_invalid_response");

    let (s, b, _) = post(&gw, &req("fake-slow")).await;
    assert_eq!(s, 504);
    assert_eq!(b["error"]["code"], "upstream_timeout");

    let (s, b, _) = post(&gw, &req("down")).await;
    assert_eq!(s, 502);
    assert_eq!(b["error"]["code"], "upstream_unreachable");
    assert!(b["error"]["message"].as_str().unwrap().contains("down/0"));

    // Streaming requests fail the same way before the stream starts.
    let (s, _, _) = post(
        &gw,
        r#"{"model":"fake-500","stream":true,"messages":[{"role":"user","content":"x"}]}"#,
    )
    .await;
    assert_eq!(s, 502);
    assert!(!gw.stderr().contains("sk-upstream-secret"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let r = client().get(gw.url("/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "unknown_url");
    let r = client()
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let _: Value = r.json().await.unwrap();
}
