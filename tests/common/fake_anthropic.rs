//! A fake Anthropic server: the real Messages wire format (message objects, SSE events with
//! `event:` lines and pings, `{"type":"error"}` bodies, rate-limit headers), behaviour chosen
//! by the requested model name, every call recorded with its headers.
//!
//! Models: `claude-400` (invalid_request_error), `claude-401` (authentication_error that echoes
//! the key), `claude-429` (rate limited, `retry-after: 13`), `claude-529` (overloaded),
//! `claude-500` (api_error), `claude-stream-error` (an `error` event mid-stream); any other
//! model answers `You said: <last user text>`, or calls a tool when the request has tools and
//! the user asks for one (`... use the tool ...` or the tool's name), or reports a tool result.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The key the fake accepts.
pub const KEY: &str = "sk-ant-fake-upstream-secret";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub api_key: Option<String>,
    pub version: Option<String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct Shared {
    pub calls: Mutex<Vec<Recorded>>,
}

pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT` (no `/v1`).
    pub base: String,
    pub shared: Arc<Shared>,
    _server: super::fake_server::Running,
}

impl FakeAnthropic {
    pub fn start() -> FakeAnthropic {
        let shared = Arc::new(Shared::default());
        let server = super::fake_server::spawn(shared.clone(), |cfg| {
            cfg.route("/v1/messages", web::post().to(messages));
        });
        FakeAnthropic {
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

/// An Anthropic error response.
pub fn error(status: u16, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap())
        .insert_header(("request-id", "req_fake01"))
        .json(json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// Text of a message's content (string or text blocks).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Tool results in the last user message, as `(tool_use_id, text)`.
fn tool_results(body: &Value) -> Vec<(String, String)> {
    let Some(last) = body["messages"].as_array().and_then(|m| m.last()) else {
        return Vec::new();
    };
    last["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "tool_result")
                .map(|b| {
                    (
                        b["tool_use_id"].as_str().unwrap_or("").to_string(),
                        text_of(&b["content"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn last_user(body: &Value) -> String {
    body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default()
}

/// What the fake answers: text, and maybe one tool call `(id, name, input)`.
struct Answer {
    text: String,
    tool: Option<(String, String, Value)>,
}

fn answer(body: &Value) -> Answer {
    let results = tool_results(body);
    if !results.is_empty() {
        let said: Vec<String> = results.iter().map(|(id, t)| format!("{id}={t}")).collect();
        return Answer {
            text: format!("Tool said: {}", said.join(", ")),
            tool: None,
        };
    }
    let user = last_user(body);
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let wanted = tools.iter().find(|name| user.contains(*name)).or_else(|| {
        user.contains("use the tool")
            .then(|| tools.first())
            .flatten()
    });
    let forbidden = body["tool_choice"]["type"] == "none";
    match wanted {
        Some(name) if !forbidden => Answer {
            text: "Let me check.".into(),
            tool: Some((
                "toolu_01FakeToolCall".into(),
                name.to_string(),
                json!({"location": "Paris, France", "unit": "celsius"}),
            )),
        },
        _ => Answer {
            text: format!("You said: {user}"),
            tool: None,
        },
    }
}

const INPUT_TOKENS: u64 = 21;
const OUTPUT_TOKENS: u64 = 9;

fn message(model: &str, a: &Answer) -> Value {
    let mut content = vec![json!({"type": "text", "text": a.text})];
    if let Some((id, name, input)) = &a.tool {
        content.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
    }
    json!({
        "id": "msg_01FakeMessage",
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": if a.tool.is_some() { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": OUTPUT_TOKENS
        }
    })
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The SSE events of a streamed answer; text split into words, tool input into pieces.
pub fn stream_events(model: &str, text: &str, tool: Option<(&str, &str, &Value)>) -> Vec<String> {
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_01FakeStream", "type": "message", "role": "assistant", "content": [],
            "model": model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": INPUT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}
        }}),
    )];
    out.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    out.push(event("ping", json!({"type": "ping"})));
    for w in text.split_inclusive(' ') {
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    out.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    if let Some((id, name, input)) = tool {
        out.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        let json = input.to_string();
        let mid = json.len() / 2;
        for piece in ["", &json[..mid], &json[mid..]] {
            out.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        out.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 1}),
        ));
    }
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    out.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": OUTPUT_TOKENS}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

fn sse(frames: Vec<String>, delay: Duration) -> HttpResponse {
    let stream = futures_util::stream::unfold(frames.into_iter(), move |mut it| async move {
        let f = it.next()?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, actix_web::Error>(Bytes::from(f)), it))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream; charset=utf-8")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("request-id", "req_fake01"))
        .streaming(stream)
}

async fn messages(req: HttpRequest, shared: web::Data<Shared>, raw: web::Bytes) -> HttpResponse {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    shared.calls.lock().unwrap().push(Recorded {
        path: req.path().to_string(),
        api_key: header(&req, "x-api-key"),
        version: header(&req, "anthropic-version"),
        content_type: header(&req, "content-type"),
        authorization: header(&req, "authorization"),
        body: body.clone(),
    });
    let key = header(&req, "x-api-key");
    if key.is_none() {
        return error(401, "authentication_error", "x-api-key header is required");
    }
    if key.as_deref() != Some(KEY) {
        return error(401, "authentication_error", "invalid x-api-key");
    }
    if header(&req, "anthropic-version").is_none() {
        return error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
    }
    if body.is_null() {
        return error(
            400,
            "invalid_request_error",
            "There was an error parsing the body",
        );
    }
    if !body["max_tokens"].is_u64() {
        return error(400, "invalid_request_error", "max_tokens: Field required");
    }
    if body["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return error(400, "invalid_request_error", "messages: Field required");
    }
    let model = body["model"].as_str().unwrap_or("").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    match model.as_str() {
        "claude-400" => error(
            400,
            "invalid_request_error",
            "temperature: Input should be less than or equal to 1",
        ),
        "claude-401" => error(
            401,
            "authentication_error",
            &format!("invalid x-api-key: {KEY}"),
        ),
        "claude-429" => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "13"))
            .insert_header(("anthropic-ratelimit-requests-limit", "50"))
            .insert_header(("anthropic-ratelimit-requests-remaining", "0"))
            .insert_header(("anthropic-ratelimit-requests-reset", "2030-01-01T00:00:13Z"))
            .insert_header(("request-id", "req_fake01"))
            .json(json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit"}})),
        "claude-529" => error(529, "overloaded_error", "Overloaded"),
        "claude-500" => error(500, "api_error", "Internal server error"),
        "claude-stream-error" if stream => {
            let mut frames = stream_events(&model, "partial answer here", None);
            frames.truncate(4); // message_start, block start, ping, first word
            frames.push(event(
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ));
            sse(frames, Duration::from_millis(2))
        }
        _ => {
            let a = answer(&body);
            if stream {
                let tool = a.tool.as_ref().map(|(i, n, v)| (i.as_str(), n.as_str(), v));
                sse(
                    stream_events(&model, &a.text, tool),
                    Duration::from_millis(2),
                )
            } else {
                HttpResponse::Ok()
                    .insert_header(("request-id", "req_fake01"))
                    .json(message(&model, &a))
            }
        }
    }
}
