//! The PII guard as the request path uses it: which policy applies (key, then model group, then
//! the gateway's), what it does to a chat request before the cache and the upstream see it, and
//! what it does to the answer on its way back (restoring the caller's own values, scanning,
//! masking or blocking what the upstream produced).
//!
//! It owns no I/O: the pipeline calls it around the cache lookup and the upstream call. Values
//! never leave this module in errors, logs or metrics: only their kinds do.

use super::{Masker, PiiKind, PiiPolicy, Scanner, StreamRestorer};
use crate::stream::Reencoder;
use crate::wire::ChatRequest;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Metric counting PII values found, by kind and direction (`prompt` or `response`).
pub const PII_DETECTIONS_TOTAL: &str = "sluice_pii_detections_total";

/// A policy override for prompts and answers (per key, per model group).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PiiOverride {
    /// What to do with PII in prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PiiPolicy>,
    /// What to do with PII in answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<PiiPolicy>,
}

impl PiiOverride {
    /// True when it overrides nothing.
    pub fn is_empty(&self) -> bool {
        self.prompts.is_none() && self.responses.is_none()
    }
}

/// `sluice.pii`, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PiiConfig {
    /// Gateway-wide policy for prompts.
    pub prompts: PiiPolicy,
    /// Gateway-wide policy for answers.
    pub responses: PiiPolicy,
    /// Custom detectors: `(kind, regex)`.
    pub custom: Vec<(String, String)>,
    /// Per model group overrides.
    pub groups: BTreeMap<String, PiiOverride>,
}

/// The policies in force for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policies {
    /// For the prompt.
    pub prompts: PiiPolicy,
    /// For the answer.
    pub responses: PiiPolicy,
}

/// A request or answer refused by a `block` policy: the kinds found, never the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiBlocked {
    /// `prompt` or `response`.
    pub direction: &'static str,
    /// Kind names, sorted.
    pub kinds: Vec<String>,
}

impl std::fmt::Display for PiiBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.direction == "prompt" {
            "the request contains"
        } else {
            "the answer contains"
        };
        write!(
            f,
            "blocked by the PII policy: {what} personal data or secrets of kind {}",
            self.kinds.join(", ")
        )
    }
}

/// The scanner and the policies, built once at start-up.
#[derive(Debug)]
pub struct PiiGuard {
    scanner: Scanner,
    config: PiiConfig,
}

fn count(kinds: &BTreeSet<PiiKind>, direction: &'static str) {
    for k in kinds {
        metrics::counter!(PII_DETECTIONS_TOTAL, "kind" => k.as_str().to_string(), "direction" => direction)
            .increment(1);
    }
}

fn names(kinds: &BTreeSet<PiiKind>) -> Vec<String> {
    kinds.iter().map(|k| k.as_str().to_string()).collect()
}

impl PiiGuard {
    /// Builds the scanner (custom patterns included) for `config`.
    pub fn new(config: PiiConfig) -> Result<Self, super::PiiError> {
        Ok(PiiGuard {
            scanner: Scanner::new(&config.custom)?,
            config,
        })
    }

    /// The detectors.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// The policies for a request of `group` made with a key carrying `key` overrides: the
    /// key's, else the group's, else the gateway's.
    pub fn policies(&self, key: Option<&PiiOverride>, group: &str) -> Policies {
        let g = self.config.groups.get(group);
        Policies {
            prompts: key
                .and_then(|k| k.prompts)
                .or_else(|| g.and_then(|g| g.prompts))
                .unwrap_or(self.config.prompts),
            responses: key
                .and_then(|k| k.responses)
                .or_else(|| g.and_then(|g| g.responses))
                .unwrap_or(self.config.responses),
        }
    }

    /// Applies the prompt policy to `req` in place (masking happens before the cache key and
    /// the embedding are made, so equal prompts with different personal data share entries).
    pub fn guard_request(
        &self,
        req: &mut ChatRequest,
        policies: Policies,
    ) -> Result<Guarded, PiiBlocked> {
        let mut kinds = BTreeSet::new();
        let mut masker = None;
        match policies.prompts {
            PiiPolicy::Off => {}
            PiiPolicy::Detect => kinds = self.scanner.request_kinds(req),
            PiiPolicy::Block => {
                kinds = self.scanner.request_kinds(req);
                if !kinds.is_empty() {
                    count(&kinds, "prompt");
                    return Err(PiiBlocked {
                        direction: "prompt",
                        kinds: names(&kinds),
                    });
                }
            }
            PiiPolicy::Mask => {
                let mut m = Masker::new();
                kinds = m.mask_chat_request(&self.scanner, req);
                if !m.is_empty() {
                    masker = Some(m);
                }
            }
        }
        count(&kinds, "prompt");
        Ok(Guarded {
            kinds,
            masker,
            responses: policies.responses,
        })
    }

    /// Scans (and with `mask`, masks) the text of a chat completion's choices; returns the kinds.
    fn scan_answer(&self, completion: &mut Value, policy: PiiPolicy) -> BTreeSet<PiiKind> {
        let mut kinds = BTreeSet::new();
        let mut masker = Masker::new();
        let Some(choices) = completion.get_mut("choices").and_then(Value::as_array_mut) else {
            return kinds;
        };
        for choice in choices {
            let Some(message) = choice.get_mut("message") else {
                continue;
            };
            if let Some(Value::String(text)) = message.get_mut("content") {
                if policy == PiiPolicy::Mask {
                    kinds.extend(masker.mask_in_place(&self.scanner, text));
                } else {
                    kinds.extend(self.scanner.kinds(text));
                }
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                        if policy == PiiPolicy::Mask {
                            kinds.extend(masker.mask_in_place(&self.scanner, args));
                        } else {
                            kinds.extend(self.scanner.kinds(args));
                        }
                    }
                }
            }
        }
        kinds
    }
}

/// What the guard did to one request, and what its answer needs on the way back.
#[derive(Debug, Default)]
pub struct Guarded {
    /// Kinds found in the prompt.
    pub kinds: BTreeSet<PiiKind>,
    /// The placeholders issued, when the prompt was masked.
    masker: Option<Masker>,
    /// The policy for the answer.
    responses: PiiPolicy,
}

impl Guarded {
    /// Nothing to do on the way back.
    pub fn is_noop(&self) -> bool {
        self.masker.is_none() && self.responses == PiiPolicy::Off
    }

    /// Kind names found in the prompt (for the audit record).
    pub fn kind_names(&self) -> Vec<String> {
        names(&self.kinds)
    }

    /// A complete chat completion on its way to the caller: the answer policy first (on the
    /// upstream's own text, where the caller's values are still placeholders), then the
    /// caller's values restored.
    pub fn answer_json(&self, guard: &PiiGuard, body: Bytes) -> Result<Bytes, PiiBlocked> {
        if self.is_noop() {
            return Ok(body);
        }
        let Ok(mut completion) = serde_json::from_slice::<Value>(&body) else {
            return Ok(body); // not JSON: nothing we could restore or scan
        };
        if self.responses != PiiPolicy::Off {
            let found = guard.scan_answer(&mut completion, self.responses);
            count(&found, "response");
            if self.responses == PiiPolicy::Block && !found.is_empty() {
                return Err(PiiBlocked {
                    direction: "response",
                    kinds: names(&found),
                });
            }
        }
        if let Some(m) = &self.masker {
            m.restore_json(&mut completion);
        }
        Ok(Bytes::from(completion.to_string()))
    }

    /// A streamed chat answer (OpenAI SSE) on its way to the caller: placeholders restored in
    /// content and tool-call argument deltas, even when split across chunks; with an answer
    /// policy other than `off`, each choice's text is scanned when it finishes and the kinds
    /// counted (streamed text has already left, so `mask` and `block` apply to JSON answers).
    pub fn answer_stream(
        self,
        guard: std::sync::Arc<PiiGuard>,
        body: crate::pipeline::SseBody,
    ) -> crate::pipeline::SseBody {
        if self.is_noop() {
            return body;
        }
        Box::pin(crate::stream::reencode(
            body,
            StreamGuard {
                guard,
                masker: self.masker,
                scan: self.responses != PiiPolicy::Off,
                content: HashMap::new(),
                args: HashMap::new(),
                seen: HashMap::new(),
                template: None,
                done: false,
            },
        ))
    }
}

/// Restores and scans one SSE answer chunk by chunk.
struct StreamGuard {
    guard: std::sync::Arc<PiiGuard>,
    masker: Option<Masker>,
    scan: bool,
    /// Per choice index: the content restorer.
    content: HashMap<u64, StreamRestorer>,
    /// Per (choice, tool call index): the arguments restorer.
    args: HashMap<(u64, u64), StreamRestorer>,
    /// Per choice: the restored text so far, for the answer scan.
    seen: HashMap<u64, String>,
    /// The last chunk's envelope (id, model, ...), to carry flushed text at the end.
    template: Option<Value>,
    done: bool,
}

impl StreamGuard {
    fn restorer(&mut self, choice: u64) -> Option<&mut StreamRestorer> {
        let m = self.masker.as_ref()?;
        Some(
            self.content
                .entry(choice)
                .or_insert_with(|| StreamRestorer::new(m)),
        )
    }

    fn args_restorer(&mut self, choice: u64, call: u64) -> Option<&mut StreamRestorer> {
        let m = self.masker.as_ref()?;
        Some(
            self.args
                .entry((choice, call))
                .or_insert_with(|| StreamRestorer::for_json(m)),
        )
    }

    /// Restores the deltas of one chunk in place; `finish` flushes a choice that finishes here.
    fn restore_chunk(&mut self, chunk: &mut Value) {
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return;
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = choice.get_mut("delta") else {
                continue;
            };
            if let Some(Value::String(text)) = delta.get_mut("content") {
                if let Some(r) = self.restorer(index) {
                    *text = r.push(text);
                }
            }
            if finishing {
                if let Some(rest) = self.content.get_mut(&index).map(StreamRestorer::finish) {
                    if !rest.is_empty() {
                        let mut text = delta
                            .get("content")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        text.push_str(&rest);
                        delta["content"] = Value::String(text);
                    }
                }
            }
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                if self.scan {
                    self.seen.entry(index).or_default().push_str(text);
                }
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for call in calls {
                    let ci = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                        if let Some(r) = self.args_restorer(index, ci) {
                            *args = r.push(args);
                        }
                    }
                }
            }
            if finishing {
                // Held-back argument text goes out with the finishing chunk.
                let held: Vec<(u64, String)> = self
                    .args
                    .iter_mut()
                    .filter(|((c, _), _)| *c == index)
                    .map(|((_, call), r)| (*call, r.finish()))
                    .filter(|(_, s)| !s.is_empty())
                    .collect();
                if !held.is_empty() {
                    let calls: Vec<Value> = held
                        .into_iter()
                        .map(|(call, s)| {
                            serde_json::json!({"index": call, "function": {"arguments": s}})
                        })
                        .collect();
                    delta["tool_calls"] = Value::Array(calls);
                }
                self.scan_choice(index);
            }
        }
    }

    fn scan_choice(&mut self, index: u64) {
        if let Some(text) = self.seen.remove(&index) {
            let found = self.guard.scanner.kinds(&text);
            count(&found, "response");
        }
    }

    /// A chunk carrying whatever is still held back (a stream that ended without finishing).
    fn flush(&mut self) -> Option<Bytes> {
        let mut deltas = Vec::new();
        let held: Vec<(u64, String)> = self
            .content
            .iter_mut()
            .map(|(i, r)| (*i, r.finish()))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        for (index, text) in held {
            deltas.push(serde_json::json!({"index": index, "delta": {"content": text}, "finish_reason": null}));
        }
        let pending: Vec<u64> = self.seen.keys().copied().collect();
        for i in pending {
            self.scan_choice(i);
        }
        if deltas.is_empty() {
            return None;
        }
        let mut chunk = self
            .template
            .clone()
            .unwrap_or_else(|| serde_json::json!({"object": "chat.completion.chunk"}));
        chunk["choices"] = Value::Array(deltas);
        Some(frame(&chunk))
    }
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

impl Reencoder for StreamGuard {
    fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        if data.trim() == "[DONE]" {
            self.done = true;
            let mut out: Vec<Bytes> = self.flush().into_iter().collect();
            out.push(Bytes::from_static(b"data: [DONE]\n\n"));
            return out;
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
            return vec![Bytes::from(format!("data: {data}\n\n"))];
        };
        if chunk.get("choices").is_some() {
            let mut envelope = chunk.clone();
            envelope["choices"] = Value::Array(Vec::new());
            if let Some(m) = envelope.as_object_mut() {
                m.remove("usage");
            }
            self.template = Some(envelope);
        }
        self.restore_chunk(&mut chunk);
        vec![frame(&chunk)]
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn truncated(&mut self) -> Vec<Bytes> {
        self.flush().into_iter().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stream::event_data;
    use futures_util::StreamExt;
    use serde_json::json;
    use std::convert::Infallible;

    fn guard(prompts: PiiPolicy, responses: PiiPolicy) -> PiiGuard {
        PiiGuard::new(PiiConfig {
            prompts,
            responses,
            ..PiiConfig::default()
        })
        .unwrap()
    }

    fn request(text: &str) -> ChatRequest {
        serde_json::from_value(
            json!({"model": "g", "messages": [{"role": "user", "content": text}]}),
        )
        .unwrap()
    }

    #[test]
    fn key_then_group_then_gateway() {
        let mut cfg = PiiConfig {
            prompts: PiiPolicy::Detect,
            ..PiiConfig::default()
        };
        cfg.groups.insert(
            "g".into(),
            PiiOverride {
                prompts: Some(PiiPolicy::Mask),
                responses: None,
            },
        );
        let g = PiiGuard::new(cfg).unwrap();
        assert_eq!(g.policies(None, "other").prompts, PiiPolicy::Detect);
        assert_eq!(g.policies(None, "g").prompts, PiiPolicy::Mask);
        let key = PiiOverride {
            prompts: Some(PiiPolicy::Block),
            responses: Some(PiiPolicy::Detect),
        };
        let p = g.policies(Some(&key), "g");
        assert_eq!(
            (p.prompts, p.responses),
            (PiiPolicy::Block, PiiPolicy::Detect)
        );
    }

    #[test]
    fn block_names_kinds_never_values() {
        let g = guard(PiiPolicy::Block, PiiPolicy::Off);
        let mut req = request("mail jane.doe@example.com, card 4111 1111 1111 1111");
        let e = g
            .guard_request(&mut req, g.policies(None, "g"))
            .unwrap_err();
        assert_eq!(e.kinds, ["email", "card"]);
        let msg = e.to_string();
        assert!(!msg.contains("jane.doe") && !msg.contains("4111"), "{msg}");
        // Clean prompts pass.
        let mut ok = request("what is the capital of France?");
        assert!(g.guard_request(&mut ok, g.policies(None, "g")).is_ok());
    }

    #[test]
    fn masked_prompts_are_equal_and_answers_restored() {
        let g = guard(PiiPolicy::Mask, PiiPolicy::Off);
        let mut a = request("Write to alice@example.com about the invoice");
        let mut b = request("Write to bob@example.org about the invoice");
        let ga = g.guard_request(&mut a, g.policies(None, "g")).unwrap();
        let gb = g.guard_request(&mut b, g.policies(None, "g")).unwrap();
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap(),
            "same masked prompt: they share a cache entry"
        );
        let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Dear [EMAIL_1], here it is."}, "finish_reason": "stop"}]});
        let body = Bytes::from(answer.to_string());
        let ra: Value = serde_json::from_slice(&ga.answer_json(&g, body.clone()).unwrap()).unwrap();
        let rb: Value = serde_json::from_slice(&gb.answer_json(&g, body).unwrap()).unwrap();
        assert_eq!(
            ra["choices"][0]["message"]["content"],
            "Dear alice@example.com, here it is."
        );
        assert_eq!(
            rb["choices"][0]["message"]["content"],
            "Dear bob@example.org, here it is."
        );
    }

    #[test]
    fn answers_are_masked_or_blocked_by_the_response_policy() {
        let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Call the office at support@corp.example"}, "finish_reason": "stop"}]});
        let body = Bytes::from(answer.to_string());
        let g = guard(PiiPolicy::Off, PiiPolicy::Mask);
        let guarded = g
            .guard_request(&mut request("hi"), g.policies(None, "g"))
            .unwrap();
        let out: Value =
            serde_json::from_slice(&guarded.answer_json(&g, body.clone()).unwrap()).unwrap();
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "Call the office at [EMAIL_1]"
        );
        let g = guard(PiiPolicy::Off, PiiPolicy::Block);
        let guarded = g
            .guard_request(&mut request("hi"), g.policies(None, "g"))
            .unwrap();
        let e = guarded.answer_json(&g, body).unwrap_err();
        assert_eq!(
            (e.direction, e.kinds.clone()),
            ("response", vec!["email".to_string()])
        );
    }

    #[tokio::test]
    async fn streamed_answers_are_restored_across_any_split() {
        let g = std::sync::Arc::new(guard(PiiPolicy::Mask, PiiPolicy::Detect));
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let sse = [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hello [EMA"}), Value::Null),
            chunk(json!({"content": "IL_1], bye [see"}), Value::Null),
            chunk(json!({"content": " note] [EMAIL_"}), Value::Null),
            chunk(json!({"content": "1]"}), Value::Null),
            chunk(json!({}), json!("stop")),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        for split in [1usize, 3, 7, 64, sse.len()] {
            let mut req = request("I am jane@example.com");
            let guarded = g.guard_request(&mut req, g.policies(None, "g")).unwrap();
            let pieces: Vec<Result<Bytes, Infallible>> = sse
                .as_bytes()
                .chunks(split)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body: crate::pipeline::SseBody = Box::pin(futures_util::stream::iter(pieces));
            let out: Vec<Bytes> = guarded
                .answer_stream(std::sync::Arc::clone(&g), body)
                .map(|r| match r {
                    Ok(b) => b,
                    Err(e) => match e {},
                })
                .collect()
                .await;
            let mut text = String::new();
            let mut done = false;
            for f in &out {
                let data = event_data(f).unwrap();
                if data == "[DONE]" {
                    done = true;
                    continue;
                }
                let v: Value = serde_json::from_str(&data).unwrap();
                if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                    text.push_str(t);
                }
            }
            assert!(done);
            assert_eq!(
                text, "Hello jane@example.com, bye [see note] jane@example.com",
                "split {split}"
            );
        }
    }
}
