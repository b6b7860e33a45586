//! The provider side of a realtime socket: its URL and headers (pure, unit-tested) and the
//! WebSocket handshake with it.
//!
//! OpenAI: `wss://api.openai.com/v1/realtime?model=MODEL` (`{api_base}/realtime`) with
//! `Authorization: Bearer`. Azure OpenAI: `{api_base}/openai/realtime?api-version=V&deployment=D`
//! when the deployment sets an `api_version` (the preview surface), else the GA surface
//! `{api_base}/openai/v1/realtime?model=D`; the key goes in `api-key`. `http(s)` bases become
//! `ws(s)`.

use crate::config::{Deployment, Secret};
use crate::providers::ProviderKind;
use reqwest::Url;
use std::sync::{Arc, LazyLock};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Base URL of api.openai.com when a deployment sets none.
const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// An open socket to the provider.
pub type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the provider's socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The deployment's config cannot make a realtime URL.
    #[error("deployment '{deployment}' cannot serve realtime: {detail}")]
    Unsupported {
        /// Deployment id.
        deployment: String,
        /// What is missing or wrong.
        detail: String,
    },
    /// TCP, TLS or the WebSocket handshake failed.
    #[error("cannot connect to deployment '{deployment}': {detail}")]
    Connect {
        /// Deployment id.
        deployment: String,
        /// The failure (never holds the key).
        detail: String,
    },
    /// The provider answered the handshake with an HTTP error.
    #[error(
        "deployment '{deployment}' refused the realtime connection (HTTP {status}): {message}"
    )]
    Refused {
        /// Deployment id.
        deployment: String,
        /// HTTP status.
        status: u16,
        /// The provider's error message, with the provider key redacted.
        message: String,
    },
    /// The handshake did not finish within the deployment's `connect_timeout`.
    #[error("timed out connecting to deployment '{deployment}'")]
    Timeout {
        /// Deployment id.
        deployment: String,
    },
}

/// The handshake Sluice sends upstream: URL, plain headers and the credential header.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Headers besides the credential (`OpenAI-Beta`, `OpenAI-Organization`).
    pub headers: Vec<(&'static str, String)>,
    /// `(header, value)` carrying the provider key; `Debug` prints `*****`.
    pub auth: Option<(&'static str, Secret)>,
}

fn unsupported(d: &Deployment, detail: impl Into<String>) -> UpstreamError {
    UpstreamError::Unsupported {
        deployment: d.id.clone(),
        detail: detail.into(),
    }
}

/// `base` with `ws(s)` for `http(s)`, the path segments appended (percent-encoded) and the
/// query pairs added.
fn ws_url(
    d: &Deployment,
    base: &str,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<String, UpstreamError> {
    let mut url =
        Url::parse(base).map_err(|e| unsupported(d, format!("api_base is not a URL: {e}")))?;
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        other => return Err(unsupported(d, format!("api_base has scheme '{other}'"))),
    };
    url.set_scheme(scheme)
        .map_err(|()| unsupported(d, "api_base cannot take a ws scheme"))?;
    url.path_segments_mut()
        .map_err(|()| unsupported(d, "api_base cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    Ok(url.into())
}

/// The upstream handshake for deployment `d`: its URL, `beta` as `OpenAI-Beta`, `intent` passed
/// on to OpenAI, and its key in the provider's header. Nothing of the client's request but those
/// two values goes upstream.
pub fn upstream_request(
    d: &Deployment,
    beta: Option<&str>,
    intent: Option<&str>,
) -> Result<UpstreamRequest, UpstreamError> {
    let mut headers = Vec::new();
    if let Some(b) = beta {
        headers.push(("openai-beta", b.to_string()));
    }
    let model = d.upstream_model.as_str();
    let (url, auth) = match d.provider {
        ProviderKind::OpenAi => {
            let base = d.api_base.as_deref().unwrap_or(OPENAI_BASE);
            let mut query = vec![("model", model)];
            if let Some(i) = intent {
                query.push(("intent", i));
            }
            if let Some(org) = &d.organization {
                headers.push(("openai-organization", org.clone()));
            }
            let auth = d.api_key.as_ref().map(|k| {
                (
                    "authorization",
                    Secret::new(format!("Bearer {}", k.expose())),
                )
            });
            (ws_url(d, base, &["realtime"], &query)?, auth)
        }
        ProviderKind::Azure => {
            let base = d
                .api_base
                .as_deref()
                .ok_or_else(|| unsupported(d, "Azure deployments need litellm_params.api_base"))?;
            let url = match d.api_version.as_deref() {
                Some(v) => ws_url(
                    d,
                    base,
                    &["openai", "realtime"],
                    &[("api-version", v), ("deployment", model)],
                )?,
                None => ws_url(d, base, &["openai", "v1", "realtime"], &[("model", model)])?,
            };
            let auth = d.api_key.as_ref().map(|k| ("api-key", k.clone()));
            (url, auth)
        }
        other => {
            return Err(unsupported(
                d,
                format!("provider '{other}' has no realtime API"),
            ))
        }
    };
    Ok(UpstreamRequest { url, headers, auth })
}

/// rustls with ring and the webpki roots, as reqwest uses (built once).
static TLS: LazyLock<Result<Arc<rustls::ClientConfig>, String>> = LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| e.to_string())
});

/// Opens the provider's socket for `d` within its `connect_timeout`; messages over
/// `max_message_bytes` are refused by the reader.
pub async fn connect(
    d: &Deployment,
    req: &UpstreamRequest,
    max_message_bytes: usize,
) -> Result<Upstream, UpstreamError> {
    let fail = |detail: String| UpstreamError::Connect {
        deployment: d.id.clone(),
        detail: redact(d, &detail),
    };
    let mut request = req
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| fail(e.to_string()))?;
    let h = request.headers_mut();
    for (name, value) in &req.headers {
        let v = HeaderValue::from_str(value).map_err(|e| fail(format!("header {name}: {e}")))?;
        h.insert(HeaderName::from_static(name), v);
    }
    if let Some((name, secret)) = &req.auth {
        let mut v = HeaderValue::from_str(secret.expose())
            .map_err(|_| fail("the provider key is not a valid header value".into()))?;
        v.set_sensitive(true);
        h.insert(HeaderName::from_static(name), v);
    }
    let tls = TLS.as_ref().map_err(|e| fail(format!("TLS setup: {e}")))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let handshake = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(Connector::Rustls(Arc::clone(tls))),
    );
    match tokio::time::timeout(d.connect_timeout, handshake).await {
        Err(_) => Err(UpstreamError::Timeout {
            deployment: d.id.clone(),
        }),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let body = resp.body().as_deref().unwrap_or_default();
            Err(UpstreamError::Refused {
                deployment: d.id.clone(),
                status: resp.status().as_u16(),
                message: redact(d, &error_message(body)),
            })
        }
        Ok(Err(e)) => Err(fail(e.to_string())),
    }
}

/// `error.message` of an OpenAI-style error body, else the body itself (shortened).
fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(m) = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(serde_json::Value::as_str)
    {
        return m.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].trim().to_string()
}

/// `text` with the deployment's key replaced (providers sometimes echo it).
fn redact(d: &Deployment, text: &str) -> String {
    match &d.api_key {
        Some(k) => k.redact(text),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;

    fn deployment(yaml_params: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            format!("model_list:\n  - model_name: rt\n    litellm_params: {yaml_params}\n"),
        )
        .unwrap();
        Config::load(&path).unwrap().deployments.remove(0)
    }

    #[test]
    fn openai_default_and_custom_base() {
        let d = deployment("{model: openai/gpt-realtime, api_key: sk-prov}");
        let r = upstream_request(&d, None, None).unwrap();
        assert_eq!(r.url, "wss://api.openai.com/v1/realtime?model=gpt-realtime");
        let (name, value) = r.auth.clone().unwrap();
        assert_eq!((name, value.expose()), ("authorization", "Bearer sk-prov"));
        assert!(r.headers.is_empty());
        assert!(!format!("{r:?}").contains("sk-prov"), "Debug hides the key");

        let d = deployment(
            "{model: openai/gpt-realtime, api_key: k, api_base: 'http://127.0.0.1:9/v1/', organization: org-1}",
        );
        let r = upstream_request(&d, Some("realtime=v1"), Some("transcription")).unwrap();
        assert_eq!(
            r.url,
            "ws://127.0.0.1:9/v1/realtime?model=gpt-realtime&intent=transcription"
        );
        assert_eq!(
            r.headers,
            vec![
                ("openai-beta", "realtime=v1".to_string()),
                ("openai-organization", "org-1".to_string())
            ]
        );
    }

    #[test]
    fn azure_preview_and_ga_shapes() {
        let d = deployment(
            "{model: azure/my rt, api_key: az-key, api_base: 'https://res.openai.azure.com', api_version: 2025-04-01-preview}",
        );
        let r = upstream_request(&d, None, Some("ignored")).unwrap();
        assert_eq!(
            r.url,
            "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=my+rt"
        );
        let (name, value) = r.auth.unwrap();
        assert_eq!((name, value.expose()), ("api-key", "az-key"));

        let d = deployment(
            "{model: azure/rt-dep, api_key: az-key, api_base: 'https://res.openai.azure.com/'}",
        );
        let r = upstream_request(&d, None, None).unwrap();
        assert_eq!(
            r.url,
            "wss://res.openai.azure.com/openai/v1/realtime?model=rt-dep"
        );
    }

    #[test]
    fn other_providers_are_refused() {
        let d = deployment("{model: mock/x}");
        let e = upstream_request(&d, None, None).unwrap_err();
        assert!(e.to_string().contains("no realtime API"), "{e}");
    }

    #[test]
    fn error_messages_are_read_from_openai_bodies() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad key","type":"invalid_request_error"}}"#),
            "bad key"
        );
        assert_eq!(error_message(b" plain text "), "plain text");
    }
}
