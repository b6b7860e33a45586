//! Google Gemini API (`generativelanguage.googleapis.com`): chat through `generateContent` /
//! `streamGenerateContent?alt=sse`, embeddings through `batchEmbedContents`.
//!
//! Owns the HTTP side (URLs, `x-goog-api-key`, timeouts, Google error bodies); the JSON
//! conversions live in `translate` (pure), the stream conversion in `stream`, Gemini's types in
//! `wire`.

pub(crate) mod stream;
pub(crate) mod translate;
mod wire;

use super::openai::{read_capped, retry_after, transport_error, MAX_ERROR_BODY};
use super::{label, Adapter, ChunkStream, Completion, StatusError, UpstreamError};
use crate::config::Deployment;
use crate::wire::{ChatRequest, EmbeddingsRequest};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stream::{Broken, Translator};
use translate::Meta;
use wire::{BatchEmbedResponse, ErrorBody, ErrorEnvelope, GenerateContentResponse};

/// Where the Gemini API lives when the deployment sets no `api_base`.
const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";
/// The API version path used when `api_base` does not name one.
const API_VERSION_PATH: &str = "/v1beta";
/// The header carrying the key.
const KEY_HEADER: &str = "x-goog-api-key";

/// `{api_base}/v1beta`; an `api_base` already ending in `/v1beta` or `/v1` is used as is.
fn versioned_base(d: &Deployment) -> String {
    let base = d
        .api_base
        .as_deref()
        .unwrap_or(DEFAULT_BASE)
        .trim_end_matches('/');
    if base.ends_with("/v1beta") || base.ends_with("/v1") {
        base.to_string()
    } else {
        format!("{base}{API_VERSION_PATH}")
    }
}

/// The model id in URLs and bodies, without a `models/` prefix the config may carry.
fn model(d: &Deployment) -> &str {
    d.upstream_model
        .strip_prefix("models/")
        .unwrap_or(&d.upstream_model)
}

/// `{base}/models/{model}:{method}`.
fn url(d: &Deployment, method: &str) -> String {
    format!("{}/models/{}:{method}", versioned_base(d), model(d))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.as_secs())
        .unwrap_or(0)
}

/// Fresh identity for one answer.
fn meta(d: &Deployment) -> Meta {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    Meta {
        id: format!("chatcmpl-{uuid}"),
        created: now(),
        model: model(d).to_string(),
        call_prefix: format!("{}_", &uuid[..12]),
    }
}

/// A request the adapter cannot express in Gemini's format.
fn untranslatable(d: &Deployment, detail: String) -> UpstreamError {
    UpstreamError::Unsupported {
        deployment: label(d),
        detail,
    }
}

fn protocol(d: &Deployment, detail: impl Into<String>) -> UpstreamError {
    UpstreamError::Protocol {
        deployment: label(d),
        detail: detail.into(),
    }
}

/// POSTs JSON to Gemini; non-2xx answers become [`UpstreamError::Status`].
async fn post<T: serde::Serialize>(
    client: &reqwest::Client,
    d: &Deployment,
    url: String,
    body: &T,
    timeout: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    let body =
        serde_json::to_vec(body).map_err(|e| protocol(d, format!("cannot encode request: {e}")))?;
    let mut rb = client
        .post(url)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .timeout(timeout)
        .body(body);
    if let Some(key) = &d.api_key {
        rb = rb.header(KEY_HEADER, key.expose());
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| transport_error(d, e, timeout))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let retry = retry_after(resp.headers());
    let body = read_capped(resp, MAX_ERROR_BODY).await;
    Err(status_error(d, status, retry, &body))
}

/// Reads a Google error body (`{"error": {code, message, status, details}}`, also inside a
/// one-element array) into a [`StatusError`]; other bodies are quoted (shortened).
fn status_error(d: &Deployment, status: u16, retry: Option<String>, body: &[u8]) -> UpstreamError {
    let parsed = serde_json::from_slice::<Value>(body)
        .ok()
        .map(|v| match v {
            Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
            other => other,
        })
        .and_then(|v| serde_json::from_value::<ErrorEnvelope>(v).ok());
    if let Some(env) = parsed {
        return google_error(d, status, retry, env.error);
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    let text = if text.is_empty() {
        "empty body".to_string()
    } else {
        text.chars().take(500).collect()
    };
    UpstreamError::Status(Box::new(StatusError {
        deployment: label(d),
        status,
        message: redact(d, text),
        kind: None,
        param: None,
        code: None,
        retry_after: retry,
    }))
}

fn redact(d: &Deployment, text: String) -> String {
    match &d.api_key {
        Some(k) => k.redact(&text),
        None => text,
    }
}

/// A parsed Google error as a [`StatusError`].
///
/// The retry delay comes from the `retry-after` header, else from a `google.rpc.RetryInfo`
/// detail (`"retryDelay": "20s"`, rounded up to whole seconds). Gemini reports a wrong key as
/// `400 INVALID_ARGUMENT` with reason `API_KEY_INVALID`; that is recorded as a 401 so it
/// counts as Sluice's auth failure, not as a bad client request.
fn google_error(d: &Deployment, status: u16, retry: Option<String>, e: ErrorBody) -> UpstreamError {
    let detail_of = |kind: &str| {
        e.details.iter().find(|x| {
            x.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(kind))
        })
    };
    let retry = retry.or_else(|| {
        let delay = detail_of("google.rpc.RetryInfo")?
            .get("retryDelay")?
            .as_str()?;
        let secs = delay.trim().strip_suffix('s')?.parse::<f64>().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| (secs.ceil() as u64).to_string())
    });
    let bad_key = detail_of("google.rpc.ErrorInfo")
        .and_then(|x| x.get("reason"))
        .is_some_and(|r| r == "API_KEY_INVALID");
    UpstreamError::Status(Box::new(StatusError {
        deployment: label(d),
        status: if bad_key { 401 } else { status },
        message: redact(d, e.message.unwrap_or_else(|| "no message".into())),
        kind: e.status,
        param: None,
        code: None,
        retry_after: retry,
    }))
}

/// A stream's failure as the deployment's error; an error event keeps its own status code.
fn broken(d: &Deployment, b: Broken) -> UpstreamError {
    match b {
        Broken::Upstream(env) => google_error(d, env.error.code.unwrap_or(500), None, env.error),
        Broken::Invalid(detail) => protocol(d, detail),
    }
}

/// State of one translated stream.
struct StreamState {
    upstream: ChunkStream,
    translator: Translator,
    d: Deployment,
    ended: bool,
}

/// Google Gemini API.
pub(super) struct Gemini;

impl Adapter for Gemini {
    async fn chat(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
    ) -> Result<Completion, UpstreamError> {
        let body = translate::request(req).map_err(|e| untranslatable(d, e))?;
        let resp = post(client, d, url(d, "generateContent"), &body, d.timeout).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(d, e, d.timeout))?;
        let answer: GenerateContentResponse = serde_json::from_slice(&bytes)
            .map_err(|e| protocol(d, format!("body is not a GenerateContentResponse: {e}")))?;
        let (body, usage) = translate::response(&answer, &meta(d)).map_err(|e| protocol(d, e))?;
        Ok(Completion {
            body: Bytes::from(body.to_string()),
            usage,
        })
    }

    async fn chat_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
        force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError> {
        let body = translate::request(req).map_err(|e| untranslatable(d, e))?;
        let timeout = d.stream_timeout;
        let resp = post(
            client,
            d,
            url(d, "streamGenerateContent?alt=sse"),
            &body,
            timeout,
        )
        .await?;
        let owned = d.clone();
        let upstream: ChunkStream = Box::pin(
            resp.bytes_stream()
                .map(move |r| r.map_err(|e| transport_error(&owned, e, timeout))),
        );
        let state = StreamState {
            upstream,
            translator: Translator::new(meta(d), force_usage || req.wants_stream_usage()),
            d: d.clone(),
            ended: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            state,
            |mut s| async move {
                if s.ended {
                    return None;
                }
                loop {
                    let item = match s.upstream.next().await {
                        Some(Ok(bytes)) => match s.translator.push(&bytes) {
                            Ok(out) if out.is_empty() => continue,
                            Ok(out) => Ok(out),
                            Err(b) => Err(broken(&s.d, b)),
                        },
                        Some(Err(e)) => Err(e),
                        None => {
                            s.ended = true;
                            s.translator.finish().map_err(|b| broken(&s.d, b))
                        }
                    };
                    // After an error there is nothing more to read either.
                    s.ended |= item.is_err();
                    return Some((item, s));
                }
            },
        )))
    }

    async fn embeddings(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &EmbeddingsRequest,
    ) -> Result<Completion, UpstreamError> {
        let body = translate::embed_request(req, model(d)).map_err(|e| untranslatable(d, e))?;
        let count = body.requests.len();
        let resp = post(client, d, url(d, "batchEmbedContents"), &body, d.timeout).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(d, e, d.timeout))?;
        let answer: BatchEmbedResponse = serde_json::from_slice(&bytes)
            .map_err(|e| protocol(d, format!("body is not a BatchEmbedContentsResponse: {e}")))?;
        if answer.embeddings.len() != count {
            return Err(protocol(
                d,
                format!(
                    "asked for {count} embeddings, got {}",
                    answer.embeddings.len()
                ),
            ));
        }
        let vectors = answer.embeddings.into_iter().map(|e| e.values).collect();
        let body = translate::embed_response(vectors, model(d));
        Ok(Completion {
            body: Bytes::from(body.to_string()),
            usage: Default::default(),
        })
    }

    /// The usage chunk is built by the translator from `usageMetadata`, so it is always there.
    fn stream_usage(&self, _d: &Deployment) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::providers::ProviderKind;
    use serde_json::json;

    fn deployment(base: Option<&str>, model: &str) -> Deployment {
        // Built from a real config so new Deployment fields need no change here.
        let mut d = crate::config::Config::builtin().unwrap().deployments[0].clone();
        d.provider = ProviderKind::Gemini;
        d.upstream_model = model.into();
        d.api_base = base.map(str::to_string);
        d.api_key = Some(Secret::new("AIza-secret-key"));
        d
    }

    fn status(e: UpstreamError) -> StatusError {
        match e {
            UpstreamError::Status(s) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urls() {
        let d = deployment(None, "gemini-2.0-flash");
        assert_eq!(
            url(&d, "generateContent"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        );
        let d = deployment(Some("http://127.0.0.1:1234/"), "models/gemini-pro");
        assert_eq!(
            url(&d, "streamGenerateContent?alt=sse"),
            "http://127.0.0.1:1234/v1beta/models/gemini-pro:streamGenerateContent?alt=sse"
        );
        let d = deployment(Some("https://proxy.test/google/v1"), "m");
        assert_eq!(
            url(&d, "batchEmbedContents"),
            "https://proxy.test/google/v1/models/m:batchEmbedContents"
        );
    }

    #[test]
    fn rate_limit_with_retry_info() {
        let d = deployment(None, "m");
        let body = json!({"error": {"code": 429, "message": "Resource has been exhausted (key AIza-secret-key).",
        "status": "RESOURCE_EXHAUSTED", "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "19.2s"}
        ]}});
        let s = status(status_error(&d, 429, None, body.to_string().as_bytes()));
        assert_eq!(s.status, 429);
        assert_eq!(s.kind.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(s.retry_after.as_deref(), Some("20"));
        assert!(!s.message.contains("AIza-secret-key"), "{}", s.message);
        // A header wins over the body.
        let s = status(status_error(
            &d,
            429,
            Some("3".into()),
            body.to_string().as_bytes(),
        ));
        assert_eq!(s.retry_after.as_deref(), Some("3"));
    }

    #[test]
    fn bad_key_is_an_auth_failure() {
        let d = deployment(None, "m");
        let body = json!([{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}]);
        let e = status_error(&d, 400, None, body.to_string().as_bytes());
        assert_eq!(e.kind(), crate::providers::UpstreamErrorKind::Auth);
        let plain = json!({"error": {"code": 400, "message": "bad temperature", "status": "INVALID_ARGUMENT"}});
        let e = status_error(&d, 400, None, plain.to_string().as_bytes());
        assert_eq!(e.kind(), crate::providers::UpstreamErrorKind::ClientStatus);
        let e = status(status_error(&d, 502, None, b"<html>oops</html>"));
        assert_eq!(e.message, "<html>oops</html>");
    }

    #[test]
    fn stream_error_event_keeps_its_status() {
        let d = deployment(None, "m");
        let env: ErrorEnvelope = serde_json::from_value(
            json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
        )
        .unwrap();
        let s = status(broken(&d, Broken::Upstream(env)));
        assert_eq!((s.status, s.message.as_str()), (503, "overloaded"));
        assert!(matches!(
            broken(&d, Broken::Invalid("x".into())),
            UpstreamError::Protocol { .. }
        ));
    }
}
