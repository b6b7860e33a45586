//! Transport and hardening end to end: HTTPS, the separate admin listener, CORS, the slowloris
//! guard, body size and JSON nesting limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, TestGateway};
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const MASTER: &str = "mk-transport";
const ALLOWED: &str = "https://app.example.com";

/// One mock group, a master key, no cache; `extra` is appended inside `sluice:`.
fn config(extra: &str) -> String {
    format!(
        "model_list:\n  - model_name: mock\n    litellm_params:\n      model: mock/m\n\
         general_settings:\n  master_key: {MASTER}\n\
         sluice:\n  data_dir: '{{data_dir}}'\n  cache: {{enabled: false}}\n{extra}"
    )
}

fn gateway(extra: &str) -> TestGateway {
    TestGateway::builder().config(config(extra)).spawn()
}

/// Asserts an OpenAI-shaped error body and returns it.
async fn openai_error(res: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    body
}

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM files in `dir`.
fn self_signed(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap();
    let cert_pem = ck.cert.pem();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert_pem, cert, key)
}

#[tokio::test]
async fn tls_serves_https_only() {
    let certs = tempfile::tempdir().unwrap();
    let (cert_pem, cert, key) = self_signed(certs.path());
    let gw = gateway(&format!(
        "  tls: {{cert: '{}', key: '{}'}}\n  admin_listen: 127.0.0.1:0\n",
        cert.display(),
        key.display()
    ));
    assert!(gw.base.starts_with("https://"), "{}", gw.base);
    let admin = gw.admin_base.clone().unwrap();
    assert!(admin.starts_with("https://"), "{admin}");

    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let res = https
        .get(gw.url("/v1/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = https
        .get(gw.admin_url("/admin/keys"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = gw.url("/v1/models").replacen("https://", "http://", 1);
    let res = client().get(plain).bearer_auth(MASTER).send().await;
    assert!(
        res.is_err(),
        "plain HTTP answered: {:?}",
        res.map(|r| r.status())
    );
    // A client that does not trust the certificate is refused too.
    assert!(client().get(gw.url("/v1/models")).send().await.is_err());
}

#[test]
fn bad_tls_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let file = dir.path().join("config.yaml");
    for (tls, key) in [
        (
            format!("{{cert: /nonexistent/cert.pem, key: '{}'}}", junk.display()),
            "sluice.tls.cert",
        ),
        (
            format!("{{cert: '{}', key: '{}'}}", junk.display(), junk.display()),
            "sluice.tls.key",
        ),
    ] {
        std::fs::write(&file, config(&format!("  tls: {tls}\n"))).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(key), "{key} not in: {stderr}");
    }
}

#[tokio::test]
async fn admin_listener_splits_routes() {
    let gw = gateway("  admin_listen: 127.0.0.1:0\n");
    let admin = gw.admin_base.clone().unwrap();
    assert!(admin.starts_with("http://") && admin != gw.base, "{admin}");
    let get = |url: String| client().get(url).bearer_auth(MASTER).send();

    assert_eq!(
        get(gw.admin_url("/admin/keys")).await.unwrap().status(),
        200
    );
    assert_eq!(get(gw.admin_url("/metrics")).await.unwrap().status(), 200);
    assert_eq!(get(gw.url("/v1/models")).await.unwrap().status(), 200);
    for path in [
        "/admin/keys",
        "/metrics",
        "/key/info?key=x",
        "/admin/spend",
        // Percent-encoding reaches the same route: it must not slip past the split.
        "/%61dmin/keys",
    ] {
        let body = openai_error(get(gw.url(path)).await.unwrap(), StatusCode::NOT_FOUND).await;
        assert_eq!(body["error"]["code"], "unknown_url", "{path}");
    }
    let res = get(gw.admin_url("/v1/models")).await.unwrap();
    openai_error(res, StatusCode::NOT_FOUND).await;
    // Probes answer on both ports.
    assert_eq!(
        get(gw.url("/health/liveliness")).await.unwrap().status(),
        200
    );
    assert_eq!(
        get(gw.admin_url("/health/liveliness"))
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn preflight(gw: &TestGateway, origin: &str) -> reqwest::Response {
    client()
        .request(Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type, x-sluice-cache-ttl",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_allows_listed_origins_only() {
    let gw = gateway(&format!("  cors: {{allow_origins: ['{ALLOWED}']}}\n"));
    let res = preflight(&gw, ALLOWED).await;
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], ALLOWED);
    let methods = h[ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let headers = h[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
    for name in ["authorization", "content-type", "x-sluice-cache-ttl"] {
        assert!(headers.contains(name), "{name} not in {headers}");
    }

    let res = preflight(&gw, "https://evil.example.com").await;
    assert!(res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(res.headers().get(ACCESS_CONTROL_ALLOW_HEADERS).is_none());

    // Actual requests: the allowed origin can read the answer, another origin cannot.
    for (origin, allowed) in [(ALLOWED, true), ("https://evil.example.com", false)] {
        let res = client()
            .get(gw.url("/v1/models"))
            .bearer_auth(MASTER)
            .header(ORIGIN, origin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let acao = res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN);
        assert_eq!(acao.is_some(), allowed, "{origin}");
    }
}

#[tokio::test]
async fn no_cors_headers_without_config() {
    let gw = gateway("");
    let res = preflight(&gw, ALLOWED).await;
    assert!(res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    assert!(res.headers().get(ACCESS_CONTROL_ALLOW_METHODS).is_none());
    let res = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(MASTER)
        .header(ORIGIN, ALLOWED)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
}

#[test]
fn slowloris_client_is_disconnected() {
    let gw = gateway("  client_request_timeout_seconds: 1\n");
    let addr = gw.base.strip_prefix("http://").unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    // Half a request head, then silence.
    sock.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-")
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    loop {
        match sock.read(&mut buf) {
            // Closed (after a 408, which is fine).
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection still open: {e}"),
        }
        assert!(Instant::now() < deadline, "connection still open");
    }
}

#[tokio::test]
async fn oversized_body_is_413() {
    let gw = gateway("  max_request_body_bytes: 1024\n");
    let body = json!({
        "model": "mock",
        "messages": [{"role": "user", "content": "x".repeat(4096)}],
    });
    let res = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&body)
        .send()
        .await
        .unwrap();
    let body = openai_error(res, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["error"]["code"], "request_too_large");
}

#[tokio::test]
async fn deeply_nested_json_is_400() {
    let gw = gateway("");
    // 200 levels: past serde_json's recursion limit of 128, far below a stack overflow.
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let body = format!(
        r#"{{"model":"mock","messages":[{{"role":"user","content":"hi"}}],"metadata":{nested}}}"#
    );
    let res = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let body = openai_error(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
    // The gateway is still up.
    let res = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
