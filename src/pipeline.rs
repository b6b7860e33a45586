//! The request pipeline for chat completions: lookup -> route -> call -> tee -> account.
//!
//! This is the one function to read to know what happens to a request after auth. It wires the
//! stages together and owns none of their logic.

use crate::auth::Principal;
use crate::cache::CacheOutcome;
use crate::config::Deployment;
use crate::error::ApiError;
use crate::providers::{self, UpstreamError};
use crate::state::AppState;
use crate::stream::{StreamOutcome, Tee};
use crate::telemetry as t;
use crate::wire::{ChatRequest, EmbeddingsRequest, Usage};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// What the handler sends back.
pub struct Reply {
    /// The deployment that answered, if one did.
    pub deployment: Option<Arc<Deployment>>,
    /// Cache outcome for the header and metrics.
    pub outcome: CacheOutcome,
    /// The body.
    pub body: ReplyBody,
}

/// A JSON body or an SSE stream.
pub enum ReplyBody {
    /// Complete JSON.
    Json(Bytes),
    /// OpenAI SSE, forwarded as it arrives.
    Stream(Box<Tee>),
}

/// Resolves the model group and a deployment for it.
pub fn route(state: &AppState, model: &str) -> Result<Arc<Deployment>, ApiError> {
    state
        .router
        .group(model)
        .and_then(|g| g.pick().cloned())
        .ok_or_else(|| ApiError::ModelNotFound {
            model: model.to_string(),
            available: state.router.names().to_vec(),
        })
}

fn record_upstream_error(d: &Deployment, e: &UpstreamError) {
    metrics::counter!(t::UPSTREAM_ERRORS_TOTAL, "deployment" => d.id.clone(), "kind" => e.kind().as_str())
        .increment(1);
    tracing::warn!(deployment = %d.id, error = %e, "upstream call failed");
}

fn record_tokens(group: &str, usage: &Usage) {
    metrics::counter!(t::TOKENS_TOTAL, "model_group" => group.to_string(), "direction" => "in")
        .increment(usage.prompt_tokens);
    metrics::counter!(t::TOKENS_TOTAL, "model_group" => group.to_string(), "direction" => "out")
        .increment(usage.completion_tokens);
}

fn record_upstream_latency(d: &Deployment, started: Instant) {
    metrics::histogram!(t::UPSTREAM_DURATION, "deployment" => d.id.clone())
        .record(started.elapsed().as_secs_f64());
}

/// Serves one chat completion.
pub async fn chat(
    state: &AppState,
    _principal: &Principal,
    req: ChatRequest,
) -> Result<Reply, ApiError> {
    let d = route(state, &req.model)?;
    let started = Instant::now();
    if !req.is_stream() {
        let c = providers::chat(&state.http, &d, &req).await.map_err(|e| {
            record_upstream_error(&d, &e);
            ApiError::from(e)
        })?;
        record_upstream_latency(&d, started);
        record_tokens(&d.model_group, &c.usage);
        return Ok(Reply {
            deployment: Some(d),
            outcome: CacheOutcome::Bypass,
            body: ReplyBody::Json(c.body),
        });
    }

    let client_wants_usage = req.wants_stream_usage();
    // Ask for usage even when the client did not, to count tokens; the tee strips it again.
    let force_usage = !client_wants_usage && providers::supports_stream_usage(&d);
    let upstream = providers::chat_stream(&state.http, &d, &req, client_wants_usage || force_usage)
        .await
        .map_err(|e| {
            record_upstream_error(&d, &e);
            ApiError::from(e)
        })?;
    let dep = Arc::clone(&d);
    let on_finish = Box::new(move |o: StreamOutcome| {
        record_upstream_latency(&dep, started);
        if let Some(first) = o.first_token_at {
            metrics::histogram!(t::UPSTREAM_TTFT, "deployment" => dep.id.clone())
                .record(first.duration_since(started).as_secs_f64());
        }
        if let Some(u) = &o.usage {
            record_tokens(&dep.model_group, u);
        }
        if let Some(e) = &o.error {
            record_upstream_error(&dep, e);
        }
        if o.cancelled {
            tracing::info!(deployment = %dep.id, "client disconnected; upstream stream cancelled");
        }
    });
    Ok(Reply {
        deployment: Some(d),
        outcome: CacheOutcome::Bypass,
        body: ReplyBody::Stream(Box::new(Tee::new(upstream, force_usage, on_finish))),
    })
}

/// Serves one embeddings request.
pub async fn embeddings(state: &AppState, req: EmbeddingsRequest) -> Result<Reply, ApiError> {
    let d = route(state, &req.model)?;
    let started = Instant::now();
    let c = providers::embeddings(&state.http, &d, &req)
        .await
        .map_err(|e| {
            record_upstream_error(&d, &e);
            ApiError::from(e)
        })?;
    record_upstream_latency(&d, started);
    record_tokens(&d.model_group, &c.usage);
    Ok(Reply {
        deployment: Some(d),
        outcome: CacheOutcome::Bypass,
        body: ReplyBody::Json(c.body),
    })
}
