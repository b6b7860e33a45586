//! Tamper-evident audit log: one hash-chained record per request and per admin action, in
//! [`Cf::Audit`](crate::store::Cf::Audit).
//!
//! Owns the record types, the chain (every record carries the SHA-256 of the one before it),
//! verification, retention (pruning with an anchor so the chain still verifies), query and JSONL
//! export, and the `sluice audit` command. It must not touch HTTP handlers' internals, providers
//! or caching: callers build a [`RequestRecord`] or [`AdminRecord`] and hand it over. Bodies are
//! masked by the caller (PII); secrets in admin before/after values and bodies are redacted here,
//! so no caller can store one by mistake.
//!
//! Stored form (see `chain.rs`): the key is the seq as u64 big-endian; the value is the record's
//! canonical JSON (without `hash`) with `,"hash":"<hex>"` spliced in before the closing brace.
//! The hash is computed over the exact stored bytes, so verification never depends on
//! re-serialising (float formatting, key order) giving the same bytes twice.

mod chain;
pub mod cli;
mod log;

#[cfg(test)]
mod tests;

pub use crate::clock::parse_time_ms;
pub use log::{AuditLog, Clock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

/// Default page size of [`AuditLog::query`].
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of [`AuditLog::query`].
pub const MAX_LIMIT: usize = 1000;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// An API request (chat, embeddings, messages, responses...).
    Request,
    /// An admin action (key created, cache config changed...).
    Admin,
}

impl AuditKind {
    /// The lowercase name used in JSON and in the `kind` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Request => "request",
            AuditKind::Admin => "admin",
        }
    }
}

impl FromStr for AuditKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "request" => Ok(AuditKind::Request),
            "admin" => Ok(AuditKind::Admin),
            other => Err(format!(
                "'kind' must be one of request, admin; got '{other}'"
            )),
        }
    }
}

/// One API request as the audit log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The gateway's request id (`x-request-id`).
    pub request_id: String,
    /// Key id of the caller (`master`, `anonymous` or `key_...`), never the secret.
    pub key_id: String,
    /// Alias of the virtual key, if any.
    #[serde(default)]
    pub key_alias: Option<String>,
    /// End user (`user` field of the request), if given.
    #[serde(default)]
    pub user: Option<String>,
    /// Route, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// Model group asked for.
    #[serde(default)]
    pub model_group: Option<String>,
    /// Deployment that answered.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Cache outcome (hit, miss, bypass...).
    #[serde(default)]
    pub cache_outcome: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// Time from request to last byte, in milliseconds.
    pub latency_ms: f64,
    /// Kinds of PII found (and masked), e.g. `email`.
    #[serde(default)]
    pub pii_kinds: Vec<String>,
    /// Prompt and answer, only with `audit.log_bodies`; the caller passes them already masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

/// One admin action as the audit log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdminRecord {
    /// Key id of who did it (`master`, `key_...`).
    pub actor: String,
    /// What was done, e.g. `key.create`, `key.rotate`, `cache.config.update`.
    pub action: String,
    /// What it was done to, e.g. a key id.
    #[serde(default)]
    pub target: Option<String>,
    /// State before (secrets are redacted on append).
    #[serde(default)]
    pub before: Option<Value>,
    /// State after (secrets are redacted on append).
    #[serde(default)]
    pub after: Option<Value>,
}

/// A record of the chain, as stored and as returned by queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain: 1, 2, 3... with no gaps.
    pub seq: u64,
    /// Unix time in milliseconds; never decreases along the chain.
    pub time_ms: u64,
    /// Request or admin.
    pub kind: AuditKind,
    /// Set when `kind` is request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestRecord>,
    /// Set when `kind` is admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminRecord>,
    /// Hex SHA-256 of the previous record (64 zeros for seq 1).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this record's canonical JSON without `hash`.
    pub hash: String,
}

/// Filters and paging of [`AuditLog::query`].
#[derive(Debug, Clone, PartialEq)]
pub struct AuditQuery {
    /// Records at or after this Unix time in milliseconds.
    pub from_ms: Option<u64>,
    /// Records at or before this Unix time in milliseconds.
    pub to_ms: Option<u64>,
    /// Records whose key id, admin actor or admin target is this.
    pub key: Option<String>,
    /// Only this kind.
    pub kind: Option<AuditKind>,
    /// Start after this seq (a previous page's `next_cursor`).
    pub cursor: Option<u64>,
    /// Page size (clamped to `1..=MAX_LIMIT`).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            from_ms: None,
            to_ms: None,
            key: None,
            kind: None,
            cursor: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// One page of [`AuditLog::query`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditPage {
    /// Matching records in seq order.
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` to get the next page; `None` when there is nothing after this page.
    pub next_cursor: Option<String>,
}

/// Why [`AuditLog::verify`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BreakReason {
    /// The record's bytes do not hash to its `hash` (or do not parse): it was edited.
    Changed,
    /// A seq is missing (gap, or records cut from the end).
    Removed,
    /// A record sits at the wrong seq, or its `prev_hash` is not the previous record's hash.
    Reordered,
}

impl BreakReason {
    /// The lowercase name used in JSON and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakReason::Changed => "changed",
            BreakReason::Removed => "removed",
            BreakReason::Reordered => "reordered",
        }
    }
}

/// The first break found by [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Break {
    /// The first seq that does not verify.
    pub seq: u64,
    /// Changed, removed or reordered.
    pub reason: BreakReason,
    /// A sentence for humans.
    pub detail: String,
}

/// The outcome of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Whether the chain verified from the anchor to the head.
    pub intact: bool,
    /// Records checked.
    pub checked: u64,
    /// Seq of the last pruned record (0 when nothing was pruned): the chain starts after it.
    pub anchor_seq: u64,
    /// Seq of the last record checked.
    pub last_seq: Option<u64>,
    /// Hash of the last record checked: write it down elsewhere to detect a rewritten chain.
    pub last_hash: Option<String>,
    /// The first break, when not intact.
    pub broken: Option<Break>,
}

/// Knobs for [`AuditLog::open_with`] (the `audit:` config section, once wired).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditOptions {
    /// Keep request bodies (already masked by the caller). Off: bodies are dropped on append.
    pub log_bodies: bool,
    /// Days to keep records; `None` keeps them forever.
    pub retention_days: Option<u32>,
}

/// Everything that can go wrong in the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The storage layer failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A record or meta value could not be encoded.
    #[error("cannot encode audit record: {0}")]
    Encode(#[from] serde_json::Error),
    /// A stored value does not have the shape this code writes.
    #[error("corrupt audit data at {at}: {detail}")]
    Corrupt {
        /// Which record or meta key.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// Prune found a break in the records it was to delete, and deleted nothing.
    #[error("audit chain broken at seq {}: {}; run `sluice audit verify`", .0.seq, .0.detail)]
    ChainBroken(Break),
    /// u64 seqs are exhausted.
    #[error("audit seq space exhausted")]
    Exhausted,
    /// Writing an export failed.
    #[error("cannot write export: {0}")]
    Io(#[from] std::io::Error),
}

/// Field names whose values are secrets, compared case-insensitively.
const SECRET_FIELDS: &[&str] = &[
    "key",
    "secret",
    "token",
    "api_key",
    "password",
    "master_key",
    "authorization",
];

/// What a redacted secret is replaced with.
pub const REDACTED: &str = "*****";

/// Replaces the value of every field named like a secret (key, secret, token, api_key, password,
/// master_key, authorization; any case, at any depth) with `"*****"`. Nulls stay null so that
/// "no secret" remains visible.
pub fn redact_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if SECRET_FIELDS.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                    if !v.is_null() {
                        *v = Value::String(REDACTED.into());
                    }
                } else {
                    redact_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}
