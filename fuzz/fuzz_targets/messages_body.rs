//! `POST /v1/messages` bodies: the handler's parse, cache controls, translation to a chat
//! request and validation, then the pipeline's pre-network work on the result and the bodies
//! each adapter would send upstream.
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
    let Ok(mut chat) = fuzzing::messages_request(data) else {
        return;
    };
    let _ = sluice::router::Needs::of(&chat);
    let mut masker = Masker::new();
    masker.mask_chat_request(scanner(), &mut chat);
    let _ = sluice::cache::key::keys("default", &chat.model, &chat);
    let _ = serde_json::to_vec(&chat);
    let _ = fuzzing::upstream_requests(&chat);
});
