//! The request pipeline for chat completions: lookup -> coalesce -> route -> call -> tee ->
//! write back -> account.
//!
//! This is the one function to read to know what happens to a request after auth. It wires the
//! stages together and owns none of their logic.

use crate::auth::Principal;
use crate::cache::{
    self, replay, Answer, CacheControl, CacheEngine, CacheKeys, CacheOutcome, Flight, FlightGuard,
    FlightState, Hit,
};
use crate::config::Deployment;
use crate::error::ApiError;
use crate::providers::{self, UpstreamError};
use crate::state::AppState;
use crate::stream::{StreamOutcome, Tee};
use crate::telemetry as t;
use crate::wire::{ChatRequest, EmbeddingsRequest, Usage};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the handler sends back.
pub struct Reply {
    /// The deployment that answered, if one did.
    pub deployment: Option<Arc<Deployment>>,
    /// Cache outcome for the header and metrics.
    pub outcome: CacheOutcome,
    /// Details of a cache hit, for the response headers.
    pub hit: Option<HitInfo>,
    /// The body.
    pub body: ReplyBody,
}

/// What the `x-sluice-cache-*` headers report about a hit.
#[derive(Debug, Clone)]
pub struct HitInfo {
    /// Entry id (absent for coalesced answers).
    pub entry_id: Option<u64>,
    /// Cosine similarity (semantic hits).
    pub similarity: Option<f32>,
    /// Age of the cached answer.
    pub age: Duration,
}

/// An SSE body.
pub type SseBody = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>>>>;

/// A JSON body or an SSE stream.
pub enum ReplyBody {
    /// Complete JSON.
    Json(Bytes),
    /// OpenAI SSE, forwarded as it arrives (or replayed from the cache).
    Stream(SseBody),
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

fn record_lookup(outcome: CacheOutcome) {
    metrics::counter!(t::CACHE_LOOKUPS_TOTAL, "outcome" => outcome.as_str()).increment(1);
}

/// The cache's part of one request.
struct CacheCtx {
    engine: Arc<CacheEngine>,
    namespace: String,
    keys: CacheKeys,
    embedding: Option<Vec<f32>>,
    control: CacheControl,
}

impl CacheCtx {
    /// Stores an answer in the background (streams finish after the response has started).
    fn store_later(self, group: String, completion: Value, usage: Usage) {
        tokio::spawn(async move {
            let r = self
                .engine
                .store_answer(
                    &self.namespace,
                    &group,
                    self.keys,
                    self.embedding,
                    Answer {
                        completion: &completion,
                        usage,
                        ttl: self.control.ttl,
                    },
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "cache write-back failed");
            }
        });
    }
}

/// A hit made into a reply: fresh id, JSON or replayed SSE.
fn hit_reply(hit: Hit, req: &ChatRequest) -> Reply {
    let fresh = replay::fresh_completion(
        &hit.completion,
        hit.usage.prompt_tokens,
        hit.usage.completion_tokens,
    );
    let body = if req.is_stream() {
        let frames = replay::sse_frames(&fresh, req.wants_stream_usage());
        ReplyBody::Stream(Box::pin(futures_util::stream::iter(
            frames.into_iter().map(Ok),
        )))
    } else {
        ReplyBody::Json(Bytes::from(fresh.to_string()))
    };
    record_lookup(hit.kind);
    Reply {
        deployment: None,
        outcome: hit.kind,
        hit: Some(HitInfo {
            entry_id: (hit.entry_id != 0).then_some(hit.entry_id),
            similarity: hit.similarity,
            age: hit.age,
        }),
        body,
    }
}

/// Serves one chat completion.
pub async fn chat(
    state: &AppState,
    principal: &Principal,
    req: ChatRequest,
    control: CacheControl,
) -> Result<Reply, ApiError> {
    let d = route(state, &req.model)?;
    let group = d.model_group.clone();

    // 1. Cache lookup (exact, then semantic + verification).
    let mut ctx = None;
    let mut outcome = CacheOutcome::Bypass;
    if let Some(engine) = state.cache.as_ref().filter(|c| c.enabled()) {
        let namespace = control
            .namespace
            .clone()
            .unwrap_or_else(|| principal.namespace().to_string());
        let keys = cache::keys(&namespace, &group, &req);
        let mut embedding = None;
        if !control.no_cache {
            let threshold = control
                .threshold
                .unwrap_or_else(|| engine.threshold(&namespace, &group));
            match engine.lookup(&group, &keys, threshold).await {
                Ok(found) => {
                    if let Some(hit) = found.hit {
                        return Ok(hit_reply(hit, &req));
                    }
                    embedding = found.embedding;
                    outcome = CacheOutcome::Miss;
                }
                Err(e) => tracing::warn!(error = %e, "cache lookup failed; going upstream"),
            }
        }
        record_lookup(outcome);
        ctx = Some(CacheCtx {
            engine: Arc::clone(engine),
            namespace,
            keys,
            embedding,
            control,
        });
    }

    // 2. Identical misses in flight: one upstream call, the others wait for its answer.
    let mut leader: Option<FlightGuard> = None;
    if let Some(c) = ctx.as_ref().filter(|c| !c.control.no_store) {
        match c.engine.join_flight(c.keys.exact) {
            Flight::Leader(g) => leader = Some(g),
            Flight::Follower(mut rx) => {
                let waited = tokio::time::timeout(
                    d.timeout,
                    rx.wait_for(|s| !matches!(s, FlightState::Pending)),
                )
                .await;
                if let Ok(Ok(s)) = waited {
                    if let FlightState::Done(completion, usage) = &*s {
                        let hit = Hit {
                            kind: CacheOutcome::HitCoalesced,
                            entry_id: 0,
                            similarity: None,
                            age: Duration::ZERO,
                            completion: Arc::clone(completion),
                            usage: *usage,
                        };
                        c.engine.count_hit(&hit, &group);
                        return Ok(hit_reply(hit, &req));
                    }
                }
                // The leader failed: this request goes upstream on its own.
            }
        }
    }

    // 3. Upstream.
    let started = Instant::now();
    if !req.is_stream() {
        let c = providers::chat(&state.http, &d, &req).await.map_err(|e| {
            record_upstream_error(&d, &e);
            ApiError::from(e)
        })?;
        record_upstream_latency(&d, started);
        record_tokens(&group, &c.usage);
        // 4. Write back before answering, so an acknowledged answer is a stored one.
        if let Some(cc) = ctx.filter(|c| !c.control.no_store) {
            if let Ok(completion) = serde_json::from_slice::<Value>(&c.body) {
                if let Some(g) = leader.take() {
                    if cache::cacheable(&completion) {
                        g.complete(Arc::new(completion.clone()), c.usage);
                    }
                }
                let r = cc
                    .engine
                    .store_answer(
                        &cc.namespace,
                        &group,
                        cc.keys,
                        cc.embedding,
                        Answer {
                            completion: &completion,
                            usage: c.usage,
                            ttl: cc.control.ttl,
                        },
                    )
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cache write-back failed");
                }
            }
        }
        return Ok(Reply {
            deployment: Some(d),
            outcome,
            hit: None,
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
        let usage = o.usage.unwrap_or_default();
        record_tokens(&dep.model_group, &usage);
        if let Some(e) = &o.error {
            record_upstream_error(&dep, e);
        }
        if o.cancelled {
            tracing::info!(deployment = %dep.id, "client disconnected; upstream stream cancelled");
        }
        // Only a stream that completed cleanly is written back; partial answers never are.
        if o.clean && cache::cacheable(&o.completion) {
            let completion = o.completion;
            if let Some(g) = leader {
                g.complete(Arc::new(completion.clone()), usage);
            }
            if let Some(cc) = ctx.filter(|c| !c.control.no_store) {
                cc.store_later(dep.model_group.clone(), completion, usage);
            }
        }
    });
    Ok(Reply {
        deployment: Some(d),
        outcome,
        hit: None,
        body: ReplyBody::Stream(Box::pin(Tee::new(upstream, force_usage, on_finish))),
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
        hit: None,
        body: ReplyBody::Json(c.body),
    })
}
