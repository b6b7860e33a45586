//! The Responses API over HTTP through the real binary: translation to a Chat-Completions-only
//! fake upstream (JSON and SSE), function tools, `previous_response_id` chains rebuilt from
//! Sluice's store, stored responses and their owners, the cache, and native passthrough.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};

const MASTER: &str = "mk-responses";

fn config(fake: &FakeOpenAi, sluice: &str) -> String {
    let mut s = String::from("model_list:\n");
    for m in ["gpt-x", "fake-tool", "fake-broken-stream", "fake-400"] {
        s.push_str(&format!(
            "  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n      api_base: {}/v1\n      api_key: sk-upstream-secret\n",
            fake.base
        ));
    }
    s.push_str(&format!(
        "  - model_name: native\n    litellm_params:\n      model: openai/gpt-native\n      api_base: {}/v1\n      api_key: sk-upstream-secret\n    model_info:\n      responses_native: true\n",
        fake.base
    ));
    s.push_str(&format!(
        "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n{sluice}"
    ));
    s
}

fn setup() -> (FakeOpenAi, TestGateway) {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config(&fake, "  cache: {enabled: false}\n"))
        .spawn();
    (fake, gw)
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn call(
    gw: &TestGateway,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut rb = client().request(method, gw.url(path)).bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

async fn create(gw: &TestGateway, body: Value) -> Answer {
    call(gw, MASTER, Method::POST, "/v1/responses", Some(body)).await
}

/// Parses Responses SSE into `(event name, data)`, checking that the two agree.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap_or_else(|| panic!("no event line: {e}"))
                .to_string();
            let data: Value =
                serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                    .unwrap();
            assert_eq!(data["type"], name.as_str(), "{e}");
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_text_response_through_a_chat_upstream() {
    let (fake, gw) = setup();
    let a = create(
        &gw,
        json!({"model": "gpt-x", "input": "Hello there", "instructions": "Be brief.",
               "max_output_tokens": 64, "temperature": 0.3, "metadata": {"ticket": "42"},
               "some_future_field": {"ignored": true}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["x-sluice-cache"], "bypass");
    assert!(a.headers["x-sluice-route"]
        .to_str()
        .unwrap()
        .starts_with("gpt-x"));
    let r = a.json();
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], "gpt-x");
    assert_eq!(r["instructions"], "Be brief.");
    assert_eq!(r["max_output_tokens"], 64);
    assert_eq!(r["temperature"], 0.3);
    assert_eq!(r["metadata"], json!({"ticket": "42"}));
    assert_eq!(r["store"], true);
    assert_eq!(r["error"], Value::Null);
    assert_eq!(r["incomplete_details"], Value::Null);
    let item = &r["output"][0];
    assert_eq!(item["type"], "message");
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["status"], "completed");
    assert!(item["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        item["content"][0],
        json!({"type": "output_text", "text": "You said: Hello there", "annotations": [], "logprobs": []})
    );
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
               "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 16})
    );
    // The upstream saw a chat request: instructions as the system message, the rest mapped.
    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/v1/chat/completions");
    let sent = &calls[0].body;
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}])
    );
    assert_eq!(sent["max_completion_tokens"], 64);
    assert_eq!(sent["temperature"], 0.3);
    for absent in [
        "metadata",
        "store",
        "some_future_field",
        "input",
        "instructions",
    ] {
        assert!(sent.get(absent).is_none(), "{absent} was sent: {sent}");
    }
}

#[tokio::test]
async fn streaming_sends_the_response_events_in_order() {
    let (fake, gw) = setup();
    let a = create(
        &gw,
        json!({"model": "gpt-x", "input": [{"role": "user", "content": "stream me please"}], "stream": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    let ev = events(&a.text);
    let n = names(&ev);
    assert_eq!(
        &n[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        &n[n.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    assert!(n[4..n.len() - 4]
        .iter()
        .all(|e| *e == "response.output_text.delta"));
    for (i, (_, d)) in ev.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
    }
    let deltas: String = ev
        .iter()
        .filter_map(|(_, d)| d.get("delta").and_then(Value::as_str))
        .collect();
    assert_eq!(deltas, "You said: stream me please");
    assert_eq!(ev[n.len() - 4].1["text"], deltas.as_str());
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(output_text(done), deltas);
    assert_eq!(done["usage"]["total_tokens"], 16);
    assert_eq!(ev[0].1["response"]["id"], done["id"]);
    assert_eq!(ev[0].1["response"]["status"], "in_progress");
    // Usage was asked for upstream so that the final event carries it.
    assert_eq!(
        fake.calls()[0].body["stream_options"]["include_usage"],
        true
    );
    // What was streamed is what is stored.
    let id = done["id"].as_str().unwrap();
    let got = call(
        &gw,
        MASTER,
        Method::GET,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(&got.json(), done);
}

#[tokio::test]
async fn a_function_tool_round_trip() {
    let (fake, gw) = setup();
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}, "strict": true}]);
    let first = create(
        &gw,
        json!({"model": "fake-tool", "input": "Weather in Paris?", "tools": tools, "tool_choice": "auto"}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let r = first.json();
    assert_eq!(r["tools"], tools);
    let call_item = &r["output"][0];
    assert_eq!(call_item["type"], "function_call");
    assert_eq!(call_item["name"], "get_weather");
    assert_eq!(call_item["call_id"], "call_fake1");
    assert_eq!(call_item["status"], "completed");
    assert!(call_item["id"].as_str().unwrap().starts_with("fc_"));
    let args: Value = serde_json::from_str(call_item["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"q": "Weather in Paris?"}));
    assert_eq!(
        fake.calls()[0].body["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}, "strict": true}}])
    );

    // The tool's result goes back as a function_call_output continuing the response.
    let second = create(
        &gw,
        json!({"model": "fake-tool", "previous_response_id": r["id"], "tools": tools,
               "input": [{"type": "function_call_output", "call_id": "call_fake1", "output": "18C and sunny"}]}),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.text);
    let r2 = second.json();
    assert_eq!(output_text(&r2), "Tool said: 18C and sunny");
    assert_eq!(r2["previous_response_id"], r["id"]);
    let sent = &fake.calls()[1].body["messages"];
    assert_eq!(
        sent,
        &json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_fake1", "type": "function",
                "function": {"name": "get_weather", "arguments": call_item["arguments"]}}]},
            {"role": "tool", "content": "18C and sunny", "tool_call_id": "call_fake1"}
        ])
    );

    // Streamed, the call arrives as argument deltas.
    let s = create(
        &gw,
        json!({"model": "fake-tool", "input": "Weather in Rome?", "tools": tools, "stream": true}),
    )
    .await;
    let ev = events(&s.text);
    let n = names(&ev);
    assert_eq!(
        n,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let args: String = ev[3..5]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(ev[5].1["arguments"], args.as_str());
    assert_eq!(
        ev.last().unwrap().1["response"]["output"][0]["arguments"],
        args.as_str()
    );
}

#[tokio::test]
async fn previous_response_id_rebuilds_the_conversation() {
    let (fake, gw) = setup();
    let r1 = create(
        &gw,
        json!({"model": "gpt-x", "input": "My name is Ada.", "instructions": "First instructions."}),
    )
    .await
    .json();
    let r2 = create(
        &gw,
        json!({"model": "gpt-x", "input": "I live in Paris.", "previous_response_id": r1["id"], "stream": true}),
    )
    .await;
    let r2 = events(&r2.text).last().unwrap().1["response"].clone();
    assert_eq!(r2["previous_response_id"], r1["id"]);
    let r3 = create(
        &gw,
        json!({"model": "gpt-x", "input": "What is my name?", "previous_response_id": r2["id"],
               "instructions": "Third instructions."}),
    )
    .await;
    assert_eq!(r3.status, 200, "{}", r3.text);
    // The chat upstream received the whole history; instructions are not carried over.
    let calls = fake.calls();
    assert_eq!(
        calls[2].body["messages"],
        json!([
            {"role": "system", "content": "Third instructions."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "You said: My name is Ada."},
            {"role": "user", "content": "I live in Paris."},
            {"role": "assistant", "content": "You said: I live in Paris."},
            {"role": "user", "content": "What is my name?"}
        ])
    );
    // input_items of the last response: the whole resolved chain, newest first by default.
    let id = r3.json()["id"].as_str().unwrap().to_string();
    let items = call(
        &gw,
        MASTER,
        Method::GET,
        &format!("/v1/responses/{id}/input_items"),
        None,
    )
    .await
    .json();
    assert_eq!(items["object"], "list");
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 5);
    assert_eq!(data[0]["content"][0]["text"], "What is my name?");
    assert_eq!(data[4]["content"][0]["text"], "My name is Ada.");
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(items["first_id"], data[0]["id"]);
    assert_eq!(items["last_id"], data[4]["id"]);
    assert_eq!(items["has_more"], false);
}

#[tokio::test]
async fn store_false_responses_cannot_be_continued() {
    let (fake, gw) = setup();
    let r = create(
        &gw,
        json!({"model": "gpt-x", "input": "secret", "store": false}),
    )
    .await
    .json();
    assert_eq!(r["store"], false);
    let id = r["id"].as_str().unwrap();
    let a = create(
        &gw,
        json!({"model": "gpt-x", "input": "again", "previous_response_id": id}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(
        a.json(),
        json!({"error": {"message": format!("Previous response with id '{id}' not found."),
            "type": "invalid_request_error", "param": "previous_response_id", "code": "previous_response_not_found"}})
    );
    let got = call(
        &gw,
        MASTER,
        Method::GET,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(got.status, 404);
    assert_eq!(
        fake.call_count(),
        1,
        "the failed continuation never went upstream"
    );
}

#[tokio::test]
async fn get_delete_and_input_items() {
    let (_fake, gw) = setup();
    let r = create(
        &gw,
        json!({"model": "gpt-x", "input": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": [{"type": "input_text", "text": "three"}]}
        ]}),
    )
    .await
    .json();
    let id = r["id"].as_str().unwrap();
    let got = call(&gw, MASTER, Method::GET, &format!("/responses/{id}"), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), r);

    let path = format!("/v1/responses/{id}/input_items");
    let all = call(&gw, MASTER, Method::GET, &format!("{path}?order=asc"), None)
        .await
        .json();
    let texts: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(all["data"][0]["type"], "message");
    assert_eq!(all["data"][1]["content"][0]["type"], "output_text");
    let first = all["data"][0]["id"].as_str().unwrap();
    let page = call(
        &gw,
        MASTER,
        Method::GET,
        &format!("{path}?order=asc&limit=1&after={first}"),
        None,
    )
    .await
    .json();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["content"][0]["text"], "two");
    assert_eq!(page["has_more"], true);
    let bad = call(&gw, MASTER, Method::GET, &format!("{path}?limit=500"), None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "limit");

    let del = call(
        &gw,
        MASTER,
        Method::DELETE,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(del.status, 200);
    assert_eq!(
        del.json(),
        json!({"id": id, "object": "response", "deleted": true})
    );
    for (m, p) in [
        (Method::GET, format!("/v1/responses/{id}")),
        (Method::DELETE, format!("/v1/responses/{id}")),
        (Method::GET, path.clone()),
    ] {
        let a = call(&gw, MASTER, m, &p, None).await;
        assert_eq!(a.status, 404, "{p}");
        assert_eq!(
            a.json()["error"]["message"],
            format!("Response with id '{id}' not found.")
        );
    }
    let a = call(
        &gw,
        MASTER,
        Method::PUT,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(a.status, 405);
    let a = call(
        &gw,
        "wrong-key",
        Method::GET,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn another_key_cannot_see_or_continue_a_response() {
    let (_fake, gw) = setup();
    let k = call(
        &gw,
        MASTER,
        Method::POST,
        "/admin/keys",
        Some(json!({"alias": "other"})),
    )
    .await;
    assert_eq!(k.status, 201, "{}", k.text);
    let other = k.json()["key"].as_str().unwrap().to_string();

    let mine = create(&gw, json!({"model": "gpt-x", "input": "mine"}))
        .await
        .json();
    let id = mine["id"].as_str().unwrap();
    for (m, p) in [
        (Method::GET, format!("/v1/responses/{id}")),
        (Method::GET, format!("/v1/responses/{id}/input_items")),
        (Method::DELETE, format!("/v1/responses/{id}")),
    ] {
        let a = call(&gw, &other, m, &p, None).await;
        assert_eq!(a.status, 404, "{p}: {}", a.text);
    }
    let a = call(
        &gw,
        &other,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "gpt-x", "input": "x", "previous_response_id": id})),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "previous_response_not_found");

    // The other key's own responses are its own; the master does not see them either.
    let theirs = call(
        &gw,
        &other,
        Method::POST,
        "/v1/responses",
        Some(json!({"model": "gpt-x", "input": "theirs"})),
    )
    .await;
    assert_eq!(theirs.status, 200, "{}", theirs.text);
    let tid = theirs.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(
            &gw,
            &other,
            Method::GET,
            &format!("/v1/responses/{tid}"),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(
            &gw,
            MASTER,
            Method::GET,
            &format!("/v1/responses/{tid}"),
            None
        )
        .await
        .status,
        404
    );
    // And the owner still has it after the failed delete.
    assert_eq!(
        call(
            &gw,
            MASTER,
            Method::GET,
            &format!("/v1/responses/{id}"),
            None
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let (fake, gw) = setup();
    let cases = [
        (
            json!({"model": "gpt-x", "input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"type": "x"}]}),
            400,
            "input[2].type",
        ),
        (json!({"model": "gpt-x", "input": 5}), 400, "input"),
        (json!({"model": "gpt-x"}), 400, "input"),
        (
            json!({"model": "gpt-x", "input": "q", "tools": [{"type": "web_search"}]}),
            400,
            "tools[0].type",
        ),
        (
            json!({"model": "gpt-x", "input": "q", "text": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
            400,
            "text.format.name",
        ),
        (
            json!({"model": "gpt-x", "input": "q", "max_output_tokens": "lots"}),
            400,
            "max_output_tokens",
        ),
        (json!({"model": "nope", "input": "q"}), 404, "model"),
    ];
    for (body, status, param) in cases {
        let a = create(&gw, body.clone()).await;
        assert_eq!(a.status, status, "{body}: {}", a.text);
        let e = a.json();
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
        assert!(e["error"]["message"].is_string());
    }
    let e = create(
        &gw,
        json!({"model": "gpt-x", "input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"type": "x"}]}),
    )
    .await
    .json();
    assert_eq!(
        e["error"]["message"],
        "input[2].type: unknown item type \"x\""
    );
    // An upstream 400 keeps its status and OpenAI shape.
    let a = create(&gw, json!({"model": "fake-400", "input": "q"})).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["param"], "temperature");
    assert_eq!(
        fake.call_count(),
        1,
        "only the fake-400 request went upstream"
    );
}

#[tokio::test]
async fn a_broken_upstream_stream_fails_the_response() {
    let (_fake, gw) = setup();
    let a = create(
        &gw,
        json!({"model": "fake-broken-stream", "input": "q", "stream": true}),
    )
    .await;
    assert_eq!(a.status, 200);
    let ev = events(&a.text);
    let n = names(&ev);
    assert_eq!(&n[n.len() - 2..], ["error", "response.failed"], "{n:?}");
    assert!(!n.contains(&"response.completed"));
    let failed = &ev.last().unwrap().1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
}

#[tokio::test]
async fn native_deployments_get_the_body_passed_through() {
    let (fake, gw) = setup();
    let a = create(
        &gw,
        json!({"model": "native", "input": "hi native", "include": ["reasoning.encrypted_content"],
               "tools": [{"type": "web_search"}], "x_vendor": {"kept": 1}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let r = a.json();
    assert_eq!(output_text(&r), "You said: hi native");
    let calls = fake.calls();
    assert_eq!(calls[0].path, "/v1/responses");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer sk-upstream-secret")
    );
    let sent = &calls[0].body;
    assert_eq!(sent["model"], "gpt-native");
    assert_eq!(sent["input"], "hi native");
    assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(sent["tools"], json!([{"type": "web_search"}]));
    assert_eq!(sent["x_vendor"], json!({"kept": 1}));

    // A continuation is spelled out from Sluice's store; the upstream never sees the id.
    let b = create(
        &gw,
        json!({"model": "native", "input": "and again", "previous_response_id": r["id"], "stream": true}),
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.text);
    let ev = events(&b.text);
    let done = &ev.last().unwrap().1;
    assert_eq!(done["type"], "response.completed");
    assert_eq!(done["response"]["previous_response_id"], r["id"]);
    assert_eq!(output_text(&done["response"]), "You said: and again");
    let sent = &fake.calls()[1].body;
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    let input = sent["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{sent}");
    assert_eq!(input[0]["content"][0]["text"], "hi native");
    assert_eq!(input[1]["role"], "assistant");
    assert_eq!(input[2]["content"][0]["text"], "and again");
    // Stored like any other response.
    let id = done["response"]["id"].as_str().unwrap();
    let got = call(
        &gw,
        MASTER,
        Method::GET,
        &format!("/v1/responses/{id}"),
        None,
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), done["response"]);
}

#[tokio::test]
async fn identical_creates_hit_the_cache_and_other_chains_do_not() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder().config(config(&fake, "")).spawn();
    let body = json!({"model": "gpt-x", "input": "What is the boiling point of water at sea level?",
                      "instructions": "Answer in one sentence."});
    let a = create(&gw, body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["x-sluice-cache"], "miss");
    let b = create(&gw, body.clone()).await;
    assert_eq!(b.headers["x-sluice-cache"], "hit-exact");
    assert_eq!(fake.call_count(), 1);
    let (ra, rb) = (a.json(), b.json());
    assert_ne!(ra["id"], rb["id"]);
    assert_eq!(output_text(&ra), output_text(&rb));
    assert_eq!(rb["status"], "completed");

    // A streamed hit replays as the same event sequence a live response produces.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let s = create(&gw, streamed).await;
    assert_eq!(s.headers["x-sluice-cache"], "hit-exact");
    let ev = events(&s.text);
    assert_eq!(ev.first().unwrap().0, "response.created");
    assert_eq!(ev.last().unwrap().0, "response.completed");
    assert_eq!(
        output_text(&ev.last().unwrap().1["response"]),
        output_text(&ra)
    );
    assert_eq!(fake.call_count(), 1);

    // The same question behind a different chain is a different conversation: no hit.
    let prev = create(
        &gw,
        json!({"model": "gpt-x", "input": "We are on Mount Everest."}),
    )
    .await
    .json();
    assert_eq!(fake.call_count(), 2);
    let mut chained = body.clone();
    chained["previous_response_id"] = prev["id"].clone();
    let c = create(&gw, chained).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.headers["x-sluice-cache"], "miss");
    assert_eq!(fake.call_count(), 3);
    // Nor do other instructions.
    let mut other = body.clone();
    other["instructions"] = json!("Answer in French.");
    let d = create(&gw, other).await;
    assert_eq!(d.headers["x-sluice-cache"], "miss");
    assert_eq!(fake.call_count(), 4);
}

#[tokio::test]
async fn native_answers_are_cached_and_replayed_as_responses() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder().config(config(&fake, "")).spawn();
    let body = json!({"model": "native", "input": "What is the capital of Portugal?"});
    let a = create(&gw, body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["x-sluice-cache"], "miss");
    assert_eq!(fake.calls()[0].path, "/v1/responses");
    // Stored before the first answer was sent: the second is a hit, with no upstream call.
    let b = create(&gw, body.clone()).await;
    assert_eq!(b.headers["x-sluice-cache"], "hit-exact", "{}", b.text);
    let upstream_calls = fake.call_count();
    assert_eq!(upstream_calls, 1);
    let (ra, rb) = (a.json(), b.json());
    assert_ne!(ra["id"], rb["id"]);
    assert_eq!(output_text(&rb), output_text(&ra));
    assert_eq!(rb["status"], "completed");
    // Streamed, the hit is the event sequence of a live response; nothing goes upstream.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let s = create(&gw, streamed).await;
    assert_eq!(s.headers["x-sluice-cache"], "hit-exact");
    let ev = events(&s.text);
    assert_eq!(ev.first().unwrap().0, "response.created");
    assert_eq!(ev.last().unwrap().0, "response.completed");
    assert_eq!(
        output_text(&ev.last().unwrap().1["response"]),
        output_text(&ra)
    );
    assert_eq!(fake.call_count(), upstream_calls);
    // Hosted tools have no chat form: passed through, never cached.
    let hosted = json!({"model": "native", "input": "What is the capital of Portugal?",
                        "tools": [{"type": "web_search"}]});
    let h = create(&gw, hosted).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.headers["x-sluice-cache"], "bypass");
    assert_eq!(fake.call_count(), upstream_calls + 1);
}

#[tokio::test]
async fn native_calls_count_against_the_key_limits() {
    let (fake, gw) = setup();
    let k = call(
        &gw,
        MASTER,
        Method::POST,
        "/admin/keys",
        Some(json!({"rpm": 1})),
    )
    .await;
    assert_eq!(k.status, 201, "{}", k.text);
    let key = k.json()["key"].as_str().unwrap().to_string();
    let body = json!({"model": "native", "input": "once"});
    let first = call(&gw, &key, Method::POST, "/v1/responses", Some(body.clone())).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let second = call(&gw, &key, Method::POST, "/v1/responses", Some(body)).await;
    assert_eq!(second.status, 429, "{}", second.text);
    assert_eq!(fake.call_count(), 1);
}

#[tokio::test]
async fn native_requests_keep_masked_bodies_with_log_bodies() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config(&fake, "  audit: {log_bodies: true}\n"))
        .spawn();
    let input = "write to ann@example.com";
    // A miss as JSON, a miss streamed (another prompt), then a cache hit of the first.
    for (text, stream) in [
        (input, false),
        ("and bob@example.com", true),
        (input, false),
    ] {
        let a = create(
            &gw,
            json!({"model": "native", "input": text, "stream": stream}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    assert_eq!(fake.call_count(), 2, "the third request is a hit");
    let records = common::audit_records(&gw, MASTER, "kind=request", 3).await;
    assert_eq!(records.len(), 3, "{records:?}");
    let mut outcomes = Vec::new();
    for r in &records {
        let body = &r["request"]["body"];
        let prompt = body["prompt"].to_string();
        assert!(prompt.contains("[EMAIL_1]"), "{body}");
        let answer = body["answer"].to_string();
        assert!(answer.contains("You said:"), "{body}");
        assert!(!r.to_string().contains("@example.com"), "{r}");
        outcomes.push(r["request"]["cache_outcome"].as_str().unwrap().to_string());
    }
    outcomes.sort();
    assert_eq!(outcomes, ["hit-exact", "miss", "miss"], "{records:?}");
}
