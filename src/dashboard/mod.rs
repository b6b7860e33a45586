//! The dashboard's backend: `/ui` (the embedded single-page app), `/ui/api/*` (login, session,
//! overview charts, deployments, live tail, spend, the caller's own usage) and `GET /` for
//! browsers. See docs/dashboard.md for the API.
//!
//! It owns the session store (the cookie and CSRF rules that `auth` consults), the per-minute
//! rollups in RocksDB (`Cf::Rollups`) and the live tail. It is fed once per finished request
//! from `api::chat` and only reads the rest of the gateway (router, keys, spend); it never
//! changes routing, cache or key state itself (the UI does that through the `/admin` API).

pub mod assets;
pub mod handlers;
pub mod histogram;
pub mod rollup;
pub mod session;
pub mod tail;
pub mod ttft;

use crate::audit::RequestRecord;
use crate::config::Config;
use crate::pricing::Price;
use crate::store::Store;
use crate::wire::Usage;
use rollup::{CacheKind, Rollups, Sample};
use session::Sessions;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tail::{Tail, TailEvent};

pub use handlers::routes;

/// The login endpoint (exempt from the CSRF check: it authenticates by the key in its body).
pub const LOGIN_PATH: &str = "/ui/api/login";
/// Default of `sluice.dashboard.retention_days`.
pub const DEFAULT_RETENTION_DAYS: u32 = 8;
/// How often pending rollups are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// How often old rollups are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// `sluice.dashboard`.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// Days of per-minute rollups kept.
    pub retention_days: u32,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Sessions, rollups and the live tail, shared by every worker.
#[derive(Debug)]
pub struct Dashboard {
    /// Browser sessions.
    pub sessions: Sessions,
    /// Per-minute rollups.
    pub rollups: Rollups,
    /// Live tail of finished requests.
    pub tail: Tail,
    /// Whether cookies get `Secure` (the listener speaks TLS).
    pub secure_cookies: bool,
    /// Days of rollups kept.
    pub retention_days: u32,
    /// Price of each group's first priced deployment, for what a hit saved (as `spend` counts).
    hit_prices: HashMap<String, Price>,
}

/// Unix time now, in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Dashboard {
    /// The dashboard over `store`.
    pub fn new(config: &Config, store: Arc<Store>) -> Arc<Self> {
        let mut hit_prices = HashMap::new();
        for d in &config.deployments {
            if let Some(p) = d.price {
                hit_prices.entry(d.model_group.clone()).or_insert(p);
            }
        }
        Arc::new(Self {
            sessions: Sessions::default(),
            rollups: Rollups::new(store),
            tail: Tail::default(),
            secure_cookies: config.security.tls.is_some(),
            retention_days: config.dashboard.retention_days,
            hit_prices,
        })
    }

    /// Counts a finished request (rollups for the gateway, its key and its deployment; the
    /// live ring; the tail). Memory only, called on the request path.
    pub fn record(&self, r: &RequestRecord, ttft_ms: Option<f64>) {
        let cache = r.cache_outcome.as_deref().and_then(CacheKind::parse);
        let hit = cache.is_some_and(CacheKind::is_hit);
        let saved_usd = match (&r.model_group, hit) {
            (Some(g), true) => self.hit_prices.get(g).map_or(0.0, |p| {
                p.cost(&Usage {
                    prompt_tokens: r.prompt_tokens,
                    completion_tokens: r.completion_tokens,
                    total_tokens: r.prompt_tokens + r.completion_tokens,
                })
            }),
            _ => 0.0,
        };
        // Tokens and cost are what went upstream; a hit's tokens are what it saved.
        let (tokens_in, tokens_out) = if hit {
            (0, 0)
        } else {
            (r.prompt_tokens, r.completion_tokens)
        };
        let sample = Sample {
            error: r.status >= 400,
            cache,
            tokens_in,
            tokens_out,
            cost_usd: if hit { 0.0 } else { r.cost_usd },
            saved_usd,
            latency_ms: r.latency_ms,
            ttft_ms,
        };
        let mut live = vec![rollup::ALL.to_string()];
        if r.key_id != "unauthenticated" {
            live.push(rollup::key_scope(&r.key_id));
        }
        let mut scopes = live.clone();
        if let Some(d) = &r.deployment {
            scopes.push(rollup::deployment_scope(d));
        }
        let now = now_ms();
        self.rollups.record(&scopes, &live, &sample, now);
        self.tail.publish(TailEvent {
            time_ms: now,
            request_id: r.request_id.clone(),
            key_id: r.key_id.clone(),
            key_alias: r.key_alias.clone(),
            user: r.user.clone(),
            endpoint: r.endpoint.clone(),
            model: r.model_group.clone(),
            deployment: r.deployment.clone(),
            cache: r.cache_outcome.clone(),
            status: r.status,
            tokens_in: r.prompt_tokens,
            tokens_out: r.completion_tokens,
            cost_usd: r.cost_usd,
            latency_ms: r.latency_ms,
        });
    }

    /// Writes pending rollups now (logged, not returned: callers are shutdown paths).
    pub fn flush(&self) {
        if let Err(e) = self.rollups.flush(now_ms()) {
            tracing::warn!(error = %e, "dashboard rollup flush failed; kept for the next one");
        }
    }

    /// Starts the thread that flushes rollups every [`FLUSH_EVERY`] and prunes them past the
    /// retention every [`PRUNE_EVERY`]; dropping the handle stops it and flushes once more.
    pub fn start_upkeep(self: &Arc<Self>) -> Upkeep {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let dash = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("dashboard-rollups".into())
            .spawn(move || {
                let tick = Duration::from_millis(100);
                let mut since_flush = Duration::ZERO;
                // The first prune runs at start-up.
                let mut since_prune = PRUNE_EVERY;
                while !flag.load(Ordering::Acquire) {
                    if since_prune >= PRUNE_EVERY {
                        since_prune = Duration::ZERO;
                        match dash.rollups.prune(dash.retention_days, now_ms()) {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(pruned = n, "old dashboard rollups pruned"),
                            Err(e) => tracing::warn!(error = %e, "dashboard rollup prune failed"),
                        }
                    }
                    std::thread::sleep(tick);
                    since_flush += tick;
                    since_prune += tick;
                    if since_flush >= FLUSH_EVERY {
                        since_flush = Duration::ZERO;
                        dash.flush();
                    }
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the dashboard flusher; rollups are written at shutdown only"))
            .ok();
        Upkeep {
            dashboard: Arc::clone(self),
            stop,
            thread,
        }
    }
}

/// The background flusher; flushes a last time when dropped.
#[derive(Debug)]
pub struct Upkeep {
    dashboard: Arc<Dashboard>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.dashboard.flush();
    }
}
