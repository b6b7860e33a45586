//! Entry points for the `cargo fuzz` targets in `fuzz/` (issue 7), hidden from the docs.
//!
//! Each function runs, on untrusted bytes, the crate code the server runs on them, in the
//! server's order, reaching items that are crate-private (the Anthropic and Gemini adapters,
//! the `/v1/messages` translations). It only wires calls together: no parsing or translation
//! is re-implemented here, and the server never calls into this module.

use crate::providers::anthropic::stream::{openai_sse, ChunkTranslator};
use crate::providers::anthropic::wire::MessagesRequest;
use crate::providers::anthropic::{inbound, inbound_stream, outbound};
use crate::providers::gemini::stream::Translator;
use crate::providers::gemini::translate::{self as gemini, Meta};
use crate::providers::UpstreamError;
use crate::wire::ChatRequest;
use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use serde_json::Value;
use std::convert::Infallible;

/// Polls a stream whose items are all ready (the input is in memory) until it ends or would
/// wait.
pub fn drain<S: Stream>(s: S) -> Vec<S::Item> {
    let mut s = std::pin::pin!(s);
    let mut out = Vec::new();
    while let Some(Some(item)) = s.next().now_or_never() {
        out.push(item);
    }
    out
}

/// `chunks` as an upstream body stream that never fails.
fn body(chunks: Vec<Bytes>) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + Unpin {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

/// The cache controls a body's `cache` field asks for (no headers), as every handler reads
/// them before the pipeline.
pub fn cache_controls(body_cache: Option<&Value>) -> Result<(), String> {
    crate::cache::control::parse(&HeaderMap::new(), body_cache)
        .map(drop)
        .map_err(|e| e.message)
}

/// `POST /v1/chat/completions` up to the pipeline, as `api::chat` does it: parse the body,
/// validate it, read the cache controls.
pub fn chat_request(body: &[u8]) -> Result<ChatRequest, String> {
    let chat: ChatRequest = crate::wire::parse_json(body).map_err(|e| e.message)?;
    chat.validate().map_err(|e| e.message)?;
    cache_controls(chat.cache.as_ref())?;
    Ok(chat)
}

/// `POST /v1/messages` up to the pipeline, as `api::messages` does it: parse the body, read the
/// cache controls, translate to a chat request, validate it.
pub fn messages_request(body: &[u8]) -> Result<ChatRequest, String> {
    let req: MessagesRequest = crate::wire::parse_json(body).map_err(|e| e.message)?;
    cache_controls(req.extra.get("cache"))?;
    let chat = inbound::to_chat_request(req).map_err(|e| e.message)?;
    chat.validate().map_err(|e| e.message)?;
    Ok(chat)
}

/// The bodies the Anthropic and Gemini adapters would send for `req` (non-stream and stream),
/// serialized as they are on the wire; `Err` where the adapter refuses the request.
pub fn upstream_requests(req: &ChatRequest) -> Vec<Result<Vec<u8>, String>> {
    let mut out = Vec::new();
    for stream in [false, true] {
        out.push(
            outbound::to_messages_request(req, "claude-fuzz", stream)
                .map_err(|e| e.message)
                .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string())),
        );
    }
    out.push(gemini::request(req).and_then(|g| serde_json::to_vec(&g).map_err(|e| e.to_string())));
    out
}

/// An Anthropic upstream SSE body, split into `chunks`, through the Anthropic adapter's stream
/// translator: the chat SSE frames, or the error that ended the stream.
pub fn anthropic_upstream(chunks: Vec<Bytes>, include_usage: bool) -> Vec<Result<Bytes, String>> {
    let translator = ChunkTranslator::new("claude-fuzz", 0, include_usage);
    let fault = |f: crate::providers::anthropic::stream::StreamFault| UpstreamError::Protocol {
        deployment: "fuzz".into(),
        detail: f.to_string(),
    };
    let s = openai_sse(body(chunks), translator, |e: Infallible| match e {}, fault);
    drain(s)
        .into_iter()
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

/// A Gemini `streamGenerateContent?alt=sse` body, split into `chunks`, through the Gemini
/// adapter's translator (push per chunk, then finish, stopping at the first error as the
/// adapter does): the chat SSE bytes, or why the stream broke.
pub fn gemini_upstream(chunks: Vec<Bytes>, include_usage: bool) -> Vec<Result<Bytes, String>> {
    let meta = Meta {
        id: "chatcmpl-fuzz".into(),
        created: 0,
        model: "gemini-fuzz".into(),
        call_prefix: "fuzz".into(),
    };
    let mut translator = Translator::new(meta, include_usage);
    let mut out = Vec::new();
    for chunk in chunks {
        match translator.push(&chunk) {
            Ok(b) if b.is_empty() => {}
            Ok(b) => out.push(Ok(b)),
            Err(e) => {
                out.push(Err(format!("{e:?}")));
                return out;
            }
        }
    }
    out.push(translator.finish().map_err(|e| format!("{e:?}")));
    out
}

/// Chat SSE, split into `chunks`, re-encoded as the `/v1/messages` stream Anthropic clients
/// receive.
pub fn anthropic_events(chunks: Vec<Bytes>) -> Vec<Bytes> {
    drain(inbound_stream::anthropic_sse(body(chunks)))
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// A chat completion as the `/v1/messages` (non-stream) answer.
pub fn anthropic_message(completion: &Value) -> Option<Vec<u8>> {
    serde_json::to_vec(&inbound::to_message(completion)).ok()
}
