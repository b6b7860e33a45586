#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::store::{Cf, Store};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const DAY: u64 = 86_400_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    now: Arc<AtomicU64>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        Fixture {
            _dir: dir,
            store,
            now: Arc::new(AtomicU64::new(1_000 * DAY)),
        }
    }

    fn log_with(&self, options: AuditOptions) -> AuditLog {
        let now = Arc::clone(&self.now);
        AuditLog::open_with_clock(
            Arc::clone(&self.store),
            options,
            Arc::new(move || now.load(Ordering::Relaxed)),
        )
        .unwrap()
    }

    fn log(&self) -> AuditLog {
        self.log_with(AuditOptions::default())
    }

    fn raw(&self, seq: u64) -> Vec<u8> {
        self.store
            .get(Cf::Audit, &seq.to_be_bytes())
            .unwrap()
            .unwrap()
    }

    fn put_raw(&self, seq: u64, value: &[u8]) {
        self.store
            .put(Cf::Audit, &seq.to_be_bytes(), value)
            .unwrap();
    }
}

fn request(key: &str, n: u64) -> RequestRecord {
    RequestRecord {
        request_id: format!("req-{n}"),
        key_id: key.into(),
        key_alias: Some("alias".into()),
        user: Some("u1".into()),
        endpoint: "/v1/chat/completions".into(),
        model_group: Some("gpt".into()),
        deployment: Some("gpt-a".into()),
        cache_outcome: Some("miss".into()),
        status: 200,
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_usd: 0.1 + n as f64 * 0.001,
        latency_ms: 12.5,
        pii_kinds: vec!["email".into()],
        body: None,
    }
}

fn admin(action: &str, target: &str) -> AdminRecord {
    AdminRecord {
        actor: "master".into(),
        action: action.into(),
        target: Some(target.into()),
        before: None,
        after: Some(json!({"alias": "a"})),
    }
}

/// Appends `n` request records for key_a.
fn fill(log: &AuditLog, n: u64) {
    for i in 1..=n {
        assert_eq!(log.append_request(request("key_a", i)).unwrap(), i);
    }
}

fn broken(log: &AuditLog) -> Break {
    let report = log.verify().unwrap();
    assert!(!report.intact, "{report:?}");
    report.broken.unwrap()
}

#[test]
fn appends_verify_and_survive_reopen() {
    let f = Fixture::new();
    let log = f.log();
    assert_eq!(log.head(), (0, chain::GENESIS_HASH.to_string()));
    fill(&log, 3);
    assert_eq!(log.append_admin(admin("key.create", "key_b")).unwrap(), 4);
    let report = log.verify().unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!((report.checked, report.last_seq), (4, Some(4)));
    assert_eq!(report.last_hash.as_deref(), Some(log.head().1.as_str()));

    let rec: AuditRecord = serde_json::from_slice(&f.raw(2)).unwrap();
    assert_eq!(rec.kind, AuditKind::Request);
    assert_eq!(rec.request.as_ref().unwrap().request_id, "req-2");
    let first: AuditRecord = serde_json::from_slice(&f.raw(1)).unwrap();
    assert_eq!(first.prev_hash, chain::GENESIS_HASH);
    assert_eq!(rec.prev_hash, first.hash);

    // A new instance on the same store continues the chain where the last one stopped.
    let head = log.head();
    drop(log);
    let log = f.log();
    assert_eq!(log.head(), head);
    assert_eq!(log.append_admin(admin("key.rotate", "key_b")).unwrap(), 5);
    assert!(log.verify().unwrap().intact);
}

#[test]
fn head_is_recovered_without_the_hint() {
    let f = Fixture::new();
    fill(&f.log(), 3);
    // As if the process died between writing a record and its hint.
    f.store.delete(Cf::Meta, b"audit_head").unwrap();
    let log = f.log();
    assert_eq!(log.head().0, 3);
    assert_eq!(log.append_request(request("key_a", 4)).unwrap(), 4);
    assert!(log.verify().unwrap().intact);
}

#[test]
fn a_changed_record_is_detected_at_its_seq() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 5);
    let text = String::from_utf8(f.raw(3)).unwrap();
    let edited = text.replace("\"status\":200", "\"status\":500");
    assert_ne!(text, edited);
    f.put_raw(3, edited.as_bytes());
    let b = broken(&log);
    assert_eq!((b.seq, b.reason), (3, BreakReason::Changed), "{b:?}");
}

#[test]
fn a_rewritten_record_with_a_fresh_hash_breaks_the_next_link() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 5);
    // Re-seal seq 3 with different content and a valid hash of its own: seq 4 no longer links.
    let rec: AuditRecord = serde_json::from_slice(&f.raw(3)).unwrap();
    let mut req = rec.request.unwrap();
    req.cost_usd = 0.0;
    let payload = serde_json::value::to_raw_value(&req).unwrap();
    let (bytes, _) = chain::seal(&chain::Unsealed {
        seq: 3,
        time_ms: rec.time_ms,
        kind: rec.kind,
        request: Some(&*payload),
        admin: None,
        prev_hash: &rec.prev_hash,
    })
    .unwrap();
    f.put_raw(3, &bytes);
    let b = broken(&log);
    assert_eq!((b.seq, b.reason), (4, BreakReason::Reordered), "{b:?}");
}

#[test]
fn a_removed_record_is_detected_at_its_seq() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 5);
    f.store.delete(Cf::Audit, &3u64.to_be_bytes()).unwrap();
    let b = broken(&log);
    assert_eq!((b.seq, b.reason), (3, BreakReason::Removed), "{b:?}");
}

#[test]
fn records_cut_from_the_end_are_detected() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 5);
    f.store.delete(Cf::Audit, &5u64.to_be_bytes()).unwrap();
    f.store.delete(Cf::Audit, &4u64.to_be_bytes()).unwrap();
    let b = broken(&log);
    assert_eq!((b.seq, b.reason), (4, BreakReason::Removed), "{b:?}");
    // Also after a restart, and the gap stays visible once new records follow.
    drop(log);
    let log = f.log();
    assert_eq!(log.append_request(request("key_a", 6)).unwrap(), 6);
    let b = broken(&log);
    assert_eq!((b.seq, b.reason), (4, BreakReason::Removed), "{b:?}");
}

#[test]
fn swapped_records_are_detected_at_the_first_one() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 5);
    let (three, four) = (f.raw(3), f.raw(4));
    f.put_raw(3, &four);
    f.put_raw(4, &three);
    let b = broken(&log);
    assert_eq!((b.seq, b.reason), (3, BreakReason::Reordered), "{b:?}");
}

#[test]
fn prune_keeps_verify_passing() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 4); // day 1000
    f.now.store(1_010 * DAY, Ordering::Relaxed);
    fill_from(&log, 5, 7); // day 1010
                           // 7 days of retention on day 1012: the four day-1000 records go.
    assert_eq!(log.prune(7, 1_012 * DAY).unwrap(), 4);
    for seq in 1..=4u64 {
        assert!(f
            .store
            .get(Cf::Audit, &seq.to_be_bytes())
            .unwrap()
            .is_none());
    }
    let report = log.verify().unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!((report.anchor_seq, report.checked), (4, 3));
    // Nothing more to prune; appends and a reopen keep the chain valid.
    assert_eq!(log.prune(7, 1_012 * DAY).unwrap(), 0);
    assert_eq!(log.append_admin(admin("audit.prune", "x")).unwrap(), 8);
    drop(log);
    let log = f.log();
    assert!(log.verify().unwrap().intact);
    assert_eq!(log.query(&AuditQuery::default()).unwrap().records[0].seq, 5);

    // Pruning everything leaves an empty, valid log that continues from the anchor.
    assert_eq!(log.prune(0, 2_000 * DAY).unwrap(), 4);
    let report = log.verify().unwrap();
    assert!(report.intact && report.anchor_seq == 8, "{report:?}");
    drop(log);
    let log = f.log();
    assert_eq!(log.append_request(request("key_a", 9)).unwrap(), 9);
    assert!(log.verify().unwrap().intact);
    // A removal right after the anchor is still caught.
    assert_eq!(log.append_request(request("key_a", 10)).unwrap(), 10);
    f.store.delete(Cf::Audit, &9u64.to_be_bytes()).unwrap();
    assert_eq!(broken(&log).seq, 9);
}

fn fill_from(log: &AuditLog, first: u64, last: u64) {
    for i in first..=last {
        assert_eq!(log.append_request(request("key_a", i)).unwrap(), i);
    }
}

#[test]
fn prune_refuses_to_delete_a_tampered_record() {
    let f = Fixture::new();
    let log = f.log();
    fill(&log, 3);
    let text = String::from_utf8(f.raw(2)).unwrap();
    f.put_raw(2, text.replace("req-2", "req-X").as_bytes());
    let err = log.prune(0, 2_000 * DAY).unwrap_err();
    assert!(
        matches!(&err, AuditError::ChainBroken(b) if b.seq == 2),
        "{err}"
    );
    assert!(f
        .store
        .get(Cf::Audit, &1u64.to_be_bytes())
        .unwrap()
        .is_some());
}

#[test]
fn query_filters_and_paginates() {
    let f = Fixture::new();
    let log = f.log();
    // seq 1..=10: requests, keys alternating a/b, one ms apart; 11: admin on key_a.
    for i in 1..=10u64 {
        f.now.store(1_000 * DAY + i, Ordering::Relaxed);
        let key = if i % 2 == 1 { "key_a" } else { "key_b" };
        log.append_request(request(key, i)).unwrap();
    }
    f.now.store(1_000 * DAY + 11, Ordering::Relaxed);
    log.append_admin(admin("key.revoke", "key_a")).unwrap();

    let seqs = |page: &AuditPage| page.records.iter().map(|r| r.seq).collect::<Vec<_>>();
    let mut q = AuditQuery {
        limit: 4,
        ..AuditQuery::default()
    };
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let page = log.query(&q).unwrap();
        all.extend(seqs(&page));
        pages += 1;
        match page.next_cursor {
            Some(c) => q.cursor = Some(c.parse().unwrap()),
            None => break,
        }
    }
    assert_eq!(all, (1..=11).collect::<Vec<_>>());
    assert_eq!(pages, 3);

    let page = log
        .query(&AuditQuery {
            key: Some("key_a".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(seqs(&page), vec![1, 3, 5, 7, 9, 11], "admin target counts");
    let page = log
        .query(&AuditQuery {
            kind: Some(AuditKind::Admin),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(seqs(&page), vec![11]);
    assert_eq!(page.records[0].admin.as_ref().unwrap().action, "key.revoke");
    let window = AuditQuery {
        from_ms: Some(1_000 * DAY + 3),
        to_ms: Some(1_000 * DAY + 6),
        ..AuditQuery::default()
    };
    let page = log.query(&window).unwrap();
    assert_eq!(seqs(&page), vec![3, 4, 5, 6]);
    assert_eq!(page.next_cursor, None);
    let page = log
        .query(&AuditQuery {
            key: Some("key_b".into()),
            limit: 2,
            ..window.clone()
        })
        .unwrap();
    assert_eq!(seqs(&page), vec![4, 6]);
    let page = log
        .query(&AuditQuery {
            from_ms: Some(1_000 * DAY + 100),
            ..AuditQuery::default()
        })
        .unwrap();
    assert!(page.records.is_empty() && page.next_cursor.is_none());
    // The limit is clamped, not trusted.
    let page = log
        .query(&AuditQuery {
            limit: 0,
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(seqs(&page), vec![1]);
}

#[test]
fn secrets_never_reach_the_store() {
    let f = Fixture::new();
    let log = f.log();
    let mut rec = admin("key.rotate", "key_a");
    rec.before = Some(json!({"id": "key_a", "Key": "sk-sluice-old", "nested": [
        {"API_KEY": "sk-up", "password": "hunter2", "note": "fine"}
    ], "token": null}));
    rec.after = Some(json!({"id": "key_a", "secret": "s3", "master_key": "mk", "token": 5}));
    log.append_admin(rec).unwrap();
    let raw = String::from_utf8(f.raw(1)).unwrap();
    for secret in ["sk-sluice-old", "sk-up", "hunter2", "\"s3\"", "\"mk\""] {
        assert!(!raw.contains(secret), "{secret} in {raw}");
    }
    let stored = log.query(&AuditQuery::default()).unwrap().records.remove(0);
    let a = stored.admin.unwrap();
    let (before, after) = (a.before.unwrap(), a.after.unwrap());
    assert_eq!(before["Key"], REDACTED);
    assert_eq!(before["nested"][0]["API_KEY"], REDACTED);
    assert_eq!(before["nested"][0]["note"], "fine");
    assert_eq!(before["token"], Value::Null);
    assert_eq!(after["token"], REDACTED);
    assert_eq!(after["id"], "key_a");
    assert!(log.verify().unwrap().intact);
}

#[test]
fn bodies_are_kept_only_with_log_bodies_and_never_with_secrets() {
    let f = Fixture::new();
    let mut rec = request("key_a", 1);
    rec.body =
        Some(json!({"messages": [{"role": "user", "content": "[EMAIL]"}], "api_key": "sk-x"}));
    f.log().append_request(rec.clone()).unwrap();
    let log = f.log_with(AuditOptions {
        log_bodies: true,
        ..AuditOptions::default()
    });
    log.append_request(rec).unwrap();
    let records = log.query(&AuditQuery::default()).unwrap().records;
    assert_eq!(records[0].request.as_ref().unwrap().body, None);
    let body = records[1].request.as_ref().unwrap().body.clone().unwrap();
    assert_eq!(body["messages"][0]["content"], "[EMAIL]");
    assert_eq!(body["api_key"], REDACTED);
}

#[test]
fn non_finite_numbers_do_not_break_the_chain() {
    let f = Fixture::new();
    let log = f.log();
    let mut rec = request("key_a", 1);
    rec.cost_usd = f64::NAN;
    rec.latency_ms = f64::INFINITY;
    log.append_request(rec).unwrap();
    assert!(log.verify().unwrap().intact);
    let r = log.query(&AuditQuery::default()).unwrap().records.remove(0);
    assert_eq!(r.request.unwrap().cost_usd, 0.0);
}

#[test]
fn concurrent_appends_are_contiguous_and_chained() {
    let f = Fixture::new();
    let log = Arc::new(f.log());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        if i % 10 == 0 {
                            log.append_admin(admin("key.create", &format!("t{t}")))
                                .unwrap()
                        } else {
                            log.append_request(request(&format!("key_{t}"), i)).unwrap()
                        }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
    let report = log.verify().unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.checked, 1600);
}

#[test]
fn export_writes_stored_records_as_json_lines() {
    let f = Fixture::new();
    let log = f.log();
    for i in 1..=5u64 {
        f.now.store(1_000 * DAY + i, Ordering::Relaxed);
        log.append_request(request("key_a", i)).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(log.export(&mut out, None, None).unwrap(), 5);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1].as_bytes(), f.raw(2).as_slice(), "verbatim");
    let mut out = Vec::new();
    let n = log
        .export(&mut out, Some(1_000 * DAY + 2), Some(1_000 * DAY + 3))
        .unwrap();
    assert_eq!(n, 2);
    let first: AuditRecord =
        serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first.seq, 2);
}

#[test]
fn kinds_parse_from_query_text() {
    assert_eq!("request".parse::<AuditKind>(), Ok(AuditKind::Request));
    assert_eq!("admin".parse::<AuditKind>(), Ok(AuditKind::Admin));
    assert!("Admin".parse::<AuditKind>().is_err());
    assert_eq!(
        serde_json::to_value(AuditKind::Admin).unwrap(),
        json!("admin")
    );
}
