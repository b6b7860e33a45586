//! Responses API: per-turn latency of a 20-turn tool-call loop (each turn returns the previous
//! call's `function_call_output`, chained with `previous_response_id`, and gets the next call),
//! over one WebSocket vs 20 streamed HTTP requests, and the added latency of the Responses
//! translation (`/v1/responses` vs `/v1/chat/completions` to the same fast upstream).
//! Starts the release `sluice` and `sluice-mock-upstream` binaries itself.
//! `cargo bench --bench responses_loop` (env `SLUICE_BENCH_ROUNDS`, default 20 conversations).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "sk-bench-responses";
const TURNS: usize = 20;

/// Starts a binary and returns it with the http:// address it announces on stdout.
fn start(cmd: &mut Command, pattern: &str) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix(pattern) {
            return (child, addr.trim().to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{pattern} never printed");
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
}

/// The function tool every turn offers; the benchmark upstream always calls it.
fn tools() -> Value {
    json!([{"type": "function", "name": "step", "description": "Runs one step.",
            "parameters": {"type": "object", "properties": {"step": {"type": "integer"}}}}])
}

/// Turn `turn` of a tool-call loop: the first asks, each later one returns the previous call's
/// result (`function_call_output`) chained with `previous_response_id`.
fn turn_body(turn: usize, prev: Option<&(String, String)>) -> Value {
    let mut body = json!({"model": "bench", "tools": tools(), "stream": true});
    match prev {
        None => body["input"] = json!(format!("turn {turn}: run the steps")),
        Some((id, call_id)) => {
            body["previous_response_id"] = json!(id);
            body["input"] = json!([{"type": "function_call_output", "call_id": call_id,
                                    "output": format!("{{\"done\":{turn}}}")}]);
        }
    }
    body
}

/// Reads a finished response: its id and the call id of the tool call it made.
fn next_turn(response: &Value) -> (String, String) {
    let call_id = response["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
        .and_then(|i| i["call_id"].as_str())
        .expect("a function_call item");
    (
        response["id"].as_str().expect("response id").to_string(),
        call_id.to_string(),
    )
}

/// The `response.completed` object of a Responses SSE body.
fn completed(sse: &str) -> Value {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|e| e["type"] == "response.completed")
        .map(|e| e["response"].clone())
        .unwrap_or_else(|| panic!("no response.completed in {sse}"))
}

async fn http_conversation(client: &reqwest::Client, base: &str) -> Vec<Duration> {
    let mut prev: Option<(String, String)> = None;
    let mut out = Vec::with_capacity(TURNS);
    for turn in 0..TURNS {
        let body = turn_body(turn, prev.as_ref());
        let t = Instant::now();
        let text = client
            .post(format!("{base}/v1/responses"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        out.push(t.elapsed());
        prev = Some(next_turn(&completed(&text)));
    }
    out
}

async fn ws_conversation(base: &str) -> Vec<Duration> {
    let url = format!("{}/v1/responses", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut prev: Option<(String, String)> = None;
    let mut out = Vec::with_capacity(TURNS);
    for turn in 0..TURNS {
        let mut body = turn_body(turn, prev.as_ref());
        body["type"] = json!("response.create");
        if let Some(m) = body.as_object_mut() {
            m.remove("stream"); // WebSocket mode: the create body minus `stream`
        }
        let t = Instant::now();
        ws.send(Message::text(body.to_string())).await.unwrap();
        loop {
            let Message::Text(text) = ws.next().await.unwrap().unwrap() else {
                continue;
            };
            let ev: Value = serde_json::from_str(&text).unwrap();
            match ev["type"].as_str() {
                Some("response.completed") => {
                    prev = Some(next_turn(&ev["response"]));
                    break;
                }
                Some("error") | Some("response.failed") => panic!("{ev}"),
                _ => {}
            }
        }
        out.push(t.elapsed());
    }
    out
}

async fn single(client: &reqwest::Client, url: &str, body: &Value, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client
            .post(url)
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        out.push(t.elapsed());
    }
    out
}

fn main() {
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let (mut mock, mock_url) = start(
        Command::new(env!("CARGO_BIN_EXE_sluice-mock-upstream")).args(["--listen", "127.0.0.1:0"]),
        "mock upstream listening on ",
    );
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: bench\n    litellm_params: {{model: openai/bench, api_base: {mock_url}/v1, api_key: dummy}}\ngeneral_settings: {{master_key: {KEY}}}\nsluice: {{data_dir: {}, log_level: warn, cache: {{enabled: false}}}}\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let (mut gw, base) = start(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&cfg)
            .env_remove("SLUICE_MASTER_KEY")
            .env_remove("RUST_LOG"),
        "sluice listening on ",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        // Warm-up.
        http_conversation(&client, &base).await;
        ws_conversation(&base).await;
        let (mut http, mut ws) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            http.extend(http_conversation(&client, &base).await);
            ws.extend(ws_conversation(&base).await);
        }
        println!("| {TURNS}-turn tool-call loop, per turn | p50 ms | p99 ms | turns |");
        println!("|---|---|---|---|");
        println!(
            "| HTTP POST /v1/responses (stream: true) | {:.3} | {:.3} | {} |",
            pct(http.clone(), 0.5),
            pct(http.clone(), 0.99),
            http.len()
        );
        println!(
            "| WebSocket response.create | {:.3} | {:.3} | {} |",
            pct(ws.clone(), 0.5),
            pct(ws.clone(), 0.99),
            ws.len()
        );
        let n = rounds * TURNS;
        let chat = single(
            &client,
            &format!("{base}/v1/chat/completions"),
            &json!({"model": "bench", "messages": [{"role": "user", "content": "hi"}]}),
            n,
        )
        .await;
        let resp = single(
            &client,
            &format!("{base}/v1/responses"),
            &json!({"model": "bench", "input": "hi", "store": false}),
            n,
        )
        .await;
        let resp_stored = single(
            &client,
            &format!("{base}/v1/responses"),
            &json!({"model": "bench", "input": "hi"}),
            n,
        )
        .await;
        println!();
        println!("| single request (same upstream) | p50 ms | p99 ms |");
        println!("|---|---|---|");
        println!(
            "| POST /v1/chat/completions | {:.3} | {:.3} |",
            pct(chat.clone(), 0.5),
            pct(chat, 0.99)
        );
        println!(
            "| POST /v1/responses, store: false | {:.3} | {:.3} |",
            pct(resp.clone(), 0.5),
            pct(resp, 0.99)
        );
        println!(
            "| POST /v1/responses, store: true | {:.3} | {:.3} |",
            pct(resp_stored.clone(), 0.5),
            pct(resp_stored, 0.99)
        );
    });
    for c in [&mut gw, &mut mock] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
