//! The stored form of one cached answer (bincode in the store's `entries` column family).

use crate::wire::Usage;
use serde::{Deserialize, Serialize};

/// Format version written with every entry, so a future layout can be told apart.
const FORMAT: u8 = 1;

/// One cached answer and what it answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Format version.
    pub format: u8,
    /// Tenant namespace.
    pub namespace: String,
    /// Model group.
    pub model_group: String,
    /// Exact-match key.
    pub exact: [u8; 32],
    /// Semantic scope, if the request could be matched semantically.
    pub scope: Option<[u8; 32]>,
    /// The last user message, for verification of later look-alikes.
    pub query: Option<String>,
    /// Its embedding (kept so the index can be rebuilt from the store alone).
    pub embedding: Option<Vec<f32>>,
    /// The `chat.completion` object, as JSON text.
    pub completion: String,
    /// Tokens the original call used.
    pub prompt_tokens: u64,
    /// Tokens the original call produced.
    pub completion_tokens: u64,
    /// Unix milliseconds when stored.
    pub created_ms: u64,
    /// Unix milliseconds after which it must not be served (0: never expires).
    pub expires_ms: u64,
}

impl CacheEntry {
    /// A new entry in the current format.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namespace: &str,
        model_group: &str,
        exact: [u8; 32],
        scope: Option<[u8; 32]>,
        query: Option<String>,
        embedding: Option<Vec<f32>>,
        completion: String,
        usage: Usage,
        created_ms: u64,
        expires_ms: u64,
    ) -> Self {
        Self {
            format: FORMAT,
            namespace: namespace.to_string(),
            model_group: model_group.to_string(),
            exact,
            scope,
            query,
            embedding,
            completion,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            created_ms,
            expires_ms,
        }
    }

    /// Encodes for the store.
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).map_err(|e| e.to_string())
    }

    /// Decodes from the store.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        bincode::serde::decode_from_slice::<Self, _>(bytes, bincode::config::standard())
            .map(|(e, _)| e)
            .map_err(|e| e.to_string())
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        expired_at(self.expires_ms, now_ms)
    }
}

/// The fields of a stored entry that the start-up scan needs, decoded in place: the answer and
/// the question are borrowed from the store's bytes and the vector is read past, not copied.
#[derive(Debug, Deserialize)]
pub struct EntryHead<'a> {
    /// Format version.
    pub format: u8,
    /// Tenant namespace.
    pub namespace: &'a str,
    /// Model group.
    pub model_group: &'a str,
    /// Exact-match key.
    pub exact: [u8; 32],
    /// Semantic scope.
    pub scope: Option<[u8; 32]>,
    /// The last user message.
    #[serde(borrow)]
    pub query: Option<&'a str>,
    /// Dimensions of the stored embedding, if there is one.
    pub embedding: Option<SkippedVector>,
    /// The `chat.completion` JSON.
    pub completion: &'a str,
    /// Tokens the original call used.
    pub prompt_tokens: u64,
    /// Tokens the original call produced.
    pub completion_tokens: u64,
    /// Unix milliseconds when stored.
    pub created_ms: u64,
    /// Unix milliseconds after which it must not be served (0: never expires).
    pub expires_ms: u64,
}

impl<'a> EntryHead<'a> {
    /// Decodes the head of a stored entry (same layout as [`CacheEntry::encode`]).
    pub fn decode(bytes: &'a [u8]) -> Result<Self, String> {
        bincode::serde::borrow_decode_from_slice::<Self, _>(bytes, bincode::config::standard())
            .map(|(e, _)| e)
            .map_err(|e| e.to_string())
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        expired_at(self.expires_ms, now_ms)
    }
}

/// A sequence of `f32` read past without allocating: only its length is kept.
#[derive(Debug, Clone, Copy)]
pub struct SkippedVector(pub usize);

impl<'de> Deserialize<'de> for SkippedVector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = SkippedVector;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence of f32")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<SkippedVector, A::Error> {
                let mut n = 0;
                while seq.next_element::<f32>()?.is_some() {
                    n += 1;
                }
                Ok(SkippedVector(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}

/// Whether an entry with this expiry (0: never) must no longer be served at `now_ms`.
pub fn expired_at(expires_ms: u64, now_ms: u64) -> bool {
    expires_ms != 0 && now_ms >= expires_ms
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = CacheEntry::new(
            "ns",
            "g",
            [1; 32],
            Some([2; 32]),
            Some("q".into()),
            Some(vec![0.5; 4]),
            "{}".into(),
            Usage::default(),
            5,
            0,
        );
        let d = CacheEntry::decode(&e.encode().unwrap()).unwrap();
        assert_eq!(d.scope, Some([2; 32]));
        assert_eq!(d.embedding.as_ref().unwrap().len(), 4);
        assert!(!d.expired(u64::MAX));
        assert!(CacheEntry::decode(b"garbage").is_err());
    }

    #[test]
    fn head_decodes_the_same_fields_without_copying() {
        let e = CacheEntry::new(
            "ns",
            "group",
            [1; 32],
            Some([2; 32]),
            Some("the question".into()),
            Some(vec![0.25; 384]),
            "{\"id\":\"x\"}".into(),
            Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
            },
            5,
            9,
        );
        let bytes = e.encode().unwrap();
        let h = EntryHead::decode(&bytes).unwrap();
        assert_eq!((h.namespace, h.model_group), ("ns", "group"));
        assert_eq!((h.exact, h.scope), ([1; 32], Some([2; 32])));
        assert_eq!(h.query, Some("the question"));
        assert_eq!(h.embedding.map(|v| v.0), Some(384));
        assert_eq!(h.completion, "{\"id\":\"x\"}");
        assert_eq!((h.prompt_tokens, h.completion_tokens), (3, 4));
        assert_eq!((h.created_ms, h.expires_ms), (5, 9));
        assert!(h.expired(9) && !h.expired(8));

        let bare = CacheEntry::new(
            "ns",
            "g",
            [0; 32],
            None,
            None,
            None,
            "{}".into(),
            Usage::default(),
            1,
            0,
        );
        let h2_bytes = bare.encode().unwrap();
        let h2 = EntryHead::decode(&h2_bytes).unwrap();
        assert!(h2.embedding.is_none() && h2.scope.is_none() && !h2.expired(u64::MAX));
        // Truncated or garbage bytes are errors, like the full decode.
        assert!(EntryHead::decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(EntryHead::decode(b"garbage").is_err());
    }
}
