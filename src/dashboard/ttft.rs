//! Time to first token as the client sees it: a pass-through stream that notes when its first
//! non-empty chunk went out.

use bytes::Bytes;
use futures_util::Stream;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

/// Wraps a body stream; the first non-empty chunk sets `first`.
pub struct FirstByte<S> {
    inner: S,
    first: Arc<OnceLock<Instant>>,
}

impl<S> FirstByte<S> {
    /// Wraps `inner`; read the instant from `first` once the stream has ended.
    pub fn new(inner: S, first: Arc<OnceLock<Instant>>) -> Self {
        Self { inner, first }
    }
}

impl<S, E> Stream for FirstByte<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(b))) = &polled {
            if !b.is_empty() {
                let _ = self.first.set(Instant::now());
            }
        }
        polled
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[tokio::test]
    async fn notes_the_first_non_empty_chunk_once() {
        let first = Arc::new(OnceLock::new());
        let chunks: Vec<Result<Bytes, ()>> =
            vec![Ok(Bytes::new()), Ok(Bytes::from("a")), Ok(Bytes::from("b"))];
        let mut s = FirstByte::new(futures_util::stream::iter(chunks), Arc::clone(&first));
        assert!(s.next().await.is_some());
        assert!(first.get().is_none());
        s.next().await;
        let at = *first.get().unwrap();
        s.next().await;
        assert_eq!(*first.get().unwrap(), at);
    }
}
