//! Shared application state: built once at start-up, read by every request.

use crate::config::Config;
use crate::providers::HttpClients;
use crate::router::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Everything a request needs, shared by all workers.
pub struct AppState {
    /// The validated config.
    pub config: Config,
    /// Model groups.
    pub router: Router,
    /// Pooled upstream clients.
    pub http: HttpClients,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Start time, for uptime.
    pub started: Instant,
    ready: AtomicBool,
}

impl AppState {
    /// Builds the state; readiness starts false until [`AppState::set_ready`].
    pub fn new(config: Config) -> Result<Self, reqwest::Error> {
        let router = Router::new(&config);
        let http = HttpClients::new(&config.deployments)?;
        Ok(Self {
            config,
            router,
            http,
            metrics: crate::telemetry::metrics_handle(),
            started: Instant::now(),
            ready: AtomicBool::new(false),
        })
    }

    /// Whether the gateway takes traffic (false during start-up and shutdown).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Flips readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
