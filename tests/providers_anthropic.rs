//! `anthropic/...` deployments through the real binary against a fake Anthropic server:
//! translation both ways, streaming, tool calls and error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_anthropic::{FakeAnthropic, KEY};
use common::{client, TestGateway};
use serde_json::{json, Value};

/// One group per fake model (`claude` answers normally), plus a deployment with a wrong key
/// and one whose `api_base` already ends in `/v1`.
fn gateway(fake: &FakeAnthropic) -> TestGateway {
    let mut yaml = String::from("model_list:\n");
    for m in [
        "claude",
        "claude-400",
        "claude-401",
        "claude-429",
        "claude-529",
        "claude-500",
        "claude-stream-error",
    ] {
        let upstream = if m == "claude" {
            "claude-sonnet-4-5"
        } else {
            m
        };
        yaml.push_str(&format!(
            "  - model_name: {m}\n    litellm_params:\n      model: anthropic/{upstream}\n      api_base: {}\n      api_key: {KEY}\n      timeout: 5\n",
            fake.base
        ));
    }
    yaml.push_str(&format!(
        "  - model_name: claude-v1\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5\n      api_base: {}/v1\n      api_key: {KEY}\n",
        fake.base
    ));
    yaml.push_str(&format!(
        "  - model_name: claude-badkey\n    litellm_params:\n      model: anthropic/claude-sonnet-4-5\n      api_base: {}\n      api_key: sk-ant-wrong-key-123\n",
        fake.base
    ));
    yaml.push_str("sluice:\n  cache: {enabled: false}\n");
    TestGateway::builder().config(yaml).spawn()
}

async fn post(gw: &TestGateway, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Parses an OpenAI SSE body: the JSON chunks and whether `[DONE]` ended it.
fn sse_chunks(text: &str) -> (Vec<Value>, bool) {
    let mut chunks = Vec::new();
    let mut done = false;
    for event in text.split("\n\n").filter(|e| !e.trim().is_empty()) {
        let data = event.trim().strip_prefix("data: ").unwrap();
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "nothing after [DONE]: {text}");
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done)
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}, "required": ["location"]}
    }}])
}

/// `x-sluice-route`: the deployment id (or `cache`), possibly followed by the routing reason.
fn route(h: &reqwest::header::HeaderMap) -> &str {
    h["x-sluice-route"].to_str().unwrap()
}

#[tokio::test]
async fn non_streaming_text_and_the_translated_request() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let (s, h, body) = post(
        &gw,
        &json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"}
            ],
            "max_tokens": 100,
            "temperature": 0.3,
            "stop": "END",
            "user": "user-7",
            "seed": 42,
            "logit_bias": {"50256": -100}
        }),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(route(&h).starts_with("claude/0"));
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["object"], "chat.completion");
    assert_eq!(b["id"], "chatcmpl-msg_01FakeMessage");
    assert_eq!(b["model"], "claude-sonnet-4-5");
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    assert_eq!(b["choices"][0]["message"]["content"], "You said: hello");
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["usage"]["prompt_tokens"], 21);
    assert_eq!(b["usage"]["completion_tokens"], 9);
    assert_eq!(b["usage"]["total_tokens"], 30);

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.path, "/v1/messages");
    assert_eq!(c.api_key.as_deref(), Some(KEY));
    assert_eq!(c.version.as_deref(), Some("2023-06-01"));
    assert_eq!(c.content_type.as_deref(), Some("application/json"));
    assert!(c.authorization.is_none(), "no bearer token to Anthropic");
    assert_eq!(
        c.body,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
            "max_tokens": 100,
            "system": "Be brief.",
            "stop_sequences": ["END"],
            "temperature": 0.3,
            "metadata": {"user_id": "user-7"}
        }),
        "OpenAI-only fields (seed, logit_bias) are not sent"
    );

    // Without max_tokens the adapter sends Anthropic's required field itself; a base URL
    // ending in /v1 works too.
    let (s, _, body) = post(
        &gw,
        &json!({"model": "claude-v1", "messages": [{"role": "user", "content": "again"}]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let c = &fake.calls()[1];
    assert_eq!(c.path, "/v1/messages");
    assert_eq!(c.body["max_tokens"], 4096);
    assert!(c.body.get("system").is_none());
    assert!(!gw.stderr().contains(KEY));
}

#[tokio::test]
async fn streaming_text_translates_to_openai_chunks() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let (s, h, text) = post(
        &gw,
        &json!({"model": "claude", "stream": true, "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let (chunks, done) = sse_chunks(&text);
    assert!(done, "ends with [DONE]: {text}");
    assert_eq!(content_of(&chunks), "You said: one two three");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-msg_01FakeStream"));
    let finishes: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finishes, ["stop"]);
    assert!(
        chunks.iter().all(|c| c.get("usage").is_none()),
        "usage the client did not ask for is stripped"
    );
    assert_eq!(fake.calls()[0].body["stream"], true);

    // With include_usage the last chunk carries Anthropic's counts.
    let (_, _, text) = post(
        &gw,
        &json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "count me"}]}),
    )
    .await;
    let (chunks, done) = sse_chunks(&text);
    assert!(done);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 21);
    assert_eq!(last["usage"]["completion_tokens"], 9);
    assert_eq!(last["usage"]["total_tokens"], 30);
    assert!(
        fake.calls()[1].body.get("stream_options").is_none(),
        "OpenAI's stream_options is not sent to Anthropic"
    );
}

#[tokio::test]
async fn tool_calls_round_trip_without_streaming() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let question = json!({"role": "user", "content": "What is the get_weather in Paris?"});
    let (s, _, body) = post(
        &gw,
        &json!({"model": "claude", "messages": [question], "tools": weather_tool(),
                "tool_choice": "auto", "parallel_tool_calls": false}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    let choice = &b["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me check.");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_01FakeToolCall");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["location"], "Paris, France");

    let sent = &fake.calls()[0].body;
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["location"])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );

    // Send the tool result back: assistant tool_calls -> tool_use, tool message -> tool_result.
    let (s, _, body) = post(
        &gw,
        &json!({"model": "claude", "tools": weather_tool(), "messages": [
            question,
            choice["message"],
            {"role": "tool", "tool_call_id": "toolu_01FakeToolCall", "content": "18C and sunny"}
        ]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        b["choices"][0]["message"]["content"],
        "Tool said: toolu_01FakeToolCall=18C and sunny"
    );
    let sent = &fake.calls()[1].body;
    let msgs = sent["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(msgs[1]["content"][1]["type"], "tool_use");
    assert_eq!(msgs[1]["content"][1]["input"], args);
    assert_eq!(msgs[2]["role"], "user");
    assert_eq!(
        msgs[2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "toolu_01FakeToolCall", "content": "18C and sunny"})
    );
}

#[tokio::test]
async fn tool_calls_stream_as_openai_deltas() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let (s, _, text) = post(
        &gw,
        &json!({"model": "claude", "stream": true, "tools": weather_tool(),
                "messages": [{"role": "user", "content": "please use the tool for Paris"}]}),
    )
    .await;
    assert_eq!(s, 200, "{text}");
    let (chunks, done) = sse_chunks(&text);
    assert!(done, "{text}");
    assert_eq!(content_of(&chunks), "Let me check.");
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(deltas[0]["index"], 0);
    assert_eq!(deltas[0]["id"], "toolu_01FakeToolCall");
    assert_eq!(deltas[0]["type"], "function");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas[1..]
        .iter()
        .all(|d| d["index"] == 0 && d.get("id").is_none()));
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(
        args,
        json!({"location": "Paris, France", "unit": "celsius"})
    );
    let finishes: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finishes, ["tool_calls"]);
}

#[tokio::test]
async fn upstream_errors_are_openai_shaped_and_never_leak_the_key() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let req = |m: &str| json!({"model": m, "messages": [{"role": "user", "content": "x"}]});

    let (s, _, body) = post(&gw, &req("claude-400")).await;
    assert_eq!(s, 400, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["error"]["type"], "invalid_request_error");
    let m = b["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("claude-400/0") && m.contains("temperature"),
        "{m}"
    );

    let (s, h, body) = post(&gw, &req("claude-429")).await;
    assert_eq!(s, 429, "{body}");
    assert_eq!(h["retry-after"], "13");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["error"]["type"], "rate_limit_error");
    assert_eq!(b["error"]["code"], "rate_limit_exceeded");

    // Sluice's own provider key is wrong: a gateway error, whatever the upstream echoed.
    for m in ["claude-401", "claude-badkey"] {
        let (s, _, body) = post(&gw, &req(m)).await;
        assert_eq!(s, 502, "{m}: {body}");
        let b: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["error"]["code"], "upstream_auth_failed", "{m}");
        assert!(!body.contains(KEY), "{body}");
    }

    for m in ["claude-529", "claude-500"] {
        let (s, _, body) = post(&gw, &req(m)).await;
        assert_eq!(s, 502, "{m}: {body}");
        let b: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(b["error"]["type"], "upstream_error");
        let code = &m[m.len() - 3..];
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("HTTP {code}")),
            "{body}"
        );
    }

    // Streaming requests fail the same way before the stream starts.
    let (s, _, _) = post(
        &gw,
        &json!({"model": "claude-529", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 502);
    assert!(!gw.stderr().contains(KEY), "the key never reaches the logs");
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_without_done() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let (s, _, text) = post(
        &gw,
        &json!({"model": "claude-stream-error", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 200, "the stream had started");
    let (chunks, done) = sse_chunks(&text);
    assert!(!done, "a broken stream must not end with [DONE]: {text}");
    assert_eq!(content_of(&chunks), "partial ");
    let err = chunks.last().unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded_error"),
        "{err}"
    );
}

#[tokio::test]
async fn untranslatable_requests_are_400_before_any_upstream_call() {
    let fake = FakeAnthropic::start();
    let gw = gateway(&fake);
    let (s, _, body) = post(
        &gw,
        &json!({"model": "claude", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"}
        ]}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert_eq!(
        b["error"]["param"],
        "messages[1].tool_calls[0].function.arguments"
    );
    assert_eq!(fake.call_count(), 0);
}
