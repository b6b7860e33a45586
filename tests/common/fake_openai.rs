//! A fake OpenAI server: real wire format (JSON, SSE, error bodies), behaviour chosen by the
//! requested model name, every call recorded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct Shared {
    pub calls: Mutex<Vec<Recorded>>,
    /// Streams whose response body was dropped before the end (client went away).
    pub streams_cancelled: AtomicUsize,
    pub streams_completed: AtomicUsize,
}

pub struct FakeOpenAi {
    pub base: String,
    pub shared: Arc<Shared>,
    _server: super::fake_server::Running,
}

impl FakeOpenAi {
    pub fn start() -> FakeOpenAi {
        let shared = Arc::new(Shared::default());
        let server = super::fake_server::spawn(shared.clone(), |cfg| {
            cfg.route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/embeddings", web::post().to(embeddings))
                .route("/v1/responses", web::post().to(responses));
        });
        FakeOpenAi {
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

fn record(req: &HttpRequest, shared: &Shared, body: &Value) {
    shared.calls.lock().unwrap().push(Recorded {
        path: req.path().to_string(),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: body.clone(),
    });
}

fn error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).json(json!({
        "error": {"message": message, "type": kind, "param": param, "code": code}
    }))
}

fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

fn completion(model: &str, text: &str) -> Value {
    json!({
        "id": "chatcmpl-fake1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        "service_tier": "default",
        "x_vendor_extra": {"kept": true}
    })
}

fn chunk(model: &str, delta: Value, finish: Value) -> String {
    let c = json!({
        "id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1_700_000_000,
        "model": model, "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
    });
    format!("data: {c}\n\n")
}

/// The SSE frames of a streamed answer, split into words.
pub fn stream_frames(model: &str, text: &str, include_usage: bool) -> Vec<String> {
    let mut frames = vec![chunk(
        model,
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for w in text.split_inclusive(' ') {
        frames.push(chunk(model, json!({"content": w}), Value::Null));
    }
    frames.push(chunk(model, json!({}), json!("stop")));
    if include_usage {
        let u = json!({
            "id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
        });
        frames.push(format!("data: {u}\n\n"));
    }
    frames.push("data: [DONE]\n\n".to_string());
    frames
}

struct StreamGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl StreamGuard {
    fn complete(&mut self) {
        self.done = true;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.done {
            self.shared.streams_completed.fetch_add(1, Ordering::SeqCst);
        } else {
            self.shared.streams_cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn sse(shared: Arc<Shared>, frames: Vec<String>, delay: Duration) -> HttpResponse {
    let guard = StreamGuard {
        shared,
        done: false,
    };
    let stream = futures_util::stream::unfold(
        (frames.into_iter(), guard),
        move |(mut it, mut guard)| async move {
            match it.next() {
                Some(f) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok::<_, actix_web::Error>(Bytes::from(f)), (it, guard)))
                }
                None => {
                    guard.complete();
                    None
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(stream)
}

async fn chat(req: HttpRequest, shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&req, &shared, &body);
    let model = body["model"].as_str().unwrap_or("").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let text = format!("You said: {}", last_user(&body));
    // fake-flaky-N: HTTP 500 for the first N calls to this model name, then normal answers.
    if let Some(n) = model
        .strip_prefix("fake-flaky-")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let seen = shared
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.body["model"] == model.as_str())
            .count();
        if seen <= n {
            return error(
                500,
                "The server had an error while processing your request.",
                "server_error",
                None,
                None,
            );
        }
    }
    // fake-429-once: the first call is rate limited the way OpenAI does it (retry-after-ms and
    // x-ratelimit-* headers), later calls answer.
    if model == "fake-429-once" {
        let seen = shared
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.body["model"] == model.as_str())
            .count();
        if seen <= 1 {
            return HttpResponse::TooManyRequests()
                .insert_header(("retry-after-ms", "300"))
                .insert_header(("x-ratelimit-limit-requests", "60"))
                .insert_header(("x-ratelimit-remaining-requests", "0"))
                .insert_header(("x-ratelimit-reset-requests", "300ms"))
                .json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}));
        }
    }
    // fake-delay-MS: answers after MS milliseconds.
    if let Some(ms) = model
        .strip_prefix("fake-delay-")
        .and_then(|n| n.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match model.as_str() {
        "fake-ctx" => error(400, "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", "invalid_request_error", Some("messages"), Some("context_length_exceeded")),
        "fake-content" => error(400, "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "invalid_request_error", Some("prompt"), Some("content_filter")),
        "fake-empty-stream" => HttpResponse::Ok().content_type("text/event-stream").body(""),
        "fake-400" => error(400, "Invalid value for 'temperature': must be <= 2.", "invalid_request_error", Some("temperature"), Some("invalid_value")),
        "fake-401" => error(401, "Incorrect API key provided: sk-upstream-secret.", "invalid_request_error", None, Some("invalid_api_key")),
        "fake-429" => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "7"))
            .json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        "fake-500" => error(500, "The server had an error while processing your request.", "server_error", None, None),
        "fake-html" => HttpResponse::BadGateway().content_type("text/html").body("<html>bad gateway</html>"),
        "fake-garbage" => HttpResponse::Ok().content_type("application/json").body("this is not json"),
        "fake-slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            HttpResponse::Ok().json(completion(&model, &text))
        }
        "fake-slow-stream" => sse(
            shared.into_inner(),
            stream_frames(&model, &"tick ".repeat(40), include_usage),
            Duration::from_millis(100),
        ),
        "fake-tool" => tool_turn(shared.into_inner(), &model, &body, stream, include_usage),
        "fake-broken-stream" => {
            // Two chunks, then the connection just ends (no finish, no [DONE]).
            let frames = stream_frames(&model, "partial answer here", false);
            sse(shared.into_inner(), frames[..2].to_vec(), Duration::ZERO)
        }
        _ if stream => sse(
            shared.into_inner(),
            stream_frames(&model, &text, include_usage),
            Duration::from_millis(5),
        ),
        _ => HttpResponse::Ok().json(completion(&model, &text)),
    }
}

async fn embeddings(req: HttpRequest, shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&req, &shared, &body);
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.25, -0.5, 0.75]}],
        "model": body["model"],
        "usage": {"prompt_tokens": 2, "total_tokens": 2}
    }))
}

/// `fake-tool`: with tools and no tool result yet, calls the first tool with
/// `{"q": <last user message>}`; after a tool result, answers `Tool said: <result>`.
fn tool_turn(
    shared: Arc<Shared>,
    model: &str,
    body: &Value,
    stream: bool,
    include_usage: bool,
) -> HttpResponse {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let tool = body["tools"][0]["function"]["name"].as_str();
    let (Some(name), false) = (tool, last["role"] == "tool") else {
        let text = format!("Tool said: {}", last["content"].as_str().unwrap_or(""));
        return if stream {
            sse(
                shared,
                stream_frames(model, &text, include_usage),
                Duration::ZERO,
            )
        } else {
            HttpResponse::Ok().json(completion(model, &text))
        };
    };
    let args = json!({"q": last_user(body)}).to_string();
    if !stream {
        let mut c = completion(model, "");
        c["choices"][0]["message"] = json!({"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_fake1", "type": "function", "function": {"name": name, "arguments": args}}]});
        c["choices"][0]["finish_reason"] = json!("tool_calls");
        return HttpResponse::Ok().json(c);
    }
    let (a, b) = args.split_at(args.len() / 2);
    let mut frames = vec![
        chunk(
            model,
            json!({"role": "assistant", "content": null}),
            Value::Null,
        ),
        chunk(
            model,
            json!({"tool_calls": [{"index": 0, "id": "call_fake1", "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ),
    ];
    for piece in [a, b] {
        frames.push(chunk(
            model,
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            Value::Null,
        ));
    }
    frames.push(chunk(model, json!({}), json!("tool_calls")));
    if include_usage {
        let u = json!({"id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": model, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}});
        frames.push(format!("data: {u}\n\n"));
    }
    frames.push("data: [DONE]\n\n".to_string());
    sse(shared, frames, Duration::ZERO)
}

/// The text of the last user input of a Responses body.
fn last_input_text(body: &Value) -> String {
    if let Some(s) = body["input"].as_str() {
        return s.to_string();
    }
    let items = body["input"].as_array().cloned().unwrap_or_default();
    let Some(item) = items.iter().rev().find(|i| i["role"] == "user") else {
        return String::new();
    };
    match &item["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// `POST /v1/responses`: a native Responses server answering `You said: <last input>`.
async fn responses(req: HttpRequest, shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    record(&req, &shared, &body);
    let n = shared.calls.lock().unwrap().len();
    let text = format!("You said: {}", last_input_text(&body));
    let id = format!("resp_fake{n}");
    let msg_id = format!("msg_fake{n}");
    let shell = json!({"id": id, "object": "response", "created_at": 1_700_000_000, "status": "in_progress",
        "model": body["model"], "output": [], "previous_response_id": body["previous_response_id"],
        "store": body["store"], "usage": null});
    let mut done = shell.clone();
    done["status"] = json!("completed");
    done["output"] = json!([{"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}]);
    done["usage"] = json!({"input_tokens": 11, "output_tokens": 5, "total_tokens": 16});
    if !body["stream"].as_bool().unwrap_or(false) {
        return HttpResponse::Ok().json(done);
    }
    let mut events = vec![
        json!({"type": "response.created", "response": shell}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []}}),
    ];
    for w in text.split_inclusive(' ') {
        events.push(json!({"type": "response.output_text.delta", "item_id": msg_id, "output_index": 0, "content_index": 0, "delta": w}));
    }
    events.push(json!({"type": "response.completed", "response": done}));
    let frames = events
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e["sequence_number"] = json!(i);
            format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())
        })
        .collect();
    sse(shared.into_inner(), frames, Duration::ZERO)
}
