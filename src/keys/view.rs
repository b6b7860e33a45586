//! How a key record is shown by the admin API and the CLI: the stored fields plus readable
//! forms (`budget_duration: "30d"`, `expires: "2030-01-01T00:00:00Z"`, `status`). Never a secret.

use super::VirtualKey;
use crate::clock::{format_duration, format_rfc3339};
use serde_json::{json, Value};

/// Whether a key works now.
pub fn status(k: &VirtualKey, now: u64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|at| now >= at) {
        "expired"
    } else {
        "active"
    }
}

/// The JSON of a key record as the API returns it.
pub fn key_json(k: &VirtualKey, now: u64) -> Value {
    let mut v = serde_json::to_value(k).unwrap_or_else(|_| json!({"id": k.id}));
    if let Value::Object(m) = &mut v {
        m.insert(
            "budget_duration".into(),
            json!(k.budget_duration_secs.map(format_duration)),
        );
        m.insert("expires".into(), json!(k.expires_at.map(format_rfc3339)));
        m.insert("created".into(), json!(format_rfc3339(k.created_at)));
        m.insert("revoked".into(), json!(k.revoked_at.map(format_rfc3339)));
        m.insert("status".into(), json!(status(k, now)));
        if let super::KeyCachePolicy::Threshold { threshold } = k.cache_policy {
            // Stored as f32: show 0.9, not 0.8999999761581421.
            let shown: f64 = threshold
                .to_string()
                .parse()
                .unwrap_or(f64::from(threshold));
            m.insert(
                "cache_policy".into(),
                json!({"mode": "threshold", "threshold": shown}),
            );
        }
    }
    v
}

/// `{"object": "list", "data": [...]}` of keys, oldest first.
pub fn list_json(keys: &[std::sync::Arc<VirtualKey>], now: u64) -> Value {
    let data: Vec<Value> = keys.iter().map(|k| key_json(k, now)).collect();
    json!({"object": "list", "data": data})
}

/// A new key with its secret: the only response that ever carries one.
pub fn created_json(k: &VirtualKey, secret: &crate::config::Secret, now: u64) -> Value {
    let mut v = key_json(k, now);
    if let Value::Object(m) = &mut v {
        m.insert("key".into(), json!(secret.expose()));
    }
    v
}

/// A rotated key: the new secret and until when the previous one keeps working.
pub fn rotated_json(
    k: &VirtualKey,
    secret: &crate::config::Secret,
    grace_secs: u64,
    now: u64,
) -> Value {
    let mut v = created_json(k, secret, now);
    if let Value::Object(m) = &mut v {
        m.insert("grace_seconds".into(), json!(grace_secs));
        m.insert(
            "previous_key_valid_until".into(),
            json!(format_rfc3339(now.saturating_add(grace_secs))),
        );
    }
    v
}
