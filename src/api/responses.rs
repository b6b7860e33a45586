//! `POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`:
//! the OpenAI Responses API over HTTP. Thin: auth, body, cache controls, then `responses`.

use super::chat::respond;
use super::read_json;
use crate::auth::authenticate;
use crate::cache;
use crate::error::ApiError;
use crate::limits;
use crate::pipeline::Caller;
use crate::realtime;
use crate::responses::{self, ListQuery, ResponsesError, ResponsesRequest};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::time::Instant;

/// `POST /v1/responses`.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "openai",
    description = "OpenAI's Responses API, translated to chat for providers without it. Also served at `/responses`. With `stream: true` the answer is server-sent events. 404 also for a `previous_response_id` this key cannot continue.",
    params(super::openapi::CacheHeaders),
    request_body = super::openapi::ResponsesRequest,
    responses(
        (status = 200, description = "The response", content((super::openapi::ResponseObject = "application/json"), (String = "text/event-stream"))),
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
pub async fn create(
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
        let body: ResponsesRequest = read_json(&req, payload, &state).await?;
        model = Some(body.model.clone());
        let control = cache::control::parse(req.headers(), body.cache.as_ref())
            .map_err(|e| ApiError::invalid(&e.param, e.message))?;
        caller.user = limits::end_user(req.headers(), body.user.as_deref());
        responses::create(&state, &principal, body, control, &mut caller).await
    }
    .await;
    let audit = || super::chat::Audit {
        req: &req,
        caller: &caller,
    };
    match result {
        Ok(reply) => respond(&state, model.as_deref(), started, Ok(reply), audit()),
        Err(ResponsesError::Api(e)) => respond(&state, model.as_deref(), started, Err(e), audit()),
        Err(e) => e.error_response(),
    }
}

/// `GET /v1/responses` with `Upgrade: websocket`: the WebSocket mode. Auth and the per-key
/// socket count are checked before the upgrade (plain HTTP errors); a GET without an upgrade is
/// 405 as before.
#[utoipa::path(
    get,
    path = "/v1/responses",
    tag = "openai",
    description = "WebSocket mode of the Responses API: needs `Upgrade: websocket`; a plain GET is 405.",
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 405, response = super::openapi::MethodNotAllowed),
        (status = 429, response = super::openapi::TooManyRequests),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn connect(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> HttpResponse {
    let upgrade = req
        .headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"));
    if !upgrade {
        return ApiError::MethodNotAllowed {
            method: req.method().to_string(),
            path: req.path().to_string(),
        }
        .error_response();
    }
    let principal = match authenticate(&state, req.headers()) {
        Ok(p) => p,
        Err(e) => {
            super::chat::audit_refusal(&state, &req, e.status_code());
            return e.error_response();
        }
    };
    let max = state.config.realtime.max_sockets_per_key;
    let Some(slot) = realtime::open_sockets(principal.key_id(), max) else {
        let refused = super::realtime::refuse(&realtime::AdmitError::TooManySockets {
            who: format!("key '{}'", principal.key_id()),
            max,
        });
        super::chat::audit_refusal(&state, &req, refused.status());
        return refused;
    };
    let (response, session, stream) = match actix_ws::handle(&req, payload) {
        Ok(parts) => parts,
        Err(e) => {
            return ApiError::InvalidRequest {
                message: format!("this endpoint needs a WebSocket upgrade: {e}"),
                param: None,
            }
            .error_response()
        }
    };
    let conn = responses::ws::Connection {
        principal,
        headers: req.headers().clone(),
        slot,
        request_id: super::RequestId::of(&req),
    };
    actix_web::rt::spawn(responses::ws::run(
        state.into_inner(),
        conn,
        session,
        stream,
    ));
    response
}

/// `GET /v1/responses/{id}`.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    tag = "openai",
    description = "A stored response of this key (404 for another key's).",
    params(("id" = String, Path, description = "Response id (`resp_...`)")),
    responses(
        (status = 200, description = "The response", body = super::openapi::ResponseObject),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn retrieve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let result = async {
        let principal = authenticate(&state, req.headers())?;
        responses::retrieve(&state, &principal, &id).await
    }
    .await;
    json_or_error(result)
}

/// `DELETE /v1/responses/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/responses/{id}",
    tag = "openai",
    description = "Deletes a stored response of this key (404 for another key's).",
    params(("id" = String, Path, description = "Response id (`resp_...`)")),
    responses(
        (status = 200, description = "Deleted", body = super::openapi::ResponseDeleted),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let result = async {
        let principal = authenticate(&state, req.headers())?;
        responses::delete(&state, &principal, &id).await
    }
    .await;
    json_or_error(result)
}

/// `GET /v1/responses/{id}/input_items?order=&limit=&after=`.
#[utoipa::path(
    get,
    path = "/v1/responses/{id}/input_items",
    tag = "openai",
    description = "The input items of a stored response of this key, paginated.",
    params(("id" = String, Path, description = "Response id (`resp_...`)"), super::openapi::InputItemsQuery),
    responses(
        (status = 200, description = "A page of items", body = super::openapi::ItemList),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn input_items(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> HttpResponse {
    let result = async {
        let principal = authenticate(&state, req.headers())?;
        let query = web::Query::<ListQuery>::from_query(req.query_string())
            .map_err(|e| ApiError::invalid("query", format!("invalid query string: {e}")))?;
        responses::input_items(&state, &principal, &id, &query).await
    }
    .await;
    json_or_error(result)
}

fn json_or_error(result: Result<serde_json::Value, ResponsesError>) -> HttpResponse {
    match result {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => e.error_response(),
    }
}
