//! Gemini's `streamGenerateContent?alt=sse` frames -> OpenAI `chat.completion.chunk` SSE.
//!
//! Gemini sends `data: {GenerateContentResponse}` events (`\r\n\r\n`-terminated, no event
//! names, no `[DONE]`), each with the new parts only; a function call always arrives whole.
//! Per candidate this emits a role chunk first, then content and complete tool-call deltas,
//! then a finish chunk; when the upstream ends, an optional usage chunk and `[DONE]`. An end
//! without a finish reason for every candidate is a broken stream: no `[DONE]` is invented.

use super::translate::{finish_reason, parts_to_openai, usage_json, Meta};
use super::wire::{ErrorEnvelope, GenerateContentResponse, UsageMetadata};
use crate::stream::{event_data, sse_data, SseSplitter, SSE_DONE};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::btree_map::{BTreeMap, Entry};

/// Why a stream cannot go on.
#[derive(Debug)]
pub enum Broken {
    /// Gemini sent an error object in the stream.
    Upstream(ErrorEnvelope),
    /// The stream is not Gemini's format, or ended early; the text says how.
    Invalid(String),
}

#[derive(Debug, Default)]
struct ChoiceState {
    calls: usize,
    finished: bool,
}

/// Translates one stream; feed it upstream bytes, then call [`Translator::finish`].
#[derive(Debug)]
pub struct Translator {
    splitter: SseSplitter,
    meta: Meta,
    include_usage: bool,
    started: bool,
    choices: BTreeMap<u64, ChoiceState>,
    usage: Option<UsageMetadata>,
    next_call: usize,
}

impl Translator {
    /// A translator whose chunks carry `meta`; `include_usage` adds the final usage chunk.
    pub fn new(meta: Meta, include_usage: bool) -> Self {
        Self {
            splitter: SseSplitter::default(),
            meta,
            include_usage,
            started: false,
            choices: BTreeMap::new(),
            usage: None,
            next_call: 0,
        }
    }

    /// Adds upstream bytes; returns the OpenAI SSE they complete (possibly empty).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Bytes, Broken> {
        let mut out = Vec::new();
        for event in self.splitter.push(bytes) {
            self.event(&event, &mut out)?;
        }
        Ok(Bytes::from(out))
    }

    /// The upstream ended: the last chunks and `[DONE]`, or why the stream is incomplete.
    pub fn finish(&mut self) -> Result<Bytes, Broken> {
        let mut out = Vec::new();
        if let Some(rest) = self.splitter.finish() {
            self.event(&rest, &mut out)?;
        }
        if self.choices.is_empty() {
            return Err(Broken::Invalid("the stream ended before any answer".into()));
        }
        if self.choices.values().any(|c| !c.finished) {
            return Err(Broken::Invalid(
                "the stream ended without a finish reason".into(),
            ));
        }
        if self.include_usage {
            let chunk = json!({
                "id": self.meta.id, "object": "chat.completion.chunk",
                "created": self.meta.created, "model": self.meta.model,
                "choices": [], "usage": usage_json(self.usage.as_ref()),
            });
            out.extend_from_slice(&sse_data(&chunk));
        }
        out.extend_from_slice(SSE_DONE);
        Ok(Bytes::from(out))
    }

    fn chunk(&self, index: u64, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let chunk = json!({
            "id": self.meta.id, "object": "chat.completion.chunk",
            "created": self.meta.created, "model": self.meta.model,
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        out.extend_from_slice(&sse_data(&chunk));
    }

    /// Emits the role chunk of a candidate the first time it appears.
    fn open(&mut self, index: u64, out: &mut Vec<u8>) {
        if let Entry::Vacant(slot) = self.choices.entry(index) {
            slot.insert(ChoiceState::default());
            self.chunk(
                index,
                json!({"role": "assistant", "content": ""}),
                None,
                out,
            );
        }
    }

    fn event(&mut self, event: &[u8], out: &mut Vec<u8>) -> Result<(), Broken> {
        let Some(data) = event_data(event) else {
            return Ok(()); // comments, keep-alives
        };
        let value: Value = serde_json::from_str(&data)
            .map_err(|e| Broken::Invalid(format!("an event is not JSON: {e}")))?;
        if value.get("error").is_some() {
            return Err(match serde_json::from_value::<ErrorEnvelope>(value) {
                Ok(env) => Broken::Upstream(env),
                Err(e) => Broken::Invalid(format!("unreadable error event: {e}")),
            });
        }
        let frame: GenerateContentResponse = serde_json::from_value(value).map_err(|e| {
            Broken::Invalid(format!("an event is not a GenerateContentResponse: {e}"))
        })?;
        if !self.started {
            self.started = true;
            if let Some(m) = &frame.model_version {
                self.meta.model.clone_from(m);
            }
            if let Some(rid) = &frame.response_id {
                self.meta.id = format!("chatcmpl-{rid}");
            }
        }
        if let Some(u) = frame.usage_metadata {
            self.usage = Some(u);
        }
        let blocked = frame
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_ref())
            .is_some();
        if frame.candidates.is_empty() && blocked {
            self.open(0, out);
            self.close(0, "content_filter", out);
        }
        for (position, c) in frame.candidates.iter().enumerate() {
            let index = c.index.unwrap_or(position as u64);
            self.open(index, out);
            let parts = c.content.as_ref().map_or(&[][..], |c| c.parts.as_slice());
            let (text, calls) = parts_to_openai(parts, &self.meta, &mut self.next_call);
            if !text.is_empty() {
                self.chunk(index, json!({ "content": text }), None, out);
            }
            if !calls.is_empty() {
                let first = self.choices.get(&index).map_or(0, |s| s.calls);
                let deltas: Vec<Value> = calls
                    .into_iter()
                    .enumerate()
                    .map(|(k, mut call)| {
                        if let Some(o) = call.as_object_mut() {
                            o.insert("index".into(), json!(first + k));
                        }
                        call
                    })
                    .collect();
                if let Some(s) = self.choices.get_mut(&index) {
                    s.calls += deltas.len();
                }
                self.chunk(index, json!({ "tool_calls": deltas }), None, out);
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                let called = self.choices.get(&index).is_some_and(|s| s.calls > 0);
                self.close(index, finish_reason(Some(reason), called), out);
            }
        }
        Ok(())
    }

    /// Emits the finish chunk of a candidate, once.
    fn close(&mut self, index: u64, reason: &str, out: &mut Vec<u8>) {
        let Some(state) = self.choices.get_mut(&index) else {
            return;
        };
        if state.finished {
            return;
        }
        state.finished = true;
        self.chunk(index, json!({}), Some(reason), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ChatAccumulator;

    fn meta() -> Meta {
        Meta {
            id: "chatcmpl-s".into(),
            created: 1,
            model: "gemini-x".into(),
            call_prefix: "s".into(),
        }
    }

    fn frames(list: &[Value]) -> Vec<u8> {
        list.iter()
            .flat_map(|f| format!("data: {f}\r\n\r\n").into_bytes())
            .collect()
    }

    /// Feeds `bytes` in pieces of `step` bytes; returns the output and the final result.
    fn run(bytes: &[u8], step: usize, usage: bool) -> (String, Result<(), Broken>) {
        let mut t = Translator::new(meta(), usage);
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            match t.push(piece) {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (String::from_utf8(out).unwrap(), Err(e)),
            }
        }
        match t.finish() {
            Ok(b) => {
                out.extend_from_slice(&b);
                (String::from_utf8(out).unwrap(), Ok(()))
            }
            Err(e) => (String::from_utf8(out).unwrap(), Err(e)),
        }
    }

    fn chunks(sse: &str) -> Vec<Value> {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn text_stream() -> Vec<u8> {
        frames(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
                   "modelVersion": "gemini-2.0-flash-001"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo wör"}]}, "index": 0}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "ld"}]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}}),
        ])
    }

    #[test]
    fn text_stream_split_anywhere() {
        let bytes = text_stream();
        for step in [1, 2, 3, 7, 64, bytes.len()] {
            let (sse, end) = run(&bytes, step, true);
            assert!(end.is_ok(), "step {step}");
            assert!(sse.ends_with("data: [DONE]\n\n"), "step {step}");
            let cs = chunks(&sse);
            assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(cs[0]["model"], "gemini-2.0-flash-001");
            let mut acc = ChatAccumulator::default();
            for c in &cs {
                acc.observe(c);
            }
            assert!(acc.all_finished());
            let done = acc.into_completion();
            assert_eq!(done["choices"][0]["message"]["content"], "Hello wörld");
            assert_eq!(done["choices"][0]["finish_reason"], "stop");
            let last = cs.last().unwrap();
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["total_tokens"], 7);
        }
    }

    #[test]
    fn usage_chunk_only_when_asked() {
        let (sse, end) = run(&text_stream(), 5, false);
        assert!(end.is_ok());
        assert!(chunks(&sse).iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn function_calls_arrive_whole() {
        let bytes = frames(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]}, "index": 0}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}}]}, "finishReason": "STOP", "index": 0}]}),
        ]);
        let (sse, end) = run(&bytes, 11, false);
        assert!(end.is_ok());
        let cs = chunks(&sse);
        let call = &cs[1]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            *call,
            json!({"id": "call_s0", "type": "function", "index": 0,
                   "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}})
        );
        assert_eq!(cs[2]["choices"][0]["delta"]["tool_calls"][0]["index"], 1);
        assert_eq!(
            cs[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_s1"
        );
        assert_eq!(cs[3]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn safety_and_blocked_prompt() {
        let bytes = frames(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "I"}]}, "index": 0}]}),
            json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]}),
        ]);
        let (sse, end) = run(&bytes, 4, false);
        assert!(end.is_ok());
        assert_eq!(
            chunks(&sse).last().unwrap()["choices"][0]["finish_reason"],
            "content_filter"
        );

        let bytes = frames(&[
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}),
        ]);
        let (sse, end) = run(&bytes, 9, true);
        assert!(end.is_ok());
        let cs = chunks(&sse);
        assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(cs[1]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(cs[2]["usage"]["prompt_tokens"], 5);
        assert!(sse.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn stream_without_finish_reason_is_broken() {
        let bytes = frames(&[
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "partial"}]}, "index": 0}]}),
        ]);
        let (sse, end) = run(&bytes, 3, true);
        assert!(matches!(end, Err(Broken::Invalid(ref m)) if m.contains("finish reason")));
        assert!(!sse.contains("[DONE]"));
        assert_eq!(chunks(&sse).len(), 2, "what arrived was passed on");
        let (_, end) = run(b"", 1, true);
        assert!(matches!(end, Err(Broken::Invalid(_))));
    }

    #[test]
    fn error_event_and_garbage() {
        let bytes = frames(&[
            json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}),
        ]);
        let (_, end) = run(&bytes, 8, false);
        match end {
            Err(Broken::Upstream(env)) => {
                assert_eq!(env.error.status.as_deref(), Some("UNAVAILABLE"))
            }
            other => panic!("{other:?}"),
        }
        let (_, end) = run(b"data: nope\r\n\r\n", 4, false);
        assert!(matches!(end, Err(Broken::Invalid(_))));
    }

    #[test]
    fn last_frame_without_blank_line_counts() {
        let mut bytes = text_stream();
        bytes.truncate(bytes.len() - 4);
        let (sse, end) = run(&bytes, 6, false);
        assert!(end.is_ok());
        assert!(sse.ends_with("data: [DONE]\n\n"));
    }
}
