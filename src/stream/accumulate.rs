//! Rebuilds a `chat.completion` from `chat.completion.chunk` deltas.

use crate::wire::Usage;
use serde_json::{json, Map, Value};

/// Accumulates streamed chunks into the completion they add up to.
#[derive(Debug, Default)]
pub struct ChatAccumulator {
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    system_fingerprint: Option<Value>,
    choices: Vec<ChoiceAcc>,
    usage: Option<Usage>,
}

#[derive(Debug, Default)]
struct ChoiceAcc {
    index: u64,
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: Vec<ToolCallAcc>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default)]
struct ToolCallAcc {
    index: u64,
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

fn append(slot: &mut Option<String>, piece: &str) {
    slot.get_or_insert_with(String::new).push_str(piece);
}

impl ChatAccumulator {
    /// Folds one chunk in.
    pub fn observe(&mut self, chunk: &Value) {
        for (slot, key) in [
            (&mut self.id, "id"),
            (&mut self.model, "model"),
            (&mut self.created, "created"),
            (&mut self.system_fingerprint, "system_fingerprint"),
        ] {
            if slot.is_none() {
                if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                    *slot = Some(v.clone());
                }
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            if let Ok(u) = serde_json::from_value::<Usage>(u.clone()) {
                self.usage = Some(u);
            }
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choice(index);
            if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
                acc.finish_reason = Some(reason.to_string());
            }
            let Some(delta) = c.get("delta") else {
                continue;
            };
            if let Some(role) = delta.get("role").and_then(Value::as_str) {
                acc.role = Some(role.to_string());
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                append(&mut acc.content, text);
            }
            if let Some(text) = delta.get("refusal").and_then(Value::as_str) {
                append(&mut acc.refusal, text);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    acc.tool_call_delta(call);
                }
            }
        }
    }

    fn choice(&mut self, index: u64) -> &mut ChoiceAcc {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(p) => p,
            None => {
                self.choices.push(ChoiceAcc {
                    index,
                    ..Default::default()
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    /// Whether any content or tool call has arrived.
    pub fn has_output(&self) -> bool {
        self.choices
            .iter()
            .any(|c| c.content.as_ref().is_some_and(|s| !s.is_empty()) || !c.tool_calls.is_empty())
    }

    /// Whether every choice has a finish reason (and there is at least one).
    pub fn all_finished(&self) -> bool {
        !self.choices.is_empty() && self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    /// The usage chunk's figures.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The completion the chunks add up to.
    pub fn into_completion(self) -> Value {
        let mut choices: Vec<ChoiceAcc> = self.choices;
        choices.sort_by_key(|c| c.index);
        let choices: Vec<Value> = choices
            .into_iter()
            .map(|c| {
                let mut message = Map::new();
                message.insert(
                    "role".into(),
                    Value::String(c.role.unwrap_or_else(|| "assistant".into())),
                );
                message.insert(
                    "content".into(),
                    c.content.map_or(Value::Null, Value::String),
                );
                message.insert(
                    "refusal".into(),
                    c.refusal.map_or(Value::Null, Value::String),
                );
                if !c.tool_calls.is_empty() {
                    let mut calls = c.tool_calls;
                    calls.sort_by_key(|t| t.index);
                    let calls: Vec<Value> = calls
                        .into_iter()
                        .map(|t| {
                            json!({
                                "id": t.id,
                                "type": t.kind.unwrap_or_else(|| "function".into()),
                                "function": {"name": t.name, "arguments": t.arguments}
                            })
                        })
                        .collect();
                    message.insert("tool_calls".into(), Value::Array(calls));
                }
                json!({
                    "index": c.index,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": c.finish_reason,
                })
            })
            .collect();
        let mut out = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(map) = out.as_object_mut() {
            if let Some(u) = self.usage {
                map.insert("usage".into(), json!(u));
            }
            if let Some(fp) = self.system_fingerprint {
                map.insert("system_fingerprint".into(), fp);
            }
        }
        out
    }
}

impl ChoiceAcc {
    fn tool_call_delta(&mut self, call: &Value) {
        let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let pos = match self.tool_calls.iter().position(|t| t.index == index) {
            Some(p) => p,
            None => {
                self.tool_calls.push(ToolCallAcc {
                    index,
                    ..Default::default()
                });
                self.tool_calls.len() - 1
            }
        };
        let t = &mut self.tool_calls[pos];
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            t.id = Some(id.to_string());
        }
        if let Some(kind) = call.get("type").and_then(Value::as_str) {
            t.kind = Some(kind.to_string());
        }
        if let Some(f) = call.get("function") {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                t.name.push_str(name);
            }
            if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                t.arguments.push_str(args);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_text_and_tool_calls() {
        let mut acc = ChatAccumulator::default();
        let chunks = [
            json!({"id":"c1","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            json!({"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}),
        ];
        for c in &chunks {
            acc.observe(c);
        }
        assert!(acc.all_finished());
        assert_eq!(acc.usage().map(|u| u.total_tokens), Some(5));
        let done = acc.into_completion();
        let msg = &done["choices"][0]["message"];
        assert_eq!(msg["content"], "Hello");
        assert_eq!(msg["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(msg["tool_calls"][0]["id"], "call_1");
        assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(done["id"], "c1");
    }
}
