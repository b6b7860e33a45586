//! Request bodies read with a size limit, and the request id.

use crate::error::ApiError;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::collections::HashMap;

/// The request's id (from `x-request-id`, or generated), stored in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// Takes a well-formed client id, or makes a new one.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(v)
                if !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                RequestId(v.to_string())
            }
            _ => RequestId(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// The id the server gave `req` (empty outside the server's middleware, as in unit tests).
    pub fn of(req: &HttpRequest) -> String {
        use actix_web::HttpMessage;
        req.extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default()
    }
}

/// Reads the whole body, refusing more than `limit` bytes with a 413.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::InvalidRequest {
            message: format!("could not read the request body: {e}"),
            param: None,
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads the body with the configured limit and parses it as JSON, naming any bad field.
pub async fn read_json<T: for<'de> serde::Deserialize<'de>>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &crate::state::AppState,
) -> Result<T, ApiError> {
    let body = read_body(req, payload, state.config.server.max_body_bytes).await?;
    Ok(crate::wire::parse_json(&body)?)
}

/// The query string as a map; an unreadable string or a parameter not in `known` is a 400
/// naming it.
pub fn query_params(query: &str, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let q = web::Query::<HashMap<String, String>>::from_query(query)
        .map_err(|e| ApiError::invalid("query", format!("invalid query string: {e}")))?
        .into_inner();
    if let Some(unknown) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            unknown,
            format!(
                "unknown parameter '{unknown}' (known: {})",
                known.join(", ")
            ),
        ));
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(RequestId::from_header(Some("abc-1")).0, "abc-1");
        assert_eq!(RequestId::from_header(Some("bad id")).0.len(), 36);
        assert_eq!(RequestId::from_header(None).0.len(), 36);
    }
}
