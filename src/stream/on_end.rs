//! A stream that runs a callback once when it ends: after its last item, or when it is dropped
//! early (the client went away). Used for work that must wait for a streamed body to finish,
//! such as the audit record with the stream's final usage.

use futures_util::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Wraps `inner`; `hook` runs exactly once, at the end or on drop.
pub struct OnEnd<S> {
    inner: S,
    hook: Option<Box<dyn FnOnce()>>,
}

impl<S> OnEnd<S> {
    /// Wraps `inner` so that `hook` runs when it ends.
    pub fn new(inner: S, hook: Box<dyn FnOnce()>) -> Self {
        OnEnd {
            inner,
            hook: Some(hook),
        }
    }

    fn fire(&mut self) {
        if let Some(h) = self.hook.take() {
            h();
        }
    }
}

impl<S: Stream + Unpin> Stream for OnEnd<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = polled {
            self.fire();
        }
        polled
    }
}

impl<S> Drop for OnEnd<S> {
    fn drop(&mut self) {
        self.fire();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::cell::Cell;
    use std::rc::Rc;

    #[tokio::test]
    async fn fires_once_at_the_end_or_on_drop() {
        let n = Rc::new(Cell::new(0));
        let c = Rc::clone(&n);
        let s = OnEnd::new(
            futures_util::stream::iter([1, 2]),
            Box::new(move || c.set(c.get() + 1)),
        );
        assert_eq!(s.collect::<Vec<_>>().await, [1, 2]);
        assert_eq!(n.get(), 1);
        let c = Rc::clone(&n);
        let mut s = OnEnd::new(
            futures_util::stream::iter([1, 2]),
            Box::new(move || c.set(c.get() + 1)),
        );
        assert_eq!(s.next().await, Some(1));
        drop(s);
        assert_eq!(n.get(), 2);
    }
}
