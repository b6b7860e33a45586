//! Cache settings that the admin API changes at run time (persisted in the store).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default similarity threshold: see BENCHMARKS.md (calibration) for why.
pub const DEFAULT_THRESHOLD: f32 = 0.80;

/// Live cache settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Whether chat completions consult and fill the cache.
    pub enabled: bool,
    /// Cosine similarity a semantic candidate needs (before verification).
    pub default_threshold: f32,
    /// Threshold per model group.
    #[serde(default)]
    pub group_thresholds: BTreeMap<String, f32>,
    /// Threshold per namespace (wins over the group's).
    #[serde(default)]
    pub namespace_thresholds: BTreeMap<String, f32>,
    /// Time to live of new entries in seconds; `None`: never expire.
    #[serde(default)]
    pub default_ttl_seconds: Option<u64>,
    /// Most entries kept (least recently used evicted first).
    #[serde(default)]
    pub max_entries: Option<u64>,
    /// Most bytes of entries kept.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            default_threshold: DEFAULT_THRESHOLD,
            group_thresholds: BTreeMap::new(),
            namespace_thresholds: BTreeMap::new(),
            default_ttl_seconds: None,
            max_entries: None,
            max_bytes: None,
        }
    }
}

/// A bad setting, with the JSON path of the field.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingError {
    /// Field path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn check_threshold(field: String, t: f32) -> Result<(), SettingError> {
    if t > 0.0 && t <= 1.0 {
        Ok(())
    } else {
        Err(SettingError {
            field,
            message: format!("threshold must be in (0, 1], got {t}"),
        })
    }
}

impl CacheSettings {
    /// Checks values; `groups` are the configured model groups.
    pub fn validate(&self, groups: &[String]) -> Result<(), SettingError> {
        check_threshold("default_threshold".into(), self.default_threshold)?;
        for (g, t) in &self.group_thresholds {
            if !groups.contains(g) {
                return Err(SettingError {
                    field: format!("group_thresholds.{g}"),
                    message: format!("unknown model group \"{g}\" (known: {})", groups.join(", ")),
                });
            }
            check_threshold(format!("group_thresholds.{g}"), *t)?;
        }
        for (ns, t) in &self.namespace_thresholds {
            check_threshold(format!("namespace_thresholds.{ns}"), *t)?;
        }
        for (field, v) in [
            ("default_ttl_seconds", self.default_ttl_seconds),
            ("max_entries", self.max_entries),
            ("max_bytes", self.max_bytes),
        ] {
            if v == Some(0) {
                return Err(SettingError {
                    field: field.into(),
                    message: "must be greater than 0 (omit it for no limit)".into(),
                });
            }
        }
        Ok(())
    }

    /// The threshold for a request: namespace, else group, else default.
    pub fn threshold(&self, namespace: &str, group: &str) -> f32 {
        self.namespace_thresholds
            .get(namespace)
            .or_else(|| self.group_thresholds.get(group))
            .copied()
            .unwrap_or(self.default_threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let groups = vec!["g".to_string()];
        let mut s = CacheSettings::default();
        assert!(s.validate(&groups).is_ok());
        s.default_threshold = 1.5;
        assert_eq!(s.validate(&groups).unwrap_err().field, "default_threshold");
        s.default_threshold = 0.9;
        s.group_thresholds.insert("nope".into(), 0.9);
        assert_eq!(
            s.validate(&groups).unwrap_err().field,
            "group_thresholds.nope"
        );
        s.group_thresholds.clear();
        s.group_thresholds.insert("g".into(), 0.0);
        assert_eq!(s.validate(&groups).unwrap_err().field, "group_thresholds.g");
        s.group_thresholds.insert("g".into(), 0.95);
        s.namespace_thresholds.insert("t1".into(), 0.99);
        assert_eq!(s.threshold("t1", "g"), 0.99);
        assert_eq!(s.threshold("t2", "g"), 0.95);
        assert_eq!(s.threshold("t2", "h"), 0.9);
    }
}
