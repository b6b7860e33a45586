//! A fast upstream for benchmarks: canned OpenAI and Anthropic answers, no model, no I/O. A chat
//! request with tools always gets a call of its first tool (for tool-call loop benchmarks).
//! `sluice-mock-upstream --listen 127.0.0.1:9100 [--workers 1] [--delay-ms 0]`.

use actix_web::{web, App, HttpResponse, HttpServer};
use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(about = "Canned OpenAI-compatible upstream for Sluice benchmarks")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Milliseconds each chat answer waits before it is sent (an upstream's latency; the wait
    /// is a timer, so it costs no CPU).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    stream: bool,
    /// With tools, every answer calls the first one (a tool-call loop that never ends by itself).
    #[serde(default)]
    tools: Vec<serde_json::Value>,
    /// Tool results so far number the next call.
    #[serde(default)]
    messages: Vec<serde_json::Value>,
}

impl Probe {
    /// The tool call this request gets, if it has tools: `(call id, function name, arguments)`.
    fn tool_call(&self) -> Option<(String, String, String)> {
        let name = self.tools.first()?.pointer("/function/name")?.as_str()?;
        let step = self
            .messages
            .iter()
            .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("tool"))
            .count();
        Some((
            format!("call_bench_{step}"),
            name.to_string(),
            format!("{{\"step\":{step}}}"),
        ))
    }
}

fn tool_completion(id: &str, name: &str, args: &str) -> String {
    serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": name, "arguments": args}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}})
    .to_string()
}

fn tool_stream(id: &str, name: &str, args: &str) -> String {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let c = serde_json::json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "bench", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut out = chunk(
        serde_json::json!({"role": "assistant", "content": null, "tool_calls": [
            {"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
        serde_json::Value::Null,
    );
    out.push_str(&chunk(
        serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": args}}]}),
        serde_json::Value::Null,
    ));
    out.push_str(&chunk(
        serde_json::json!({}),
        serde_json::json!("tool_calls"),
    ));
    out.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n");
    out.push_str("data: [DONE]\n\n");
    out
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

const STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello from the benchmark upstream.\"},\"finish_reason\":null}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
    "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n",
    "data: [DONE]\n\n"
);

const MESSAGE: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench","content":[{"type":"text","text":"Hello from the benchmark upstream."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":7}}"#;

const MESSAGE_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"bench\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello from the benchmark upstream.\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":7}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
);

const EMBEDDING: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":"bench","usage":{"prompt_tokens":3,"total_tokens":3}}"#;

async fn chat(body: web::Bytes, delay: web::Data<std::time::Duration>) -> HttpResponse {
    if !delay.is_zero() {
        actix_web::rt::time::sleep(**delay).await;
    }
    let probe = serde_json::from_slice::<Probe>(&body).ok();
    let stream = probe.as_ref().is_some_and(|p| p.stream);
    if let Some((id, name, args)) = probe.as_ref().and_then(Probe::tool_call) {
        return if stream {
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .body(tool_stream(&id, &name, &args))
        } else {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(tool_completion(&id, &name, &args))
        };
    }
    if stream {
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(STREAM)
    } else {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(COMPLETION)
    }
}

async fn messages(body: web::Bytes) -> HttpResponse {
    let stream = serde_json::from_slice::<Probe>(&body)
        .map(|p| p.stream)
        .unwrap_or(false);
    if stream {
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(MESSAGE_STREAM)
    } else {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(MESSAGE)
    }
}

async fn embeddings() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(EMBEDDING)
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let delay = web::Data::new(std::time::Duration::from_millis(args.delay_ms));
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(delay.clone())
                .route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/embeddings", web::post().to(embeddings))
                .route("/v1/messages", web::post().to(messages))
        })
        .workers(args.workers)
        .backlog(4096)
        .bind(args.listen)?;
        for a in server.addrs() {
            println!("mock upstream listening on http://{a}");
        }
        server.run().await
    })
}
