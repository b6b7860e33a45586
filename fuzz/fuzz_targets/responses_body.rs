//! `POST /v1/responses` bodies: the handler's parse and cache controls, then
//! `responses::create`'s validation, input normalisation and translation to a chat request,
//! the response shell, a continuation turn built on the answer, and the bodies each adapter
//! would send upstream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sluice::fuzzing;
use sluice::responses::translate;
use sluice::responses::ResponsesRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = sluice::wire::parse_json::<ResponsesRequest>(data) else {
        return;
    };
    if fuzzing::cache_controls(req.cache.as_ref()).is_err() || req.validate().is_err() {
        return;
    }
    let Ok(items) = translate::normalize_input(req.input.as_ref()) else {
        return;
    };
    if let Some(input) = &req.input {
        let _ = sluice::tokens::input_tokens(input, &req.model);
    }
    let shell = translate::shell(&req, "resp_fuzz", 0);
    let Ok(chat) = translate::to_chat(&req, &items) else {
        return;
    };
    if chat.validate().is_err() {
        return;
    }
    let _ = sluice::router::Needs::of(&chat);
    let _ = serde_json::to_vec(&chat);
    let _ = fuzzing::upstream_requests(&chat);
    // The next turn (`previous_response_id`): the stored input plus the answer's output.
    let completion = json!({
        "id": "chatcmpl-fuzz", "object": "chat.completion", "created": 0, "model": req.model,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "ok",
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    });
    let response = translate::to_response(&completion, shell, 0);
    let next = translate::continuation(&items, &response);
    let _ = translate::items_to_messages(&next);
});
