//! Virtual keys end to end: the real binary, mock deployments, the admin API, LiteLLM's aliases,
//! the `sluice keys` CLI, persistence across restarts, and the per-key cache namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, TestGateway};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const MASTER: &str = "mk-keys";

/// Two mock groups, a master key, the data directory the harness chooses.
fn config(master: bool, cache: bool) -> String {
    let mut s = String::from(
        "model_list:\n  - model_name: chat-a\n    litellm_params:\n      model: mock/a\n  - model_name: chat-b\n    litellm_params:\n      model: mock/b\n",
    );
    if master {
        s.push_str(&format!("general_settings:\n  master_key: {MASTER}\n"));
    }
    s.push_str("sluice:\n  data_dir: {data_dir}\n");
    if !cache {
        s.push_str("  cache: {enabled: false}\n");
    }
    s
}

fn gateway() -> TestGateway {
    TestGateway::builder().config(config(true, false)).spawn()
}

fn gateway_on(dir: &Path) -> TestGateway {
    TestGateway::builder()
        .config(config(true, false))
        .data_dir(dir)
        .spawn()
}

/// Any request with an optional bearer key; returns status and JSON body (`Null` if not JSON).
async fn call(
    gw: &TestGateway,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client().request(method, gw.url(path));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin(gw: &TestGateway, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(gw, Some(MASTER), method, path, body).await
}

/// Creates a key; returns `(id, secret)`.
async fn create(gw: &TestGateway, body: Value) -> (String, String) {
    let (s, b) = admin(gw, Method::POST, "/admin/keys", Some(body)).await;
    assert_eq!(s, 201, "{b}");
    let secret = b["key"].as_str().unwrap().to_string();
    (b["id"].as_str().unwrap().to_string(), secret)
}

async fn chat(gw: &TestGateway, key: Option<&str>, model: &str) -> (u16, Value) {
    call(
        gw,
        key,
        Method::POST,
        "/v1/chat/completions",
        Some(json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})),
    )
    .await
}

fn code(b: &Value) -> &str {
    b["error"]["code"].as_str().unwrap_or("")
}

async fn model_ids(gw: &TestGateway, key: &str) -> Vec<String> {
    let (s, b) = call(gw, Some(key), Method::GET, "/v1/models", None).await;
    assert_eq!(s, 200, "{b}");
    b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn create_use_and_restrict_models() {
    let gw = gateway();
    let (s, b) = admin(
        &gw,
        Method::POST,
        "/admin/keys",
        Some(json!({"alias": "team-a", "models": ["chat-a"], "rpm": 100})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let secret = b["key"].as_str().unwrap();
    let random = secret.strip_prefix("sk-sluice-").unwrap();
    assert_eq!(random.len(), 32);
    assert!(random.bytes().all(|c| c.is_ascii_alphanumeric()));
    let id = b["id"].as_str().unwrap();
    assert!(id.starts_with("key_") && id.len() == 20, "{id}");
    assert_eq!(b["alias"], "team-a");
    assert_eq!(b["status"], "active");
    assert_eq!(b["models"], json!(["chat-a"]));

    // The OpenAI-style request with the new key.
    let (s, b) = chat(&gw, Some(secret), "chat-a").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "chat.completion");
    // Also as `x-api-key`.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", secret)
        .json(&json!({"model": "chat-a", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Another group is refused, and hidden from /v1/models.
    let (s, b) = chat(&gw, Some(secret), "chat-b").await;
    assert_eq!((s, code(&b)), (403, "model_not_allowed"), "{b}");
    assert_eq!(model_ids(&gw, secret).await, vec!["chat-a"]);
    let (s, b) = call(&gw, Some(secret), Method::GET, "/v1/models/chat-b", None).await;
    assert_eq!((s, code(&b)), (403, "model_not_allowed"), "{b}");
    let (s, _) = call(&gw, Some(secret), Method::GET, "/v1/models/chat-a", None).await;
    assert_eq!(s, 200);

    // A key without a model list, and the master key, see everything.
    let (_, all) = create(&gw, json!({})).await;
    assert_eq!(model_ids(&gw, &all).await, vec!["chat-a", "chat-b"]);
    assert_eq!(model_ids(&gw, MASTER).await, vec!["chat-a", "chat-b"]);
    assert_eq!(chat(&gw, Some(&all), "chat-b").await.0, 200);

    // PATCH widens the list; the change applies to the next request.
    let (s, b) = admin(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"models": ["chat-a", "chat-b"], "rpm": null})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rpm"], Value::Null);
    assert_eq!(chat(&gw, Some(secret), "chat-b").await.0, 200);

    // Wrong and missing keys.
    let (s, b) = chat(&gw, Some("sk-sluice-wrong"), "chat-a").await;
    assert_eq!((s, code(&b)), (401, "invalid_api_key"));
    let (s, b) = chat(&gw, None, "chat-a").await;
    assert_eq!((s, code(&b)), (401, "missing_api_key"));
}

#[tokio::test]
async fn expired_keys_are_refused_with_key_expired() {
    let gw = gateway();
    let (_, past) = create(&gw, json!({"expires": "2020-01-01T00:00:00Z"})).await;
    let (s, b) = chat(&gw, Some(&past), "chat-a").await;
    assert_eq!((s, code(&b)), (401, "key_expired"), "{b}");
    assert_eq!(b["error"]["message"], "key expired at 2020-01-01T00:00:00Z");

    let (id, soon) = create(&gw, json!({"expires": "2s"})).await;
    assert_eq!(chat(&gw, Some(&soon), "chat-a").await.0, 200);
    let (_, rec) = admin(&gw, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(rec["status"], "active");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let (s, b) = chat(&gw, Some(&soon), "chat-a").await;
    assert_eq!((s, code(&b)), (401, "key_expired"), "{b}");
    let (_, rec) = admin(&gw, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(rec["status"], "expired");

    // Extending the expiry brings it back.
    let (s, _) = admin(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"expires": null})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(chat(&gw, Some(&soon), "chat-a").await.0, 200);
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace_period() {
    let gw = gateway();
    let (id, old) = create(&gw, json!({"alias": "rot"})).await;
    let (s, b) = admin(
        &gw,
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": 1})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let new = b["key"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(b["id"], id.as_str());
    assert_eq!(b["grace_seconds"], 1);
    assert_eq!(chat(&gw, Some(&new), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(&old), "chat-a").await.0, 200, "within grace");
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (s, b) = chat(&gw, Some(&old), "chat-a").await;
    assert_eq!((s, code(&b)), (401, "invalid_api_key"), "after grace");
    assert_eq!(chat(&gw, Some(&new), "chat-a").await.0, 200);

    // Default grace: a day; an empty body is fine.
    let (s, b) = admin(&gw, Method::POST, &format!("/admin/keys/{id}/rotate"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["grace_seconds"], 86_400);
    let newest = b["key"].as_str().unwrap();
    assert_eq!(chat(&gw, Some(&new), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(newest), "chat-a").await.0, 200);

    let (s, b) = admin(
        &gw,
        Method::POST,
        "/admin/keys/key_0000000000000000/rotate",
        None,
    )
    .await;
    assert_eq!((s, code(&b)), (404, "key_not_found"));
}

#[tokio::test]
async fn revoked_keys_stop_at_once() {
    let gw = gateway();
    let (id, secret) = create(&gw, json!({})).await;
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 200);
    let (s, b) = admin(&gw, Method::DELETE, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["status"], "revoked");
    assert!(b["revoked_at"].as_u64().is_some());
    let (s, b) = chat(&gw, Some(&secret), "chat-a").await;
    assert_eq!((s, code(&b)), (401, "invalid_api_key"), "{b}");

    // The record stays, marked revoked; it cannot be changed or rotated.
    let (s, b) = admin(&gw, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("revoked")));
    let (s, b) = admin(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"rpm": 5})),
    )
    .await;
    assert_eq!((s, code(&b)), (409, "key_revoked"));
    let (s, b) = admin(&gw, Method::POST, &format!("/admin/keys/{id}/rotate"), None).await;
    assert_eq!((s, code(&b)), (409, "key_revoked"));
    // Revoking again is harmless; an unknown id is a 404.
    assert_eq!(
        admin(&gw, Method::DELETE, &format!("/admin/keys/{id}"), None)
            .await
            .0,
        200
    );
    let (s, b) = admin(&gw, Method::DELETE, "/admin/keys/key_nope", None).await;
    assert_eq!((s, code(&b)), (404, "key_not_found"));
    assert!(b["error"]["message"].as_str().unwrap().contains("key_nope"));
}

#[tokio::test]
async fn admin_api_needs_the_master_key_or_an_admin_key() {
    let gw = gateway();
    let (_, user) = create(&gw, json!({})).await;
    let (s, b) = call(&gw, Some(&user), Method::GET, "/admin/keys", None).await;
    assert_eq!((s, code(&b)), (403, "admin_required"), "{b}");
    let (s, _) = call(
        &gw,
        Some(&user),
        Method::POST,
        "/admin/keys",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(
        &gw,
        Some(&user),
        Method::POST,
        "/key/generate",
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(&gw, Some(&user), Method::GET, "/admin/cache/stats", None).await;
    assert!(s == 401 || s == 403, "{s}");
    let (s, b) = call(&gw, None, Method::GET, "/admin/keys", None).await;
    assert_eq!((s, code(&b)), (401, "missing_api_key"));
    let (s, b) = call(&gw, Some("nope"), Method::GET, "/admin/keys", None).await;
    assert_eq!((s, code(&b)), (401, "invalid_api_key"));

    // An admin key manages keys like the master key.
    let (_, admin_key) = create(&gw, json!({"admin": true})).await;
    let (s, b) = call(
        &gw,
        Some(&admin_key),
        Method::POST,
        "/admin/keys",
        Some(json!({"alias": "made-by-admin-key"})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(&gw, Some(&admin_key), Method::GET, "/admin/keys", None).await;
    assert_eq!((s, b["data"].as_array().unwrap().len()), (200, 3));
}

#[tokio::test]
async fn secrets_never_appear_in_lists_records_errors_or_logs() {
    let gw = gateway();
    let mut secrets = Vec::new();
    for i in 0..3 {
        let (id, s) = create(&gw, json!({"alias": format!("k{i}")})).await;
        // Use each one (and fail once with it) so the logs have had a chance to see it.
        chat(&gw, Some(&s), "chat-a").await;
        chat(&gw, Some(&s), "chat-nope").await;
        let (_, rec) = admin(&gw, Method::GET, &format!("/admin/keys/{id}"), None).await;
        assert!(!rec.to_string().contains(&s));
        assert!(rec.get("key").is_none());
        secrets.push(s);
    }
    let (s, list) = admin(&gw, Method::GET, "/admin/keys", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    let text = list.to_string();
    for s in &secrets {
        assert!(!text.contains(s.as_str()));
        assert!(!text.contains(&s[10..]));
    }
    let (_, info) = admin(
        &gw,
        Method::GET,
        &format!("/key/info?key={}", secrets[0]),
        None,
    )
    .await;
    assert!(!info.to_string().contains(&secrets[0]), "{info}");
    let logs = gw.stderr();
    for s in &secrets {
        assert!(!logs.contains(&s[10..]), "secret in logs");
    }
    // A secret given where an id belongs is not echoed in the error.
    let (s, b) = admin(
        &gw,
        Method::GET,
        &format!("/admin/keys/{}", secrets[0]),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert!(!b.to_string().contains(&secrets[0][10..]), "{b}");
}

#[tokio::test]
async fn keys_persist_across_restart() {
    let data = tempfile::tempdir().unwrap();
    let (id, secret, rotated_old, rotated_new, revoked, before) = {
        let mut gw = gateway_on(data.path());
        let (id, secret) = create(
            &gw,
            json!({"alias": "keep", "models": ["chat-a"], "rpm": 7, "tpm": 700,
                   "max_budget": 2.5, "budget_duration": "30d", "expires": "30d",
                   "cache_namespace": "tenant-a", "cache_policy": {"mode": "threshold", "threshold": 0.9},
                   "metadata": {"env": "prod"}, "user_id": "u1", "team_id": "t1"}),
        )
        .await;
        let (rid, rotated_old) = create(&gw, json!({"alias": "rotated"})).await;
        let (_, b) = admin(
            &gw,
            Method::POST,
            &format!("/admin/keys/{rid}/rotate"),
            Some(json!({"grace_seconds": 3600})),
        )
        .await;
        let rotated_new = b["key"].as_str().unwrap().to_string();
        let (vid, revoked) = create(&gw, json!({"alias": "gone"})).await;
        admin(&gw, Method::DELETE, &format!("/admin/keys/{vid}"), None).await;
        let (_, before) = admin(&gw, Method::GET, "/admin/keys", None).await;
        gw.terminate();
        assert!(gw.wait_exit(Duration::from_secs(20)).is_some());
        (id, secret, rotated_old, rotated_new, revoked, before)
    };
    let gw = gateway_on(data.path());
    let (_, after) = admin(&gw, Method::GET, "/admin/keys", None).await;
    assert_eq!(after, before, "a restart changes nothing");
    let (_, rec) = admin(&gw, Method::GET, &format!("/admin/keys/{id}"), None).await;
    assert_eq!(rec["budget_duration"], "30d");
    assert_eq!(
        rec["cache_policy"],
        json!({"mode": "threshold", "threshold": 0.9})
    );
    assert_eq!(rec["metadata"], json!({"env": "prod"}));
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(&secret), "chat-b").await.0, 403);
    assert_eq!(chat(&gw, Some(&rotated_old), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(&rotated_new), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(&revoked), "chat-a").await.0, 401);
}

#[tokio::test]
async fn bad_admin_input_names_the_field() {
    let gw = gateway();
    let cases = [
        (
            json!({"models": ["chat-a", "x"]}),
            "models[1]",
            "models[1]: unknown model group \"x\"",
        ),
        (
            json!({"budget_duration": "monthly"}),
            "budget_duration",
            "budget_duration: expected like 30s, 15m, 1h, 1d, 30d",
        ),
        (json!({"rpm": 0}), "rpm", "rpm: must be > 0"),
        (json!({"tpm": -5}), "tpm", "tpm: must be > 0"),
        (
            json!({"max_parallel_requests": "2"}),
            "max_parallel_requests",
            "",
        ),
        (
            json!({"max_budget": -1}),
            "max_budget",
            "max_budget: must be >= 0",
        ),
        (json!({"expires": "next week"}), "expires", ""),
        (
            json!({"cache_policy": {"mode": "threshold", "threshold": 0}}),
            "cache_policy.threshold",
            "cache_policy.threshold: must be a number in (0, 1]",
        ),
        (
            json!({"cache_namespace": "has space"}),
            "cache_namespace",
            "",
        ),
        (json!({"metadata": [1]}), "metadata", ""),
        (json!({"admin": "yes"}), "admin", ""),
        (json!({"colour": "red"}), "colour", ""),
        (json!({"id": "key_mine"}), "id", ""),
    ];
    for (body, param, message) in cases {
        let (s, b) = admin(&gw, Method::POST, "/admin/keys", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(b["error"]["param"], param, "{body}: {b}");
        let m = b["error"]["message"].as_str().unwrap();
        assert!(m.starts_with(&format!("{param}: ")), "{m}");
        if !message.is_empty() {
            assert_eq!(m, message);
        }
    }
    // The same checks on PATCH, and nothing was created.
    let (id, _) = create(&gw, json!({})).await;
    let (s, b) = admin(
        &gw,
        Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"rpm": 0})),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("rpm")));
    let (s, b) = admin(
        &gw,
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(json!({"grace_seconds": -1})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (400, Some("grace_seconds"))
    );
    let (_, list) = admin(&gw, Method::GET, "/admin/keys", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // Broken JSON still gets the OpenAI error shape.
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn litellm_key_endpoints() {
    let gw = gateway();
    let (s, b) = admin(
        &gw,
        Method::POST,
        "/key/generate",
        Some(
            json!({"key_alias": "lite", "models": ["chat-a"], "rpm_limit": 10,
                    "tpm_limit": 1000, "max_parallel_requests": 2, "max_budget": 5,
                    "budget_duration": "1d", "duration": "30d",
                    "metadata": {"team": "core"}, "user_id": "u1", "team_id": "t1",
                    "aliases": {}, "config": {}}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let secret = b["key"].as_str().unwrap().to_string();
    let id = b["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("sk-sluice-"));
    assert_eq!(
        b["key_name"],
        format!("sk-sluice-...{}", &secret[secret.len() - 4..])
    );
    // `token` is the sha256 hex of the key, as in LiteLLM.
    let token = b["token"].as_str().unwrap().to_string();
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(token, hex);
    assert_eq!(
        (b["key_alias"].as_str(), b["rpm_limit"].as_u64()),
        (Some("lite"), Some(10))
    );
    assert!(b["expires"].as_str().unwrap().ends_with('Z'));
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(&secret), "chat-b").await.0, 403);

    // LiteLLM names are checked with LiteLLM's field named.
    let (s, b) = admin(
        &gw,
        Method::POST,
        "/key/generate",
        Some(json!({"rpm_limit": 0})),
    )
    .await;
    assert_eq!((s, b["error"]["param"].as_str()), (400, Some("rpm_limit")));

    // /key/info by secret, by token, by id, and a key reading itself.
    for r in [secret.as_str(), token.as_str(), id.as_str()] {
        let (s, b) = admin(&gw, Method::GET, &format!("/key/info?key={r}"), None).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["key"], id.as_str());
        assert_eq!(b["info"]["tpm_limit"], 1000);
        assert_eq!(b["info"]["user_id"], "u1");
    }
    let (s, b) = call(&gw, Some(&secret), Method::GET, "/key/info", None).await;
    assert_eq!((s, b["info"]["id"].as_str()), (200, Some(id.as_str())));
    let (_, other) = create(&gw, json!({})).await;
    let (s, _) = call(
        &gw,
        Some(&other),
        Method::GET,
        &format!("/key/info?key={id}"),
        None,
    )
    .await;
    assert_eq!(s, 403, "a key may read only itself");

    // /key/update.
    let (s, b) = admin(
        &gw,
        Method::POST,
        "/key/update",
        Some(json!({"key": secret, "models": ["chat-a", "chat-b"]})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(chat(&gw, Some(&secret), "chat-b").await.0, 200);

    // /key/delete: all or nothing; unknown -> 404 naming which.
    let (s, b) = admin(
        &gw,
        Method::POST,
        "/key/delete",
        Some(json!({"keys": [secret, "sk-sluice-unknown"]})),
    )
    .await;
    assert_eq!((s, code(&b)), (404, "key_not_found"), "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("keys[1]"));
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 200);
    let (s, b) = admin(
        &gw,
        Method::POST,
        "/key/delete",
        Some(json!({"keys": [secret]})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["deleted_keys"], json!([id]));
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 401);
}

#[tokio::test]
async fn open_gateway_still_resolves_virtual_keys() {
    let gw = TestGateway::builder().config(config(false, false)).spawn();
    let (s, b) = call(
        &gw,
        None,
        Method::POST,
        "/admin/keys",
        Some(json!({"models": ["chat-a"]})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let secret = b["key"].as_str().unwrap().to_string();
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(
        chat(&gw, Some(&secret), "chat-b").await.0,
        403,
        "limits apply"
    );
    assert_eq!(chat(&gw, None, "chat-b").await.0, 200, "open without a key");
    assert_eq!(
        chat(&gw, Some("sk-dummy"), "chat-b").await.0,
        200,
        "SDK dummy key"
    );
    let (s, _) = call(&gw, Some(&secret), Method::GET, "/admin/keys", None).await;
    assert_eq!(
        s, 403,
        "a non-admin key is not an admin even on an open gateway"
    );
    call(
        &gw,
        None,
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    let (s, b) = chat(&gw, Some(&secret), "chat-a").await;
    assert_eq!(
        (s, code(&b)),
        (401, "invalid_api_key"),
        "a revoked sluice key is refused"
    );
}

fn sluice_keys(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("keys")
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SLUICE_MASTER_KEY")
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_manages_keys_in_a_stopped_gateways_store() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let cfg = work.path().join("config.yaml");
    std::fs::write(
        &cfg,
        config(true, false).replace("{data_dir}", &data.display().to_string()),
    )
    .unwrap();

    let (rc, out, err) = sluice_keys(
        &cfg,
        &[
            "create",
            "--alias",
            "cli",
            "--models",
            "chat-a",
            "--rpm",
            "5",
            "--expires",
            "30d",
            "--json",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let secret = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["rpm"], 5);

    let (rc, out, _) = sluice_keys(&cfg, &["create", "--alias", "second"]);
    assert_eq!(rc, 0);
    assert!(
        out.contains("sk-sluice-") && out.contains("shown once"),
        "{out}"
    );

    let (rc, out, _) = sluice_keys(&cfg, &["list"]);
    assert_eq!(rc, 0);
    assert!(out.starts_with("ID"), "{out}");
    assert!(
        out.contains(&id) && out.contains("cli") && out.contains("second"),
        "{out}"
    );
    assert!(!out.contains("sk-sluice-"), "no secrets in the list: {out}");
    let (rc, out, _) = sluice_keys(&cfg, &["list", "--json"]);
    assert_eq!(rc, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert!(!out.contains(&secret));

    // Bad usage: exit 2 with the field named.
    let (rc, _, err) = sluice_keys(&cfg, &["create", "--rpm", "0"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("rpm: must be > 0"), "{err}");
    let (rc, _, err) = sluice_keys(&cfg, &["create", "--models", "chat-a,nope"]);
    assert_eq!(rc, 2);
    assert!(
        err.contains("models[1]: unknown model group \"nope\""),
        "{err}"
    );
    let (rc, _, _) = sluice_keys(&cfg, &["rotate", &id, "--grace", "soon"]);
    assert_eq!(rc, 2);
    let (rc, _, _) = sluice_keys(&cfg, &["frobnicate"]);
    assert_eq!(rc, 2);
    // An unknown id is an error, not bad usage.
    let (rc, _, err) = sluice_keys(&cfg, &["revoke", "key_0000000000000000"]);
    assert_eq!(rc, 1, "{err}");

    // The gateway accepts the key the CLI created.
    let mut gw = gateway_on(&data);
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 200);
    assert_eq!(chat(&gw, Some(&secret), "chat-b").await.0, 403);

    // While it runs, the store is locked: the CLI says so, or goes through --url.
    let (rc, _, err) = sluice_keys(&cfg, &["list"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("--url") && err.contains("stop the gateway"),
        "{err}"
    );
    let (rc, out, err) = sluice_keys(&cfg, &["--url", &gw.base, "list", "--json"]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (rc, out, err) = sluice_keys(
        &cfg,
        &["--url", &gw.base, "rotate", &id, "--grace", "1h", "--json"],
    );
    assert_eq!(rc, 0, "{err}");
    let rotated = serde_json::from_str::<Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chat(&gw, Some(&rotated), "chat-a").await.0, 200);
    assert_eq!(
        chat(&gw, Some(&secret), "chat-a").await.0,
        200,
        "old one in grace"
    );
    let (rc, _, err) = sluice_keys(&cfg, &["--url", &gw.base, "create", "--rpm", "0"]);
    assert_eq!(rc, 2, "{err}");
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some());

    // Stopped again: revoke offline, and the restarted gateway refuses the key.
    let (rc, out, err) = sluice_keys(&cfg, &["revoke", &id]);
    assert_eq!(rc, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let (rc, _, _) = sluice_keys(&cfg, &["rotate", &id]);
    assert_eq!(rc, 1, "a revoked key cannot be rotated");
    let gw = gateway_on(&data);
    assert_eq!(chat(&gw, Some(&secret), "chat-a").await.0, 401);
    assert_eq!(chat(&gw, Some(&rotated), "chat-a").await.0, 401);
}

#[tokio::test]
async fn a_keys_cache_namespace_is_pinned() {
    let gw = TestGateway::builder().config(config(true, true)).spawn();
    let (a_id, a) = create(&gw, json!({"alias": "tenant-a"})).await;
    let (_, b) = create(&gw, json!({"alias": "tenant-b"})).await;
    let ask = |key: String, ns: Option<String>| {
        let url = gw.url("/v1/chat/completions");
        async move {
            let mut rb = client().post(url).bearer_auth(key).json(&json!({
                "model": "chat-a",
                "messages": [{"role": "user", "content": "How do I reset my password?"}]
            }));
            if let Some(ns) = ns {
                rb = rb.header("x-sluice-cache-namespace", ns);
            }
            let r = rb.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.headers()
                .get("x-sluice-cache")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        }
    };
    assert_eq!(ask(a.clone(), None).await, "miss");
    assert_eq!(ask(a.clone(), None).await, "hit-exact");
    // Key B asks the same question: no hit from A's namespace, even when it names it.
    assert_eq!(ask(b.clone(), Some(a_id.clone())).await, "miss");
    assert_eq!(ask(b.clone(), None).await, "hit-exact", "B's own entry");
    // The master key may choose a namespace: A's entry is there.
    assert_eq!(ask(MASTER.to_string(), Some(a_id)).await, "hit-exact");
}
