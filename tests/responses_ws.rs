//! The Responses API's WebSocket mode (`GET /v1/responses` with an Upgrade) through the real
//! binary, against a Chat-Completions-only fake upstream: `response.create` events, the same
//! server events as the HTTP stream, `previous_response_id` chains (stored and `store: false`
//! on the same socket), `error` events that leave the socket usable, auth at the handshake,
//! limits per create, cancellation on close and the idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, TestGateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MASTER: &str = "mk-responses-ws";

fn config(fake: &FakeOpenAi, sluice: &str) -> String {
    let mut s = String::from("model_list:\n");
    for m in ["gpt-x", "limited", "fake-slow-stream"] {
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
        "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n  cache: {{enabled: false}}\n  limits:\n    groups: {{limited: {{rpm: 2}}}}\n{sluice}"
    ));
    s
}

fn setup(sluice: &str) -> (FakeOpenAi, TestGateway) {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder().config(config(&fake, sluice)).spawn();
    (fake, gw)
}

/// Opens `path` as a WebSocket with these headers; the HTTP refusal (status, JSON) otherwise.
async fn open(gw: &TestGateway, path: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, Value)> {
    let url = format!("{}{path}", gw.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

async fn open_ok(gw: &TestGateway) -> Ws {
    let auth = format!("Bearer {MASTER}");
    match open(gw, "/v1/responses", &[("authorization", &auth)]).await {
        Ok(ws) => ws,
        Err((s, b)) => panic!("refused {s}: {b}"),
    }
}

/// The next message from the gateway (10 s at most).
async fn recv(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no message within 10 s")
        .expect("socket ended")
        .expect("socket error")
}

/// The next text frame, as JSON.
async fn recv_event(ws: &mut Ws) -> Value {
    loop {
        match recv(ws).await {
            Message::Text(t) => {
                return serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, event: Value) {
    ws.send(Message::text(event.to_string())).await.unwrap();
}

/// The events of one response, through its final one (or a lone `error` event).
async fn response_events(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let e = recv_event(ws).await;
        let kind = e["type"].as_str().unwrap_or_default().to_string();
        let lone_error = kind == "error" && out.is_empty() && e.get("sequence_number").is_none();
        out.push(e);
        if lone_error
            || matches!(
                kind.as_str(),
                "response.completed" | "response.incomplete" | "response.failed"
            )
        {
            return out;
        }
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect()
}

fn final_response(events: &[Value]) -> Value {
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{events:?}");
    last["response"].clone()
}

fn output_text(response: &Value) -> String {
    response["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn two_turns_on_one_socket_chain_with_previous_response_id() {
    let (fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "My name is Ada.",
               "instructions": "Be brief."}),
    )
    .await;
    let first = response_events(&mut ws).await;
    // The same event sequence as the HTTP stream, numbered from 0.
    let k = kinds(&first);
    assert_eq!(
        &k[..5],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta"
        ]
    );
    assert_eq!(
        &k[k.len() - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, e) in first.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64, "{e}");
    }
    let r1 = final_response(&first);
    assert_eq!(output_text(&r1), "You said: My name is Ada.");
    assert_eq!(r1["status"], "completed");
    assert_eq!(r1["store"], true);

    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "What is my name?",
               "previous_response_id": r1["id"]}),
    )
    .await;
    let second = response_events(&mut ws).await;
    assert_eq!(second[0]["sequence_number"], 0);
    let r2 = final_response(&second);
    assert_eq!(r2["previous_response_id"], r1["id"]);
    assert_ne!(r2["id"], r1["id"]);
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body["stream"], true);
    assert_eq!(
        calls[1].body["messages"],
        json!([
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "You said: My name is Ada."},
            {"role": "user", "content": "What is my name?"}
        ])
    );
    // Stored as over HTTP.
    let got = client()
        .get(gw.url(&format!("/v1/responses/{}", r2["id"].as_str().unwrap())))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["id"], r2["id"]);
    assert_eq!(output_text(&got), "You said: What is my name?");
}

#[tokio::test]
async fn store_false_continues_on_the_same_socket_only() {
    let (fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "The code is 42.", "store": false}),
    )
    .await;
    let r1 = final_response(&response_events(&mut ws).await);
    assert_eq!(r1["store"], false);
    let id1 = r1["id"].as_str().unwrap().to_string();
    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "What is the code?",
               "previous_response_id": id1, "store": false}),
    )
    .await;
    let events = response_events(&mut ws).await;
    let r2 = final_response(&events);
    assert_eq!(events[0]["response"]["previous_response_id"], id1.as_str());
    assert_eq!(r2["previous_response_id"], id1.as_str());
    let id2 = r2["id"].as_str().unwrap().to_string();
    // A third turn chains through both in-memory responses.
    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "Thanks.",
               "previous_response_id": id2, "store": false}),
    )
    .await;
    final_response(&response_events(&mut ws).await);
    let calls = fake.calls();
    assert_eq!(
        calls[2].body["messages"],
        json!([
            {"role": "user", "content": "The code is 42."},
            {"role": "assistant", "content": "You said: The code is 42."},
            {"role": "user", "content": "What is the code?"},
            {"role": "assistant", "content": "You said: What is the code?"},
            {"role": "user", "content": "Thanks."}
        ])
    );
    // Nothing was stored: neither HTTP nor another socket can continue it.
    let got = client()
        .get(gw.url(&format!("/v1/responses/{id1}")))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 404);
    let mut other = open_ok(&gw).await;
    send(
        &mut other,
        json!({"type": "response.create", "model": "gpt-x", "input": "again",
               "previous_response_id": id1}),
    )
    .await;
    let e = recv_event(&mut other).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["status"], 404);
    assert_eq!(e["error"]["code"], "previous_response_not_found");
    assert_eq!(e["error"]["param"], "previous_response_id");
    assert_eq!(
        fake.call_count(),
        3,
        "the refused continuation never went upstream"
    );
}

#[tokio::test]
async fn bad_events_get_error_events_and_the_socket_stays_usable() {
    let (fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    ws.send(Message::text("{this is not json")).await.unwrap();
    let e = recv_event(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["status"], 400);
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["code"], "invalid_json");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));

    send(&mut ws, json!({"type": "session.update", "session": {}})).await;
    let e = recv_event(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "unknown_event_type");
    assert_eq!(e["error"]["param"], "type");

    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "hi", "temperature": "hot"}),
    )
    .await;
    let e = recv_event(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert_eq!(e["error"]["param"], "temperature");

    send(
        &mut ws,
        json!({"type": "response.create", "model": "no-such-model", "input": "hi"}),
    )
    .await;
    let e = recv_event(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["status"].as_u64().unwrap() >= 400);
    assert_eq!(fake.call_count(), 0);

    // Pings are answered.
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    match recv(&mut ws).await {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }

    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "still there?"}),
    )
    .await;
    let r = final_response(&response_events(&mut ws).await);
    assert_eq!(output_text(&r), "You said: still there?");
}

#[tokio::test]
async fn a_rate_limited_create_gets_an_error_event() {
    let (_fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    for i in 0..2 {
        send(
            &mut ws,
            json!({"type": "response.create", "model": "limited", "input": format!("n{i}")}),
        )
        .await;
        final_response(&response_events(&mut ws).await);
    }
    send(
        &mut ws,
        json!({"type": "response.create", "model": "limited", "input": "n3"}),
    )
    .await;
    let e = recv_event(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["status"], 429);
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    // Another group still answers on the same socket.
    send(
        &mut ws,
        json!({"type": "response.create", "model": "gpt-x", "input": "ok"}),
    )
    .await;
    final_response(&response_events(&mut ws).await);

    // Each response on the socket is an audited request of its own, refusals included.
    let records = common::audit_records(&gw, MASTER, "kind=request", 4).await;
    let mut turns: Vec<&Value> = records.iter().map(|r| &r["request"]).collect();
    turns.sort_by_key(|r| r["request_id"].as_str().unwrap().to_string());
    let statuses: Vec<u64> = turns
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 200, 429, 200], "{records:?}");
    let first_id = turns[0]["request_id"].as_str().unwrap();
    let socket_id = first_id.strip_suffix(".1").unwrap();
    for (i, r) in turns.iter().enumerate() {
        assert_eq!(r["request_id"], format!("{socket_id}.{}", i + 1));
        assert_eq!(r["endpoint"], "/v1/responses (websocket)");
        assert_eq!(r["key_id"], "master");
    }
    assert_eq!(turns[3]["model_group"], "gpt-x");
    assert!(
        turns[3]["prompt_tokens"].as_u64().unwrap() > 0,
        "{:?}",
        turns[3]
    );
}

#[tokio::test]
async fn the_handshake_needs_a_key_and_an_upgrade() {
    let (_fake, gw) = setup("");
    let (status, body) = open(&gw, "/v1/responses", &[]).await.err().unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let (status, _) = open(&gw, "/responses", &[("authorization", "Bearer wrong-key")])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    // The unprefixed path serves the WebSocket mode too.
    let auth = format!("Bearer {MASTER}");
    assert!(open(&gw, "/responses", &[("authorization", &auth)])
        .await
        .is_ok());
    // A plain GET is still not a method of /v1/responses.
    let plain = client()
        .get(gw.url("/v1/responses"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 405);
}

#[tokio::test]
async fn closing_the_socket_cancels_the_response_in_flight() {
    let (fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    send(
        &mut ws,
        json!({"type": "response.create", "model": "fake-slow-stream", "input": "go"}),
    )
    .await;
    loop {
        let e = recv_event(&mut ws).await;
        if e["type"] == "response.output_text.delta" {
            break;
        }
    }
    ws.close(None).await.unwrap();
    drop(ws);
    let mut cancelled = 0;
    for _ in 0..50 {
        cancelled = fake.shared.streams_cancelled.load(Ordering::SeqCst);
        if cancelled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cancelled, 1, "the upstream stream was not dropped");
    assert_eq!(fake.shared.streams_completed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn idle_sockets_are_closed_and_big_messages_refused() {
    let (_fake, gw) = setup("  realtime: {idle_timeout_seconds: 0.5, max_message_bytes: 4096}\n");
    let mut ws = open_ok(&gw).await;
    match recv(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1000),
        other => panic!("expected a close, got {other:?}"),
    }
    let mut ws = open_ok(&gw).await;
    let big = json!({"type": "response.create", "model": "gpt-x", "input": "x".repeat(10_000)});
    send(&mut ws, big).await;
    match recv(&mut ws).await {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1009),
        other => panic!("expected a close, got {other:?}"),
    }
}

/// `data` of every SSE event of an HTTP response body.
fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// An event with its per-response values (ids, timestamps) blanked, for comparison.
fn masked(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if matches!(k.as_str(), "id" | "item_id" | "created_at" | "completed_at") {
                        *x = Value::Null;
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

#[tokio::test]
async fn the_socket_sends_the_events_of_the_http_stream() {
    let (_fake, gw) = setup("");
    let body = json!({"model": "gpt-x", "input": "Same events please.", "metadata": {"k": "v"}});
    let mut http_body = body.clone();
    http_body["stream"] = json!(true);
    let http = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(MASTER)
        .json(&http_body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let http: Vec<Value> = sse_data(&http).into_iter().map(masked).collect();
    let mut ws = open_ok(&gw).await;
    let mut create = body.clone();
    create["type"] = json!("response.create");
    send(&mut ws, create).await;
    let events: Vec<Value> = response_events(&mut ws)
        .await
        .into_iter()
        .map(masked)
        .collect();
    assert!(http.len() > 5);
    assert_eq!(events, http);
}

#[tokio::test]
async fn creates_sent_back_to_back_run_one_after_another() {
    let (fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    for word in ["one", "two", "three"] {
        send(
            &mut ws,
            json!({"type": "response.create", "model": "gpt-x", "input": word, "store": false}),
        )
        .await;
    }
    for word in ["one", "two", "three"] {
        let events = response_events(&mut ws).await;
        assert_eq!(events[0]["type"], "response.created");
        assert_eq!(events[0]["sequence_number"], 0);
        assert_eq!(
            output_text(&final_response(&events)),
            format!("You said: {word}")
        );
    }
    assert_eq!(fake.call_count(), 3);
}

#[tokio::test]
async fn sockets_per_key_are_limited() {
    let (_fake, gw) = setup("  realtime: {max_sockets_per_key: 1}\n");
    let mut first = open_ok(&gw).await;
    let auth = format!("Bearer {MASTER}");
    let (status, body) = open(&gw, "/v1/responses", &[("authorization", &auth)])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    first.close(None).await.unwrap();
    // The place is given back once the socket is gone.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(ws) = open(&gw, "/v1/responses", &[("authorization", &auth)]).await {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "the socket's place was not freed");
}

#[tokio::test]
async fn native_deployments_stream_their_events_on_the_socket() {
    let (fake, gw) = setup("");
    let mut ws = open_ok(&gw).await;
    send(
        &mut ws,
        json!({"type": "response.create", "model": "native", "input": "hi native",
               "store": false, "x_vendor": {"kept": 1}}),
    )
    .await;
    let first = response_events(&mut ws).await;
    assert_eq!(first[0]["type"], "response.created");
    let r1 = final_response(&first);
    assert_eq!(output_text(&r1), "You said: hi native");
    let sent = &fake.calls()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["x_vendor"], json!({"kept": 1}));
    assert!(sent.get("type").is_none(), "{sent}");
    // A store:false continuation is spelled out from the socket's memory.
    send(
        &mut ws,
        json!({"type": "response.create", "model": "native", "input": "and again",
               "previous_response_id": r1["id"], "store": false}),
    )
    .await;
    let r2 = final_response(&response_events(&mut ws).await);
    assert_eq!(r2["previous_response_id"], r1["id"]);
    assert_eq!(output_text(&r2), "You said: and again");
    let sent = &fake.calls()[1].body;
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    let input = sent["input"].as_array().unwrap();
    assert_eq!(input.len(), 3, "{sent}");
    assert_eq!(input[0]["content"][0]["text"], "hi native");
    assert_eq!(input[1]["role"], "assistant");
    assert!(input[1].get("id").is_none(), "{sent}");
    assert_eq!(input[2]["content"][0]["text"], "and again");
}
