//! The live tail: finished requests fanned out to `GET /ui/api/tail` subscribers over a tokio
//! broadcast channel, with the last [`BACKLOG`] kept for a page that just opened.
//!
//! Publishing never waits: a subscriber that falls behind loses events (the channel drops the
//! oldest), it never slows a request. Events carry no prompt or answer text.

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events a fresh subscriber receives first.
pub const BACKLOG: usize = 50;
/// Events buffered per subscriber before it starts losing them.
const CHANNEL: usize = 256;
/// Interval of the `: ping` comment that keeps proxies from closing an idle stream.
pub const PING_EVERY: Duration = Duration::from_secs(15);

/// One finished request as the tail shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TailEvent {
    /// Unix time of the end of the request, ms.
    pub time_ms: u64,
    /// `x-request-id`.
    pub request_id: String,
    /// Key id of the caller.
    pub key_id: String,
    /// Alias of the key, if any.
    pub key_alias: Option<String>,
    /// End user, if named.
    pub user: Option<String>,
    /// Route, e.g. `/v1/chat/completions`.
    pub endpoint: String,
    /// Model group asked for.
    pub model: Option<String>,
    /// Deployment that answered.
    pub deployment: Option<String>,
    /// Cache outcome.
    pub cache: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// USD cost.
    pub cost_usd: f64,
    /// Time to the last byte, ms.
    pub latency_ms: f64,
}

/// The tail: backlog plus broadcast.
#[derive(Debug)]
pub struct Tail {
    backlog: Mutex<VecDeque<Arc<TailEvent>>>,
    tx: broadcast::Sender<Arc<TailEvent>>,
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            backlog: Mutex::new(VecDeque::with_capacity(BACKLOG)),
            tx: broadcast::channel(CHANNEL).0,
        }
    }
}

/// A subscription: the backlog at the time of subscribing and the live receiver, with no
/// event in both and none lost between them.
pub struct Subscription {
    /// Recent events, oldest first.
    pub backlog: Vec<Arc<TailEvent>>,
    /// Events from now on.
    pub rx: broadcast::Receiver<Arc<TailEvent>>,
}

impl Tail {
    /// Publishes an event (never blocks on subscribers).
    pub fn publish(&self, e: TailEvent) {
        let e = Arc::new(e);
        // Under the backlog lock, so a subscriber sees each event exactly once.
        let mut b = self.backlog.lock();
        if b.len() == BACKLOG {
            b.pop_front();
        }
        b.push_back(Arc::clone(&e));
        // No receiver is not an error here.
        let _ = self.tx.send(e);
    }

    /// Subscribes.
    pub fn subscribe(&self) -> Subscription {
        let b = self.backlog.lock();
        Subscription {
            backlog: b.iter().cloned().collect(),
            rx: self.tx.subscribe(),
        }
    }
}

/// One SSE frame: `event: request` with the event as JSON.
pub fn frame(e: &TailEvent) -> Bytes {
    let json = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: request\ndata: {json}\n\n"))
}

/// The SSE body for one subscriber: the backlog, then live events, with a ping every
/// [`PING_EVERY`]; `keep` filters what this subscriber may see (a key session: its own key).
pub fn stream(
    sub: Subscription,
    keep: impl Fn(&TailEvent) -> bool + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    use futures_util::StreamExt;
    let first: Vec<Bytes> = sub
        .backlog
        .iter()
        .filter(|e| keep(e))
        .map(|e| frame(e))
        .collect();
    // An opening comment flushes the headers at once, even with an empty backlog.
    let opening = std::iter::once(Bytes::from_static(b": sluice tail\n\n")).chain(first);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let live = futures_util::stream::unfold(
        (sub.rx, ping, keep),
        |(mut rx, mut ping, keep)| async move {
            loop {
                tokio::select! {
                    got = rx.recv() => match got {
                        Ok(e) if keep(&e) => return Some((frame(&e), (rx, ping, keep))),
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            let note = Bytes::from(format!(": {n} events dropped (slow reader)\n\n"));
                            return Some((note, (rx, ping, keep)));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = ping.tick() => return Some((Bytes::from_static(b": ping\n\n"), (rx, ping, keep))),
                }
            }
        },
    );
    futures_util::stream::iter(opening).chain(live).map(Ok)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(n: u64, key: &str) -> TailEvent {
        TailEvent {
            time_ms: n,
            request_id: format!("r{n}"),
            key_id: key.into(),
            key_alias: None,
            user: None,
            endpoint: "/v1/chat/completions".into(),
            model: Some("g".into()),
            deployment: None,
            cache: Some("miss".into()),
            status: 200,
            tokens_in: 1,
            tokens_out: 1,
            cost_usd: 0.0,
            latency_ms: 1.0,
        }
    }

    #[test]
    fn backlog_keeps_the_last_fifty() {
        let t = Tail::default();
        for n in 0..60 {
            t.publish(event(n, "k"));
        }
        let s = t.subscribe();
        assert_eq!(s.backlog.len(), BACKLOG);
        assert_eq!(s.backlog[0].time_ms, 10);
    }

    #[tokio::test]
    async fn stream_sends_backlog_then_live_filtered() {
        use futures_util::StreamExt;
        let t = Tail::default();
        t.publish(event(1, "a"));
        t.publish(event(2, "b"));
        let mut s = Box::pin(stream(t.subscribe(), |e| e.key_id == "a"));
        assert!(s.next().await.unwrap().unwrap().starts_with(b": sluice"));
        let first = s.next().await.unwrap().unwrap();
        assert!(std::str::from_utf8(&first)
            .unwrap()
            .contains("\"request_id\":\"r1\""));
        t.publish(event(3, "b"));
        t.publish(event(4, "a"));
        let next = s.next().await.unwrap().unwrap();
        let text = std::str::from_utf8(&next).unwrap();
        assert!(text.starts_with("event: request\ndata: {"), "{text}");
        assert!(text.contains("\"request_id\":\"r4\""), "{text}");
    }

    #[tokio::test]
    async fn a_slow_reader_loses_events_and_is_told() {
        use futures_util::StreamExt;
        let t = Tail::default();
        let mut s = Box::pin(stream(t.subscribe(), |_| true));
        assert!(s.next().await.is_some());
        for n in 0..(CHANNEL as u64 + 10) {
            t.publish(event(n, "k"));
        }
        let note = s.next().await.unwrap().unwrap();
        assert!(std::str::from_utf8(&note).unwrap().contains("dropped"));
    }
}
