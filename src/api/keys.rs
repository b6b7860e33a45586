//! Virtual key management: `/admin/keys...` and LiteLLM's `/key/generate`, `/key/info`,
//! `/key/update`, `/key/delete`. Admin only (master key, an admin key, or an open gateway),
//! except that a key may read its own `/key/info`.
//!
//! A secret appears in exactly two responses: the one that creates a key and the one that
//! rotates it. Errors and lists name keys by id, never by secret.

use super::{method_not_allowed, read_body};
use crate::auth::{authenticate, require_admin, Principal};
use crate::config::Secret;
use crate::error::ApiError;
use crate::keys::store::{abbreviate, hash_hex, hash_secret};
use crate::keys::view::{created_json, key_json, list_json, rotated_json};
use crate::keys::{
    Dialect, KeyChanges, KeyError, KeyFieldError, VirtualKey, DEFAULT_GRACE_SECS, SECRET_PREFIX,
};
use crate::state::AppState;
use crate::wire::parse_json;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::sync::Arc;

/// Registers the key routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/admin/keys")
            .route(web::post().to(create))
            .route(web::get().to(list))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/admin/keys/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(revoke))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/admin/keys/{id}/rotate")
            .route(web::post().to(rotate))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/key/generate")
            .route(web::post().to(litellm_generate))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/key/info")
            .route(web::get().to(litellm_info))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/key/update")
            .route(web::post().to(litellm_update))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/key/delete")
            .route(web::post().to(litellm_delete))
            .default_service(web::to(method_not_allowed)),
    );
}

fn field_error(e: KeyFieldError) -> ApiError {
    if e.field.is_empty() {
        ApiError::InvalidRequest {
            message: e.message,
            param: None,
        }
    } else {
        ApiError::invalid(&e.field, e.to_string())
    }
}

/// How a reference is named in an error: never echo something that looks like a secret.
fn describe(reference: &str) -> String {
    // Any `sk-` string may be a key (a Sluice secret, or a LiteLLM-style key pasted by mistake).
    if reference.starts_with(SECRET_PREFIX) || reference.starts_with("sk-") {
        "the given secret (use the key id, key_...)".into()
    } else {
        format!("'{reference}'")
    }
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::NotFound(id) => ApiError::KeyNotFound {
            what: describe(&id),
        },
        KeyError::Revoked(id) => ApiError::KeyRevoked { id },
        KeyError::Invalid(f) => field_error(f),
        e @ (KeyError::Store(_) | KeyError::Encode(_)) => ApiError::Internal(e.to_string()),
    }
}

/// The body as JSON; an empty body reads as `{}`.
async fn body_json(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Value, ApiError> {
    let body = read_body(req, payload, state.config.server.max_body_bytes).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    Ok(parse_json(&body)?)
}

fn changes(state: &AppState, body: &Value, dialect: Dialect) -> Result<KeyChanges, ApiError> {
    KeyChanges::from_json(body, dialect, state.keys.now(), &|m| state.router.knows(m))
        .map_err(field_error)
}

/// Appends an admin action on a key to the audit log: who, what, the record before and after
/// (records never hold secrets; the audit log redacts secret-named fields besides).
fn audit(
    state: &AppState,
    actor: &Principal,
    action: &str,
    before: Option<&VirtualKey>,
    after: &VirtualKey,
) {
    let now = state.keys.now();
    state.audit.record_admin(crate::audit::AdminRecord {
        actor: actor.key_id().to_string(),
        action: action.to_string(),
        target: Some(after.id.clone()),
        before: before.map(|k| key_json(k, now)),
        after: Some(key_json(after, now)),
    });
}

/// `POST /admin/keys`: 201 with the record and its secret (`key`), shown this once.
#[utoipa::path(
    post,
    path = "/admin/keys",
    tag = "admin",
    description = "Creates a virtual key; its secret (`key`) is in this answer only.",
    request_body = super::openapi::KeyFields,
    responses(
        (status = 201, description = "The record with its secret", body = super::openapi::KeyRecord),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let body = body_json(&req, payload, &state).await?;
    let c = changes(&state, &body, Dialect::Sluice)?;
    let (k, secret) = state.keys.create(&c).map_err(key_error)?;
    audit(&state, &actor, "key.create", None, &k);
    Ok(HttpResponse::Created().json(created_json(&k, &secret, state.keys.now())))
}

/// `GET /admin/keys`: every key, oldest first, revoked ones included; never a secret.
#[utoipa::path(
    get,
    path = "/admin/keys",
    tag = "admin",
    description = "Every key, oldest first, revoked ones included; never a secret.",
    responses(
        (status = 200, description = "The keys", body = super::openapi::KeyList),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    require_admin(&state, req.headers())?;
    Ok(HttpResponse::Ok().json(list_json(&state.keys.list(), state.keys.now())))
}

fn by_id(state: &AppState, id: &str) -> Result<Arc<VirtualKey>, ApiError> {
    state
        .keys
        .get(id)
        .ok_or_else(|| ApiError::KeyNotFound { what: describe(id) })
}

/// `GET /admin/keys/{id}`: the record (revoked keys show `status: "revoked"`).
#[utoipa::path(
    get,
    path = "/admin/keys/{id}",
    tag = "admin",
    params(("id" = String, Path, description = "Key id (`key_...`)")),
    responses(
        (status = 200, description = "The record", body = super::openapi::KeyRecord),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, req.headers())?;
    let k = by_id(&state, &path)?;
    Ok(HttpResponse::Ok().json(key_json(&k, state.keys.now())))
}

/// `PATCH /admin/keys/{id}`: the fields given replace the current ones (`null` clears).
#[utoipa::path(
    patch,
    path = "/admin/keys/{id}",
    tag = "admin",
    description = "The fields given replace the current ones; `null` clears one.",
    params(("id" = String, Path, description = "Key id (`key_...`)")),
    request_body = super::openapi::KeyFields,
    responses(
        (status = 200, description = "The updated record", body = super::openapi::KeyRecord),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The key is revoked", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let body = body_json(&req, payload, &state).await?;
    let c = changes(&state, &body, Dialect::Sluice)?;
    let before = state.keys.get(&path);
    let k = state.keys.update(&path, &c).map_err(key_error)?;
    audit(&state, &actor, "key.update", before.as_deref(), &k);
    Ok(HttpResponse::Ok().json(key_json(&k, state.keys.now())))
}

/// `DELETE /admin/keys/{id}`: revokes the key; its secrets stop working at once.
#[utoipa::path(
    delete,
    path = "/admin/keys/{id}",
    tag = "admin",
    description = "Revokes the key; its secrets stop working at once.",
    params(("id" = String, Path, description = "Key id (`key_...`)")),
    responses(
        (status = 200, description = "The revoked record", body = super::openapi::KeyRecord),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let before = state.keys.get(&path);
    let k = state.keys.revoke(&path).map_err(key_error)?;
    audit(&state, &actor, "key.revoke", before.as_deref(), &k);
    Ok(HttpResponse::Ok().json(key_json(&k, state.keys.now())))
}

fn grace_seconds(body: &Value) -> Result<u64, ApiError> {
    let Value::Object(m) = body else {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    };
    if let Some(extra) = m.keys().find(|k| *k != "grace_seconds") {
        return Err(ApiError::invalid(
            extra,
            format!("{extra}: unknown field (known: grace_seconds)"),
        ));
    }
    match m.get("grace_seconds") {
        None | Some(Value::Null) => Ok(DEFAULT_GRACE_SECS),
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::invalid(
                "grace_seconds",
                "grace_seconds: must be a whole number of seconds >= 0",
            )
        }),
    }
}

/// `POST /admin/keys/{id}/rotate`: a new secret; the old one works for `grace_seconds`
/// (default 24 h, 0 = stops at once).
#[utoipa::path(
    post,
    path = "/admin/keys/{id}/rotate",
    tag = "admin",
    description = "A new secret; the old one works for `grace_seconds`.",
    params(("id" = String, Path, description = "Key id (`key_...`)")),
    request_body(content = super::openapi::RotateBody, description = "Optional", content_type = "application/json"),
    responses(
        (status = 200, description = "The record with the new secret", body = super::openapi::KeyRecord),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The key is revoked", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn rotate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let body = body_json(&req, payload, &state).await?;
    let grace = grace_seconds(&body)?;
    let before = state.keys.get(&path);
    let (k, secret) = state.keys.rotate(&path, grace).map_err(key_error)?;
    audit(&state, &actor, "key.rotate", before.as_deref(), &k);
    Ok(HttpResponse::Ok().json(rotated_json(&k, &secret, grace, state.keys.now())))
}

/// LiteLLM's field names next to Sluice's, so LiteLLM clients find what they read.
fn litellm_json(k: &VirtualKey, now: u64) -> Value {
    let mut v = key_json(k, now);
    if let Value::Object(m) = &mut v {
        m.insert("key_alias".into(), json!(k.alias));
        m.insert("rpm_limit".into(), json!(k.rpm));
        m.insert("tpm_limit".into(), json!(k.tpm));
        m.insert("token_id".into(), json!(k.id));
    }
    v
}

fn litellm_created(k: &VirtualKey, secret: &Secret, now: u64) -> Value {
    let mut v = litellm_json(k, now);
    if let Value::Object(m) = &mut v {
        m.insert("key".into(), json!(secret.expose()));
        m.insert("key_name".into(), json!(abbreviate(secret.expose())));
        m.insert(
            "token".into(),
            json!(hash_hex(&hash_secret(secret.expose()))),
        );
    }
    v
}

/// `POST /key/generate` (LiteLLM): `key_alias`, `rpm_limit`, `tpm_limit`, `duration`, ...;
/// the answer carries `key`, `key_name` (abbreviated) and `token` (sha256 of the key).
#[utoipa::path(
    post,
    path = "/key/generate",
    tag = "admin",
    description = "LiteLLM's key creation (`key_alias`, `rpm_limit`, `tpm_limit`, `duration`, ...).",
    request_body = super::openapi::Object,
    responses(
        (status = 200, description = "The record with `key`, `key_name` and `token`", body = super::openapi::KeyRecord),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn litellm_generate(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let body = body_json(&req, payload, &state).await?;
    let c = changes(&state, &body, Dialect::LiteLlm)?;
    let (k, secret) = state.keys.create(&c).map_err(key_error)?;
    audit(&state, &actor, "key.create", None, &k);
    Ok(HttpResponse::Ok().json(litellm_created(&k, &secret, state.keys.now())))
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    key: Option<String>,
}

/// `GET /key/info?key=...` (LiteLLM): by id, secret or sha256 hex; without `key`, the caller's
/// own key. A non-admin key may only read itself. The answer is `{"key": id, "info": {...}}`.
#[utoipa::path(
    get,
    path = "/key/info",
    tag = "admin",
    description = "LiteLLM's key info: by id, secret or sha256 hex; without `key`, the caller's own key. A non-admin key may read only itself.",
    params(("key" = Option<String>, Query, description = "Key id, secret or sha256 hex")),
    responses(
        (status = 200, description = "The key", body = super::openapi::LiteLlmInfo),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn litellm_info(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<InfoQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&state, req.headers())?;
    let k = match (&query.key, &caller) {
        (Some(r), _) => state
            .keys
            .resolve(r)
            .ok_or_else(|| ApiError::KeyNotFound { what: describe(r) })?,
        (None, Principal::Virtual(own)) => Arc::clone(own),
        (None, _) => return Err(ApiError::invalid("key", "key: give the key id or secret")),
    };
    let own = caller.key().is_some_and(|c| c.id == k.id);
    if !own && !caller.is_admin() {
        return Err(ApiError::AdminRequired);
    }
    Ok(HttpResponse::Ok().json(json!({"key": k.id, "info": litellm_json(&k, state.keys.now())})))
}

/// `POST /key/update` (LiteLLM): `{"key": id or secret, ...fields}`.
#[utoipa::path(
    post,
    path = "/key/update",
    tag = "admin",
    description = "LiteLLM's key update.",
    request_body = super::openapi::LiteLlmUpdate,
    responses(
        (status = 200, description = "The updated record", body = super::openapi::KeyRecord),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "The key is revoked", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn litellm_update(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let mut body = body_json(&req, payload, &state).await?;
    let reference = match body.as_object_mut().and_then(|m| m.remove("key")) {
        Some(Value::String(r)) => r,
        _ => return Err(ApiError::invalid("key", "key: give the key id or secret")),
    };
    let k = state
        .keys
        .resolve(&reference)
        .ok_or_else(|| ApiError::KeyNotFound {
            what: describe(&reference),
        })?;
    let c = changes(&state, &body, Dialect::LiteLlm)?;
    let before = k;
    let k = state.keys.update(&before.id, &c).map_err(key_error)?;
    audit(&state, &actor, "key.update", Some(&before), &k);
    Ok(HttpResponse::Ok().json(litellm_json(&k, state.keys.now())))
}

/// `POST /key/delete` (LiteLLM): `{"keys": [id or secret, ...]}`; all found or none revoked.
/// Answers `{"deleted_keys": [ids]}`.
#[utoipa::path(
    post,
    path = "/key/delete",
    tag = "admin",
    description = "LiteLLM's key delete: revokes all the keys named, or none.",
    request_body = super::openapi::LiteLlmDelete,
    responses(
        (status = 200, description = "The revoked ids", body = super::openapi::LiteLlmDeleted),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
async fn litellm_delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = require_admin(&state, req.headers())?;
    let body = body_json(&req, payload, &state).await?;
    let Some(refs) = body.get("keys").and_then(Value::as_array) else {
        return Err(ApiError::invalid(
            "keys",
            "keys: give a list of key ids or secrets",
        ));
    };
    let mut ids = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let param = format!("keys[{i}]");
        let r = r
            .as_str()
            .ok_or_else(|| ApiError::invalid(&param, format!("{param}: must be a string")))?;
        let k = state.keys.resolve(r).ok_or_else(|| ApiError::KeyNotFound {
            what: format!("{param} ({})", describe(r)),
        })?;
        ids.push(k.id.clone());
    }
    for id in &ids {
        let before = state.keys.get(id);
        let k = state.keys.revoke(id).map_err(key_error)?;
        audit(&state, &actor, "key.revoke", before.as_deref(), &k);
    }
    Ok(HttpResponse::Ok().json(json!({"deleted_keys": ids})))
}
