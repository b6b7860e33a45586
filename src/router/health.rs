//! What the router has observed about one deployment: latency, errors, load and cooldown.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Weight of the newest observation in the moving averages.
const ALPHA: f64 = 0.3;
/// Length of the usage window (LiteLLM's rpm/tpm are per minute).
const MINUTE: Duration = Duration::from_secs(60);

/// Live statistics of one deployment, shared by every request.
#[derive(Debug, Default)]
pub struct Health {
    inner: Mutex<Inner>,
    in_flight: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    ewma_total_ms: Option<f64>,
    ewma_ttft_ms: Option<f64>,
    ewma_error: f64,
    failures: VecDeque<Instant>,
    cooldown_until: Option<Instant>,
    window_start: Option<Instant>,
    window_requests: u64,
    window_tokens: u64,
}

/// A copy of the statistics at one moment, for scoring and the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    /// EWMA of the total time of a call, in ms (none observed yet: `None`).
    pub total_ms: Option<f64>,
    /// EWMA of the time to first token, in ms.
    pub ttft_ms: Option<f64>,
    /// EWMA of failures (0 = none recently, 1 = every recent call).
    pub error_rate: f64,
    /// Calls running now.
    pub in_flight: u64,
    /// Requests in the current minute.
    pub minute_requests: u64,
    /// Tokens in the current minute.
    pub minute_tokens: u64,
    /// Whether the deployment is cooling down.
    pub cooling_down: bool,
    /// How long the cooldown still lasts (`None` when not cooling down).
    pub cooldown_remaining: Option<Duration>,
}

/// Decrements the in-flight count when the call ends, however it ends.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Health);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn ewma(old: Option<f64>, new: f64) -> f64 {
    match old {
        Some(o) => o + ALPHA * (new - o),
        None => new,
    }
}

impl Health {
    /// Counts a call as running until the guard drops.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records a call sent (for usage-based routing).
    pub fn count_request(&self, tokens: u64, now: Instant) {
        let mut g = self.inner.lock();
        g.roll_window(now);
        g.window_requests += 1;
        g.window_tokens += tokens;
    }

    /// Adds tokens learned after the call (real usage beyond the estimate).
    pub fn add_tokens(&self, tokens: u64, now: Instant) {
        let mut g = self.inner.lock();
        g.roll_window(now);
        g.window_tokens += tokens;
    }

    /// A successful call: latency averages move, the error rate decays, failures are forgiven.
    pub fn record_success(&self, ttft: Option<Duration>, total: Option<Duration>) {
        let mut g = self.inner.lock();
        if let Some(t) = ttft {
            g.ewma_ttft_ms = Some(ewma(g.ewma_ttft_ms, t.as_secs_f64() * 1e3));
        }
        if let Some(t) = total {
            g.ewma_total_ms = Some(ewma(g.ewma_total_ms, t.as_secs_f64() * 1e3));
        }
        g.ewma_error = ewma(Some(g.ewma_error), 0.0);
        g.failures.clear();
    }

    /// A failed call. Returns true when this failure starts a cooldown: `allowed_fails` failures
    /// already happened within `window` (LiteLLM: more than `allowed_fails` per window cools down).
    pub fn record_failure(
        &self,
        now: Instant,
        allowed_fails: u32,
        window: Duration,
        cooldown: Duration,
    ) -> bool {
        let mut g = self.inner.lock();
        g.ewma_error = ewma(Some(g.ewma_error), 1.0);
        g.failures.push_back(now);
        while g
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            g.failures.pop_front();
        }
        if g.failures.len() as u64 > u64::from(allowed_fails) && !g.cooling_down(now) {
            g.cooldown_until = Some(now + cooldown);
            g.failures.clear();
            return true;
        }
        false
    }

    /// Whether the deployment is cooling down at `now`.
    pub fn cooling_down(&self, now: Instant) -> bool {
        self.inner.lock().cooling_down(now)
    }

    /// The statistics now.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let mut g = self.inner.lock();
        g.roll_window(now);
        Snapshot {
            total_ms: g.ewma_total_ms,
            ttft_ms: g.ewma_ttft_ms,
            error_rate: g.ewma_error,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            minute_requests: g.window_requests,
            minute_tokens: g.window_tokens,
            cooling_down: g.cooling_down(now),
            cooldown_remaining: g
                .cooldown_until
                .and_then(|t| t.checked_duration_since(now))
                .filter(|d| !d.is_zero()),
        }
    }
}

impl Inner {
    fn cooling_down(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|t| now < t)
    }

    fn roll_window(&mut self, now: Instant) {
        match self.window_start {
            Some(s) if now.duration_since(s) < MINUTE => {}
            _ => {
                self.window_start = Some(now);
                self.window_requests = 0;
                self.window_tokens = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_after_allowed_fails_and_recovery() {
        let h = Health::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        let c = Duration::from_secs(5);
        assert!(!h.record_failure(t0, 2, w, c));
        assert!(!h.record_failure(t0, 2, w, c));
        assert!(
            h.record_failure(t0, 2, w, c),
            "third failure passes allowed_fails=2"
        );
        assert!(h.cooling_down(t0 + Duration::from_secs(1)));
        assert!(!h.cooling_down(t0 + Duration::from_secs(6)), "recovers");
        let at = |s: u64| h.snapshot(t0 + Duration::from_secs(s)).cooldown_remaining;
        assert_eq!(at(1), Some(Duration::from_secs(4)));
        assert_eq!(at(6), None);
        assert!(h.snapshot(t0).error_rate > 0.5);
        h.record_success(None, Some(Duration::from_millis(100)));
        assert!(h.snapshot(t0).error_rate < 0.5);
    }

    #[test]
    fn old_failures_fall_out_of_the_window() {
        let h = Health::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let c = Duration::from_secs(5);
        assert!(!h.record_failure(t0, 1, w, c));
        assert!(!h.record_failure(t0 + Duration::from_secs(20), 1, w, c));
        assert!(!h.cooling_down(t0 + Duration::from_secs(20)));
    }

    #[test]
    fn ewma_moves_towards_new_latency_and_in_flight_counts() {
        let h = Health::default();
        h.record_success(None, Some(Duration::from_millis(100)));
        for _ in 0..10 {
            h.record_success(
                Some(Duration::from_millis(50)),
                Some(Duration::from_millis(1000)),
            );
        }
        let s = h.snapshot(Instant::now());
        assert!(s.total_ms.is_some_and(|v| v > 900.0), "{s:?}");
        assert!(s.ttft_ms.is_some_and(|v| (v - 50.0).abs() < 1.0));
        let g = h.start();
        assert_eq!(h.snapshot(Instant::now()).in_flight, 1);
        drop(g);
        assert_eq!(h.snapshot(Instant::now()).in_flight, 0);
    }
}
