//! The built-in mock provider: deterministic, clearly labelled answers with configurable
//! latency, so the gateway works (and can be load-tested) without any API key.

use super::{Adapter, ChunkStream, Completion, UpstreamError};
use crate::config::Deployment;
use crate::stream::{sse_data, SSE_DONE};
use crate::wire::{ChatRequest, EmbeddingsRequest, Usage};
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// Default width of mock embeddings.
const MOCK_EMBEDDING_DIMS: usize = 256;
/// Longest echo of the user's message in a mock answer.
const MAX_ECHO_CHARS: usize = 2000;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Rough token count (about four characters a token), enough for a mock.
fn approx_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn answer(d: &Deployment, req: &ChatRequest) -> String {
    if let Some(fixed) = &d.mock.response {
        return fixed.clone();
    }
    let said: String = req
        .last_user_text()
        .unwrap_or_default()
        .chars()
        .take(MAX_ECHO_CHARS)
        .collect();
    format!(
        "[sluice mock {}] This is a mock answer, not a real model. You said: {said}",
        d.upstream_model
    )
}

fn usage(req: &ChatRequest, text: &str) -> Usage {
    let prompt: u64 = req
        .messages
        .iter()
        .map(|m| 4 + m.content.as_ref().map_or(0, |c| approx_tokens(&c.text())))
        .sum();
    let completion = approx_tokens(text);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
    }
}

fn completion_id() -> String {
    format!("chatcmpl-mock{}", uuid::Uuid::new_v4().simple())
}

/// Non-streaming mock answer.
async fn complete(d: &Deployment, req: &ChatRequest) -> Result<Completion, UpstreamError> {
    if !d.mock.latency.is_zero() {
        tokio::time::sleep(d.mock.latency).await;
    }
    let text = answer(d, req);
    let usage = usage(req, &text);
    let body = json!({
        "id": completion_id(),
        "object": "chat.completion",
        "created": now(),
        "model": d.upstream_model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": usage,
        "system_fingerprint": "sluice-mock"
    });
    Ok(Completion {
        body: Bytes::from(body.to_string()),
        usage,
    })
}

/// Splits text into word-sized pieces that concatenate back to it exactly.
fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start {
            out.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Streaming mock answer: role chunk, one chunk per word, finish chunk, usage, `[DONE]`.
fn stream(d: &Deployment, req: &ChatRequest, include_usage: bool) -> ChunkStream {
    let text = answer(d, req);
    let usage = usage(req, &text);
    let id = completion_id();
    let created = now();
    let model = d.upstream_model.clone();
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "sluice-mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for p in pieces(&text) {
        events.push(chunk(json!({"content": p}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": "sluice-mock", "choices": [], "usage": usage
        }));
    }
    let mut frames: Vec<Bytes> = events.iter().map(sse_data).collect();
    frames.push(Bytes::from_static(SSE_DONE));
    let latency = d.mock.latency;
    let delay = d.mock.chunk_delay;
    Box::pin(futures_util::stream::unfold(
        (frames.into_iter(), true),
        move |(mut it, first)| async move {
            let frame = it.next()?;
            let wait = if first { latency } else { delay };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Some((Ok(frame), (it, false)))
        },
    ))
}

/// A deterministic unit vector derived from the text.
fn mock_vector(text: &str, dims: usize) -> Vec<f32> {
    let mut reader = blake3::Hasher::new().update(text.as_bytes()).finalize_xof();
    let mut raw = vec![0u8; dims * 2];
    reader.fill(&mut raw);
    let mut v: Vec<f32> = raw
        .chunks_exact(2)
        .map(|b| f32::from(u16::from_le_bytes([b[0], b[1]])) / 32768.0 - 1.0)
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Mock embeddings: deterministic vectors (`dimensions` honoured), OpenAI's response shape.
async fn embed(d: &Deployment, req: &EmbeddingsRequest) -> Result<Completion, UpstreamError> {
    if !d.mock.latency.is_zero() {
        tokio::time::sleep(d.mock.latency).await;
    }
    let dims = req
        .extra
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(MOCK_EMBEDDING_DIMS, |n| n.clamp(1, 4096) as usize);
    let inputs = req.inputs();
    let tokens: u64 = inputs.iter().map(|s| approx_tokens(s)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"object": "embedding", "index": i, "embedding": mock_vector(s, dims)}))
        .collect();
    let usage = Usage {
        prompt_tokens: tokens,
        completion_tokens: 0,
        total_tokens: tokens,
    };
    let body = json!({
        "object": "list",
        "data": data,
        "model": d.upstream_model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    });
    Ok(Completion {
        body: Bytes::from(body.to_string()),
        usage,
    })
}

/// The built-in mock provider.
pub(super) struct Mock;

impl Adapter for Mock {
    async fn chat(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
    ) -> Result<Completion, UpstreamError> {
        complete(d, req).await
    }

    async fn chat_stream(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
        force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError> {
        Ok(stream(d, req, force_usage))
    }

    async fn embeddings(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        req: &EmbeddingsRequest,
    ) -> Result<Completion, UpstreamError> {
        embed(d, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_rebuild_the_text() {
        for t in ["hello big world", " lead", "one", "", "a  b"] {
            assert_eq!(pieces(t).concat(), t);
        }
    }

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = mock_vector("x", 64);
        assert_eq!(a, mock_vector("x", 64));
        assert_ne!(a, mock_vector("y", 64));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
}
