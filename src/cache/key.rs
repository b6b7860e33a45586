//! Cache keys: the exact key (the whole canonical request) and the semantic scope (everything
//! but the last user message), both blake3 hashes under a namespace and model group.
//!
//! Fields that change the answer are all part of the scope: every field of the request is, except
//! the ones listed in [`NOT_ANSWER_CHANGING`], which only change delivery or bookkeeping.

use crate::wire::{ChatRequest, Content, Role};
use serde_json::{Map, Value};

/// Request fields that do not change the answer: streaming, end-user id, metadata, cache controls.
pub const NOT_ANSWER_CHANGING: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "cache",
];

/// The keys of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKeys {
    /// Hash of the whole canonical request.
    pub exact: [u8; 32],
    /// Hash of everything except the last user message; `None` when only exact hits are possible.
    pub scope: Option<[u8; 32]>,
    /// The last user message's text, embedded for the semantic lookup.
    pub query: Option<String>,
}

/// JSON with object keys sorted, so equal requests hash equally whatever their key order.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                if let Some(v) = map.get(*k) {
                    canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn hash(kind: &[u8], namespace: &str, group: &str, body: &Value) -> [u8; 32] {
    let mut buf = Vec::with_capacity(512);
    canonical(body, &mut buf);
    let mut h = blake3::Hasher::new();
    for part in [kind, namespace.as_bytes(), group.as_bytes()] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(&buf);
    *h.finalize().as_bytes()
}

/// The text of a message if it is plain text (a string, or text parts only).
fn plain_text(content: &Content) -> Option<String> {
    match content {
        Content::Text(s) => Some(s.clone()),
        Content::Parts(parts) => parts
            .iter()
            .all(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .then(|| content.text()),
    }
}

/// Computes the exact key, and the semantic scope and query when the request ends with a
/// plain-text user message.
pub fn keys(namespace: &str, group: &str, req: &ChatRequest) -> CacheKeys {
    let mut body = match serde_json::to_value(req) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for f in NOT_ANSWER_CHANGING {
        body.remove(*f);
    }
    // The group, not the model string, decides: aliases of one group share answers.
    body.remove("model");
    let exact = hash(b"exact", namespace, group, &Value::Object(body.clone()));

    let last = req.messages.last();
    let query = last
        .filter(|m| m.role == Role::User)
        .and_then(|m| m.content.as_ref())
        .and_then(plain_text)
        .filter(|t| !t.trim().is_empty());
    let scope = query.as_ref().map(|_| {
        if let Some(Value::Array(msgs)) = body.get_mut("messages") {
            msgs.pop();
        }
        hash(b"scope", namespace, group, &Value::Object(body))
    });
    CacheKeys {
        exact,
        scope,
        query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_json;

    fn req(json: &str) -> ChatRequest {
        parse_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn key_order_and_delivery_fields_do_not_matter() {
        let a = keys(
            "ns",
            "g",
            &req(r#"{"model":"g","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#),
        );
        let b = keys(
            "ns",
            "g",
            &req(
                r#"{"messages":[{"content":"hi","role":"user"}],"stream":true,"user":"u1","temperature":0,"model":"g"}"#,
            ),
        );
        assert_eq!(a, b);
        assert_eq!(a.query.as_deref(), Some("hi"));
    }

    #[test]
    fn everything_else_changes_the_scope() {
        let base = keys(
            "ns",
            "g",
            &req(r#"{"model":"g","messages":[{"role":"user","content":"hi"}]}"#),
        );
        let variants = [
            keys(
                "other",
                "g",
                &req(r#"{"model":"g","messages":[{"role":"user","content":"hi"}]}"#),
            ),
            keys(
                "ns",
                "h",
                &req(r#"{"model":"g","messages":[{"role":"user","content":"hi"}]}"#),
            ),
            keys(
                "ns",
                "g",
                &req(
                    r#"{"model":"g","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#,
                ),
            ),
            keys(
                "ns",
                "g",
                &req(r#"{"model":"g","n":2,"messages":[{"role":"user","content":"hi"}]}"#),
            ),
            keys(
                "ns",
                "g",
                &req(
                    r#"{"model":"g","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}"#,
                ),
            ),
            keys(
                "ns",
                "g",
                &req(
                    r#"{"model":"g","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}"#,
                ),
            ),
        ];
        for v in &variants {
            assert_ne!(v.scope, base.scope);
            assert_ne!(v.exact, base.exact);
        }
        // Same scope, another last question: same scope, different exact key.
        let other_q = keys(
            "ns",
            "g",
            &req(r#"{"model":"g","messages":[{"role":"user","content":"hello"}]}"#),
        );
        assert_eq!(other_q.scope, base.scope);
        assert_ne!(other_q.exact, base.exact);
    }

    #[test]
    fn non_text_last_messages_are_exact_only() {
        let k = keys(
            "ns",
            "g",
            &req(
                r#"{"model":"g","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#,
            ),
        );
        assert!(k.scope.is_none() && k.query.is_none());
        let k = keys(
            "ns",
            "g",
            &req(
                r#"{"model":"g","messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#,
            ),
        );
        assert!(k.scope.is_none());
    }
}
