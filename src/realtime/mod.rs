//! Realtime passthrough: `GET /v1/realtime?model=GROUP` as a WebSocket proxy to the OpenAI and
//! Azure OpenAI realtime deployments of a model group.
//!
//! Owns admission (auth through `auth`, the deployment, the per-key socket count, budgets and
//! rate limits at the handshake), the upstream handshake ([`upstream`]), the frame pump
//! ([`pump`]) and the accounting of `response.done` usage ([`usage`]). Frames pass through
//! untouched, text and binary; nothing is cached. The client's key never goes upstream and the
//! provider's key never comes back.

mod pump;
mod sockets;
mod upstream;
mod usage;

pub use pump::error_event;
pub use pump::run;
pub use sockets::{open_count, open_sockets, SocketSlot};
pub use upstream::{upstream_request, UpstreamRequest};
pub use usage::{budget_refusal, record_usage, usage_of, Account};

use crate::auth::{authenticate, Principal};
use crate::config::Deployment;
use crate::error::ApiError;
use crate::limits::{self, Demand};
use crate::providers::ProviderKind;
use crate::router::Needs;
use crate::spend::Payer;
use crate::state::AppState;
use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use std::sync::Arc;
use std::time::Duration;

/// `sluice_realtime_sockets`: realtime sockets open now.
pub const SOCKETS: &str = "sluice_realtime_sockets";
/// `sluice_realtime_frames_total{direction}`: text and binary frames relayed
/// (`direction` is `to_upstream` or `to_client`).
pub const FRAMES_TOTAL: &str = "sluice_realtime_frames_total";

/// The endpoint's name in errors (`model_not_supported`).
pub const ENDPOINT: &str = "the Realtime API (/v1/realtime)";

/// The subprotocol browsers send their key in (they cannot set `Authorization`).
pub const KEY_SUBPROTOCOL_PREFIX: &str = "openai-insecure-api-key.";
/// The subprotocol the OpenAI SDKs ask for; Sluice accepts it in the handshake answer.
pub const REALTIME_SUBPROTOCOL: &str = "realtime";
/// The subprotocol form of `OpenAI-Beta: realtime=v1`.
const BETA_SUBPROTOCOL: &str = "openai-beta.realtime-v1";
/// The beta interface's header, forwarded upstream when the client sends it.
pub const BETA_HEADER: &str = "openai-beta";

/// `sluice.realtime`: limits of realtime sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// A socket with no frame either way for this long is closed (1000).
    pub idle_timeout: Duration,
    /// Largest message, either way; a bigger client message closes the socket with 1009.
    pub max_message_bytes: usize,
    /// Sockets one key may hold open at once; one more is refused with 429 before the upgrade.
    pub max_sockets_per_key: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(300),
            max_message_bytes: 16 * 1024 * 1024,
            max_sockets_per_key: 8,
        }
    }
}

/// Why a socket is refused before the upgrade.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Auth, model, budget or rate-limit refusal, answered like every other endpoint's.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The key already holds `max_sockets_per_key` realtime sockets.
    #[error(
        "too many realtime sockets open for {who} (max_sockets_per_key {max}): close one first"
    )]
    TooManySockets {
        /// `key 'id'`, never the secret.
        who: String,
        /// The limit.
        max: usize,
    },
}

impl From<Box<crate::limits::Refusal>> for AdmitError {
    fn from(r: Box<crate::limits::Refusal>) -> Self {
        AdmitError::Api(r.into())
    }
}

/// An admitted socket, ready for the upgrade.
#[derive(Debug)]
pub struct Admitted {
    /// Who pays and what the usage counts against.
    pub account: Account,
    /// Realtime-capable deployments of the group, in the router's order (tried in turn).
    pub candidates: Vec<Arc<Deployment>>,
    /// The socket's place in the per-key count (freed when dropped).
    pub slot: SocketSlot,
    /// `OpenAI-Beta` to send upstream (the client's header, or its subprotocol form).
    pub beta: Option<String>,
    /// `intent` query parameter (`transcription`), passed on to OpenAI.
    pub intent: Option<String>,
}

/// The query of `GET /v1/realtime`.
#[derive(Debug, Default, serde::Deserialize)]
struct RealtimeQuery {
    model: Option<String>,
    intent: Option<String>,
}

/// Checks a handshake before the upgrade: key, model, deployment, sockets, budget, rate limits.
///
/// The order fixes the status a client sees first: 401, 400 (no model), 403, 404, 400 (not a
/// realtime group), then 429 (sockets, budget, rate).
pub fn admit(state: &AppState, headers: &HeaderMap, query: &str) -> Result<Admitted, AdmitError> {
    let principal = authenticate(state, &with_subprotocol_key(headers))?;
    let q: RealtimeQuery = serde_urlencoded_query(query)?;
    let model = q
        .model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("model", "missing required query parameter 'model'"))?;
    if !principal.allows_model(&model) {
        return Err(ApiError::ModelNotAllowed { model }.into());
    }
    // `auto` chooses among chat deployments; a realtime socket needs a realtime group.
    if state.router.auto_policy(&model).is_some() {
        return Err(ApiError::UnsupportedForModel {
            model,
            endpoint: ENDPOINT,
        }
        .into());
    }
    let route = crate::pipeline::route(state, &model, &Needs::default())?;
    let candidates = realtime_candidates(route.candidates.iter().map(|t| &t.deployment));
    if candidates.is_empty() {
        return Err(ApiError::UnsupportedForModel {
            model,
            endpoint: ENDPOINT,
        }
        .into());
    }
    let max = state.config.realtime.max_sockets_per_key;
    let slot = open_sockets(principal.key_id(), max).ok_or_else(|| AdmitError::TooManySockets {
        who: describe(&principal),
        max,
    })?;
    let payer = Payer {
        key_id: principal.key_id().to_string(),
        key: principal.key().cloned(),
        user: limits::end_user(headers, None),
    };
    state.spend.check(&payer).map_err(ApiError::from)?;
    let scopes = state.limits.scopes(
        principal.key().map(|k| &**k),
        payer.user.as_deref(),
        &route.group,
    );
    // The socket is one request (and holds a parallel slot while open); its tokens are
    // counted as `response.done` events report them.
    let ticket = state.limits.admit(
        &scopes,
        Demand {
            request: true,
            tokens: 0,
        },
    )?;
    Ok(Admitted {
        account: Account::new(payer, route.group, scopes, ticket),
        candidates,
        slot,
        beta: beta_of(headers),
        intent: q.intent,
    })
}

/// Parses the query string (an unparsable one is a 400 naming it).
fn serde_urlencoded_query(query: &str) -> Result<RealtimeQuery, ApiError> {
    actix_web::web::Query::<RealtimeQuery>::from_query(query)
        .map(actix_web::web::Query::into_inner)
        .map_err(|e| ApiError::invalid("model", format!("invalid query string: {e}")))
}

/// `key 'alias-or-id'` for messages.
fn describe(p: &Principal) -> String {
    match p {
        Principal::Virtual(k) => format!("key '{}'", k.alias.as_deref().unwrap_or(&k.id)),
        Principal::Master => "the master key".to_string(),
        Principal::Open => "anonymous callers".to_string(),
    }
}

/// The deployments that speak the Realtime API (OpenAI and Azure OpenAI), in order.
pub fn realtime_candidates<'a>(
    deployments: impl Iterator<Item = &'a Arc<Deployment>>,
) -> Vec<Arc<Deployment>> {
    deployments
        .filter(|d| matches!(d.provider, ProviderKind::OpenAi | ProviderKind::Azure))
        .cloned()
        .collect()
}

/// Every subprotocol the client offered, in order.
fn subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The key a browser sent as `openai-insecure-api-key.<key>`, if any.
pub fn subprotocol_key(headers: &HeaderMap) -> Option<&str> {
    subprotocols(headers)
        .find_map(|p| p.strip_prefix(KEY_SUBPROTOCOL_PREFIX))
        .filter(|k| !k.is_empty())
}

/// The headers auth reads: the request's own, plus the subprotocol key as a bearer key when the
/// request carries no key header (a header, when present, wins).
fn with_subprotocol_key(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    if h.contains_key(AUTHORIZATION) || h.contains_key("x-api-key") {
        return h;
    }
    if let Some(v) =
        subprotocol_key(headers).and_then(|k| HeaderValue::from_str(&format!("Bearer {k}")).ok())
    {
        h.insert(AUTHORIZATION, v);
    }
    h
}

/// `OpenAI-Beta` to forward: the client's header, else `realtime=v1` for the subprotocol form.
fn beta_of(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(BETA_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(v.to_string());
    }
    subprotocols(headers)
        .any(|p| p == BETA_SUBPROTOCOL)
        .then(|| "realtime=v1".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderName;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn reads_the_browser_key_subprotocol() {
        let h = headers(&[(
            "sec-websocket-protocol",
            "realtime, openai-insecure-api-key.sk-sluice-abc, openai-beta.realtime-v1",
        )]);
        assert_eq!(subprotocol_key(&h), Some("sk-sluice-abc"));
        let auth = with_subprotocol_key(&h);
        assert_eq!(
            auth.get(AUTHORIZATION).and_then(|v| v.to_str().ok()),
            Some("Bearer sk-sluice-abc")
        );
        assert_eq!(beta_of(&h).as_deref(), Some("realtime=v1"));
    }

    #[test]
    fn a_key_header_wins_over_the_subprotocol() {
        let h = headers(&[
            ("authorization", "Bearer header-key"),
            ("sec-websocket-protocol", "openai-insecure-api-key.other"),
        ]);
        let auth = with_subprotocol_key(&h);
        assert_eq!(
            auth.get(AUTHORIZATION).and_then(|v| v.to_str().ok()),
            Some("Bearer header-key")
        );
        assert_eq!(beta_of(&h), None);
        assert_eq!(subprotocol_key(&headers(&[])), None);
    }

    #[test]
    fn the_beta_header_is_forwarded_as_sent() {
        let h = headers(&[("openai-beta", "realtime=v1")]);
        assert_eq!(beta_of(&h).as_deref(), Some("realtime=v1"));
    }
}
