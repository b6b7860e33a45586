//! Anthropic Messages API (`anthropic/...` deployments): owns the HTTP call, Anthropic's
//! authentication headers and error bodies; the conversions live in `outbound` (requests and
//! responses) and `stream` (SSE events), the serde types in `wire`.
//!
//! The inbound surface (`POST /v1/messages`, in `api::messages`) reuses the wire types with
//! the inverse conversions in `inbound` and `inbound_stream`.

pub(crate) mod inbound;
pub(crate) mod inbound_stream;
pub(crate) mod outbound;
pub(crate) mod stream;
pub(crate) mod wire;

use super::openai::transport_error;
use super::{label, Adapter, ChunkStream, Completion, StatusError, UpstreamError};
use crate::config::Deployment;
use crate::wire::{ChatRequest, FieldError};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stream::{ChunkTranslator, StreamFault};
use wire::{ErrorResponse, MessageResponse, API_VERSION};

const DEFAULT_BASE: &str = "https://api.anthropic.com";
/// Upstream error bodies are read up to this size; the rest is not needed to explain the error.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `{api_base}/v1/messages`, whether or not the configured base already ends in `/v1`.
fn messages_url(d: &Deployment) -> String {
    let base = d.api_base.as_deref().unwrap_or(DEFAULT_BASE);
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/messages")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn redact(d: &Deployment, s: &str) -> String {
    match &d.api_key {
        Some(k) => k.redact(s),
        None => s.to_string(),
    }
}

/// A request Sluice cannot express in Anthropic's format: a 400 naming the OpenAI field.
fn untranslatable(d: &Deployment, e: FieldError) -> UpstreamError {
    UpstreamError::Status(Box::new(StatusError {
        deployment: label(d),
        status: 400,
        message: format!("cannot translate the request for Anthropic: {}", e.message),
        kind: Some("invalid_request_error".into()),
        param: (!e.param.is_empty()).then_some(e.param),
        code: Some("unsupported_for_provider".into()),
        retry_after: None,
    }))
}

fn protocol(d: &Deployment, detail: impl Into<String>) -> UpstreamError {
    UpstreamError::Protocol {
        deployment: label(d),
        detail: redact(d, &detail.into()),
    }
}

/// Translates and POSTs the request; returns the successful response.
async fn send(
    client: &reqwest::Client,
    d: &Deployment,
    req: &ChatRequest,
    stream: bool,
    timeout: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    let body = outbound::to_messages_request(req, &d.upstream_model, stream)
        .map_err(|e| untranslatable(d, e))?;
    let body = serde_json::to_vec(&body)
        .map_err(|e| protocol(d, format!("cannot encode request: {e}")))?;
    let mut rb = client
        .post(messages_url(d))
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("anthropic-version", HeaderValue::from_static(API_VERSION))
        .timeout(timeout)
        .body(body);
    if let Some(key) = &d.api_key {
        rb = rb.header("x-api-key", key.expose());
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| transport_error(d, e, timeout))?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(status_error(d, resp).await)
    }
}

/// Turns a non-2xx Anthropic response (`{"type":"error","error":{...}}`) into an error.
async fn status_error(d: &Deployment, resp: reqwest::Response) -> UpstreamError {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_capped(resp, MAX_ERROR_BODY).await;
    let (message, kind) = match serde_json::from_slice::<ErrorResponse>(&body) {
        Ok(env) if !env.error.message.is_empty() => (env.error.message, Some(env.error.kind)),
        Ok(env) => (env.error.kind.clone(), Some(env.error.kind)),
        Err(_) => {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let text = if text.is_empty() {
                "empty body".to_string()
            } else {
                text.chars().take(500).collect()
            };
            (text, None)
        }
    };
    UpstreamError::Status(Box::new(StatusError {
        deployment: label(d),
        status,
        message: redact(d, &message),
        kind,
        param: None,
        code: None,
        retry_after,
    }))
}

async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
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

/// A failure inside a stream, as the gateway's error (status errors keep Anthropic's type).
fn stream_fault(d: &Deployment, f: StreamFault) -> UpstreamError {
    match f {
        StreamFault::Upstream { kind, message } => {
            let status = wire::ErrorDetail {
                kind: kind.clone(),
                message: String::new(),
            }
            .status();
            UpstreamError::Status(Box::new(StatusError {
                deployment: label(d),
                status,
                message: redact(d, &format!("{kind}: {message} (in stream)")),
                kind: Some(kind),
                param: None,
                code: None,
                retry_after: None,
            }))
        }
        StreamFault::Protocol(detail) => protocol(d, detail),
    }
}

/// The Anthropic adapter.
pub(super) struct Anthropic;

impl Adapter for Anthropic {
    async fn chat(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
    ) -> Result<Completion, UpstreamError> {
        let resp = send(client, d, req, false, d.timeout).await?;
        let raw = resp
            .bytes()
            .await
            .map_err(|e| transport_error(d, e, d.timeout))?;
        let msg: MessageResponse = serde_json::from_slice(&raw)
            .map_err(|e| protocol(d, format!("body is not an Anthropic message: {e}")))?;
        let (body, usage) = outbound::to_chat_completion(&msg, &d.upstream_model, now());
        Ok(Completion {
            body: Bytes::from(body.to_string()),
            usage,
        })
    }

    /// Anthropic events are translated to OpenAI chunks as they arrive.
    async fn chat_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
        force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError> {
        let timeout = d.stream_timeout;
        let resp = send(client, d, req, true, timeout).await?;
        let translator = ChunkTranslator::new(
            &d.upstream_model,
            now(),
            force_usage || req.wants_stream_usage(),
        );
        let (dt, df) = (d.clone(), d.clone());
        Ok(Box::pin(stream::openai_sse(
            resp.bytes_stream().boxed(),
            translator,
            move |e| transport_error(&dt, e, timeout),
            move |f| stream_fault(&df, f),
        )))
    }

    /// Anthropic always reports usage at the end of a stream.
    fn stream_usage(&self, _d: &Deployment) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deployment as the config loader builds it (so new `Deployment` fields need no edit here).
    fn deployment(api_base: Option<&str>) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let base = api_base.map_or(String::new(), |b| format!("\n      api_base: {b}"));
        std::fs::write(
            &path,
            format!(
                "model_list:\n  - model_name: claude\n    litellm_params:\n      model: anthropic/claude-x\n      api_key: sk-ant-secret{base}\n"
            ),
        )
        .unwrap();
        crate::config::Config::load(&path)
            .unwrap()
            .deployments
            .remove(0)
    }

    #[test]
    fn urls_accept_a_base_with_or_without_v1() {
        assert_eq!(
            messages_url(&deployment(None)),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            messages_url(&deployment(Some("http://h:1/v1"))),
            "http://h:1/v1/messages"
        );
        assert_eq!(
            messages_url(&deployment(Some("http://h:1/proxy/"))),
            "http://h:1/proxy/v1/messages"
        );
    }

    #[test]
    fn stream_errors_keep_the_type_and_hide_the_key() {
        let d = deployment(None);
        let e = stream_fault(
            &d,
            StreamFault::Upstream {
                kind: "overloaded_error".into(),
                message: "Overloaded for sk-ant-secret".into(),
            },
        );
        let UpstreamError::Status(s) = &e else {
            unreachable!("status expected, got {e:?}")
        };
        assert_eq!(s.status, 529);
        assert_eq!(s.kind.as_deref(), Some("overloaded_error"));
        assert!(!e.to_string().contains("sk-ant-secret"), "{e}");
        let e = untranslatable(
            &d,
            FieldError {
                param: "n".into(),
                message: "no".into(),
            },
        );
        let (status, kind, param, _) = e.http_parts();
        assert_eq!(
            (status.as_u16(), kind, param.as_deref()),
            (400, "invalid_request_error", Some("n"))
        );
    }
}
