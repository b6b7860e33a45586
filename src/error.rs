//! The one place where errors become HTTP: status code + OpenAI error body.
//!
//! Every module has its own error type; handlers convert into [`ApiError`], and
//! [`ApiError::status`] / [`ApiError::body`] is the complete mapping (no `_` arm).

use crate::providers::UpstreamError;
use crate::wire::FieldError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

/// An error returned to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; `param` names the field.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// JSON path of the bad field.
        param: Option<String>,
    },
    /// No key was sent.
    #[error("missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")]
    MissingApiKey,
    /// The key is wrong.
    #[error("invalid API key")]
    InvalidApiKey,
    /// The model group does not exist.
    #[error("the model '{model}' does not exist; available models: {}", available.join(", "))]
    ModelNotFound {
        /// What the client asked for.
        model: String,
        /// Configured groups.
        available: Vec<String>,
    },
    /// The caller's key may not use this model group.
    #[error("this key is not allowed to use the model '{model}'")]
    ModelNotAllowed {
        /// What was asked.
        model: String,
    },
    /// The model group exists but cannot serve this endpoint.
    #[error("the model '{model}' does not support {endpoint}")]
    UnsupportedForModel {
        /// Model group.
        model: String,
        /// Endpoint name.
        endpoint: &'static str,
    },
    /// The body is larger than `sluice.max_request_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// No such route.
    #[error("unknown endpoint: {method} {path}")]
    RouteNotFound {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The route exists, the method does not.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// HTTP method.
        method: String,
        /// Request path.
        path: String,
    },
    /// The gateway is shutting down or not yet ready.
    #[error("the gateway is not ready to serve requests")]
    NotReady,
    /// `auto` found no deployment that can serve the request.
    #[error("{0}")]
    NoCapableDeployment(String),
    /// The upstream failed.
    #[error(transparent)]
    Upstream(Box<UpstreamError>),
    /// Several attempts (retries, other deployments, fallback groups) all failed; the status is
    /// the last failure's.
    #[error("all {} attempts failed ({}); last error: {last}", .attempts.len(), .attempts.join(", "))]
    AllFailed {
        /// `deployment: why` per attempt, in order.
        attempts: Vec<String>,
        /// The last failure.
        last: Box<UpstreamError>,
    },
    /// A bug or an environment failure; details only in logs.
    #[error("internal error")]
    Internal(String),
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::Upstream(Box::new(e))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::InvalidRequest {
            message: e.message,
            param: (!e.param.is_empty()).then_some(e.param),
        }
    }
}

impl ApiError {
    /// Shorthand for a 400 naming a field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    /// The HTTP status, OpenAI error `type`, `param` and `code` for this error.
    fn parts(&self) -> (StatusCode, &'static str, Option<String>, Option<String>) {
        use ApiError::*;
        match self {
            InvalidRequest { param, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                param.clone(),
                None,
            ),
            MissingApiKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                Some("missing_api_key".into()),
            ),
            InvalidApiKey => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                Some("invalid_api_key".into()),
            ),
            ModelNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_found".into()),
            ),
            ModelNotAllowed { .. } => (
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_allowed".into()),
            ),
            UnsupportedForModel { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_supported".into()),
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                None,
                Some("request_too_large".into()),
            ),
            RouteNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                Some("unknown_url".into()),
            ),
            MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                None,
                Some("method_not_allowed".into()),
            ),
            NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                None,
                Some("not_ready".into()),
            ),
            NoCapableDeployment(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("model".into()),
                Some("no_capable_deployment".into()),
            ),
            Upstream(e) | AllFailed { last: e, .. } => e.http_parts(),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                None,
            ),
        }
    }

    /// The OpenAI error body.
    pub fn body(&self) -> Value {
        let (_, kind, param, code) = self.parts();
        json!({"error": {"message": self.to_string(), "type": kind, "param": param, "code": code}})
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut resp = HttpResponse::build(self.status_code());
        if let ApiError::Upstream(e) | ApiError::AllFailed { last: e, .. } = self {
            if let Some(after) = e.retry_after() {
                resp.insert_header((header::RETRY_AFTER, after));
            }
        }
        resp.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = ApiError::invalid("messages[0].role", "bad role");
        assert_eq!(e.status_code(), 400);
        let b = e.body();
        assert_eq!(b["error"]["param"], "messages[0].role");
        assert_eq!(b["error"]["type"], "invalid_request_error");
        let e = ApiError::ModelNotFound {
            model: "x".into(),
            available: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.status_code(), 404);
        assert!(e.to_string().contains("a, b"));
        assert_eq!(ApiError::InvalidApiKey.status_code(), 401);
        assert_eq!(ApiError::PayloadTooLarge { limit: 1 }.status_code(), 413);
    }
}
