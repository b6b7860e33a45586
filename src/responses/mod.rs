//! The OpenAI Responses API over HTTP (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`) on top of the chat pipeline.
//!
//! ```text
//! request -> resolve previous_response_id from Sluice's store (any upstream)
//!         -> native group?  yes: forward the body to {base}/responses       (native.rs)
//!                           no:  translate to chat -> pipeline::chat        (translate.rs)
//!                                (auth, cache, routing, failover as chat)
//!                                answer -> Response object / Responses SSE  (events.rs)
//!         -> store: true?   save response + resolved input items            (store.rs)
//! ```
//!
//! Sluice owns conversation state: `previous_response_id` is resolved from its own store on
//! every path, so a chain works on Chat-Completions-only upstreams and across providers, and
//! stored responses belong to the key that created them.

pub mod events;
mod native;
pub mod store;
pub mod translate;
pub mod ws;

pub use events::{responses_sse, EventEncoder};
pub use store::{ListQuery, Owner, ResponseStore, StoredResponse};
pub use translate::ResponsesRequest;

use crate::auth::Principal;
use crate::cache::CacheControl;
use crate::error::ApiError;
use crate::pii::{PiiBlocked, PiiPolicy};
use crate::pipeline::{self, Caller, Reply, ReplyBody};
use crate::state::AppState;
use crate::store::StoreError;
use crate::wire::FieldError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

/// Why a Responses call failed.
#[derive(Debug, thiserror::Error)]
pub enum ResponsesError {
    /// Anything the chat surface can fail with (bad field, auth, routing, upstream).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `GET`/`DELETE`/`input_items` of an id that does not exist or belongs to another key.
    #[error("Response with id '{id}' not found.")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// `previous_response_id` names no response this key may continue.
    #[error("Previous response with id '{id}' not found.")]
    PreviousNotFound {
        /// The id given.
        id: String,
    },
    /// The store failed.
    #[error("response storage failed: {0}")]
    Store(#[from] StoreError),
}

impl From<FieldError> for ResponsesError {
    fn from(e: FieldError) -> Self {
        ResponsesError::Api(e.into())
    }
}

impl ResponsesError {
    /// The chat-surface error this maps to, for the cases that have one.
    pub fn as_api(&self) -> Option<&ApiError> {
        match self {
            ResponsesError::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl ResponseError for ResponsesError {
    fn status_code(&self) -> StatusCode {
        match self {
            ResponsesError::Api(e) => e.status_code(),
            ResponsesError::NotFound { .. } | ResponsesError::PreviousNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ResponsesError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            ResponsesError::Api(e) => return e.error_response(),
            ResponsesError::Store(e) => return ApiError::Internal(e.to_string()).error_response(),
            ResponsesError::NotFound { .. } => json!({"error": {
                "message": crate::keys::redact_secrets(&self.to_string()), "type": "invalid_request_error",
                "param": null, "code": null}}),
            ResponsesError::PreviousNotFound { .. } => json!({"error": {
                "message": crate::keys::redact_secrets(&self.to_string()), "type": "invalid_request_error",
                "param": "previous_response_id", "code": "previous_response_not_found"}}),
        };
        HttpResponse::build(self.status_code()).json(body)
    }
}

/// Saves a finished response with the items it was given, for its owner.
pub struct Saver {
    store: ResponseStore,
    owner: Owner,
    input_items: Vec<Value>,
}

impl Saver {
    /// Stores `response`. Best effort like the cache: the answer is already paid for, so a
    /// storage failure is logged and the client still gets it.
    pub async fn save(self, response: Value) {
        let id = response
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let record = StoredResponse {
            owner: self.owner,
            response,
            input_items: self.input_items,
        };
        if let Err(e) = self.store.put_async(record).await {
            tracing::warn!(response_id = %id, error = %e, "storing the response failed");
        }
    }

    /// As the event stream's end-of-stream callback.
    pub fn into_on_final(self) -> events::OnFinal {
        Box::new(move |response| Box::pin(self.save(response)))
    }
}

/// The store of responses in the gateway's database.
fn response_store(state: &AppState) -> ResponseStore {
    ResponseStore::new(Arc::clone(&state.store))
}

/// Serves `POST /v1/responses`: resolves the chain, then the native or translated path.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    req: ResponsesRequest,
    control: CacheControl,
    caller: &mut Caller,
) -> Result<Reply, ResponsesError> {
    req.validate()?;
    let store = response_store(state);
    let mut items = match &req.previous_response_id {
        Some(prev) => {
            let found = store
                .get_async(prev, principal)
                .await?
                .ok_or_else(|| ResponsesError::PreviousNotFound { id: prev.clone() })?;
            translate::continuation(&found.input_items, &found.response)
        }
        None => Vec::new(),
    };
    items.extend(translate::normalize_input(req.input.as_ref())?);
    let saver = req.stores().then(|| Saver {
        store,
        owner: Owner::of(principal),
        input_items: items.clone(),
    });
    // Translated once: the native path looks the cache up with it, the translated path sends it.
    let chat_form = translate::to_chat(&req, &items);
    let policies = state.pii.policies(principal.pii(), &req.model);
    let guarded = policies.prompts != PiiPolicy::Off || policies.responses != PiiPolicy::Off;
    // With a PII policy in force, a request that has a chat form takes the translated path,
    // where the guard masks, restores and scans exactly as for chat.
    if native::serves(state, &req.model) && !(guarded && chat_form.is_ok()) {
        if guarded {
            // No chat form (hosted tools): the input is scanned as it is; masking would need
            // the native answer rewritten, so a masked policy refuses what it would mask.
            let kinds = native::input_kinds(state.pii.scanner(), &items);
            if !kinds.is_empty() && policies.prompts != PiiPolicy::Detect {
                return Err(ApiError::from(PiiBlocked {
                    direction: "prompt",
                    kinds,
                })
                .into());
            }
            caller.pii_kinds = kinds;
        }
        // The cache speaks chat: a request with a chat form is looked up as one, a hit is
        // served like a translated answer, and a miss goes native with a writer that stores
        // its final Response in chat form. Requests with hosted tools have no chat form and
        // are not cached.
        caller.keep_prompt(|| Some(Value::Array(items.clone())));
        let mut writer = None;
        if let Some(chat) = chat_form.ok().filter(|c| c.validate().is_ok()) {
            if principal.allows_model(&req.model) {
                let group = req.model.clone();
                match pipeline::cache_first(state, principal, &group, &chat, control, caller)
                    .await?
                {
                    Ok(hit) => return as_response(caller.keep_answer(hit), &req, saver).await,
                    Err(w) => writer = w.map(|w| (group, w)),
                }
            }
        }
        return native::create(state, principal, req, items, saver, caller, writer).await;
    }

    let chat = chat_form?;
    chat.validate()?;
    let reply = pipeline::chat(state, principal, chat, control, caller).await?;
    as_response(reply, &req, saver).await
}

/// A chat reply (from an upstream or the cache) as the Response object or Responses events,
/// stored when the request asked for it.
async fn as_response(
    reply: Reply,
    req: &ResponsesRequest,
    saver: Option<Saver>,
) -> Result<Reply, ResponsesError> {
    let id = translate::new_id("resp");
    let shell = translate::shell(req, &id, events::unix_now());
    let body = match reply.body {
        ReplyBody::Json(bytes) => {
            let completion: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::Internal(format!("chat completion is not JSON: {e}")))?;
            let response = translate::to_response(&completion, shell, events::unix_now());
            let out = serde_json::to_vec(&response)
                .map_err(|e| ApiError::Internal(format!("cannot encode response: {e}")))?;
            if let Some(s) = saver {
                s.save(response).await;
            }
            ReplyBody::Json(Bytes::from(out))
        }
        ReplyBody::Stream(stream) => ReplyBody::Stream(Box::pin(responses_sse(
            stream,
            EventEncoder::new(shell, events::unix_now),
            saver.map(Saver::into_on_final),
        ))),
    };
    Ok(Reply { body, ..reply })
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Value, ResponsesError> {
    let found = response_store(state)
        .get_async(id, principal)
        .await?
        .ok_or_else(|| ResponsesError::NotFound { id: id.to_string() })?;
    Ok(found.response)
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Value, ResponsesError> {
    if response_store(state).delete_async(id, principal).await? {
        Ok(json!({"id": id, "object": "response", "deleted": true}))
    } else {
        Err(ResponsesError::NotFound { id: id.to_string() })
    }
}

/// `GET /v1/responses/{id}/input_items`.
pub async fn input_items(
    state: &AppState,
    principal: &Principal,
    id: &str,
    query: &ListQuery,
) -> Result<Value, ResponsesError> {
    let found = response_store(state)
        .get_async(id, principal)
        .await?
        .ok_or_else(|| ResponsesError::NotFound { id: id.to_string() })?;
    Ok(store::list_items(&found.input_items, query)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openai_shapes() {
        let e = ResponsesError::PreviousNotFound {
            id: "resp_x".into(),
        };
        assert_eq!(e.status_code(), 404);
        assert_eq!(
            e.to_string(),
            "Previous response with id 'resp_x' not found."
        );
        let e = ResponsesError::NotFound {
            id: "resp_x".into(),
        };
        assert_eq!(e.status_code(), 404);
        assert_eq!(e.to_string(), "Response with id 'resp_x' not found.");
        let e = ResponsesError::from(FieldError {
            param: "input[2].type".into(),
            message: "input[2].type: unknown item type \"x\"".into(),
        });
        assert_eq!(e.status_code(), 400);
        assert_eq!(
            e.as_api().unwrap().body()["error"]["param"],
            "input[2].type"
        );
    }
}
