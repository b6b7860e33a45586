//! Realtime passthrough end to end: the real binary between a tokio-tungstenite client and a
//! fake Realtime server (OpenAI and Azure shapes). Keys, frames, usage, limits and closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_realtime::{self, FakeRealtime, Frame};
use common::{client, TestGateway};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MASTER: &str = "mk-realtime-master";
const PROVIDER_KEY: &str = "sk-upstream-secret-openai";
const AZURE_KEY: &str = "az-upstream-secret-key";

/// OpenAI, Azure (preview and GA) and mock groups, all realtime ones on `fake`.
fn config(fake: &FakeRealtime, realtime: &str) -> String {
    let b = &fake.base;
    format!(
        "model_list:
  - model_name: rt
    litellm_params: {{model: openai/gpt-realtime-up, api_base: '{b}/v1', api_key: {PROVIDER_KEY}}}
    model_info: {{input_cost_per_token: 0.00001, output_cost_per_token: 0.00002}}
  - model_name: rt-azure
    litellm_params: {{model: azure/rt-dep, api_base: '{b}', api_key: {AZURE_KEY}, api_version: 2025-04-01-preview}}
  - model_name: rt-azure-ga
    litellm_params: {{model: azure/rt-dep-ga, api_base: '{b}', api_key: {AZURE_KEY}}}
  - model_name: chat-mock
    litellm_params: {{model: mock/m}}
general_settings: {{master_key: {MASTER}}}
sluice:
  data_dir: '{{data_dir}}'
  cache: {{enabled: false}}
{realtime}"
    )
}

fn gateway(fake: &FakeRealtime, realtime: &str) -> TestGateway {
    TestGateway::builder()
        .config(config(fake, realtime))
        .spawn()
}

/// Opens `/v1/realtime?{query}` with these headers; the HTTP refusal (status, JSON) otherwise.
async fn open(
    gw: &TestGateway,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<
    (
        Ws,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    (u16, Value),
> {
    let url = format!("{}/v1/realtime?{query}", gw.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(ok) => Ok(ok),
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

async fn open_ok(gw: &TestGateway, query: &str, key: &str) -> Ws {
    let auth = format!("Bearer {key}");
    match open(gw, query, &[("authorization", &auth)]).await {
        Ok((ws, _)) => ws,
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

/// Reads until the close frame, returning its code and reason.
async fn recv_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match recv(ws).await {
            Message::Close(Some(f)) => return (u16::from(f.code), f.reason.to_string()),
            Message::Close(None) => return (1005, String::new()),
            _ => {}
        }
    }
}

/// The value of a Prometheus sample whose line contains every label in `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn admin(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut rb = client().request(method, gw.url(path)).bearer_auth(MASTER);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap().json().await.unwrap()
}

/// A virtual key allowed on `models`; returns its secret.
async fn virtual_key(gw: &TestGateway, models: &[&str]) -> String {
    let b = admin(
        gw,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"alias": "rt-test", "models": models})),
    )
    .await;
    b["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{b}"))
        .to_string()
}

#[tokio::test]
async fn the_provider_key_goes_upstream_and_the_client_key_does_not() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let auth = format!("Bearer {MASTER}");
    let (mut ws, resp) = open(
        &gw,
        "model=rt",
        &[("authorization", &auth), ("openai-beta", "realtime=v1")],
    )
    .await
    .unwrap();
    for (name, value) in resp.headers() {
        let v = value.to_str().unwrap_or("");
        assert!(!v.contains(PROVIDER_KEY), "{name}: {v}");
    }
    ws.send(Message::text(r#"{"type":"session.update"}"#))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::text(r#"{"type":"session.update"}"#)
    );

    let hs = fake.handshakes();
    assert_eq!(hs.len(), 1);
    let h = &hs[0];
    assert_eq!(h.uri, "/v1/realtime?model=gpt-realtime-up");
    assert_eq!(
        h.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    assert_eq!(h.header("openai-beta"), Some("realtime=v1"));
    for (name, value) in &h.headers {
        assert!(!value.contains(MASTER), "client key upstream in {name}");
    }
    assert!(
        !gw.stderr().contains(PROVIDER_KEY),
        "provider key in the logs"
    );
    assert!(!gw.stderr().contains(MASTER), "client key in the logs");
}

#[tokio::test]
async fn text_and_binary_frames_pass_both_ways_untouched_and_pings_are_answered() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;

    let text = r#"{"type":"input_audio_buffer.append","audio":"AAEC/w==","note":"héllo ✓ \u0000"}"#;
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text(text));
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(binary.clone()));

    // A ping is answered by the gateway, not relayed.
    ws.send(Message::Ping(b"are-you-there".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::Pong(b"are-you-there".to_vec().into())
    );

    // A large message (several frames' worth) arrives whole and unchanged.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(big.clone()));

    assert_eq!(
        fake.frames(),
        vec![
            Frame::Text(text.to_string()),
            Frame::Binary(binary),
            Frame::Binary(big)
        ]
    );
    let m = gw.metrics().await;
    assert_eq!(
        sample(
            &m,
            "sluice_realtime_frames_total",
            &["direction=\"to_upstream\""]
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "sluice_realtime_frames_total",
            &["direction=\"to_client\""]
        ),
        Some(3.0)
    );
    assert_eq!(sample(&m, "sluice_realtime_sockets", &[]), Some(1.0));
}

#[tokio::test]
async fn response_done_usage_is_counted_in_metrics_and_spend() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    ws.send(Message::text(r#"{"type":"response.create"}"#))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::text(fake_realtime::response_done()),
        "the event itself is relayed unchanged"
    );
    // The count happens as the event is relayed; allow the scrape to catch up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut m = gw.metrics().await;
    while sample(
        &m,
        "sluice_tokens_total",
        &["model_group=\"rt\"", "direction=\"in\""],
    )
    .is_none()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = gw.metrics().await;
    }
    let tokens = |dir: &str| {
        sample(
            &m,
            "sluice_tokens_total",
            &["model_group=\"rt\"", &format!("direction=\"{dir}\"")],
        )
    };
    assert_eq!(
        tokens("in"),
        Some(fake_realtime::INPUT_TOKENS as f64),
        "{m}"
    );
    assert_eq!(tokens("out"), Some(fake_realtime::OUTPUT_TOKENS as f64));
    let cost = 120.0 * 0.00001 + 45.0 * 0.00002;
    let seen = sample(&m, "sluice_cost_usd_total", &["model_group=\"rt\""]).unwrap();
    assert!((seen - cost).abs() < 1e-9, "{seen}");

    let report = admin(
        &gw,
        reqwest::Method::GET,
        "/admin/spend?group_by=model",
        None,
    )
    .await;
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "rt")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    assert_eq!(row["prompt_tokens"], 120, "{row}");
    assert_eq!(row["completion_tokens"], 45, "{row}");
    assert!(
        (row["spend_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{row}"
    );

    // Each response is an audited request of its own; a refused handshake is one too.
    let (s, _) = open(&gw, "model=rt", &[]).await.unwrap_err();
    assert_eq!(s, 401);
    let page = admin(&gw, reqwest::Method::GET, "/admin/audit?kind=request", None).await;
    let records: Vec<&Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["request"])
        .collect();
    let done = records
        .iter()
        .find(|r| r["status"] == 200)
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(done["endpoint"], "/v1/realtime", "{done}");
    assert_eq!(done["key_id"], "master");
    assert_eq!(done["model_group"], "rt");
    assert_eq!(done["prompt_tokens"], 120);
    assert_eq!(done["completion_tokens"], 45);
    assert!(
        done["request_id"].as_str().unwrap().ends_with(".1"),
        "{done}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 401 && r["key_id"] == "unauthenticated"),
        "{page}"
    );
}

#[tokio::test]
async fn refusals_are_http_errors_before_the_upgrade() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let master = format!("Bearer {MASTER}");

    let (s, b) = open(&gw, "model=rt", &[]).await.unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("missing_api_key")),
        "{b}"
    );
    let (s, b) = open(
        &gw,
        "model=rt",
        &[("authorization", "Bearer sk-sluice-nope")],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{b}"
    );

    let (s, b) = open(&gw, "model=nope", &[("authorization", &master)])
        .await
        .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{b}"
    );

    let (s, b) = open(&gw, "model=chat-mock", &[("authorization", &master)])
        .await
        .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("model_not_supported")),
        "{b}"
    );
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(msg.contains("/v1/realtime"), "{msg}");

    let (s, b) = open(&gw, "", &[("authorization", &master)])
        .await
        .unwrap_err();
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (400, Some("model")),
        "{b}"
    );

    let key = virtual_key(&gw, &["rt-azure"]).await;
    let (s, b) = open(
        &gw,
        "model=rt",
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("model_not_allowed")),
        "{b}"
    );

    // Not an upgrade, or not a GET.
    let r = client()
        .get(gw.url("/v1/realtime?model=rt"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .post(gw.url("/v1/realtime?model=rt"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(fake.handshakes().is_empty(), "nothing reached the provider");
}

#[tokio::test]
async fn the_browser_subprotocol_key_is_accepted_and_never_echoed() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let key = virtual_key(&gw, &["rt"]).await;
    let protocols = format!("realtime, openai-insecure-api-key.{key}, openai-beta.realtime-v1");
    let (mut ws, resp) = open(&gw, "model=rt", &[("sec-websocket-protocol", &protocols)])
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("realtime")
    );
    ws.send(Message::text("{}")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("{}"));
    let h = &fake.handshakes()[0];
    assert_eq!(h.header("openai-beta"), Some("realtime=v1"));
    assert_eq!(
        h.header("authorization"),
        Some(format!("Bearer {PROVIDER_KEY}").as_str())
    );
    for (name, value) in &h.headers {
        assert!(!value.contains(&key), "client key upstream in {name}");
    }
}

#[tokio::test]
async fn an_oversized_client_message_closes_1009_and_the_gateway_keeps_serving() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "  realtime: {max_message_bytes: 1024}\n");
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    ws.send(Message::binary(vec![7u8; 1000])).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(vec![7u8; 1000]));
    ws.send(Message::binary(vec![7u8; 4096])).await.unwrap();
    let (code, _) = recv_close(&mut ws).await;
    assert_eq!(code, 1009);
    assert_eq!(
        fake.wait_ended(1).await,
        1,
        "the upstream socket is closed too"
    );
    assert_eq!(
        fake.frames().len(),
        2,
        "the big message never went upstream"
    );

    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    ws.send(Message::text("again")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("again"));
}

#[tokio::test]
async fn closes_propagate_both_ways_with_their_codes() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");

    // The client closes: the provider sees the same close.
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("hi"));
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    }))
    .await
    .unwrap();
    let frames = fake
        .wait_frames(|f| f.iter().any(|x| matches!(x, Frame::Close(_))))
        .await;
    assert_eq!(
        frames.last(),
        Some(&Frame::Close(Some((1000, "done".to_string()))))
    );
    assert_eq!(fake.wait_ended(1).await, 1);

    // The provider closes: the client gets its code and reason.
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    ws.send(Message::text(r#"{"type":"fake.close"}"#))
        .await
        .unwrap();
    assert_eq!(recv_close(&mut ws).await, (4000, "bye".to_string()));

    // The client just drops its connection: the provider's socket is closed (going away).
    let ws = open_ok(&gw, "model=rt", MASTER).await;
    drop(ws);
    assert_eq!(fake.wait_ended(3).await, 3);
}

#[tokio::test]
async fn azure_deployments_get_their_url_and_api_key_header() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    for group in ["rt-azure", "rt-azure-ga"] {
        let mut ws = open_ok(&gw, &format!("model={group}"), MASTER).await;
        ws.send(Message::text("ping")).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("ping"));
    }
    let hs = fake.handshakes();
    assert_eq!(
        hs[0].uri,
        "/openai/realtime?api-version=2025-04-01-preview&deployment=rt-dep"
    );
    assert_eq!(hs[1].uri, "/openai/v1/realtime?model=rt-dep-ga");
    for h in &hs {
        assert_eq!(h.header("api-key"), Some(AZURE_KEY));
        assert_eq!(h.header("authorization"), None);
    }
}

#[tokio::test]
async fn sockets_per_key_are_limited_before_the_upgrade() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "  realtime: {max_sockets_per_key: 1}\n");
    let key = virtual_key(&gw, &["rt"]).await;
    let auth = format!("Bearer {key}");
    let mut first = open_ok(&gw, "model=rt", &key).await;
    let (s, b) = open(&gw, "model=rt", &[("authorization", &auth)])
        .await
        .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (429, Some("rate_limit_exceeded")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sockets_per_key 1"),
        "{b}"
    );
    // Another key is not affected.
    let _other = open_ok(&gw, "model=rt", MASTER).await;

    first.close(None).await.unwrap();
    // The slot frees once the gateway has closed both sides.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(&gw, "model=rt", &[("authorization", &auth)]).await {
            Ok(_) => break,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_provider_gets_an_error_event_and_close_1011() {
    let fake = FakeRealtime::refusing();
    let gw = gateway(&fake, "");
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    let Message::Text(t) = recv(&mut ws).await else {
        panic!("expected an error event");
    };
    let event: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(event["type"], "error");
    assert_eq!(event["error"]["code"], "upstream_connect_failed");
    let msg = event["error"]["message"].as_str().unwrap();
    assert!(msg.contains("401"), "{msg}");
    assert!(!msg.contains(PROVIDER_KEY), "provider key echoed: {msg}");
    assert_eq!(recv_close(&mut ws).await.0, 1011);
    assert!(!gw.stderr().contains(PROVIDER_KEY));
}

#[tokio::test]
async fn an_idle_socket_is_closed_on_both_sides() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "  realtime: {idle_timeout_seconds: 0.3}\n");
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    assert_eq!(
        recv_close(&mut ws).await,
        (1000, "idle timeout".to_string())
    );
    let frames = fake
        .wait_frames(|f| f.iter().any(|x| matches!(x, Frame::Close(_))))
        .await;
    assert_eq!(
        frames,
        vec![Frame::Close(Some((1000, "idle timeout".to_string())))]
    );
}

#[tokio::test]
async fn a_spent_budget_refuses_new_responses_and_new_sockets() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let b = admin(
        &gw,
        reqwest::Method::POST,
        "/admin/keys",
        Some(json!({"alias": "small", "models": ["rt"], "max_budget": 0.001})),
    )
    .await;
    let key = b["key"]
        .as_str()
        .unwrap_or_else(|| panic!("{b}"))
        .to_string();
    let mut ws = open_ok(&gw, "model=rt", &key).await;
    let create = r#"{"type":"response.create"}"#;
    ws.send(Message::text(create)).await.unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::text(fake_realtime::response_done())
    );
    // That response cost more than the budget: the next one is refused on the socket...
    ws.send(Message::text(
        r#"{"type":"response.create","event_id":"evt_2"}"#,
    ))
    .await
    .unwrap();
    let Message::Text(t) = recv(&mut ws).await else {
        panic!("expected an error event");
    };
    let event: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(event["type"], "error", "{event}");
    assert_eq!(event["error"]["code"], "budget_exceeded", "{event}");
    assert_eq!(event["error"]["event_id"], "evt_2", "{event}");
    // ...which stays usable for everything else.
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("still here"));
    let creates = fake
        .frames()
        .iter()
        .filter(|f| matches!(f, Frame::Text(t) if t.contains("response.create")))
        .count();
    assert_eq!(creates, 1, "the refused event never went upstream");

    // ...and a new socket is refused before the upgrade.
    let auth = format!("Bearer {key}");
    let (s, b) = open(&gw, "model=rt", &[("authorization", &auth)])
        .await
        .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (429, Some("budget_exceeded")),
        "{b}"
    );
}

#[tokio::test]
async fn the_unprefixed_path_works_and_auto_is_not_a_realtime_group() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "");
    let url = format!("{}/realtime?model=rt", gw.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {MASTER}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("x"));

    let auth = format!("Bearer {MASTER}");
    let (s, b) = open(&gw, "model=auto", &[("authorization", &auth)])
        .await
        .unwrap_err();
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("model_not_supported")),
        "{b}"
    );
}

/// A data frame of a fragmented message (`first`: text opcode, else continuation).
fn fragment(data: &[u8], first: bool, last: bool) -> Message {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
    let op = if first { Data::Text } else { Data::Continue };
    Message::Frame(RawFrame::message(data.to_vec(), OpCode::Data(op), last))
}

#[tokio::test]
async fn fragmented_client_messages_are_reassembled_within_the_size_limit() {
    let fake = FakeRealtime::start();
    let gw = gateway(&fake, "  realtime: {max_message_bytes: 64}\n");
    let mut ws = open_ok(&gw, "model=rt", MASTER).await;
    // "wörld" split inside the two-byte 'ö': only the whole message must be valid UTF-8.
    let whole = "hello wörld".as_bytes();
    ws.send(fragment(&whole[..7], true, false)).await.unwrap();
    ws.send(fragment(&whole[7..], false, true)).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("hello wörld"));
    assert_eq!(fake.frames(), vec![Frame::Text("hello wörld".into())]);

    // Fragments each under the limit, together over it.
    ws.send(fragment(&[b'a'; 40], true, false)).await.unwrap();
    ws.send(fragment(&[b'a'; 40], false, true)).await.unwrap();
    assert_eq!(recv_close(&mut ws).await.0, 1009);
    // Only the first message reached the provider (its socket may also have seen the close).
    let data: Vec<Frame> = fake
        .frames()
        .into_iter()
        .filter(|f| !matches!(f, Frame::Close(..)))
        .collect();
    assert_eq!(data, vec![Frame::Text("hello wörld".into())]);
}
