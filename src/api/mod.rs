//! HTTP API: thin handlers that extract, call the pipeline and respond.
//!
//! Owns routes, request bodies and response headers. Business logic lives in `pipeline`;
//! the error-to-HTTP mapping lives in `error`.

mod admin;
mod audit;
mod body;
mod chat;
mod health;
mod keys;
mod messages;
mod models;
mod openapi;
mod realtime;
mod responses;
mod spend;

pub use body::{query_params, read_body, read_json, RequestId};
pub(crate) use chat::{base_record, PendingRecord};
pub use chat::{CACHE_HEADER, COST_HEADER, ROUTE_HEADER};
pub(crate) use spend::ReportQuery;

use crate::error::ApiError;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

/// Registers every route, with and without the `/v1` prefix (as LiteLLM allows).
pub fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["/v1", ""] {
        cfg.service(
            web::resource(format!("{prefix}/chat/completions"))
                .route(web::post().to(chat::chat_completions))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/embeddings"))
                .route(web::post().to(chat::embeddings))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/messages"))
                .route(web::post().to(messages::messages))
                .default_service(web::to(messages::method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/responses"))
                .route(web::post().to(responses::create))
                .route(web::get().to(responses::connect))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/responses/{{id}}"))
                .route(web::get().to(responses::retrieve))
                .route(web::delete().to(responses::delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/responses/{{id}}/input_items"))
                .route(web::get().to(responses::input_items))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/realtime"))
                .route(web::get().to(realtime::connect))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/models"))
                .route(web::get().to(models::list))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource(format!("{prefix}/models/{{model:.+}}"))
                .route(web::get().to(models::get))
                .default_service(web::to(method_not_allowed)),
        );
    }
    cfg.service(
        web::resource("/admin/cache/config")
            .route(web::get().to(admin::get_config))
            .route(web::put().to(admin::put_config))
            .default_service(web::to(method_not_allowed)),
    )
    .service(only("/admin/cache/stats", web::get().to(admin::stats)))
    .service(only("/admin/cache/lookup", web::post().to(admin::lookup)))
    .service(only("/admin/cache/flush", web::post().to(admin::flush)))
    .service(only(
        "/admin/cache/entries/{id}",
        web::delete().to(admin::delete_entry),
    ));
    keys::routes(cfg);
    cfg.service(only("/admin/spend", web::get().to(spend::report)))
        .service(only("/admin/audit", web::get().to(audit::list)))
        .service(only(
            "/utils/token_counter",
            web::post().to(spend::token_counter),
        ));
    cfg.service(only("/health", web::get().to(health::health)))
        .service(only(
            "/health/liveliness",
            web::get().to(health::liveliness),
        ))
        .service(only("/health/liveness", web::get().to(health::liveness)))
        .service(only("/health/readiness", web::get().to(health::readiness)))
        .service(only("/metrics", web::get().to(health::metrics)))
        .service(only("/openapi.json", web::get().to(openapi::serve)))
        .default_service(web::to(not_found));
}

/// A path served by one method; any other method is a 405 (not the 404 of an unknown path).
fn only(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.path().to_string(),
    }
    .error_response()
}
