//! Per-minute rollups of finished requests, per scope (`all`, `key/<id>`, `dep/<id>`), kept in
//! memory and flushed to RocksDB (`Cf::Rollups`) so the dashboard's charts survive a restart; a
//! one-second ring per scope for the live headline numbers; retention pruning.
//!
//! The request path only takes one short mutex and touches small maps (no I/O); the flusher
//! thread does the reads and writes. Owns the `rollups` column family and nothing else.

use super::histogram::LogHistogram;
use crate::store::{Cf, Store, StoreError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Scope of the whole gateway.
pub const ALL: &str = "all";
/// Seconds the live numbers cover.
pub const LIVE_WINDOW_SECS: u64 = 60;

/// Scope of one key's requests.
pub fn key_scope(key_id: &str) -> String {
    format!("key/{key_id}")
}

/// Scope of one deployment's requests.
pub fn deployment_scope(id: &str) -> String {
    format!("dep/{id}")
}

/// How a request met the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// Answered from an exact match.
    HitExact,
    /// Answered from a similar cached request.
    HitSemantic,
    /// Shared an identical in-flight miss.
    HitCoalesced,
    /// Looked up and missed.
    Miss,
    /// Not looked up.
    Bypass,
}

impl CacheKind {
    /// From the `x-sluice-cache` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hit-exact" => Self::HitExact,
            "hit-semantic" => Self::HitSemantic,
            "hit-coalesced" => Self::HitCoalesced,
            "miss" => Self::Miss,
            "bypass" => Self::Bypass,
            _ => return None,
        })
    }

    /// Whether the answer came from the cache.
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            Self::HitExact | Self::HitSemantic | Self::HitCoalesced
        )
    }
}

/// One finished request, as the rollups count it.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// The status was 400 or more.
    pub error: bool,
    /// Cache outcome, when the request got that far.
    pub cache: Option<CacheKind>,
    /// Prompt tokens sent upstream.
    pub tokens_in: u64,
    /// Completion tokens received from upstream.
    pub tokens_out: u64,
    /// USD the upstream call cost.
    pub cost_usd: f64,
    /// USD a cache hit saved.
    pub saved_usd: f64,
    /// Time to the last byte, ms.
    pub latency_ms: f64,
    /// Time to the first streamed byte, ms (streams only).
    pub ttft_ms: Option<f64>,
}

/// Counters and latency histograms of one scope over one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bucket {
    /// Requests finished.
    pub requests: u64,
    /// Of which failed (status >= 400).
    pub errors: u64,
    /// Exact cache hits.
    pub hits_exact: u64,
    /// Semantic cache hits.
    pub hits_semantic: u64,
    /// Coalesced misses.
    pub hits_coalesced: u64,
    /// Cache misses.
    pub misses: u64,
    /// Requests that bypassed the cache.
    pub bypass: u64,
    /// Prompt tokens sent upstream.
    pub tokens_in: u64,
    /// Completion tokens received.
    pub tokens_out: u64,
    /// USD spent upstream.
    pub cost_usd: f64,
    /// USD saved by cache hits.
    pub saved_usd: f64,
    /// Total latency, ms.
    pub latency: LogHistogram,
    /// Time to first token of streams, ms.
    pub ttft: LogHistogram,
}

impl Bucket {
    /// Counts one request.
    pub fn add(&mut self, s: &Sample) {
        self.requests += 1;
        self.errors += u64::from(s.error);
        match s.cache {
            Some(CacheKind::HitExact) => self.hits_exact += 1,
            Some(CacheKind::HitSemantic) => self.hits_semantic += 1,
            Some(CacheKind::HitCoalesced) => self.hits_coalesced += 1,
            Some(CacheKind::Miss) => self.misses += 1,
            Some(CacheKind::Bypass) => self.bypass += 1,
            None => {}
        }
        self.tokens_in += s.tokens_in;
        self.tokens_out += s.tokens_out;
        self.cost_usd += s.cost_usd;
        self.saved_usd += s.saved_usd;
        self.latency.record(s.latency_ms);
        if let Some(t) = s.ttft_ms {
            self.ttft.record(t);
        }
    }

    /// Adds another bucket's counts.
    pub fn merge(&mut self, o: &Bucket) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.hits_exact += o.hits_exact;
        self.hits_semantic += o.hits_semantic;
        self.hits_coalesced += o.hits_coalesced;
        self.misses += o.misses;
        self.bypass += o.bypass;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_usd += o.cost_usd;
        self.saved_usd += o.saved_usd;
        self.latency.merge(&o.latency);
        self.ttft.merge(&o.ttft);
    }

    /// Cache hits of every kind.
    pub fn hits(&self) -> u64 {
        self.hits_exact + self.hits_semantic + self.hits_coalesced
    }

    /// Hits over lookups (hits and misses; bypasses and failures before the cache do not
    /// count); `None` without lookups.
    pub fn hit_rate(&self) -> Option<f64> {
        let lookups = self.hits() + self.misses;
        (lookups > 0).then(|| self.hits() as f64 / lookups as f64)
    }

    /// The fields of the overview API (`series` items without `t`, and `totals`).
    pub fn to_json(&self) -> Map<String, Value> {
        let Value::Object(m) = json!({
            "requests": self.requests,
            "errors": self.errors,
            "hits_exact": self.hits_exact,
            "hits_semantic": self.hits_semantic,
            "hits_coalesced": self.hits_coalesced,
            "misses": self.misses,
            "bypass": self.bypass,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
            "saved_usd": self.saved_usd,
            "p50_ms": self.latency.quantile(0.5),
            "p99_ms": self.latency.quantile(0.99),
            "ttft_p50_ms": self.ttft.quantile(0.5),
        }) else {
            return Map::new();
        };
        m
    }
}

/// The chart ranges of `GET /ui/api/overview`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// One hour in one-minute buckets.
    Hour,
    /// One day in 15-minute buckets.
    Day,
    /// Seven days in one-hour buckets.
    Week,
}

impl Range {
    /// `1h`, `24h` or `7d`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "1h" => Self::Hour,
            "24h" => Self::Day,
            "7d" => Self::Week,
            _ => return None,
        })
    }

    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
        }
    }

    /// Width of one chart bucket.
    pub fn bucket_seconds(self) -> u64 {
        match self {
            Self::Hour => 60,
            Self::Day => 900,
            Self::Week => 3_600,
        }
    }

    /// Number of chart buckets.
    pub fn buckets(self) -> u64 {
        match self {
            Self::Hour => 60,
            Self::Day => 96,
            Self::Week => 168,
        }
    }

    /// Unix seconds of the first bucket's start: buckets are aligned to their width, and the
    /// last one holds `now`.
    pub fn start(self, now_s: u64) -> u64 {
        let w = self.bucket_seconds();
        (now_s / w * w).saturating_sub((self.buckets() - 1) * w)
    }
}

/// Minute-bucketed rollups, pending in memory until flushed, and the live one-second ring.
#[derive(Debug)]
pub struct Rollups {
    store: Arc<Store>,
    inner: Mutex<Inner>,
    /// Held by a flush and by readers, so a reader never sees a bucket between memory and disk.
    flushing: Mutex<()>,
}

#[derive(Debug, Default)]
struct Inner {
    /// (scope, unix minute) -> counts not yet written.
    pending: HashMap<(String, u64), Bucket>,
    /// scope -> (unix second, counts) of the last [`LIVE_WINDOW_SECS`], oldest first.
    live: HashMap<String, VecDeque<(u64, Bucket)>>,
}

fn store_key(scope: &str, minute: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + 9);
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(&minute.to_be_bytes());
    k
}

/// The minute of a stored key, if it is one of ours.
fn minute_of(key: &[u8]) -> Option<u64> {
    let at = key.len().checked_sub(8)?;
    let arr: [u8; 8] = key.get(at..)?.try_into().ok()?;
    (at > 0 && key.get(at - 1) == Some(&0)).then(|| u64::from_be_bytes(arr))
}

fn corrupt(detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        cf: Cf::Rollups.name(),
        detail: detail.into(),
    }
}

impl Rollups {
    /// Rollups over `store` (nothing is read until asked).
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            inner: Mutex::default(),
            flushing: Mutex::new(()),
        }
    }

    /// Counts a request in each of `scopes` (and, for `live_scopes`, in the live ring). Memory
    /// only: cheap enough for the request path.
    pub fn record(&self, scopes: &[String], live_scopes: &[String], s: &Sample, now_ms: u64) {
        let minute = now_ms / 60_000;
        let sec = now_ms / 1_000;
        let mut g = self.inner.lock();
        for scope in scopes {
            g.pending.entry((scope.clone(), minute)).or_default().add(s);
        }
        for scope in live_scopes {
            let ring = g.live.entry(scope.clone()).or_default();
            while ring
                .front()
                .is_some_and(|(t, _)| t + LIVE_WINDOW_SECS <= sec)
            {
                ring.pop_front();
            }
            match ring.back_mut() {
                Some((t, b)) if *t == sec => b.add(s),
                _ => {
                    let mut b = Bucket::default();
                    b.add(s);
                    ring.push_back((sec, b));
                }
            }
        }
    }

    /// The last [`LIVE_WINDOW_SECS`] of a scope, merged.
    pub fn live(&self, scope: &str, now_ms: u64) -> Bucket {
        let sec = now_ms / 1_000;
        let mut out = Bucket::default();
        if let Some(ring) = self.inner.lock().live.get(scope) {
            for (t, b) in ring {
                if t + LIVE_WINDOW_SECS > sec && *t <= sec {
                    out.merge(b);
                }
            }
        }
        out
    }

    /// Minute buckets of a scope with `from <= minute <= to` that saw traffic, stored and
    /// pending together.
    pub fn minutes(
        &self,
        scope: &str,
        from: u64,
        to: u64,
    ) -> Result<BTreeMap<u64, Bucket>, StoreError> {
        let _consistent = self.flushing.lock();
        let mut out: BTreeMap<u64, Bucket> = BTreeMap::new();
        // Keys of this scope are exactly `scope, 0, minute`: stop at the first that is not.
        let mut prefix = scope.as_bytes().to_vec();
        prefix.push(0);
        for item in self.store.iter_from(Cf::Rollups, &store_key(scope, from))? {
            let (key, value) = item?;
            if key.len() != prefix.len() + 8 || !key.starts_with(&prefix) {
                break;
            }
            let Some(minute) = minute_of(&key) else { break };
            if minute > to {
                break;
            }
            let b: Bucket = serde_json::from_slice(&value)
                .map_err(|e| corrupt(format!("minute {minute} of {scope}: {e}")))?;
            out.entry(minute).or_default().merge(&b);
        }
        let g = self.inner.lock();
        for ((s, minute), b) in &g.pending {
            if s == scope && (from..=to).contains(minute) {
                out.entry(*minute).or_default().merge(b);
            }
        }
        Ok(out)
    }

    /// The chart series of a scope over `range` ending at `now_ms`: every bucket present (empty
    /// ones with zeros), plus the total.
    pub fn series(
        &self,
        scope: &str,
        range: Range,
        now_ms: u64,
    ) -> Result<(Vec<(u64, Bucket)>, Bucket), StoreError> {
        let now_s = now_ms / 1_000;
        let start = range.start(now_s);
        let w = range.bucket_seconds();
        let minutes = self.minutes(scope, start / 60, now_s / 60)?;
        let mut series: Vec<(u64, Bucket)> = (0..range.buckets())
            .map(|i| (start + i * w, Bucket::default()))
            .collect();
        let mut total = Bucket::default();
        for (minute, b) in &minutes {
            let i = ((minute * 60).saturating_sub(start) / w) as usize;
            if let Some((_, slot)) = series.get_mut(i) {
                slot.merge(b);
            }
            total.merge(b);
        }
        Ok((series, total))
    }

    /// Writes pending buckets to the store, merged into what is stored for the same minute.
    /// On failure the unwritten buckets stay pending. Also forgets idle live rings.
    pub fn flush(&self, now_ms: u64) -> Result<usize, StoreError> {
        let _consistent = self.flushing.lock();
        let pending = {
            let mut g = self.inner.lock();
            let sec = now_ms / 1_000;
            g.live
                .retain(|_, ring| ring.back().is_some_and(|(t, _)| t + LIVE_WINDOW_SECS > sec));
            std::mem::take(&mut g.pending)
        };
        let mut written = 0;
        let mut left = pending.into_iter();
        let result = (|| {
            for ((scope, minute), b) in left.by_ref() {
                let key = store_key(&scope, minute);
                let mut merged = match self.store.get(Cf::Rollups, &key)? {
                    // An unreadable old value is replaced rather than blocking every flush.
                    Some(old) => serde_json::from_slice::<Bucket>(&old).unwrap_or_else(|e| {
                        tracing::warn!(error = %e, %scope, minute, "unreadable rollup replaced");
                        Bucket::default()
                    }),
                    None => Bucket::default(),
                };
                merged.merge(&b);
                let value = serde_json::to_vec(&merged).map_err(|e| corrupt(e.to_string()))?;
                if let Err(e) = self.store.put(Cf::Rollups, &key, &value) {
                    self.inner
                        .lock()
                        .pending
                        .entry((scope, minute))
                        .or_default()
                        .merge(&b);
                    return Err(e);
                }
                written += 1;
            }
            Ok(())
        })();
        if result.is_err() {
            let mut g = self.inner.lock();
            for (k, b) in left {
                g.pending.entry(k).or_default().merge(&b);
            }
        }
        result.map(|()| written)
    }

    /// Deletes stored minutes older than `days` before `now_ms`; returns how many.
    pub fn prune(&self, days: u32, now_ms: u64) -> Result<usize, StoreError> {
        let cutoff = (now_ms / 60_000).saturating_sub(u64::from(days) * 24 * 60);
        let mut old = Vec::new();
        for item in self.store.iter_from(Cf::Rollups, &[])? {
            let (key, _) = item?;
            if minute_of(&key).is_none_or(|m| m < cutoff) {
                old.push(key);
            }
        }
        for key in &old {
            self.store.delete(Cf::Rollups, key)?;
        }
        Ok(old.len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000; // a minute boundary, in ms

    fn sample(latency_ms: f64, cache: Option<CacheKind>) -> Sample {
        Sample {
            cache,
            latency_ms,
            tokens_in: 3,
            tokens_out: 2,
            cost_usd: 0.5,
            ..Sample::default()
        }
    }

    fn open() -> (tempfile::TempDir, Arc<Store>, Rollups) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let r = Rollups::new(Arc::clone(&store));
        (dir, store, r)
    }

    #[test]
    fn ranges_align_and_cover_now() {
        let now = 1_800_000_123;
        for r in [Range::Hour, Range::Day, Range::Week] {
            let start = r.start(now);
            assert_eq!(start % r.bucket_seconds(), 0);
            let end = start + r.buckets() * r.bucket_seconds();
            assert!(start <= now && now < end, "{r:?}");
        }
        assert_eq!(Range::parse("24h"), Some(Range::Day));
        assert_eq!(Range::parse("2h"), None);
    }

    #[test]
    fn counts_split_by_scope_and_survive_a_flush() {
        let (_d, store, r) = open();
        let all = vec![ALL.to_string(), key_scope("k1")];
        r.record(&all, &[], &sample(10.0, Some(CacheKind::Miss)), T0);
        r.record(
            &all,
            &[],
            &sample(20.0, Some(CacheKind::HitExact)),
            T0 + 1_000,
        );
        r.record(&[ALL.to_string()], &[], &sample(30.0, None), T0 + 61_000);
        let before = r.minutes(ALL, 0, u64::MAX).unwrap();
        assert_eq!(r.flush(T0).unwrap(), 3);
        // Read back by a fresh instance over the same store: what a restart sees.
        let again = Rollups::new(Arc::clone(&store));
        let after = again.minutes(ALL, 0, u64::MAX).unwrap();
        assert_eq!(before, after);
        assert_eq!(after.len(), 2);
        let first = &after[&(T0 / 60_000)];
        assert_eq!((first.requests, first.misses, first.hits_exact), (2, 1, 1));
        let k1 = again.minutes(&key_scope("k1"), 0, u64::MAX).unwrap();
        assert_eq!(k1.values().map(|b| b.requests).sum::<u64>(), 2);
        assert!(again
            .minutes(&key_scope("k"), 0, u64::MAX)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_minute_flushed_twice_adds_up() {
        let (_d, _s, r) = open();
        let all = vec![ALL.to_string()];
        r.record(&all, &[], &sample(10.0, None), T0);
        r.flush(T0).unwrap();
        r.record(&all, &[], &sample(1000.0, None), T0 + 5_000);
        r.flush(T0).unwrap();
        let m = r.minutes(ALL, 0, u64::MAX).unwrap();
        let b = &m[&(T0 / 60_000)];
        assert_eq!(b.requests, 2);
        assert!(b.latency.quantile(1.0).unwrap() > 900.0);
    }

    #[test]
    fn series_has_every_bucket_and_percentiles_of_the_merged_minutes() {
        let (_d, _s, r) = open();
        let all = vec![ALL.to_string()];
        // 15 minutes of a day bucket: 99 fast requests in one minute, one slow in another.
        let day_start = Range::Day.start(T0 / 1_000) * 1_000 + 95 * 900_000;
        for i in 0..99 {
            r.record(&all, &[], &sample(10.0, None), day_start + i);
        }
        r.flush(day_start).unwrap();
        r.record(&all, &[], &sample(5_000.0, None), day_start + 120_000);
        let now = day_start + 300_000;
        let (series, total) = r.series(ALL, Range::Day, now).unwrap();
        assert_eq!(series.len(), 96);
        let (t, last) = series.last().unwrap();
        assert_eq!(*t * 1_000, day_start);
        assert_eq!(last.requests, 100);
        assert!(last.latency.quantile(0.5).unwrap() < 11.0);
        assert!(last.latency.quantile(1.0).unwrap() > 4_000.0);
        assert_eq!(total.requests, 100);
        assert!(series[..95].iter().all(|(_, b)| b.requests == 0));
        let json = series[0].1.to_json();
        assert_eq!(json["p50_ms"], Value::Null);
        assert_eq!(json["requests"], 0);
    }

    #[test]
    fn live_window_forgets_old_seconds() {
        let (_d, _s, r) = open();
        let live = vec![ALL.to_string()];
        r.record(&[], &live, &sample(1.0, Some(CacheKind::Miss)), T0);
        r.record(
            &[],
            &live,
            &sample(1.0, Some(CacheKind::HitSemantic)),
            T0 + 30_000,
        );
        assert_eq!(r.live(ALL, T0 + 30_000).requests, 2);
        assert_eq!(r.live(ALL, T0 + 30_000).hit_rate(), Some(0.5));
        assert_eq!(r.live(ALL, T0 + 61_000).requests, 1);
        assert_eq!(r.live(ALL, T0 + 200_000).requests, 0);
        assert_eq!(r.live("key/none", T0).requests, 0);
    }

    #[test]
    fn prune_drops_old_minutes_only() {
        let (_d, _s, r) = open();
        let all = vec![ALL.to_string(), key_scope("k")];
        let day_ms = 86_400_000;
        r.record(&all, &[], &sample(1.0, None), T0);
        r.record(&all, &[], &sample(1.0, None), T0 + 5 * day_ms);
        r.flush(T0).unwrap();
        assert_eq!(r.prune(3, T0 + 5 * day_ms).unwrap(), 2);
        let left = r.minutes(ALL, 0, u64::MAX).unwrap();
        assert_eq!(
            left.keys().copied().collect::<Vec<_>>(),
            [(T0 + 5 * day_ms) / 60_000]
        );
    }
}
