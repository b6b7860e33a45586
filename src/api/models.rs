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

/// `GET /v1/models`.
pub async fn list(_p: Principal, state: web::Data<AppState>) -> HttpResponse {
    let data: Vec<Value> = state
        .router
        .names()
        .iter()
        .map(|n| model_object(&state, n))
        .collect();
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}`.
pub async fn get(
    _p: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    if state.router.group(&name).is_none() {
        return Err(ApiError::ModelNotFound {
            model: name,
            available: state.router.names().to_vec(),
        });
    }
    Ok(HttpResponse::Ok().json(model_object(&state, &name)))
}
