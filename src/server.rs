//! The HTTP server: actix App, middleware, binding, and graceful shutdown.
//!
//! Middleware order: actix runs the last `wrap()` first, so the request-id/access-log wrapper
//! registered here (the only one) sees every request, including 404s.

use crate::api::{self, RequestId};
use crate::config::Config;
use crate::state::AppState;
use crate::telemetry as t;
use actix_web::dev::Service;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpServer};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound, running server.
pub struct Running {
    /// Addresses actually bound (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
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
    let state = web::Data::new(AppState::new(config)?);
    let app_state = state.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
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
            .configure(api::routes)
    })
    .disable_signals()
    .shutdown_timeout(grace.as_secs().max(1))
    .backlog(2048);
    if let Some(n) = workers {
        server = server.workers(n);
    }
    let server = server.bind(listen)?;
    let addrs = server.addrs();
    let server = server.run();
    state.set_ready(true);
    Ok(Running {
        addrs,
        server,
        state,
    })
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
