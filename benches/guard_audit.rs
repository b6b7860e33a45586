//! What the PII guard and the audit log add to one request (issue #7).
//! `cargo bench --bench guard_audit`.
//!
//! - `guard/request_off_2kb`: `PiiGuard::guard_request` with prompts `off` (the floor).
//! - `guard/request_mask_2kb`: `guard_request` with prompts `mask` on a typical ~2 KB chat request
//!   (system + user message) holding an e-mail, a phone number and a card number.
//! - `guard/answer_restore`: `Guarded::answer_json` on a ~600 B completion that quotes the
//!   placeholders, restoring the caller's values (answers policy `off`).
//! - `audit/append_request`: `AuditLog::append_request` of a typical record (no body) on RocksDB
//!   in a temp dir (WAL, no fsync: the gateway's default).
//! - `audit/append_request_encrypted`: the same with encryption at rest (AES-256-GCM seal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sluice::audit::{AuditLog, RequestRecord};
use sluice::crypto::{Key, Keyring};
use sluice::pii::{PiiConfig, PiiGuard, PiiPolicy, Policies};
use sluice::store::{Store, StoreOptions};
use sluice::wire::ChatRequest;
use std::hint::black_box;
use std::sync::Arc;

const PROSE: &str = "The quarterly report covers 3 regions and 12 product lines. Revenue grew \
by 4.5% to $1,299.99 per seat, shipped on 2024-01-15 in version 2.3.1 of the client. Please \
summarise the main risks, list the open questions for the board, and suggest two follow-ups \
for the team meeting on Friday at 10:30. ";

/// A ~2 KB chat request: a short system prompt and a user message with three PII values.
fn request() -> ChatRequest {
    let mut user = PROSE.repeat(7);
    user.truncate(1700);
    user.push_str(
        " Send the summary to jane.doe@example.com, call me on +44 20 7946 0958 if anything \
         is unclear, and charge the usual card 4111 1111 1111 1111.",
    );
    let body = serde_json::json!({
        "model": "g",
        "messages": [
            {"role": "system", "content": "You are a concise assistant for a finance team. Answer in plain English."},
            {"role": "user", "content": user},
        ],
        "temperature": 0.2,
    });
    serde_json::from_value(body).unwrap()
}

fn record(i: u64) -> RequestRecord {
    RequestRecord {
        request_id: format!("req_{i:016x}"),
        key_id: "key_0123456789abcdef".into(),
        key_alias: Some("team-a".into()),
        user: Some("user-7".into()),
        endpoint: "/v1/chat/completions".into(),
        model_group: Some("gpt-4o-mini".into()),
        deployment: Some("openai/gpt-4o-mini#0".into()),
        cache_outcome: Some("miss".into()),
        status: 200,
        prompt_tokens: 612,
        completion_tokens: 148,
        cost_usd: 0.000_18,
        latency_ms: 842.5,
        pii_kinds: vec!["email".into(), "phone".into()],
        body: None,
    }
}

fn bench(c: &mut Criterion) {
    let guard = PiiGuard::new(PiiConfig {
        prompts: PiiPolicy::Mask,
        ..PiiConfig::default()
    })
    .unwrap();
    let req = request();
    let size = serde_json::to_vec(&req).unwrap().len();
    let mask = Policies {
        prompts: PiiPolicy::Mask,
        responses: PiiPolicy::Off,
    };
    let off = Policies::default();
    let mut masked = req.clone();
    let guarded = guard.guard_request(&mut masked, mask).unwrap();
    let text = serde_json::to_string(&masked.messages).unwrap();
    let placeholders: Vec<&str> = text
        .split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next())
        .filter(|s| s.contains('_'))
        .collect();
    assert_eq!(placeholders.len(), 3, "three values masked: {text}");
    println!("request: {size} bytes, placeholders {placeholders:?}");
    let answer = serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000, "model": "g",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content":
            format!("Summary: revenue grew 4.5% across 3 regions; the main risks are pricing and \
                     the shipping date. I will send it to [{}] and call [{}] if needed; the card \
                     [{}] is on file. Follow-ups: board questions, team meeting on Friday.",
                    placeholders[0], placeholders[1], placeholders[2])}}],
        "usage": {"prompt_tokens": 612, "completion_tokens": 148, "total_tokens": 760}
    });
    let answer = Bytes::from(serde_json::to_vec(&answer).unwrap());
    let restored = guarded.answer_json(&guard, answer.clone()).unwrap();
    assert!(std::str::from_utf8(&restored)
        .unwrap()
        .contains("jane.doe@example.com"));

    c.bench_function("guard/request_off_2kb", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |r| black_box(guard.guard_request(r, off).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("guard/request_mask_2kb", |b| {
        b.iter_batched_ref(
            || req.clone(),
            |r| black_box(guard.guard_request(r, mask).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("guard/answer_restore", |b| {
        b.iter(|| black_box(guarded.answer_json(&guard, answer.clone()).unwrap()))
    });

    for (name, keyring) in [
        ("audit/append_request", Keyring::none()),
        (
            "audit/append_request_encrypted",
            Keyring::new(Key::from_bytes(&[7u8; 32]).unwrap(), vec![]),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            Store::open_encrypted(dir.path(), StoreOptions::default(), Arc::new(keyring)).unwrap(),
        );
        let log = AuditLog::open(store).unwrap();
        let mut i = 0u64;
        c.bench_function(name, |b| {
            b.iter_batched(
                || {
                    i += 1;
                    record(i)
                },
                |r| black_box(log.append_request(r).unwrap()),
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
