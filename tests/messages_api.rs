//! The inbound Anthropic surface, `POST /v1/messages`, through the real binary: the mock
//! provider, a fake OpenAI upstream (request translation) and a fake Anthropic upstream
//! (tool_use answers), streaming, caching and Anthropic-shaped errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_anthropic::{self, FakeAnthropic};
use common::fake_openai::FakeOpenAi;
use common::{client, TestGateway};
use serde_json::{json, Value};

const MASTER: &str = "mk-messages";

fn config(openai: &FakeOpenAi, anthropic: &FakeAnthropic, sluice: &str) -> String {
    format!(
        "model_list:
  - model_name: mock
    litellm_params:
      model: mock/sluice-mock-1
  - model_name: gpt-x
    litellm_params:
      model: openai/gpt-x
      api_base: {}/v1
      api_key: sk-upstream-secret
  - model_name: claude
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: {}
      api_key: {}
  - model_name: claude-429
    litellm_params:
      model: anthropic/claude-429
      api_base: {}
      api_key: {}
  - model_name: claude-stream-error
    litellm_params:
      model: anthropic/claude-stream-error
      api_base: {}
      api_key: {}
general_settings:
  master_key: {MASTER}
sluice:
{sluice}",
        openai.base,
        anthropic.base,
        fake_anthropic::KEY,
        anthropic.base,
        fake_anthropic::KEY,
        anthropic.base,
        fake_anthropic::KEY,
    )
}

struct Setup {
    openai: FakeOpenAi,
    anthropic: FakeAnthropic,
    gw: TestGateway,
}

fn setup() -> Setup {
    let openai = FakeOpenAi::start();
    let anthropic = FakeAnthropic::start();
    let gw = TestGateway::builder()
        .config(config(&openai, &anthropic, "  cache: {enabled: false}\n"))
        .spawn();
    Setup {
        openai,
        anthropic,
        gw,
    }
}

/// POSTs to `/v1/messages` the way the Anthropic SDK does (x-api-key, anthropic-version).
async fn post(gw: &TestGateway, body: &Value) -> reqwest::Response {
    client()
        .post(gw.url("/v1/messages"))
        .header("x-api-key", MASTER)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Parses Anthropic SSE into `(event name, data)` pairs, checking the two agree.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_string();
            let data: Value =
                serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            assert_eq!(data["type"], name.as_str(), "{e}");
            (name, data)
        })
        .collect()
}

fn text_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect()
}

/// `x-sluice-route`: the deployment id (or `cache`), possibly followed by the routing reason.
fn route(h: &reqwest::header::HeaderMap) -> &str {
    h["x-sluice-route"].to_str().unwrap()
}

#[tokio::test]
async fn non_streaming_with_the_mock_provider() {
    let s = setup();
    let resp = post(
        &s.gw,
        &json!({"model": "mock", "max_tokens": 64, "system": "Be brief.",
                "messages": [{"role": "user", "content": "hello there"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(route(&h).starts_with("mock/0"));
    assert_eq!(h["x-sluice-cache"], "bypass");
    assert_eq!(h["x-request-id"].to_str().unwrap().len(), 36);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["type"], "message");
    assert_eq!(b["role"], "assistant");
    assert!(b["id"].as_str().unwrap().starts_with("msg_"), "{b}");
    assert_eq!(b["model"], "sluice-mock-1");
    assert_eq!(b["content"][0]["type"], "text");
    assert!(
        b["content"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("You said: hello there"),
        "{b}"
    );
    assert_eq!(b["stop_reason"], "end_turn");
    assert!(b["stop_sequence"].is_null());
    assert!(b["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(b["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // Bearer auth and the un-prefixed path work too.
    let resp = client()
        .post(s.gw.url("/messages"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "mock", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn streaming_with_the_mock_provider() {
    let s = setup();
    let body = json!({"model": "mock", "max_tokens": 64, "stream": true,
                      "messages": [{"role": "user", "content": "one two three"}]});
    let resp = post(&s.gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert!(route(resp.headers()).starts_with("mock/0"));
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = events(&resp.text().await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "ping", "content_block_start"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(names[3..names.len() - 3]
        .iter()
        .all(|n| *n == "content_block_delta"));
    let start = &ev[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["content"], json!([]));
    assert_eq!(
        ev[2].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert!(text_of(&ev).ends_with("You said: one two three"));
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(delta["usage"]["input_tokens"].as_u64().unwrap() > 0);

    // Same words as the non-streaming answer.
    let mut plain = body.clone();
    plain["stream"] = json!(false);
    let b: Value = post(&s.gw, &plain).await.json().await.unwrap();
    assert_eq!(b["content"][0]["text"].as_str().unwrap(), text_of(&ev));
}

#[tokio::test]
async fn tool_history_is_translated_for_an_openai_upstream() {
    let s = setup();
    let resp = post(
        &s.gw,
        &json!({
            "model": "gpt-x", "max_tokens": 300, "system": "You are a weather bot.",
            "stop_sequences": ["STOP"], "temperature": 0.1, "metadata": {"user_id": "u-9"},
            "tools": [{"name": "get_weather", "description": "Weather by city",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_A", "content": "18C"}
                ]}
            ]
        }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(route(resp.headers()).starts_with("gpt-x/0"));
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["type"], "message");
    assert_eq!(b["content"][0]["text"], "You said: Weather in Paris?");
    assert_eq!(b["id"], "msg_fake1", "derived from the OpenAI id");
    assert_eq!(b["usage"], json!({"input_tokens": 11, "output_tokens": 5}));

    let sent = &s.openai.calls()[0].body;
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "content": "18C", "tool_call_id": "toolu_A"}
        ])
    );
    assert_eq!(
        sent["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(sent["parallel_tool_calls"], false);
    assert_eq!(sent["max_tokens"], 300);
    assert_eq!(sent["stop"], json!(["STOP"]));
    assert_eq!(sent["temperature"], 0.1);
    assert_eq!(sent["user"], "u-9");
    assert_eq!(sent["model"], "gpt-x");
}

#[tokio::test]
async fn tool_use_answers_come_back_as_tool_use_blocks() {
    let s = setup();
    let body = json!({
        "model": "claude", "max_tokens": 200,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "What is the get_weather in Paris?"}]
    });
    let b: Value = post(&s.gw, &body).await.json().await.unwrap();
    assert_eq!(b["stop_reason"], "tool_use", "{b}");
    assert_eq!(
        b["content"][0],
        json!({"type": "text", "text": "Let me check."})
    );
    assert_eq!(
        b["content"][1],
        json!({"type": "tool_use", "id": "toolu_01FakeToolCall", "name": "get_weather",
               "input": {"location": "Paris, France", "unit": "celsius"}})
    );
    assert_eq!(
        b["id"], "msg_01FakeMessage",
        "Anthropic's id survives the round trip"
    );
    assert_eq!(b["usage"]["input_tokens"], 21);
    assert_eq!(b["usage"]["output_tokens"], 9);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = post(&s.gw, &streamed).await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(text_of(&ev), "Let me check.");
    let tool_start = ev
        .iter()
        .find(|(_, d)| d["content_block"]["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool_start.1["index"], 1);
    assert_eq!(tool_start.1["content_block"]["id"], "toolu_01FakeToolCall");
    assert_eq!(tool_start.1["content_block"]["input"], json!({}));
    let args: String = ev
        .iter()
        .filter(|(_, d)| d["index"] == 1)
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(
        args,
        json!({"location": "Paris, France", "unit": "celsius"})
    );
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 9);
    assert_eq!(s.anthropic.call_count(), 2);
}

async fn anthropic_error(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let b: Value = resp.json().await.expect("error bodies are JSON");
    assert_eq!(b["type"], "error", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{b}"
    );
    (status, headers, b)
}

#[tokio::test]
async fn errors_are_anthropic_shaped() {
    let s = setup();
    // Invalid bodies: 400 naming the field.
    let (st, _, b) = anthropic_error(
        post(
            &s.gw,
            &json!({"model": "mock", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(b["error"]["type"], "invalid_request_error");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].role"),
        "{b}"
    );
    let (st, _, b) = anthropic_error(
        post(
            &s.gw,
            &json!({"model": "mock", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{b}"
    );
    let (st, _, b) = anthropic_error(
        post(
            &s.gw,
            &json!({"model": "mock", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content"),
        "{b}"
    );

    // Auth.
    let body =
        json!({"model": "mock", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let r = client()
        .post(s.gw.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (st, _, b) = anthropic_error(r).await;
    assert_eq!(st, 401);
    assert_eq!(b["error"]["type"], "authentication_error");
    let r = client()
        .post(s.gw.url("/v1/messages"))
        .header("x-api-key", "wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic_error(r).await.0, 401);

    // Unknown model, wrong method.
    let (st, _, b) = anthropic_error(
        post(
            &s.gw,
            &json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(b["error"]["type"], "not_found_error");
    let r = client().get(s.gw.url("/v1/messages")).send().await.unwrap();
    assert_eq!(anthropic_error(r).await.0, 405);

    // Upstream failures keep their status and headers.
    let (st, h, b) = anthropic_error(
        post(
            &s.gw,
            &json!({"model": "claude-429", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        )
        .await,
    )
    .await;
    assert_eq!(st, 429);
    assert_eq!(b["error"]["type"], "rate_limit_error");
    assert_eq!(h["retry-after"], "13");
    assert!(h.contains_key("x-request-id"));
    assert!(!b.to_string().contains(fake_anthropic::KEY));
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_event() {
    let s = setup();
    let resp = post(
        &s.gw,
        &json!({"model": "claude-stream-error", "max_tokens": 5, "stream": true,
                "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev[0].0, "message_start");
    assert_eq!(text_of(&ev), "partial ");
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded_error"),
        "{data}"
    );
    assert!(ev.iter().all(|(n, _)| n != "message_stop"));
}

#[tokio::test]
async fn answers_are_cached_like_chat_completions() {
    let openai = FakeOpenAi::start();
    let anthropic = FakeAnthropic::start();
    let gw = TestGateway::builder()
        .config(config(&openai, &anthropic, "  data_dir: {data_dir}\n"))
        .spawn();
    let body = json!({"model": "gpt-x", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "cache this answer please"}]});
    let first = post(&gw, &body).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-sluice-cache"], "miss");
    let first: Value = first.json().await.unwrap();
    let second = post(&gw, &body).await;
    assert_eq!(second.headers()["x-sluice-cache"], "hit-exact");
    assert!(route(second.headers()).starts_with("cache"));
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["content"], first["content"]);
    assert_eq!(second["type"], "message");

    // The cached answer replays as Anthropic events too.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = post(&gw, &streamed).await;
    assert_eq!(resp.headers()["x-sluice-cache"], "hit-exact");
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(text_of(&ev), first["content"][0]["text"].as_str().unwrap());
    assert_eq!(ev.last().unwrap().0, "message_stop");
    assert_eq!(
        openai.call_count(),
        1,
        "one upstream call for three requests"
    );
}
