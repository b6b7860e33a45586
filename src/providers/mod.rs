//! Providers: send an OpenAI-shaped request to one deployment and bring back an OpenAI-shaped answer.
//!
//! Owns the upstream wire formats and the HTTP clients. Knows nothing of caching, routing or
//! the HTTP server; dispatch is a `match` on the closed [`ProviderKind`] enum.

pub(crate) mod anthropic;
mod azure;
pub(crate) mod gemini;
mod kind;
mod mock;
mod openai;

pub use kind::{CompatibleVendor, ProviderKind};

use crate::config::Deployment;
use crate::wire::{ChatRequest, EmbeddingsRequest, Usage};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::Stream;
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

/// A complete non-streaming answer: the body as the client will receive it, plus its usage.
#[derive(Debug, Clone)]
pub struct Completion {
    /// OpenAI-shaped JSON body.
    pub body: Bytes,
    /// Token usage read from the body.
    pub usage: Usage,
}

/// OpenAI-format SSE bytes (`data: {...}\n\n` ... `data: [DONE]\n\n`) as they arrive.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// Why an upstream call failed. Messages name the deployment, never its key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream answered with an error status.
    #[error("deployment '{}' returned HTTP {}: {}", .0.deployment, .0.status, .0.message)]
    Status(Box<StatusError>),
    /// No complete answer within the deployment's timeout.
    #[error("deployment '{deployment}' timed out after {after:?}")]
    Timeout {
        /// Deployment label.
        deployment: String,
        /// The timeout that fired.
        after: Duration,
    },
    /// Could not connect, or the connection broke.
    #[error("deployment '{deployment}' is unreachable: {detail}")]
    Connect {
        /// Deployment label.
        deployment: String,
        /// What failed.
        detail: String,
    },
    /// The upstream answered something that is not its documented format.
    #[error("deployment '{deployment}' sent an invalid response: {detail}")]
    Protocol {
        /// Deployment label.
        deployment: String,
        /// What was wrong.
        detail: String,
    },
    /// This build cannot talk to the provider.
    #[error("deployment '{deployment}' uses a provider this endpoint cannot call: {detail}")]
    Unsupported {
        /// Deployment label.
        deployment: String,
        /// Why.
        detail: String,
    },
}

/// An upstream error status with what its body said.
#[derive(Debug, Clone)]
pub struct StatusError {
    /// Deployment label.
    pub deployment: String,
    /// Upstream status.
    pub status: u16,
    /// Upstream error message (secrets redacted).
    pub message: String,
    /// Upstream error `type`.
    pub kind: Option<String>,
    /// Upstream error `param`.
    pub param: Option<String>,
    /// Upstream error `code`.
    pub code: Option<String>,
    /// Upstream `retry-after`.
    pub retry_after: Option<String>,
}

/// Error kinds as bounded metric label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// 4xx the client caused.
    ClientStatus,
    /// 429.
    RateLimited,
    /// 401/403: Sluice's provider key is wrong.
    Auth,
    /// 5xx and other statuses.
    ServerStatus,
    /// Timeout.
    Timeout,
    /// Connection failure.
    Connect,
    /// Malformed answer.
    Protocol,
    /// Provider not callable.
    Unsupported,
}

impl UpstreamErrorKind {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientStatus => "client_status",
            Self::RateLimited => "rate_limited",
            Self::Auth => "auth",
            Self::ServerStatus => "server_status",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Protocol => "protocol",
            Self::Unsupported => "unsupported",
        }
    }
}

impl UpstreamError {
    /// The bounded kind, for metrics and retry decisions.
    pub fn kind(&self) -> UpstreamErrorKind {
        match self {
            Self::Status(s) => match s.status {
                429 => UpstreamErrorKind::RateLimited,
                401 | 403 => UpstreamErrorKind::Auth,
                400..=499 => UpstreamErrorKind::ClientStatus,
                _ => UpstreamErrorKind::ServerStatus,
            },
            Self::Timeout { .. } => UpstreamErrorKind::Timeout,
            Self::Connect { .. } => UpstreamErrorKind::Connect,
            Self::Protocol { .. } => UpstreamErrorKind::Protocol,
            Self::Unsupported { .. } => UpstreamErrorKind::Unsupported,
        }
    }

    /// Upstream `retry-after`, passed on with 429s.
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            Self::Status(s) => s.retry_after.as_deref(),
            _ => None,
        }
    }

    /// Status, error type, param and code seen by the client.
    pub fn http_parts(&self) -> (StatusCode, &'static str, Option<String>, Option<String>) {
        let upstream_code = |c: &Option<String>, fallback: &str| {
            Some(c.clone().unwrap_or_else(|| fallback.to_string()))
        };
        match (self.kind(), self) {
            (UpstreamErrorKind::ClientStatus, Self::Status(s)) => (
                StatusCode::from_u16(s.status).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                s.param.clone(),
                s.code.clone(),
            ),
            (UpstreamErrorKind::RateLimited, Self::Status(s)) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                None,
                upstream_code(&s.code, "rate_limit_exceeded"),
            ),
            (UpstreamErrorKind::Auth, _) => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                None,
                Some("upstream_auth_failed".into()),
            ),
            (UpstreamErrorKind::Timeout, _) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_error",
                None,
                Some("upstream_timeout".into()),
            ),
            (UpstreamErrorKind::Connect, _) => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                None,
                Some("upstream_unreachable".into()),
            ),
            (UpstreamErrorKind::Protocol, _) => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                None,
                Some("upstream_invalid_response".into()),
            ),
            (UpstreamErrorKind::Unsupported, _) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_supported".into()),
            ),
            (UpstreamErrorKind::ServerStatus, _)
            | (UpstreamErrorKind::ClientStatus, _)
            | (UpstreamErrorKind::RateLimited, _) => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                None,
                Some("upstream_error".into()),
            ),
        }
    }
}

/// Pooled HTTP clients, one per distinct connect timeout (normally exactly one).
#[derive(Debug, Clone)]
pub struct HttpClients {
    by_connect_timeout: HashMap<Duration, reqwest::Client>,
    fallback: reqwest::Client,
}

impl HttpClients {
    /// Builds the clients the deployments need.
    pub fn new(deployments: &[Deployment]) -> Result<Self, reqwest::Error> {
        let build = |connect: Duration| {
            reqwest::Client::builder()
                .connect_timeout(connect)
                .pool_max_idle_per_host(256)
                .pool_idle_timeout(Duration::from_secs(60))
                .tcp_nodelay(true)
                .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        let mut by_connect_timeout = HashMap::new();
        for d in deployments {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                by_connect_timeout.entry(d.connect_timeout)
            {
                slot.insert(build(d.connect_timeout)?);
            }
        }
        Ok(Self {
            by_connect_timeout,
            fallback: build(Duration::from_secs(10))?,
        })
    }

    fn for_deployment(&self, d: &Deployment) -> &reqwest::Client {
        self.by_connect_timeout
            .get(&d.connect_timeout)
            .unwrap_or(&self.fallback)
    }
}

/// A label for messages: `gpt-4o/0 (openai/gpt-4o)`.
pub fn label(d: &Deployment) -> String {
    format!("{} ({}/{})", d.id, d.provider, d.upstream_model)
}

/// One provider's wire protocol: turns an OpenAI-shaped request into the provider's call and
/// its answer back into an OpenAI-shaped body or OpenAI SSE chunks.
///
/// Implemented by one zero-sized type per provider; [`ProviderKind`] picks the implementation
/// in [`dispatch!`], so calls are static (no boxing of futures).
pub(crate) trait Adapter {
    /// One non-streaming chat completion (OpenAI JSON body out).
    async fn chat(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
    ) -> Result<Completion, UpstreamError>;

    /// One streaming chat completion as OpenAI SSE bytes. `force_usage` asks for a final
    /// usage chunk even when the client did not ask (the caller strips it again).
    async fn chat_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
        force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError>;

    /// Embeddings (OpenAI JSON body out); providers without them say so.
    async fn embeddings(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        _req: &EmbeddingsRequest,
    ) -> Result<Completion, UpstreamError> {
        Err(UpstreamError::Unsupported {
            deployment: label(d),
            detail: format!("provider {} has no embeddings endpoint", d.provider),
        })
    }

    /// Whether streams can end with a usage chunk (so cache write-back and accounting see
    /// real token counts).
    fn stream_usage(&self, _d: &Deployment) -> bool {
        true
    }

    /// Whether the deployment serves the Responses API itself, so `/v1/responses` bodies are
    /// forwarded instead of translated to chat. Not native unless an adapter says so.
    fn responses_native(&self, _d: &Deployment) -> bool {
        false
    }

    /// One Responses API call, the body forwarded as is but for the model (JSON out).
    async fn responses(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        _body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Completion, UpstreamError> {
        Err(UpstreamError::Unsupported {
            deployment: label(d),
            detail: format!("provider {} has no native Responses API", d.provider),
        })
    }

    /// One streaming Responses API call: the upstream's Responses SSE bytes as they arrive.
    async fn responses_stream(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        _body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChunkStream, UpstreamError> {
        Err(UpstreamError::Unsupported {
            deployment: label(d),
            detail: format!("provider {} has no native Responses API", d.provider),
        })
    }
}

/// Runs `$call` on the adapter of `$d.provider`.
macro_rules! dispatch {
    ($d:expr, $a:ident => $call:expr) => {
        match $d.provider {
            ProviderKind::OpenAi | ProviderKind::Compatible(_) => {
                let $a = openai::OpenAi;
                $call
            }
            ProviderKind::Mock => {
                let $a = mock::Mock;
                $call
            }
            ProviderKind::Azure => {
                let $a = azure::Azure;
                $call
            }
            ProviderKind::Anthropic => {
                let $a = anthropic::Anthropic;
                $call
            }
            ProviderKind::Gemini => {
                let $a = gemini::Gemini;
                $call
            }
        }
    };
}

/// One non-streaming chat completion.
pub async fn chat(
    http: &HttpClients,
    d: &Deployment,
    req: &ChatRequest,
) -> Result<Completion, UpstreamError> {
    let client = http.for_deployment(d);
    dispatch!(d, a => a.chat(client, d, req).await)
}

/// One streaming chat completion. `force_usage` asks the upstream for a usage chunk even
/// when the client did not (the caller strips it again).
pub async fn chat_stream(
    http: &HttpClients,
    d: &Deployment,
    req: &ChatRequest,
    force_usage: bool,
) -> Result<ChunkStream, UpstreamError> {
    let client = http.for_deployment(d);
    dispatch!(d, a => a.chat_stream(client, d, req, force_usage).await)
}

/// Whether the provider's streams can carry a usage chunk.
pub fn supports_stream_usage(d: &Deployment) -> bool {
    dispatch!(d, a => a.stream_usage(d))
}

/// Whether the deployment serves `/responses` natively.
pub fn responses_native(d: &Deployment) -> bool {
    dispatch!(d, a => a.responses_native(d))
}

/// One native Responses API call (JSON).
pub async fn responses(
    http: &HttpClients,
    d: &Deployment,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<Completion, UpstreamError> {
    let client = http.for_deployment(d);
    dispatch!(d, a => a.responses(client, d, body).await)
}

/// One native streaming Responses API call (Responses SSE bytes).
pub async fn responses_stream(
    http: &HttpClients,
    d: &Deployment,
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<ChunkStream, UpstreamError> {
    let client = http.for_deployment(d);
    dispatch!(d, a => a.responses_stream(client, d, body).await)
}

/// Embeddings.
pub async fn embeddings(
    http: &HttpClients,
    d: &Deployment,
    req: &EmbeddingsRequest,
) -> Result<Completion, UpstreamError> {
    let client = http.for_deployment(d);
    dispatch!(d, a => a.embeddings(client, d, req).await)
}
