//! `POST /v1/chat/completions` and `POST /v1/embeddings`.

use super::read_json;
use crate::audit::{AuditLog, RequestRecord};
use crate::auth::authenticate;
use crate::cache;
use crate::dashboard::ttft::FirstByte;
use crate::dashboard::Dashboard;
use crate::error::ApiError;
use crate::limits;
use crate::pii::{Masker, PiiGuard};
use crate::pipeline::{self, Bodies, Caller, Reply, ReplyBody};
use crate::state::AppState;
use crate::stream::OnEnd;
use crate::telemetry as t;
use crate::wire::Usage;
use crate::wire::{ChatRequest, EmbeddingsRequest};
use actix_web::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::sync::Arc;
use std::time::Instant;

/// Header naming the deployment that answered and why: `gpt-4o/1; balanced: lowest score ...`.
pub const ROUTE_HEADER: &str = "x-sluice-route";
/// Header with the USD cost of the upstream call (0 for cache hits; absent for streams).
pub const COST_HEADER: &str = "x-sluice-cost-usd";
/// Header with the cache outcome.
pub const CACHE_HEADER: &str = "x-sluice-cache";
/// Header with the id of the entry that answered.
pub const ENTRY_HEADER: &str = "x-sluice-cache-entry";
/// Header with the similarity of a semantic hit.
pub const SIMILARITY_HEADER: &str = "x-sluice-cache-similarity";
/// Header with the age of a cached answer in seconds.
pub const AGE_HEADER: &str = "x-sluice-cache-age";

/// The model group as a bounded metric label.
fn group_label(state: &AppState, model: Option<&str>) -> String {
    match model {
        Some(m) if state.router.group(m).is_some() => m.to_string(),
        _ => t::UNKNOWN_GROUP.to_string(),
    }
}

/// What the audit record of one API request needs from its handler.
pub(super) struct Audit<'a> {
    /// The HTTP request (for its request id and path).
    pub req: &'a HttpRequest,
    /// Who called, the end user, PII kinds, usage.
    pub caller: &'a Caller,
}

impl Audit<'_> {
    /// The record as far as it is known when the response starts.
    fn record(
        &self,
        model: Option<&str>,
        reply: Option<&Reply>,
        status: StatusCode,
    ) -> RequestRecord {
        RequestRecord {
            request_id: super::RequestId::of(self.req),
            endpoint: self.req.path().to_string(),
            model_group: model.map(str::to_string),
            deployment: reply
                .and_then(|r| r.deployment.as_ref())
                .map(|d| d.id.clone()),
            cache_outcome: reply.map(|r| r.outcome.as_str().to_string()),
            status: status.as_u16(),
            cost_usd: reply.and_then(|r| r.cost_usd).unwrap_or(0.0),
            ..base_record(self.caller)
        }
    }
}

/// Appends the audit record of a WebSocket handshake refused before the upgrade (the key is
/// named when it authenticated).
pub(crate) fn audit_refusal(state: &AppState, req: &HttpRequest, status: StatusCode) {
    let mut caller = Caller::default();
    if let Ok(p) = authenticate(state, req.headers()) {
        caller.identify(&p);
    }
    let record = RequestRecord {
        request_id: super::RequestId::of(req),
        endpoint: req.path().to_string(),
        model_group: None,
        status: status.as_u16(),
        ..base_record(&caller)
    };
    PendingRecord::new(state, record, &caller, Instant::now()).append(None, None);
}

/// The part of a request's audit record its caller knows: key id and alias, end user, PII kinds.
pub(crate) fn base_record(caller: &Caller) -> RequestRecord {
    let (key_id, key_alias) = caller
        .key
        .clone()
        .unwrap_or_else(|| ("unauthenticated".to_string(), None));
    RequestRecord {
        key_id,
        key_alias,
        user: caller.user.clone(),
        pii_kinds: caller.pii_kinds.clone(),
        ..RequestRecord::default()
    }
}

/// An audit record waiting for the end of its response: usage, cost, latency and (with
/// `audit.log_bodies`) the masked prompt and answer are known only then.
pub(crate) struct PendingRecord {
    log: Arc<AuditLog>,
    dashboard: Arc<Dashboard>,
    pii: Arc<PiiGuard>,
    record: RequestRecord,
    usage: Arc<parking_lot::Mutex<Option<Usage>>>,
    bodies: Option<Arc<parking_lot::Mutex<Bodies>>>,
    started: Instant,
}

impl PendingRecord {
    /// A record of `caller`'s request begun at `started`.
    pub(crate) fn new(
        state: &AppState,
        record: RequestRecord,
        caller: &Caller,
        started: Instant,
    ) -> Self {
        PendingRecord {
            log: Arc::clone(&state.audit),
            dashboard: Arc::clone(&state.dashboard),
            pii: Arc::clone(&state.pii),
            record,
            usage: Arc::clone(&caller.usage),
            bodies: caller.bodies.clone(),
            started,
        }
    }

    /// Completes the record with what is known at the end, feeds the dashboard's rollups and
    /// live tail (memory only), and appends it. The audit log is best effort for the request: a
    /// failed append is logged, the client keeps its answer.
    pub(crate) fn append(
        self,
        stream_price: Option<crate::pricing::Price>,
        first_byte: Option<Instant>,
    ) {
        let mut record = self.record;
        if let Some(u) = *self.usage.lock() {
            record.prompt_tokens = u.prompt_tokens;
            record.completion_tokens = u.completion_tokens;
            // An upstream stream's cost is known only at its end.
            if let Some(price) = stream_price {
                record.cost_usd = price.cost(&u);
            }
        }
        if let Some(bodies) = self.bodies {
            let b = bodies.lock().clone();
            let mut body = serde_json::json!({"prompt": b.prompt, "answer": b.answer});
            // Whatever the request's PII policy, bodies are stored masked.
            Masker::new().mask_json(self.pii.scanner(), &mut body);
            record.body = Some(body);
        }
        record.latency_ms = self.started.elapsed().as_secs_f64() * 1e3;
        let ttft_ms = first_byte.map(|t| t.duration_since(self.started).as_secs_f64() * 1e3);
        self.dashboard.record(&record, ttft_ms);
        if let Err(e) = self.log.append_request(record) {
            tracing::warn!(error = %e, "audit append failed");
        }
    }
}

/// Turns a pipeline result into a response, recording request metrics and the audit record.
/// The caller's rate state becomes the `x-ratelimit-*` headers (a rate-limit refusal brings its
/// own).
pub(super) fn respond(
    state: &AppState,
    model: Option<&str>,
    started: Instant,
    result: Result<Reply, ApiError>,
    audit: Audit<'_>,
) -> HttpResponse {
    let rate = audit.caller.rate.as_ref();
    let group = group_label(state, model);
    let status_of = |r: &Result<Reply, ApiError>| match r {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status_code(),
    };
    let record = audit.record(model, result.as_ref().ok(), status_of(&result));
    let pending = PendingRecord::new(state, record, audit.caller, started);
    let (mut response, outcome) = match result {
        Ok(reply) => {
            let mut b = HttpResponse::Ok();
            b.insert_header((CACHE_HEADER, reply.outcome.as_str()));
            if let Some(hit) = &reply.hit {
                if let Some(id) = hit.entry_id {
                    b.insert_header((ENTRY_HEADER, id.to_string()));
                }
                if let Some(sim) = hit.similarity {
                    b.insert_header((SIMILARITY_HEADER, format!("{sim:.4}")));
                }
                b.insert_header((AGE_HEADER, hit.age.as_secs().to_string()));
                b.insert_header((ROUTE_HEADER, "cache"));
            }
            if let Some(d) = &reply.deployment {
                let full = match &reply.route_reason {
                    Some(r) => format!("{}; {r}", d.id),
                    None => d.id.clone(),
                };
                if let Ok(v) =
                    HeaderValue::from_str(&full).or_else(|_| HeaderValue::from_str(&d.id))
                {
                    b.insert_header((ROUTE_HEADER, v));
                }
            }
            if let Some(cost) = reply.cost_usd {
                b.insert_header((COST_HEADER, format!("{cost:.8}")));
            }
            let resp = match reply.body {
                ReplyBody::Json(bytes) => {
                    pending.append(None, None);
                    b.insert_header((CONTENT_TYPE, HeaderValue::from_static("application/json")))
                        .body(bytes)
                }
                ReplyBody::Stream(tee) => {
                    // The record waits for the end of the stream: its usage and cost come last.
                    let price = reply.deployment.as_ref().and_then(|d| d.price);
                    let first = Arc::new(std::sync::OnceLock::new());
                    let tee = FirstByte::new(tee, Arc::clone(&first));
                    let hook = Box::new(move || {
                        let first = first.get().copied();
                        pending.append(price, first);
                    });
                    b.insert_header((CONTENT_TYPE, HeaderValue::from_static("text/event-stream")))
                        .insert_header((CACHE_CONTROL, HeaderValue::from_static("no-cache")))
                        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
                        .streaming(OnEnd::new(tee, hook))
                }
            };
            (resp, reply.outcome.as_str())
        }
        Err(e) => {
            pending.append(None, None);
            (e.error_response(), "error")
        }
    };
    if let Some(rate) = rate {
        let headers = response.headers_mut();
        for (name, value) in rate.pairs() {
            if !headers.contains_key(&name) {
                headers.insert(name, value);
            }
        }
    }
    let status = response.status();
    metrics::counter!(t::REQUESTS_TOTAL, "model_group" => group.clone(), "status" => status_label(status), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(t::REQUEST_DURATION, "model_group" => group, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    response
}

fn status_label(s: StatusCode) -> &'static str {
    // A fixed set keeps the label bounded whatever status an upstream invents.
    match s.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        n if n < 500 => "4xx",
        _ => "5xx",
    }
}

/// `POST /v1/chat/completions`.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "openai",
    description = "OpenAI chat completions through the semantic cache and the router. Also served \
        at `/chat/completions`. With `stream: true` the answer is server-sent events.",
    params(super::openapi::CacheHeaders),
    request_body = super::openapi::ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion (`x-sluice-cache` says whether it came from the cache)",
            content(
                (super::openapi::ChatCompletion = "application/json"),
                (String = "text/event-stream"),
            )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = "4XX", description = "Another client error relayed from the provider", body = super::openapi::ErrorBody),
        (status = "5XX", response = super::openapi::UpstreamFailure),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn chat_completions(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let mut model = None;
    let mut caller = Caller::keeping_bodies(state.audit.options().log_bodies);
    let result = async {
        let principal = authenticate(&state, req.headers())?;
        caller.identify(&principal);
        let chat: ChatRequest = read_json(&req, payload, &state).await?;
        model = Some(chat.model.clone());
        chat.validate()?;
        let control = cache::control::parse(req.headers(), chat.cache.as_ref())
            .map_err(|e| ApiError::invalid(&e.param, e.message))?;
        caller.user = limits::end_user(req.headers(), chat.user.as_deref());
        pipeline::chat(&state, &principal, chat, control, &mut caller).await
    }
    .await;
    let audit = Audit {
        req: &req,
        caller: &caller,
    };
    respond(&state, model.as_deref(), started, result, audit)
}

/// `POST /v1/embeddings`.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    description = "OpenAI embeddings (not cached). Also served at `/embeddings`.",
    request_body = super::openapi::EmbeddingsRequest,
    responses(
        (status = 200, description = "The embeddings", body = super::openapi::EmbeddingsResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = "4XX", description = "Another client error relayed from the provider", body = super::openapi::ErrorBody),
        (status = "5XX", response = super::openapi::UpstreamFailure),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn embeddings(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    let started = Instant::now();
    let mut model = None;
    let mut caller = Caller::default();
    let result = async {
        let principal = authenticate(&state, req.headers())?;
        caller.identify(&principal);
        let emb: EmbeddingsRequest = read_json(&req, payload, &state).await?;
        model = Some(emb.model.clone());
        emb.validate()?;
        let body_user = emb.extra.get("user").and_then(serde_json::Value::as_str);
        caller.user = limits::end_user(req.headers(), body_user);
        pipeline::embeddings(&state, &principal, emb, &mut caller).await
    }
    .await;
    let audit = Audit {
        req: &req,
        caller: &caller,
    };
    respond(&state, model.as_deref(), started, result, audit)
}
