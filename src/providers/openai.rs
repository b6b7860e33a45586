//! OpenAI and OpenAI-compatible servers: the request is already in their format, so bodies
//! pass through and only the model name and authentication change.
//!
//! The body builders, `post_json`/`post_stream` and the error reading take an [`Endpoint`]
//! (URL + key placement), so Azure reuses them with its own URLs and `api-key` header.

use super::{label, Adapter, ChunkStream, Completion, ProviderKind, StatusError, UpstreamError};
use crate::config::Deployment;
use crate::wire::{ChatRequest, EmbeddingsRequest, StreamOptions, UsageOnly};
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::Deserialize;
use std::time::Duration;

const DEFAULT_BASE: &str = "https://api.openai.com/v1";
/// Upstream error bodies are read up to this size; the rest is not needed to explain the error.
pub(super) const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the deployment's key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    /// `Authorization: Bearer <key>` (plus `OpenAI-Organization` when configured).
    Bearer,
    /// The key alone in the named header (Azure's `api-key`).
    Header(&'static str),
}

/// Where an OpenAI-shaped request goes: the full URL and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// Full URL, query included.
    pub url: String,
    /// Key placement.
    pub auth: Auth,
}

/// The endpoint of an OpenAI or OpenAI-compatible server: `{api_base}{path}`, bearer key.
fn endpoint(d: &Deployment, path: &str) -> Endpoint {
    Endpoint {
        url: format!("{}{path}", d.api_base.as_deref().unwrap_or(DEFAULT_BASE)),
        auth: Auth::Bearer,
    }
}

fn request(
    client: &reqwest::Client,
    d: &Deployment,
    ep: &Endpoint,
    body: Vec<u8>,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    let mut rb = client
        .post(&ep.url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .timeout(timeout)
        .body(body);
    match ep.auth {
        Auth::Bearer => {
            if let Some(key) = &d.api_key {
                rb = rb.bearer_auth(key.expose());
            }
            if let Some(org) = &d.organization {
                rb = rb.header("OpenAI-Organization", org);
            }
        }
        Auth::Header(name) => {
            if let Some(key) = &d.api_key {
                rb = rb.header(name, key.expose());
            }
        }
    }
    rb
}

/// Maps a transport error to the deployment's error, without the URL.
pub(super) fn transport_error(
    d: &Deployment,
    e: reqwest::Error,
    timeout: Duration,
) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout {
            deployment: label(d),
            after: timeout,
        }
    } else {
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        UpstreamError::Connect {
            deployment: label(d),
            detail,
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Turns a non-2xx upstream response into an error that says why.
pub(super) async fn status_error(d: &Deployment, resp: reqwest::Response) -> UpstreamError {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = read_capped(resp, MAX_ERROR_BODY).await;
    let redact = |s: String| match &d.api_key {
        Some(k) => k.redact(&s),
        None => s,
    };
    let (message, kind, param, code) = match serde_json::from_slice::<ErrorEnvelope>(&body) {
        Ok(env) => (
            env.error
                .message
                .unwrap_or_else(|| "no message".to_string()),
            env.error.kind,
            env.error.param,
            env.error.code.map(|c| match c {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let text = if text.is_empty() {
                "empty body".to_string()
            } else {
                text.chars().take(500).collect()
            };
            (text, None, None, None)
        }
    };
    UpstreamError::Status(Box::new(StatusError {
        deployment: label(d),
        status,
        message: redact(message),
        // Every field is relayed to the client: an upstream may echo the key in any of them.
        kind: kind.map(redact),
        param: param.map(redact),
        code: code.map(redact),
        retry_after,
    }))
}

/// `retry-after` as sent; otherwise `retry-after-ms` (Azure) rounded up to whole seconds.
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(v) = header("retry-after") {
        return Some(v.to_string());
    }
    let ms = header("retry-after-ms")?.trim().parse::<f64>().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| ((ms / 1000.0).ceil() as u64).to_string())
}

/// Reads at most `cap` bytes of a body (error bodies need no more).
pub(super) async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

/// The chat body sent upstream: the client's request with the upstream model name, asking
/// for a usage chunk when `include_usage`.
pub(super) fn chat_body(
    d: &Deployment,
    req: &ChatRequest,
    include_usage: bool,
) -> Result<Vec<u8>, UpstreamError> {
    let mut out = req.clone();
    out.model.clone_from(&d.upstream_model);
    if include_usage {
        let opts = out.stream_options.get_or_insert_with(|| StreamOptions {
            include_usage: None,
            extra: Default::default(),
        });
        opts.include_usage = Some(true);
    }
    encode(d, &out)
}

/// The Responses body sent upstream: the client's body with the upstream model name; every
/// other field as the client sent it.
pub(super) fn responses_body(
    d: &Deployment,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<u8>, UpstreamError> {
    let mut out = body.clone();
    out.insert("model".into(), d.upstream_model.clone().into());
    encode(d, &out)
}

/// The embeddings body sent upstream: the client's request with the upstream model name.
pub(super) fn embeddings_body(
    d: &Deployment,
    req: &EmbeddingsRequest,
) -> Result<Vec<u8>, UpstreamError> {
    let mut out = req.clone();
    out.model.clone_from(&d.upstream_model);
    encode(d, &out)
}

fn encode<T: serde::Serialize>(d: &Deployment, v: &T) -> Result<Vec<u8>, UpstreamError> {
    serde_json::to_vec(v).map_err(|e| UpstreamError::Protocol {
        deployment: label(d),
        detail: format!("cannot encode request: {e}"),
    })
}

/// POSTs an OpenAI-shaped body and returns the JSON answer with its usage.
pub(super) async fn post_json(
    client: &reqwest::Client,
    d: &Deployment,
    ep: &Endpoint,
    body: Vec<u8>,
) -> Result<Completion, UpstreamError> {
    let resp = request(client, d, ep, body, d.timeout)
        .send()
        .await
        .map_err(|e| transport_error(d, e, d.timeout))?;
    if !resp.status().is_success() {
        return Err(status_error(d, resp).await);
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| transport_error(d, e, d.timeout))?;
    let usage = serde_json::from_slice::<UsageOnly>(&body)
        .map_err(|e| UpstreamError::Protocol {
            deployment: label(d),
            detail: format!("body is not a JSON object: {e}"),
        })?
        .usage
        .unwrap_or_default();
    Ok(Completion { body, usage })
}

/// POSTs a streaming chat body; upstream SSE bytes are passed on as they arrive.
pub(super) async fn post_stream(
    client: &reqwest::Client,
    d: &Deployment,
    ep: &Endpoint,
    body: Vec<u8>,
) -> Result<ChunkStream, UpstreamError> {
    let timeout = d.stream_timeout;
    let resp = request(client, d, ep, body, timeout)
        .send()
        .await
        .map_err(|e| transport_error(d, e, timeout))?;
    if !resp.status().is_success() {
        return Err(status_error(d, resp).await);
    }
    let key = d.api_key.clone();
    let d = d.clone();
    let events = resp
        .bytes_stream()
        .map(move |r| r.map_err(|e| transport_error(&d, e, timeout)));
    Ok(match key {
        Some(key) => Box::pin(Redacted {
            inner: Box::pin(events),
            splitter: crate::stream::SseSplitter::default(),
            key,
            done: false,
        }),
        None => Box::pin(events),
    })
}

/// The upstream's SSE with the deployment's key removed from every event: the bytes are relayed
/// to the client, and a provider's mid-stream error event may echo the key back. Whole events
/// are checked, so a key split across network reads is still found.
struct Redacted {
    inner: ChunkStream,
    splitter: crate::stream::SseSplitter,
    key: crate::config::Secret,
    done: bool,
}

impl Redacted {
    fn clean(&self, event: bytes::Bytes) -> bytes::Bytes {
        match std::str::from_utf8(&event) {
            Ok(text) if text.contains(self.key.expose()) => {
                bytes::Bytes::from(self.key.redact(text))
            }
            _ => event,
        }
    }
}

impl futures_util::Stream for Redacted {
    type Item = Result<bytes::Bytes, UpstreamError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    let events = self.splitter.push(&chunk);
                    if events.is_empty() {
                        continue;
                    }
                    let mut out = bytes::BytesMut::new();
                    for e in events {
                        out.extend_from_slice(&self.clean(e));
                    }
                    return Poll::Ready(Some(Ok(out.freeze())));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    if let Some(rest) = self.splitter.finish() {
                        return Poll::Ready(Some(Ok(self.clean(rest))));
                    }
                }
            }
        }
    }
}

/// api.openai.com and every OpenAI-compatible server.
pub(super) struct OpenAi;

impl Adapter for OpenAi {
    async fn chat(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
    ) -> Result<Completion, UpstreamError> {
        let body = chat_body(d, req, false)?;
        post_json(client, d, &endpoint(d, "/chat/completions"), body).await
    }

    /// Upstream SSE bytes are passed on as they arrive.
    async fn chat_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
        force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError> {
        let body = chat_body(d, req, force_usage)?;
        post_stream(client, d, &endpoint(d, "/chat/completions"), body).await
    }

    async fn embeddings(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &EmbeddingsRequest,
    ) -> Result<Completion, UpstreamError> {
        let body = embeddings_body(d, req)?;
        post_json(client, d, &endpoint(d, "/embeddings"), body).await
    }

    /// Only api.openai.com is known to accept `stream_options`; compatible servers vary.
    fn stream_usage(&self, d: &Deployment) -> bool {
        matches!(d.provider, ProviderKind::OpenAi)
    }

    /// api.openai.com serves `/responses`; other bases only when `model_info.responses_native`.
    fn responses_native(&self, d: &Deployment) -> bool {
        d.responses_native.unwrap_or_else(|| {
            matches!(d.provider, ProviderKind::OpenAi)
                && d.api_base
                    .as_deref()
                    .is_none_or(|b| b.contains("://api.openai.com"))
        })
    }

    async fn responses(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Completion, UpstreamError> {
        post_json(
            client,
            d,
            &endpoint(d, "/responses"),
            responses_body(d, body)?,
        )
        .await
    }

    async fn responses_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChunkStream, UpstreamError> {
        post_stream(
            client,
            d,
            &endpoint(d, "/responses"),
            responses_body(d, body)?,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    #[test]
    fn retry_after_prefers_the_header_then_milliseconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h).as_deref(), Some("2"));
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h).as_deref(), Some("7"));
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
