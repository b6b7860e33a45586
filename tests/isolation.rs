//! Tenant isolation between two virtual keys in different cache namespaces: no shared cache hit
//! (exact or semantic, JSON or stream), no access to the other's stored Responses, and no view of
//! the other's audit records.
//!
//! Already covered elsewhere, and not repeated here: a key cannot pick another key's namespace
//! with `x-sluice-cache-namespace` (`keys.rs::a_keys_cache_namespace_is_pinned`, exact hits), a
//! virtual key cannot read or continue the master key's stored response
//! (`responses_api.rs::another_key_cannot_see_or_continue_a_response`), and an admin virtual key
//! gets 403 from `/admin/audit` (`audit.rs::admin_audit_serves_filtered_pages_and_...`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, config_for, TestGateway};
use serde_json::{json, Value};

const MASTER: &str = "mk-isolation";

fn gateway(fake: &FakeOpenAi) -> TestGateway {
    let extra =
        format!("general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n");
    TestGateway::builder()
        .config(config_for(&fake.base, &["gpt-x"], &extra))
        .spawn()
}

/// Creates a key in its own namespace; returns (id, secret).
async fn key(gw: &TestGateway, alias: &str, namespace: &str) -> (String, String) {
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"alias": alias, "cache_namespace": namespace}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}

/// What one chat answer said about itself.
struct Answer {
    /// `x-sluice-cache`.
    cache: String,
    /// `x-request-id`.
    request_id: String,
    /// `x-sluice-cache-entry` (the entry that answered a hit).
    entry: String,
}

/// Asks a chat question.
async fn ask(gw: &TestGateway, key: &str, text: &str, stream: bool) -> Answer {
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": "gpt-x", "stream": stream,
                      "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let answer = Answer {
        cache: header("x-sluice-cache"),
        request_id: header("x-request-id"),
        entry: header("x-sluice-cache-entry"),
    };
    r.text().await.unwrap();
    answer
}

#[tokio::test]
async fn keys_in_different_namespaces_never_share_a_cache_hit() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let (_, a) = key(&gw, "tenant-a", "ns-a").await;
    let (_, b) = key(&gw, "tenant-b", "ns-b").await;

    // A fills its namespace; a paraphrase is a semantic hit for A itself, so the entry is
    // searchable by similarity.
    assert_eq!(
        ask(&gw, &a, "How do I reset my password?", false)
            .await
            .cache,
        "miss"
    );
    let para = ask(&gw, &a, "how do i reset my password", false).await;
    assert_eq!(para.cache, "hit-semantic");
    let a_entry = para.entry;
    assert!(!a_entry.is_empty());
    assert_eq!(fake.call_count(), 1);

    // B asks the paraphrase (as a stream), then the exact question: never A's entry.
    assert_eq!(
        ask(&gw, &b, "how do i reset my password", true).await.cache,
        "miss"
    );
    assert_eq!(fake.call_count(), 2, "B's question went upstream");
    // (The first is at most a semantic hit on B's own paraphrase entry, then B has its own.)
    for (i, stream) in [false, true].into_iter().enumerate() {
        let again = ask(&gw, &b, "How do I reset my password?", stream).await;
        assert_ne!(again.entry, a_entry, "A's entry answered B");
        if i == 0 {
            assert_ne!(
                again.cache, "hit-exact",
                "an exact entry B never wrote answered B"
            );
        }
    }
    // A still hits its own entry.
    let own = ask(&gw, &a, "How do I reset my password?", true).await;
    assert_eq!(
        (own.cache.as_str(), own.entry.as_str()),
        ("hit-exact", a_entry.as_str())
    );

    // The admin's dry run sees each namespace's entries only in that namespace.
    let lookup = |ns: &str| {
        let url = gw.url("/admin/cache/lookup");
        let body =
            json!({"model": "gpt-x", "prompt": "How do I reset my password?", "namespace": ns});
        async move {
            let r = client()
                .post(url)
                .bearer_auth(MASTER)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["candidates"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert!(lookup("ns-a").await >= 1);
    assert_eq!(lookup("ns-c").await, 0, "an unused namespace is empty");
}

#[tokio::test]
async fn a_stored_response_is_invisible_to_another_tenant() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let (_, a) = key(&gw, "tenant-a", "ns-a").await;
    let (_, b) = key(&gw, "tenant-b", "ns-b").await;
    let r = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&a)
        .json(&json!({"model": "gpt-x", "input": "A's private note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let call = |key: String, method: reqwest::Method, path: String| {
        let url = gw.url(&path);
        async move {
            let r = client()
                .request(method, url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for (m, p) in [
        (reqwest::Method::GET, format!("/v1/responses/{id}")),
        (
            reqwest::Method::GET,
            format!("/v1/responses/{id}/input_items"),
        ),
        (reqwest::Method::DELETE, format!("/v1/responses/{id}")),
    ] {
        let (s, body) = call(b.clone(), m, p.clone()).await;
        assert_eq!(s, 404, "{p}: {body}");
        assert!(!body.contains("private note"), "{body}");
    }
    // Nor can B continue it.
    let r = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(&b)
        .json(&json!({"model": "gpt-x", "input": "go on", "previous_response_id": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // B's failed delete left it in place for A.
    let (s, body) = call(
        a.clone(),
        reqwest::Method::GET,
        format!("/v1/responses/{id}/input_items"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("private note"), "{body}");
}

#[tokio::test]
async fn a_tenant_sees_no_audit_records_and_each_record_names_its_own_key() {
    let fake = FakeOpenAi::start();
    let gw = gateway(&fake);
    let (a_id, a) = key(&gw, "tenant-a", "ns-a").await;
    let (b_id, b) = key(&gw, "tenant-b", "ns-b").await;
    let mut a_requests = Vec::new();
    let mut b_requests = Vec::new();
    for i in 0..3 {
        a_requests.push(
            ask(&gw, &a, &format!("question {i} from a"), false)
                .await
                .request_id,
        );
        b_requests.push(
            ask(&gw, &b, &format!("question {i} from b"), i == 0)
                .await
                .request_id,
        );
    }

    // A non-admin key cannot read the audit log at all, not even filtered to itself.
    for (key, own) in [(&a, &a_id), (&b, &b_id)] {
        for query in [String::new(), format!("?key={own}")] {
            let r = client()
                .get(gw.url(&format!("/admin/audit{query}")))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
            let body = r.text().await.unwrap();
            assert!(!body.contains("request_id"), "{body}");
        }
    }

    // The admin's view filtered by a key holds exactly that key's requests.
    // The streamed request is written when its stream ends.
    let a_view = common::audit_records(
        &gw,
        MASTER,
        &format!("kind=request&key={a_id}&limit=1000"),
        3,
    )
    .await;
    let b_view = common::audit_records(
        &gw,
        MASTER,
        &format!("kind=request&key={b_id}&limit=1000"),
        3,
    )
    .await;
    for (view, own_id, own, other) in [
        (&a_view, &a_id, &a_requests, &b_requests),
        (&b_view, &b_id, &b_requests, &a_requests),
    ] {
        assert_eq!(view.len(), 3, "{view:?}");
        for rec in view {
            let r = &rec["request"];
            assert_eq!(r["key_id"], own_id.as_str(), "{rec}");
            let rid = r["request_id"].as_str().unwrap().to_string();
            assert!(
                own.contains(&rid),
                "{rid} is not one of this key's requests"
            );
            assert!(!other.contains(&rid), "{rid} belongs to the other key");
        }
    }
}
