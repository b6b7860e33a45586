//! Shared application state: built once at start-up, read by every request.

use crate::audit::AuditLog;
use crate::cache::{CacheEngine, CacheOptions};
use crate::config::Config;
use crate::embed::EmbedConfig;
use crate::keys::KeyStore;
use crate::limits::{Clock, Limiter, SystemClock};
use crate::providers::HttpClients;
use crate::router::Router;
use crate::spend::{Flusher, Spend};
use crate::store::{Store, StoreOptions};
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    /// The semantic cache, when enabled in config.
    pub cache: Option<Arc<CacheEngine>>,
    /// The durable store (`data_dir/db`): cache entries, keys, spend, settings.
    pub store: Arc<Store>,
    /// Virtual keys, loaded from `store` at start and checked from memory.
    pub keys: KeyStore,
    /// Tamper-evident audit log of requests and admin actions, in `store`.
    pub audit: Arc<AuditLog>,
    /// PII detectors and policies (`sluice.pii`).
    pub pii: Arc<crate::pii::PiiGuard>,
    /// Rate windows (per key, user, group, deployment, global).
    pub limits: Arc<Limiter>,
    /// Spend rollups, budgets and alerts.
    pub spend: Arc<Spend>,
    /// Writes spend to the store in the background; flushes once more when the state is dropped.
    _spend_flusher: Flusher,
    /// Dashboard sessions, per-minute rollups and the live tail.
    pub dashboard: Arc<crate::dashboard::Dashboard>,
    /// Flushes and prunes the dashboard's rollups; flushes once more when the state is dropped.
    _dashboard_upkeep: crate::dashboard::Upkeep,
    /// Start time, for uptime.
    pub started: Instant,
    ready: AtomicBool,
}

impl AppState {
    /// Builds the state, opening storage and loading the model when the cache is enabled
    /// (blocking). Readiness starts false until [`AppState::set_ready`].
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let router = Router::new(&config);
        let http = HttpClients::new(&config.deployments)?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", config.data_dir.display()))?;
        if config.encryption.is_none() {
            tracing::warn!("no sluice.encryption key: cache entries, stored responses, audit records and the index snapshot are stored as plaintext");
        }
        let store = Arc::new(Store::open_encrypted(
            &config.data_dir.join("db"),
            StoreOptions {
                sync_writes: config.cache.sync_writes,
            },
            config.keyring(),
        )?);
        let keys = KeyStore::load(Arc::clone(&store))?;
        let audit = Arc::new(AuditLog::open_with(
            Arc::clone(&store),
            crate::audit::AuditOptions {
                log_bodies: config.audit_log_bodies,
                retention_days: config.audit_retention_days,
            },
        )?);
        if let Some(days) = config.audit_retention_days {
            start_audit_retention(Arc::clone(&audit), days);
        }
        let cache = if config.cache.enabled {
            let mut opts = cache_options(&config);
            opts.store = Some(Arc::clone(&store));
            Some(CacheEngine::open(opts)?)
        } else {
            tracing::info!("semantic cache disabled in config");
            None
        };
        if store.rotation_pending() {
            // Records under a previous key, or plaintext from before encryption was turned on.
            spawn_rotation(Arc::clone(&store), cache.clone());
        }
        // Loading a BPE takes tens of milliseconds: do it now, off the request path.
        std::thread::spawn(crate::tokens::warm_up);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let limits = Limiter::new(config.limits.clone(), Arc::clone(&clock));
        let spend = Spend::new(
            Arc::clone(&store),
            clock,
            config.budgets.clone(),
            config.alerts.clone(),
            &config.deployments,
        );
        let spend_flusher = spend.start_flusher();
        let pii = Arc::new(crate::pii::PiiGuard::new(config.pii.clone())?);
        let dashboard = crate::dashboard::Dashboard::new(&config, Arc::clone(&store));
        let dashboard_upkeep = dashboard.start_upkeep();
        Ok(Self {
            dashboard,
            _dashboard_upkeep: dashboard_upkeep,
            pii,
            limits,
            spend,
            _spend_flusher: spend_flusher,
            cache,
            keys,
            audit,
            store,
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

/// Cache options derived from the config.
pub fn cache_options(config: &Config) -> CacheOptions {
    let mut embed = match &config.cache.models_dir {
        Some(dir) => EmbedConfig::from_models_root(dir),
        None => EmbedConfig::default(),
    };
    embed.model = config.cache.embedding_model;
    embed.memo_entries = config.cache.embedding_memo_entries;
    let mut prices = HashMap::new();
    for d in &config.deployments {
        if let (Some(i), Some(o)) = (d.input_cost_per_token, d.output_cost_per_token) {
            prices.entry(d.model_group.clone()).or_insert((i, o));
        }
    }
    CacheOptions {
        data_dir: config.data_dir.clone(),
        embed,
        defaults: config.cache.settings.clone(),
        verify: Default::default(),
        groups: config
            .model_groups()
            .iter()
            .map(|g| g.to_string())
            .collect(),
        prices,
        sync_writes: config.cache.sync_writes,
        store: None,
    }
}

/// Prunes audit records older than `days` now and then every hour, on its own thread (a prune
/// reads the whole log). The anchor is written before anything is deleted, so verification keeps
/// passing, and a process that exits mid-prune loses nothing it should keep.
fn start_audit_retention(audit: Arc<AuditLog>, days: u32) {
    let spawned = std::thread::Builder::new()
        .name("audit-retention".into())
        .spawn(move || loop {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            match audit.prune(days, now_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, retention_days = days, "audit records pruned"),
                Err(e) => tracing::warn!(error = %e, "audit prune failed"),
            }
            std::thread::sleep(std::time::Duration::from_secs(3600));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start audit retention; records are kept");
    }
}

/// Starts the encryption rotation pass on its own thread: re-seals every sealed record under the
/// current key while requests keep being served, then rewrites the index snapshot under it.
/// Returns false when no key is configured or a pass is already running.
pub fn spawn_rotation(store: Arc<Store>, cache: Option<Arc<CacheEngine>>) -> bool {
    if !store.keyring().is_enabled() || store.rotation_running() {
        return false;
    }
    let spawned = std::thread::Builder::new()
        .name("encryption-rotation".into())
        .spawn(move || {
            tracing::info!("encryption rotation pass started");
            match store.reseal_all() {
                Ok(report) => {
                    if let Some(cache) = &cache {
                        if let Err(e) = cache.snapshot() {
                            tracing::warn!(error = %e, "index snapshot after rotation failed");
                        }
                    }
                    tracing::info!(
                        scanned = report.scanned,
                        resealed = report.resealed,
                        key_id = %store.keyring().current_id().map(|k| k.to_string()).unwrap_or_default(),
                        "encryption rotation pass complete: previous keys can be removed from sluice.encryption"
                    );
                }
                Err(e) => tracing::error!(error = %e, "encryption rotation pass failed"),
            }
        });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the encryption rotation pass");
            false
        }
    }
}

/// `sluice rotate-encryption-key` on a stopped gateway: re-seals every sealed record and the
/// index snapshot under the config's current key. Fails when the store is in use (a running
/// gateway holds RocksDB's lock; it runs the same pass itself at start-up).
pub fn rotate_offline(config: &Config) -> anyhow::Result<crate::store::ResealReport> {
    let keyring = config.encryption.clone().ok_or_else(|| {
        anyhow::anyhow!("sluice.encryption is not configured: there is no key to rotate to")
    })?;
    let db = config.data_dir.join("db");
    if !db.join("CURRENT").is_file() {
        anyhow::bail!("no Sluice store at {}", db.display());
    }
    let store =
        Store::open_encrypted(&db, StoreOptions::default(), Arc::clone(&keyring)).map_err(|e| {
            match e {
                crate::store::StoreError::Engine(msg)
                    if msg.contains("lock") || msg.contains("LOCK") =>
                {
                    anyhow::anyhow!(
                        "the store in {} is in use (is the gateway running?): a running gateway \
                     re-encrypts in the background at start-up, so restart it with the new key \
                     as sluice.encryption.key and the old one in previous_keys, or stop it and \
                     run this again",
                        db.display()
                    )
                }
                other => other.into(),
            }
        })?;
    let report = store.reseal_all()?;
    store.sync()?;
    let index_dir = config.data_dir.join("index");
    match crate::index::VectorIndex::load_sealed(&index_dir, &keyring) {
        Ok(Some((index, last_id))) => {
            index.save_sealed(&index_dir, last_id, &keyring)?;
        }
        Ok(None) => {}
        // Start-up rebuilds an unreadable snapshot from the (now re-sealed) store.
        Err(e) => eprintln!("warning: index snapshot not re-encrypted ({e}); the gateway will rebuild it at start-up"),
    }
    Ok(report)
}
