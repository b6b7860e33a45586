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
use std::future::Future;
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

/// Work a stream's end must complete before the client may see its last bytes (the cache
/// write-back: an answer the client holds in full is a stored one).
pub type Settling = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Called once with the outcome, at the end of the stream or when the client disconnects; what
/// it returns runs to completion before the stream's last bytes go out.
pub type OnFinish = Box<dyn FnOnce(StreamOutcome) -> Option<Settling> + Send>;

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
    /// The end's work in progress, and the bytes held back until it is done.
    settling: Option<(Settling, Bytes)>,
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
            settling: None,
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

    fn finish(&mut self, cancelled: bool) -> Option<Settling> {
        let f = self.on_finish.take()?;
        let acc = std::mem::take(&mut self.acc);
        let clean = !cancelled && self.saw_done && self.error.is_none() && acc.all_finished();
        f(StreamOutcome {
            usage: acc.usage(),
            completion: acc.into_completion(),
            clean,
            cancelled,
            error: self.error.take(),
            first_token_at: self.first_token_at,
        })
    }

    /// Ends the stream with `last`, once the end's work (if any) is done.
    fn end_with(&mut self, last: Bytes) -> Option<Bytes> {
        match self.finish(false) {
            Some(settling) => {
                self.settling = Some((settling, last));
                None
            }
            None => Some(last),
        }
    }
}

impl Stream for Tee {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((settling, _)) = &mut this.settling {
                if settling.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some((_, held)) = this.settling.take() {
                    if !held.is_empty() {
                        return Poll::Ready(Some(Ok(held)));
                    }
                }
            }
            if this.ended {
                return Poll::Ready(None);
            }
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
                    let out = out.freeze();
                    if this.saw_done {
                        // Spend and the write-back are done before the client can hold
                        // `[DONE]`: an acknowledged answer is an accounted and stored one, even
                        // if the upstream keeps its connection open or the process dies next.
                        match this.end_with(out) {
                            Some(out) if !out.is_empty() => return Poll::Ready(Some(Ok(out))),
                            _ => continue,
                        }
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let frame = sse_data(&crate::error::ApiError::from(e.clone()).body());
                    this.error = Some(e);
                    this.ended = true;
                    if let Some(frame) = this.end_with(frame) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    let rest = this.splitter.finish();
                    let keep = rest.as_ref().is_some_and(|r| this.observe(r));
                    let last = rest.filter(|_| keep).unwrap_or_default();
                    match this.end_with(last) {
                        Some(last) if !last.is_empty() => return Poll::Ready(Some(Ok(last))),
                        Some(_) => return Poll::Ready(None),
                        None => {}
                    }
                }
            }
        }
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // Dropped before the end: the client disconnected; dropping `inner` cancels upstream.
        // A cancelled stream is never clean, so it has no end's work of its own; work already
        // started for a clean end (the client left while `[DONE]` was held) still completes.
        let settling = self
            .finish(true)
            .into_iter()
            .chain(self.settling.take().map(|(s, _)| s));
        for s in settling {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(s);
            }
        }
    }
}

#[cfg(test)]
mod tee_tests {
    use super::*;
    use futures_util::{FutureExt, StreamExt};
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
                None
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

    #[tokio::test]
    async fn done_waits_for_the_end_s_work() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#;
        let frames: Vec<Result<Bytes, UpstreamError>> = vec![
            Ok(Bytes::from(format!("data: {chunk}\n\n"))),
            Ok(Bytes::from_static(b"data: [DONE]\n\n")),
        ];
        let (stored_tx, stored_rx) = tokio::sync::oneshot::channel::<()>();
        let mut tee = Tee::new(
            Box::pin(futures_util::stream::iter(frames)),
            false,
            Box::new(move |o: StreamOutcome| {
                assert!(o.clean);
                Some(Box::pin(async move {
                    let _ = stored_rx.await;
                }))
            }),
        );
        let first = tee.next().await.unwrap().unwrap();
        assert!(first.starts_with(b"data: {"), "{first:?}");
        // The write-back has not finished: `[DONE]` is held back.
        assert!(tee.next().now_or_never().is_none());
        assert!(tee.next().now_or_never().is_none());
        stored_tx.send(()).unwrap();
        let last = tee.next().await.unwrap().unwrap();
        assert_eq!(&last[..], b"data: [DONE]\n\n");
        assert!(tee.next().await.is_none());
    }

    #[tokio::test]
    async fn a_client_leaving_while_done_is_held_does_not_cancel_the_write() {
        let chunk = r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#;
        let frames: Vec<Result<Bytes, UpstreamError>> = vec![Ok(Bytes::from(format!(
            "data: {chunk}\n\ndata: [DONE]\n\n"
        )))];
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let mut tee = Tee::new(
            Box::pin(futures_util::stream::iter(frames)),
            false,
            Box::new(move |_| {
                Some(Box::pin(async move {
                    let _ = go_rx.await;
                    let _ = done_tx.send(());
                }))
            }),
        );
        assert!(tee.next().now_or_never().is_none());
        drop(tee);
        go_tx.send(()).unwrap();
        done_rx.await.expect("the held write-back ran to its end");
    }
}
