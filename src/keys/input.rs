//! Key fields as clients send them (admin API, LiteLLM's `/key/generate`, the CLI), checked one
//! by one so that every error names its field: `models[1]: unknown model group "x"`.
//!
//! The body is read as a JSON object by hand rather than through a derived type: the messages
//! say what a good value looks like, and PATCH needs to tell "absent" from `null` (clear).

use super::{KeyCachePolicy, VirtualKey};
use crate::clock::{parse_duration, parse_rfc3339};
use serde_json::{Map, Value};

/// A field that failed validation, with the JSON path of the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct KeyFieldError {
    /// JSON path of the bad field (`models[1]`, `cache_policy.threshold`).
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl KeyFieldError {
    /// A failure of `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Which field names a body uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Sluice's admin API: `alias`, `rpm`, `tpm`, `expires`.
    Sluice,
    /// LiteLLM's `/key/generate`: `key_alias`, `rpm_limit`, `tpm_limit`, `duration` (Sluice's
    /// names are accepted too).
    LiteLlm,
}

/// LiteLLM's names for Sluice's fields.
const LITELLM_NAMES: &[(&str, &str)] = &[
    ("key_alias", "alias"),
    ("rpm_limit", "rpm"),
    ("tpm_limit", "tpm"),
    ("duration", "expires"),
];

/// LiteLLM fields Sluice has no use for, accepted when empty so LiteLLM clients that always send
/// them keep working.
const LITELLM_IGNORED_WHEN_EMPTY: &[&str] = &[
    "aliases",
    "config",
    "permissions",
    "tags",
    "allowed_cache_controls",
    "model_max_budget",
    "model_rpm_limit",
    "model_tpm_limit",
    "spend",
    "send_invite_email",
    "blocked",
];

/// Expected shape of a duration, quoted in errors.
pub const DURATION_HINT: &str = "expected like 30s, 15m, 1h, 1d, 30d";

/// Changes to a key: `Some` replaces the field (an inner `None` clears it), `None` keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyChanges {
    /// Human name.
    pub alias: Option<Option<String>>,
    /// Allowed model groups (empty: all).
    pub models: Option<Vec<String>>,
    /// Requests per minute.
    pub rpm: Option<Option<u64>>,
    /// Tokens per minute.
    pub tpm: Option<Option<u64>>,
    /// Requests at once.
    pub max_parallel_requests: Option<Option<u64>>,
    /// Budget in USD.
    pub max_budget: Option<Option<f64>>,
    /// Budget window in seconds.
    pub budget_duration_secs: Option<Option<u64>>,
    /// Expiry in Unix seconds.
    pub expires_at: Option<Option<u64>>,
    /// Pinned cache namespace (`None` inside: the key id).
    pub cache_namespace: Option<Option<String>>,
    /// Cache behaviour.
    pub cache_policy: Option<KeyCachePolicy>,
    /// PII policy overrides (replaced as a whole; `null` clears them).
    pub pii: Option<crate::pii::PiiOverride>,
    /// Free-form metadata (replaced as a whole).
    pub metadata: Option<Map<String, Value>>,
    /// Owning user.
    pub user_id: Option<Option<String>>,
    /// Owning team.
    pub team_id: Option<Option<String>>,
    /// Admin rights.
    pub admin: Option<bool>,
}

impl KeyChanges {
    /// Reads and checks a JSON body. `now` (Unix seconds) anchors relative expiries (`30d`);
    /// `known_model` says whether a model group (or auto name) exists.
    pub fn from_json(
        body: &Value,
        dialect: Dialect,
        now: u64,
        known_model: &dyn Fn(&str) -> bool,
    ) -> Result<KeyChanges, KeyFieldError> {
        let Value::Object(obj) = body else {
            return Err(KeyFieldError::new("", "the body must be a JSON object"));
        };
        let mut c = KeyChanges::default();
        for (name, value) in obj {
            let field = match dialect {
                Dialect::LiteLlm => {
                    if let Some((_, ours)) = LITELLM_NAMES.iter().find(|(l, _)| *l == name) {
                        if obj.contains_key(*ours) {
                            return Err(KeyFieldError::new(
                                name.as_str(),
                                format!("give either '{name}' or '{ours}', not both"),
                            ));
                        }
                        *ours
                    } else if LITELLM_IGNORED_WHEN_EMPTY.contains(&name.as_str()) {
                        if is_empty(value) {
                            continue;
                        }
                        return Err(KeyFieldError::new(
                            name.as_str(),
                            "not supported by Sluice (accepted only when empty)",
                        ));
                    } else {
                        name.as_str()
                    }
                }
                Dialect::Sluice => name.as_str(),
            };
            c.set(field, name, value, now, known_model)?;
        }
        Ok(c)
    }

    /// Sets one field from its JSON value; `name` is the field as the client spelled it.
    fn set(
        &mut self,
        field: &str,
        name: &str,
        v: &Value,
        now: u64,
        known_model: &dyn Fn(&str) -> bool,
    ) -> Result<(), KeyFieldError> {
        match field {
            "alias" => self.alias = Some(nullable(v, |v| text(name, v, 256))?),
            "models" => self.models = Some(models(name, v, known_model)?),
            "rpm" => self.rpm = Some(nullable(v, |v| positive(name, v))?),
            "tpm" => self.tpm = Some(nullable(v, |v| positive(name, v))?),
            "max_parallel_requests" => {
                self.max_parallel_requests = Some(nullable(v, |v| positive(name, v))?)
            }
            "max_budget" => self.max_budget = Some(nullable(v, |v| budget(name, v))?),
            "budget_duration" => {
                self.budget_duration_secs = Some(nullable(v, |v| duration(name, v))?)
            }
            "expires" => self.expires_at = Some(nullable(v, |v| expiry(name, v, now))?),
            "cache_namespace" => self.cache_namespace = Some(nullable(v, |v| namespace(name, v))?),
            "cache_policy" => self.cache_policy = Some(cache_policy(name, v)?),
            "pii" => self.pii = Some(pii(name, v)?),
            "metadata" => {
                self.metadata = Some(match v {
                    Value::Null => Map::new(),
                    Value::Object(m) => m.clone(),
                    _ => return Err(KeyFieldError::new(name, "must be a JSON object")),
                })
            }
            "user_id" => self.user_id = Some(nullable(v, |v| text(name, v, 256))?),
            "team_id" => self.team_id = Some(nullable(v, |v| text(name, v, 256))?),
            "admin" => {
                self.admin = Some(
                    v.as_bool()
                        .ok_or_else(|| KeyFieldError::new(name, "must be true or false"))?,
                )
            }
            "id" | "key" | "created_at" | "revoked_at" | "token" => {
                return Err(KeyFieldError::new(
                    name,
                    "is set by the gateway and cannot be given",
                ))
            }
            _ => {
                return Err(KeyFieldError::new(
                    name,
                    "unknown field (known: alias, models, rpm, tpm, max_parallel_requests, \
                     max_budget, budget_duration, expires, cache_namespace, cache_policy, pii, \
                     metadata, user_id, team_id, admin)",
                ))
            }
        }
        Ok(())
    }

    /// Applies the changes to a key record.
    pub fn apply(&self, k: &mut VirtualKey) {
        fn put<T: Clone>(target: &mut T, change: &Option<T>) {
            if let Some(v) = change {
                *target = v.clone();
            }
        }
        put(&mut k.alias, &self.alias);
        put(&mut k.models, &self.models);
        put(&mut k.rpm, &self.rpm);
        put(&mut k.tpm, &self.tpm);
        put(&mut k.max_parallel_requests, &self.max_parallel_requests);
        put(&mut k.max_budget, &self.max_budget);
        put(&mut k.budget_duration_secs, &self.budget_duration_secs);
        put(&mut k.expires_at, &self.expires_at);
        put(&mut k.cache_namespace, &self.cache_namespace);
        put(&mut k.cache_policy, &self.cache_policy);
        put(&mut k.pii, &self.pii);
        put(&mut k.metadata, &self.metadata);
        put(&mut k.user_id, &self.user_id);
        put(&mut k.team_id, &self.team_id);
        put(&mut k.admin, &self.admin);
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
    }
}

/// `null` clears the field; anything else goes through `parse`.
fn nullable<T>(
    v: &Value,
    parse: impl FnOnce(&Value) -> Result<T, KeyFieldError>,
) -> Result<Option<T>, KeyFieldError> {
    match v {
        Value::Null => Ok(None),
        v => parse(v).map(Some),
    }
}

fn text(field: &str, v: &Value, max: usize) -> Result<String, KeyFieldError> {
    match v.as_str().map(str::trim) {
        Some(s) if !s.is_empty() && s.chars().count() <= max => Ok(s.to_string()),
        Some(_) => Err(KeyFieldError::new(
            field,
            format!("must be 1-{max} characters"),
        )),
        None => Err(KeyFieldError::new(field, "must be a string")),
    }
}

fn positive(field: &str, v: &Value) -> Result<u64, KeyFieldError> {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(0), _) => Err(KeyFieldError::new(field, "must be > 0")),
            (Some(n), _) => Ok(n),
            (None, Some(f)) if f <= 0.0 => Err(KeyFieldError::new(field, "must be > 0")),
            _ => Err(KeyFieldError::new(field, "must be a whole number > 0")),
        },
        _ => Err(KeyFieldError::new(field, "must be a whole number > 0")),
    }
}

fn budget(field: &str, v: &Value) -> Result<f64, KeyFieldError> {
    match v.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
        Some(_) => Err(KeyFieldError::new(field, "must be >= 0")),
        None => Err(KeyFieldError::new(field, "must be a number of USD >= 0")),
    }
}

fn duration(field: &str, v: &Value) -> Result<u64, KeyFieldError> {
    v.as_str()
        .and_then(parse_duration)
        .ok_or_else(|| KeyFieldError::new(field, DURATION_HINT))
}

/// An RFC 3339 time, or a duration counted from `now`.
fn expiry(field: &str, v: &Value, now: u64) -> Result<u64, KeyFieldError> {
    let parsed = v.as_str().and_then(|s| {
        parse_rfc3339(s).or_else(|| parse_duration(s).map(|d| now.saturating_add(d)))
    });
    parsed.ok_or_else(|| {
        KeyFieldError::new(
            field,
            "expected an RFC 3339 time (2030-01-31T00:00:00Z) or a duration like 30s, 15m, 1h, 1d, 30d",
        )
    })
}

fn namespace(field: &str, v: &Value) -> Result<String, KeyFieldError> {
    match v.as_str() {
        Some(s)
            if !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b)) =>
        {
            Ok(s.to_string())
        }
        _ => Err(KeyFieldError::new(
            field,
            "must be 1-128 characters of [A-Za-z0-9-_.:/]",
        )),
    }
}

fn models(
    field: &str,
    v: &Value,
    known_model: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, KeyFieldError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => {
            return Err(KeyFieldError::new(
                field,
                "must be a list of model group names",
            ))
        }
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let name = item
            .as_str()
            .ok_or_else(|| KeyFieldError::new(&path, "must be a string"))?;
        if !known_model(name) {
            return Err(KeyFieldError::new(
                &path,
                format!("unknown model group \"{name}\""),
            ));
        }
        if !out.iter().any(|m| m == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// `{"prompts": "mask", "responses": "detect"}` (either may be left out; `null` clears both).
fn pii(field: &str, v: &Value) -> Result<crate::pii::PiiOverride, KeyFieldError> {
    let mut out = crate::pii::PiiOverride::default();
    let m = match v {
        Value::Null => return Ok(out),
        Value::Object(m) => m,
        _ => {
            return Err(KeyFieldError::new(
                field,
                "must be an object like {\"prompts\": \"mask\", \"responses\": \"detect\"}",
            ))
        }
    };
    for (k, v) in m {
        let path = format!("{field}.{k}");
        let slot = match k.as_str() {
            "prompts" => &mut out.prompts,
            "responses" => &mut out.responses,
            _ => {
                return Err(KeyFieldError::new(
                    path,
                    "unknown field (known: prompts, responses)",
                ))
            }
        };
        *slot = match v {
            Value::Null => None,
            Value::String(s) => Some(s.parse().map_err(|_| {
                KeyFieldError::new(&path, "expected \"off\", \"detect\", \"mask\" or \"block\"")
            })?),
            _ => {
                return Err(KeyFieldError::new(
                    path,
                    "expected \"off\", \"detect\", \"mask\" or \"block\"",
                ))
            }
        };
    }
    Ok(out)
}

fn cache_policy(field: &str, v: &Value) -> Result<KeyCachePolicy, KeyFieldError> {
    let bad_mode =
        |path: &str| KeyFieldError::new(path, "expected \"default\", \"off\" or \"threshold\"");
    let (mode, obj) = match v {
        Value::String(s) => (s.as_str(), None),
        Value::Object(m) => {
            let mode_path = format!("{field}.mode");
            let mode = match m.get("mode") {
                Some(Value::String(s)) => s.as_str(),
                None if m.contains_key("threshold") => "threshold",
                _ => return Err(bad_mode(&mode_path)),
            };
            if let Some(extra) = m.keys().find(|k| *k != "mode" && *k != "threshold") {
                return Err(KeyFieldError::new(
                    format!("{field}.{extra}"),
                    "unknown field (known: mode, threshold)",
                ));
            }
            (mode, Some(m))
        }
        _ => return Err(bad_mode(field)),
    };
    let threshold_path = format!("{field}.threshold");
    let threshold = obj.and_then(|m| m.get("threshold"));
    match mode {
        "default" | "off" if threshold.is_some_and(|t| !t.is_null()) => Err(KeyFieldError::new(
            threshold_path,
            format!("only allowed with mode \"threshold\", not \"{mode}\""),
        )),
        "default" => Ok(KeyCachePolicy::Default),
        "off" => Ok(KeyCachePolicy::Off),
        "threshold" => match threshold.and_then(Value::as_f64) {
            Some(t) if t > 0.0 && t <= 1.0 => Ok(KeyCachePolicy::Threshold {
                threshold: t as f32,
            }),
            _ => Err(KeyFieldError::new(
                threshold_path,
                "must be a number in (0, 1]",
            )),
        },
        _ if obj.is_some() => Err(bad_mode(&format!("{field}.mode"))),
        _ => Err(bad_mode(field)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known(m: &str) -> bool {
        ["gpt-x", "mock", "auto"].contains(&m)
    }

    fn parse(body: Value) -> Result<KeyChanges, KeyFieldError> {
        KeyChanges::from_json(&body, Dialect::Sluice, 1_000, &known)
    }

    fn err(body: Value) -> String {
        parse(body).unwrap_err().to_string()
    }

    #[test]
    fn reads_every_field() {
        let c = parse(json!({
            "alias": "team-a", "models": ["gpt-x", "mock", "gpt-x"], "rpm": 10, "tpm": 1000,
            "max_parallel_requests": 2, "max_budget": 0, "budget_duration": "30d",
            "expires": "1h", "cache_namespace": "tenant-a",
            "cache_policy": {"mode": "threshold", "threshold": 0.9},
            "metadata": {"env": "prod"}, "user_id": "u1", "team_id": "t1", "admin": true
        }))
        .unwrap();
        assert_eq!(c.alias, Some(Some("team-a".into())));
        assert_eq!(c.models, Some(vec!["gpt-x".into(), "mock".into()]));
        assert_eq!(c.rpm, Some(Some(10)));
        assert_eq!(c.max_budget, Some(Some(0.0)));
        assert_eq!(c.budget_duration_secs, Some(Some(2_592_000)));
        assert_eq!(c.expires_at, Some(Some(4_600)));
        assert_eq!(
            c.cache_policy,
            Some(KeyCachePolicy::Threshold { threshold: 0.9 })
        );
        assert_eq!(c.admin, Some(true));
        let c =
            parse(json!({"expires": "2030-01-01T00:00:00Z", "rpm": null, "cache_policy": "off"}))
                .unwrap();
        assert_eq!(c.expires_at, Some(Some(1_893_456_000)));
        assert_eq!(c.rpm, Some(None));
        assert_eq!(c.cache_policy, Some(KeyCachePolicy::Off));
        assert_eq!(c.tpm, None);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(json!({"models": ["gpt-x", "x"]})),
            "models[1]: unknown model group \"x\""
        );
        assert_eq!(
            err(json!({"budget_duration": "monthly"})),
            "budget_duration: expected like 30s, 15m, 1h, 1d, 30d"
        );
        assert_eq!(err(json!({"rpm": 0})), "rpm: must be > 0");
        assert_eq!(err(json!({"tpm": -3})), "tpm: must be > 0");
        assert_eq!(err(json!({"rpm": 1.5})), "rpm: must be a whole number > 0");
        assert_eq!(err(json!({"max_budget": -1})), "max_budget: must be >= 0");
        assert!(err(json!({"expires": "tomorrow"})).starts_with("expires: expected an RFC 3339"));
        assert_eq!(
            err(json!({"cache_policy": {"mode": "threshold", "threshold": 1.5}})),
            "cache_policy.threshold: must be a number in (0, 1]"
        );
        assert_eq!(
            err(json!({"cache_policy": {"threshold": 0}})),
            "cache_policy.threshold: must be a number in (0, 1]"
        );
        assert!(
            err(json!({"cache_policy": {"mode": "sometimes"}})).starts_with("cache_policy.mode:")
        );
        assert!(err(json!({"cache_namespace": "a b"})).starts_with("cache_namespace:"));
        assert!(err(json!({"pii": {"prompts": "hide"}})).starts_with("pii.prompts: expected"));
        assert!(err(json!({"pii": {"answers": "mask"}})).starts_with("pii.answers: unknown field"));
        assert!(err(json!({"pii": "mask"})).starts_with("pii: must be an object"));
        assert!(err(json!({"rpm_limit": 5})).starts_with("rpm_limit: unknown field"));
        assert!(err(json!({"id": "key_1"})).starts_with("id: is set by the gateway"));
        assert!(err(json!({"admin": "yes"})).starts_with("admin:"));
        assert_eq!(err(json!([1])), ": the body must be a JSON object");
    }

    #[test]
    fn litellm_names() {
        let c = KeyChanges::from_json(
            &json!({"key_alias": "a", "rpm_limit": 5, "tpm_limit": 50, "duration": "20m",
                    "aliases": {}, "config": {}, "metadata": {"user": "x"}}),
            Dialect::LiteLlm,
            0,
            &known,
        )
        .unwrap();
        assert_eq!(c.alias, Some(Some("a".into())));
        assert_eq!(c.rpm, Some(Some(5)));
        assert_eq!(c.tpm, Some(Some(50)));
        assert_eq!(c.expires_at, Some(Some(1_200)));
        let e = KeyChanges::from_json(&json!({"rpm_limit": 0}), Dialect::LiteLlm, 0, &known)
            .unwrap_err();
        assert_eq!(e.to_string(), "rpm_limit: must be > 0");
        let e = KeyChanges::from_json(&json!({"aliases": {"a": "b"}}), Dialect::LiteLlm, 0, &known)
            .unwrap_err();
        assert_eq!(e.field, "aliases");
    }

    #[test]
    fn apply_replaces_and_clears() {
        let mut k = VirtualKey {
            id: "key_1".into(),
            alias: Some("old".into()),
            models: vec!["mock".into()],
            rpm: Some(5),
            tpm: None,
            max_parallel_requests: None,
            max_budget: None,
            budget_duration_secs: None,
            expires_at: None,
            cache_namespace: None,
            cache_policy: KeyCachePolicy::Default,
            pii: Default::default(),
            metadata: Map::new(),
            user_id: None,
            team_id: None,
            admin: false,
            created_at: 1,
            revoked_at: None,
        };
        parse(json!({"alias": null, "rpm": 7, "models": []}))
            .unwrap()
            .apply(&mut k);
        assert_eq!(k.alias, None);
        assert_eq!(k.rpm, Some(7));
        assert!(k.models.is_empty());
        assert_eq!(k.id, "key_1");
    }
}
