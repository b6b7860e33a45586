//! `azure/<deployment>` through the real binary against a small fake Azure OpenAI resource:
//! URL with `api-version`, `api-key` header, OpenAI bodies, Azure's error shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::fake_openai::stream_frames;
use common::{post_json, repo_root, TestGateway};
use serde_json::{json, Value};
use std::sync::{mpsc, Arc, Mutex};

const KEY: &str = "az-fake-upstream-secret-key";
const API_VERSION: &str = "2024-10-21";

/// One request the fake received.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    query: String,
    api_key: Option<String>,
    authorization: Option<String>,
    body: Value,
}

/// A fake Azure OpenAI resource. Deployments: `dep-429` (rate limited, `retry-after: 20`),
/// `dep-429-ms` (only `retry-after-ms: 1500`), `dep-filter` (400 `content_filter`),
/// `dep-filtered-answer` (200 with `finish_reason: content_filter`), `dep-missing`
/// (404 `DeploymentNotFound`); any other answers `You said: <last user text>`.
struct FakeAzure {
    base: String,
    calls: Arc<Mutex<Vec<Recorded>>>,
    handle: actix_web::dev::ServerHandle,
}

impl FakeAzure {
    fn start() -> FakeAzure {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let shared = calls.clone();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::new(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route(
                            "/openai/deployments/{dep}/chat/completions",
                            web::post().to(chat),
                        )
                        .route(
                            "/openai/deployments/{dep}/embeddings",
                            web::post().to(embeddings),
                        )
                        .default_service(web::to(|| async {
                            azure_error(404, "404", "Resource not found")
                        }))
                })
                .workers(1)
                .disable_signals()
                .bind("127.0.0.1:0")
                .unwrap();
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).unwrap();
                server.await.unwrap();
            });
        });
        let (addr, handle) = rx.recv().unwrap();
        FakeAzure {
            base: format!("http://{addr}"),
            calls,
            handle,
        }
    }

    fn calls(&self) -> Vec<Recorded> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        let h = self.handle.clone();
        std::thread::spawn(move || {
            let _ = futures_util::FutureExt::now_or_never(h.stop(false));
        });
    }
}

fn azure_error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"error": {"code": code, "message": message}}))
}

/// Records the call and checks what every Azure call needs; `Err` is Azure's answer.
fn check(
    req: &HttpRequest,
    calls: &Mutex<Vec<Recorded>>,
    body: &Value,
) -> Result<String, Box<HttpResponse>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    calls.lock().unwrap().push(Recorded {
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        api_key: header("api-key"),
        authorization: header("authorization"),
        body: body.clone(),
    });
    if header("api-key").as_deref() != Some(KEY) {
        return Err(Box::new(azure_error(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        )));
    }
    let version =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("api-version").cloned());
    match version {
        None => Err(Box::new(azure_error(404, "404", "Resource not found"))),
        Some(v) if v != API_VERSION => Err(Box::new(azure_error(
            400,
            "BadRequest",
            &format!("API version {v} not supported by this fake"),
        ))),
        Some(_) => Ok(req.match_info().get("dep").unwrap_or("").to_string()),
    }
}

fn completion(text: &str, finish: &str) -> Value {
    json!({
        "id": "chatcmpl-az1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_az",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}],
        "choices": [{"index": 0, "finish_reason": finish, "logprobs": null,
                     "message": {"role": "assistant", "content": text},
                     "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    })
}

async fn chat(
    req: HttpRequest,
    calls: web::Data<Arc<Mutex<Vec<Recorded>>>>,
    body: web::Bytes,
) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let dep = match check(&req, &calls, &body) {
        Ok(d) => d,
        Err(resp) => return *resp,
    };
    let said = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    match dep.as_str() {
        "dep-429" => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "20"))
            .insert_header(("retry-after-ms", "20000"))
            .json(json!({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 20 seconds."}})),
        "dep-429-ms" => HttpResponse::TooManyRequests()
            .insert_header(("retry-after-ms", "1500"))
            .json(json!({"error": {"code": "429", "message": "Rate limit is exceeded. Try again in 2 seconds."}})),
        "dep-filter" => HttpResponse::BadRequest().json(json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                "hate": {"filtered": true, "severity": "high"}}}}})),
        "dep-missing" => azure_error(
            404,
            "DeploymentNotFound",
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
        ),
        "dep-filtered-answer" => HttpResponse::Ok().json(completion("", "content_filter")),
        _ if body["stream"] == true => {
            let include_usage = body["stream_options"]["include_usage"] == true;
            // Azure opens with a chunk that has no choices, only prompt filter results.
            let mut frames = vec![format!(
                "data: {}\n\n",
                json!({"id": "", "object": "", "created": 0, "model": "", "choices": [],
                       "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]})
            )];
            frames.extend(stream_frames("gpt-4o", &format!("You said: {said}"), include_usage));
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .body(frames.concat())
        }
        _ => HttpResponse::Ok().json(completion(&format!("You said: {said}"), "stop")),
    }
}

async fn embeddings(
    req: HttpRequest,
    calls: web::Data<Arc<Mutex<Vec<Recorded>>>>,
    body: web::Bytes,
) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if let Err(resp) = check(&req, &calls, &body) {
        return *resp;
    }
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3, "total_tokens": 3}
    }))
}

/// One model group per Azure deployment name, all on `base`, semantic cache off.
fn config(base: &str, deployments: &[&str], extra_params: &str) -> String {
    let mut s = String::from("model_list:\n");
    for dep in deployments {
        s.push_str(&format!(
            "  - model_name: {dep}\n    litellm_params:\n      model: azure/{dep}\n      api_base: {base}\n      api_key: {KEY}\n      timeout: 5\n{extra_params}"
        ));
    }
    s.push_str("sluice:\n  cache: {enabled: false}\n");
    s
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

async fn read_sse(resp: reqwest::Response) -> (Vec<Value>, bool) {
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
    (chunks, done)
}

#[tokio::test]
async fn chat_uses_deployment_url_version_and_api_key() {
    let fake = FakeAzure::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, &["gpt4o-prod"], ""))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt4o-prod", "messages": user("hello"), "seed": 3}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "You said: hello");
    assert_eq!(
        body["prompt_filter_results"][0]["prompt_index"], 0,
        "Azure extras pass through"
    );
    assert_eq!(body["usage"]["total_tokens"], 13);
    let sent = &fake.calls()[0];
    assert_eq!(sent.path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(sent.query, format!("api-version={API_VERSION}"));
    assert_eq!(sent.api_key.as_deref(), Some(KEY));
    assert_eq!(sent.authorization, None, "no bearer token to Azure");
    assert_eq!(sent.body["seed"], 3);
    assert!(!gw.stderr().contains(KEY));
}

#[tokio::test]
async fn streams_pass_through_with_usage() {
    let fake = FakeAzure::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, &["gpt4o-prod"], ""))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt4o-prod", "messages": user("one two"), "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (chunks, done) = read_sse(resp).await;
    assert!(done);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: one two");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage Sluice asked for is stripped"
    );
    assert_eq!(
        fake.calls()[0].body["stream_options"]["include_usage"],
        true,
        "2024-10-21 accepts stream_options"
    );
}

#[tokio::test]
async fn older_api_versions_get_no_stream_options() {
    let fake = FakeAzure::start();
    let gw = TestGateway::builder()
        .config(config(
            &fake.base,
            &["gpt4o-prod"],
            "      api_version: 2024-06-01\n",
        ))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt4o-prod", "messages": user("x"), "stream": true}),
    )
    .await;
    // The fake only speaks 2024-10-21: the version was sent as configured.
    assert_eq!(resp.status(), 400);
    let sent = &fake.calls()[0];
    assert_eq!(sent.query, "api-version=2024-06-01");
    assert!(sent.body.get("stream_options").is_none());
}

#[tokio::test]
async fn azure_errors_are_mapped() {
    let fake = FakeAzure::start();
    let gw = TestGateway::builder()
        .config(config(
            &fake.base,
            &[
                "dep-429",
                "dep-429-ms",
                "dep-filter",
                "dep-missing",
                "dep-filtered-answer",
            ],
            "",
        ))
        .spawn();
    let call = |model: &'static str| {
        let gw = &gw;
        async move {
            let resp = post_json(
                gw,
                "/v1/chat/completions",
                &json!({"model": model, "messages": user("x")}),
            )
            .await;
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let text = resp.text().await.unwrap();
            assert!(!text.contains(KEY));
            (status, retry, serde_json::from_str::<Value>(&text).unwrap())
        }
    };

    let (status, retry, body) = call("dep-429").await;
    assert_eq!((status, retry.as_deref()), (429, Some("20")));
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "429");

    let (status, retry, _) = call("dep-429-ms").await;
    assert_eq!(
        (status, retry.as_deref()),
        (429, Some("2")),
        "retry-after-ms rounds up"
    );

    let (status, _, body) = call("dep-filter").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "content_filter");
    assert_eq!(body["error"]["param"], "prompt");

    let (status, _, body) = call("dep-missing").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "DeploymentNotFound");

    let (status, _, body) = call("dep-filtered-answer").await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
}

#[tokio::test]
async fn wrong_key_is_an_upstream_auth_failure() {
    let fake = FakeAzure::start();
    let yaml = config(&fake.base, &["gpt4o-prod"], "").replace(KEY, "az-wrong-key-0000");
    let gw = TestGateway::builder().config(yaml).spawn();
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gpt4o-prod", "messages": user("x")}),
    )
    .await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
    assert!(!body.to_string().contains("az-wrong-key-0000"));
}

#[tokio::test]
async fn embeddings_go_to_the_deployment() {
    let fake = FakeAzure::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, &["emb-small"], ""))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "emb-small", "input": "hello", "dimensions": 2}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["embedding"], json!([0.5, -0.25]));
    let sent = &fake.calls()[0];
    assert_eq!(sent.path, "/openai/deployments/emb-small/embeddings");
    assert_eq!(sent.query, format!("api-version={API_VERSION}"));
    assert_eq!(sent.body["dimensions"], 2);
}

#[test]
fn azure_without_api_base_is_rejected_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - model_name: a\n    litellm_params: {model: azure/gpt4o-prod, api_key: k}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check-config")
        .arg(&path)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model_list[0].litellm_params.api_base: required for azure"),
        "{stderr}"
    );
}
