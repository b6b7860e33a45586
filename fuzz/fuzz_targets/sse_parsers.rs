//! Every upstream SSE parser, with chunk boundaries chosen by the fuzzer.
//!
//! Input layout: byte 0 = flags (bits 0-1: upstream flavour 0/3 OpenAI, 1 Anthropic, 2 Gemini;
//! bit 2: include usage; bit 3: strip the usage chunk), byte 1 = number of cuts `n` (mod 32),
//! the next `n` bytes = chunk lengths, the rest = the upstream body. The body goes through the
//! flavour's parser (the OpenAI splitter/accumulator `Tee`, the Anthropic or Gemini adapter's
//! translator); the chat SSE that comes out goes through the `Tee` and both re-encoders
//! (Responses events, `/v1/messages` events), and the accumulated completion through the
//! non-stream Responses and Messages translations.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::fuzzing::{self, drain};
use sluice::providers::{ChunkStream, UpstreamError};
use sluice::responses::{responses_sse, translate, EventEncoder, ResponsesRequest};
use sluice::stream::{StreamOutcome, Tee};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

/// Splits `body` into chunks of the given lengths (0 gives an empty chunk); the rest is the
/// last chunk.
fn split(body: &[u8], lens: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(lens.len() + 1);
    let mut at = 0;
    for &n in lens {
        let end = (at + n as usize).min(body.len());
        out.push(Bytes::copy_from_slice(&body[at..end]));
        at = end;
    }
    out.push(Bytes::copy_from_slice(&body[at..]));
    out
}

fn protocol(detail: String) -> UpstreamError {
    UpstreamError::Protocol {
        deployment: "fuzz".into(),
        detail,
    }
}

/// Runs `items` through a `Tee`: what the client receives, and the outcome.
fn tee(items: Vec<Result<Bytes, UpstreamError>>, strip_usage: bool) -> (Vec<u8>, StreamOutcome) {
    let slot: Arc<Mutex<Option<StreamOutcome>>> = Arc::default();
    let sink = Arc::clone(&slot);
    let inner: ChunkStream = Box::pin(futures_util::stream::iter(items));
    let on_finish = Box::new(move |o: StreamOutcome| {
        *sink.lock().unwrap() = Some(o);
    });
    let out: Vec<u8> = drain(Tee::new(inner, strip_usage, on_finish))
        .into_iter()
        .flat_map(|r: Result<Bytes, Infallible>| r.unwrap_or_default().to_vec())
        .collect();
    let outcome = slot
        .lock()
        .unwrap()
        .take()
        .expect("the tee reports an outcome");
    (out, outcome)
}

fn shell() -> serde_json::Value {
    let req: ResponsesRequest =
        serde_json::from_str(r#"{"model":"m","input":"hi"}"#).expect("a valid request");
    translate::shell(&req, "resp_fuzz", 0)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let flags = data[0];
    let n = (data[1] % 32) as usize;
    let Some(lens) = data.get(2..2 + n) else {
        return;
    };
    let body = &data[2 + n..];
    let chunks = split(body, lens);
    let include_usage = flags & 4 != 0;
    let strip_usage = flags & 8 != 0;

    // The upstream parser of the flavour: chat SSE items (with any error that ended it).
    let items: Vec<Result<Bytes, UpstreamError>> = match flags & 3 {
        1 => fuzzing::anthropic_upstream(chunks.clone(), include_usage)
            .into_iter()
            .map(|r| r.map_err(protocol))
            .collect(),
        2 => fuzzing::gemini_upstream(chunks.clone(), include_usage)
            .into_iter()
            .map(|r| r.map_err(protocol))
            .collect(),
        _ => chunks.iter().cloned().map(Ok).collect(),
    };
    let openai = flags & 3 == 0 || flags & 3 == 3;
    let (client, outcome) = tee(items.clone(), strip_usage);
    if openai && !strip_usage {
        // The tee passes every event through unchanged; only a whitespace tail is dropped.
        assert!(body.starts_with(&client), "tee changed the stream");
        assert!(body[client.len()..].iter().all(u8::is_ascii_whitespace));
    }

    // The chat SSE the re-encoders read, cut at the same lengths.
    let chat: Vec<u8> = items
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|b| b.to_vec())
        .collect();
    let chat_chunks = split(&chat, lens);
    let upstream =
        futures_util::stream::iter(chat_chunks.clone().into_iter().map(Ok::<_, Infallible>));
    let _ = drain(responses_sse(
        upstream,
        EventEncoder::new(shell(), || 0),
        None,
    ));
    let _ = fuzzing::anthropic_events(chat_chunks);

    // The non-stream answers built from the accumulated completion.
    let _ = translate::to_response(&outcome.completion, shell(), 0);
    let _ = fuzzing::anthropic_message(&outcome.completion);
});
