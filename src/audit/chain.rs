//! The chain's byte format: hashing, sealing a record, and reading a sealed one back.
//!
//! A sealed value is the canonical JSON of the record without `hash` (`{...}`), with
//! `,"hash":"<64 hex>"` inserted before the closing brace: valid JSON that parses as an
//! [`AuditRecord`], and whose canonical bytes can be cut back out without re-serialising.

use super::{AuditError, AuditKind, AuditRecord};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// `prev_hash` of seq 1.
pub(crate) const GENESIS_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Bytes between the canonical part and the closing brace.
const HASH_PREFIX: &[u8] = b",\"hash\":\"";
/// Length of what [`seal`] appends after the canonical part minus its `}`.
const SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + 2;

/// The record without `hash`, in [`AuditRecord`]'s field order; the payload is already JSON so
/// that it can be serialised outside the chain lock.
#[derive(Serialize)]
pub(crate) struct Unsealed<'a> {
    pub seq: u64,
    pub time_ms: u64,
    pub kind: AuditKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<&'a RawValue>,
    pub prev_hash: &'a str,
}

/// A position in the chain: the anchor (last pruned record) and the head hint in the Meta CF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Mark {
    pub seq: u64,
    pub hash: String,
    #[serde(default)]
    pub time_ms: u64,
}

impl Mark {
    /// Before the first record.
    pub fn genesis() -> Mark {
        Mark {
            seq: 0,
            hash: GENESIS_HASH.into(),
            time_ms: 0,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Hex SHA-256 of `prev_hash` followed by the canonical JSON, given as `body` + `}`.
fn chain_hash(prev_hash: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(body);
    h.update(b"}");
    hex(&h.finalize())
}

/// Hashes and seals a record: returns the stored bytes and the hash.
pub(crate) fn seal(record: &Unsealed<'_>) -> Result<(Vec<u8>, String), AuditError> {
    let mut bytes = serde_json::to_vec(record)?;
    // A struct always serialises as `{...}`; anything else would be a serde bug.
    if bytes.pop() != Some(b'}') {
        return Err(AuditError::Corrupt {
            at: format!("seq {}", record.seq),
            detail: "canonical JSON is not an object".into(),
        });
    }
    let hash = chain_hash(record.prev_hash, &bytes);
    bytes.reserve(SUFFIX_LEN);
    bytes.extend_from_slice(HASH_PREFIX);
    bytes.extend_from_slice(hash.as_bytes());
    bytes.extend_from_slice(b"\"}");
    Ok((bytes, hash))
}

/// The stored hash of a sealed value, without parsing the record.
pub(crate) fn stored_hash(value: &[u8]) -> Option<&str> {
    let body_len = value.len().checked_sub(SUFFIX_LEN)?;
    let suffix = &value[body_len..];
    if !suffix.starts_with(HASH_PREFIX) || !suffix.ends_with(b"\"}") {
        return None;
    }
    let hash = std::str::from_utf8(&suffix[HASH_PREFIX.len()..HASH_PREFIX.len() + 64]).ok()?;
    hash.bytes().all(|b| b.is_ascii_hexdigit()).then_some(hash)
}

/// Whether a sealed value's bytes still hash to its stored hash, given the record's own
/// `prev_hash` (the chain link is checked separately).
pub(crate) fn hash_matches(value: &[u8], prev_hash: &str) -> bool {
    match stored_hash(value) {
        Some(stored) => chain_hash(prev_hash, &value[..value.len() - SUFFIX_LEN]) == stored,
        None => false,
    }
}

/// Parses a sealed value.
pub(crate) fn open(value: &[u8]) -> Result<AuditRecord, String> {
    serde_json::from_slice(value).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_parse_and_rehash() {
        let payload = RawValue::from_string(r#"{"actor":"master","action":"x"}"#.into()).unwrap();
        let (bytes, hash) = seal(&Unsealed {
            seq: 7,
            time_ms: 1,
            kind: AuditKind::Admin,
            request: None,
            admin: Some(&*payload),
            prev_hash: GENESIS_HASH,
        })
        .unwrap();
        let rec = open(&bytes).unwrap();
        assert_eq!((rec.seq, rec.hash.as_str()), (7, hash.as_str()));
        assert_eq!(stored_hash(&bytes), Some(hash.as_str()));
        assert!(hash_matches(&bytes, GENESIS_HASH));
        assert!(!hash_matches(&bytes, &hash));
        assert_eq!(stored_hash(b"{}"), None);
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
