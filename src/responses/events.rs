//! OpenAI `chat.completion.chunk` SSE in, Responses streaming events out.
//!
//! [`EventEncoder`] is the pure state machine: one chat event's `data` -> zero or more
//! Responses events, each numbered (`sequence_number` from 0). Items and the final object are
//! built with the same functions as the JSON path (`translate`), so `response.completed`
//! carries the object a non-streaming call returns. [`responses_sse`] frames a byte stream
//! and runs it; a cache hit (replayed chat SSE) therefore becomes the same event sequence.

use super::translate::{
    self, finish, function_call_item, item_status, message_item, output_item_id, output_text,
    refusal_part, Outcome,
};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// One Responses event: its type (also the SSE `event:` name) and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `response.created`, `response.output_text.delta`, ..., `error`.
    pub kind: &'static str,
    /// The JSON payload, `type` and `sequence_number` included.
    pub data: Value,
}

impl Event {
    /// The SSE frame: `event: <type>\ndata: <json>\n\n`.
    pub fn encode(&self) -> Bytes {
        let mut out = format!("event: {}\ndata: ", self.kind).into_bytes();
        // Serializing a `Value` to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &self.data);
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }
}

/// A content part of a message item being streamed.
#[derive(Debug)]
struct Part {
    refusal: bool,
    text: String,
}

impl Part {
    fn json(&self) -> Value {
        if self.refusal {
            refusal_part(&self.text)
        } else {
            output_text(&self.text)
        }
    }
}

/// An output item being streamed.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        parts: Vec<Part>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    fn json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, parts } => {
                message_item(id, parts.iter().map(Part::json).collect(), status)
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => function_call_item(id, call_id, name, arguments, status),
        }
    }
}

/// The clock for `completed_at`, injectable for tests.
pub type Clock = fn() -> u64;

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Turns chat chunks into Responses events.
#[derive(Debug)]
pub struct EventEncoder {
    shell: Value,
    resp_id: String,
    clock: Clock,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// Index in `items` of the item still receiving deltas.
    open: Option<usize>,
    /// Chat `tool_calls[].index` -> index in `items`.
    calls: HashMap<u64, usize>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    final_response: Option<Value>,
    done: bool,
}

impl EventEncoder {
    /// An encoder for the response whose in-progress object is `shell` (see
    /// [`translate::shell`]).
    pub fn new(shell: Value, clock: Clock) -> Self {
        let resp_id = shell
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Self {
            shell,
            resp_id,
            clock,
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            calls: HashMap::new(),
            finish_reason: None,
            usage: None,
            final_response: None,
            done: false,
        }
    }

    /// Whether the stream has ended (`response.completed`/`incomplete`/`failed` sent).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The final Response object, once: for storing it.
    pub fn take_final(&mut self) -> Option<Value> {
        self.final_response.take()
    }

    fn emit(&mut self, out: &mut Vec<Event>, kind: &'static str, fields: Value) {
        let mut data = Map::new();
        data.insert("type".into(), json!(kind));
        data.insert("sequence_number".into(), json!(self.seq));
        if let Value::Object(f) = fields {
            data.extend(f);
        }
        self.seq += 1;
        out.push(Event {
            kind,
            data: Value::Object(data),
        });
    }

    fn start(&mut self, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        let shell = self.shell.clone();
        self.emit(out, "response.created", json!({"response": shell}));
        self.emit(out, "response.in_progress", json!({"response": shell}));
    }

    fn item_status(&self) -> &'static str {
        item_status(translate::incomplete_reason(self.finish_reason.as_deref()).is_some())
    }

    /// Closes the last content part of message `i`.
    fn close_part(&mut self, i: usize, out: &mut Vec<Event>) {
        let Some(Item::Message { id, parts }) = self.items.get(i) else {
            return;
        };
        let Some(part) = parts.last() else {
            return;
        };
        let (id, content_index, refusal, text, json_part) = (
            id.clone(),
            parts.len() - 1,
            part.refusal,
            part.text.clone(),
            part.json(),
        );
        if refusal {
            self.emit(
                out,
                "response.refusal.done",
                json!({"item_id": id, "output_index": i, "content_index": content_index, "refusal": text}),
            );
        } else {
            self.emit(
                out,
                "response.output_text.done",
                json!({"item_id": id, "output_index": i, "content_index": content_index, "text": text, "logprobs": []}),
            );
        }
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": i, "content_index": content_index, "part": json_part}),
        );
    }

    /// Closes the open item: its last part, its arguments, `output_item.done`.
    fn close(&mut self, out: &mut Vec<Event>) {
        let Some(i) = self.open.take() else {
            return;
        };
        let status = self.item_status();
        match self.items.get(i) {
            Some(Item::Message { .. }) => self.close_part(i, out),
            Some(Item::Call { id, arguments, .. }) => {
                let fields = json!({"item_id": id, "output_index": i, "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", fields);
            }
            None => return,
        }
        let item = self.items[i].json(status);
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": i, "item": item}),
        );
    }

    /// Opens a new output item (closing the previous one) and announces it.
    fn open(&mut self, item: Item, out: &mut Vec<Event>) -> usize {
        self.close(out);
        let i = self.items.len();
        let announced = item.json("in_progress");
        self.items.push(item);
        self.open = Some(i);
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": i, "item": announced}),
        );
        i
    }

    /// Text (or refusal) for the message item, opening the item and the part as needed.
    fn text(&mut self, delta: &str, refusal: bool, out: &mut Vec<Event>) {
        let i = match self.open {
            Some(i) if matches!(self.items.get(i), Some(Item::Message { .. })) => i,
            _ => {
                let id = output_item_id(&self.resp_id, "msg", self.items.len());
                self.open(
                    Item::Message {
                        id,
                        parts: Vec::new(),
                    },
                    out,
                )
            }
        };
        let same_part = matches!(
            self.items.get(i),
            Some(Item::Message { parts, .. }) if parts.last().is_some_and(|p| p.refusal == refusal)
        );
        if !same_part {
            self.close_part(i, out);
            let Some(Item::Message { id, parts }) = self.items.get_mut(i) else {
                return;
            };
            let part = Part {
                refusal,
                text: String::new(),
            };
            let fields = json!({"item_id": id, "output_index": i, "content_index": parts.len(), "part": part.json()});
            parts.push(part);
            self.emit(out, "response.content_part.added", fields);
        }
        if delta.is_empty() {
            return;
        }
        let Some(Item::Message { id, parts }) = self.items.get_mut(i) else {
            return;
        };
        let content_index = parts.len().saturating_sub(1);
        if let Some(p) = parts.last_mut() {
            p.text.push_str(delta);
        }
        let id = id.clone();
        if refusal {
            self.emit(
                out,
                "response.refusal.delta",
                json!({"item_id": id, "output_index": i, "content_index": content_index, "delta": delta}),
            );
        } else {
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": i, "content_index": content_index, "delta": delta, "logprobs": []}),
            );
        }
    }

    /// One chat `tool_calls[]` delta.
    fn tool_call(&mut self, call: &Value, out: &mut Vec<Event>) {
        let slot = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let f = call.get("function").unwrap_or(&Value::Null);
        let i = match self.calls.get(&slot) {
            Some(i) => *i,
            None => {
                let index = self.items.len();
                let call_id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map_or_else(
                        || translate::fallback_call_id(&self.resp_id, index),
                        str::to_string,
                    );
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                let i = self.open(
                    Item::Call {
                        id: output_item_id(&self.resp_id, "fc", index),
                        call_id,
                        name: name.to_string(),
                        arguments: String::new(),
                    },
                    out,
                );
                self.calls.insert(slot, i);
                i
            }
        };
        let Some(delta) = f
            .get("arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        else {
            return;
        };
        // A late delta for an item already closed (calls interleaved) still counts: the
        // arguments are appended so the final object is whole.
        if let Some(Item::Call { id, arguments, .. }) = self.items.get_mut(i) {
            arguments.push_str(delta);
            let fields = json!({"item_id": id, "output_index": i, "delta": delta});
            self.emit(out, "response.function_call_arguments.delta", fields);
        }
    }

    /// The end of a clean stream: last item closed, `response.completed` (or `incomplete`).
    fn finish(&mut self, out: &mut Vec<Event>) {
        self.start(out);
        self.close(out);
        if self.items.is_empty() {
            // Nothing at all came back: an empty message, as the JSON path answers.
            self.text("", false, out);
            self.close(out);
        }
        let incomplete = translate::incomplete_reason(self.finish_reason.as_deref());
        let status = item_status(incomplete.is_some());
        let output = self.items.iter().map(|i| i.json(status)).collect();
        let response = finish(
            self.shell.clone(),
            output,
            &Outcome::Finished { incomplete },
            translate::usage(self.usage.as_ref()),
            (self.clock)(),
        );
        let kind = if incomplete.is_some() {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(out, kind, json!({"response": response}));
        self.final_response = Some(response);
        self.done = true;
    }

    /// An `error` event and `response.failed`, which end the stream.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<Event> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start(&mut out);
        self.emit(
            &mut out,
            "error",
            json!({"code": code, "message": message, "param": null}),
        );
        let output = self.items.iter().map(|i| i.json("incomplete")).collect();
        let response = finish(
            self.shell.clone(),
            output,
            &Outcome::Failed {
                code: code.to_string(),
                message: message.to_string(),
            },
            translate::usage(self.usage.as_ref()),
            (self.clock)(),
        );
        self.emit(&mut out, "response.failed", json!({"response": response}));
        self.final_response = Some(response);
        self.done = true;
        out
    }

    /// Translates one chat SSE event's `data`.
    pub fn on_data(&mut self, data: &str) -> Vec<Event> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        if data == "[DONE]" {
            self.finish(&mut out);
            return out;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return self.fail(
                "server_error",
                "the upstream sent an unreadable stream event",
            );
        };
        if let Some(e) = chunk.get("error") {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream failed mid-stream");
            let limited = e.get("code").and_then(Value::as_str) == Some("rate_limit_exceeded")
                || e.get("type").and_then(Value::as_str) == Some("rate_limit_error");
            let code = if limited {
                "rate_limit_exceeded"
            } else if e.get("code").and_then(Value::as_str) == Some("pii_detected") {
                "pii_detected" // the answer policy stopped it: the caller's concern, not ours
            } else {
                "server_error"
            };
            return self.fail(code, message);
        }
        self.start(&mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        // The Responses API has one output per response: choice 0.
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| {
                c.iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return out;
        };
        if let Some(delta) = choice.get("delta") {
            for (key, refusal) in [("content", false), ("refusal", true)] {
                if let Some(t) = delta
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                {
                    self.text(t, refusal, &mut out);
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

/// Called once with the final Response object (completed, incomplete or failed) before its
/// event is sent, so a stored response exists by the time the client sees the end.
pub type OnFinal = Box<dyn FnOnce(Value) -> Pin<Box<dyn Future<Output = ()>>>>;

/// An [`EventEncoder`] with the hook that stores the final object.
struct WithFinal {
    encoder: EventEncoder,
    on_final: Option<OnFinal>,
}

impl crate::stream::Reencoder for WithFinal {
    fn on_data(&mut self, data: &str) -> Vec<Bytes> {
        self.encoder
            .on_data(data)
            .iter()
            .map(Event::encode)
            .collect()
    }

    fn is_done(&self) -> bool {
        self.encoder.is_done()
    }

    fn truncated(&mut self) -> Vec<Bytes> {
        self.encoder
            .fail(
                "server_error",
                "the upstream stream ended before completion",
            )
            .iter()
            .map(Event::encode)
            .collect()
    }

    fn on_done(&mut self) -> Option<crate::stream::FinalHook> {
        let response = self.encoder.take_final()?;
        let f = self.on_final.take()?;
        Some(f(response))
    }
}

/// Runs a chat SSE byte stream (split anywhere) through an [`EventEncoder`].
///
/// A stream that ends before `[DONE]` ends with `error` and `response.failed`, so clients see
/// the failure instead of a response that looks complete.
pub fn responses_sse<S, E>(
    upstream: S,
    encoder: EventEncoder,
    on_final: Option<OnFinal>,
) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    crate::stream::reencode(upstream, WithFinal { encoder, on_final })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::responses::translate::{shell, to_response, ResponsesRequest};
    use crate::stream::event_data;
    use futures_util::StreamExt;
    use std::cell::RefCell;
    use std::convert::Infallible;
    use std::rc::Rc;

    fn chunk(delta: Value, finish: Value) -> String {
        let c = json!({"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    const USAGE: &str = "data: {\"id\":\"chatcmpl-abc\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":4,\"total_tokens\":11}}\n\n";

    fn text_stream(words: &[&str], finish: &str) -> String {
        let mut s = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        for w in words {
            s += &chunk(json!({"content": w}), Value::Null);
        }
        s += &chunk(json!({}), json!(finish));
        s += USAGE;
        s += "data: [DONE]\n\n";
        s
    }

    fn tool_stream() -> String {
        let mut s = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
        s += &chunk(json!({"content": "Let me check."}), Value::Null);
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        );
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
            Value::Null,
        );
        s += &chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}),
            Value::Null,
        );
        s += &chunk(
            json!({"tool_calls": [{"index": 1, "id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}),
            Value::Null,
        );
        s += &chunk(json!({}), json!("tool_calls"));
        s += USAGE;
        s += "data: [DONE]\n\n";
        s
    }

    fn the_shell() -> Value {
        let r: ResponsesRequest =
            serde_json::from_value(json!({"model": "g", "input": "q", "stream": true})).unwrap();
        shell(&r, "resp_abc", 100)
    }

    fn fixed_clock() -> u64 {
        101
    }

    async fn run(input: &str, size: usize) -> (Vec<(String, Value)>, Option<Value>) {
        let pieces: Vec<Result<Bytes, Infallible>> = input
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let saved = Rc::new(RefCell::new(None));
        let sink = Rc::clone(&saved);
        let on_final: OnFinal = Box::new(move |v| {
            Box::pin(async move {
                *sink.borrow_mut() = Some(v);
            })
        });
        let frames: Vec<Bytes> = responses_sse(
            futures_util::stream::iter(pieces),
            EventEncoder::new(the_shell(), fixed_clock),
            Some(on_final),
        )
        .map(|r| match r {
            Ok(b) => b,
            Err(e) => match e {},
        })
        .collect()
        .await;
        let events = frames
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
            .collect();
        let saved = saved.borrow_mut().take();
        (events, saved)
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn assert_sequence(events: &[(String, Value)]) {
        for (i, (_, d)) in events.iter().enumerate() {
            assert_eq!(d["sequence_number"], i as u64, "{d}");
        }
    }

    #[tokio::test]
    async fn text_becomes_response_events_and_the_same_object() {
        let words = ["Hello", " wor", "ld", " \u{e9}t\u{e9}"];
        for size in [1, 7, 10_000] {
            let (events, saved) = run(&text_stream(&words, "stop"), size).await;
            assert_eq!(
                names(&events),
                [
                    "response.created",
                    "response.in_progress",
                    "response.output_item.added",
                    "response.content_part.added",
                    "response.output_text.delta",
                    "response.output_text.delta",
                    "response.output_text.delta",
                    "response.output_text.delta",
                    "response.output_text.done",
                    "response.content_part.done",
                    "response.output_item.done",
                    "response.completed"
                ],
                "split {size}"
            );
            assert_sequence(&events);
            let deltas: String = events
                .iter()
                .filter(|(n, _)| n == "response.output_text.delta")
                .map(|(_, d)| d["delta"].as_str().unwrap())
                .collect();
            let full: String = words.concat();
            assert_eq!(deltas, full);
            assert_eq!(events[8].1["text"], full.as_str());
            assert_eq!(events[0].1["response"]["status"], "in_progress");
            assert_eq!(events[0].1["response"]["output"], json!([]));
            assert_eq!(events[2].1["item"]["status"], "in_progress");
            assert_eq!(events[2].1["item"]["id"], "msg_abc00");
            assert_eq!(events[4].1["item_id"], "msg_abc00");
            assert_eq!(events[4].1["content_index"], 0);
            assert_eq!(events[4].1["output_index"], 0);

            // The final object is the one the JSON path builds from the same answer.
            let completion = json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": full}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
            });
            let expected = to_response(&completion, the_shell(), 101);
            let completed = &events.last().unwrap().1["response"];
            assert_eq!(completed, &expected);
            assert_eq!(events[10].1["item"], expected["output"][0]);
            assert_eq!(saved.as_ref(), Some(&expected));
        }
    }

    #[tokio::test]
    async fn tool_calls_become_function_call_items() {
        let (events, saved) = run(&tool_stream(), 5).await;
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_sequence(&events);
        assert_eq!(
            events[8].1["item"],
            json!({"id": "fc_abc01", "type": "function_call", "status": "in_progress", "arguments": "", "call_id": "call_1", "name": "get_weather"})
        );
        assert_eq!(events[11].1["arguments"], "{\"city\":\"Paris\"}");
        let completion = json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
        });
        let expected = to_response(&completion, the_shell(), 101);
        assert_eq!(events.last().unwrap().1["response"], expected);
        assert_eq!(saved, Some(expected));
    }

    #[tokio::test]
    async fn length_is_incomplete_and_empty_answers_still_have_a_message() {
        let (events, _) = run(&text_stream(&["cut"], "length"), 10_000).await;
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(events[events.len() - 2].1["item"]["status"], "incomplete");

        let (events, _) = run(&text_stream(&[], "stop"), 10_000).await;
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let completion = json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
        });
        assert_eq!(
            events.last().unwrap().1["response"],
            to_response(&completion, the_shell(), 101)
        );
    }

    #[tokio::test]
    async fn refusals_stream_as_refusal_parts() {
        let mut s = chunk(
            json!({"role": "assistant", "refusal": "I can"}),
            Value::Null,
        );
        s += &chunk(json!({"refusal": "not."}), Value::Null);
        s += &chunk(json!({}), json!("stop"));
        s += "data: [DONE]\n\n";
        let (events, _) = run(&s, 10_000).await;
        assert!(names(&events).contains(&"response.refusal.delta"));
        assert!(names(&events).contains(&"response.refusal.done"));
        let response = &events.last().unwrap().1["response"];
        assert_eq!(
            response["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "I cannot."}])
        );
    }

    #[tokio::test]
    async fn errors_and_truncation_fail_the_response() {
        let mut s = chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null);
        s += "data: {\"error\":{\"message\":\"deployment 'x' returned HTTP 500\",\"type\":\"upstream_error\"}}\n\n";
        let (events, saved) = run(&s, 4).await;
        let n = names(&events);
        assert_eq!(&n[n.len() - 2..], ["error", "response.failed"]);
        assert_sequence(&events);
        let failed = &events.last().unwrap().1["response"];
        assert_eq!(failed["status"], "failed");
        assert_eq!(failed["error"]["code"], "server_error");
        assert!(failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"));
        assert_eq!(failed["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(saved.unwrap()["status"], "failed");
        assert!(!n.contains(&"response.completed"));

        let s = chunk(json!({"role": "assistant", "content": "Hi"}), Value::Null);
        let (events, _) = run(&s, 3).await;
        let (name, data) = &events[events.len() - 2];
        assert_eq!(name, "error");
        assert!(data["message"].as_str().unwrap().contains("ended before"));
        assert_eq!(events.last().unwrap().0, "response.failed");

        let s = "data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}\n\n";
        let (events, _) = run(s, 100).await;
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "error",
                "response.failed"
            ]
        );
        assert_eq!(events[2].1["code"], "rate_limit_exceeded");
    }
}
