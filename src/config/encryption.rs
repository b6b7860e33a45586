//! `sluice.encryption`: the key that seals cache entries, stored responses, audit records and
//! index snapshots at rest, and the previous keys that still open records during a rotation.
//!
//! Keys are read (from the environment through `os.environ/NAME`, or from a file) and decoded
//! here, once; errors name the field and never echo the key or any byte of it.

use super::validate::ConfigIssues;
use crate::crypto::{Key, Keyring, KEY_LEN};
use base64::Engine;
use serde::Deserialize;
use std::sync::Arc;

/// `sluice.encryption` as written.
#[derive(Default, Deserialize)]
pub struct RawEncryption {
    /// Base64 of 32 bytes, usually `os.environ/NAME`.
    pub key: Option<String>,
    /// A file holding the base64 key (instead of `key`).
    pub key_file: Option<String>,
    /// Earlier keys (base64), still opening records until the rotation pass has re-sealed them.
    #[serde(default)]
    pub previous_keys: Vec<String>,
    /// Files holding earlier keys.
    #[serde(default)]
    pub previous_key_files: Vec<String>,
}

impl std::fmt::Debug for RawEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawEncryption")
            .field("key_file", &self.key_file)
            .field("previous_key_files", &self.previous_key_files)
            .finish_non_exhaustive()
    }
}

/// Decodes base64 text into a key; the error says what is wrong without quoting the text.
fn decode(text: &str) -> Result<Key, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| "is not valid base64 (make one with `openssl rand -base64 32`)".to_string())?;
    if bytes.len() != KEY_LEN {
        return Err(format!(
            "decodes to {} bytes; an AES-256 key is {KEY_LEN} bytes of base64 \
             (make one with `openssl rand -base64 32`)",
            bytes.len()
        ));
    }
    Key::from_bytes(&bytes).map_err(|e| e.to_string())
}

fn from_file(path: &str) -> Result<Key, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    decode(&text).map_err(|e| format!("{path} {e}"))
}

/// Validates `sluice.encryption`; `None` when the section is absent (records stay plaintext).
pub fn encryption(raw: Option<&RawEncryption>, issues: &mut ConfigIssues) -> Option<Arc<Keyring>> {
    let raw = raw?;
    let current = match (&raw.key, &raw.key_file) {
        (Some(_), Some(_)) => {
            issues.push("sluice.encryption", "set key or key_file, not both");
            None
        }
        (None, None) => {
            issues.push(
                "sluice.encryption",
                "needs key (e.g. os.environ/SLUICE_ENCRYPTION_KEY) or key_file; \
                 leave the section out to store plaintext",
            );
            None
        }
        (Some(text), None) => decode(text)
            .map_err(|e| issues.push("sluice.encryption.key", e))
            .ok(),
        (None, Some(path)) => from_file(path)
            .map_err(|e| issues.push("sluice.encryption.key_file", e))
            .ok(),
    };
    let mut previous = Vec::new();
    for (i, text) in raw.previous_keys.iter().enumerate() {
        match decode(text) {
            Ok(k) => previous.push(k),
            Err(e) => issues.push(format!("sluice.encryption.previous_keys[{i}]"), e),
        }
    }
    for (i, path) in raw.previous_key_files.iter().enumerate() {
        match from_file(path) {
            Ok(k) => previous.push(k),
            Err(e) => issues.push(format!("sluice.encryption.previous_key_files[{i}]"), e),
        }
    }
    Some(Arc::new(Keyring::new(current?, previous)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="; // 32 x 'A'

    fn run(raw: RawEncryption) -> (Option<Arc<Keyring>>, ConfigIssues) {
        let mut issues = ConfigIssues::default();
        (encryption(Some(&raw), &mut issues), issues)
    }

    #[test]
    fn absent_means_plaintext() {
        let mut issues = ConfigIssues::default();
        assert!(encryption(None, &mut issues).is_none());
        assert!(issues.0.is_empty());
    }

    #[test]
    fn key_from_value_or_file() {
        let (k, issues) = run(RawEncryption {
            key: Some(KEY_A.into()),
            ..Default::default()
        });
        assert!(issues.0.is_empty());
        let k = k.unwrap();
        assert!(k.is_enabled());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{KEY_A}\n")).unwrap();
        let (f, issues) = run(RawEncryption {
            key_file: Some(file.display().to_string()),
            ..Default::default()
        });
        assert!(issues.0.is_empty());
        assert_eq!(f.unwrap().current_id(), k.current_id());
    }

    #[test]
    fn errors_name_the_field_never_the_key() {
        let secret_ish = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="; // 20 bytes of base64
        let (k, issues) = run(RawEncryption {
            key: Some(secret_ish.into()),
            previous_keys: vec!["not base64 at all!".into(), KEY_A.into()],
            previous_key_files: vec!["/nonexistent/key".into()],
            ..Default::default()
        });
        assert!(k.is_none());
        let paths: Vec<&str> = issues.0.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sluice.encryption.key",
                "sluice.encryption.previous_keys[0]",
                "sluice.encryption.previous_key_files[0]",
            ]
        );
        assert!(issues.0[0].message.contains("20 bytes"));
        assert!(issues.0[1].message.contains("base64"));
        let all = format!("{issues}");
        assert!(!all.contains(secret_ish) && !all.contains("not base64 at all"));

        let (_, issues) = run(RawEncryption::default());
        assert_eq!(issues.0[0].path, "sluice.encryption");
        let (_, issues) = run(RawEncryption {
            key: Some(KEY_A.into()),
            key_file: Some("/x".into()),
            ..Default::default()
        });
        assert_eq!(issues.0[0].path, "sluice.encryption");
    }

    #[test]
    fn debug_hides_keys() {
        let raw = RawEncryption {
            key: Some(KEY_A.into()),
            previous_keys: vec![KEY_A.into()],
            ..Default::default()
        };
        assert!(!format!("{raw:?}").contains(KEY_A));
        let (k, _) = run(raw);
        assert!(!format!("{k:?}").contains(KEY_A));
    }
}
