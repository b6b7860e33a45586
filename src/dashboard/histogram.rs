//! A small mergeable latency histogram: log-spaced buckets (2% relative error), stored sparsely,
//! so one per minute per scope stays a few hundred bytes and minutes add up into hours exactly.
//!
//! Owns only the arithmetic; it knows nothing of time, scopes or storage.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Relative accuracy of a quantile read back (DDSketch's alpha).
const ALPHA: f64 = 0.02;
/// Values at or below this (ms) are counted as zero.
const MIN_MS: f64 = 1e-3;

/// Counts of values (milliseconds) per log-spaced bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogHistogram {
    /// Bucket index -> count; bucket `i` holds values in `(gamma^(i-1), gamma^i]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    buckets: BTreeMap<i32, u64>,
    /// Values at or below [`MIN_MS`] (and anything not finite or negative).
    #[serde(default, skip_serializing_if = "is_zero")]
    zero: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

impl LogHistogram {
    /// Counts one value in milliseconds.
    pub fn record(&mut self, ms: f64) {
        if !ms.is_finite() || ms <= MIN_MS {
            self.zero += 1;
            return;
        }
        let i = (ms.ln() / gamma().ln()).ceil() as i32;
        *self.buckets.entry(i).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &LogHistogram) {
        self.zero += other.zero;
        for (i, n) in &other.buckets {
            *self.buckets.entry(*i).or_default() += n;
        }
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.zero + self.buckets.values().sum::<u64>()
    }

    /// The `q` quantile (0..=1) within [`ALPHA`] relative error; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        // The value of rank floor(q * (n - 1)), counting from 0 (DDSketch's definition).
        let rank = (q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64;
        let mut seen = self.zero;
        if rank < seen {
            return Some(0.0);
        }
        for (i, c) in &self.buckets {
            seen += c;
            if rank < seen {
                let g = gamma();
                // The point of the bucket whose relative distance to both edges is ALPHA.
                return Some(2.0 * g.powi(*i) / (g + 1.0));
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * ALPHA + 1e-9
    }

    #[test]
    fn quantiles_within_relative_error() {
        let mut h = LogHistogram::default();
        for v in 1..=1000 {
            h.record(v as f64);
        }
        assert_eq!(h.count(), 1000);
        assert!(
            close(h.quantile(0.5).unwrap(), 500.0),
            "{:?}",
            h.quantile(0.5)
        );
        assert!(
            close(h.quantile(0.99).unwrap(), 990.0),
            "{:?}",
            h.quantile(0.99)
        );
        assert!(close(h.quantile(0.0).unwrap(), 1.0));
        assert!(close(h.quantile(1.0).unwrap(), 1000.0));
    }

    #[test]
    fn merging_minutes_equals_recording_once() {
        let mut a = LogHistogram::default();
        let mut b = LogHistogram::default();
        let mut all = LogHistogram::default();
        for v in 0..500 {
            let x = 3.0 + f64::from(v) * 0.7;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a, all);
        // A p99 of merged minutes is the p99 of the hour, not an average of p99s.
        assert_eq!(a.quantile(0.99), all.quantile(0.99));
    }

    #[test]
    fn empty_zero_and_odd_values() {
        let mut h = LogHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        h.record(0.0);
        h.record(f64::NAN);
        h.record(-4.0);
        assert_eq!(h.count(), 3);
        assert_eq!(h.quantile(0.5), Some(0.0));
        h.record(100.0);
        assert!(close(h.quantile(1.0).unwrap(), 100.0));
    }

    #[test]
    fn serialises_compactly_and_round_trips() {
        let mut h = LogHistogram::default();
        for _ in 0..1000 {
            h.record(35.0);
        }
        let json = serde_json::to_string(&h).unwrap();
        assert!(json.len() < 40, "{json}");
        assert_eq!(serde_json::from_str::<LogHistogram>(&json).unwrap(), h);
        assert_eq!(
            serde_json::from_str::<LogHistogram>("{}").unwrap(),
            LogHistogram::default()
        );
    }
}
