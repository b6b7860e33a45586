//! Health probes (LiteLLM's names) and Prometheus metrics.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// `GET /health/liveness`: the process is up.
#[utoipa::path(
    get,
    path = "/health/liveness",
    tag = "ops",
    description = "The process is up.",
    responses(
        (status = 200, description = "Alive", body = super::openapi::Probe),
    ),
)]
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

/// `GET /health/liveliness`: LiteLLM's spelling of the liveness probe.
#[utoipa::path(
    get,
    path = "/health/liveliness",
    tag = "ops",
    description = "LiteLLM's spelling of `/health/liveness`.",
    responses(
        (status = 200, description = "Alive", body = super::openapi::Probe),
    ),
)]
pub async fn liveliness() -> HttpResponse {
    liveness().await
}

/// `GET /health/readiness`: 200 while taking traffic, 503 during start-up and shutdown.
#[utoipa::path(
    get,
    path = "/health/readiness",
    tag = "ops",
    responses(
        (status = 200, description = "Taking traffic", body = super::openapi::Probe),
        (status = 503, description = "Starting or shutting down", body = super::openapi::Probe),
    ),
)]
pub async fn readiness(state: web::Data<AppState>) -> HttpResponse {
    if state.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready"}))
    }
}

/// `GET /health`: readiness plus a summary of what is configured.
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses(
        (status = 200, description = "Ready", body = super::openapi::Health),
        (status = 503, description = "Starting or shutting down", body = super::openapi::Health),
    ),
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let body = json!({
        "status": if state.is_ready() { "healthy" } else { "not_ready" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "model_groups": state.router.names(),
        "deployments": state.config.deployments.len(),
    });
    if state.is_ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    description = "Prometheus text format. On the admin listener only when `sluice.admin_listen` is set.",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain"),
    ),
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
