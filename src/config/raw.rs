//! The YAML file as written: LiteLLM's keys plus Sluice's own `sluice:` section.
//! Nothing here is validated; see `validate.rs` for the typed result.

use serde::Deserialize;

/// Top level of a config file.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    #[serde(default)]
    pub model_list: Vec<RawModel>,
    #[serde(default)]
    pub general_settings: RawGeneralSettings,
    #[serde(default)]
    pub litellm_settings: RawLitellmSettings,
    #[serde(default)]
    pub router_settings: RawRouterSettings,
    #[serde(default)]
    pub sluice: RawSluice,
}

/// One `model_list` entry: a deployment in a model group.
#[derive(Debug, Deserialize)]
pub struct RawModel {
    pub model_name: String,
    pub litellm_params: RawParams,
    #[serde(default)]
    pub model_info: RawModelInfo,
}

/// `litellm_params` of a deployment.
#[derive(Debug, Deserialize)]
pub struct RawParams {
    pub model: String,
    pub api_key: Option<String>,
    pub api_base: Option<String>,
    pub api_version: Option<String>,
    pub organization: Option<String>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Overall request timeout in seconds (LiteLLM's name).
    pub timeout: Option<f64>,
    /// Overall timeout for streaming requests, in seconds (LiteLLM's name).
    pub stream_timeout: Option<f64>,
    /// Connect timeout in seconds (Sluice).
    pub connect_timeout: Option<f64>,
    /// Fixed answer for the mock provider (LiteLLM's `mock_response`).
    pub mock_response: Option<String>,
    /// Delay before the mock answers, in milliseconds (Sluice).
    pub mock_latency_ms: Option<u64>,
    /// Delay between streamed mock chunks, in milliseconds (Sluice).
    pub mock_chunk_delay_ms: Option<u64>,
    /// Share of traffic under simple-shuffle (LiteLLM's name).
    pub weight: Option<f64>,
    /// Retries on this deployment (LiteLLM's name).
    pub max_retries: Option<u32>,
}

/// `model_info` of a deployment: prices and an optional stable id.
#[derive(Debug, Default, Deserialize)]
pub struct RawModelInfo {
    pub id: Option<String>,
    /// The model an Azure (or renamed) deployment runs, for the price table.
    pub base_model: Option<String>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    /// LiteLLM's older name for `max_output_tokens`.
    pub max_tokens: Option<u64>,
    pub supports_function_calling: Option<bool>,
    pub supports_vision: Option<bool>,
    pub supports_response_schema: Option<bool>,
    /// Whether the deployment serves the Responses API (`POST {api_base}/responses`) itself.
    pub responses_native: Option<bool>,
}

/// `general_settings`.
#[derive(Debug, Default, Deserialize)]
pub struct RawGeneralSettings {
    pub master_key: Option<String>,
    /// Requests running at once across the gateway (LiteLLM's name).
    pub global_max_parallel_requests: Option<u64>,
}

/// `litellm_settings`.
#[derive(Debug, Default, Deserialize)]
pub struct RawLitellmSettings {
    pub request_timeout: Option<f64>,
    pub json_logs: Option<bool>,
    /// Budget of the whole gateway in USD (LiteLLM's global proxy budget).
    pub max_budget: Option<f64>,
    /// Window of `max_budget` (`1h`, `1d`, `30d`).
    pub budget_duration: Option<String>,
    /// Budget in USD of every end user (never resets, as in LiteLLM).
    pub max_end_user_budget: Option<f64>,
}

/// `router_settings`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRouterSettings {
    pub routing_strategy: Option<String>,
    pub timeout: Option<f64>,
    pub num_retries: Option<u32>,
    /// Seconds before the first retry of a deployment (LiteLLM: minimum wait).
    pub retry_after: Option<f64>,
    pub allowed_fails: Option<u32>,
    /// Seconds a failing deployment is skipped.
    pub cooldown_time: Option<f64>,
    /// `[{group: [fallback, ...]}, ...]`.
    #[serde(default)]
    pub fallbacks: Vec<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub context_window_fallbacks: Vec<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    pub content_policy_fallbacks: Vec<std::collections::BTreeMap<String, Vec<String>>>,
}

/// `sluice.routing`.
#[derive(Debug, Default, Deserialize)]
pub struct RawRouting {
    /// Weights of the balanced score.
    pub weights: Option<RawWeights>,
    /// `model: auto` and other auto names.
    #[serde(default)]
    pub auto: RawAuto,
    /// Longest backoff / Retry-After honoured, in seconds.
    pub max_backoff_seconds: Option<f64>,
    /// Completion tokens assumed when a request sets no max_tokens.
    pub expected_completion_tokens: Option<u64>,
    /// Seed for routing randomness (tests, reproducible benchmarks).
    pub seed: Option<u64>,
}

/// `sluice.routing.weights`.
#[derive(Debug, Default, Deserialize)]
pub struct RawWeights {
    pub cost: Option<f64>,
    pub latency: Option<f64>,
    pub errors: Option<f64>,
}

/// `sluice.routing.auto`.
#[derive(Debug, Default, Deserialize)]
pub struct RawAuto {
    /// Policy of `model: auto`.
    pub policy: Option<String>,
    /// More auto names: `{name: policy}`.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, String>,
}

/// Sluice's own section.
#[derive(Debug, Default, Deserialize)]
pub struct RawSluice {
    pub listen: Option<String>,
    pub data_dir: Option<String>,
    pub workers: Option<usize>,
    pub max_request_body_bytes: Option<usize>,
    pub shutdown_grace_seconds: Option<f64>,
    pub connect_timeout_seconds: Option<f64>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub budgets: RawBudgets,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub realtime: RawRealtime,
    /// Audit log retention (`sluice.audit`).
    #[serde(default)]
    pub audit: RawAudit,
    /// Dashboard settings (`sluice.dashboard`).
    #[serde(default)]
    pub dashboard: RawDashboard,
    /// PII guard (`sluice.pii`); see `pii.rs`.
    #[serde(default)]
    pub pii: super::pii::RawPii,
    /// HTTPS certificate and key (`sluice.tls`); see `security.rs`.
    pub tls: Option<super::security::RawTls>,
    /// Separate listener for admin routes and metrics.
    pub admin_listen: Option<String>,
    /// Browser origins allowed by CORS.
    pub cors: Option<super::security::RawCors>,
    /// Seconds a client has to send its request head.
    pub client_request_timeout_seconds: Option<f64>,
    /// Seconds an idle kept-alive connection stays open.
    pub keep_alive_seconds: Option<f64>,
    /// Encryption at rest (`sluice.encryption`); see `encryption.rs`.
    pub encryption: Option<super::encryption::RawEncryption>,
}

/// `sluice.audit`: how long audit records are kept and whether they keep bodies.
#[derive(Debug, Default, Deserialize)]
pub struct RawAudit {
    /// Days to keep records (default: forever).
    pub retention_days: Option<u32>,
    /// Keep masked prompt and answer bodies in request records (default: off).
    pub log_bodies: Option<bool>,
}

/// `sluice.dashboard`: how long the dashboard's per-minute rollups are kept.
#[derive(Debug, Default, Deserialize)]
pub struct RawDashboard {
    /// Days of rollups kept (default 8, so the 7-day chart is always full).
    pub retention_days: Option<u32>,
}

/// `sluice.realtime`: limits of `/v1/realtime` sockets.
#[derive(Debug, Default, Deserialize)]
pub struct RawRealtime {
    /// Seconds without a frame either way before a socket is closed.
    pub idle_timeout_seconds: Option<f64>,
    /// Largest message either way, in bytes.
    pub max_message_bytes: Option<usize>,
    /// Sockets one key may hold open at once.
    pub max_sockets_per_key: Option<usize>,
}

/// Requests and tokens per minute of one scope.
#[derive(Debug, Default, Deserialize)]
pub struct RawRate {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_parallel_requests: Option<u64>,
}

/// `sluice.limits`: rate limits besides those of keys and deployments.
#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    /// The whole gateway.
    #[serde(default)]
    pub global: RawRate,
    /// Per model group: `{group: {rpm, tpm}}`.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, RawRate>,
    /// Every end user, each on their own.
    #[serde(default)]
    pub user: RawRate,
    /// Named end users: `{user: {rpm, tpm}}`, instead of `user`.
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, RawRate>,
    /// Whether cache hits count their tokens against TPM (default false: RPM only).
    pub cache_hits_count_tokens: Option<bool>,
}

/// One budget: USD per window.
#[derive(Debug, Deserialize)]
pub struct RawBudget {
    pub max_budget: f64,
    /// `1h`, `1d`, `30d`; absent: never resets.
    pub budget_duration: Option<String>,
}

/// `sluice.budgets`.
#[derive(Debug, Default, Deserialize)]
pub struct RawBudgets {
    /// The whole gateway.
    pub global: Option<RawBudget>,
    /// Every end user, each on their own.
    pub user: Option<RawBudget>,
    /// Named end users, instead of `user`.
    #[serde(default)]
    pub users: std::collections::BTreeMap<String, RawBudget>,
    /// Whether a cache hit's saved cost counts against budgets (default false: hits are free).
    pub count_cache_hits: Option<bool>,
}

/// `sluice.alerts`: budget alerts.
#[derive(Debug, Default, Deserialize)]
pub struct RawAlerts {
    /// URL that receives a JSON POST per alert.
    pub webhook_url: Option<String>,
    /// Fractions of a budget that alert (default 0.5, 0.8, 1.0).
    pub thresholds: Option<Vec<f64>>,
}

/// `sluice.cache`: defaults for the semantic cache (the admin API can change them live).
#[derive(Debug, Default, Deserialize)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub similarity_threshold: Option<f32>,
    #[serde(default)]
    pub group_thresholds: std::collections::BTreeMap<String, f32>,
    pub ttl_seconds: Option<u64>,
    pub max_entries: Option<u64>,
    pub max_bytes: Option<u64>,
    /// Folder with the embedding model and ONNX Runtime (default: ./models, else the build's).
    pub models_dir: Option<String>,
    /// Which ONNX file embeds prompts: `quantized` (default) or `reference`.
    pub embedding_model: Option<String>,
    /// fsync every write (survives power loss, not only a crash of the process).
    pub sync_writes: Option<bool>,
    /// Prompts whose vectors are kept for reuse (0 keeps none).
    pub embedding_memo_entries: Option<usize>,
}
