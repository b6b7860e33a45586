//! A fake Gemini API server: the real wire format (`GenerateContentResponse` JSON, `alt=sse`
//! frames ending in `\r\n\r\n`, Google error bodies with typed `details`), behaviour chosen by
//! the model in the URL, every call recorded with its headers.
//!
//! Key: `x-goog-api-key` must be [`KEY`]; a missing key gets Google's 403 PERMISSION_DENIED,
//! a wrong one 400 INVALID_ARGUMENT with reason `API_KEY_INVALID`, as the real API answers.
//!
//! Models: `gem-safety` (answer stopped with `SAFETY`), `gem-blocked` (prompt blocked, no
//! candidates), `gem-429` (RESOURCE_EXHAUSTED with a `RetryInfo` of 20s, no header),
//! `gem-400` (INVALID_ARGUMENT whose message echoes the key), `gem-500` (INTERNAL),
//! `gem-broken-stream` (two frames, then the connection ends without a finish reason),
//! `gem-stream-error` (an error object mid-stream). Any other model answers
//! `You said: <last user text>`, calls the first declared function when the request has tools
//! and the user mentions `weather` (signed with [`THOUGHT_SIGNATURE`]), and reports a
//! `functionResponse` it is given.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key the fake accepts.
pub const KEY: &str = "AIza-fake-gemini-upstream-secret";
/// The signature the fake puts on its function calls (thinking models do).
pub const THOUGHT_SIGNATURE: &str = "CiQB0e2Kb8fakeSignature+/=";
/// What every embedding starts with (truncated to `outputDimensionality`).
pub const EMBEDDING: [f64; 4] = [0.25, -0.5, 0.75, 0.125];

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Path without the query.
    pub path: String,
    /// Query string (`alt=sse`).
    pub query: String,
    /// `x-goog-api-key`.
    pub api_key: Option<String>,
    /// `authorization`, which must never be sent.
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct Shared {
    pub calls: Mutex<Vec<Recorded>>,
}

pub struct FakeGemini {
    /// `http://127.0.0.1:PORT` (no `/v1beta`).
    pub base: String,
    pub shared: Arc<Shared>,
    _server: super::fake_server::Running,
}

impl FakeGemini {
    pub fn start() -> FakeGemini {
        let shared = Arc::new(Shared::default());
        let server = super::fake_server::spawn(shared.clone(), |cfg| {
            cfg.route("/v1beta/models/{call}", web::post().to(models));
        });
        FakeGemini {
            base: server.base.clone(),
            shared,
            _server: server,
        }
    }

    pub fn calls(&self) -> Vec<Recorded> {
        self.shared.calls.lock().unwrap().clone()
    }

    pub fn call_count(&self) -> usize {
        self.shared.calls.lock().unwrap().len()
    }
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// A Google error body.
pub fn error(status: u16, message: &str, code_name: &str, details: Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap()).json(json!({
        "error": {"code": status, "message": message, "status": code_name, "details": details}
    }))
}

fn last_user_text(body: &Value) -> String {
    body["contents"]
        .as_array()
        .and_then(|c| c.iter().rev().find(|c| c["role"] == "user"))
        .and_then(|c| c["parts"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn function_response(body: &Value) -> Option<Value> {
    body["contents"]
        .as_array()?
        .last()?
        .get("parts")?
        .as_array()?
        .iter()
        .find_map(|p| p.get("functionResponse").cloned())
}

fn first_function(body: &Value) -> Option<String> {
    body["tools"][0]["functionDeclarations"][0]["name"]
        .as_str()
        .map(String::from)
}

fn usage(candidates: u64) -> Value {
    json!({"promptTokenCount": 7, "candidatesTokenCount": candidates,
           "totalTokenCount": 7 + candidates})
}

/// What the fake model says: parts for one candidate.
fn answer_parts(body: &Value) -> Vec<Value> {
    if let Some(fr) = function_response(body) {
        return vec![
            json!({"text": format!("Tool {} said {}", fr["name"].as_str().unwrap_or(""), fr["response"])}),
        ];
    }
    let said = last_user_text(body);
    if let Some(f) = first_function(body).filter(|_| said.contains("weather")) {
        return vec![
            json!({"functionCall": {"name": f, "args": {"city": "Paris"}},
                           "thoughtSignature": THOUGHT_SIGNATURE}),
        ];
    }
    vec![json!({"text": format!("You said: {said}")})]
}

fn candidate(parts: Vec<Value>, finish: Option<&str>) -> Value {
    let mut c = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        c["finishReason"] = json!(f);
    }
    c
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\r\n\r\n"))
}

fn sse(frames: Vec<Bytes>) -> HttpResponse {
    let stream = futures_util::stream::unfold(frames.into_iter(), |mut it| async move {
        let f = it.next()?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Some((Ok::<_, actix_web::Error>(f), it))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(stream)
}

/// The frames of a normal streamed answer: text word by word, function calls whole.
fn answer_frames(model: &str, body: &Value) -> Vec<Bytes> {
    let parts = answer_parts(body);
    let mut out = Vec::new();
    let texts: Vec<String> = parts
        .iter()
        .filter_map(|p| p["text"].as_str())
        .flat_map(|t| t.split_inclusive(' ').map(String::from).collect::<Vec<_>>())
        .collect();
    let calls: Vec<Value> = parts
        .iter()
        .filter(|p| p.get("functionCall").is_some())
        .cloned()
        .collect();
    for w in &texts {
        out.push(
            json!({"candidates": [candidate(vec![json!({"text": w})], None)],
                        "modelVersion": model, "responseId": "fakeResp1"}),
        );
    }
    let n = texts.len() as u64 + calls.len() as u64;
    let mut last = json!({"candidates": [candidate(calls, Some("STOP"))],
                          "usageMetadata": usage(n), "modelVersion": model, "responseId": "fakeResp1"});
    if last["candidates"][0]["content"]["parts"] == json!([]) {
        // Gemini's last text frame usually carries an empty text part with the finish reason.
        last["candidates"][0]["content"]["parts"] = json!([{"text": ""}]);
    }
    out.push(last);
    out.iter().map(frame).collect()
}

async fn models(req: HttpRequest, shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.calls.lock().unwrap().push(Recorded {
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        api_key: header(&req, "x-goog-api-key"),
        authorization: header(&req, "authorization"),
        body: body.clone(),
    });
    match header(&req, "x-goog-api-key").as_deref() {
        None => {
            return error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
                "PERMISSION_DENIED",
                json!([]),
            )
        }
        Some(KEY) => {}
        Some(_) => {
            return error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]),
            )
        }
    }
    let call = req.match_info().get("call").unwrap_or("").to_string();
    let Some((model, method)) = call.split_once(':') else {
        return error(404, "not found", "NOT_FOUND", json!([]));
    };
    match (method, model) {
        ("batchEmbedContents", _) => embed(model, &body),
        (_, "gem-429") => error(
            429,
            "Resource has been exhausted (e.g. check quota).",
            "RESOURCE_EXHAUSTED",
            json!([
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                    {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}
            ]),
        ),
        (_, "gem-400") => error(
            400,
            &format!("Invalid value at 'generation_config.temperature' for key {KEY}"),
            "INVALID_ARGUMENT",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                {"field": "generation_config.temperature", "description": "Invalid value"}]}]),
        ),
        (_, "gem-500") => error(
            500,
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
            "INTERNAL",
            json!([]),
        ),
        ("generateContent", _) => generate(model, &body),
        ("streamGenerateContent", _) if req.query_string() == "alt=sse" => stream(model, &body),
        _ => error(
            400,
            &format!("unknown method {method} (query {})", req.query_string()),
            "INVALID_ARGUMENT",
            json!([]),
        ),
    }
}

fn generate(model: &str, body: &Value) -> HttpResponse {
    match model {
        "gem-safety" => HttpResponse::Ok().json(json!({
            "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true}]}],
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": model
        })),
        "gem-blocked" => HttpResponse::Ok().json(json!({
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": model
        })),
        _ => {
            let parts = answer_parts(body);
            HttpResponse::Ok().json(json!({
                "candidates": [candidate(parts, Some("STOP"))],
                "usageMetadata": usage(5),
                "modelVersion": model,
                "responseId": "fakeResp1"
            }))
        }
    }
}

fn stream(model: &str, body: &Value) -> HttpResponse {
    match model {
        "gem-broken-stream" => {
            let frames = answer_frames(model, body);
            sse(frames[..2.min(frames.len() - 1)].to_vec())
        }
        "gem-stream-error" => {
            let mut frames = answer_frames(model, body);
            frames.truncate(1);
            frames.push(frame(&json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})));
            sse(frames)
        }
        "gem-safety" => sse(vec![
            frame(
                &json!({"candidates": [candidate(vec![json!({"text": "Here is how"})], None)], "modelVersion": model}),
            ),
            frame(
                &json!({"candidates": [{"finishReason": "SAFETY", "index": 0}], "usageMetadata": usage(3), "modelVersion": model}),
            ),
        ]),
        "gem-blocked" => sse(vec![frame(&json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
            "modelVersion": model
        }))]),
        _ => sse(answer_frames(model, body)),
    }
}

fn embed(model: &str, body: &Value) -> HttpResponse {
    let Some(requests) = body["requests"].as_array() else {
        return error(400, "requests is required", "INVALID_ARGUMENT", json!([]));
    };
    let mut out = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if r["model"] != format!("models/{model}") {
            return error(
                400,
                &format!("requests[{i}].model must be models/{model}"),
                "INVALID_ARGUMENT",
                json!([]),
            );
        }
        if r["content"]["parts"][0]["text"].as_str().is_none() {
            return error(400, "content is required", "INVALID_ARGUMENT", json!([]));
        }
        let dims = r["outputDimensionality"].as_u64().unwrap_or(4) as usize;
        out.push(json!({"values": EMBEDDING[..dims.min(4)].to_vec()}));
    }
    HttpResponse::Ok().json(json!({ "embeddings": out }))
}
