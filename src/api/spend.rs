//! `GET /admin/spend` (spend, tokens, requests and cache savings grouped by key, user, model or
//! day; admin only) and `POST /utils/token_counter` (the gateway's token estimate for a request
//! body, LiteLLM's endpoint; any authenticated caller).

use super::read_json;
use crate::auth::{authenticate, require_admin};
use crate::clock::parse_day;
use crate::error::ApiError;
use crate::spend::GroupBy;
use crate::state::AppState;
use crate::tokens::{self, Tokenizer};
use crate::wire::{parse_json, ChatRequest};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Earliest day a report covers when `from` is not given.
const BEGINNING: &str = "1970-01-01";

/// What a spend report asks for (`group_by`, `from`, `to`), from the admin API or the dashboard.
pub(crate) struct ReportQuery {
    /// How rows are grouped (default: by day).
    pub by: GroupBy,
    /// First UTC day, `YYYY-MM-DD` (default: the beginning).
    pub from: String,
    /// Last UTC day, `YYYY-MM-DD` (default: `today`).
    pub to: String,
}

impl ReportQuery {
    /// Reads a query string; an unknown or malformed parameter is a 400 naming it.
    pub(crate) fn parse(query: &str, today: &str) -> Result<Self, ApiError> {
        let q = super::query_params(query, &["group_by", "from", "to"])?;
        let by_text = q.get("group_by").map_or("day", String::as_str);
        let by = GroupBy::parse(by_text).ok_or_else(|| {
            ApiError::invalid(
                "group_by",
                format!("'group_by' must be one of key, user, model, day; got '{by_text}'"),
            )
        })?;
        let day = |name: &str, default: &str| -> Result<String, ApiError> {
            match q.get(name) {
                None => Ok(default.to_string()),
                Some(v) => parse_day(v).map(str::to_string).ok_or_else(|| {
                    ApiError::invalid(
                        name,
                        format!("'{name}' must be a date as YYYY-MM-DD, got '{v}'"),
                    )
                }),
            }
        };
        let (from, to) = (day("from", BEGINNING)?, day("to", today)?);
        if from > to {
            return Err(ApiError::invalid(
                "from",
                format!("'from' ({from}) is after 'to' ({to})"),
            ));
        }
        Ok(Self { by, from, to })
    }
}

/// `GET /admin/spend?group_by=key|user|model|day&from=YYYY-MM-DD&to=YYYY-MM-DD`: one row per
/// group over the UTC days `from..=to` (default: everything up to today), plus the total.
#[utoipa::path(
    get,
    path = "/admin/spend",
    tag = "admin",
    description = "Spend, tokens, requests and cache savings per group over UTC days `from..=to`.",
    params(("group_by" = Option<String>, Query, description = "`key`, `user`, `model` or `day` (default)"), ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD"), ("to" = Option<String>, Query, description = "Last day, YYYY-MM-DD (default today)")),
    responses(
        (status = 200, description = "The report", body = super::openapi::SpendReport),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 500, response = super::openapi::ServerError),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn report(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_admin(&state, req.headers())?;
    let ReportQuery { by, from, to } =
        ReportQuery::parse(req.query_string(), &state.spend.today())?;
    let rows = state
        .spend
        .report(by, &from, &to)
        .map_err(|e| ApiError::Internal(format!("spend report: {e}")))?;
    let mut total = crate::spend::Totals::default();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            total.spend_usd += r.totals.spend_usd;
            total.prompt_tokens += r.totals.prompt_tokens;
            total.completion_tokens += r.totals.completion_tokens;
            total.requests += r.totals.requests;
            total.cache_hits += r.totals.cache_hits;
            total.saved_tokens += r.totals.saved_tokens;
            total.saved_usd += r.totals.saved_usd;
            let mut row = Map::new();
            row.insert(by.as_str().into(), Value::String(r.group));
            if let Ok(Value::Object(fields)) = serde_json::to_value(r.totals) {
                row.extend(fields);
            }
            Value::Object(row)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "group_by": by.as_str(),
        "from": from,
        "to": to,
        "rows": rows,
        "total": total,
    })))
}

/// The body of `/utils/token_counter`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct CountBody {
    model: String,
    #[serde(default)]
    messages: Option<Value>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    tools: Option<Value>,
}

/// `POST /utils/token_counter`: `{"model", "messages"}` or `{"model", "prompt"}` ->
/// `{"total_tokens", "request_model", "model_used", "tokenizer_type"}`, counted as the gateway
/// counts before a call (the BPE of OpenAI models, about four characters a token otherwise).
#[utoipa::path(
    post,
    path = "/utils/token_counter",
    tag = "openai",
    description = "The gateway's token estimate for a prompt (LiteLLM's endpoint); any key.",
    request_body = CountBody,
    responses(
        (status = 200, description = "The count", body = super::openapi::TokenCount),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 413, response = super::openapi::PayloadTooLarge),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn token_counter(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authenticate(&state, req.headers())?;
    let b: CountBody = read_json(&req, payload, &state).await?;
    if b.model.trim().is_empty() {
        return Err(ApiError::invalid("model", "'model' must not be empty"));
    }
    // A model group counts with the model its first deployment runs; any other name as itself.
    let model_used = state
        .router
        .group(&b.model)
        .and_then(|g| g.targets.first())
        .map_or_else(|| b.model.clone(), |t| t.deployment.upstream_model.clone());
    let tok = Tokenizer::for_model(&model_used);
    let total = match (b.messages, b.prompt) {
        (Some(messages), None) => {
            let mut body = json!({"model": b.model, "messages": messages});
            if let Some(tools) = b.tools {
                body["tools"] = tools;
            }
            let chat: ChatRequest = parse_json(body.to_string().as_bytes())?;
            tokens::prompt_tokens_with(&chat, tok)
        }
        (None, Some(prompt)) => tok.count(&prompt),
        _ => {
            return Err(ApiError::invalid(
                "messages",
                "give exactly one of 'messages' or 'prompt'",
            ))
        }
    };
    Ok(HttpResponse::Ok().json(json!({
        "total_tokens": total,
        "request_model": b.model,
        "model_used": model_used,
        "tokenizer_type": tok.kind(),
        "encoding": tok.encoding(),
    })))
}
