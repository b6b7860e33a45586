//! `POST /v1/messages`: Anthropic's Messages API in front of the chat pipeline, so Anthropic
//! SDK users can point at Sluice.
//!
//! Owns only the edges: the body is translated into an OpenAI chat request, runs through the
//! same auth, cache, routing and providers as `/v1/chat/completions`, and the answer (JSON or
//! SSE) and any error are translated back into Anthropic's shapes.

use super::chat::respond;
use super::read_json;
use crate::auth::authenticate;
use crate::cache;
use crate::error::ApiError;
use crate::limits;
use crate::pipeline::{self, Caller, Reply, ReplyBody};
use crate::providers::anthropic::inbound::{to_chat_request, to_message};
use crate::providers::anthropic::inbound_stream::{anthropic_sse, error_type};
use crate::providers::anthropic::wire::{ErrorDetail, ErrorResponse, MessagesRequest};
use crate::state::AppState;
use actix_web::body::BoxBody;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use serde_json::Value;
use std::time::Instant;

/// The Anthropic error body for an error (same status as on the OpenAI surface).
fn error_body(e: &ApiError) -> Bytes {
    let body = ErrorResponse {
        kind: "error".into(),
        error: ErrorDetail {
            kind: error_type(e.status_code().as_u16()).into(),
            message: crate::keys::redact_secrets(&e.to_string()).into_owned(),
        },
    };
    // Serializing a derived struct to a Vec cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// An error response in Anthropic's shape, with the headers the OpenAI one would have.
fn error_response(e: &ApiError) -> HttpResponse {
    e.error_response()
        .set_body(BoxBody::new(error_body(e)))
        .map_into_boxed_body()
}

/// The pipeline's OpenAI answer as an Anthropic one.
fn to_anthropic(reply: Reply) -> Result<Reply, ApiError> {
    let body = match reply.body {
        ReplyBody::Json(bytes) => {
            let completion: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Internal(format!("chat completion is not JSON: {e}")))?;
            let message = serde_json::to_vec(&to_message(&completion))
                .map_err(|e| ApiError::Internal(format!("cannot encode message: {e}")))?;
            ReplyBody::Json(Bytes::from(message))
        }
        ReplyBody::Stream(stream) => ReplyBody::Stream(Box::pin(anthropic_sse(stream))),
    };
    Ok(Reply { body, ..reply })
}

/// `POST /v1/messages`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "anthropic",
    description = "Anthropic's Messages API on top of the chat pipeline (cache, routing, any provider). Also served at `/messages`. Errors use Anthropic's body.",
    params(super::openapi::CacheHeaders),
    request_body = super::openapi::MessagesRequest,
    responses(
        (status = 200, description = "The message", content((super::openapi::AnthropicMessageResponse = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "Invalid request", body = super::openapi::AnthropicErrorBody),
        (status = 401, description = "Missing, invalid or expired key", body = super::openapi::AnthropicErrorBody),
        (status = 403, description = "The key may not use this model", body = super::openapi::AnthropicErrorBody),
        (status = 404, description = "No such model group", body = super::openapi::AnthropicErrorBody),
        (status = 413, description = "Request body too large", body = super::openapi::AnthropicErrorBody),
        (status = 429, description = "Rate limit or budget exceeded", body = super::openapi::AnthropicErrorBody),
        (status = "4XX", description = "Another client error relayed from the provider", body = super::openapi::AnthropicErrorBody),
        (status = "5XX", description = "Upstream failure or internal error", body = super::openapi::AnthropicErrorBody),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn messages(
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
        let body: MessagesRequest = read_json(&req, payload, &state).await?;
        model = Some(body.model.clone());
        let control = cache::control::parse(req.headers(), body.extra.get("cache"))
            .map_err(|e| ApiError::invalid(&e.param, e.message))?;
        let chat = to_chat_request(body)?;
        chat.validate()?;
        caller.user = limits::end_user(req.headers(), chat.user.as_deref());
        to_anthropic(pipeline::chat(&state, &principal, chat, control, &mut caller).await?)
    }
    .await;
    let audit = || super::chat::Audit {
        req: &req,
        caller: &caller,
    };
    match result {
        Ok(reply) => respond(&state, model.as_deref(), started, Ok(reply), audit()),
        Err(e) => {
            // `respond` records the metrics and headers; the body becomes Anthropic's.
            let body = error_body(&e);
            respond(&state, model.as_deref(), started, Err(e), audit())
                .set_body(BoxBody::new(body))
                .map_into_boxed_body()
        }
    }
}

/// Any method but POST on `/v1/messages`.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    error_response(&ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}
