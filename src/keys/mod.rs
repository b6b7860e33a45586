//! Virtual keys: Sluice's own API keys (`sk-sluice-…`), each with its limits, budget, allowed
//! models and cache policy, stored hashed in RocksDB.
//!
//! Owns the key records and their lifecycle (create, rotate, revoke, expire). It does not count
//! requests or spend (limits and spend do) and never sees provider keys.
//!
//! - `input`: key fields as clients send them, checked with the field named in every error.
//! - `store`: [`KeyStore`], RocksDB plus an in-memory map that `auth` checks secrets against.
//! - `view`: how a record is shown (never with a secret).
//! - `time`: durations (`30d`) and RFC 3339 times.
//! - `cli`: `sluice keys ...`, offline against the store or through a running gateway.

pub mod cli;
pub mod input;
pub mod store;
pub mod view;

pub use input::{Dialect, KeyChanges, KeyFieldError};
pub use store::{
    redact_secrets, AuthFailure, KeyError, KeyStore, DEFAULT_GRACE_SECS, SECRET_PREFIX,
};

use serde::{Deserialize, Serialize};

/// What the cache does for a key's requests.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum KeyCachePolicy {
    /// The gateway's thresholds.
    #[default]
    Default,
    /// A fixed similarity threshold for this key's lookups.
    Threshold {
        /// Cosine similarity in (0, 1].
        threshold: f32,
    },
    /// No lookups and no stores.
    Off,
}

/// One virtual key as stored (the secret itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualKey {
    /// Stable id (`key_…`), used in URLs, logs, metrics and spend.
    pub id: String,
    /// Human name.
    pub alias: Option<String>,
    /// Model groups it may call; empty means all.
    pub models: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute.
    pub tpm: Option<u64>,
    /// Requests running at once.
    pub max_parallel_requests: Option<u64>,
    /// Budget in USD per window.
    pub max_budget: Option<f64>,
    /// Budget window in seconds (`1h`, `1d`, `30d` in the API); `None`: the budget never resets.
    pub budget_duration_secs: Option<u64>,
    /// Unix seconds after which the key stops working.
    pub expires_at: Option<u64>,
    /// Cache namespace its requests use (default: the key id, so tenants never share answers).
    pub cache_namespace: Option<String>,
    /// Cache behaviour.
    pub cache_policy: KeyCachePolicy,
    /// PII policy overrides for its requests (prompts, answers); absent: the group's or the
    /// gateway's.
    #[serde(default, skip_serializing_if = "crate::pii::PiiOverride::is_empty")]
    pub pii: crate::pii::PiiOverride,
    /// Free-form metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Owning user id.
    pub user_id: Option<String>,
    /// Owning team id.
    pub team_id: Option<String>,
    /// Whether it may call `/admin` (admin keys).
    pub admin: bool,
    /// Unix seconds of creation.
    pub created_at: u64,
    /// Unix seconds of revocation, if revoked.
    pub revoked_at: Option<u64>,
}

impl VirtualKey {
    /// The namespace its cache entries live in.
    pub fn namespace(&self) -> &str {
        self.cache_namespace.as_deref().unwrap_or(&self.id)
    }

    /// Whether it may call `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}
