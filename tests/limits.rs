//! Rate limits end to end: the real binary, mock deployments, virtual keys from the admin API.
//! Exactness under concurrency, TPM with reconciliation, end users by body field and header,
//! per-deployment limits, OpenAI's rate-limit headers, and cache hits counting against RPM only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, TestGateway};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

const MASTER: &str = "mk-limits";

/// Mock groups `g` and `h`, a master key, the cache off unless `cache` is set, plus `extra`
/// under `sluice:`.
fn config(deployments: &str, sluice: &str, cache: bool) -> String {
    let mut y = String::from("model_list:\n");
    y.push_str(deployments);
    y.push_str(&format!(
        "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n"
    ));
    if !cache {
        y.push_str("  cache: {enabled: false}\n");
    }
    y.push_str(sluice);
    y
}

const MOCKS: &str = "  - {model_name: g, litellm_params: {model: mock/g}}\n  - {model_name: h, litellm_params: {model: mock/h}}\n  - {model_name: e, litellm_params: {model: mock/sluice-mock-embedding}}\n";

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn num(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
            .parse()
            .unwrap()
    }
}

async fn send(
    c: &reqwest::Client,
    gw: &TestGateway,
    key: &str,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> Resp {
    let mut rb = c.post(gw.url(path)).bearer_auth(key).json(&body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp {
        status,
        headers,
        body,
    }
}

fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

async fn chat(gw: &TestGateway, key: &str, model: &str, text: &str) -> Resp {
    send(
        &client(),
        gw,
        key,
        "/v1/chat/completions",
        chat_body(model, text),
        &[],
    )
    .await
}

/// Creates a virtual key through the admin API; returns its secret.
async fn create_key(gw: &TestGateway, body: Value) -> String {
    let r = send(&client(), gw, MASTER, "/admin/keys", body, &[]).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["key"].as_str().unwrap().to_string()
}

/// A 429 in OpenAI's shape with every header a client needs to back off.
fn assert_rate_limited(r: &Resp, kind: &str, names: &str) {
    assert_eq!(r.status, 429, "{:?}", r.body);
    let e = &r.body["error"];
    assert_eq!(e["type"], kind, "{e}");
    assert_eq!(e["code"], "rate_limit_exceeded");
    assert!(e["param"].is_null());
    let m = e["message"].as_str().unwrap();
    assert!(m.contains(names), "{m}");
    assert!(r.num("retry-after") >= 1);
    assert!(
        r.header("x-ratelimit-limit-requests").is_some()
            || r.header("x-ratelimit-limit-tokens").is_some()
    );
}

#[tokio::test]
async fn two_hundred_concurrent_requests_against_rpm_50_let_exactly_50_through() {
    let gw = TestGateway::builder()
        .config(config(
            "  - {model_name: g, litellm_params: {model: mock/g, mock_latency_ms: 20}}\n",
            "",
            false,
        ))
        .spawn();
    let key = create_key(&gw, json!({"alias": "load", "rpm": 50})).await;
    let c = client();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (c, key, url) = (c.clone(), key.clone(), gw.url("/v1/chat/completions"));
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .bearer_auth(key)
                    .json(&chat_body("g", &format!("question {i}")))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let headers = r.headers().clone();
                let body: Value = r.json().await.unwrap();
                Resp {
                    status,
                    headers,
                    body,
                }
            })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => {
                ok += 1;
                assert_eq!(r.num("x-ratelimit-limit-requests"), 50);
            }
            429 => {
                limited += 1;
                assert_rate_limited(
                    &r,
                    "requests",
                    "rate limit exceeded for key 'load' (rpm 50): retry in ",
                );
                assert_eq!(r.num("x-ratelimit-remaining-requests"), 0);
                assert!(r
                    .header("x-ratelimit-reset-requests")
                    .unwrap()
                    .ends_with('s'));
            }
            s => panic!("unexpected status {s}: {:?}", r.body),
        }
    }
    assert_eq!((ok, limited), (50, 150));
}

#[tokio::test]
async fn tpm_refuses_once_the_minute_is_spent_and_reconciles_with_real_usage() {
    let gw = TestGateway::builder()
        .config(config(MOCKS, "", false))
        .spawn();
    let key = create_key(&gw, json!({"alias": "tokens", "tpm": 100})).await;
    // A mock answer to "hello" uses 6 prompt + about 18 completion tokens; the estimate before
    // the call is 9. Requests pass until the real usage has eaten the minute.
    let mut passed = 0;
    let mut last_ok: Option<Resp> = None;
    let refused = loop {
        let r = chat(&gw, &key, "g", "hello").await;
        if r.status != 200 {
            break r;
        }
        passed += 1;
        assert!(passed < 20, "tpm never refused");
        last_ok = Some(r);
    };
    assert!(passed >= 2, "{passed}");
    assert_rate_limited(
        &refused,
        "tokens",
        "rate limit exceeded for key 'tokens' (tpm 100; this request needs about 9 tokens)",
    );
    // The headers of the last success reflect real usage, not estimates: far less than 100 - 9n.
    let last = last_ok.unwrap();
    assert_eq!(last.num("x-ratelimit-limit-tokens"), 100);
    assert!(last.num("x-ratelimit-remaining-tokens") < 100 - 9 * passed);
    // A request larger than the whole limit is refused as such.
    let big = chat(&gw, &key, "g", &"word ".repeat(200)).await;
    assert_eq!(big.status, 429);
    assert_eq!(big.body["error"]["type"], "tokens");
    assert!(big.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("more than its whole tpm limit of 100"));
}

#[tokio::test]
async fn end_users_are_limited_by_the_user_field_and_the_header() {
    let gw = TestGateway::builder()
        .config(config(
            MOCKS,
            "  limits:\n    user: {rpm: 2}\n    users: {vip: {rpm: 5}}\n",
            false,
        ))
        .spawn();
    let c = client();
    let as_user = |user: &'static str| json!({"model": "g", "user": user, "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let r = send(
            &c,
            &gw,
            MASTER,
            "/v1/chat/completions",
            as_user("alice"),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = send(
        &c,
        &gw,
        MASTER,
        "/v1/chat/completions",
        as_user("alice"),
        &[],
    )
    .await;
    assert_rate_limited(
        &r,
        "requests",
        "rate limit exceeded for user 'alice' (rpm 2)",
    );
    // The header names the user too, and wins over the body.
    for _ in 0..2 {
        let r = send(
            &c,
            &gw,
            MASTER,
            "/v1/chat/completions",
            as_user("alice"),
            &[("x-sluice-user", "bob")],
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = send(
        &c,
        &gw,
        MASTER,
        "/v1/chat/completions",
        chat_body("g", "hi"),
        &[("x-sluice-user", "bob")],
    )
    .await;
    assert_rate_limited(&r, "requests", "user 'bob'");
    // A named user has their own limit; requests without a user are not user-limited.
    for _ in 0..5 {
        let r = send(&c, &gw, MASTER, "/v1/chat/completions", as_user("vip"), &[]).await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(chat(&gw, MASTER, "g", "hi").await.status, 200);
    }
    // Embeddings carry the user too.
    let emb = json!({"model": "e", "input": "x", "user": "alice"});
    let r = send(&c, &gw, MASTER, "/v1/embeddings", emb, &[]).await;
    assert_eq!(r.status, 429);
}

#[tokio::test]
async fn every_response_carries_the_rate_limit_headers_of_the_tightest_scope() {
    let gw = TestGateway::builder()
        .config(config(
            &format!("{MOCKS}  - {{model_name: down, litellm_params: {{model: openai/x, api_base: 'http://127.0.0.1:9/v1', api_key: k, max_retries: 0}}}}\n"),
            "  limits:\n    global: {rpm: 100, tpm: 100000}\n    groups: {h: {rpm: 10}}\n",
            false,
        ))
        .spawn();
    let key = create_key(&gw, json!({"alias": "hdr", "tpm": 5000})).await;
    let r = chat(&gw, &key, "g", "hello").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.num("x-ratelimit-limit-requests"), 100);
    assert_eq!(r.num("x-ratelimit-remaining-requests"), 99);
    // The key's tpm (5000) is tighter than the gateway's (100000).
    assert_eq!(r.num("x-ratelimit-limit-tokens"), 5000);
    let remaining = r.num("x-ratelimit-remaining-tokens");
    assert!(remaining < 5000 && remaining > 4900, "{remaining}");
    let reset = r.header("x-ratelimit-reset-requests").unwrap();
    assert!(
        reset.ends_with('s')
            && (reset.starts_with("59") || reset.starts_with("1m") || reset.starts_with("58")),
        "{reset}"
    );
    // Group h has rpm 10: tighter than the gateway for requests.
    let r = chat(&gw, &key, "h", "hello").await;
    assert_eq!(r.num("x-ratelimit-limit-requests"), 10);
    assert_eq!(r.num("x-ratelimit-remaining-requests"), 9);
    // Streams, embeddings and Anthropic's Messages API carry them as well.
    let mut stream = chat_body("g", "hello");
    stream["stream"] = json!(true);
    let r = send(&client(), &gw, &key, "/v1/chat/completions", stream, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-ratelimit-remaining-requests").is_some());
    let r = send(
        &client(),
        &gw,
        &key,
        "/v1/embeddings",
        json!({"model": "e", "input": "hi"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-ratelimit-remaining-tokens").is_some());
    let m =
        json!({"model": "g", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
    let r = send(&client(), &gw, &key, "/v1/messages", m, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.header("x-ratelimit-remaining-requests").is_some());
    // An upstream failure after admission still reports them.
    let r = chat(&gw, &key, "down", "hello").await;
    assert!(r.status >= 500, "{}", r.status);
    assert!(
        r.header("x-ratelimit-remaining-requests").is_some(),
        "{:?}",
        r.headers
    );
}

#[tokio::test]
async fn a_deployment_at_its_own_limit_is_skipped_then_the_request_refused() {
    let gw = TestGateway::builder()
        .config(config(
            "  - {model_name: g, litellm_params: {model: mock/a, rpm: 1}}\n  - {model_name: g, litellm_params: {model: mock/b, rpm: 1}}\n",
            "  routing: {seed: 3}\n",
            false,
        ))
        .spawn();
    let first = chat(&gw, MASTER, "g", "one").await;
    let second = chat(&gw, MASTER, "g", "two").await;
    assert_eq!((first.status, second.status), (200, 200));
    let route = |r: &Resp| {
        r.header("x-sluice-route")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(
        route(&first),
        route(&second),
        "the second went to the deployment with room"
    );
    let third = chat(&gw, MASTER, "g", "three").await;
    assert_rate_limited(&third, "requests", "rate limit exceeded for deployment 'g/");
    assert!(third.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("(rpm 1)"));
}

#[tokio::test]
async fn cache_hits_count_against_rpm_but_not_tpm() {
    let gw = TestGateway::builder()
        .config(config(MOCKS, "", true))
        .spawn();
    // "hello" costs about 24 real tokens; 30 leaves room for no other upstream call.
    let key = create_key(&gw, json!({"alias": "cached", "rpm": 4, "tpm": 30})).await;
    let miss = chat(&gw, &key, "g", "hello").await;
    assert_eq!(miss.status, 200, "{:?}", miss.body);
    assert_eq!(miss.header("x-sluice-cache"), Some("miss"));
    let tokens_left = miss.num("x-ratelimit-remaining-tokens");
    assert!(tokens_left < 9, "{tokens_left}");
    let hit = chat(&gw, &key, "g", "hello").await;
    assert_eq!(hit.status, 200);
    assert!(
        hit.header("x-sluice-cache").unwrap().starts_with("hit"),
        "{:?}",
        hit.headers
    );
    assert_eq!(hit.num("x-ratelimit-remaining-requests"), 2);
    assert_eq!(
        hit.num("x-ratelimit-remaining-tokens"),
        tokens_left,
        "a hit uses no tokens"
    );
    // Another question needs the upstream: refused on tokens, and the refusal counts nothing.
    let other = chat(
        &gw,
        &key,
        "g",
        "a completely different question about tides",
    )
    .await;
    assert_eq!(other.status, 429, "{:?}", other.body);
    assert_eq!(other.body["error"]["type"], "tokens");
    let hit = chat(&gw, &key, "g", "hello").await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.num("x-ratelimit-remaining-requests"), 1);
    assert_eq!(chat(&gw, &key, "g", "hello").await.status, 200);
    let over = chat(&gw, &key, "g", "hello").await;
    assert_rate_limited(&over, "requests", "key 'cached' (rpm 4)");
}
