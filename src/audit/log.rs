//! [`AuditLog`]: the chain head, appends, query, verify, prune and export.

use super::chain::{self, Mark, Unsealed};
use super::{
    redact_secrets, AdminRecord, AuditError, AuditKind, AuditOptions, AuditPage, AuditQuery,
    AuditRecord, Break, BreakReason, RequestRecord, VerifyReport, MAX_LIMIT,
};
use crate::clock::system_now_ms;
use crate::store::{Cf, Store};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use std::io::Write;
use std::sync::Arc;

/// Key in [`Cf::Meta`] of the anchor: seq and hash of the last pruned record.
const META_ANCHOR: &[u8] = b"audit_anchor";
/// Key in [`Cf::Meta`] of the head as of the last append: finds the head at open without a full
/// scan, and lets verify notice records cut from the end of the chain.
const META_HEAD: &[u8] = b"audit_head";
/// Records one query may read before it returns a (possibly short) page with a cursor, so that a
/// filter matching nothing cannot make one request scan the whole log.
const SCAN_BUDGET: usize = 50_000;
/// Milliseconds per day, for retention.
const DAY_MS: u64 = 86_400_000;

/// Source of "now" in Unix milliseconds (injectable for tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The audit log: appends hash-chained records to [`Cf::Audit`]. Cheap to share in an `Arc`.
pub struct AuditLog {
    store: Arc<Store>,
    options: AuditOptions,
    /// The last record written: appends take this lock, so seqs are contiguous and each record
    /// links to the one written just before it.
    head: Mutex<Mark>,
    /// Held by prune and verify so that verify never sees a half-done prune.
    maintenance: Mutex<()>,
    clock: Clock,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("head", &*self.head.lock())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn decode_seq(key: &[u8]) -> Result<u64, AuditError> {
    let arr: [u8; 8] = key.try_into().map_err(|_| AuditError::Corrupt {
        at: "audit key".into(),
        detail: format!("expected 8 bytes, found {}", key.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn corrupt(seq: u64, detail: String) -> AuditError {
    AuditError::Corrupt {
        at: format!("seq {seq}"),
        detail,
    }
}

fn read_mark(store: &Store, key: &[u8]) -> Result<Option<Mark>, AuditError> {
    match store.get(Cf::Meta, key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditError::Corrupt {
                at: String::from_utf8_lossy(key).into_owned(),
                detail: e.to_string(),
            }),
    }
}

/// The head after the last stored record: starts from the newest of the anchor and the head
/// hint and scans forward, which also picks up a record written just before a crash that came
/// before its hint.
fn recover_head(store: &Store) -> Result<Mark, AuditError> {
    let mut head = [read_mark(store, META_ANCHOR)?, read_mark(store, META_HEAD)?]
        .into_iter()
        .flatten()
        .max_by_key(|m| m.seq)
        .unwrap_or_else(Mark::genesis);
    let mut last = None;
    for item in store.iter_from(Cf::Audit, &head.seq.to_be_bytes())? {
        last = Some(item?);
    }
    if let Some((key, value)) = last {
        let seq = decode_seq(&key)?;
        let hash = chain::stored_hash(&value)
            .ok_or_else(|| corrupt(seq, "no hash at the end of the record".into()))?;
        let time_ms = chain::open(&value).map_or(head.time_ms, |r| r.time_ms);
        head = Mark {
            seq,
            hash: hash.to_string(),
            time_ms,
        };
    }
    Ok(head)
}

/// Zero for numbers JSON cannot hold (NaN, infinities): serde_json would write them as `null`,
/// which would not parse back into the record.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

impl AuditLog {
    /// Opens the log with default options (bodies dropped, no retention) and recovers the head.
    pub fn open(store: Arc<Store>) -> Result<Self, AuditError> {
        Self::open_with(store, AuditOptions::default())
    }

    /// Opens the log with `options` and recovers the head (last seq and hash).
    pub fn open_with(store: Arc<Store>, options: AuditOptions) -> Result<Self, AuditError> {
        Self::open_with_clock(store, options, Arc::new(system_now_ms))
    }

    /// Opens the log with a custom clock (tests).
    pub fn open_with_clock(
        store: Arc<Store>,
        options: AuditOptions,
        clock: Clock,
    ) -> Result<Self, AuditError> {
        let head = recover_head(&store)?;
        Ok(AuditLog {
            store,
            options,
            head: Mutex::new(head),
            maintenance: Mutex::new(()),
            clock,
        })
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &AuditOptions {
        &self.options
    }

    /// Seq and hex hash of the last record (0 and 64 zeros when empty).
    pub fn head(&self) -> (u64, String) {
        let h = self.head.lock();
        (h.seq, h.hash.clone())
    }

    /// Appends a request record; drops its body unless `log_bodies`; returns its seq.
    pub fn append_request(&self, mut record: RequestRecord) -> Result<u64, AuditError> {
        if !self.options.log_bodies {
            record.body = None;
        }
        // The caller masks PII; secrets (an `api_key` sent in a body) are this module's job.
        if let Some(body) = record.body.as_mut() {
            redact_secrets(body);
        }
        record.cost_usd = finite(record.cost_usd);
        record.latency_ms = finite(record.latency_ms);
        let payload = serde_json::value::to_raw_value(&record)?;
        self.append(AuditKind::Request, Some(&*payload), None)
    }

    /// Appends an admin record with secrets redacted from before/after; returns its seq.
    pub fn append_admin(&self, mut record: AdminRecord) -> Result<u64, AuditError> {
        for value in [record.before.as_mut(), record.after.as_mut()]
            .into_iter()
            .flatten()
        {
            redact_secrets(value);
        }
        let payload = serde_json::value::to_raw_value(&record)?;
        self.append(AuditKind::Admin, None, Some(&*payload))
    }

    /// Appends an admin record, best effort: the action has already taken effect, so a failed
    /// append is logged rather than turned into an error for the admin call.
    pub fn record_admin(&self, record: AdminRecord) {
        let action = record.action.clone();
        if let Err(e) = self.append_admin(record) {
            tracing::warn!(error = %e, %action, "audit append failed");
        }
    }

    /// Seals and writes one record under the head lock (payloads are serialised before it).
    fn append(
        &self,
        kind: AuditKind,
        request: Option<&RawValue>,
        admin: Option<&RawValue>,
    ) -> Result<u64, AuditError> {
        let mut head = self.head.lock();
        let seq = head.seq.checked_add(1).ok_or(AuditError::Exhausted)?;
        // Never earlier than the previous record, even if the wall clock steps back: queries
        // rely on time not decreasing along the chain to stop early.
        let time_ms = (self.clock)().max(head.time_ms);
        let (bytes, hash) = chain::seal(&Unsealed {
            seq,
            time_ms,
            kind,
            request,
            admin,
            prev_hash: &head.hash,
        })?;
        let mark = Mark { seq, hash, time_ms };
        // The record and the head hint go in one batch: one WAL write per request, not two,
        // and the hint can never lag its record.
        let hint = serde_json::to_vec(&mark)?;
        self.store.put_all(&[
            (Cf::Audit, &seq.to_be_bytes(), &bytes),
            (Cf::Meta, META_HEAD, &hint),
        ])?;
        *head = mark;
        Ok(seq)
    }

    fn anchor(&self) -> Result<Mark, AuditError> {
        Ok(read_mark(&self.store, META_ANCHOR)?.unwrap_or_else(Mark::genesis))
    }

    /// The first seq `>= start` whose time is `>= from_ms`, by binary search over the contiguous
    /// seqs; `start` when a seq is missing or unreadable (the scan then filters instead).
    fn first_seq_from(&self, from_ms: u64, start: u64) -> Result<u64, AuditError> {
        let head = self.head.lock().seq;
        let (mut lo, mut hi) = (start, head.saturating_add(1).max(start));
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(value) = self.store.get(Cf::Audit, &mid.to_be_bytes())? else {
                return Ok(start);
            };
            let Ok(rec) = chain::open(&value) else {
                return Ok(start);
            };
            if rec.time_ms < from_ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// One page of records matching `q`, in seq order.
    pub fn query(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let limit = q.limit.clamp(1, MAX_LIMIT);
        let mut start = q
            .cursor
            .map_or(0, |c| c.saturating_add(1))
            .max(self.anchor()?.seq.saturating_add(1));
        if let Some(from) = q.from_ms {
            start = self.first_seq_from(from, start)?;
        }
        let mut records = Vec::new();
        let mut last_seen = None;
        let mut more = false;
        for (scanned, item) in self
            .store
            .iter_from(Cf::Audit, &start.to_be_bytes())?
            .enumerate()
        {
            let (key, value) = item?;
            let seq = decode_seq(&key)?;
            let rec = chain::open(&value).map_err(|e| corrupt(seq, e))?;
            // Time never decreases along the chain: nothing after this can match.
            if q.to_ms.is_some_and(|to| rec.time_ms > to) {
                break;
            }
            if records.len() == limit || scanned == SCAN_BUDGET {
                more = true;
                break;
            }
            last_seen = Some(seq);
            if q.from_ms.is_some_and(|from| rec.time_ms < from)
                || q.kind.is_some_and(|k| k != rec.kind)
                || q.key.as_deref().is_some_and(|k| !mentions_key(&rec, k))
            {
                continue;
            }
            records.push(rec);
        }
        Ok(AuditPage {
            records,
            next_cursor: if more {
                last_seen.map(|s| s.to_string())
            } else {
                None
            },
        })
    }

    /// Walks the chain from the anchor and reports the first changed, removed or reordered
    /// record.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        let _maintenance = self.maintenance.lock();
        let anchor = self.anchor()?;
        let hint = read_mark(&self.store, META_HEAD)?.filter(|h| h.seq > anchor.seq);
        let mut expected = anchor.seq.saturating_add(1);
        let mut prev = anchor.hash.clone();
        let mut checked = 0u64;
        let mut hint_seen = None;
        let broken = 'walk: {
            for item in self.store.iter_from(Cf::Audit, &expected.to_be_bytes())? {
                let (key, value) = item?;
                let seq = decode_seq(&key)?;
                if let Some(b) = check_link(seq, expected, &value, &prev) {
                    break 'walk Some(b);
                }
                prev = chain::stored_hash(&value).unwrap_or_default().to_string();
                if hint.as_ref().is_some_and(|h| h.seq == seq) {
                    hint_seen = Some(prev.clone());
                }
                expected = seq.saturating_add(1);
                checked += 1;
            }
            match &hint {
                Some(h) if h.seq >= expected => Some(Break {
                    seq: expected,
                    reason: BreakReason::Removed,
                    detail: format!(
                        "the chain ends at seq {} but seq {} was written: records were cut from \
                         the end",
                        expected - 1,
                        h.seq
                    ),
                }),
                Some(h) if hint_seen.as_deref() != Some(h.hash.as_str()) => Some(Break {
                    seq: h.seq,
                    reason: BreakReason::Changed,
                    detail: format!(
                        "seq {} does not have the hash it had when it was written: the chain \
                         was rewritten",
                        h.seq
                    ),
                }),
                _ => None,
            }
        };
        let last = (expected - 1 > anchor.seq).then_some((expected - 1, prev));
        Ok(VerifyReport {
            intact: broken.is_none(),
            checked,
            anchor_seq: anchor.seq,
            last_seq: last.as_ref().map(|l| l.0),
            last_hash: last.map(|l| l.1),
            broken,
        })
    }

    /// Deletes records older than `retention_days` before `now_ms`, first storing the last one's
    /// seq and hash as the anchor verify starts from. Refuses (and deletes nothing) when the part
    /// to delete does not verify, so that retention cannot launder a tampered record.
    pub fn prune(&self, retention_days: u32, now_ms: u64) -> Result<usize, AuditError> {
        let _maintenance = self.maintenance.lock();
        let cutoff = now_ms.saturating_sub(u64::from(retention_days).saturating_mul(DAY_MS));
        let anchor = self.anchor()?;
        let mut expected = anchor.seq.saturating_add(1);
        let mut prev = anchor.hash.clone();
        let mut doomed = Vec::new();
        let mut new_anchor = None;
        for item in self.store.iter_from(Cf::Audit, &0u64.to_be_bytes())? {
            let (key, value) = item?;
            let seq = decode_seq(&key)?;
            if seq <= anchor.seq {
                // Left over from a prune interrupted after it wrote its anchor.
                doomed.push(seq);
                continue;
            }
            let rec = chain::open(&value).map_err(|e| corrupt(seq, e))?;
            if rec.time_ms >= cutoff {
                break;
            }
            if let Some(b) = check_link(seq, expected, &value, &prev) {
                return Err(AuditError::ChainBroken(b));
            }
            prev = rec.hash.clone();
            expected = seq.saturating_add(1);
            doomed.push(seq);
            new_anchor = Some(Mark {
                seq,
                hash: rec.hash,
                time_ms: rec.time_ms,
            });
        }
        // Anchor first: a crash between the two steps leaves extra old records (deleted by the
        // next prune), never a gap that verify would report as tampering.
        if let Some(a) = &new_anchor {
            self.store
                .put(Cf::Meta, META_ANCHOR, &serde_json::to_vec(a)?)?;
        }
        for seq in &doomed {
            self.store.delete(Cf::Audit, &seq.to_be_bytes())?;
        }
        Ok(doomed.len())
    }

    /// Writes the records with time in `from_ms..=to_ms` as JSON lines, exactly as stored (so
    /// the export can be re-verified); returns how many. An unreadable record is written as
    /// `{"seq":N,"corrupt":true,"raw":"..."}` rather than dropped.
    pub fn export(
        &self,
        w: &mut dyn Write,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Result<usize, AuditError> {
        let mut start = self.anchor()?.seq.saturating_add(1);
        if let Some(from) = from_ms {
            start = self.first_seq_from(from, start)?;
        }
        let mut n = 0;
        for item in self.store.iter_from(Cf::Audit, &start.to_be_bytes())? {
            let (key, value) = item?;
            let seq = decode_seq(&key)?;
            match chain::open(&value) {
                Ok(rec) => {
                    if to_ms.is_some_and(|to| rec.time_ms > to) {
                        break;
                    }
                    if from_ms.is_some_and(|from| rec.time_ms < from) {
                        continue;
                    }
                    w.write_all(&value)?;
                }
                Err(_) => {
                    let line = serde_json::json!({
                        "seq": seq,
                        "corrupt": true,
                        "raw": String::from_utf8_lossy(&value),
                    });
                    serde_json::to_writer(&mut *w, &line)?;
                }
            }
            w.write_all(b"\n")?;
            n += 1;
        }
        w.flush()?;
        Ok(n)
    }
}

/// Checks one stored record against the chain: stored at `expected`, claims its own seq, hashes
/// to its hash, links to `prev`.
fn check_link(seq: u64, expected: u64, value: &[u8], prev: &str) -> Option<Break> {
    let brk = |seq, reason, detail: String| {
        Some(Break {
            seq,
            reason,
            detail,
        })
    };
    if seq != expected {
        return brk(
            expected,
            BreakReason::Removed,
            format!("seq {expected} is missing (the next stored record is seq {seq})"),
        );
    }
    let rec = match chain::open(value) {
        Ok(r) => r,
        Err(e) => {
            return brk(
                seq,
                BreakReason::Changed,
                format!("the record does not parse: {e}"),
            )
        }
    };
    if rec.seq != seq {
        return brk(
            seq,
            BreakReason::Reordered,
            format!("the record stored at seq {seq} says it is seq {}", rec.seq),
        );
    }
    if !chain::hash_matches(value, &rec.prev_hash) {
        return brk(
            seq,
            BreakReason::Changed,
            "the record's content does not match its hash".into(),
        );
    }
    if rec.prev_hash != prev {
        return brk(
            seq,
            BreakReason::Reordered,
            format!(
                "prev_hash is not the hash of seq {}: a record before it was reordered, \
                 removed or rewritten",
                seq - 1
            ),
        );
    }
    None
}

/// Whether a record is by or about `key`: a request's key id, an admin action's actor or target.
fn mentions_key(rec: &AuditRecord, key: &str) -> bool {
    rec.request.as_ref().is_some_and(|r| r.key_id == key)
        || rec
            .admin
            .as_ref()
            .is_some_and(|a| a.actor == key || a.target.as_deref() == Some(key))
}
