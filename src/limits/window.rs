//! A sliding one-minute window: 60 buckets of one second, so a request counted at second `s`
//! leaves the window at `s + 60` exactly (to the second), and the time until enough capacity
//! frees up is known precisely, not guessed.

/// Length of a rate window in seconds.
pub const WINDOW_SECS: u64 = 60;
const N: usize = WINDOW_SECS as usize;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    requests: u64,
    tokens: u64,
}

/// Requests and tokens counted in the last 60 seconds, plus requests running now.
#[derive(Debug, Clone)]
pub struct Window {
    buckets: [Bucket; N],
    /// The latest second the buckets were advanced to.
    head: u64,
    requests: u64,
    tokens: u64,
    /// Requests admitted and not finished (max parallel requests).
    pub in_flight: u64,
}

/// What a count in a window measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Requests.
    Requests,
    /// Tokens.
    Tokens,
}

impl Window {
    /// An empty window at second `now`.
    pub fn new(now: u64) -> Self {
        Self {
            buckets: [Bucket::default(); N],
            head: now,
            requests: 0,
            tokens: 0,
            in_flight: 0,
        }
    }

    /// Drops the seconds that left the window by `now` (time never moves backwards here).
    pub fn advance(&mut self, now: u64) {
        if now <= self.head {
            return;
        }
        let steps = (now - self.head).min(WINDOW_SECS);
        for k in 1..=steps {
            let b = std::mem::take(&mut self.buckets[((self.head + k) % WINDOW_SECS) as usize]);
            self.requests = self.requests.saturating_sub(b.requests);
            self.tokens = self.tokens.saturating_sub(b.tokens);
        }
        self.head = now;
    }

    /// Requests or tokens counted in the window (as of the last [`Window::advance`]).
    pub fn used(&self, m: Measure) -> u64 {
        match m {
            Measure::Requests => self.requests,
            Measure::Tokens => self.tokens,
        }
    }

    /// Whether anything is counted or running.
    pub fn is_idle(&self) -> bool {
        self.requests == 0 && self.tokens == 0 && self.in_flight == 0
    }

    /// Whether second `s` is still inside the window.
    fn live(&self, s: u64) -> bool {
        s <= self.head && s + WINDOW_SECS > self.head
    }

    /// Counts requests and tokens at the current second.
    pub fn add(&mut self, requests: u64, tokens: u64) {
        let b = &mut self.buckets[(self.head % WINDOW_SECS) as usize];
        b.requests += requests;
        b.tokens += tokens;
        self.requests += requests;
        self.tokens += tokens;
    }

    /// Changes what was counted at second `s` (reconcile, roll back); nothing if `s` has left the
    /// window already. Counts never go below zero.
    pub fn adjust(&mut self, s: u64, requests: i64, tokens: i64) {
        if !self.live(s) {
            return;
        }
        let b = &mut self.buckets[(s % WINDOW_SECS) as usize];
        let (r0, t0) = (b.requests, b.tokens);
        b.requests = b.requests.saturating_add_signed(requests);
        b.tokens = b.tokens.saturating_add_signed(tokens);
        self.requests = (self.requests + b.requests).saturating_sub(r0);
        self.tokens = (self.tokens + b.tokens).saturating_sub(t0);
    }

    /// The second at which at least `need` of `m` will have left the window, if that many are
    /// counted: the oldest seconds leave first.
    pub fn frees_at(&self, m: Measure, need: u64) -> Option<u64> {
        let mut freed = 0u64;
        for k in 0..WINDOW_SECS {
            let Some(s) = (self.head + 1 + k).checked_sub(WINDOW_SECS) else {
                continue;
            };
            let b = self.buckets[(s % WINDOW_SECS) as usize];
            freed += match m {
                Measure::Requests => b.requests,
                Measure::Tokens => b.tokens,
            };
            if freed >= need.max(1) {
                return Some(s + WINDOW_SECS);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_after_sixty_seconds() {
        let mut w = Window::new(1_000);
        w.add(1, 10);
        w.advance(1_030);
        w.add(2, 5);
        assert_eq!(
            (w.used(Measure::Requests), w.used(Measure::Tokens)),
            (3, 15)
        );
        w.advance(1_059);
        assert_eq!(w.used(Measure::Requests), 3, "1000 is still inside at 1059");
        w.advance(1_060);
        assert_eq!((w.used(Measure::Requests), w.used(Measure::Tokens)), (2, 5));
        w.advance(1_089);
        assert_eq!(w.used(Measure::Requests), 2);
        w.advance(1_090);
        assert_eq!(w.used(Measure::Requests), 0);
        // A long gap clears everything at once.
        w.add(7, 7);
        w.advance(50_000);
        assert!(w.is_idle());
    }

    #[test]
    fn knows_when_capacity_frees_up() {
        let mut w = Window::new(100);
        w.add(2, 0);
        w.advance(110);
        w.add(3, 0);
        w.advance(120);
        assert_eq!(w.frees_at(Measure::Requests, 1), Some(160));
        assert_eq!(w.frees_at(Measure::Requests, 2), Some(160));
        assert_eq!(w.frees_at(Measure::Requests, 3), Some(170));
        assert_eq!(w.frees_at(Measure::Requests, 6), None);
        assert_eq!(w.frees_at(Measure::Tokens, 1), None);
    }

    #[test]
    fn adjust_reconciles_inside_the_window_only() {
        let mut w = Window::new(10);
        w.add(1, 100);
        w.advance(20);
        w.adjust(10, 0, 50);
        assert_eq!(w.used(Measure::Tokens), 150);
        w.adjust(10, -1, -500);
        assert_eq!((w.used(Measure::Requests), w.used(Measure::Tokens)), (0, 0));
        w.add(0, 30);
        w.advance(90);
        w.adjust(20, 0, 1_000);
        assert_eq!(w.used(Measure::Tokens), 0, "second 20 has left the window");
    }

    #[test]
    fn early_seconds_do_not_underflow() {
        let mut w = Window::new(0);
        w.add(1, 1);
        w.advance(3);
        assert_eq!(w.frees_at(Measure::Requests, 1), Some(60));
    }
}
