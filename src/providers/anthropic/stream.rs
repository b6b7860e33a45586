//! Anthropic streaming events in, OpenAI `chat.completion.chunk` SSE out.
//!
//! [`ChunkTranslator`] is the pure state machine (one Anthropic event -> zero or more OpenAI
//! frames); [`openai_sse`] frames an arbitrary byte stream with [`SseSplitter`] and runs it.

use super::outbound::{finish_reason, usage_json};
use super::wire::{BlockDelta, ContentBlock, DeltaUsage, MessageUsage, StreamEvent};
use crate::providers::UpstreamError;
use crate::stream::{event_data, sse_data, SseSplitter, SSE_DONE};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};

/// Why a stream cannot go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum StreamFault {
    /// Anthropic sent an `error` event.
    #[error("{kind}: {message}")]
    Upstream {
        /// Error type (`overloaded_error`, ...).
        kind: String,
        /// Its message.
        message: String,
    },
    /// The bytes were not Anthropic's event format.
    #[error("{0}")]
    Protocol(String),
}

/// Turns Anthropic stream events into OpenAI chunks, one event at a time.
#[derive(Debug)]
pub(crate) struct ChunkTranslator {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: MessageUsage,
    /// Anthropic block index -> OpenAI `tool_calls[].index`.
    tool_slots: HashMap<u64, u64>,
    started: bool,
    finish_sent: bool,
    done: bool,
}

impl ChunkTranslator {
    /// A translator for one stream; `model` is used until `message_start` names one.
    pub(crate) fn new(model: &str, created: u64, include_usage: bool) -> Self {
        Self {
            id: String::new(),
            model: model.to_string(),
            created,
            include_usage,
            usage: MessageUsage::default(),
            tool_slots: HashMap::new(),
            started: false,
            finish_sent: false,
            done: false,
        }
    }

    /// Whether `message_stop` has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        sse_data(&json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        }))
    }

    /// Translates one event's `data`.
    pub(crate) fn on_event(&mut self, data: &str) -> Result<Vec<Bytes>, StreamFault> {
        let event: StreamEvent = serde_json::from_str(data)
            .map_err(|e| StreamFault::Protocol(format!("unreadable stream event: {e}")))?;
        if !self.started
            && !matches!(
                event,
                StreamEvent::MessageStart { .. }
                    | StreamEvent::Ping
                    | StreamEvent::Error { .. }
                    | StreamEvent::Unknown
            )
        {
            return Err(StreamFault::Protocol(
                "stream did not begin with message_start".into(),
            ));
        }
        let mut out = Vec::new();
        match event {
            StreamEvent::MessageStart { message } => {
                self.started = true;
                self.id = format!("chatcmpl-{}", message.id);
                if !message.model.is_empty() {
                    self.model = message.model;
                }
                self.usage = message.usage;
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ContentBlock::Text { text, .. } if !text.is_empty() => {
                    out.push(self.chunk(json!({"content": text}), None));
                }
                ContentBlock::ToolUse { id, name, .. } => {
                    let slot = self.tool_slots.len() as u64;
                    self.tool_slots.insert(index, slot);
                    out.push(self.chunk(
                        json!({"tool_calls": [{
                            "index": slot, "id": id, "type": "function",
                            "function": {"name": name, "arguments": ""}
                        }]}),
                        None,
                    ));
                }
                _ => {}
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => {
                    out.push(self.chunk(json!({"content": text}), None));
                }
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    let slot = self.tool_slots.get(&index).copied().ok_or_else(|| {
                        StreamFault::Protocol(format!(
                            "input_json_delta for block {index}, which is not a tool_use block"
                        ))
                    })?;
                    out.push(self.chunk(
                        json!({"tool_calls": [{"index": slot, "function": {"arguments": partial_json}}]}),
                        None,
                    ));
                }
                // Thinking, signatures, citations and empty deltas have no OpenAI chunk.
                _ => {}
            },
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping | StreamEvent::Unknown => {}
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.merge_usage(u);
                }
                if let Some(reason) = delta.stop_reason {
                    out.push(self.chunk(json!({}), Some(finish_reason(Some(&reason)))));
                    self.finish_sent = true;
                }
            }
            StreamEvent::MessageStop => {
                if !self.finish_sent {
                    out.push(self.chunk(json!({}), Some("stop")));
                    self.finish_sent = true;
                }
                if self.include_usage {
                    out.push(sse_data(&json!({
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.created,
                        "model": self.model,
                        "choices": [],
                        "usage": usage_json(
                            self.usage.prompt_tokens(),
                            self.usage.output_tokens,
                            self.usage.cache_read_input_tokens,
                        ),
                    })));
                }
                out.push(Bytes::from_static(SSE_DONE));
                self.done = true;
            }
            StreamEvent::Error { error } => {
                return Err(StreamFault::Upstream {
                    kind: error.kind,
                    message: error.message,
                })
            }
        }
        Ok(out)
    }

    /// `message_delta` usage is cumulative: a field it carries replaces the earlier figure.
    fn merge_usage(&mut self, u: DeltaUsage) {
        if let Some(n) = u.input_tokens {
            self.usage.input_tokens = n;
        }
        if let Some(n) = u.output_tokens {
            self.usage.output_tokens = n;
        }
        if u.cache_creation_input_tokens.is_some() {
            self.usage.cache_creation_input_tokens = u.cache_creation_input_tokens;
        }
        if u.cache_read_input_tokens.is_some() {
            self.usage.cache_read_input_tokens = u.cache_read_input_tokens;
        }
    }
}

/// What the running stream carries between polls.
struct State<S, T, F> {
    upstream: S,
    splitter: SseSplitter,
    translator: ChunkTranslator,
    queue: VecDeque<Result<Bytes, UpstreamError>>,
    ended: bool,
    transport: T,
    fault: F,
}

impl<S, T, F> State<S, T, F>
where
    F: Fn(StreamFault) -> UpstreamError,
{
    /// Feeds one complete SSE event; a fault ends the stream after what is queued.
    fn feed(&mut self, event: &[u8]) {
        if self.ended {
            return;
        }
        let Some(data) = event_data(event) else {
            return; // comments and keep-alives
        };
        match self.translator.on_event(&data) {
            Ok(frames) => self.queue.extend(frames.into_iter().map(Ok)),
            Err(f) => {
                self.queue.push_back(Err((self.fault)(f)));
                self.ended = true;
            }
        }
        if self.translator.is_done() {
            self.ended = true;
        }
    }
}

/// Runs an Anthropic SSE byte stream (split anywhere) through a [`ChunkTranslator`].
///
/// An `error` event, unreadable data or an end before `message_stop` ends the stream with
/// an error item, so the gateway never treats a broken stream as complete.
pub(crate) fn openai_sse<S, E, T, F>(
    upstream: S,
    translator: ChunkTranslator,
    transport: T,
    fault: F,
) -> impl Stream<Item = Result<Bytes, UpstreamError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    T: Fn(E) -> UpstreamError + Send,
    F: Fn(StreamFault) -> UpstreamError + Send,
{
    let state = State {
        upstream,
        splitter: SseSplitter::default(),
        translator,
        queue: VecDeque::new(),
        ended: false,
        transport,
        fault,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(item) = s.queue.pop_front() {
                return Some((item, s));
            }
            if s.ended {
                return None;
            }
            match s.upstream.next().await {
                Some(Ok(bytes)) => {
                    for event in s.splitter.push(&bytes) {
                        s.feed(&event);
                    }
                }
                Some(Err(e)) => {
                    s.queue.push_back(Err((s.transport)(e)));
                    s.ended = true;
                }
                None => {
                    if let Some(rest) = s.splitter.finish() {
                        s.feed(&rest);
                    }
                    if !s.ended {
                        s.queue.push_back(Err((s.fault)(StreamFault::Protocol(
                            "stream ended before message_stop".into(),
                        ))));
                        s.ended = true;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ChatAccumulator;
    use std::convert::Infallible;

    /// A realistic tool-using answer, as Anthropic sends it.
    const TOOL_STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me think\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"the weather.\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Pa\"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ris\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"time\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn label_fault(f: StreamFault) -> UpstreamError {
        UpstreamError::Protocol {
            deployment: "d".into(),
            detail: f.to_string(),
        }
    }

    /// Runs `input` split into `size`-byte pieces; returns the frames and the error, if any.
    async fn run(
        input: &str,
        size: usize,
        include_usage: bool,
    ) -> (Vec<Bytes>, Option<UpstreamError>) {
        let pieces: Vec<Result<Bytes, Infallible>> = input
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let s = openai_sse(
            futures_util::stream::iter(pieces),
            ChunkTranslator::new("fallback", 7, include_usage),
            |e: Infallible| match e {},
            label_fault,
        );
        let items: Vec<_> = s.collect().await;
        let mut frames = Vec::new();
        let mut error = None;
        for item in items {
            match item {
                Ok(b) => {
                    assert!(error.is_none(), "nothing after an error");
                    frames.push(b);
                }
                Err(e) => error = Some(e),
            }
        }
        (frames, error)
    }

    fn json_frames(frames: &[Bytes]) -> (Vec<Value>, bool) {
        let mut out = Vec::new();
        let mut done = false;
        for f in frames {
            let data = event_data(f).unwrap();
            if data == "[DONE]" {
                done = true;
            } else {
                assert!(!done, "nothing after [DONE]");
                out.push(serde_json::from_str(&data).unwrap());
            }
        }
        (out, done)
    }

    #[tokio::test]
    async fn tool_stream_translates_at_any_split() {
        for size in [1, 2, 3, 7, 64, 10_000] {
            let (frames, err) = run(TOOL_STREAM, size, true).await;
            assert!(err.is_none(), "split {size}: {err:?}");
            let (chunks, done) = json_frames(&frames);
            assert!(done);
            let mut acc = ChatAccumulator::default();
            for c in &chunks {
                assert_eq!(c["object"], "chat.completion.chunk");
                assert_eq!(c["id"], "chatcmpl-msg_01");
                assert_eq!(c["model"], "claude-x");
                acc.observe(c);
            }
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert!(acc.all_finished());
            let usage = acc.usage().unwrap();
            assert_eq!((usage.prompt_tokens, usage.completion_tokens), (30, 89));
            let done = acc.into_completion();
            let msg = &done["choices"][0]["message"];
            assert_eq!(msg["content"], "Checking the weather.");
            assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(msg["tool_calls"][0]["id"], "toolu_01");
            assert_eq!(msg["tool_calls"][0]["function"]["name"], "weather");
            assert_eq!(
                msg["tool_calls"][0]["function"]["arguments"],
                "{\"city\": \"Paris\"}"
            );
            assert_eq!(msg["tool_calls"][1]["id"], "toolu_02");
            assert_eq!(msg["tool_calls"][1]["function"]["arguments"], "{}");
        }
    }

    #[tokio::test]
    async fn tool_call_indexes_count_tool_blocks_only() {
        let (frames, _) = run(TOOL_STREAM, 10_000, false).await;
        let (chunks, _) = json_frames(&frames);
        let starts: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]
                    .get("id")
                    .map(|_| c)
            })
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(
            starts[0]["choices"][0]["delta"]["tool_calls"][0]["index"],
            0
        );
        assert_eq!(
            starts[1]["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        assert_eq!(
            starts[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            ""
        );
        // No usage chunk unless asked.
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        let finish: Vec<_> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect();
        assert_eq!(finish, ["tool_calls"]);
    }

    #[tokio::test]
    async fn error_event_ends_the_stream_with_an_error() {
        let input = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\n",
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
            "event: error\n",
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            "event: content_block_delta\n",
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
        );
        for size in [1, 5, 10_000] {
            let (frames, err) = run(input, size, true).await;
            let (chunks, done) = json_frames(&frames);
            assert!(!done, "no [DONE] after an error");
            assert_eq!(chunks.len(), 2, "role chunk and 'Hel'");
            let err = err.unwrap();
            assert!(
                err.to_string().contains("overloaded_error: Overloaded"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn truncated_or_garbled_streams_fail() {
        let cut = &TOOL_STREAM[..TOOL_STREAM.find("event: message_delta").unwrap()];
        let (frames, err) = run(cut, 13, false).await;
        assert!(err.unwrap().to_string().contains("before message_stop"));
        assert!(!json_frames(&frames).1);

        let (_, err) = run("data: {not json}\n\n", 4, false).await;
        assert!(err.unwrap().to_string().contains("unreadable stream event"));

        let (_, err) = run(
            "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            100,
            false,
        )
        .await;
        assert!(err.unwrap().to_string().contains("message_start"));
    }

    #[test]
    fn stop_without_message_delta_still_finishes() {
        let mut t = ChunkTranslator::new("m", 1, false);
        t.on_event(r#"{"type":"message_start","message":{"id":"msg_3","type":"message","role":"assistant","content":[],"model":"","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}"#).unwrap();
        let frames = t.on_event(r#"{"type":"message_stop"}"#).unwrap();
        assert_eq!(frames.len(), 2);
        let c: Value = serde_json::from_str(&event_data(&frames[0]).unwrap()).unwrap();
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["model"], "m", "empty model falls back");
        assert!(t.is_done());
    }
}
