//! The HTTP server: actix App, middleware, binding, and graceful shutdown.
//!
//! Middleware order: actix runs the last `wrap()` first, so the request-id/access-log wrapper
//! (registered last) sees every request, including 404s and CORS preflights; CORS comes next;
//! the listener split (`sluice.admin_listen`) runs innermost, right before routing.

use crate::api::{self, RequestId};
use crate::config::{Config, CorsConfig};
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry as t;
use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer, ResponseError};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound, running server.
pub struct Running {
    /// Addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    /// Addresses of the admin listener (`sluice.admin_listen`); empty when there is none.
    pub admin_addrs: Vec<SocketAddr>,
    /// `https` when `sluice.tls` is set, else `http` (both listeners use the same).
    pub scheme: &'static str,
    /// Resolves when the server has stopped.
    pub server: actix_web::dev::Server,
    /// Shared state (readiness flag).
    pub state: web::Data<AppState>,
}

/// Builds state, binds the listener and starts serving. Readiness turns true once bound.
pub fn start(config: Config) -> anyhow::Result<Running> {
    let workers = config.server.workers;
    let grace = config.server.shutdown_grace;
    let listen = config.server.listen;
    let security = config.security.clone();
    let state = web::Data::new(AppState::new(config)?);
    let app_state = state.clone();
    // Set once both listeners are bound and before the server runs, so every request sees it.
    let admin_split: Arc<OnceLock<Vec<SocketAddr>>> = Arc::default();
    let split = admin_split.clone();
    let cors_config = security.cors.clone();
    let mut server = HttpServer::new(move || {
        let split = split.clone();
        App::new()
            .app_data(app_state.clone())
            // CSRF: a state-changing call authenticated by the dashboard's session cookie must
            // carry the session's token (innermost, right before routing).
            .wrap_fn(|req, srv| {
                use futures_util::future::{ready, Either};
                let refused = req.app_data::<web::Data<AppState>>().and_then(|state| {
                    crate::dashboard::session::check_csrf(
                        state,
                        req.method(),
                        req.path(),
                        req.headers(),
                    )
                    .err()
                });
                match refused {
                    Some(e) => Either::Left(ready(Ok(req.into_response(e.error_response())))),
                    None => Either::Right(srv.call(req)),
                }
            })
            .wrap_fn(move |req, srv| {
                use futures_util::future::{ready, Either};
                let refused = split.get().is_some_and(|admin| {
                    // The router's (percent-decoded) path, so `/%61dmin/...` cannot slip past.
                    let path = req.match_info().as_str();
                    let on_admin = admin.contains(&req.app_config().local_addr());
                    !is_health_path(path) && !is_ui_path(path) && is_admin_path(path) != on_admin
                });
                if refused {
                    let res = ApiError::RouteNotFound {
                        method: req.method().to_string(),
                        path: req.path().to_string(),
                    }
                    .error_response();
                    Either::Left(ready(Ok(req.into_response(res))))
                } else {
                    Either::Right(srv.call(req))
                }
            })
            .wrap(cors(cors_config.as_ref()))
            .wrap_fn(|req, srv| {
                let id = RequestId::from_header(
                    req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()),
                );
                req.extensions_mut().insert(id.clone());
                let started = Instant::now();
                let method = req.method().clone();
                // A secret pasted into a URL must not reach the log.
                let path = crate::keys::redact_secrets(req.path()).into_owned();
                let in_flight = metrics::gauge!(t::REQUESTS_IN_FLIGHT);
                in_flight.increment(1.0);
                let fut = srv.call(req);
                async move {
                    let mut res = fut.await;
                    in_flight.decrement(1.0);
                    if let Ok(r) = &mut res {
                        if let Ok(v) = HeaderValue::from_str(&id.0) {
                            r.headers_mut().insert(REQUEST_ID, v);
                        }
                        let h = r.headers();
                        let get = |name: &str| {
                            h.get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        tracing::info!(
                            request_id = %id.0,
                            %method,
                            %path,
                            status = r.status().as_u16(),
                            route = %get(api::ROUTE_HEADER),
                            cache = %get(api::CACHE_HEADER),
                            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                            "request"
                        );
                    }
                    res
                }
            })
            .configure(crate::dashboard::routes)
            .configure(api::routes)
    })
    .disable_signals()
    .shutdown_timeout(grace.as_secs().max(1))
    .backlog(2048)
    // Slowloris: a client that trickles its request head is answered 408 and dropped.
    .client_request_timeout(security.client_request_timeout)
    .keep_alive(security.keep_alive)
    // Streamed answers are many small writes: with Nagle on, each one after the first waits
    // for the client's delayed ACK (~40 ms per Responses turn, measured in responses_loop).
    .tcp_nodelay(true);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    let tls = security.tls.as_ref().map(|t| (*t.server).clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    // The admin listener uses TLS too when it is on: it carries the master key.
    let server = match &tls {
        Some(c) => server.bind_rustls_0_23(listen, c.clone()),
        None => server.bind(listen),
    }
    .map_err(|e| anyhow::anyhow!("cannot bind sluice.listen {listen}: {e}"))?;
    let addrs = server.addrs();
    let server = match security.admin_listen {
        None => server,
        Some(admin) => match &tls {
            Some(c) => server.bind_rustls_0_23(admin, c.clone()),
            None => server.bind(admin),
        }
        .map_err(|e| anyhow::anyhow!("cannot bind sluice.admin_listen {admin}: {e}"))?,
    };
    let admin_addrs: Vec<SocketAddr> = server.addrs().into_iter().skip(addrs.len()).collect();
    if security.admin_listen.is_some() {
        let _ = admin_split.set(admin_addrs.clone());
    }
    let server = server.run();
    state.set_ready(true);
    Ok(Running {
        addrs,
        admin_addrs,
        scheme,
        server,
        state,
    })
}

/// Routes served only by the admin listener when `sluice.admin_listen` is set (and refused there
/// otherwise): `/admin/*`, LiteLLM's `/key/*` and `/metrics`.
fn is_admin_path(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under("/admin") || under("/key") || path == "/metrics"
}

/// The dashboard answers on both listeners: with `sluice.admin_listen`, open it on the admin
/// port so that its admin pages reach `/admin/*`.
fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Health probes answer on both listeners: orchestrators may probe either port.
fn is_health_path(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/")
}

/// Request headers a browser may send cross-origin: auth, JSON, and the gateway's own.
const CORS_ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "cache-control",
    "openai-organization",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
    "x-sluice-user",
    "x-sluice-cache-namespace",
    "x-sluice-cache-threshold",
    "x-sluice-cache-ttl",
];

/// Response headers a browser script may read.
const CORS_EXPOSE_HEADERS: &[&str] = &[
    "x-request-id",
    "retry-after",
    "x-sluice-route",
    "x-sluice-cost-usd",
    "x-sluice-cache",
    "x-sluice-cache-entry",
    "x-sluice-cache-similarity",
    "x-sluice-cache-age",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

/// The CORS middleware for `sluice.cors`; without it, a no-op that adds no header at all.
fn cors(config: Option<&CorsConfig>) -> actix_web::middleware::Condition<actix_cors::Cors> {
    use actix_cors::Cors;
    use actix_web::middleware::Condition;
    let Some(config) = config.cloned() else {
        return Condition::new(false, Cors::default());
    };
    // Requests from other origins are still served (non-browser clients may send Origin), just
    // without CORS headers, so browsers refuse to hand the response to the page.
    let cors = Cors::default()
        .allowed_origin_fn(move |origin, _| origin.to_str().is_ok_and(|o| config.allows(o)))
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers(CORS_ALLOW_HEADERS.iter().copied())
        .expose_headers(CORS_EXPOSE_HEADERS.iter().copied())
        .max_age(600_usize);
    Condition::new(true, cors)
}

/// Waits for SIGTERM or Ctrl-C, then: readiness false, stop accepting, let in-flight finish.
pub async fn shutdown_on_signal(handle: actix_web::dev::ServerHandle, state: web::Data<AppState>) {
    wait_for_signal().await;
    tracing::info!("shutdown signal received: draining in-flight requests");
    state.set_ready(false);
    handle.stop(true).await;
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The background thread that expires entries, rebuilds the index and writes snapshots.
pub struct Upkeep {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often cache upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(30);

/// Starts cache upkeep on its own thread (it blocks on RocksDB and index work).
pub fn spawn_cache_upkeep(cache: std::sync::Arc<crate::cache::CacheEngine>) -> Upkeep {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("cache-upkeep".into())
        .spawn(move || {
            let tick = Duration::from_millis(200);
            let mut waited = Duration::ZERO;
            while !flag.load(Ordering::Acquire) {
                std::thread::sleep(tick);
                waited += tick;
                if waited >= UPKEEP_EVERY {
                    waited = Duration::ZERO;
                    cache.maintain();
                }
            }
        })
        .ok();
    Upkeep { stop, thread }
}

impl Upkeep {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
