//! OpenAI `chat.completion.chunk` SSE in, Anthropic streaming events out, for the inbound
//! `POST /v1/messages` surface (the inverse of `stream`).
//!
//! [`EventEncoder`] is the pure state machine (one OpenAI event -> zero or more Anthropic
//! events); [`anthropic_sse`] frames a byte stream with [`SseSplitter`] and runs it.

use super::inbound::{message_id, stop_reason, usage};
use super::wire::{
    BlockDelta, ContentBlock, DeltaUsage, ErrorDetail, MessageDeltaBody, MessageResponse,
    MessageRole, MessageUsage, StreamEvent,
};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Encodes one Anthropic event with its `event:` line.
pub(crate) fn encode(event: &StreamEvent) -> Bytes {
    let data = serde_json::to_value(event).unwrap_or(Value::Null);
    let name = data.get("type").and_then(Value::as_str).unwrap_or("error");
    let mut out = format!("event: {name}\ndata: ").into_bytes();
    // Serializing a `Value` to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The Anthropic error type for an HTTP status.
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// What kind of block is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text,
    Tool,
}

/// Turns OpenAI chunks into Anthropic events, one SSE event at a time.
#[derive(Debug, Default)]
pub(crate) struct EventEncoder {
    started: bool,
    /// Index and kind of the block currently open.
    open: Option<(u64, Open)>,
    next_block: u64,
    /// OpenAI `tool_calls[].index` -> Anthropic block index.
    tool_blocks: HashMap<u64, u64>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl EventEncoder {
    /// Whether the stream ended (`message_stop` or `error` sent).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    fn start(&mut self, chunk: &Value, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::MessageStart {
            message: MessageResponse {
                id: message_id(chunk.get("id").and_then(Value::as_str)),
                kind: "message".into(),
                role: MessageRole::Assistant,
                content: Vec::new(),
                model: chunk
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                stop_reason: None,
                stop_sequence: None,
                // Input tokens are known only at the end; `message_delta` reports them.
                usage: MessageUsage::default(),
            },
        });
        out.push(StreamEvent::Ping);
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some((index, _)) = self.open.take() {
            out.push(StreamEvent::ContentBlockStop { index });
        }
    }

    fn open(&mut self, kind: Open, block: ContentBlock, out: &mut Vec<StreamEvent>) -> u64 {
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, kind));
        out.push(StreamEvent::ContentBlockStart {
            index,
            content_block: block,
        });
        index
    }

    fn text(&mut self, text: &str, out: &mut Vec<StreamEvent>) {
        let index = match self.open {
            Some((i, Open::Text)) => i,
            _ => self.open(
                Open::Text,
                ContentBlock::Text {
                    text: String::new(),
                    cache_control: None,
                },
                out,
            ),
        };
        out.push(StreamEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::TextDelta {
                text: text.to_string(),
            },
        });
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<StreamEvent>) {
        let slot = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        let index = match self.tool_blocks.get(&slot) {
            Some(i) => *i,
            None => {
                let id = call.get("id").and_then(Value::as_str).map_or_else(
                    || format!("toolu_{}", uuid::Uuid::new_v4().simple()),
                    str::to_string,
                );
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                let i = self.open(
                    Open::Tool,
                    ContentBlock::ToolUse {
                        id,
                        name: name.to_string(),
                        input: json!({}),
                    },
                    out,
                );
                self.tool_blocks.insert(slot, i);
                i
            }
        };
        if let Some(args) = f
            .get("arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            out.push(StreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJsonDelta {
                    partial_json: args.to_string(),
                },
            });
        }
    }

    /// The closing events: last block stop, `message_delta` with usage, `message_stop`.
    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.close(out);
        let u = usage(self.usage.as_ref());
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(stop_reason(self.finish_reason.as_deref()).to_string()),
                stop_sequence: None,
            },
            usage: Some(DeltaUsage {
                input_tokens: self.usage.is_some().then_some(u.input_tokens),
                output_tokens: Some(u.output_tokens),
                cache_creation_input_tokens: None,
                cache_read_input_tokens: u.cache_read_input_tokens,
            }),
        });
        out.push(StreamEvent::MessageStop);
        self.done = true;
    }

    /// An `error` event, which ends the stream.
    pub(crate) fn fail(&mut self, kind: &str, message: &str) -> StreamEvent {
        self.done = true;
        StreamEvent::Error {
            error: ErrorDetail {
                kind: kind.to_string(),
                message: message.to_string(),
            },
        }
    }

    /// Translates one OpenAI SSE event's `data`.
    pub(crate) fn on_data(&mut self, data: &str) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if data == "[DONE]" {
            self.start(&Value::Null, &mut out);
            self.finish(&mut out);
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            out.push(self.fail("api_error", "the upstream sent an unreadable stream event"));
            return out;
        };
        if let Some(e) = chunk.get("error") {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed mid-stream");
            let kind = match e.get("type").and_then(Value::as_str) {
                Some("rate_limit_error") => "rate_limit_error",
                Some("invalid_request_error" | "pii_detected") => "invalid_request_error",
                _ => "api_error",
            };
            out.push(self.fail(kind, message));
            return out;
        }
        self.start(&chunk, &mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let choice = chunk.get("choices").and_then(|c| c.get(0));
        let Some(choice) = choice else {
            return out;
        };
        if let Some(delta) = choice.get("delta") {
            for key in ["content", "refusal"] {
                if let Some(t) = delta
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.text(t, &mut out);
                }
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    self.tool_call(call, &mut out);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
            self.close(&mut out);
        }
        out
    }
}

impl crate::stream::Reencoder for EventEncoder {
    fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        EventEncoder::on_data(self, data)
            .iter()
            .map(encode)
            .collect()
    }

    fn is_done(&self) -> bool {
        EventEncoder::is_done(self)
    }

    fn truncated(&mut self) -> Vec<Bytes> {
        vec![encode(&self.fail(
            "api_error",
            "the upstream stream ended before completion",
        ))]
    }
}

/// Runs an OpenAI SSE byte stream (split anywhere) through an [`EventEncoder`].
///
/// A stream that ends before `[DONE]` ends with an `error` event, so Anthropic clients see
/// the failure instead of a message that looks complete.
pub(crate) fn anthropic_sse<S, E>(upstream: S) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    crate::stream::reencode(upstream, EventEncoder::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::event_data;
    use futures_util::StreamExt;
    use std::convert::Infallible;

    fn chunk(delta: Value, finish: Value) -> String {
        let c = json!({"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    fn openai_stream() -> String {
        let mut s = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        s += &chunk(json!({"content": "Hello"}), Value::Null);
        s += &chunk(json!({"content": " world"}), Value::Null);
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}),
            Value::Null,
        );
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
            Value::Null,
        );
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            Value::Null,
        );
        s += &chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
            Value::Null,
        );
        s += &chunk(json!({}), json!("tool_calls"));
        s += "data: {\"id\":\"chatcmpl-abc\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4,\"total_tokens\":11}}\n\n";
        s += "data: [DONE]\n\n";
        s
    }

    async fn run(input: &str, size: usize) -> Vec<(String, Value)> {
        let pieces: Vec<Result<Bytes, Infallible>> = input
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let frames: Vec<Bytes> = anthropic_sse(futures_util::stream::iter(pieces))
            .map(|r| match r {
                Ok(b) => b,
                Err(e) => match e {},
            })
            .collect()
            .await;
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                let name = text
                    .lines()
                    .next()
                    .unwrap()
                    .strip_prefix("event: ")
                    .unwrap();
                let data: Value = serde_json::from_str(&event_data(f).unwrap()).unwrap();
                assert_eq!(data["type"], name, "event name matches data type");
                (name.to_string(), data)
            })
            .collect()
    }

    #[tokio::test]
    async fn text_and_tools_become_anthropic_events() {
        for size in [1, 9, 10_000] {
            let events = run(&openai_stream(), size).await;
            let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "message_start",
                    "ping",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_delta",
                    "content_block_stop",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop"
                ],
                "split {size}"
            );
            let start = &events[0].1["message"];
            assert_eq!(start["id"], "msg_abc");
            assert_eq!(start["model"], "gpt-x");
            assert_eq!(start["content"], json!([]));
            assert_eq!(
                events[2].1["content_block"],
                json!({"type": "text", "text": ""})
            );
            assert_eq!(
                events[3].1["delta"],
                json!({"type": "text_delta", "text": "Hello"})
            );
            assert_eq!(
                events[6].1,
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}})
            );
            assert_eq!(
                events[8].1["delta"],
                json!({"type": "input_json_delta", "partial_json": "1}"})
            );
            assert_eq!(events[11].1["index"], 2);
            assert_eq!(
                events[13].1,
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                       "usage": {"input_tokens": 7, "output_tokens": 4}})
            );
        }
    }

    #[tokio::test]
    async fn errors_and_truncation_end_with_an_error_event() {
        let mut s = chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null);
        s += "data: {\"error\":{\"message\":\"deployment 'x' returned HTTP 529\",\"type\":\"upstream_error\"}}\n\n";
        let events = run(&s, 5).await;
        let (name, data) = events.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["error"]["type"], "api_error");
        assert!(events.iter().all(|(n, _)| n != "message_stop"));

        let s = chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null);
        let events = run(&s, 3).await;
        let (name, data) = events.last().unwrap();
        assert_eq!(name, "error");
        assert!(data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended before"));
    }

    #[test]
    fn statuses_map_to_anthropic_error_types() {
        assert_eq!(error_type(400), "invalid_request_error");
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(404), "not_found_error");
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(502), "api_error");
        assert_eq!(error_type(529), "overloaded_error");
    }
}
