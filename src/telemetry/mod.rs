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

/// Label for a model group the config does not know (keeps labels bounded).
pub const UNKNOWN_GROUP: &str = "_unknown";

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
}

/// Sets up `tracing` to stderr (text or JSON). `RUST_LOG` overrides the configured level.
/// Returns the guard that flushes the non-blocking writer; keep it alive.
pub fn init_logging(settings: &LogSettings) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.ok().map(|_| guard)
}
