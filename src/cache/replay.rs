//! Serving a hit: the cached completion with a fresh id, as JSON or replayed as OpenAI SSE.

use crate::stream::{sse_data, SSE_DONE};
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// The cached completion made into a fresh response: new `id` and `created`, and a usage that
/// says the tokens came from the cache (`prompt_tokens_details.cached_tokens`, `sluice_cached`).
pub fn fresh_completion(cached: &Value, prompt_tokens: u64, completion_tokens: u64) -> Value {
    let mut out = cached.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert(
            "id".into(),
            Value::String(format!("chatcmpl-sluice{}", uuid::Uuid::new_v4().simple())),
        );
        map.insert(
            "created".into(),
            json!(crate::cache::entry::now_ms() / 1000),
        );
        map.insert(
            "usage".into(),
            json!({
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": prompt_tokens},
                "sluice_cached": true
            }),
        );
    }
    out
}

/// Splits text into pieces of a few words that concatenate back to it exactly.
fn pieces(text: &str) -> Vec<&str> {
    const WORDS_PER_PIECE: usize = 4;
    let mut out = Vec::new();
    let mut start = 0;
    let mut words = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            words += 1;
            if words == WORDS_PER_PIECE {
                out.push(&text[start..i]);
                start = i;
                words = 0;
            }
        }
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// SSE frames replaying a completion: a role chunk, content chunks, tool-call deltas, a finish
/// chunk per choice, usage when asked, `[DONE]`.
pub fn sse_frames(completion: &Value, include_usage: bool) -> Vec<Bytes> {
    let base = |choices: Value| {
        let mut m = Map::new();
        for k in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = completion.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        m.insert("object".into(), json!("chat.completion.chunk"));
        m.insert("choices".into(), choices);
        Value::Object(m)
    };
    let delta = |index: &Value, d: Value, finish: Value| {
        base(json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": finish}]))
    };
    let mut frames = Vec::new();
    let empty = Vec::new();
    let choices = completion
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for choice in choices {
        let index = choice.get("index").cloned().unwrap_or(json!(0));
        let msg = choice.get("message").cloned().unwrap_or(Value::Null);
        let role = msg.get("role").cloned().unwrap_or(json!("assistant"));
        frames.push(sse_data(&delta(
            &index,
            json!({"role": role, "content": ""}),
            Value::Null,
        )));
        if let Some(text) = msg.get("content").and_then(Value::as_str) {
            for p in pieces(text) {
                frames.push(sse_data(&delta(&index, json!({"content": p}), Value::Null)));
            }
        }
        if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
            for (i, call) in calls.iter().enumerate() {
                let f = call.get("function").cloned().unwrap_or(Value::Null);
                frames.push(sse_data(&delta(
                    &index,
                    json!({"tool_calls": [{
                        "index": i, "id": call.get("id"), "type": call.get("type").cloned().unwrap_or(json!("function")),
                        "function": {"name": f.get("name"), "arguments": ""}
                    }]}),
                    Value::Null,
                )));
                if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                    for p in pieces(args) {
                        frames.push(sse_data(&delta(
                            &index,
                            json!({"tool_calls": [{"index": i, "function": {"arguments": p}}]}),
                            Value::Null,
                        )));
                    }
                }
            }
        }
        let finish = choice
            .get("finish_reason")
            .cloned()
            .unwrap_or(json!("stop"));
        frames.push(sse_data(&delta(&index, json!({}), finish)));
    }
    if include_usage {
        let mut u = base(json!([]));
        if let (Some(map), Some(usage)) = (u.as_object_mut(), completion.get("usage")) {
            map.insert("usage".into(), usage.clone());
        }
        frames.push(sse_data(&u));
    }
    frames.push(Bytes::from_static(SSE_DONE));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{event_data, ChatAccumulator};

    #[test]
    fn replay_reassembles_to_the_cached_message() {
        let cached = json!({
            "id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "The quick brown fox jumps over the lazy dog. Twice!",
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1, \"b\": [1, 2, 3]}"}}]},
                "finish_reason": "tool_calls"}],
        });
        let fresh = fresh_completion(&cached, 10, 20);
        assert_ne!(fresh["id"], "x");
        assert_eq!(fresh["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
        let frames = sse_frames(&fresh, true);
        let mut acc = ChatAccumulator::default();
        let mut saw_done = false;
        for f in &frames {
            let data = event_data(f).unwrap();
            if data == "[DONE]" {
                saw_done = true;
                continue;
            }
            acc.observe(&serde_json::from_str(&data).unwrap());
        }
        assert!(saw_done);
        assert!(acc.all_finished());
        assert_eq!(acc.usage().unwrap().total_tokens, 30);
        let rebuilt = acc.into_completion();
        assert_eq!(
            rebuilt["choices"][0]["message"]["content"],
            cached["choices"][0]["message"]["content"]
        );
        assert_eq!(
            rebuilt["choices"][0]["message"]["tool_calls"],
            cached["choices"][0]["message"]["tool_calls"]
        );
        assert_eq!(rebuilt["choices"][0]["finish_reason"], "tool_calls");
    }
}
