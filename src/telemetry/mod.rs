//! Telemetry: metric names (described once), the Prometheus recorder, and log set-up.
//!
//! Label values come from enums and config (model groups, deployment ids), never from prompts
//! or user input, so the number of series stays bounded.

use crate::config::{LogFormat, LogSettings};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Requests by `model_group`, `status`, `outcome`.
pub const REQUESTS_TOTAL: &str = "sluice_requests_total";
/// Whole-request latency in seconds, by `model_group`, `outcome`.
pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
/// Upstream call latency in seconds, by `deployment`.
pub const UPSTREAM_DURATION: &str = "sluice_upstream_duration_seconds";
/// Time to first streamed token in seconds, by `deployment`.
pub const UPSTREAM_TTFT: &str = "sluice_upstream_time_to_first_token_seconds";
/// Upstream failures by `deployment`, `kind`.
pub const UPSTREAM_ERRORS_TOTAL: &str = "sluice_upstream_errors_total";
/// Tokens by `model_group`, `direction` (`in` | `out`).
pub const TOKENS_TOTAL: &str = "sluice_tokens_total";
/// Requests being served now.
pub const REQUESTS_IN_FLIGHT: &str = "sluice_requests_in_flight";

/// Cache lookups by `outcome`.
pub const CACHE_LOOKUPS_TOTAL: &str = "sluice_cache_lookups_total";
/// Best candidate similarity per semantic lookup.
pub const CACHE_SIMILARITY: &str = "sluice_cache_similarity";
/// Embedding latency in seconds, by source (`model` run or `memo` of a text seen recently).
pub const EMBED_DURATION: &str = "sluice_embed_duration_seconds";
/// Index (or in-scope) search latency in seconds.
pub const CACHE_SEARCH_DURATION: &str = "sluice_cache_search_duration_seconds";
/// Live cache entries.
pub const CACHE_ENTRIES: &str = "sluice_cache_entries";
/// 1 while the index is loading at start-up (large scopes miss meanwhile), else 0.
pub const CACHE_INDEX_LOADING: &str = "sluice_cache_index_loading";
/// Bytes of live cache entries.
pub const CACHE_BYTES: &str = "sluice_cache_bytes";
/// Tokens served from the cache instead of upstream, by `model_group`.
pub const CACHE_TOKENS_SAVED_TOTAL: &str = "sluice_cache_tokens_saved_total";
/// USD not spent thanks to the cache, by `model_group` (needs prices in config).
pub const CACHE_USD_SAVED: &str = "sluice_cache_usd_saved";

/// Label for a model group the config does not know (keeps labels bounded).
/// Counter: routing decisions, by group, deployment and strategy.
pub const ROUTING_DECISIONS_TOTAL: &str = "sluice_routing_decisions_total";
/// Counter: upstream attempts that were retries or fallbacks, by kind.
pub const ROUTING_RETRIES_TOTAL: &str = "sluice_routing_retries_total";
/// Gauge: 1 while a deployment is cooling down.
pub const DEPLOYMENT_COOLDOWN: &str = "sluice_deployment_cooldown";
/// Counter: USD spent upstream, by model group and deployment.
pub const COST_USD_TOTAL: &str = "sluice_cost_usd_total";
/// Label for a model group the config does not know (keeps labels bounded).
pub const UNKNOWN_GROUP: &str = "_unknown";

const SIMILARITY_BUCKETS: &[f64] = &[
    0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 1.0,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns the handle that renders `/metrics`.
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(CACHE_SIMILARITY.into()),
                        SIMILARITY_BUCKETS,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests by model group, HTTP status and cache outcome"
    );
    describe_histogram!(REQUEST_DURATION, Unit::Seconds, "Whole-request latency");
    describe_histogram!(UPSTREAM_DURATION, Unit::Seconds, "Upstream call latency");
    describe_histogram!(
        UPSTREAM_TTFT,
        Unit::Seconds,
        "Upstream time to first streamed token"
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        "Upstream failures by deployment and kind"
    );
    describe_counter!(TOKENS_TOTAL, "Tokens by model group and direction");
    describe_gauge!(REQUESTS_IN_FLIGHT, "Requests being served");
    describe_counter!(CACHE_LOOKUPS_TOTAL, "Cache lookups by outcome");
    describe_histogram!(
        CACHE_SIMILARITY,
        "Best candidate cosine similarity per semantic lookup"
    );
    describe_histogram!(
        EMBED_DURATION,
        Unit::Seconds,
        "Prompt embedding latency by source (model run or memo)"
    );
    describe_histogram!(
        CACHE_SEARCH_DURATION,
        Unit::Seconds,
        "Nearest-neighbour search latency"
    );
    describe_gauge!(CACHE_ENTRIES, "Live cache entries");
    describe_gauge!(
        CACHE_INDEX_LOADING,
        "1 while the semantic index is loading at start-up"
    );
    describe_gauge!(CACHE_BYTES, Unit::Bytes, "Bytes of live cache entries");
    describe_counter!(CACHE_TOKENS_SAVED_TOTAL, "Tokens served from the cache");
    describe_gauge!(CACHE_USD_SAVED, "USD saved by the cache");
}

/// Sets up `tracing` to stderr (text or JSON). `RUST_LOG` overrides the configured level.
/// Returns the guard that flushes the non-blocking writer; keep it alive.
pub fn init_logging(settings: &LogSettings) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        // hnsw_rs reports every index build at info; keep its lines for debugging only.
        .or_else(|_| EnvFilter::try_new(format!("{},hnsw_rs=warn", settings.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        // Colour only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.ok().map(|_| guard)
}
