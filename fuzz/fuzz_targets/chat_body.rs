//! `POST /v1/chat/completions` bodies: the handler's parse + validation + cache controls, then
//! what the pipeline does to the request before any network call (token estimate, cache keys,
//! PII masking) and the bodies each adapter would send upstream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::fuzzing;
use sluice::pii::{Masker, Scanner};
use std::sync::OnceLock;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| Scanner::new(&[]).expect("built-in detectors compile"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut chat) = fuzzing::chat_request(data) else {
        return;
    };
    let _ = sluice::router::Needs::of(&chat);
    let _ = chat.last_user_text();
    let _ = scanner().request_kinds(&chat);
    let mut masker = Masker::new();
    masker.mask_chat_request(scanner(), &mut chat);
    let _ = sluice::cache::key::keys("default", &chat.model, &chat);
    // The OpenAI-compatible adapters send the request itself.
    let _ = serde_json::to_vec(&chat);
    let _ = fuzzing::upstream_requests(&chat);
});
