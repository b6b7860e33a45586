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
pub async fn create(
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
        Err(e) => return e.error_response(),
    };
    let max = state.config.realtime.max_sockets_per_key;
    let Some(slot) = realtime::open_sockets(principal.key_id(), max) else {
        return super::realtime::refuse(&realtime::AdmitError::TooManySockets {
            who: format!("key '{}'", principal.key_id()),
            max,
        });
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
