//! The cost of encryption at rest per record: sealing and opening a 2 KB cache entry
//! (AES-256-GCM through ring, with a random nonce and the column-family/key associated data the
//! store uses). `cargo bench --bench encryption`.
//!
//! - `encryption/seal_2kb`: one `Keyring::seal` of a 2 KB value (what a cache write-back adds).
//! - `encryption/open_2kb`: one `Keyring::open` of it (what a cache hit adds).
//! - `encryption/open_plaintext_2kb`: the pass-through for records written before encryption.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::crypto::{Key, Keyring};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let key: Vec<u8> = (0u8..32).collect();
    let keyring = Keyring::new(Key::from_bytes(&key).unwrap(), vec![]);
    // Roughly the size of a cached chat answer with its prompt (bincode).
    let value: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
    let aad = b"entries\0\0\0\0\0\0\0\x01\x2a";
    let sealed = keyring.seal(aad, &value).unwrap().into_owned();

    let mut g = c.benchmark_group("encryption");
    g.throughput(Throughput::Bytes(value.len() as u64));
    g.bench_function("seal_2kb", |b| {
        b.iter(|| {
            black_box(
                keyring
                    .seal(black_box(aad), black_box(&value))
                    .unwrap()
                    .len(),
            )
        })
    });
    g.bench_function("open_2kb", |b| {
        b.iter(|| {
            black_box(
                keyring
                    .open(black_box(aad), black_box(&sealed))
                    .unwrap()
                    .len(),
            )
        })
    });
    g.bench_function("open_plaintext_2kb", |b| {
        b.iter(|| {
            black_box(
                keyring
                    .open(black_box(aad), black_box(&value))
                    .unwrap()
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
