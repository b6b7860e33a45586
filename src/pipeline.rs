//! The request pipeline for chat completions: route -> admit (limits) -> lookup -> coalesce ->
//! admit (budgets, tokens) -> call -> tee -> write back -> settle and record spend.
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
use crate::keys::KeyCachePolicy;
use crate::limits::{self, Demand, Limiter, RateHeaders, Refusal, Scope, Ticket};
use crate::providers::{self, UpstreamError};
use crate::router::{FailureClass, Needs, Route, RouteError, Target};
use crate::spend::{Charge, Payer};
use crate::state::AppState;
use crate::stream::{StreamOutcome, Tee};
use crate::telemetry as t;
use crate::tokens::{self, Tokenizer};
use crate::wire::{ChatRequest, EmbeddingsRequest, Usage};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the handler sends back.
pub struct Reply {
    /// The deployment that answered, if one did.
    pub deployment: Option<Arc<Deployment>>,
    /// How the deployment was chosen (strategy, reason, failed attempts before it).
    pub route_reason: Option<String>,
    /// USD the upstream call cost, when known before the body is sent (0 for cache hits).
    pub cost_usd: Option<f64>,
    /// Cache outcome for the header and metrics.
    pub outcome: CacheOutcome,
    /// Details of a cache hit, for the response headers.
    pub hit: Option<HitInfo>,
    /// The body.
    pub body: ReplyBody,
}

/// Who is asking besides the key, and what the limits reported: the handler fills `user` (the
/// body's `user` or `x-sluice-user`), the pipeline fills `rate` for the `x-ratelimit-*` headers
/// of the response, error or not.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The end user, if named.
    pub user: Option<String>,
    /// Rate-limit state of the tightest scope, once admitted.
    pub rate: Option<RateHeaders>,
    /// PII kinds the guard found in the prompt (for the audit record; never values).
    pub pii_kinds: Vec<String>,
    /// Key id and alias of the caller, once authenticated (for the audit record).
    pub key: Option<(String, Option<String>)>,
    /// Token usage once known: set by the pipeline (at the end of a stream, from its task), read
    /// when the audit record is written.
    pub usage: Arc<parking_lot::Mutex<Option<Usage>>>,
    /// The prompt and answer for the audit record, kept only with `audit.log_bodies`.
    pub bodies: Option<Arc<parking_lot::Mutex<Bodies>>>,
}

/// What the audit record keeps of an exchange with `audit.log_bodies` (masked when written).
#[derive(Debug, Clone, Default)]
pub struct Bodies {
    /// The messages as sent on (after the PII guard).
    pub prompt: Option<Value>,
    /// The answer's message per choice, as the caller got it.
    pub answer: Option<Value>,
}

/// The messages of each choice of a chat completion (what the audit record keeps of it).
fn answer_of(completion: &Value) -> Value {
    let messages = completion
        .get("choices")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("message").cloned())
                .collect()
        })
        .unwrap_or_default();
    Value::Array(messages)
}

/// Passes a chat SSE answer through unchanged while accumulating it; at its end the answer goes
/// to the audit bodies.
struct AnswerTap {
    acc: crate::stream::ChatAccumulator,
    bodies: Arc<parking_lot::Mutex<Bodies>>,
    done: bool,
}

impl AnswerTap {
    fn keep(&mut self) {
        let acc = std::mem::take(&mut self.acc);
        self.bodies.lock().answer = Some(answer_of(&acc.into_completion()));
    }
}

impl crate::stream::Reencoder for AnswerTap {
    fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        if data.trim() == "[DONE]" {
            self.done = true;
            self.keep();
        } else if let Ok(chunk) = serde_json::from_str::<Value>(data) {
            self.acc.observe(&chunk);
        }
        vec![Bytes::from(format!("data: {data}\n\n"))]
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn truncated(&mut self) -> Vec<Bytes> {
        self.keep();
        Vec::new()
    }
}

impl Caller {
    /// A caller with an end user.
    pub fn new(user: Option<String>) -> Self {
        Self {
            user,
            ..Self::default()
        }
    }

    /// A caller whose prompt and answer are kept for the audit record when `log_bodies`.
    pub fn keeping_bodies(log_bodies: bool) -> Self {
        Self {
            bodies: log_bodies.then(Default::default),
            ..Self::default()
        }
    }

    /// Keeps the prompt as sent on, for the audit record (with `audit.log_bodies`).
    pub fn keep_prompt(&self, prompt: impl FnOnce() -> Option<Value>) {
        if let Some(b) = &self.bodies {
            b.lock().prompt = prompt();
        }
    }

    /// Keeps the answer of `reply` for the audit record (JSON now, a stream when it ends).
    pub(crate) fn keep_answer(&self, reply: Reply) -> Reply {
        let Some(bodies) = &self.bodies else {
            return reply;
        };
        let body = match reply.body {
            ReplyBody::Json(b) => {
                if let Ok(completion) = serde_json::from_slice::<Value>(&b) {
                    bodies.lock().answer = Some(answer_of(&completion));
                }
                ReplyBody::Json(b)
            }
            ReplyBody::Stream(s) => {
                let tap = AnswerTap {
                    acc: Default::default(),
                    bodies: Arc::clone(bodies),
                    done: false,
                };
                ReplyBody::Stream(Box::pin(crate::stream::reencode(s, tap)))
            }
        };
        Reply { body, ..reply }
    }

    /// Notes who is calling, for the audit record.
    pub fn identify(&mut self, principal: &Principal) {
        self.key = Some((
            principal.key_id().to_string(),
            principal.key().and_then(|k| k.alias.clone()),
        ));
    }

    /// Records the usage of the answer (tokens served or paid for).
    pub fn set_usage(&self, usage: Usage) {
        *self.usage.lock() = Some(usage);
    }

    /// Who pays: the key, and the end user the request names, else the user the key belongs
    /// to (its `user_id`), so spend and user budgets follow the key's owner.
    pub fn payer(&self, principal: &Principal) -> Payer {
        let user = self
            .user
            .clone()
            .or_else(|| principal.key().and_then(|k| k.user_id.clone()));
        Payer {
            key_id: principal.key_id().to_string(),
            key: principal.key().cloned(),
            user,
        }
    }

    /// Replaces the headers with those of settled tickets (counts have changed since admission).
    fn renote(&mut self, tickets: &[Option<&Ticket>]) {
        self.rate = None;
        for t in tickets.iter().flatten() {
            self.note(t.headers());
        }
    }

    /// Keeps the tighter of the headers seen so far and `h`.
    fn note(&mut self, h: &RateHeaders) {
        if h.is_empty() {
            return;
        }
        match &mut self.rate {
            Some(r) => r.tighten(h),
            None => self.rate = Some(*h),
        }
    }
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

/// Orders the deployments that may serve `model` for this request.
pub fn route(state: &AppState, model: &str, needs: &Needs) -> Result<Route, ApiError> {
    state.router.route(model, needs).map_err(|e| match e {
        RouteError::UnknownModel { model } => ApiError::ModelNotFound {
            model,
            available: state
                .router
                .names()
                .iter()
                .cloned()
                .chain(state.router.auto_names().map(str::to_string))
                .collect(),
        },
        e @ RouteError::NoCapableDeployment { .. } => ApiError::NoCapableDeployment(e.to_string()),
    })
}

/// The deployment that answered, how it was chosen, and what happened before it.
pub struct Routed {
    /// The answering deployment and its health record.
    pub target: Arc<Target>,
    /// Strategy and reason, plus the failed attempts before this one.
    pub reason: String,
    /// Its place in the deployment's own rpm/tpm window, to settle with the real usage.
    pub slot: Option<Ticket>,
}

/// Counts an attempt against a deployment's own `rpm`/`tpm` (none: always admitted).
fn admit_deployment(
    state: &AppState,
    d: &Deployment,
    needs: &Needs,
) -> Result<Option<Ticket>, Box<Refusal>> {
    let Some(scope) = Limiter::deployment_scope(d) else {
        return Ok(None);
    };
    let demand = Demand {
        request: true,
        tokens: limits::estimate(needs),
    };
    state.limits.admit(&[scope], demand).map(Some)
}

/// Calls `call` on the route's candidates until one answers: other deployments first, then the
/// same ones again after a backoff (honouring `Retry-After`), then the fallback groups.
/// Client errors (4xx other than 429) end the loop at once: no other deployment would answer
/// differently. Every failure feeds the deployment's health (error rate, cooldown).
/// A deployment at its own `rpm`/`tpm` is skipped without a call and without using up an
/// attempt; when every candidate is, the request is refused with a 429 naming one.
pub async fn with_failover<T, F, Fut>(
    state: &AppState,
    first: Route,
    needs: &Needs,
    mut call: F,
) -> Result<(T, Routed), ApiError>
where
    F: FnMut(Arc<Target>) -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamError>>,
{
    let router = &state.router;
    let cfg = router.config();
    let mut attempts: Vec<String> = Vec::new();
    let mut last: Option<UpstreamError> = None;
    let mut queue = std::collections::VecDeque::from([first]);
    let mut visited: Vec<String> = Vec::new();
    let mut limited: Vec<Box<Refusal>> = Vec::new();
    while let Some(route) = queue.pop_front() {
        visited.push(route.group.clone());
        let n = route.candidates.len();
        // Per candidate: calls made, whether the same deployment may be called again, and the
        // Retry-After it asked for.
        let mut calls = vec![0u32; n];
        let mut again = vec![true; n];
        let mut wait_hint: Vec<Option<Duration>> = vec![None; n];
        let mut class = FailureClass::General;
        for _ in 0..=cfg.num_retries {
            let picked = loop {
                let fresh = (0..n).find(|&i| calls[i] == 0);
                let next = fresh.or_else(|| {
                    (0..n)
                        .filter(|&i| {
                            let allowed = route.candidates[i]
                                .deployment
                                .max_retries
                                .unwrap_or(cfg.num_retries);
                            again[i] && calls[i] <= allowed
                        })
                        .min_by_key(|&i| calls[i])
                });
                let Some(i) = next else { break None };
                match admit_deployment(state, &route.candidates[i].deployment, needs) {
                    Ok(slot) => break Some((i, slot)),
                    Err(r) => {
                        // At its own limit: never called in this request; try the next one.
                        attempts.push(format!(
                            "{} (rate limited by sluice)",
                            route.candidates[i].deployment.id
                        ));
                        calls[i] = calls[i].max(1);
                        again[i] = false;
                        limited.push(r);
                    }
                }
            };
            let Some((i, mut slot)) = picked else { break };
            let t = Arc::clone(&route.candidates[i]);
            if calls[i] > 0 {
                let exp = cfg.backoff_base.as_secs_f64() * 2f64.powi(calls[i] as i32 - 1);
                let jittered = exp * (0.5 + 0.5 * router.jitter());
                let wait = Duration::from_secs_f64(jittered.min(cfg.backoff_max.as_secs_f64()))
                    .max(wait_hint[i].unwrap_or_default());
                metrics::counter!(t::ROUTING_RETRIES_TOTAL, "kind" => "retry").increment(1);
                tokio::time::sleep(wait).await;
            } else if !attempts.is_empty() {
                let kind = if visited.len() > 1 && calls.iter().all(|&c| c == 0) {
                    "fallback"
                } else {
                    "other_deployment"
                };
                metrics::counter!(t::ROUTING_RETRIES_TOTAL, "kind" => kind).increment(1);
            }
            calls[i] += 1;
            let d = &t.deployment;
            metrics::counter!(t::ROUTING_DECISIONS_TOTAL, "model_group" => route.group.clone(), "deployment" => d.id.clone(), "strategy" => route.strategy.as_str())
                .increment(1);
            let now = Instant::now();
            t.health.count_request(needs.prompt_tokens, now);
            let result = {
                let _running = t.health.start();
                call(Arc::clone(&t)).await
            };
            match result {
                Ok(v) => {
                    let mut reason = route.reason.clone();
                    if !attempts.is_empty() {
                        reason.push_str(&format!("; after {}", attempts.join(", ")));
                    }
                    tracing::debug!(model_group = %route.group, deployment = %d.id, %reason, "routed");
                    return Ok((
                        v,
                        Routed {
                            target: t,
                            reason,
                            slot,
                        },
                    ));
                }
                Err(e) => {
                    if let Some(s) = slot.as_mut() {
                        s.settle(0); // the attempt counts as a request; its tokens were not used
                    }
                    record_upstream_error(d, &e);
                    class = FailureClass::of(&e);
                    // A request the upstream rejected as wrong (bad parameter, too long,
                    // refused content) says nothing about the deployment's health: it must not
                    // raise its error rate or cool it down for everyone else.
                    if class.blames_deployment() {
                        record_failure(state, &t);
                    }
                    attempts.push(format!("{} ({})", d.id, e.kind().as_str()));
                    again[i] = FailureClass::retry_same(&e);
                    let hint = e.retry_after().and_then(parse_retry_after);
                    if hint.is_some_and(|h| h > cfg.backoff_max) {
                        again[i] = false; // it asked for longer than we wait: move on
                    }
                    wait_hint[i] = hint;
                    let stop = matches!(
                        class,
                        FailureClass::Client
                            | FailureClass::ContextWindow
                            | FailureClass::ContentPolicy
                    );
                    last = Some(e);
                    if stop {
                        break;
                    }
                }
            }
        }
        for g in router.fallbacks(&route.group, class) {
            if visited.contains(g) || queue.iter().any(|r| &r.group == g) {
                continue;
            }
            match router.route(g, needs) {
                Ok(mut r) => {
                    r.reason = format!("fallback from {} to {}: {}", route.group, g, r.reason);
                    queue.push_back(r);
                }
                Err(e) => {
                    tracing::warn!(from = %route.group, to = %g, error = %e, "fallback group cannot serve")
                }
            }
        }
    }
    let Some(last) = last else {
        // Every candidate was at its own rpm/tpm: refuse with the one that frees up first.
        return Err(limited
            .into_iter()
            .min_by_key(|r| r.retry_after.unwrap_or(Duration::MAX))
            .map_or_else(
                || ApiError::Internal("no deployment to call".into()),
                ApiError::from,
            ));
    };
    Err(if attempts.len() <= 1 {
        ApiError::from(last)
    } else {
        ApiError::AllFailed {
            attempts,
            last: Box::new(last),
        }
    })
}

/// Counts a failure against a deployment; cools it down past `allowed_fails`.
fn record_failure(state: &AppState, t: &Target) {
    let cfg = state.router.config();
    if t.health.record_failure(
        Instant::now(),
        cfg.allowed_fails,
        cfg.cooldown,
        cfg.cooldown,
    ) {
        note_cooldown(&t.deployment.id, cfg.cooldown);
    }
}

/// Logs a cooldown that just started and holds the cooldown gauge at 1 while it lasts.
fn note_cooldown(deployment: &str, cooldown: Duration) {
    tracing::warn!(
        deployment,
        cooldown_s = cooldown.as_secs_f64(),
        "deployment cooling down after repeated failures"
    );
    metrics::gauge!(t::DEPLOYMENT_COOLDOWN, "deployment" => deployment.to_string()).set(1.0);
    let id = deployment.to_string();
    tokio::spawn(async move {
        tokio::time::sleep(cooldown).await;
        metrics::gauge!(t::DEPLOYMENT_COOLDOWN, "deployment" => id).set(0.0);
    });
}

/// `Retry-After` / `retry-after-ms` as a duration (HTTP dates are not worth waiting for).
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Some(ms) = v.strip_suffix("ms") {
        return ms
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|m| Duration::try_from_secs_f64(m / 1e3).ok());
    }
    v.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}

fn record_cost(d: &Deployment, usage: &Usage) -> Option<f64> {
    let cost = d.price?.cost(usage);
    metrics::gauge!(t::COST_USD_TOTAL, "model_group" => d.model_group.clone(), "deployment" => d.id.clone())
        .increment(cost);
    Some(cost)
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

/// What the cache said before any upstream call.
enum Consulted {
    /// Serve this.
    Hit(Hit),
    /// Go upstream; the context (when the cache applies) writes the answer back.
    Miss(Option<CacheCtx>, CacheOutcome),
}

/// Looks `req` up in the cache as `principal` may (its namespace and cache policy, the
/// request's controls). Never fails: a broken lookup is a miss with a warning.
async fn consult(
    state: &AppState,
    principal: &Principal,
    group: &str,
    req: &ChatRequest,
    control: CacheControl,
) -> Consulted {
    let policy = principal.cache_policy();
    let cache_on = !matches!(policy, KeyCachePolicy::Off);
    let Some(engine) = state.cache.as_ref().filter(|c| cache_on && c.enabled()) else {
        return Consulted::Miss(None, CacheOutcome::Bypass);
    };
    // A virtual key's namespace is pinned; only the master key may pick one per request.
    let namespace = control
        .namespace
        .clone()
        .filter(|_| principal.may_choose_namespace())
        .unwrap_or_else(|| principal.namespace().to_string());
    let keys = cache::keys(&namespace, group, req);
    let mut embedding = None;
    let mut outcome = CacheOutcome::Bypass;
    if !control.no_cache {
        let key_threshold = match policy {
            KeyCachePolicy::Threshold { threshold } => Some(threshold),
            KeyCachePolicy::Default | KeyCachePolicy::Off => None,
        };
        let threshold = control
            .threshold
            .or(key_threshold)
            .unwrap_or_else(|| engine.threshold(&namespace, group));
        match engine.lookup(group, &keys, threshold).await {
            Ok(found) => {
                if let Some(hit) = found.hit {
                    return Consulted::Hit(hit);
                }
                embedding = found.embedding;
                outcome = CacheOutcome::Miss;
            }
            Err(e) => tracing::warn!(error = %e, "cache lookup failed; going upstream"),
        }
    }
    record_lookup(outcome);
    Consulted::Miss(
        Some(CacheCtx {
            engine: Arc::clone(engine),
            namespace,
            keys,
            embedding,
            control,
            outcome,
        }),
        outcome,
    )
}

/// The cache's part of a request whose upstream call is not a chat completion (the native
/// Responses passthrough): the lookup and a hit's accounting exactly as for chat. `Ok(Ok)` is a
/// hit, served without an upstream call; `Ok(Err)` a miss, with the writer for its answer (none
/// when the cache does not apply); the caller admits and accounts the upstream call itself.
pub async fn cache_first(
    state: &AppState,
    principal: &Principal,
    group: &str,
    req: &ChatRequest,
    control: CacheControl,
    caller: &mut Caller,
) -> Result<Result<Reply, Option<CacheCtx>>, ApiError> {
    let may_hit = !matches!(principal.cache_policy(), KeyCachePolicy::Off)
        && state.cache.as_ref().is_some_and(|c| c.enabled())
        && !control.no_cache;
    if !may_hit {
        return Ok(Err(
            match consult(state, principal, group, req, control).await {
                Consulted::Miss(ctx, _) => ctx,
                Consulted::Hit(_) => None, // no lookup was made: unreachable
            },
        ));
    }
    // Only the request counts while a hit is possible, as for chat; a miss hands the count back
    // so the caller's own admission counts it once.
    let payer = caller.payer(principal);
    let scopes = state
        .limits
        .scopes(principal.key().map(|k| &**k), caller.user.as_deref(), group);
    let demand = Demand {
        request: true,
        tokens: 0,
    };
    let mut ticket = state.limits.admit(&scopes, demand)?;
    match consult(state, principal, group, req, control).await {
        Consulted::Hit(hit) => {
            caller.note(ticket.headers());
            account_hit(state, &payer, group, hit.usage, ticket);
            Ok(Ok(hit_reply(hit, req)))
        }
        Consulted::Miss(ctx, _) => {
            ticket.cancel();
            Ok(Err(ctx))
        }
    }
}

/// The cache's part of one request: where and under which keys its answer is written back.
pub struct CacheCtx {
    engine: Arc<CacheEngine>,
    namespace: String,
    keys: CacheKeys,
    embedding: Option<Vec<f32>>,
    control: CacheControl,
    outcome: CacheOutcome,
}

impl CacheCtx {
    /// What the lookup found: `miss`, or `bypass` when the request skipped it.
    pub fn outcome(&self) -> CacheOutcome {
        self.outcome
    }

    /// The write-back of a streamed answer, which the stream completes before its last bytes
    /// go out (none with `no-store`).
    pub fn store_at_end(
        self,
        group: String,
        completion: Value,
        usage: Usage,
    ) -> Option<crate::stream::Settling> {
        if self.control.no_store {
            return None;
        }
        Some(Box::pin(async move {
            self.store(&group, &completion, usage).await
        }))
    }

    /// Stores an answer now, unless the request said `no-store`. Best effort: the answer is
    /// already paid for, so a failed write is logged and the client still gets it.
    pub async fn store(self, group: &str, completion: &Value, usage: Usage) {
        if self.control.no_store {
            return;
        }
        let answer = Answer {
            completion,
            usage,
            ttl: self.control.ttl,
        };
        let r = self
            .engine
            .store_answer(&self.namespace, group, self.keys, self.embedding, answer)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cache write-back failed");
        }
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
        route_reason: None,
        cost_usd: Some(0.0),
        outcome: hit.kind,
        hit: Some(HitInfo {
            entry_id: (hit.entry_id != 0).then_some(hit.entry_id),
            similarity: hit.similarity,
            age: hit.age,
        }),
        body,
    }
}

/// Counts the prompt with the tokenizer of the model the route's first candidate runs, when
/// the group's name implied another one (a group called `smart` running `gpt-4o`).
fn refine_estimate(needs: &mut Needs, req: &ChatRequest, route: &Route) {
    let Some(first) = route.candidates.first() else {
        return;
    };
    let by_deployment = Tokenizer::for_model(&first.deployment.upstream_model);
    if by_deployment != Tokenizer::for_model(&req.model) {
        needs.prompt_tokens = tokens::prompt_tokens_with(req, by_deployment);
    }
}

/// What a request is expected to cost at the first candidate's price: the estimated prompt plus
/// `max_tokens` of output when the request sets it (0 without a price).
pub fn expected_cost(route: &Route, needs: &Needs) -> f64 {
    route
        .candidates
        .first()
        .and_then(|t| t.deployment.price)
        .map_or(0.0, |p| {
            p.expected(needs.prompt_tokens, needs.max_output.unwrap_or(0))
        })
}

/// The second half of admission, once the cache has missed: budgets, then tokens. A refusal
/// takes back the request already counted.
fn admit_upstream(
    state: &AppState,
    payer: &Payer,
    expected_usd: f64,
    scopes: &[Scope],
    ticket: &mut Ticket,
    estimate: u64,
    caller: &mut Caller,
) -> Result<(), ApiError> {
    if let Err(b) = state.spend.check_with(payer, expected_usd) {
        ticket.cancel();
        return Err(b.into());
    }
    state.limits.admit_tokens(scopes, ticket, estimate)?;
    caller.note(ticket.headers());
    Ok(())
}

/// A cache hit's part in limits and spend: a request, no tokens (unless configured) and no cost,
/// and what it saved.
fn account_hit(state: &AppState, payer: &Payer, group: &str, usage: Usage, mut ticket: Ticket) {
    let tokens = if state.limits.config().cache_hits_count_tokens {
        usage.prompt_tokens + usage.completion_tokens
    } else {
        0
    };
    ticket.settle(tokens);
    let charge = Charge {
        group,
        usage,
        cost_usd: 0.0,
        cache_hit: true,
    };
    state.spend.record(payer, &charge);
}

/// Undoes an admitted request that failed: refused by every deployment's own limit, nothing
/// counts; failed upstream, the request counts and its tokens do not.
fn refund(ticket: &mut Ticket, e: &ApiError) {
    if matches!(e, ApiError::RateLimited(_)) {
        ticket.cancel();
    } else {
        ticket.settle(0);
    }
}

/// Serves one chat completion.
pub async fn chat(
    state: &AppState,
    principal: &Principal,
    mut req: ChatRequest,
    control: CacheControl,
    caller: &mut Caller,
) -> Result<Reply, ApiError> {
    if !principal.allows_model(&req.model) {
        return Err(ApiError::ModelNotAllowed {
            model: req.model.clone(),
        });
    }
    let mut needs = Needs::of(&req);
    let route = route(state, &req.model, &needs)?;
    refine_estimate(&mut needs, &req, &route);
    // The PII guard goes first: the cache key, the embedding and the upstream only ever see
    // the prompt as the policy leaves it (masked, or refused).
    let policies = state.pii.policies(principal.pii(), &route.group);
    let guarded = state.pii.guard_request(&mut req, policies)?;
    caller.pii_kinds = guarded.kind_names();
    caller.keep_prompt(|| serde_json::to_value(&req.messages).ok());
    let reply = serve_chat(state, principal, req, control, caller, needs, route).await?;
    if guarded.is_noop() {
        return Ok(caller.keep_answer(reply));
    }
    // On the way back: the answer policy, then the caller's own values restored.
    let body = match reply.body {
        ReplyBody::Json(b) => ReplyBody::Json(guarded.answer_json(&state.pii, b)?),
        ReplyBody::Stream(s) => ReplyBody::Stream(guarded.answer_stream(Arc::clone(&state.pii), s)),
    };
    Ok(caller.keep_answer(Reply { body, ..reply }))
}

/// The chat pipeline after routing and the PII guard: limits, cache, upstream, write-back.
async fn serve_chat(
    state: &AppState,
    principal: &Principal,
    req: ChatRequest,
    control: CacheControl,
    caller: &mut Caller,
    needs: Needs,
    route: Route,
) -> Result<Reply, ApiError> {
    let group = route.group.clone();
    let cache_on = !matches!(principal.cache_policy(), KeyCachePolicy::Off);

    // 0. Limits (key, end user, group, gateway). A cache hit costs nothing, so while one is
    //    possible only the request is counted here; tokens and budgets wait for a miss.
    let payer = caller.payer(principal);
    let scopes = state.limits.scopes(
        principal.key().map(|k| &**k),
        caller.user.as_deref(),
        &group,
    );
    let estimate = limits::estimate(&needs);
    let may_hit = cache_on && state.cache.as_ref().is_some_and(|c| c.enabled());
    let expected_usd = expected_cost(&route, &needs);
    if !may_hit {
        state.spend.check_with(&payer, expected_usd)?;
    } else if state.spend.counts_cache_hits() {
        // Hits are charged too: a spent budget stops them (their cost is not known yet).
        state.spend.check(&payer)?;
    }
    let demand = Demand {
        request: true,
        tokens: if may_hit { 0 } else { estimate },
    };
    let mut ticket = state.limits.admit(&scopes, demand)?;
    caller.note(ticket.headers());

    // 1. Cache lookup (exact, then semantic + verification).
    let (ctx, outcome) = match consult(state, principal, &group, &req, control).await {
        Consulted::Hit(hit) => {
            caller.set_usage(hit.usage);
            account_hit(state, &payer, &group, hit.usage, ticket);
            return Ok(hit_reply(hit, &req));
        }
        Consulted::Miss(ctx, outcome) => (ctx, outcome),
    };
    // 2. Identical misses in flight: one upstream call, the others wait for its answer.
    let mut leader: Option<FlightGuard> = None;
    if let Some(c) = ctx.as_ref().filter(|c| !c.control.no_store) {
        match c.engine.join_flight(c.keys.exact) {
            Flight::Leader(g) => leader = Some(g),
            Flight::Follower(mut rx) => {
                let patience = route
                    .candidates
                    .first()
                    .map_or(Duration::from_secs(600), |t| t.deployment.timeout);
                let waited = tokio::time::timeout(
                    patience,
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
                        caller.set_usage(hit.usage);
                        account_hit(state, &payer, &group, hit.usage, ticket);
                        return Ok(hit_reply(hit, &req));
                    }
                }
                // The leader failed: this request goes upstream on its own.
            }
        }
    }

    // 3. Upstream: budgets and tokens first, then the route's candidates in order, with retries
    //    and fallbacks.
    if may_hit {
        admit_upstream(
            state,
            &payer,
            expected_usd,
            &scopes,
            &mut ticket,
            estimate,
            caller,
        )?;
    }
    if !req.is_stream() {
        let result = with_failover(state, route, &needs, |t| {
            let req = &req;
            async move {
                let started = Instant::now();
                let c = providers::chat(&state.http, &t.deployment, req).await?;
                let took = started.elapsed();
                t.health.record_success(Some(took), Some(took));
                t.health
                    .add_tokens(c.usage.completion_tokens, Instant::now());
                record_upstream_latency(&t.deployment, started);
                Ok(c)
            }
        })
        .await;
        let (c, mut routed) = result.inspect_err(|e| refund(&mut ticket, e))?;
        let d = Arc::clone(&routed.target.deployment);
        record_tokens(&group, &c.usage);
        caller.set_usage(c.usage);
        let cost_usd = record_cost(&d, &c.usage);
        // 4. Settle the estimate with the real usage; record the spend.
        let used = c.usage.prompt_tokens + c.usage.completion_tokens;
        ticket.settle(used);
        if let Some(slot) = routed.slot.as_mut() {
            slot.settle(used);
        }
        caller.renote(&[Some(&ticket), routed.slot.as_ref()]);
        let charge = Charge {
            group: &group,
            usage: c.usage,
            cost_usd: cost_usd.unwrap_or(0.0),
            cache_hit: false,
        };
        state.spend.record(&payer, &charge);
        // 5. Write back before answering, so an acknowledged answer is a stored one.
        if let Some(cc) = ctx.filter(|c| !c.control.no_store) {
            if let Ok(completion) = serde_json::from_slice::<Value>(&c.body) {
                if let Some(g) = leader.take() {
                    if cache::cacheable(&completion) {
                        g.complete(Arc::new(completion.clone()), c.usage);
                    }
                }
                cc.store(&group, &completion, c.usage).await;
            }
        }
        return Ok(Reply {
            deployment: Some(d),
            route_reason: Some(routed.reason),
            cost_usd,
            outcome,
            hit: None,
            body: ReplyBody::Json(c.body),
        });
    }

    let client_wants_usage = req.wants_stream_usage();
    // Failover is possible only until the first byte reaches the client, so each attempt waits
    // for the first chunk: an attempt that fails before it counts as failed and the next one runs.
    let result = with_failover(state, route, &needs, |t| {
        let req = &req;
        async move {
            let d = &t.deployment;
            // Ask for usage even when the client did not, to count tokens; the tee strips it.
            let force_usage = !client_wants_usage && providers::supports_stream_usage(d);
            let started = Instant::now();
            let mut s =
                providers::chat_stream(&state.http, d, req, client_wants_usage || force_usage)
                    .await?;
            match s.next().await {
                Some(Ok(first)) => {
                    t.health.record_success(Some(started.elapsed()), None);
                    Ok((first, s, force_usage, started))
                }
                Some(Err(e)) => Err(e),
                None => Err(UpstreamError::Protocol {
                    deployment: providers::label(d),
                    detail: "the stream ended before any data".into(),
                }),
            }
        }
    })
    .await;
    let ((first, rest, force_usage, started), mut routed) =
        result.inspect_err(|e| refund(&mut ticket, e))?;
    if let Some(slot) = &routed.slot {
        caller.note(slot.headers());
    }
    let mut slot = routed.slot.take();
    let spend = Arc::clone(&state.spend);
    let spend_group = group.clone();
    let target = Arc::clone(&routed.target);
    let d = Arc::clone(&target.deployment);
    let upstream: providers::ChunkStream =
        Box::pin(futures_util::stream::once(async move { Ok(first) }).chain(rest));
    let dep = Arc::clone(&d);
    let (allowed_fails, cooldown) = {
        let cfg = state.router.config();
        (cfg.allowed_fails, cfg.cooldown)
    };
    let usage_cell = Arc::clone(&caller.usage);
    let on_finish = Box::new(move |o: StreamOutcome| {
        record_upstream_latency(&dep, started);
        if let Some(u) = o.usage {
            *usage_cell.lock() = Some(u);
        }
        if let Some(first) = o.first_token_at {
            metrics::histogram!(t::UPSTREAM_TTFT, "deployment" => dep.id.clone())
                .record(first.duration_since(started).as_secs_f64());
        }
        let usage = o.usage.unwrap_or_default();
        record_tokens(&dep.model_group, &usage);
        let cost_usd = record_cost(&dep, &usage);
        // Without a usage chunk the estimate stands; with one, the real count replaces it.
        let used = o
            .usage
            .map_or(ticket.tokens(), |u| u.prompt_tokens + u.completion_tokens);
        ticket.settle(used);
        if let Some(s) = slot.as_mut() {
            s.settle(used);
        }
        let charge = Charge {
            group: &spend_group,
            usage,
            cost_usd: cost_usd.unwrap_or(0.0),
            cache_hit: false,
        };
        spend.record(&payer, &charge);
        target
            .health
            .add_tokens(usage.completion_tokens, Instant::now());
        if let Some(e) = &o.error {
            record_upstream_error(&dep, e);
            if target
                .health
                .record_failure(Instant::now(), allowed_fails, cooldown, cooldown)
            {
                note_cooldown(&dep.id, cooldown);
            }
        } else if o.clean {
            target.health.record_success(None, Some(started.elapsed()));
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
            if let Some(cc) = ctx {
                return cc.store_at_end(group, completion, usage);
            }
        }
        None
    });
    Ok(Reply {
        deployment: Some(d),
        route_reason: Some(routed.reason),
        cost_usd: None,
        outcome,
        hit: None,
        body: ReplyBody::Stream(Box::pin(Tee::new(upstream, force_usage, on_finish))),
    })
}

/// Serves one embeddings request.
pub async fn embeddings(
    state: &AppState,
    principal: &Principal,
    req: EmbeddingsRequest,
    caller: &mut Caller,
) -> Result<Reply, ApiError> {
    if !principal.allows_model(&req.model) {
        return Err(ApiError::ModelNotAllowed {
            model: req.model.clone(),
        });
    }
    let route = route(state, &req.model, &Needs::default())?;
    let group = route.group.clone();
    let model = route
        .candidates
        .first()
        .map_or(req.model.as_str(), |t| t.deployment.upstream_model.as_str());
    let needs = Needs {
        prompt_tokens: tokens::input_tokens(&req.input, model),
        ..Needs::default()
    };
    // Limits and budgets: nothing to wait for, everything is checked at once.
    let payer = caller.payer(principal);
    state
        .spend
        .check_with(&payer, expected_cost(&route, &needs))?;
    let scopes = state.limits.scopes(
        principal.key().map(|k| &**k),
        caller.user.as_deref(),
        &group,
    );
    let demand = Demand {
        request: true,
        tokens: limits::estimate(&needs),
    };
    let mut ticket = state.limits.admit(&scopes, demand)?;
    caller.note(ticket.headers());
    let result = with_failover(state, route, &needs, |t| {
        let req = &req;
        async move {
            let started = Instant::now();
            let c = providers::embeddings(&state.http, &t.deployment, req).await?;
            t.health
                .record_success(Some(started.elapsed()), Some(started.elapsed()));
            record_upstream_latency(&t.deployment, started);
            Ok(c)
        }
    })
    .await;
    let (c, mut routed) = result.inspect_err(|e| refund(&mut ticket, e))?;
    let d = Arc::clone(&routed.target.deployment);
    record_tokens(&d.model_group, &c.usage);
    caller.set_usage(c.usage);
    let cost_usd = record_cost(&d, &c.usage);
    let used = c.usage.prompt_tokens + c.usage.completion_tokens;
    ticket.settle(used);
    if let Some(slot) = routed.slot.as_mut() {
        slot.settle(used);
    }
    caller.renote(&[Some(&ticket), routed.slot.as_ref()]);
    let charge = Charge {
        group: &group,
        usage: c.usage,
        cost_usd: cost_usd.unwrap_or(0.0),
        cache_hit: false,
    };
    state.spend.record(&payer, &charge);
    Ok(Reply {
        deployment: Some(d),
        route_reason: Some(routed.reason),
        cost_usd,
        outcome: CacheOutcome::Bypass,
        hit: None,
        body: ReplyBody::Json(c.body),
    })
}
