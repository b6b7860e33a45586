//! `/admin/cache/...`: live cache settings, stats, dry-run lookups, flush and delete.
//! Master key only.

use super::{read_body, read_json};
use crate::audit::AdminRecord;
use crate::auth::{require_admin, Principal};
use crate::cache::{self, CacheEngine, CacheSettings};
use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::{parse_json, ChatRequest};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// The caller (an admin) and the cache engine, or why not.
fn admin_cache(
    state: &AppState,
    req: &HttpRequest,
) -> Result<(Principal, Arc<CacheEngine>), ApiError> {
    let admin = require_admin(state, req.headers())?;
    let engine =
        state.cache.clone().ok_or_else(|| {
            ApiError::InvalidRequest {
        message:
            "the semantic cache is disabled in this gateway's config (sluice.cache.enabled: false)"
                .into(),
        param: None,
    }
        })?;
    Ok((admin, engine))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// `GET /admin/cache/config`.
#[utoipa::path(
    get,
    path = "/admin/cache/config",
    tag = "admin",
    description = "Live cache settings. 400 when the cache is disabled in the config.",
    responses(
        (status = 200, description = "The settings", body = super::openapi::CacheSettingsDoc),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn get_config(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_, c) = admin_cache(&state, &req)?;
    Ok(HttpResponse::Ok().json(c.settings()))
}

/// `PUT /admin/cache/config`: the fields given replace the current ones; persisted.
#[utoipa::path(
    put,
    path = "/admin/cache/config",
    tag = "admin",
    description = "The fields given replace the current ones; persisted.",
    request_body = super::openapi::CacheSettingsDoc,
    responses(
        (status = 200, description = "The new settings", body = super::openapi::CacheSettingsDoc),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn put_config(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (admin, c) = admin_cache(&state, &req)?;
    let patch: Value = read_json(&req, payload, &state).await?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::invalid(
            "",
            "the body must be a JSON object of settings",
        ));
    };
    let mut merged = serde_json::to_value(c.settings()).map_err(internal)?;
    if let Value::Object(m) = &mut merged {
        for (k, v) in patch {
            m.insert(k, v);
        }
    }
    let next: CacheSettings = parse_json(merged.to_string().as_bytes())?;
    next.validate(c.groups()).map_err(|e| {
        ApiError::invalid(
            &e.field,
            format!("invalid value for '{}': {}", e.field, e.message),
        )
    })?;
    let before = serde_json::to_value(c.settings()).ok();
    c.set_settings(next.clone()).map_err(internal)?;
    tracing::info!("cache settings changed through the admin API");
    state.audit.record_admin(AdminRecord {
        actor: admin.key_id().to_string(),
        action: "cache.config.update".into(),
        target: None,
        before,
        after: serde_json::to_value(&next).ok(),
    });
    Ok(HttpResponse::Ok().json(next))
}

/// `GET /admin/cache/stats`.
#[utoipa::path(
    get,
    path = "/admin/cache/stats",
    tag = "admin",
    description = "Entry counts, hits and misses.",
    responses(
        (status = 200, description = "Cache statistics", body = super::openapi::Object),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (_, c) = admin_cache(&state, &req)?;
    Ok(HttpResponse::Ok().json(c.stats()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LookupBody {
    model: String,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    threshold: Option<f32>,
}

/// `POST /admin/cache/lookup`: nearest cached neighbours of a prompt in its scope, with
/// similarity and verdict. Changes nothing.
#[utoipa::path(
    post,
    path = "/admin/cache/lookup",
    tag = "admin",
    description = "Nearest cached neighbours of a prompt in its scope, with similarity and verdict. Changes nothing.",
    request_body = LookupBody,
    responses(
        (status = 200, description = "The candidates", body = super::openapi::LookupResult),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn lookup(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (_, c) = admin_cache(&state, &req)?;
    let b: LookupBody = read_json(&req, payload, &state).await?;
    let group = crate::pipeline::route(&state, &b.model, &Default::default())?.group;
    let messages = match (b.messages, b.prompt) {
        (Some(m), None) => m,
        (None, Some(p)) => json!([{"role": "user", "content": p}]),
        _ => {
            return Err(ApiError::invalid(
                "messages",
                "give exactly one of 'messages' or 'prompt'",
            ))
        }
    };
    let chat: ChatRequest = parse_json(
        json!({"model": b.model, "messages": messages})
            .to_string()
            .as_bytes(),
    )?;
    chat.validate()?;
    let namespace = b.namespace.unwrap_or_else(|| "default".into());
    let keys = cache::keys(&namespace, &group, &chat);
    let threshold = b
        .threshold
        .unwrap_or_else(|| c.threshold(&namespace, &group));
    let candidates = c.dry_run(&keys, threshold).await.map_err(internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "model_group": group,
        "namespace": namespace,
        "threshold": threshold,
        "semantic": keys.scope.is_some(),
        "candidates": candidates,
    })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FlushBody {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// `POST /admin/cache/flush`: everything, or one namespace and/or model group.
#[utoipa::path(
    post,
    path = "/admin/cache/flush",
    tag = "admin",
    description = "Deletes every entry, or those of one namespace and/or model group. An empty body flushes everything.",
    request_body(content = FlushBody, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "How many entries were deleted", body = super::openapi::Flushed),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn flush(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (admin, c) = admin_cache(&state, &req)?;
    let body = read_body(&req, payload, state.config.server.max_body_bytes).await?;
    let b: FlushBody = if body.iter().all(u8::is_ascii_whitespace) {
        FlushBody::default()
    } else {
        parse_json(&body)?
    };
    if let Some(m) = &b.model {
        if state.router.group(m).is_none() {
            return Err(ApiError::ModelNotFound {
                model: m.clone(),
                available: state.router.names().to_vec(),
            });
        }
    }
    let deleted = c
        .flush(b.namespace.as_deref(), b.model.as_deref())
        .map_err(internal)?;
    state.audit.record_admin(AdminRecord {
        actor: admin.key_id().to_string(),
        action: "cache.flush".into(),
        target: None,
        before: None,
        after: Some(json!({"namespace": b.namespace, "model": b.model, "deleted": deleted})),
    });
    Ok(HttpResponse::Ok().json(json!({"deleted": deleted})))
}

/// `DELETE /admin/cache/entries/{id}`.
#[utoipa::path(
    delete,
    path = "/admin/cache/entries/{id}",
    tag = "admin",
    description = "Deletes one cache entry.",
    params(("id" = String, Path, description = "Entry id (a number, as in `x-sluice-cache-entry`)")),
    responses(
        (status = 200, description = "Deleted", body = super::openapi::EntryDeleted),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn delete_entry(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (admin, c) = admin_cache(&state, &req)?;
    let id: u64 = path.parse().map_err(|_| {
        ApiError::invalid("id", format!("entry id must be a number, got \"{path}\""))
    })?;
    if c.delete(id).map_err(internal)? {
        state.audit.record_admin(AdminRecord {
            actor: admin.key_id().to_string(),
            action: "cache.entry.delete".into(),
            target: Some(id.to_string()),
            before: None,
            after: None,
        });
        Ok(HttpResponse::Ok().json(json!({"id": id, "deleted": true})))
    } else {
        Err(ApiError::RouteNotFound {
            method: "DELETE".into(),
            path: format!("/admin/cache/entries/{id} (no such entry)"),
        })
    }
}
