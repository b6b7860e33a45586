//! `GET /admin/audit`: pages of the tamper-evident audit log (master key only).

use crate::audit::{parse_time_ms, AuditKind, AuditQuery, MAX_LIMIT};
use crate::auth::{authenticate, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

/// Query parameters `GET /admin/audit` understands.
const KNOWN: &[&str] = &["from", "to", "key", "kind", "cursor", "limit"];

/// `GET /admin/audit?from=&to=&key=&kind=request|admin&cursor=&limit=`: records in seq order,
/// `from`/`to` as RFC 3339 or Unix ms (both inclusive), `key` a key id (a request's key, an admin
/// action's actor or target); `next_cursor` is `null` on the last page.
#[utoipa::path(
    get,
    path = "/admin/audit",
    tag = "admin",
    description = "Pages of the tamper-evident audit log, in sequence order. Master key only (admin virtual keys get 403).",
    params(("from" = Option<String>, Query, description = "RFC 3339 time or Unix ms, inclusive"), ("to" = Option<String>, Query, description = "RFC 3339 time or Unix ms, inclusive"), ("key" = Option<String>, Query, description = "Key id: a request's key, an admin action's actor or target"), ("kind" = Option<String>, Query, description = "`request` or `admin`"), ("cursor" = Option<u64>, Query, description = "`next_cursor` of the previous page"), ("limit" = Option<u64>, Query, description = "Records per page")),
    responses(
        (status = 200, description = "A page of records", body = super::openapi::AuditPage),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    // Master key only, not admin virtual keys: the log records what admin keys do.
    match authenticate(&state, req.headers())? {
        Principal::Master | Principal::Open => {}
        Principal::Virtual(_) => return Err(ApiError::AdminRequired),
    }
    let q = parse_query(req.query_string())?;
    let audit = state.audit.clone();
    let page = web::block(move || audit.query(&q))
        .await
        .map_err(|e| ApiError::Internal(format!("audit query: {e}")))?
        .map_err(|e| ApiError::Internal(format!("audit query: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": page.records,
        "has_more": page.next_cursor.is_some(),
        "next_cursor": page.next_cursor,
    })))
}

/// Turns the query string into an [`AuditQuery`], or a 400 naming the bad parameter.
fn parse_query(query: &str) -> Result<AuditQuery, ApiError> {
    let q = super::query_params(query, KNOWN)?;
    let time = |name: &str| -> Result<Option<u64>, ApiError> {
        q.get(name)
            .map(|v| {
                parse_time_ms(v).ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        format!(
                            "'{name}' must be an RFC 3339 time or Unix milliseconds, got '{v}'"
                        ),
                    )
                })
            })
            .transpose()
    };
    let (from_ms, to_ms) = (time("from")?, time("to")?);
    if let (Some(f), Some(t)) = (from_ms, to_ms) {
        if f > t {
            return Err(ApiError::invalid("from", "'from' is after 'to'"));
        }
    }
    let key = match q.get("key") {
        Some(k) if k.trim().is_empty() => {
            return Err(ApiError::invalid("key", "'key' must not be empty"))
        }
        other => other.cloned(),
    };
    let kind = q
        .get("kind")
        .map(|k| k.parse::<AuditKind>())
        .transpose()
        .map_err(|msg| ApiError::invalid("kind", msg))?;
    let cursor = q
        .get("cursor")
        .map(|c| {
            c.parse::<u64>().map_err(|_| {
                ApiError::invalid(
                    "cursor",
                    format!("'cursor' must be a previous page's next_cursor, got '{c}'"),
                )
            })
        })
        .transpose()?;
    let limit = match q.get("limit") {
        None => crate::audit::DEFAULT_LIMIT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("'limit' must be a whole number from 1 to {MAX_LIMIT}, got '{l}'"),
                )
            })?,
    };
    Ok(AuditQuery {
        from_ms,
        to_ms,
        key,
        kind,
        cursor,
        limit,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn param(query: &str) -> Option<String> {
        match parse_query(query) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_parameter() {
        let q = parse_query(
            "from=2026-01-01T00:00:00Z&to=1767225600500&key=key_a&kind=admin&cursor=7&limit=5",
        )
        .unwrap();
        assert_eq!(q.from_ms, Some(1_767_225_600_000));
        assert_eq!(q.to_ms, Some(1_767_225_600_500));
        assert_eq!(q.key.as_deref(), Some("key_a"));
        assert_eq!(q.kind, Some(AuditKind::Admin));
        assert_eq!((q.cursor, q.limit), (Some(7), 5));
        assert_eq!(parse_query("").unwrap(), AuditQuery::default());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, name) in [
            ("from=yesterday", "from"),
            ("to=2026-13-01T00:00:00Z", "to"),
            ("from=2000&to=1000", "from"),
            ("kind=other", "kind"),
            ("cursor=abc", "cursor"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("key=", "key"),
            ("colour=red", "colour"),
        ] {
            assert_eq!(param(query).as_deref(), Some(name), "{query}");
        }
    }
}
