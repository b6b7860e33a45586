//! Re-encoding an OpenAI chat SSE stream into another event family (Anthropic Messages events,
//! Responses events): framing, queueing and the truncated-stream rule live here once; what each
//! chunk becomes is the [`Reencoder`]'s business.

use super::{event_data, SseSplitter};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

/// Work to finish before the last frame goes out (e.g. storing the final object).
pub type FinalHook = Pin<Box<dyn Future<Output = ()>>>;

/// Turns the `data:` payloads of OpenAI chat chunks into encoded frames of another protocol.
pub trait Reencoder {
    /// Frames for one `data:` payload (a chunk, or `[DONE]`).
    fn on_data(&mut self, data: &str) -> Vec<Bytes>;
    /// Whether the answer is complete (no more frames will follow).
    fn is_done(&self) -> bool;
    /// Frames ending an answer whose upstream stream stopped before completion.
    fn truncated(&mut self) -> Vec<Bytes>;
    /// Called once the encoder is done: work to await before the queued frames are sent.
    fn on_done(&mut self) -> Option<FinalHook> {
        None
    }
}

/// Runs an OpenAI SSE byte stream (split anywhere) through `encoder`. Upstream errors pass
/// through and end the stream; a stream that ends before completion gets `truncated()` frames.
pub fn reencode<S, E, R>(upstream: S, encoder: R) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    R: Reencoder,
{
    struct State<S, R> {
        upstream: S,
        splitter: SseSplitter,
        encoder: R,
        queue: VecDeque<Bytes>,
        ended: bool,
    }
    impl<S, R: Reencoder> State<S, R> {
        fn feed(&mut self, event: &[u8]) {
            if let Some(data) = event_data(event) {
                let frames = self.encoder.on_data(&data);
                self.queue.extend(frames);
            }
        }
    }
    let state = State {
        upstream,
        splitter: SseSplitter::default(),
        encoder,
        queue: VecDeque::new(),
        ended: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.encoder.is_done() {
                if let Some(hook) = s.encoder.on_done() {
                    hook.await;
                }
            }
            if let Some(frame) = s.queue.pop_front() {
                return Some((Ok(frame), s));
            }
            if s.ended || s.encoder.is_done() {
                return None;
            }
            match s.upstream.next().await {
                Some(Ok(bytes)) => {
                    for event in s.splitter.push(&bytes) {
                        s.feed(&event);
                    }
                }
                Some(Err(e)) => {
                    s.ended = true;
                    return Some((Err(e), s));
                }
                None => {
                    if let Some(rest) = s.splitter.finish() {
                        s.feed(&rest);
                    }
                    if !s.encoder.is_done() {
                        let frames = s.encoder.truncated();
                        s.queue.extend(frames);
                    }
                    s.ended = true;
                }
            }
        }
    })
}
