//! Spend, budgets and alerts end to end: the real binary with priced mock deployments, virtual
//! keys from the admin API, `/admin/spend`, persistence across a restart, budget refusals, a
//! local webhook receiver, and `/utils/token_counter`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use actix_web::{web, HttpResponse};
use common::{client, fake_server, TestGateway};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MASTER: &str = "mk-spend";

/// Priced mock groups: `g` costs $0.002 per prompt token (completions are free, so a request's
/// cost depends only on the prompt: "hi" is 5 tokens, $0.01), `g2` half that.
fn config(sluice: &str) -> String {
    format!(
        "model_list:\n  - {{model_name: g, litellm_params: {{model: mock/g}}, model_info: {{input_cost_per_token: 0.002, output_cost_per_token: 0.0}}}}\n  - {{model_name: g2, litellm_params: {{model: mock/g2}}, model_info: {{input_cost_per_token: 0.001, output_cost_per_token: 0.0}}}}\n  - {{model_name: smart, litellm_params: {{model: openai/gpt-4o, api_base: 'http://127.0.0.1:9/v1', api_key: k}}}}\ngeneral_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n  cache: {{enabled: false}}\n{sluice}"
    )
}

fn gateway(sluice: &str) -> TestGateway {
    TestGateway::builder().config(config(sluice)).spawn()
}

fn gateway_on(dir: &Path) -> TestGateway {
    TestGateway::builder()
        .config(config(""))
        .data_dir(dir)
        .spawn()
}

async fn call(
    gw: &TestGateway,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut rb = client().request(method, gw.url(path)).bearer_auth(key);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A chat request; returns status, the `x-sluice-cost-usd` header and the body.
async fn chat(gw: &TestGateway, key: &str, model: &str, user: Option<&str>) -> (u16, f64, Value) {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    if let Some(u) = user {
        body["user"] = json!(u);
    }
    let (s, h, b) = call(
        gw,
        key,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some(body),
    )
    .await;
    let cost = h
        .get("x-sluice-cost-usd")
        .map_or(0.0, |v| v.to_str().unwrap().parse().unwrap());
    (s, cost, b)
}

async fn create_key(gw: &TestGateway, body: Value) -> (String, String) {
    let (s, _, b) = call(gw, MASTER, reqwest::Method::POST, "/admin/keys", Some(body)).await;
    assert_eq!(s, 201, "{b}");
    (
        b["id"].as_str().unwrap().to_string(),
        b["key"].as_str().unwrap().to_string(),
    )
}

async fn report(gw: &TestGateway, query: &str) -> (u16, Value) {
    let (s, _, b) = call(
        gw,
        MASTER,
        reqwest::Method::GET,
        &format!("/admin/spend?{query}"),
        None,
    )
    .await;
    (s, b)
}

/// The row whose grouping field (`key`, `user`, `model`, `day`) is `name`.
fn row<'a>(b: &'a Value, field: &str, name: &str) -> &'a Value {
    b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[field] == name)
        .unwrap_or_else(|| panic!("no {field} {name} in {b}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test]
async fn spend_is_reported_per_key_user_model_and_day() {
    let gw = gateway("");
    let (id, key) = create_key(&gw, json!({"alias": "team-a"})).await;
    let mut paid = 0.0;
    for (k, model, user) in [
        (key.as_str(), "g", Some("alice")),
        (key.as_str(), "g", Some("alice")),
        (key.as_str(), "g2", None),
        (MASTER, "g", Some("bob")),
    ] {
        let (s, cost, b) = chat(&gw, k, model, user).await;
        assert_eq!(s, 200, "{b}");
        paid += cost;
    }
    assert!(close(paid, 0.01 * 3.0 + 0.005), "{paid}");

    let (s, b) = report(&gw, "group_by=key").await;
    assert_eq!(s, 200, "{b}");
    let k = row(&b, "key", &id);
    assert_eq!(k["requests"], 3);
    assert!(close(k["spend_usd"].as_f64().unwrap(), 0.025), "{k}");
    assert_eq!(k["prompt_tokens"], 15);
    assert!(k["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(k["cache_hits"], 0);
    assert_eq!(row(&b, "key", "master")["requests"], 1);
    assert!(close(b["total"]["spend_usd"].as_f64().unwrap(), paid));

    let (_, b) = report(&gw, "group_by=user").await;
    assert_eq!(row(&b, "user", "alice")["requests"], 2);
    assert_eq!(row(&b, "user", "bob")["requests"], 1);
    assert_eq!(
        b["rows"].as_array().unwrap().len(),
        2,
        "requests without a user have no user row"
    );

    let (_, b) = report(&gw, "group_by=model").await;
    assert!(close(
        row(&b, "model", "g")["spend_usd"].as_f64().unwrap(),
        0.03
    ));
    assert!(close(
        row(&b, "model", "g2")["spend_usd"].as_f64().unwrap(),
        0.005
    ));

    let (_, b) = report(&gw, "group_by=day").await;
    let days = b["rows"].as_array().unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0]["requests"], 4);
    let today = days[0]["day"].as_str().unwrap().to_string();
    let (_, b) = report(&gw, &format!("group_by=day&from={today}&to={today}")).await;
    assert_eq!(b["rows"][0]["requests"], 4);
    let (_, b) = report(&gw, "group_by=day&from=2000-01-01&to=2000-12-31").await;
    assert_eq!(b["rows"].as_array().unwrap().len(), 0);

    // Bad input names the parameter.
    for (q, param) in [
        ("group_by=team", "group_by"),
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("groupby=key", "groupby"),
    ] {
        let (s, b) = report(&gw, q).await;
        assert_eq!(s, 400, "{q}: {b}");
        assert_eq!(b["error"]["param"], param, "{q}: {b}");
    }
    // Admin only.
    let (s, _, _) = call(&gw, &key, reqwest::Method::GET, "/admin/spend", None).await;
    assert_eq!(s, 403);
    let (s, _, _) = call(&gw, "wrong", reqwest::Method::GET, "/admin/spend", None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn spend_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway_on(dir.path());
    for _ in 0..3 {
        assert_eq!(chat(&gw, MASTER, "g", Some("carol")).await.0, 200);
    }
    let (_, before) = report(&gw, "group_by=user").await;
    assert_eq!(row(&before, "user", "carol")["requests"], 3);
    // A clean shutdown writes whatever the background flush has not written yet.
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(30)).is_some(),
        "gateway did not stop"
    );
    drop(gw);
    let gw = gateway_on(dir.path());
    let (_, after) = report(&gw, "group_by=user").await;
    assert_eq!(row(&after, "user", "carol"), row(&before, "user", "carol"));
    assert_eq!(chat(&gw, MASTER, "g", Some("carol")).await.0, 200);
    let (_, b) = report(&gw, "group_by=user").await;
    assert_eq!(row(&b, "user", "carol")["requests"], 4);
}

#[tokio::test]
async fn a_spent_budget_refuses_with_429_budget_exceeded() {
    let gw = gateway("  budgets:\n    users: {dave: {max_budget: 0.025, budget_duration: 1h}}\n");
    let (_, key) = create_key(
        &gw,
        json!({"alias": "small", "max_budget": 0.019, "budget_duration": "1d"}),
    )
    .await;
    // $0.01 spent of $0.019: the next request's estimate (its prompt at g's price, a little
    // above the $0.01 it really costs) would take the key past its budget, so it is refused.
    assert_eq!(chat(&gw, &key, "g", None).await.0, 200);
    let (s, h, b) = call(
        &gw,
        &key,
        reqwest::Method::POST,
        "/v1/chat/completions",
        Some(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["error"]["type"], "budget_exceeded");
    assert_eq!(b["error"]["code"], "budget_exceeded");
    let m = b["error"]["message"].as_str().unwrap();
    assert!(
        m.starts_with("budget exceeded for key 'small': spent $0.0100 of $0.0190 and this request would cost ~$"),
        "{m}"
    );
    assert!(m.contains(" in the current 1d window; resets at "), "{m}");
    assert!(m.ends_with(":00Z") || m.ends_with('Z'), "{m}");
    let retry: u64 = h
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 86_400, "{retry}");
    // Another key is not affected; a user budget from config applies across keys. A request
    // that would take the spend past the budget is refused before it is made: $0.01 spent of
    // $0.025, and the next one is estimated a little above $0.01.
    assert_eq!(chat(&gw, MASTER, "g", Some("dave")).await.0, 200);
    let (s, b) = {
        let (s, _, b) = chat(&gw, MASTER, "g", Some("dave")).await;
        (s, b)
    };
    assert_eq!(s, 429, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().starts_with(
            "budget exceeded for user 'dave': spent $0.0100 of $0.0250 and this request would cost ~$"
        ),
        "{b}"
    );
    // The Anthropic surface refuses too, in its own shape.
    let (s, _, b) = call(
        &gw,
        &key,
        reqwest::Method::POST,
        "/v1/messages",
        Some(
            json!({"model": "g", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
        ),
    )
    .await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["type"], "error");
}

#[derive(Default)]
struct Received(Mutex<Vec<Value>>);

async fn receive(shared: web::Data<Received>, body: web::Json<Value>) -> HttpResponse {
    shared.0.lock().unwrap().push(body.into_inner());
    HttpResponse::Ok().finish()
}

#[tokio::test]
async fn budget_alerts_reach_the_webhook_once_per_threshold() {
    let received = Arc::new(Received::default());
    let hook = fake_server::spawn(Arc::clone(&received), |cfg| {
        cfg.route("/hook", web::post().to(receive));
    });
    let gw = gateway(&format!(
        "  alerts: {{webhook_url: '{}/hook', thresholds: [0.3, 0.5, 0.7]}}\n",
        hook.base
    ));
    // $0.05 in $0.01 requests: 30% after the 2nd, 50% after the 3rd, 70% after the 4th; the 5th
    // would pass the budget with its estimate (a little above $0.01) and is refused.
    let (id, key) = create_key(
        &gw,
        json!({"alias": "watched", "max_budget": 0.05, "budget_duration": "30d"}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(chat(&gw, &key, "g", None).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429, 429]);
    for _ in 0..100 {
        if received.0.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a duplicate every chance to arrive before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.0.lock().unwrap().clone();
    let thresholds: Vec<f64> = got
        .iter()
        .map(|a| a["threshold"].as_f64().unwrap())
        .collect();
    let mut sorted = thresholds.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(sorted, [0.3, 0.5, 0.7], "{got:?}");
    for a in &got {
        assert_eq!(a["type"], "budget_alert");
        assert_eq!(a["scope"], "key");
        assert_eq!(a["key_id"], id.as_str());
        assert_eq!(a["alias"], "watched");
        assert!(close(a["max_budget"].as_f64().unwrap(), 0.05));
        assert!(a["spend"].as_f64().unwrap() >= a["threshold"].as_f64().unwrap() * 0.05);
        assert!(a["window_start"].as_str().unwrap().ends_with('Z'));
        assert!(a["window_end"].as_str().unwrap() > a["window_start"].as_str().unwrap());
    }
    assert!(gw.stderr().contains("budget alert"), "a log line per alert");
}

#[tokio::test]
async fn token_counter_uses_the_model_tokenizer() {
    let gw = gateway("");
    let count = |body: Value| {
        let gw = &gw;
        async move {
            let (s, _, b) = call(
                gw,
                MASTER,
                reqwest::Method::POST,
                "/utils/token_counter",
                Some(body),
            )
            .await;
            (s, b)
        }
    };
    // `smart` runs gpt-4o: o200k_base. "hello world" is 2 tokens; a message adds 4 + 3 framing.
    let (s, b) = count(json!({"model": "smart", "prompt": "hello world"})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["total_tokens"], 2);
    assert_eq!(b["model_used"], "gpt-4o");
    assert_eq!(b["tokenizer_type"], "openai_tokenizer");
    let (_, b) =
        count(json!({"model": "smart", "messages": [{"role": "user", "content": "hello world"}]}))
            .await;
    assert_eq!(b["total_tokens"], 9);
    // Names that are not groups count as themselves; non-OpenAI models are approximated.
    let (_, b) = count(json!({"model": "gpt-3.5-turbo", "prompt": "hello world"})).await;
    assert_eq!(
        (b["total_tokens"].as_u64(), b["tokenizer_type"].as_str()),
        (Some(2), Some("openai_tokenizer"))
    );
    let (_, b) = count(json!({"model": "claude-sonnet-4-5", "prompt": "hello world"})).await;
    assert_eq!(
        (b["total_tokens"].as_u64(), b["tokenizer_type"].as_str()),
        (Some(3), Some("approximation"))
    );
    let (_, b) = count(json!({"model": "g", "prompt": "abcdefgh"})).await;
    assert_eq!(b["model_used"], "g");
    assert_eq!(b["total_tokens"], 2);
    // Exactly one of messages and prompt; any valid key may ask, no key may not.
    let (s, b) = count(json!({"model": "g"})).await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("messages")));
    let (s, _) =
        count(json!({"model": "g", "messages": [{"role": "nobody", "content": "x"}]})).await;
    assert_eq!(s, 400);
    let (_, key) = create_key(&gw, json!({"alias": "plain"})).await;
    let (s, _, _) = call(
        &gw,
        &key,
        reqwest::Method::POST,
        "/utils/token_counter",
        Some(json!({"model": "g", "prompt": "x"})),
    )
    .await;
    assert_eq!(s, 200);
    let r = client()
        .post(gw.url("/utils/token_counter"))
        .json(&json!({"model": "g", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
