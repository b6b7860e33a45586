//! The per-request cost of the PII guard, and its quality on the labelled set.
//! `cargo bench --bench pii`.
//!
//! - `pii/scan_2kb_clean`: scanning about 2 KB of English prose with no PII (digits, dates and
//!   prices included, so the number detectors' prefilter is exercised).
//! - `pii/scan_2kb_pii`: the same prose with an e-mail, a phone number, a card, an IBAN and an
//!   API key in it.
//! - `pii/mask_2kb_clean`, `pii/mask_2kb_pii`: scan and build the masked text with a fresh
//!   per-request masker.
//! - `pii/restore_answer`: restoring placeholders in a 2 KB answer.
//!
//! Before the timings it prints precision and recall per kind on `data/pii/labelled.jsonl`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use sluice::pii::{eval, Masker, Scanner};
use std::hint::black_box;

const PROSE: &str = "The quarterly report covers 3 regions and 12 product lines. Revenue grew \
by 4.5% to $1,299.99 per seat, shipped on 2024-01-15 in version 2.3.1 of the client. Please \
summarise the main risks, list the open questions for the board, and suggest two follow-ups \
for the team meeting on Friday at 10:30. ";

/// About 2 KB of prose, with `insert` placed in the middle when given.
fn prompt(insert: &str) -> String {
    let mut text = PROSE.repeat(2048 / PROSE.len() + 1);
    text.truncate(2048 - insert.len());
    let mid = text.len() / 2;
    let mid = (mid..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap();
    text.insert_str(mid, insert);
    text
}

fn bench(c: &mut Criterion) {
    let custom = [(
        eval::LABELLED_CUSTOM.0.to_string(),
        eval::LABELLED_CUSTOM.1.to_string(),
    )];
    let scanner = Scanner::new(&custom).unwrap();
    let jsonl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/pii/labelled.jsonl"
    ))
    .unwrap();
    let report = eval::evaluate(&scanner, &jsonl).unwrap();
    println!("PII labelled set:\n{}", report.table());

    let clean = prompt("");
    let pii = prompt(
        " Contact jane.doe@example.com or +44 20 7946 0958, card 4111 1111 1111 1111, \
         IBAN GB82 WEST 1234 5698 7654 32, key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z. ",
    );
    assert_eq!(scanner.scan(&clean).len(), 0);
    assert_eq!(scanner.scan(&pii).len(), 5);

    c.bench_function("pii/scan_2kb_clean", |b| {
        b.iter(|| black_box(scanner.scan(black_box(&clean))))
    });
    c.bench_function("pii/scan_2kb_pii", |b| {
        b.iter(|| black_box(scanner.scan(black_box(&pii))))
    });
    c.bench_function("pii/mask_2kb_clean", |b| {
        b.iter(|| black_box(Masker::new().mask(&scanner, black_box(&clean))))
    });
    c.bench_function("pii/mask_2kb_pii", |b| {
        b.iter(|| black_box(Masker::new().mask(&scanner, black_box(&pii))))
    });
    let mut masker = Masker::new();
    let masked = masker.mask(&scanner, &pii);
    c.bench_function("pii/restore_answer", |b| {
        b.iter(|| black_box(masker.restore(black_box(&masked))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
