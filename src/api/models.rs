//! `GET /v1/models` and `GET /v1/models/{model}`: the configured model groups.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

fn model_object(state: &AppState, name: &str) -> Value {
    let created = SystemTime::now()
        .checked_sub(state.started.elapsed())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    json!({"id": name, "object": "model", "created": created, "owned_by": "sluice"})
}

/// Groups the caller may use, in config order.
fn visible<'a>(p: &Principal, state: &'a AppState) -> Vec<&'a String> {
    state
        .router
        .names()
        .iter()
        .filter(|n| p.allows_model(n))
        .collect()
}

/// `GET /v1/models`: the groups the caller may use (a virtual key sees only its own).
#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "openai",
    description = "The model groups the key may use. Also served at `/models`.",
    responses(
        (status = 200, description = "The groups", body = super::openapi::ModelList),
        (status = 401, response = super::openapi::Unauthorized),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn list(p: Principal, state: web::Data<AppState>) -> HttpResponse {
    let data: Vec<Value> = visible(&p, &state)
        .into_iter()
        .map(|n| model_object(&state, n))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`: 403 for a group the caller's key may not use.
#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    tag = "openai",
    description = "One model group. Also served at `/models/{model}`.",
    params(("model" = String, Path, description = "Model group name")),
    responses(
        (status = 200, description = "The group", body = super::openapi::Model),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn get(
    p: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    if state.router.group(&name).is_none() {
        return Err(ApiError::ModelNotFound {
            model: name,
            available: visible(&p, &state).into_iter().cloned().collect(),
        });
    }
    if !p.allows_model(&name) {
        return Err(ApiError::ModelNotAllowed { model: name });
    }
    Ok(HttpResponse::Ok().json(model_object(&state, &name)))
}
