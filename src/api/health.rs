//! Health probes (LiteLLM's names) and Prometheus metrics.

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// `GET /health/liveliness`: the process is up.
pub async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "alive"}))
}

/// `GET /health/readiness`: 200 while taking traffic, 503 during start-up and shutdown.
pub async fn readiness(state: web::Data<AppState>) -> HttpResponse {
    if state.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "not_ready"}))
    }
}

/// `GET /health`: readiness plus a summary of what is configured.
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
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
