//! Streaming: SSE framing, the tee that feeds the client and an accumulator at once, and the
//! outcome (usage, the assembled completion, whether it finished cleanly) reported at the end.
//!
//! Owns the shape of a stream; knows nothing of providers' native formats (adapters hand it
//! OpenAI-format SSE) and nothing of caching (it reports, the pipeline decides).

mod accumulate;
mod on_end;
mod reencode;
mod sse;

pub use accumulate::ChatAccumulator;
pub use on_end::OnEnd;
pub use reencode::{reencode, FinalHook, Reencoder};
pub use sse::{event_data, sse_data, SseSplitter, SSE_DONE};

use crate::providers::{ChunkStream, UpstreamError};
use crate::wire::Usage;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::Value;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// What a finished (or abandoned) stream produced.
#[derive(Debug)]
pub struct StreamOutcome {
    /// Usage from the usage chunk, if one came.
    pub usage: Option<Usage>,
    /// The assembled `chat.completion` object.
    pub completion: Value,
    /// `[DONE]` arrived, no error, every choice has a finish reason.
    pub clean: bool,
    /// The client went away before the end.
    pub cancelled: bool,
    /// The upstream failed mid-stream.
    pub error: Option<UpstreamError>,
    /// When the first content arrived.
    pub first_token_at: Option<Instant>,
}

/// Called once with the outcome, at the end of the stream or when the client disconnects.
pub type OnFinish = Box<dyn FnOnce(StreamOutcome) + Send>;

/// Passes upstream SSE to the client event by event while accumulating the answer.
pub struct Tee {
    inner: ChunkStream,
    splitter: SseSplitter,
    acc: ChatAccumulator,
    /// Drop the usage-only chunk (the client did not ask for it; Sluice did).
    strip_usage: bool,
    saw_done: bool,
    ended: bool,
    error: Option<UpstreamError>,
    first_token_at: Option<Instant>,
    on_finish: Option<OnFinish>,
}

impl Tee {
    /// Wraps an upstream stream.
    pub fn new(inner: ChunkStream, strip_usage: bool, on_finish: OnFinish) -> Self {
        Self {
            inner,
            splitter: SseSplitter::default(),
            acc: ChatAccumulator::default(),
            strip_usage,
            saw_done: false,
            ended: false,
            error: None,
            first_token_at: None,
            on_finish: Some(on_finish),
        }
    }

    /// Looks at one event; returns whether it goes to the client.
    fn observe(&mut self, event: &[u8]) -> bool {
        let Some(data) = event_data(event) else {
            return true; // comments and keep-alives pass through
        };
        if data == "[DONE]" {
            self.saw_done = true;
            return true;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(&data) else {
            return true;
        };
        if chunk.get("error").is_some() {
            self.error.get_or_insert(UpstreamError::Protocol {
                deployment: "upstream".into(),
                detail: "error event in stream".into(),
            });
            return true;
        }
        let had_content = self.acc.has_output();
        self.acc.observe(&chunk);
        if !had_content && self.acc.has_output() {
            self.first_token_at = Some(Instant::now());
        }
        let usage_only = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(|c| c.is_empty())
            && chunk.get("usage").is_some_and(|u| !u.is_null());
        !(self.strip_usage && usage_only)
    }

    fn finish(&mut self, cancelled: bool) {
        if let Some(f) = self.on_finish.take() {
            let acc = std::mem::take(&mut self.acc);
            let clean = !cancelled && self.saw_done && self.error.is_none() && acc.all_finished();
            f(StreamOutcome {
                usage: acc.usage(),
                completion: acc.into_completion(),
                clean,
                cancelled,
                error: self.error.take(),
                first_token_at: self.first_token_at,
            });
        }
    }
}

impl Stream for Tee {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    // Events completed by this chunk go out together, in one write.
                    let mut out = BytesMut::new();
                    for event in this.splitter.push(&chunk) {
                        if this.observe(&event) {
                            out.extend_from_slice(&event);
                        }
                    }
                    if this.saw_done {
                        // Spend and the write-back are recorded before the client can hold
                        // `[DONE]`: an acknowledged answer is an accounted one, even if the
                        // upstream keeps its connection open or the process dies next.
                        this.finish(false);
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let frame = sse_data(&crate::error::ApiError::from(e.clone()).body());
                    this.error = Some(e);
                    this.ended = true;
                    this.finish(false);
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    let rest = this.splitter.finish();
                    let keep = rest.as_ref().is_some_and(|r| this.observe(r));
                    this.finish(false);
                    return match rest {
                        Some(r) if keep => Poll::Ready(Some(Ok(r))),
                        _ => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Dropped before the end: the client disconnected; dropping `inner` cancels upstream.
        self.finish(true);
    }
}

#[cfg(test)]
mod tee_tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn the_answer_is_accounted_before_done_reaches_the_client() {
        let finished = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&finished);
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#;
        let frames: Vec<Result<Bytes, UpstreamError>> = vec![
            Ok(Bytes::from(format!("data: {chunk}\n\n"))),
            Ok(Bytes::from_static(b"data: [DONE]\n\n")),
        ];
        // An upstream that keeps its connection open after `[DONE]`.
        let upstream = futures_util::stream::iter(frames).chain(futures_util::stream::pending());
        let mut tee = Tee::new(
            Box::pin(upstream),
            false,
            Box::new(move |o: StreamOutcome| {
                assert!(o.clean);
                seen.store(true, Ordering::SeqCst);
            }),
        );
        let mut body = Vec::new();
        while !body.ends_with(b"data: [DONE]\n\n") {
            let Some(Ok(b)) = tee.next().await else {
                break;
            };
            body.extend_from_slice(&b);
        }
        assert!(body.ends_with(b"data: [DONE]\n\n"));
        assert!(
            finished.load(Ordering::SeqCst),
            "on_finish ran before [DONE] was handed out"
        );
    }
}
