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
    /// The virtual key has passed its expiry.
    #[error("key expired at {at}")]
    KeyExpired {
        /// RFC 3339 time of the expiry.
        at: String,
    },
    /// A dashboard call came without a live session (and without a key).
    #[error("not logged in: log in at /ui, or send 'Authorization: Bearer <key>'")]
    NotLoggedIn,
    /// A cookie-authenticated call that changes state came without the session's CSRF token.
    #[error(
        "missing or wrong CSRF token: send the session's csrf_token in the 'x-sluice-csrf' header"
    )]
    CsrfFailed,
    /// The caller is authenticated but may not use `/admin`.
    #[error("this key may not use the admin API (needs the master key or an admin key)")]
    AdminRequired,
    /// No virtual key matches (`what` names it by id or by field, never by secret).
    #[error("no such key: {what}")]
    KeyNotFound {
        /// Key id, or where the reference was given.
        what: String,
    },
    /// The virtual key is revoked and cannot be changed or rotated.
    #[error("key '{id}' is revoked")]
    KeyRevoked {
        /// Key id.
        id: String,
    },
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
    /// The PII policy refused the request (or its answer): kinds only, never values.
    #[error("{0}")]
    PiiDetected(crate::pii::PiiBlocked),
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
    /// A rate limit (key, end user, model group, deployment or gateway) refused the request.
    #[error("{0}")]
    RateLimited(Box<crate::limits::Refusal>),
    /// A budget (key, end user or gateway) is spent for the current window.
    #[error("{0}")]
    BudgetExceeded(Box<crate::spend::BudgetRefusal>),
    /// A bug or an environment failure; details only in logs.
    #[error("internal error")]
    Internal(String),
}

impl From<Box<crate::limits::Refusal>> for ApiError {
    fn from(r: Box<crate::limits::Refusal>) -> Self {
        ApiError::RateLimited(r)
    }
}

impl From<crate::pii::PiiBlocked> for ApiError {
    fn from(b: crate::pii::PiiBlocked) -> Self {
        ApiError::PiiDetected(b)
    }
}

impl From<crate::spend::BudgetRefusal> for ApiError {
    fn from(r: crate::spend::BudgetRefusal) -> Self {
        ApiError::BudgetExceeded(Box::new(r))
    }
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
            KeyExpired { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                Some("key_expired".into()),
            ),
            NotLoggedIn => (
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                None,
                Some("not_logged_in".into()),
            ),
            CsrfFailed => (
                StatusCode::FORBIDDEN,
                "csrf_failed",
                Some("x-sluice-csrf".into()),
                Some("csrf_failed".into()),
            ),
            AdminRequired => (
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                None,
                Some("admin_required".into()),
            ),
            KeyNotFound { .. } => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                None,
                Some("key_not_found".into()),
            ),
            KeyRevoked { .. } => (
                StatusCode::CONFLICT,
                "invalid_request_error",
                None,
                Some("key_revoked".into()),
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
            PiiDetected(b) => (
                StatusCode::BAD_REQUEST,
                "pii_detected",
                (b.direction == "prompt").then(|| "messages".into()),
                Some("pii_detected".into()),
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
            RateLimited(r) => (
                StatusCode::TOO_MANY_REQUESTS,
                r.error_type(),
                None,
                Some("rate_limit_exceeded".into()),
            ),
            // 429 as LiteLLM answers it: clients back off instead of failing hard.
            BudgetExceeded(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exceeded",
                None,
                Some("budget_exceeded".into()),
            ),
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
        // Messages quote client text (paths, ids, model names): a Sluice key pasted there is
        // masked as in the access log.
        let message = crate::keys::redact_secrets(&self.to_string()).into_owned();
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
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
        let retry_secs = match self {
            ApiError::RateLimited(r) => r.retry_after_secs(),
            ApiError::BudgetExceeded(b) => b
                .retry_after
                .map(|d| d.as_millis().div_ceil(1_000).max(1) as u64),
            _ => None,
        };
        if let Some(secs) = retry_secs {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let ApiError::RateLimited(r) = self {
            for (name, value) in r.headers.pairs() {
                resp.insert_header((name, value));
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
