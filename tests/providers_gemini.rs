//! `gemini/...` deployments through the real binary against a fake Gemini API: chat, streams,
//! tool calls, filtered answers, errors and embeddings, all in OpenAI's shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_gemini::{FakeGemini, EMBEDDING, KEY, THOUGHT_SIGNATURE};
use common::{post_json, TestGateway};
use serde_json::{json, Value};

/// One model group per fake model, all on `base`, semantic cache off.
fn config(base: &str, models: &[&str], key: &str) -> String {
    let mut s = String::from("model_list:\n");
    for m in models {
        s.push_str(&format!(
            "  - model_name: {m}\n    litellm_params:\n      model: gemini/{m}\n      api_base: {base}\n      api_key: {key}\n      timeout: 5\n"
        ));
    }
    s.push_str("sluice:\n  cache: {enabled: false}\n");
    s
}

fn gateway(fake: &FakeGemini, models: &[&str]) -> TestGateway {
    TestGateway::builder()
        .config(config(&fake.base, models, KEY))
        .spawn()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "additionalProperties": false,
                       "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

/// Parses an SSE body: the JSON chunks, whether `[DONE]` came, the raw text.
async fn read_sse(resp: reqwest::Response) -> (Vec<Value>, bool, String) {
    let text = resp.text().await.unwrap();
    let mut chunks = Vec::new();
    let mut done = false;
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event.trim().strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done, text)
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn chat_is_translated_both_ways() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gemini-test"]);
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "temperature": 0.3, "max_tokens": 40,
                "messages": [{"role": "system", "content": "be brief"},
                             {"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gemini-test");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "You said: hello");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 7);
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(body["usage"]["total_tokens"], 12);

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let sent = &calls[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-test:generateContent");
    assert_eq!(sent.api_key.as_deref(), Some(KEY));
    assert_eq!(sent.authorization, None);
    assert_eq!(
        sent.body["systemInstruction"],
        json!({"parts": [{"text": "be brief"}]})
    );
    assert_eq!(
        sent.body["contents"],
        json!([{"role": "user", "parts": [{"text": "hello"}]}])
    );
    assert_eq!(
        sent.body["generationConfig"],
        json!({"temperature": 0.3, "maxOutputTokens": 40})
    );
    assert!(!gw.stderr().contains(KEY));
}

#[tokio::test]
async fn streams_become_openai_chunks() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gemini-test"]);
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "messages": user("one two three"), "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (chunks, done, raw) = read_sse(resp).await;
    assert!(done, "{raw}");
    assert!(raw.ends_with("data: [DONE]\n\n"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(content_of(&chunks), "You said: one two three");
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage only when asked"
    );
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let sent = &fake.calls()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/gemini-test:streamGenerateContent"
    );
    assert_eq!(sent.query, "alt=sse");

    // With include_usage the last chunk carries Gemini's usage.
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "messages": user("hey"), "stream": true,
                "stream_options": {"include_usage": true}}),
    )
    .await;
    let (chunks, done, _) = read_sse(resp).await;
    assert!(done);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 7);
    assert_eq!(content_of(&chunks), "You said: hey");
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gemini-test"]);
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "messages": user("what's the weather in Paris?"),
                "tools": weather_tool(), "tool_choice": "auto"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let id = call["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("call_"), "{id}");

    let sent = &fake.calls()[0].body;
    assert_eq!(
        sent["tools"][0]["functionDeclarations"][0]["parameters"],
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        "additionalProperties is stripped"
    );
    assert_eq!(
        sent["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );

    // The tool result goes back as a functionResponse named after the call.
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "tools": weather_tool(), "messages": [
            {"role": "user", "content": "what's the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "{\"temp_c\": 21}"}
        ]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Tool get_weather said {\"temp_c\":21}"
    );
    let sent = &fake.calls()[1].body;
    assert_eq!(
        sent["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                           "thoughtSignature": THOUGHT_SIGNATURE}]}),
        "the thought signature comes back with the call"
    );
    assert_eq!(
        sent["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}]})
    );

    // Streamed: one complete tool-call delta, then the finish chunk.
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "messages": user("weather please"), "stream": true,
                "tools": weather_tool(), "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}),
    )
    .await;
    let (chunks, done, raw) = read_sse(resp).await;
    assert!(done, "{raw}");
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["index"], 0);
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(
        fake.calls()[2].body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
    );
}

#[tokio::test]
async fn filtered_answers_are_answers() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gem-safety", "gem-blocked"]);
    for model in ["gem-safety", "gem-blocked"] {
        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": user("something bad")}),
        )
        .await;
        assert_eq!(resp.status(), 200, "{model}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["finish_reason"], "content_filter",
            "{model}"
        );
        assert_eq!(body["choices"][0]["message"]["content"], "", "{model}");
        assert_eq!(body["usage"]["prompt_tokens"], 7);

        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": user("something bad"), "stream": true}),
        )
        .await;
        let (chunks, done, raw) = read_sse(resp).await;
        assert!(done, "{model}: {raw}");
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "content_filter",
            "{model}"
        );
    }
}

/// Asserts an OpenAI-shaped error without the upstream key; returns the body.
async fn openai_error(resp: reqwest::Response, status: u16, kind: &str) -> Value {
    assert_eq!(resp.status(), status);
    let text = resp.text().await.unwrap();
    assert!(!text.contains(KEY), "key leaked: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["message"].is_string());
    body
}

#[tokio::test]
async fn errors_are_mapped_without_the_key() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gem-429", "gem-400", "gem-500"]);
    for stream in [false, true] {
        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "gem-429", "messages": user("x"), "stream": stream}),
        )
        .await;
        assert_eq!(
            resp.headers()["retry-after"],
            "20",
            "RetryInfo becomes retry-after"
        );
        let body = openai_error(resp, 429, "rate_limit_error").await;
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Resource has been exhausted"));

        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "gem-400", "messages": user("x"), "stream": stream}),
        )
        .await;
        let body = openai_error(resp, 400, "invalid_request_error").await;
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("generation_config.temperature"));

        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &json!({"model": "gem-500", "messages": user("x"), "stream": stream}),
        )
        .await;
        openai_error(resp, 502, "upstream_error").await;
    }
    assert!(!gw.stderr().contains(KEY));
}

#[tokio::test]
async fn wrong_or_missing_key_is_an_upstream_auth_failure() {
    let fake = FakeGemini::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, &["gemini-test"], "AIza-wrong-key-0000"))
        .spawn();
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "messages": user("x")}),
    )
    .await;
    let body = openai_error(resp, 502, "upstream_error").await;
    assert_eq!(body["error"]["code"], "upstream_auth_failed");
    assert!(!body.to_string().contains("AIza-wrong-key-0000"));
    assert_eq!(
        fake.calls()[0].api_key.as_deref(),
        Some("AIza-wrong-key-0000")
    );
}

#[tokio::test]
async fn broken_streams_end_with_an_error_and_no_done() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gem-broken-stream", "gem-stream-error"]);
    for model in ["gem-broken-stream", "gem-stream-error"] {
        let resp = post_json(
            &gw,
            "/v1/chat/completions",
            &json!({"model": model, "messages": user("tell me more"), "stream": true}),
        )
        .await;
        assert_eq!(resp.status(), 200);
        let (chunks, done, raw) = read_sse(resp).await;
        assert!(!done, "no [DONE] is invented: {raw}");
        assert!(!content_of(&chunks).is_empty(), "what arrived is passed on");
        let last = chunks.last().unwrap();
        assert!(last["error"]["message"].is_string(), "{model}: {raw}");
    }
}

#[tokio::test]
async fn untranslatable_requests_are_client_errors() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["gemini-test"]);
    let resp = post_json(
        &gw,
        "/v1/chat/completions",
        &json!({"model": "gemini-test", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "42"}
        ]}),
    )
    .await;
    let body = openai_error(resp, 400, "invalid_request_error").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[1].tool_call_id"),
        "{body}"
    );
    assert_eq!(fake.call_count(), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn embeddings_use_batch_embed_contents() {
    let fake = FakeGemini::start();
    let gw = gateway(&fake, &["text-embedding-004"]);
    let resp = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-004", "input": ["alpha", "beta"], "dimensions": 3}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[0]["embedding"], json!(EMBEDDING[..3]));
    assert_eq!(body["model"], "text-embedding-004");

    let sent = &fake.calls()[0];
    assert_eq!(
        sent.path,
        "/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(
        sent.body["requests"][1],
        json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "beta"}]},
               "outputDimensionality": 3})
    );

    let resp = post_json(
        &gw,
        "/v1/embeddings",
        &json!({"model": "text-embedding-004", "input": "single"}),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
}
