//! Secrets never leave the gateway: provider keys, the master key and virtual keys are absent
//! from every response (errors included, even when the upstream echoes the key back), from the
//! logs at debug level, from `/metrics`, the audit log, the key listing and the config's `Debug`
//! output. The only answers that may carry a virtual key's secret are the ones that create or
//! rotate it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::{web, HttpRequest, HttpResponse};
use common::{client, fake_server, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const OPENAI_KEY: &str = "sk-PROVIDERSECRET-openai-9f8e7d6c5b4a3210";
const ANTHROPIC_KEY: &str = "sk-ant-PROVIDERSECRET-anthropic-1a2b3c4d5e6f";
const MASTER: &str = "sk-MASTERSECRET-0123456789abcdef";
/// A wrong key a client sends: not Sluice's to keep, but never to echo or log either.
const WRONG: &str = "sk-WRONGSECRET-fedcba9876543210";

/// The header the upstream received, echoed back the way careless providers do.
fn presented(req: &HttpRequest) -> String {
    ["authorization", "x-api-key", "api-key"]
        .iter()
        .filter_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn echo_error(status: u16, req: &HttpRequest) -> HttpResponse {
    let msg = format!("Incorrect API key provided: {}", presented(req));
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
        "error": {"message": msg, "type": "invalid_request_error", "param": presented(req),
                  "code": presented(req)}
    }))
}

/// OpenAI-compatible chat: `ok` answers, `fail-N` fails with status N echoing the key, `sse-fail`
/// starts a stream and ends it with an error event that echoes the key.
async fn chat(req: HttpRequest, body: web::Json<Value>) -> HttpResponse {
    let model = body["model"].as_str().unwrap_or_default().to_string();
    if let Some(status) = model.strip_prefix("fail-") {
        return echo_error(status.parse().unwrap(), &req);
    }
    if model == "sse-fail" {
        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                           "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": null}]});
        let err = json!({"error": {"message": format!("stream broke for {}", presented(&req))}});
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!("data: {chunk}\n\ndata: {err}\n\n"));
    }
    if body["stream"] == true {
        let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": model,
                           "choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": "stop"}]});
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(format!("data: {chunk}\n\ndata: [DONE]\n\n"));
    }
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    }))
}

async fn embeddings(req: HttpRequest) -> HttpResponse {
    echo_error(400, &req)
}

/// Anthropic's Messages API: always an authentication error echoing `x-api-key`.
async fn anthropic(req: HttpRequest) -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({
        "type": "error",
        "error": {"type": "authentication_error", "message": format!("invalid x-api-key: {}", presented(&req))}
    }))
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(chat))
        .route("/v1/embeddings", web::post().to(embeddings))
        .route("/v1/messages", web::post().to(anthropic));
}

fn config(upstream: &str) -> String {
    let mut s = String::from("model_list:\n");
    for m in [
        "ok", "fail-400", "fail-401", "fail-429", "fail-500", "sse-fail",
    ] {
        s.push_str(&format!(
            "  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n      api_base: {upstream}/v1\n      api_key: {OPENAI_KEY}\n      timeout: 5\n"
        ));
    }
    s.push_str(&format!(
        "  - model_name: emb\n    litellm_params:\n      model: openai/text-embedding-3-small\n      api_base: {upstream}/v1\n      api_key: {OPENAI_KEY}\n    model_info:\n      mode: embedding\n"
    ));
    s.push_str(&format!(
        "  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5\n      api_base: {upstream}\n      api_key: {ANTHROPIC_KEY}\n      timeout: 5\n"
    ));
    s.push_str(&format!(
        "router_settings:\n  num_retries: 0\ngeneral_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n  audit:\n    log_bodies: true\n"
    ));
    s
}

/// Everything the gateway said, one entry per response.
#[derive(Default)]
struct Transcript(Vec<(String, String)>);

impl Transcript {
    async fn call(
        &mut self,
        gw: &TestGateway,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut rb = client().request(method.clone(), gw.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = format!("{:?}", r.headers());
        let text = r.text().await.unwrap();
        // The request line is the test's own (it may carry a secret on purpose): only the
        // answer is checked.
        self.0.push((
            format!("{method} {}", path.split('?').next().unwrap_or_default()),
            format!("-> {status}\n{headers}\n{text}"),
        ));
        (status, text)
    }
}

fn assert_clean(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !text.contains(s),
            "secret {s:?} found in {what}:\n{}",
            excerpt(text, s)
        );
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let i = text.find(needle).unwrap_or(0);
    let start = text[..i]
        .char_indices()
        .rev()
        .nth(300)
        .map_or(0, |(j, _)| j);
    text[start..].chars().take(700).collect()
}

#[tokio::test]
async fn no_secret_appears_in_any_output() {
    let fake = fake_server::spawn(Arc::new(()), routes);
    let gw = TestGateway::builder()
        .config(config(&fake.base))
        .env("RUST_LOG", "debug")
        .spawn();
    let mut t = Transcript::default();

    // A virtual key, created and rotated at run time: its secrets are in these answers only.
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"alias": "tenant"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let first_secret = created["key"].as_str().unwrap().to_string();
    let r = client()
        .post(gw.url(&format!("/admin/keys/{id}/rotate")))
        .bearer_auth(MASTER)
        .json(&json!({"grace_seconds": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let vkey = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .post(gw.url("/key/generate"))
        .bearer_auth(MASTER)
        .json(&json!({"key_alias": "litellm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let litellm_key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();

    let chat = |model: &str, stream: bool| {
        json!({"model": model, "stream": stream,
               "messages": [{"role": "user", "content": format!("hello {model}")}]})
    };
    for key in [MASTER, vkey.as_str(), first_secret.as_str()] {
        for model in [
            "ok", "fail-400", "fail-401", "fail-429", "fail-500", "sse-fail",
        ] {
            for stream in [false, true] {
                t.call(
                    &gw,
                    Method::POST,
                    "/v1/chat/completions",
                    Some(key),
                    Some(chat(model, stream)),
                )
                .await;
            }
        }
        t.call(
            &gw,
            Method::POST,
            "/v1/embeddings",
            Some(key),
            Some(json!({"model": "emb", "input": "x"})),
        )
        .await;
        for stream in [false, true] {
            t.call(
                &gw,
                Method::POST,
                "/v1/messages",
                Some(key),
                Some(
                    json!({"model": "claude", "max_tokens": 16, "stream": stream,
                            "messages": [{"role": "user", "content": "hi"}]}),
                ),
            )
            .await;
            t.call(
                &gw,
                Method::POST,
                "/v1/chat/completions",
                Some(key),
                Some(chat("claude", stream)),
            )
            .await;
        }
        for model in ["ok", "fail-400", "fail-401"] {
            let (_, body) = t
                .call(
                    &gw,
                    Method::POST,
                    "/v1/responses",
                    Some(key),
                    Some(json!({"model": model, "input": "hi"})),
                )
                .await;
            if let Some(rid) = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string))
            {
                for (m, p) in [
                    (Method::GET, format!("/v1/responses/{rid}")),
                    (Method::GET, format!("/v1/responses/{rid}/input_items")),
                    (Method::DELETE, format!("/v1/responses/{rid}")),
                ] {
                    t.call(&gw, m, &p, Some(key), None).await;
                }
            }
        }
        t.call(&gw, Method::GET, "/v1/models", Some(key), None)
            .await;
        t.call(&gw, Method::GET, "/v1/models/ok", Some(key), None)
            .await;
        t.call(&gw, Method::GET, "/key/info", Some(key), None).await;
        t.call(
            &gw,
            Method::POST,
            "/utils/token_counter",
            Some(key),
            Some(json!({"model": "ok", "prompt": "hi"})),
        )
        .await;
        // Admin endpoints with a non-admin key: refusals.
        t.call(&gw, Method::GET, "/admin/keys", Some(key), None)
            .await;
        t.call(&gw, Method::GET, "/admin/audit", Some(key), None)
            .await;
    }
    // Wrong keys and keys where they do not belong.
    for key in [Some(WRONG), None] {
        t.call(
            &gw,
            Method::POST,
            "/v1/chat/completions",
            key,
            Some(chat("ok", false)),
        )
        .await;
        t.call(&gw, Method::GET, "/admin/keys", key, None).await;
    }
    for path in [
        format!("/admin/keys/{vkey}"),
        format!("/key/info?key={vkey}"),
        format!("/admin/audit?key={vkey}"),
        // Sluice secrets pasted where ids go: recognisable by their prefix, never echoed. (A
        // foreign string in a path is the caller's own text and is echoed in 404s as given.)
        format!("/v1/responses/{vkey}"),
        format!("/v1/responses/{vkey}/input_items"),
        format!("/v1/models/{vkey}"),
        format!("/{vkey}"),
    ] {
        t.call(&gw, Method::GET, &path, Some(MASTER), None).await;
    }
    t.call(
        &gw,
        Method::POST,
        "/key/update",
        Some(MASTER),
        Some(json!({"key": vkey, "rpm": 1000})),
    )
    .await;
    t.call(
        &gw,
        Method::POST,
        "/key/update",
        Some(MASTER),
        Some(json!({"key": WRONG, "rpm": 1000})),
    )
    .await;
    t.call(
        &gw,
        Method::POST,
        "/key/delete",
        Some(MASTER),
        Some(json!({"keys": [WRONG]})),
    )
    .await;
    t.call(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(MASTER),
        Some(json!({"metadata": {"note": "x"}, "alias": "tenant-2"})),
    )
    .await;
    // Admin reads: the listing, the key, the cache, spend, the audit log, metrics, health.
    for path in [
        "/admin/keys".to_string(),
        format!("/admin/keys/{id}"),
        "/admin/cache/config".into(),
        "/admin/cache/stats".into(),
        "/admin/spend?group_by=key".into(),
        "/admin/spend?group_by=user".into(),
        "/metrics".into(),
        "/health".into(),
        "/health/readiness".into(),
        "/openapi.json".into(),
    ] {
        t.call(&gw, Method::GET, &path, Some(MASTER), None).await;
    }
    t.call(
        &gw,
        Method::POST,
        "/admin/cache/lookup",
        Some(MASTER),
        Some(json!({"model": "ok", "prompt": "hello ok"})),
    )
    .await;
    // Admin changes: cache settings, flush, entry delete, revocations (audited before/after).
    for (m, path, body) in [
        (
            Method::PUT,
            "/admin/cache/config".to_string(),
            Some(json!({"default_threshold": 0.9})),
        ),
        (
            Method::POST,
            "/admin/cache/flush".into(),
            Some(json!({"model": "ok"})),
        ),
        (Method::DELETE, "/admin/cache/entries/1".into(), None),
        (
            Method::POST,
            "/key/delete".into(),
            Some(json!({"keys": [litellm_key.clone()]})),
        ),
        (Method::DELETE, format!("/admin/keys/{id}"), None),
        (
            Method::POST,
            format!("/admin/keys/{id}/rotate"),
            Some(json!({})),
        ),
    ] {
        t.call(&gw, m, &path, Some(MASTER), body).await;
    }
    t.call(
        &gw,
        Method::POST,
        "/v1/chat/completions",
        Some(&vkey),
        Some(chat("ok", false)),
    )
    .await;
    // Every audit page (streamed requests are written when their stream ends).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut cursor = None::<String>;
    let mut records = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/audit?limit=1000&cursor={c}"),
            None => "/admin/audit?limit=1000".into(),
        };
        let (s, body) = t.call(&gw, Method::GET, &path, Some(MASTER), None).await;
        assert_eq!(s, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        records += page["data"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // The exercise reached the paths it meant to: upstream errors, refusals, audit records.
    let all: String = t.0.iter().map(|(_, a)| a.as_str()).collect();
    assert!(records > 50, "{records} audit records");
    for expected in [
        "-> 502", "-> 401", "-> 403", "-> 400", "-> 404", "-> 409", "-> 429",
    ] {
        assert!(all.contains(expected), "no response {expected}");
    }

    let vkey_tail = &vkey[vkey.len() - 12..];
    let first_tail = &first_secret[first_secret.len() - 12..];
    let litellm_tail = &litellm_key[litellm_key.len() - 12..];
    let secrets = [
        OPENAI_KEY,
        ANTHROPIC_KEY,
        MASTER,
        WRONG,
        "PROVIDERSECRET",
        "MASTERSECRET",
        "WRONGSECRET",
        vkey.as_str(),
        vkey_tail,
        first_secret.as_str(),
        first_tail,
        litellm_key.as_str(),
        litellm_tail,
    ];
    for (request, answer) in &t.0 {
        assert_clean(&format!("the answer to {request}"), answer, &secrets);
    }

    // The logs, at debug level, to the end of the process.
    gw.terminate();
    let mut gw = gw;
    gw.wait_exit(Duration::from_secs(20));
    let logs = gw.stderr();
    assert!(
        logs.contains("DEBUG") || logs.contains("\"level\":\"DEBUG\""),
        "not at debug level"
    );
    assert_clean("the gateway's log", &logs, &secrets);

    // The config's Debug output.
    let path = gw.dir.path().join("config.yaml");
    let cfg = sluice::config::Config::load(&path).unwrap();
    assert_clean("Debug of the config", &format!("{cfg:?}"), &secrets);
    assert_clean("pretty Debug of the config", &format!("{cfg:#?}"), &secrets);
}
