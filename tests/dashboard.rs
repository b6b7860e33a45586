//! The dashboard's backend end to end on the real binary: login, session cookie and CSRF,
//! logout, what a virtual key's session may see, requests showing up in the overview and on the
//! live tail, rollups surviving a restart, parameter checks, `/` for browsers and the `/ui` page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

const MASTER: &str = "mk-dash";

/// One priced fake deployment (`gpt-x`), a master key, the cache on or off.
fn config(upstream: &str, cache: bool) -> String {
    let mut s = format!(
        "model_list:\n  - model_name: gpt-x\n    litellm_params:\n      model: openai/gpt-x\n      api_base: {upstream}/v1\n      api_key: sk-upstream-secret\n    model_info: {{input_cost_per_token: 0.001, output_cost_per_token: 0.002}}\ngeneral_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n"
    );
    if !cache {
        s.push_str("  cache: {enabled: false}\n");
    }
    s
}

/// A browser-like session: the cookie value and the CSRF token.
struct Session {
    cookie: String,
    csrf: String,
    body: Value,
}

/// `POST /ui/api/login`; panics unless 200. Returns the cookie, token and body, and checks
/// the cookie's attributes.
async fn login(gw: &TestGateway, key: &str) -> Session {
    let r = client()
        .post(gw.url("/ui/api/login"))
        .json(&json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.starts_with("sluice_session="), "{set}");
    assert!(set.contains("; HttpOnly"), "{set}");
    assert!(set.contains("; SameSite=Strict"), "{set}");
    assert!(set.contains("; Path=/"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP listener: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    assert!(!body.to_string().contains(key), "the secret came back");
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
        body,
    }
}

/// A request with a session cookie, optionally its CSRF token, or a bearer key.
async fn call(
    gw: &TestGateway,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client().request(method, gw.url(path));
    match auth {
        Auth::Cookie(s, with_csrf) => {
            rb = rb.header("cookie", &s.cookie);
            if with_csrf {
                rb = rb.header("x-sluice-csrf", &s.csrf);
            }
        }
        Auth::Bearer(k) => rb = rb.bearer_auth(k),
        Auth::None => {}
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Cookie(&'a Session, bool),
    Bearer(&'a str),
    None,
}

async fn create_key(gw: &TestGateway, body: Value) -> (String, String) {
    let (s, b) = call(
        gw,
        Method::POST,
        "/admin/keys",
        Auth::Bearer(MASTER),
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    (
        b["id"].as_str().unwrap().to_string(),
        b["key"].as_str().unwrap().to_string(),
    )
}

/// Sends a chat completion with `key`; returns the response's request id.
async fn chat(gw: &TestGateway, key: &str, text: &str, stream: bool) -> String {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-x", "stream": stream,
                      "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    // Read to the end: a stream's record is written when it finishes.
    r.bytes().await.unwrap();
    id
}

/// Reads `GET /ui/api/tail` until `n` request events arrived (or 20 s passed); returns them and
/// the raw text.
async fn tail_events(gw: &TestGateway, auth: Auth<'_>, n: usize) -> (Vec<Value>, String) {
    let mut rb = client().get(gw.url("/ui/api/tail"));
    match auth {
        Auth::Cookie(s, _) => rb = rb.header("cookie", &s.cookie),
        Auth::Bearer(k) => rb = rb.bearer_auth(k),
        Auth::None => {}
    }
    let mut r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while text.matches("event: request\n").count() < n {
            match r.chunk().await.unwrap() {
                Some(c) => text.push_str(std::str::from_utf8(&c).unwrap()),
                None => break,
            }
        }
    })
    .await;
    let events = text
        .split("\n\n")
        .filter_map(|frame| frame.strip_prefix("event: request\ndata: "))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect();
    (events, text)
}

async fn overview(gw: &TestGateway, auth: Auth<'_>, range: &str) -> (u16, Value) {
    call(
        gw,
        Method::GET,
        &format!("/ui/api/overview?range={range}"),
        auth,
        None,
    )
    .await
}

#[tokio::test]
async fn login_session_csrf_and_logout() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, true))
        .spawn();

    // Wrong key: 401, no cookie.
    let r = client()
        .post(gw.url("/ui/api/login"))
        .json(&json!({"key": "mk-wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "invalid_api_key");

    // A form post (what a cross-site page could send) is refused before the key is looked at.
    let r = client()
        .post(gw.url("/ui/api/login"))
        .header("content-type", "text/plain")
        .body(format!("{{\"key\": \"{MASTER}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("set-cookie").is_none());

    // No session yet.
    let (s, b) = call(&gw, Method::GET, "/ui/api/session", Auth::None, None).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "not_logged_in");

    let master = login(&gw, MASTER).await;
    assert_eq!(master.body["role"], "admin");
    assert_eq!(master.body["key_id"], "master");
    // Both attempts are in the audit log, without the key that was tried.
    let logins = common::audit_records(&gw, MASTER, "kind=admin", 2).await;
    let actions: Vec<(&str, &str)> = logins
        .iter()
        .map(|r| {
            let a = &r["admin"];
            (a["actor"].as_str().unwrap(), a["action"].as_str().unwrap())
        })
        .collect();
    assert!(
        actions.contains(&("unauthenticated", "ui.login.failed")),
        "{actions:?}"
    );
    assert!(actions.contains(&("master", "ui.login")), "{actions:?}");
    assert!(!serde_json::to_string(&logins).unwrap().contains("mk-wrong"));
    let (s, b) = call(
        &gw,
        Method::GET,
        "/ui/api/session",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["csrf_token"], master.csrf.as_str());
    assert_eq!(b["role"], "admin");

    // The cookie opens the admin API for reads...
    let (s, cfg) = call(
        &gw,
        Method::GET,
        "/admin/cache/config",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 200, "{cfg}");
    // ...but a change needs the CSRF token.
    let change = json!({"default_threshold": 0.91});
    let (s, b) = call(
        &gw,
        Method::PUT,
        "/admin/cache/config",
        Auth::Cookie(&master, false),
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(b["error"]["type"], "csrf_failed");
    let wrong = Session {
        cookie: master.cookie.clone(),
        csrf: "not-the-token".into(),
        body: Value::Null,
    };
    let (s, _) = call(
        &gw,
        Method::PUT,
        "/admin/cache/config",
        Auth::Cookie(&wrong, true),
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 403);
    let (s, b) = call(
        &gw,
        Method::PUT,
        "/admin/cache/config",
        Auth::Cookie(&master, true),
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // A bearer call needs no token.
    let (s, b) = call(
        &gw,
        Method::PUT,
        "/admin/cache/config",
        Auth::Bearer(MASTER),
        Some(change),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // An admin key's session creates a key; the audit log names that key as the actor.
    let (admin_id, admin_secret) = create_key(&gw, json!({"alias": "ops", "admin": true})).await;
    let ops = login(&gw, &admin_secret).await;
    assert_eq!(ops.body["role"], "admin");
    assert_eq!(ops.body["key_id"], admin_id.as_str());
    assert_eq!(ops.body["alias"], "ops");
    let (s, b) = call(
        &gw,
        Method::POST,
        "/admin/keys",
        Auth::Cookie(&ops, true),
        Some(json!({"alias": "made-in-ui"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let made = b["id"].as_str().unwrap().to_string();
    let (_, audit) = call(
        &gw,
        Method::GET,
        "/admin/audit?kind=admin",
        Auth::Bearer(MASTER),
        None,
    )
    .await;
    let rec = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["admin"]["target"] == made.as_str())
        .unwrap_or_else(|| panic!("no audit record for {made}: {audit}"));
    assert_eq!(rec["admin"]["action"], "key.create");
    assert_eq!(rec["admin"]["actor"], admin_id.as_str());

    // Logout is a change too; then the same cookie is worthless.
    let (s, _) = call(
        &gw,
        Method::POST,
        "/ui/api/logout",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let r = client()
        .post(gw.url("/ui/api/logout"))
        .header("cookie", &master.cookie)
        .header("x-sluice-csrf", &master.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let (s, b) = call(
        &gw,
        Method::GET,
        "/ui/api/session",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "not_logged_in");
    let (s, _) = call(
        &gw,
        Method::GET,
        "/admin/keys",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 401);
    // The other session lives on.
    let (s, _) = call(
        &gw,
        Method::GET,
        "/ui/api/session",
        Auth::Cookie(&ops, false),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Revoking its key ends it.
    let (s, _) = call(
        &gw,
        Method::DELETE,
        &format!("/admin/keys/{admin_id}"),
        Auth::Bearer(MASTER),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &gw,
        Method::GET,
        "/ui/api/session",
        Auth::Cookie(&ops, false),
        None,
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_key_session_sees_only_its_own_usage_and_no_admin_api() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, false))
        .spawn();
    let (a_id, a_secret) = create_key(
        &gw,
        json!({"alias": "team-a", "models": ["gpt-x"], "max_budget": 5, "budget_duration": "30d"}),
    )
    .await;
    let (b_id, b_secret) = create_key(&gw, json!({"alias": "team-b"})).await;
    // Interleaved, so a tail that leaked other keys' requests would show one early.
    chat(&gw, &a_secret, "first from a", false).await;
    chat(&gw, &b_secret, "from b", false).await;
    chat(&gw, MASTER, "from master", false).await;
    chat(&gw, &a_secret, "second from a", true).await;

    let a = login(&gw, &a_secret).await;
    assert_eq!(a.body["role"], "key");
    assert_eq!(a.body["key_id"], a_id.as_str());

    for path in [
        "/admin/keys",
        "/admin/spend",
        "/admin/cache/stats",
        "/admin/audit",
        "/ui/api/deployments",
    ] {
        let (s, b) = call(&gw, Method::GET, path, Auth::Cookie(&a, false), None).await;
        assert_eq!(s, 403, "{path}: {b}");
    }
    let (s, _) = call(
        &gw,
        Method::POST,
        "/admin/keys",
        Auth::Cookie(&a, true),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 403);

    let (s, own) = overview(&gw, Auth::Cookie(&a, false), "1h").await;
    assert_eq!(s, 200, "{own}");
    assert_eq!(own["totals"]["requests"], 2, "{own}");
    assert_eq!(own["live"]["errors"], 0);
    let (_, all) = overview(&gw, Auth::Bearer(MASTER), "1h").await;
    assert!(all["totals"]["requests"].as_u64().unwrap() >= 4, "{all}");

    let (events, _) = tail_events(&gw, Auth::Cookie(&a, false), 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events.iter().all(|e| e["key_id"] == a_id.as_str()),
        "{events:?}"
    );
    let (events, _) = tail_events(&gw, Auth::Bearer(MASTER), 4).await;
    assert!(
        events.iter().any(|e| e["key_id"] == b_id.as_str()),
        "{events:?}"
    );

    let (s, me) = call(
        &gw,
        Method::GET,
        "/ui/api/me",
        Auth::Cookie(&a, false),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(me["key_id"], a_id.as_str());
    assert_eq!(me["alias"], "team-a");
    assert_eq!(me["role"], "key");
    assert_eq!(me["budget_usd"], 5.0);
    assert_eq!(me["budget_period"], "30d");
    assert_eq!(me["models"], json!(["gpt-x"]));

    let (s, spend) = call(
        &gw,
        Method::GET,
        "/ui/api/spend?group_by=key",
        Auth::Cookie(&a, false),
        None,
    )
    .await;
    assert_eq!(s, 200, "{spend}");
    let rows = spend["rows"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["key"] == a_id.as_str()), "{spend}");
    let (s, _) = call(
        &gw,
        Method::GET,
        "/ui/api/spend?group_by=day",
        Auth::Cookie(&a, false),
        None,
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn requests_show_in_overview_tail_deployments_and_spend() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, true))
        .spawn();
    let master = login(&gw, MASTER).await;

    // The tail is open before the request: it must arrive live.
    let mut tail = client()
        .get(gw.url("/ui/api/tail"))
        .header("cookie", &master.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), 200);
    let first = tail.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b": "), "{first:?}");

    let streamed = chat(&gw, MASTER, "secret prompt words", true).await;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !text.contains(&streamed) {
            let c = tail.chunk().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&c).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("request {streamed} not on the tail: {text}"));
    let data = text
        .split("\n\n")
        .filter_map(|f| f.strip_prefix("event: request\ndata: "))
        .find(|d| d.contains(&streamed))
        .unwrap();
    let e: Value = serde_json::from_str(data).unwrap();
    assert_eq!(e["key_id"], "master");
    assert_eq!(e["model"], "gpt-x");
    assert_eq!(e["deployment"], "gpt-x/0");
    assert_eq!(e["cache"], "miss");
    assert_eq!(e["status"], 200);
    assert_eq!(e["endpoint"], "/v1/chat/completions");
    assert!(e["tokens_in"].as_u64().unwrap() > 0, "{e}");
    assert!(e["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(e["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(
        !text.contains("secret prompt words"),
        "prompt text on the tail"
    );

    // The same question twice without streaming: a miss, then an exact hit.
    chat(&gw, MASTER, "what is the capital of france", false).await;
    chat(&gw, MASTER, "what is the capital of france", false).await;

    let (s, o) = overview(&gw, Auth::Cookie(&master, false), "1h").await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["range"], "1h");
    assert_eq!(o["bucket_seconds"], 60);
    let series = o["series"].as_array().unwrap();
    assert_eq!(series.len(), 60);
    let t: Vec<u64> = series.iter().map(|b| b["t"].as_u64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[1] == w[0] + 60));
    let totals = &o["totals"];
    assert_eq!(totals["requests"], 3, "{o}");
    assert_eq!(totals["misses"], 2);
    assert_eq!(totals["hits_exact"], 1);
    assert_eq!(totals["errors"], 0);
    assert!(totals["tokens_in"].as_u64().unwrap() > 0);
    assert!(totals["cost_usd"].as_f64().unwrap() > 0.0, "{totals}");
    assert!(totals["saved_usd"].as_f64().unwrap() > 0.0, "{totals}");
    assert!(totals["p50_ms"].as_f64().is_some());
    assert!(totals["p99_ms"].as_f64().is_some());
    assert!(
        totals["ttft_p50_ms"].as_f64().is_some(),
        "one streamed request: {totals}"
    );
    assert!((totals["hit_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        series
            .iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    assert_eq!(o["live"]["window_seconds"], 60);
    assert!(o["live"]["requests_per_s"].as_f64().unwrap() > 0.0);

    for (range, width, n) in [("24h", 900, 96), ("7d", 3600, 168)] {
        let (s, o) = overview(&gw, Auth::Bearer(MASTER), range).await;
        assert_eq!(s, 200);
        assert_eq!(o["bucket_seconds"], width);
        assert_eq!(o["series"].as_array().unwrap().len(), n);
        assert_eq!(o["totals"]["requests"], 3);
    }
    let (s, b) = overview(&gw, Auth::Bearer(MASTER), "2h").await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "range");
    let (s, b) = call(
        &gw,
        Method::GET,
        "/ui/api/overview?rnage=1h",
        Auth::Bearer(MASTER),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "rnage");
    let (s, _) = overview(&gw, Auth::None, "1h").await;
    assert_eq!(s, 401);

    let (s, d) = call(
        &gw,
        Method::GET,
        "/ui/api/deployments",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let group = &d["groups"][0];
    assert_eq!(group["group"], "gpt-x");
    assert!(group["strategy"].as_str().is_some_and(|s| !s.is_empty()));
    let dep = &group["deployments"][0];
    assert_eq!(dep["id"], "gpt-x/0");
    assert_eq!(dep["provider"], "openai");
    assert_eq!(dep["model"], "gpt-x");
    assert_eq!(
        dep["requests"], 2,
        "the hit never reached a deployment: {dep}"
    );
    assert_eq!(dep["errors"], 0);
    assert_eq!(dep["error_rate"], 0.0);
    assert_eq!(dep["share"], 1.0);
    assert_eq!(dep["cooling_down"], false);
    assert_eq!(dep["cooldown_remaining_s"], Value::Null);
    assert!(dep["ttft_p50_ms"].as_f64().is_some(), "{dep}");

    let (s, sp) = call(
        &gw,
        Method::GET,
        "/ui/api/spend?group_by=model",
        Auth::Cookie(&master, false),
        None,
    )
    .await;
    assert_eq!(s, 200, "{sp}");
    let row = &sp["rows"][0];
    assert_eq!(row["model"], "gpt-x");
    assert_eq!(row["requests"], 3);
    assert!(row["saved_usd"].as_f64().unwrap() > 0.0, "{row}");
    let r = client()
        .get(gw.url("/ui/api/spend.csv?group_by=model"))
        .header("cookie", &master.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = r.text().await.unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "model,requests,cache_hits,prompt_tokens,completion_tokens,spend_usd,saved_tokens,saved_usd"
    );
    assert!(lines.next().unwrap().starts_with("gpt-x,3,1,"), "{csv}");
    let (s, b) = call(
        &gw,
        Method::GET,
        "/ui/api/spend?group_by=team",
        Auth::Bearer(MASTER),
        None,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["param"], "group_by");
}

#[tokio::test]
async fn rollups_survive_a_restart() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let mut gw = TestGateway::builder()
        .config(config(&fake.base, false))
        .data_dir(data.path())
        .spawn();
    for i in 0..3 {
        chat(&gw, MASTER, &format!("question {i}"), false).await;
    }
    gw.terminate();
    assert!(
        gw.wait_exit(Duration::from_secs(30)).is_some(),
        "gateway did not stop"
    );
    drop(gw);

    let gw = TestGateway::builder()
        .config(config(&fake.base, false))
        .data_dir(data.path())
        .spawn();
    let (s, o) = overview(&gw, Auth::Bearer(MASTER), "24h").await;
    assert_eq!(s, 200);
    assert_eq!(o["totals"]["requests"], 3, "{o}");
    assert!(o["totals"]["p50_ms"].as_f64().is_some());
    // Sessions live in memory: none survives.
    let (s, _) = call(&gw, Method::GET, "/ui/api/session", Auth::None, None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn browsers_get_the_ui_with_its_security_headers() {
    let fake = FakeOpenAi::start();
    let gw = TestGateway::builder()
        .config(config(&fake.base, false))
        .spawn();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(gw.url("/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/ui");
    let r = no_redirects
        .get(gw.url("/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    for path in ["/ui", "/ui/"] {
        let r = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let html = r.text().await.unwrap();
        assert!(html.contains("<html"), "{html}");
        // Nothing from a CDN: every script and stylesheet is the gateway's own.
        assert!(
            !html.contains("src=\"http") && !html.contains("href=\"http"),
            "{html}"
        );
    }
    let r = client()
        .get(gw.url("/ui/no-such-file.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(gw.url("/ui/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn an_open_gateway_logs_in_as_admin() {
    let yaml = "model_list:\n  - {model_name: g, litellm_params: {model: mock/g}}\nsluice:\n  data_dir: {data_dir}\n  cache: {enabled: false}\n";
    let gw = TestGateway::builder().config(yaml).spawn();
    let s = login(&gw, "anything").await;
    assert_eq!(s.body["role"], "admin");
    let (status, _) = call(
        &gw,
        Method::GET,
        "/ui/api/deployments",
        Auth::Cookie(&s, false),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[test]
fn retention_days_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    let base = "model_list:\n  - {model_name: g, litellm_params: {model: mock/g}}\nsluice:\n";
    std::fs::write(&path, format!("{base}  dashboard: {{retention_days: 0}}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sluice.dashboard.retention_days"), "{err}");
    std::fs::write(
        &path,
        format!("{base}  dashboard: {{retention_days: 30}}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty()
            || !String::from_utf8_lossy(&out.stderr).contains("dashboard")
    );
}

#[tokio::test]
async fn under_tls_the_cookie_is_secure_and_the_ui_answers_on_both_listeners() {
    let certs = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let yaml = format!(
        "model_list:\n  - {{model_name: g, litellm_params: {{model: mock/g}}}}\ngeneral_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: '{{data_dir}}'\n  cache: {{enabled: false}}\n  tls: {{cert: '{}', key: '{}'}}\n  admin_listen: 127.0.0.1:0\n",
        cert.display(),
        key.display()
    );
    let gw = TestGateway::builder().config(yaml).spawn();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = https
        .post(gw.admin_url("/ui/api/login"))
        .json(&json!({ "key": MASTER }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.ends_with("; Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    // The admin API is on the admin listener, and so is the UI that calls it.
    let r = https
        .get(gw.admin_url("/admin/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for url in [gw.url("/ui"), gw.admin_url("/ui")] {
        let r = https.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
}
