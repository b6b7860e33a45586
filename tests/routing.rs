//! Routing end to end: strategies, retries, cooldowns, fallbacks, stream failover and `auto`,
//! through the real binary against the fake OpenAI server (behaviour chosen by model name).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, TestGateway};
use serde_json::{json, Value};
use std::time::Duration;

/// One deployment line: `(group, upstream model, extra litellm_params / model_info yaml)`.
fn config(fake: &FakeOpenAi, deployments: &[(&str, &str, &str)], extra: &str) -> String {
    let mut y = String::from("model_list:\n");
    for (group, model, more) in deployments {
        y.push_str(&format!(
            "  - model_name: {group}\n    litellm_params: {{model: openai/{model}, api_base: {}/v1, api_key: sk-test}}\n{more}",
            fake.base
        ));
    }
    y.push_str("sluice:\n  cache: {enabled: false}\n  routing: {seed: 11}\n");
    y.push_str(extra);
    y
}

fn gateway(cfg: String) -> TestGateway {
    TestGateway::builder().config(cfg).spawn()
}

struct Resp {
    status: u16,
    route: String,
    cost: Option<f64>,
    body: Value,
}

async fn ask(gw: &TestGateway, body: Value) -> Resp {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let header = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let route = header("x-sluice-route").unwrap_or_default();
    let cost = header("x-sluice-cost-usd").map(|v| v.parse().unwrap());
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp {
        status,
        route,
        cost,
        body,
    }
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn calls_to(fake: &FakeOpenAi, model: &str) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.body["model"] == model)
        .count()
}

const FAST_RETRY: &str = "router_settings: {retry_after: 0.01}\n";

#[tokio::test]
async fn retry_then_success_on_the_same_deployment() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(&fake, &[("g", "fake-flaky-2", "")], FAST_RETRY));
    let r = ask(&gw, chat("g", "hello")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        calls_to(&fake, "fake-flaky-2"),
        3,
        "two failures, then success"
    );
    assert!(
        r.route.starts_with("g/0; simple-shuffle")
            && r.route
                .contains("after g/0 (server_status), g/0 (server_status)"),
        "{}",
        r.route
    );
}

#[tokio::test]
async fn retries_are_bounded_and_the_error_lists_every_attempt() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[("g", "fake-500", "")],
        "router_settings: {retry_after: 0.01, num_retries: 1}\n",
    ));
    let r = ask(&gw, chat("g", "hello")).await;
    assert_eq!(r.status, 502);
    assert_eq!(calls_to(&fake, "fake-500"), 2);
    let m = r.body["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("all 2 attempts failed (g/0 (server_status), g/0 (server_status)); last error: deployment 'g/0"), "{m}");
    assert!(!m.contains("sk-test"), "{m}");
}

#[tokio::test]
async fn fallbacks_on_500_and_on_429() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[
            ("broken", "fake-500", ""),
            ("limited", "fake-429", ""),
            ("backup", "gpt-x", ""),
        ],
        "router_settings:\n  retry_after: 0.01\n  num_retries: 1\n  fallbacks: [{broken: [backup]}, {limited: [backup]}]\n",
    ));
    let r = ask(&gw, chat("broken", "hello")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.route
            .starts_with("backup/0; fallback from broken to backup"),
        "{}",
        r.route
    );
    assert_eq!(
        calls_to(&fake, "fake-500"),
        2,
        "retried once before falling back"
    );
    // A 429 asking for 7 s (more than Sluice waits) is not retried: straight to the fallback.
    let r = ask(&gw, chat("limited", "hello")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.route.starts_with("backup/0; fallback from limited"),
        "{}",
        r.route
    );
    assert_eq!(calls_to(&fake, "fake-429"), 1);
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "You said: hello"
    );
}

#[tokio::test]
async fn context_window_and_content_policy_fallbacks() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[
            ("small", "fake-ctx", ""),
            ("strict", "fake-content", ""),
            ("big", "gpt-x", ""),
            ("lenient", "gpt-y", ""),
        ],
        "router_settings:\n  context_window_fallbacks: [{small: [big]}]\n  content_policy_fallbacks: [{strict: [lenient]}]\n  fallbacks: [{small: [lenient]}]\n",
    ));
    let r = ask(&gw, chat("small", "a very long prompt")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.route.starts_with("big/0; fallback from small to big"),
        "{}",
        r.route
    );
    assert_eq!(
        calls_to(&fake, "fake-ctx"),
        1,
        "a context error is not retried"
    );
    assert_eq!(
        calls_to(&fake, "gpt-y"),
        0,
        "the general fallback is not used for it"
    );
    let r = ask(&gw, chat("strict", "hello")).await;
    assert_eq!(r.status, 200);
    assert!(
        r.route.starts_with("lenient/0; fallback from strict"),
        "{}",
        r.route
    );
    // Without a fallback, a client error comes back as the upstream said, not retried.
    let gw2 = gateway(config(&fake, &[("bad", "fake-400", "")], ""));
    let r = ask(&gw2, chat("bad", "hello")).await;
    assert_eq!(r.status, 400);
    assert_eq!(calls_to(&fake, "fake-400"), 1);
}

#[tokio::test]
async fn cooldown_skips_a_failing_deployment_and_it_recovers() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[("g", "fake-500", ""), ("g", "gpt-x", "")],
        "router_settings: {retry_after: 0.01, allowed_fails: 0, cooldown_time: 1}\n",
    ));
    // Whichever goes first, every request succeeds (the healthy deployment answers).
    let mut failed_first = 0;
    for i in 0..10 {
        let r = ask(&gw, chat("g", &format!("q{i}"))).await;
        assert_eq!(r.status, 200);
        assert!(r.route.starts_with("g/1; "), "{}", r.route);
        if r.route.contains("after g/0") {
            failed_first += 1;
        }
    }
    // After its first failure g/0 cools down for 1 s: it is tried at most once in this burst.
    assert_eq!(failed_first, 1, "cooldown keeps the failing deployment out");
    assert_eq!(calls_to(&fake, "fake-500"), 1);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("sluice_deployment_cooldown{deployment=\"g/0\"} 1"),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Recovered: it gets traffic again (and fails again).
    for i in 0..20 {
        ask(&gw, chat("g", &format!("r{i}"))).await;
        if calls_to(&fake, "fake-500") > 1 {
            return;
        }
    }
    panic!("g/0 never got traffic after its cooldown");
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_then_the_same_deployment_answers() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[("g", "fake-429-once", "")],
        "router_settings: {retry_after: 0.01}\n",
    ));
    let started = std::time::Instant::now();
    let r = ask(&gw, chat("g", "hello")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(calls_to(&fake, "fake-429-once"), 2);
    assert!(r.route.contains("after g/0 (rate_limited)"), "{}", r.route);
    // The retry waited for the 300 ms the upstream asked for, not the 10 ms base backoff.
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn client_errors_do_not_cool_a_deployment_down() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[("bad", "fake-400", ""), ("good", "gpt-x", "")],
        "router_settings: {retry_after: 0.01, allowed_fails: 0, cooldown_time: 60}\n",
    ));
    // The same deployment keeps getting (and rejecting) every bad request: no cooldown.
    for i in 0..3 {
        let r = ask(&gw, chat("bad", &format!("q{i}"))).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
    assert_eq!(calls_to(&fake, "fake-400"), 3);
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("sluice_deployment_cooldown{deployment=\"bad/0\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn cost_based_picks_the_cheapest_and_reports_cost() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[
            ("g", "gpt-x", "    model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00003}\n"),
            ("g", "gpt-y", "    model_info: {input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"),
        ],
        "router_settings: {routing_strategy: cost-based-routing}\n",
    ));
    for i in 0..5 {
        let r = ask(&gw, chat("g", &format!("q{i}"))).await;
        assert!(
            r.route
                .starts_with("g/1; cost-based-routing: lowest expected cost $"),
            "{}",
            r.route
        );
        // The fake reports 11 prompt and 5 completion tokens.
        let want = 11.0 * 0.000001 + 5.0 * 0.000002;
        assert!((r.cost.unwrap() - want).abs() < 1e-12, "{:?}", r.cost);
    }
    assert_eq!(calls_to(&fake, "gpt-x"), 0);
}

#[tokio::test]
async fn latency_based_settles_on_the_fastest() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[("g", "fake-delay-150", ""), ("g", "gpt-x", "")],
        "router_settings: {routing_strategy: latency-based-routing}\n",
    ));
    // The first two requests measure both deployments (unmeasured ones go first).
    for i in 0..2 {
        ask(&gw, chat("g", &format!("warm{i}"))).await;
    }
    assert_eq!(calls_to(&fake, "fake-delay-150"), 1);
    for i in 0..5 {
        let r = ask(&gw, chat("g", &format!("q{i}"))).await;
        assert!(
            r.route
                .starts_with("g/1; latency-based-routing: lowest latency"),
            "{}",
            r.route
        );
    }
    assert_eq!(calls_to(&fake, "fake-delay-150"), 1);
}

#[tokio::test]
async fn stream_fails_over_before_the_first_byte_and_not_after() {
    let fake = FakeOpenAi::start();
    let cheap =
        "    model_info: {input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000001}\n";
    let dear = "    model_info: {input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}\n";
    let gw = gateway(config(
        &fake,
        &[
            ("empty", "fake-empty-stream", cheap),
            ("empty", "gpt-x", dear),
            ("broken", "fake-broken-stream", cheap),
            ("broken", "gpt-y", dear),
        ],
        "router_settings: {routing_strategy: cost-based-routing, retry_after: 0.01}\n",
    ));
    let stream_body = |m: &str| json!({"model": m, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&stream_body("empty"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let route = r.headers()["x-sluice-route"].to_str().unwrap().to_string();
    assert!(
        route.starts_with("empty/1; ") && route.contains("after empty/0 (protocol)"),
        "{route}"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.contains("\"model\":\"gpt-x\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );

    // After the first chunk the client has bytes: the broken stream is passed on, no failover.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&stream_body("broken"))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["x-sluice-route"]
        .to_str()
        .unwrap()
        .starts_with("broken/0; "));
    let _ = r.text().await;
    assert_eq!(calls_to(&fake, "gpt-y"), 0);
}

#[tokio::test]
async fn auto_picks_a_capable_deployment() {
    let fake = FakeOpenAi::start();
    let gw = gateway(config(
        &fake,
        &[
            ("tiny", "gpt-tiny", "    model_info: {max_input_tokens: 64, input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000001}\n"),
            ("notools", "gpt-nt", "    model_info: {supports_function_calling: false, max_input_tokens: 100000, input_cost_per_token: 0.000001, output_cost_per_token: 0.000001}\n"),
            ("large", "gpt-large", "    model_info: {max_input_tokens: 200000, input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}\n"),
        ],
        "",
    )
    .replace("routing: {seed: 11}", "routing: {seed: 11, auto: {policy: cheapest, groups: {smart: balanced}}}"));
    let r = ask(&gw, chat("auto", "short question")).await;
    assert!(
        r.route.starts_with("tiny/0; auto cost-based-routing"),
        "{}",
        r.route
    );
    let long = "word ".repeat(400);
    let r = ask(&gw, chat("auto", &long)).await;
    assert!(
        r.route.starts_with("notools/0; auto cost-based-routing"),
        "{}",
        r.route
    );
    let mut with_tools = chat("auto", &long);
    with_tools["tools"] =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let r = ask(&gw, with_tools).await;
    assert!(
        r.route.starts_with("large/0; auto cost-based-routing"),
        "{}",
        r.route
    );
    let r = ask(&gw, chat("smart", "hi")).await;
    assert_eq!(r.status, 200);
    assert!(r.route.contains("; auto balanced: "), "{}", r.route);
    let huge = "word ".repeat(250_000);
    let r = ask(&gw, chat("auto", &huge)).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "no_capable_deployment");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("large/0: context window 200000"));
    // The models list shows the auto names too.
    let r = ask(&gw, chat("nope", "hi")).await;
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("auto"));
}

#[tokio::test]
async fn bad_routing_config_names_the_path() {
    let fake = FakeOpenAi::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        config(
            &fake,
            &[("g", "gpt-x", "")],
            "router_settings: {routing_strategy: fastest, fallbacks: [{g: [nowhere]}]}\n",
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router_settings.routing_strategy: unknown routing strategy \"fastest\""),
        "{err}"
    );
    assert!(
        err.contains("router_settings.fallbacks[0].g[0]: unknown model group \"nowhere\""),
        "{err}"
    );
}
