//! The PII guard core on arbitrary text: `Scanner::scan` (findings in bounds, ordered, on
//! char boundaries), masking then restoring gives the text back, and the stream restorer and
//! stream scanner over fuzzer-chosen splits agree with the one-shot calls.
//!
//! Input layout: byte 0 seeds the split lengths, the rest is the text (lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::pii::{Masker, PiiPolicy, Scanner, StreamRestorer, StreamScanner};
use std::collections::BTreeSet;
use std::sync::OnceLock;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| {
        let custom = [
            ("employee_id".to_string(), r"\bEMP-[0-9]{6}\b".to_string()),
            ("ticket".to_string(), r"TCK[0-9A-F]{8}".to_string()),
        ];
        Scanner::new(&custom).expect("detectors compile")
    })
}

/// Cuts `text` into pieces of pseudo-random lengths (1-16 bytes, moved forward to a char
/// boundary) derived from `seed`.
fn pieces(text: &str, seed: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let mut state = u32::from(seed) | 1;
    let mut at = 0;
    while at < text.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut end = (at + 1 + (state >> 16) as usize % 16).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[at..end]);
        at = end;
    }
    out
}

/// Whether `text` holds something shaped like a placeholder (`[LABEL_N]`), which restoring
/// legitimately rewrites.
fn has_placeholder_shape(text: &str) -> bool {
    let b = text.as_bytes();
    for (i, _) in text.match_indices('[') {
        let Some(close) = b[i + 1..].iter().position(|&c| c == b']') else {
            continue;
        };
        let inner = &text[i + 1..i + 1 + close];
        if let Some((label, n)) = inner.rsplit_once('_') {
            if !label.is_empty()
                && !n.is_empty()
                && n.bytes().all(|c| c.is_ascii_digit())
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                return true;
            }
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let text: &str = &text;
    let scanner = scanner();

    let findings = scanner.scan(text);
    let mut last = 0;
    for f in &findings {
        assert!(f.start >= last && f.start < f.end && f.end <= text.len());
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        last = f.end;
    }

    let mut masker = Masker::new();
    let masked = masker.mask(scanner, text);
    let restored = masker.restore(&masked);
    if !has_placeholder_shape(text) {
        assert_eq!(restored, text, "restore(mask(x)) != x");
    }

    // The stream restorer over any split gives what the one-shot restore gives.
    let mut restorer = StreamRestorer::new(&masker);
    let mut streamed: String = pieces(&masked, seed)
        .into_iter()
        .map(|p| restorer.push(p))
        .collect();
    streamed.push_str(&restorer.finish());
    assert_eq!(streamed, restored, "stream restore differs from restore");
    let mut json = StreamRestorer::for_json(&masker);
    for p in pieces(&masked, seed.wrapping_add(1)) {
        let _ = json.push(p);
    }
    let _ = json.finish();

    // The answer-side stream scanner (mask policy) over any split.
    let mut answer_masker = Masker::new();
    let mut stream_scanner = StreamScanner::new(PiiPolicy::Mask);
    let mut found = BTreeSet::new();
    for p in pieces(text, seed) {
        let _ = stream_scanner.push(scanner, &mut answer_masker, p, &mut found);
    }
    let _ = stream_scanner.finish(scanner, &mut answer_masker, &mut found);
    let mut blocker = StreamScanner::new(PiiPolicy::Block);
    for p in pieces(text, seed) {
        if blocker
            .push(scanner, &mut answer_masker, p, &mut found)
            .is_err()
        {
            break;
        }
    }
});
