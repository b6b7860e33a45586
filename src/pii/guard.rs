//! The PII guard as the request path uses it: which policy applies (key, then model group, then
//! the gateway's), what it does to a chat request before the cache and the upstream see it, and
//! what it does to the answer on its way back (restoring the caller's own values, scanning,
//! masking or blocking what the upstream produced).
//!
//! It owns no I/O: the pipeline calls it around the cache lookup and the upstream call. Values
//! never leave this module in errors, logs or metrics: only their kinds do.

use super::{Masker, PiiKind, PiiPolicy, Scanned, Scanner, StreamRestorer, StreamScanner};
use crate::stream::Reencoder;
use crate::wire::ChatRequest;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
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

    /// Scans (and with `mask`, masks with `masker`) the text of a chat completion's choices;
    /// returns the kinds.
    fn scan_answer(
        &self,
        completion: &mut Value,
        policy: PiiPolicy,
        masker: &mut Masker,
    ) -> BTreeSet<PiiKind> {
        let mut kinds = BTreeSet::new();
        let Some(choices) = completion.get_mut("choices").and_then(Value::as_array_mut) else {
            return kinds;
        };
        let mut scan = |text: &mut String| {
            if policy == PiiPolicy::Mask {
                kinds.extend(masker.mask_in_place(&self.scanner, text));
            } else {
                kinds.extend(self.scanner.kinds(text));
            }
        };
        for choice in choices {
            let Some(message) = choice.get_mut("message") else {
                continue;
            };
            if let Some(Value::String(text)) = message.get_mut("content") {
                scan(text);
            }
            if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                        scan(args);
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

    /// The masker for values the answer brings: it numbers after the prompt's placeholders, so
    /// an answer's `[EMAIL_2]` is never mistaken for the caller's `[EMAIL_1]` when restoring.
    fn answer_masker(&self) -> Masker {
        self.masker.clone().unwrap_or_default()
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
            let mut masker = self.answer_masker();
            let found = guard.scan_answer(&mut completion, self.responses, &mut masker);
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

    /// A streamed chat answer (OpenAI SSE) on its way to the caller. With `mask` or `block` for
    /// answers, each choice's text and tool call arguments pass a [`StreamScanner`] that holds
    /// back a short tail, so a value is masked, or the stream ended with a `pii_detected` error
    /// event, before any byte of it is sent. Then the caller's placeholders are restored, even
    /// when split across chunks. With `detect`, each choice's text is scanned when it finishes.
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
                answer_masker: self.answer_masker(),
                guard,
                masker: self.masker,
                responses: self.responses,
                content: HashMap::new(),
                args: HashMap::new(),
                seen: HashMap::new(),
                counted: BTreeSet::new(),
                template: None,
                done: false,
            },
        ))
    }
}

/// One streamed text on its way back (a choice's content or a tool call's arguments): the
/// answer policy's scan, then the caller's values restored.
struct Lane {
    scan: Option<StreamScanner>,
    restore: Option<StreamRestorer>,
}

impl Lane {
    fn push(
        &mut self,
        scanner: &Scanner,
        masker: &mut Masker,
        found: &mut BTreeSet<PiiKind>,
        delta: &str,
    ) -> Scanned {
        let text = match &mut self.scan {
            Some(s) => s.push(scanner, masker, delta, found)?,
            None => delta.to_string(),
        };
        Ok(match &mut self.restore {
            Some(r) => r.push(&text),
            None => text,
        })
    }

    fn finish(
        &mut self,
        scanner: &Scanner,
        masker: &mut Masker,
        found: &mut BTreeSet<PiiKind>,
    ) -> Scanned {
        let text = match &mut self.scan {
            Some(s) => s.finish(scanner, masker, found)?,
            None => String::new(),
        };
        Ok(match &mut self.restore {
            Some(r) => r.push(&text) + &r.finish(),
            None => text,
        })
    }
}

/// Scans, masks and restores one SSE answer chunk by chunk.
struct StreamGuard {
    guard: std::sync::Arc<PiiGuard>,
    /// The prompt's placeholders, restored in the answer.
    masker: Option<Masker>,
    /// Placeholders for values the answer brings (`mask`).
    answer_masker: Masker,
    responses: PiiPolicy,
    /// Per choice index: its content.
    content: HashMap<u64, Lane>,
    /// Per (choice, tool call index): its arguments.
    args: HashMap<(u64, u64), Lane>,
    /// Per choice: the restored text so far, for the `detect` scan.
    seen: HashMap<u64, String>,
    /// Kinds already counted for this answer (each counts once, as for JSON answers).
    counted: BTreeSet<PiiKind>,
    /// The last chunk's envelope (id, model, ...), to carry flushed text at the end.
    template: Option<Value>,
    done: bool,
}

/// Which text of a choice a lane carries.
#[derive(Clone, Copy)]
enum LaneOf {
    Content(u64),
    Args(u64, u64),
}

impl StreamGuard {
    /// Pushes `delta` through the lane (made on first use); `finish` also flushes it.
    fn pass(&mut self, of: LaneOf, delta: &str, finish: bool) -> Scanned {
        let scan = matches!(self.responses, PiiPolicy::Mask | PiiPolicy::Block)
            .then(|| StreamScanner::new(self.responses));
        let masker = self.masker.as_ref();
        let make = |json: bool| Lane {
            scan,
            restore: masker.map(|m| {
                if json {
                    StreamRestorer::for_json(m)
                } else {
                    StreamRestorer::new(m)
                }
            }),
        };
        let lane = match of {
            LaneOf::Content(c) => self.content.entry(c).or_insert_with(|| make(false)),
            LaneOf::Args(c, i) => self.args.entry((c, i)).or_insert_with(|| make(true)),
        };
        let scanner = self.guard.scanner();
        let mut found = BTreeSet::new();
        let mut out = lane.push(scanner, &mut self.answer_masker, &mut found, delta);
        if finish {
            out = out.and_then(|mut s| {
                s.push_str(&lane.finish(scanner, &mut self.answer_masker, &mut found)?);
                Ok(s)
            });
        }
        let fresh: BTreeSet<PiiKind> = found.difference(&self.counted).cloned().collect();
        count(&fresh, "response");
        self.counted.extend(fresh);
        out
    }

    /// Scans, masks and restores the deltas of one chunk in place; a choice that finishes here
    /// gets whatever its lanes held back.
    fn guard_chunk(&mut self, chunk: &mut Value) -> Result<(), BTreeSet<PiiKind>> {
        let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(delta) = choice.get_mut("delta") else {
                continue;
            };
            let text = delta.get("content").and_then(Value::as_str);
            if text.is_some() || (finishing && self.content.contains_key(&index)) {
                let out = self.pass(LaneOf::Content(index), text.unwrap_or(""), finishing)?;
                if self.responses == PiiPolicy::Detect {
                    self.seen.entry(index).or_default().push_str(&out);
                }
                if text.is_some() || !out.is_empty() {
                    delta["content"] = Value::String(out);
                }
            }
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for call in calls {
                    let ci = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                        *args = self.pass(LaneOf::Args(index, ci), args, false)?;
                    }
                }
            }
            if finishing {
                // Held-back argument text goes out with the finishing chunk.
                let mut open: Vec<u64> = self
                    .args
                    .keys()
                    .filter(|(c, _)| *c == index)
                    .map(|(_, i)| *i)
                    .collect();
                open.sort_unstable();
                let mut held = Vec::new();
                for call in open {
                    let rest = self.pass(LaneOf::Args(index, call), "", true)?;
                    self.args.remove(&(index, call));
                    if !rest.is_empty() {
                        held.push(json!({"index": call, "function": {"arguments": rest}}));
                    }
                }
                if !held.is_empty() {
                    match delta.get_mut("tool_calls") {
                        Some(Value::Array(calls)) => calls.extend(held),
                        _ => delta["tool_calls"] = Value::Array(held),
                    }
                }
                self.content.remove(&index);
                self.scan_choice(index);
            }
        }
        Ok(())
    }

    /// The `detect` policy: scans a finished choice's text and counts its kinds.
    fn scan_choice(&mut self, index: u64) {
        if let Some(text) = self.seen.remove(&index) {
            let found = self.guard.scanner.kinds(&text);
            count(&found, "response");
        }
    }

    /// A chunk carrying whatever is still held back (the end of a stream whose choices did not
    /// all finish), or the error that ends a blocked answer.
    fn flush(&mut self) -> Vec<Bytes> {
        let mut deltas = Vec::new();
        let mut open: Vec<u64> = self.content.keys().copied().collect();
        open.sort_unstable();
        for index in open {
            match self.pass(LaneOf::Content(index), "", true) {
                Ok(text) if !text.is_empty() => {
                    deltas.push(
                        json!({"index": index, "delta": {"content": text}, "finish_reason": null}),
                    );
                }
                Ok(_) => {}
                Err(kinds) => return self.blocked(&kinds),
            }
            self.content.remove(&index);
        }
        let pending: Vec<u64> = self.seen.keys().copied().collect();
        for i in pending {
            self.scan_choice(i);
        }
        if deltas.is_empty() {
            return Vec::new();
        }
        let mut chunk = self
            .template
            .clone()
            .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
        chunk["choices"] = Value::Array(deltas);
        vec![frame(&chunk)]
    }

    /// The error event that ends an answer the `block` policy stopped: kinds only, never values.
    fn blocked(&mut self, kinds: &BTreeSet<PiiKind>) -> Vec<Bytes> {
        self.done = true;
        let b = PiiBlocked {
            direction: "response",
            kinds: names(kinds),
        };
        let error = json!({"error": {
            "message": b.to_string(),
            "type": "pii_detected",
            "param": null,
            "code": "pii_detected",
        }});
        vec![frame(&error)]
    }
}

fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

impl Reencoder for StreamGuard {
    fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        if self.done {
            return Vec::new();
        }
        if data.trim() == "[DONE]" {
            let mut out = self.flush();
            if !self.done {
                self.done = true;
                out.push(Bytes::from_static(b"data: [DONE]\n\n"));
            }
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
        match self.guard_chunk(&mut chunk) {
            Ok(()) => vec![frame(&chunk)],
            Err(kinds) => self.blocked(&kinds),
        }
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn truncated(&mut self) -> Vec<Bytes> {
        self.flush()
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

    #[test]
    fn values_the_answer_brings_are_numbered_after_the_callers() {
        let g = guard(PiiPolicy::Mask, PiiPolicy::Mask);
        let mut req = request("I am jane@example.com");
        let guarded = g.guard_request(&mut req, g.policies(None, "g")).unwrap();
        let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
            "content": "Hi [EMAIL_1], write to bob@corp.example"}, "finish_reason": "stop"}]});
        let out = guarded
            .answer_json(&g, Bytes::from(answer.to_string()))
            .unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "Hi jane@example.com, write to [EMAIL_2]"
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
