//! SIGTERM: readiness turns false, new connections are refused, in-flight streams finish, exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, TestGateway};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn sigterm_drains_in_flight_streams_then_exits_zero() {
    let mut gw = TestGateway::builder()
        .config(
            "model_list:\n  - model_name: slow\n    litellm_params:\n      model: mock/slow\n      mock_chunk_delay_ms: 100\nsluice:\n  shutdown_grace_seconds: 20\n",
        )
        .spawn();
    let c = client();
    assert_eq!(
        c.get(gw.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resp = c
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "slow", "stream": true,
                      "messages": [{"role": "user", "content": "a b c d e f g h i j k l m n o"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::spawn(async move { resp.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once stopping.
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(gw.url("/health/readiness"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        r.map(|r| r.status() != 200).unwrap_or(true),
        "not ready while draining"
    );
    let text = body.await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "stream finished: {text}"
    );
    let status = gw
        .wait_exit(Duration::from_secs(20))
        .expect("process exits");
    assert_eq!(status.code(), Some(0));
    assert!(gw.stderr().contains("shutdown signal received"));
}
