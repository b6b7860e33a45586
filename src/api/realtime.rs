//! `GET /v1/realtime?model=GROUP`: admits the handshake, upgrades it, and hands the socket to
//! the realtime pump. Refusals are ordinary HTTP errors with OpenAI's body, before the upgrade.

use crate::error::ApiError;
use crate::realtime::{self, AdmitError, REALTIME_SUBPROTOCOL};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

/// Upgrades an admitted handshake and starts relaying; refuses with 4xx otherwise.
#[utoipa::path(
    get,
    path = "/v1/realtime",
    tag = "openai",
    description = "OpenAI Realtime over WebSocket, relayed to a realtime deployment of the group. Refusals are plain HTTP errors before the upgrade; a request without `Upgrade: websocket` is 400.",
    params(("model" = String, Query, description = "A model group with a realtime deployment")),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 429, response = super::openapi::TooManyRequests),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut admitted = match realtime::admit(&state, req.headers(), req.query_string()) {
        Ok(a) => a,
        Err(e) => {
            let refused = refuse(&e);
            super::chat::audit_refusal(&state, &req, refused.status());
            return refused;
        }
    };
    admitted.account.request_id = super::RequestId::of(&req);
    // The key subprotocol is never echoed back; `realtime` is, when offered (browsers require
    // the server to pick one of the protocols they offered).
    let (response, session, stream) =
        match actix_ws::handle_with_protocols(&req, body, &[REALTIME_SUBPROTOCOL]) {
            Ok(parts) => parts,
            Err(e) => {
                return ApiError::InvalidRequest {
                    message: format!("this endpoint needs a WebSocket upgrade: {e}"),
                    param: None,
                }
                .error_response()
            }
        };
    actix_web::rt::spawn(realtime::run(state.into_inner(), admitted, session, stream));
    response
}

/// The HTTP answer to a refused handshake.
pub(super) fn refuse(e: &AdmitError) -> HttpResponse {
    match e {
        AdmitError::Api(api) => api.error_response(),
        AdmitError::TooManySockets { .. } => HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
            .insert_header(("retry-after", "1"))
            .json(json!({"error": {
                "message": e.to_string(),
                "type": "requests",
                "param": null,
                "code": "rate_limit_exceeded",
            }})),
    }
}
