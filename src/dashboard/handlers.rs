//! HTTP handlers of `/ui`, `/ui/api/*` and the browser redirect of `/`. Thin: authenticate,
//! read the dashboard's or the gateway's state, answer JSON, SSE or CSV.

use super::rollup::{self, Bucket, Range};
use super::session::{self, Who};
use super::{assets, now_ms, tail};
use crate::api::read_json;
use crate::api::ReportQuery;
use crate::audit::AdminRecord;
use crate::auth::{authenticate, authenticate_key, Principal};
use crate::error::ApiError;
use crate::providers::ProviderKind;
use crate::spend::{GroupBy, ReportRow};
use crate::state::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Instant;

/// `Content-Security-Policy` of every `/ui` response: only the gateway's own files, no inline
/// script or style, no framing.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// Registers `/`, `/ui`, `/ui/{file}` and `/ui/api/*`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let security = DefaultHeaders::new()
        .add((header::CONTENT_SECURITY_POLICY, CSP))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_FRAME_OPTIONS, "DENY"));
    cfg.route("/", web::get().to(root)).service(
        web::scope("/ui")
            .wrap(security)
            .service(
                web::scope("/api")
                    .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "no-store")))
                    .route("/login", web::post().to(login))
                    .route("/logout", web::post().to(logout))
                    .route("/session", web::get().to(session_info))
                    .route("/overview", web::get().to(overview))
                    .route("/deployments", web::get().to(deployments))
                    .route("/tail", web::get().to(tail_stream))
                    .route("/spend", web::get().to(spend_json))
                    .route("/spend.csv", web::get().to(spend_csv))
                    .route("/me", web::get().to(me))
                    .default_service(web::to(not_found)),
            )
            .route("", web::get().to(index))
            .route("/", web::get().to(index))
            .route("/{file:.+}", web::get().to(asset)),
    );
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::RouteNotFound {
        method: req.method().to_string(),
        path: req.path().to_string(),
    })
}

/// `GET /`: browsers go to the dashboard; API clients keep the 404 they always had.
async fn root(req: HttpRequest) -> HttpResponse {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        HttpResponse::Found()
            .insert_header((header::LOCATION, "/ui"))
            .finish()
    } else {
        not_found(req).await
    }
}

fn serve_asset(req: &HttpRequest, path: &str) -> HttpResponse {
    match assets::get(path) {
        Some(a) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, a.content_type))
            // Revalidate every time: the binary may have been upgraded under the same URL.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(a.data.into_owned()),
        None => actix_web::ResponseError::error_response(&ApiError::RouteNotFound {
            method: req.method().to_string(),
            path: req.path().to_string(),
        }),
    }
}

/// `GET /ui`, `GET /ui/`: the app.
async fn index(req: HttpRequest) -> HttpResponse {
    serve_asset(&req, "index.html")
}

/// `GET /ui/{file}`: scripts, styles, images.
async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    serve_asset(&req, &file)
}

/// Body of `POST /ui/api/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    /// The master key or a virtual key's secret.
    key: String,
}

fn role(p: &Principal) -> &'static str {
    if p.is_admin() {
        "admin"
    } else {
        "key"
    }
}

fn session_json(p: &Principal, csrf: &str) -> Value {
    json!({
        "role": role(p),
        "key_id": p.key_id(),
        "alias": p.key().and_then(|k| k.alias.clone()),
        "csrf_token": csrf,
    })
}

/// `POST /ui/api/login` `{"key"}`: starts a session; the secret is checked, never kept.
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // JSON only: a cross-site HTML form can send text/plain or form bodies, not this type
    // (login CSRF), and SameSite=Strict keeps the cookie from riding along anyway.
    if req.content_type() != "application/json" {
        return Err(ApiError::invalid(
            "content-type",
            "the login body must be JSON (Content-Type: application/json)",
        ));
    }
    let body: LoginBody = read_json(&req, payload, &state).await?;
    let principal = authenticate_key(&state, body.key.trim()).inspect_err(|_| {
        // Failed logins are evidence too (never the key that was tried).
        state.audit.record_admin(AdminRecord {
            actor: "unauthenticated".into(),
            action: "ui.login.failed".into(),
            ..AdminRecord::default()
        });
    })?;
    let who = match &principal {
        Principal::Master => Who::Master,
        Principal::Open => Who::Open,
        Principal::Virtual(k) => Who::Key(k.id.clone()),
    };
    // A session already in this browser is replaced, not kept alive beside the new one.
    if let Some(old) = session::cookie_value(req.headers()) {
        state.dashboard.sessions.destroy(old);
    }
    let (token, s) = state.dashboard.sessions.create(who);
    tracing::info!(key_id = %principal.key_id(), role = role(&principal), "dashboard login");
    state.audit.record_admin(AdminRecord {
        actor: principal.key_id().to_string(),
        action: "ui.login".into(),
        after: Some(json!({"role": role(&principal)})),
        ..AdminRecord::default()
    });
    Ok(HttpResponse::Ok()
        .insert_header((
            header::SET_COOKIE,
            session::set_cookie(&token, state.dashboard.secure_cookies),
        ))
        .json(session_json(&principal, &s.csrf)))
}

/// `POST /ui/api/logout`: ends the session (CSRF-checked like any change) and clears the cookie.
async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(token) = session::cookie_value(req.headers()) {
        state.dashboard.sessions.destroy(token);
    }
    HttpResponse::NoContent()
        .insert_header((
            header::SET_COOKIE,
            session::clear_cookie(state.dashboard.secure_cookies),
        ))
        .finish()
}

/// `GET /ui/api/session`: who is logged in, with the CSRF token; 401 `not_logged_in` otherwise
/// (also on an open gateway, so the page shows its login form).
async fn session_info(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let token = session::cookie_value(req.headers()).ok_or(ApiError::NotLoggedIn)?;
    let s = state
        .dashboard
        .sessions
        .get(token)
        .ok_or(ApiError::NotLoggedIn)?;
    let p = session::principal_of(&state, token, &s)?;
    Ok(HttpResponse::Ok().json(session_json(&p, &s.csrf)))
}

/// The rollup scope a caller may see: everything for admins, its own key otherwise.
fn scope_of(p: &Principal) -> String {
    if p.is_admin() {
        rollup::ALL.to_string()
    } else {
        rollup::key_scope(p.key_id())
    }
}

/// `GET /ui/api/overview?range=1h|24h|7d`: chart series, totals and live numbers.
async fn overview(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = authenticate(&state, req.headers())?;
    let q = crate::api::query_params(req.query_string(), &["range"])?;
    let text = q.get("range").map_or("1h", String::as_str);
    let range = Range::parse(text).ok_or_else(|| {
        ApiError::invalid(
            "range",
            format!("'range' must be one of 1h, 24h, 7d; got '{text}'"),
        )
    })?;
    let scope = scope_of(&p);
    let now = now_ms();
    let (series, total) = state
        .dashboard
        .rollups
        .series(&scope, range, now)
        .map_err(|e| ApiError::Internal(format!("dashboard rollups: {e}")))?;
    let series: Vec<Value> = series
        .iter()
        .map(|(t, b)| {
            let mut m = Map::new();
            m.insert("t".into(), json!(t));
            m.extend(b.to_json());
            Value::Object(m)
        })
        .collect();
    let mut totals = total.to_json();
    totals.insert("hit_rate".into(), json!(total.hit_rate()));
    let live = state.dashboard.rollups.live(&scope, now);
    Ok(HttpResponse::Ok().json(json!({
        "range": range.as_str(),
        "bucket_seconds": range.bucket_seconds(),
        "series": series,
        "totals": totals,
        "live": {
            "requests_per_s": live.requests as f64 / rollup::LIVE_WINDOW_SECS as f64,
            "hit_rate": live.hit_rate(),
            "p50_ms": live.latency.quantile(0.5),
            "p99_ms": live.latency.quantile(0.99),
            "errors": live.errors,
            "window_seconds": rollup::LIVE_WINDOW_SECS,
        },
    })))
}

fn provider_name(k: ProviderKind) -> &'static str {
    match k {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Compatible(_) => "openai_compatible",
        ProviderKind::Azure => "azure",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gemini",
        ProviderKind::Mock => "mock",
    }
}

/// `GET /ui/api/deployments` (admin): per deployment, the last hour from the rollups and the
/// router's live state; the strategy in force.
async fn deployments(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    crate::auth::require_admin(&state, req.headers())?;
    let now_min = now_ms() / 60_000;
    let from = now_min.saturating_sub(59);
    let instant = Instant::now();
    let strategy = state.router.config().strategy.as_str();
    let mut groups = Vec::new();
    for name in state.router.names() {
        let Some(g) = state.router.group(name) else {
            continue;
        };
        let mut hours = Vec::with_capacity(g.targets.len());
        for t in &g.targets {
            let mut hour = Bucket::default();
            let minutes = state
                .dashboard
                .rollups
                .minutes(&rollup::deployment_scope(&t.deployment.id), from, now_min)
                .map_err(|e| ApiError::Internal(format!("dashboard rollups: {e}")))?;
            for b in minutes.values() {
                hour.merge(b);
            }
            hours.push(hour);
        }
        let group_requests: u64 = hours.iter().map(|h| h.requests).sum();
        let deployments: Vec<Value> = g
            .targets
            .iter()
            .zip(&hours)
            .map(|(t, h)| {
                let d = &t.deployment;
                let snap = t.health.snapshot(instant);
                json!({
                    "id": d.id,
                    "provider": provider_name(d.provider),
                    "model": d.upstream_model,
                    "requests": h.requests,
                    "errors": h.errors,
                    "error_rate": (h.requests > 0).then(|| h.errors as f64 / h.requests as f64),
                    "p50_ms": h.latency.quantile(0.5),
                    "ttft_p50_ms": h.ttft.quantile(0.5),
                    "share": (group_requests > 0)
                        .then(|| h.requests as f64 / group_requests as f64),
                    "cooling_down": snap.cooling_down,
                    "cooldown_remaining_s": snap.cooldown_remaining.map(|d| d.as_secs_f64()),
                })
            })
            .collect();
        groups.push(json!({"group": name, "strategy": strategy, "deployments": deployments}));
    }
    Ok(HttpResponse::Ok().json(json!({ "groups": groups })))
}

/// `GET /ui/api/tail`: SSE of finished requests (a key session: its own only).
async fn tail_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let p = authenticate(&state, req.headers())?;
    let own = (!p.is_admin()).then(|| p.key_id().to_string());
    let sub = state.dashboard.tail.subscribe();
    let body = tail::stream(sub, move |e| own.as_ref().is_none_or(|k| &e.key_id == k));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-accel-buffering", HeaderValue::from_static("no")))
        .streaming(body))
}

/// A spend report as the caller may see it: `group_by`, `from`, `to` checked as `/admin/spend`
/// checks them; a non-admin key sees only its own row of `group_by=key`.
fn spend_rows(req: &HttpRequest, state: &AppState) -> Result<(GroupBy, Vec<ReportRow>), ApiError> {
    let p = authenticate(state, req.headers())?;
    let ReportQuery { by, from, to } =
        ReportQuery::parse(req.query_string(), &state.spend.today())?;
    if !p.is_admin() && by != GroupBy::Key {
        return Err(ApiError::AdminRequired);
    }
    let mut rows = state
        .spend
        .report(by, &from, &to)
        .map_err(|e| ApiError::Internal(format!("spend report: {e}")))?;
    if !p.is_admin() {
        rows.retain(|r| r.group == p.key_id());
    }
    Ok((by, rows))
}

/// Columns of a spend row after the group.
const SPEND_COLUMNS: [&str; 7] = [
    "requests",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "spend_usd",
    "saved_tokens",
    "saved_usd",
];

/// `GET /ui/api/spend?group_by=&from=&to=` -> `{"group_by", "rows": [...]}`.
async fn spend_json(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (by, rows) = spend_rows(&req, &state)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let t = r.totals;
            json!({
                by.as_str(): r.group,
                "requests": t.requests,
                "cache_hits": t.cache_hits,
                "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens,
                "spend_usd": t.spend_usd,
                "saved_tokens": t.saved_tokens,
                "saved_usd": t.saved_usd,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"group_by": by.as_str(), "rows": rows})))
}

/// A cell a spreadsheet would not run as a formula (user names come from requests).
fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

/// The CSV of spend rows (quoting by the `csv` crate).
pub fn spend_csv_bytes(by: GroupBy, rows: &[ReportRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut head = vec![by.as_str()];
    head.extend(SPEND_COLUMNS);
    w.write_record(&head)?;
    for r in rows {
        let t = &r.totals;
        w.write_record([
            csv_text(&r.group),
            t.requests.to_string(),
            t.cache_hits.to_string(),
            t.prompt_tokens.to_string(),
            t.completion_tokens.to_string(),
            t.spend_usd.to_string(),
            t.saved_tokens.to_string(),
            t.saved_usd.to_string(),
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}

/// `GET /ui/api/spend.csv?group_by=&from=&to=`: the same rows as CSV, with a header row.
async fn spend_csv(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (by, rows) = spend_rows(&req, &state)?;
    let body =
        spend_csv_bytes(by, &rows).map_err(|e| ApiError::Internal(format!("spend csv: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!(
                "attachment; filename=\"sluice-spend-by-{}.csv\"",
                by.as_str()
            ),
        ))
        .body(body))
}

/// `GET /ui/api/me`: the caller's own key, spend and budget.
async fn me(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let p = authenticate(&state, req.headers())?;
    let today = state.spend.today();
    let report = |by: GroupBy| {
        state
            .spend
            .report(by, "1970-01-01", &today)
            .map_err(|e| ApiError::Internal(format!("spend report: {e}")))
    };
    let body = match &p {
        Principal::Virtual(k) => {
            // Against a budget: spend in its current window; without one: all time.
            let spend = if k.max_budget.is_some() {
                state.spend.key_window_spend(k)
            } else {
                report(GroupBy::Key)?
                    .iter()
                    .find(|r| r.group == k.id)
                    .map_or(0.0, |r| r.totals.spend_usd)
            };
            json!({
                "key_id": k.id,
                "alias": k.alias,
                "role": role(&p),
                "spend_usd": spend,
                "budget_usd": k.max_budget,
                "budget_period": k.budget_duration_secs.map(crate::clock::format_duration),
                "models": (!k.models.is_empty()).then(|| k.models.clone()),
            })
        }
        _ => json!({
            "key_id": p.key_id(),
            "alias": Value::Null,
            "role": role(&p),
            "spend_usd": report(GroupBy::Day)?.iter().map(|r| r.totals.spend_usd).sum::<f64>(),
            "budget_usd": Value::Null,
            "budget_period": Value::Null,
            "models": Value::Null,
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spend::Totals;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let rows = vec![
            ReportRow {
                group: "alice, \"the\" user".into(),
                totals: Totals {
                    requests: 2,
                    saved_usd: 0.5,
                    ..Totals::default()
                },
            },
            ReportRow {
                group: "=HYPERLINK(\"x\")".into(),
                totals: Totals::default(),
            },
        ];
        let text = String::from_utf8(spend_csv_bytes(GroupBy::User, &rows).unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "user,requests,cache_hits,prompt_tokens,completion_tokens,spend_usd,saved_tokens,saved_usd"
        );
        assert_eq!(
            lines.next().unwrap(),
            "\"alice, \"\"the\"\" user\",2,0,0,0,0,0,0.5"
        );
        assert!(lines
            .next()
            .unwrap()
            .starts_with("\"'=HYPERLINK(\"\"x\"\")\","));
    }
}
