//! Configuration: read YAML -> resolve `os.environ/NAME` -> deserialize with paths -> validate.
//!
//! Owns turning a file (or the built-in default) into a typed [`Config`]. It is the only module
//! that reads environment variables for settings; nothing downstream parses strings again.

mod encryption;
mod env;
mod limits;
mod pii;
mod raw;
mod realtime;
mod secret;
mod security;
mod validate;

pub use secret::Secret;
pub use security::{CorsConfig, SecurityConfig, TlsConfig};
pub use validate::{ConfigIssue, ConfigIssues};

use crate::providers::ProviderKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The built-in config, used when `serve` gets no `--config`.
const DEFAULT_CONFIG: &str = include_str!("default.yaml");

/// Groups added to the default config when `OPENAI_API_KEY` is set.
const DEFAULT_OPENAI_MODELS: &[(&str, &str)] = &[
    ("gpt-4o", "openai/gpt-4o"),
    ("gpt-4o-mini", "openai/gpt-4o-mini"),
    ("gpt-4.1-mini", "openai/gpt-4.1-mini"),
    ("text-embedding-3-small", "openai/text-embedding-3-small"),
];

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Every deployment, in file order.
    pub deployments: Vec<Deployment>,
    /// Master key guarding `/v1` and `/admin`; `None` serves openly.
    pub master_key: Option<Secret>,
    /// HTTP server settings.
    pub server: ServerSettings,
    /// Where RocksDB and the index snapshot live.
    pub data_dir: PathBuf,
    /// Logging settings.
    pub log: LogSettings,
    /// Semantic cache.
    pub cache: CacheConfig,
    /// Routing, retries, cooldowns and fallbacks.
    pub routing: crate::router::RoutingConfig,
    /// Rate limits besides those of keys and deployments (`sluice.limits`).
    pub limits: crate::limits::LimitsConfig,
    /// Budgets of end users and of the gateway (`sluice.budgets`, LiteLLM's `max_budget`).
    pub budgets: crate::spend::BudgetsConfig,
    /// Budget alerts (`sluice.alerts`).
    pub alerts: crate::spend::AlertsConfig,
    /// Realtime socket limits (`sluice.realtime`).
    pub realtime: crate::realtime::RealtimeConfig,
    /// TLS, admin listener, CORS and connection timeouts (`sluice.tls`, `sluice.cors`, ...).
    pub security: SecurityConfig,
    /// PII guard policies and custom detectors (`sluice.pii`).
    pub pii: crate::pii::PiiConfig,
    /// Days audit records are kept (`sluice.audit.retention_days`); `None`: forever.
    pub audit_retention_days: Option<u32>,
    /// Whether request records keep the masked prompt and answer (`sluice.audit.log_bodies`).
    pub audit_log_bodies: bool,
    /// Keys for encryption at rest (`sluice.encryption`); `None` stores plaintext.
    pub encryption: Option<std::sync::Arc<crate::crypto::Keyring>>,
    /// Dashboard rollup retention (`sluice.dashboard`).
    pub dashboard: crate::dashboard::DashboardConfig,
    /// Keys the file used that Sluice does not know; reported as warnings at start-up.
    pub ignored_keys: Vec<String>,
}

/// One upstream deployment of a model group.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Stable id: `model_info.id`, or `<model_name>/<index in group>`.
    pub id: String,
    /// The `model_name` clients ask for.
    pub model_group: String,
    /// Wire protocol.
    pub provider: ProviderKind,
    /// Model name sent upstream (without the provider prefix).
    pub upstream_model: String,
    /// Base URL, including any `/v1` suffix.
    pub api_base: Option<String>,
    /// Provider key, sent only upstream.
    pub api_key: Option<Secret>,
    /// Azure `api-version`.
    pub api_version: Option<String>,
    /// OpenAI organization header.
    pub organization: Option<String>,
    /// Overall timeout for a non-streaming call.
    pub timeout: Duration,
    /// Overall timeout for a streaming call.
    pub stream_timeout: Duration,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Requests per minute (enforced by the limits stage).
    pub rpm: Option<u64>,
    /// Tokens per minute (enforced by the limits stage).
    pub tpm: Option<u64>,
    /// USD per prompt token.
    pub input_cost_per_token: Option<f64>,
    /// USD per completion token.
    pub output_cost_per_token: Option<f64>,
    /// Prices per token (price table, overridden by `model_info`), if known.
    pub price: Option<crate::pricing::Price>,
    /// What the model can do (price table, overridden by `model_info`).
    pub caps: crate::router::Capabilities,
    /// Share of traffic under simple-shuffle.
    pub weight: f64,
    /// Retries allowed on this deployment (`None`: the router's `num_retries`).
    pub max_retries: Option<u32>,
    /// `model_info.responses_native`: the deployment serves `/responses` itself (default: only
    /// api.openai.com does).
    pub responses_native: Option<bool>,
    /// Mock behaviour, for `mock/...` deployments.
    pub mock: MockSettings,
}

/// Behaviour of a `mock/...` deployment.
#[derive(Debug, Clone, Default)]
pub struct MockSettings {
    /// Fixed answer; default echoes the last user message.
    pub response: Option<String>,
    /// Delay before answering.
    pub latency: Duration,
    /// Delay between streamed chunks.
    pub chunk_delay: Duration,
}

/// HTTP server settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long in-flight requests may run after SIGTERM.
    pub shutdown_grace: Duration,
}

/// Semantic cache configuration.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `false` does not load the model or storage at all.
    pub enabled: bool,
    /// Initial live settings (persisted admin changes win over these).
    pub settings: crate::cache::CacheSettings,
    /// Where the model files are.
    pub models_dir: Option<PathBuf>,
    /// Which ONNX file embeds prompts.
    pub embedding_model: crate::embed::EmbeddingModel,
    /// fsync every write.
    pub sync_writes: bool,
    /// Prompts whose vectors the embedder keeps for reuse (0 keeps none).
    pub embedding_memo_entries: usize,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// `tracing` filter directive (`info`, `sluice=debug`, ...).
    pub level: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or values are wrong.
    #[error("{0}")]
    Invalid(ConfigIssues),
}

impl Config {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&text)
    }

    /// Parses and validates config YAML text exactly as [`Config::load`] does for a file
    /// (`os.environ/NAME` read from the process environment).
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_yaml(text, &env::ProcessEnv)
    }

    /// The built-in config: the mock model groups, plus OpenAI's when `OPENAI_API_KEY` is set.
    pub fn builtin() -> Result<Config, ConfigError> {
        Self::builtin_with(&env::ProcessEnv)
    }

    fn builtin_with(vars: &dyn env::Vars) -> Result<Config, ConfigError> {
        let mut text = DEFAULT_CONFIG.to_string();
        if vars.get("OPENAI_API_KEY").is_some_and(|k| !k.is_empty()) {
            // Appended as YAML so the default goes through exactly the same path as a file.
            let mut extra = String::new();
            for (name, model) in DEFAULT_OPENAI_MODELS {
                extra.push_str(&format!(
                    "  - model_name: {name}\n    litellm_params:\n      model: {model}\n      api_key: os.environ/OPENAI_API_KEY\n"
                ));
            }
            text = text.replacen("model_list:\n", &format!("model_list:\n{extra}"), 1);
        }
        if vars.get("SLUICE_MASTER_KEY").is_some_and(|k| !k.is_empty()) {
            text.push_str("general_settings:\n  master_key: os.environ/SLUICE_MASTER_KEY\n");
        }
        Self::from_yaml(&text, vars)
    }

    /// Parses and validates YAML text, resolving `os.environ/NAME` through `vars`.
    fn from_yaml(text: &str, vars: &dyn env::Vars) -> Result<Config, ConfigError> {
        validate::parse(text, vars).map_err(ConfigError::Invalid)
    }

    /// Names of the model groups, in first-seen order.
    pub fn model_groups(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in &self.deployments {
            if !out.contains(&d.model_group.as_str()) {
                out.push(&d.model_group);
            }
        }
        out
    }

    /// The keyring for the store and the index snapshot: the configured keys, or none
    /// (plaintext) without `sluice.encryption`.
    pub fn keyring(&self) -> std::sync::Arc<crate::crypto::Keyring> {
        self.encryption
            .clone()
            .unwrap_or_else(|| std::sync::Arc::new(crate::crypto::Keyring::none()))
    }

    /// Overrides the listen address (command line wins over the file).
    pub fn with_listen(mut self, listen: Option<SocketAddr>) -> Self {
        if let Some(addr) = listen {
            self.server.listen = addr;
        }
        self
    }
}

#[cfg(test)]
mod tests;
