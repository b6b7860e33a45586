//! The audit log end to end: records seeded through the library into a data dir, served by the
//! real binary on `GET /admin/audit` (auth, filters, pagination, bad parameters), then
//! `sluice audit verify` and `sluice audit export` on the stopped gateway's store, intact and
//! tampered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{client, TestGateway};
use serde_json::{json, Value};
use sluice::audit::{AdminRecord, AuditLog, RequestRecord};
use sluice::store::{Cf, Store};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const MASTER: &str = "mk-audit";

fn config(data: &Path) -> String {
    format!(
        "model_list:\n  - {{model_name: g, litellm_params: {{model: mock/g}}}}\ngeneral_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {}\n  cache: {{enabled: false}}\n",
        data.display()
    )
}

/// Seeds the store in `data/db`: requests 1..=5 alternating `key_seed_a`/`key_seed_b`, then an
/// admin action on `key_seed_a` by master. Key ids no real request uses, so the assertions hold
/// once the gateway records its own traffic too.
fn seed(data: &Path) -> Vec<u64> {
    let store = Arc::new(Store::open(&data.join("db")).unwrap());
    let log = AuditLog::open(Arc::clone(&store)).unwrap();
    let mut seqs = Vec::new();
    for i in 1..=5u64 {
        let key = if i % 2 == 1 {
            "key_seed_a"
        } else {
            "key_seed_b"
        };
        seqs.push(
            log.append_request(RequestRecord {
                request_id: format!("req-{i}"),
                key_id: key.into(),
                endpoint: "/v1/chat/completions".into(),
                model_group: Some("g".into()),
                status: 200,
                prompt_tokens: 3,
                completion_tokens: 2,
                cost_usd: 0.25,
                latency_ms: 4.0,
                ..RequestRecord::default()
            })
            .unwrap(),
        );
    }
    seqs.push(
        log.append_admin(AdminRecord {
            actor: "master".into(),
            action: "key.update".into(),
            target: Some("key_seed_a".into()),
            before: Some(json!({"rpm": 1, "api_key": "sk-should-not-appear"})),
            after: Some(json!({"rpm": 2})),
        })
        .unwrap(),
    );
    store.sync().unwrap();
    seqs
}

async fn get(gw: &TestGateway, key: Option<&str>, query: &str) -> (u16, Value) {
    let mut rb = client().get(gw.url(&format!("/admin/audit{query}")));
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn seqs_of(body: &Value) -> Vec<u64> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

fn sluice_audit(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("audit")
        .args(args)
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_MASTER_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn admin_audit_serves_filtered_pages_and_the_cli_verifies_and_exports() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let seeded = seed(&data);
    let cfg = work.path().join("config.yaml");
    std::fs::write(&cfg, config(&data)).unwrap();

    let mut gw = TestGateway::builder()
        .config(config(&data))
        .data_dir(&data)
        .spawn();

    // Master key only: no key is 401, an admin virtual key is 403.
    assert_eq!(get(&gw, None, "").await.0, 401);
    let r = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"alias": "ops", "admin": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let admin_key = r.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, b) = get(&gw, Some(&admin_key), "").await;
    assert_eq!(s, 403, "{b}");

    // Everything, first page.
    let (s, b) = get(&gw, Some(MASTER), "").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["object"], "list");
    assert!(seqs_of(&b).starts_with(&seeded), "{b}");
    let text = b.to_string();
    assert!(!text.contains("sk-should-not-appear"), "{text}");

    // Pagination over one key (its requests and the admin action on it).
    let mut cursor: Option<String> = None;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("?key=key_seed_a&limit=2&cursor={c}"),
            None => "?key=key_seed_a&limit=2".to_string(),
        };
        let (s, b) = get(&gw, Some(MASTER), &q).await;
        assert_eq!(s, 200, "{b}");
        assert!(b["data"].as_array().unwrap().len() <= 2);
        got.extend(seqs_of(&b));
        pages += 1;
        assert_eq!(b["has_more"], !b["next_cursor"].is_null());
        match b["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(got, vec![seeded[0], seeded[2], seeded[4], seeded[5]]);

    // Kind and time filters.
    let (_, b) = get(&gw, Some(MASTER), "?kind=admin&key=key_seed_a").await;
    assert_eq!(seqs_of(&b), vec![seeded[5]]);
    assert_eq!(b["data"][0]["admin"]["action"], "key.update");
    assert_eq!(b["data"][0]["admin"]["before"]["api_key"], "*****");
    let (_, b) = get(&gw, Some(MASTER), "?kind=request&key=key_seed_b").await;
    assert_eq!(seqs_of(&b), vec![seeded[1], seeded[3]]);
    assert_eq!(b["data"][0]["request"]["cost_usd"], 0.25);
    let (_, b) = get(&gw, Some(MASTER), "?to=1970-01-02T00:00:00Z").await;
    assert_eq!(seqs_of(&b), Vec::<u64>::new());
    let (_, b) = get(&gw, Some(MASTER), "?from=4102444800000&key=key_seed_a").await;
    assert_eq!(seqs_of(&b), Vec::<u64>::new());
    assert!(b["next_cursor"].is_null());

    // Bad parameters: 400 naming the parameter.
    for (query, param) in [
        ("?from=yesterday", "from"),
        ("?to=2026-02-30T00:00:00Z", "to"),
        ("?from=2000&to=1000", "from"),
        ("?kind=everything", "kind"),
        ("?cursor=-1", "cursor"),
        ("?limit=5000", "limit"),
        ("?limit=ten", "limit"),
        ("?page=2", "page"),
    ] {
        let (s, b) = get(&gw, Some(MASTER), query).await;
        assert_eq!(s, 400, "{query}: {b}");
        assert_eq!(b["error"]["param"], param, "{query}: {b}");
        assert_eq!(b["error"]["type"], "invalid_request_error");
    }

    // While the gateway holds the store the CLI says so instead of opening it.
    let (rc, _, err) = sluice_audit(&["verify", "--config", cfg.to_str().unwrap()]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("stop the gateway"), "{err}");

    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(30)).is_some());

    // Intact: verify exits 0, through the config or the data dir.
    let (rc, out, err) = sluice_audit(&["verify", "--config", cfg.to_str().unwrap()]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    let (rc, out, err) = sluice_audit(&["verify", "--data-dir", data.to_str().unwrap(), "--json"]);
    assert_eq!(rc, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["intact"], true);
    assert!(report["checked"].as_u64().unwrap() >= seeded.len() as u64);

    // Export: JSON lines, to stdout or a file, time-filtered.
    let (rc, out, err) = sluice_audit(&["export", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(rc, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= seeded.len());
    for (line, seq) in lines.iter().zip(&seeded) {
        assert_eq!(line["seq"], *seq);
        assert_eq!(line["hash"].as_str().unwrap().len(), 64);
    }
    assert!(!out.contains("sk-should-not-appear"));
    let file = work.path().join("audit.jsonl");
    let (rc, _, err) = sluice_audit(&[
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), out);
    let (rc, out, _) = sluice_audit(&[
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        "1970-01-01T00:00:01Z",
    ]);
    assert_eq!((rc, out.as_str()), (0, ""));
    let (rc, _, err) = sluice_audit(&[
        "export",
        "--data-dir",
        data.to_str().unwrap(),
        "--from",
        "x",
    ]);
    assert_eq!(rc, 2);
    assert!(err.contains("--from"), "{err}");
    let (rc, _, err) = sluice_audit(&[
        "verify",
        "--data-dir",
        work.path().join("nope").to_str().unwrap(),
    ]);
    assert_eq!(rc, 2);
    assert!(err.contains("no Sluice store"), "{err}");

    // Tampered: a changed cost in seq 3 makes verify exit 1 naming seq 3.
    {
        let store = Store::open(&data.join("db")).unwrap();
        let key = seeded[2].to_be_bytes();
        let raw = String::from_utf8(store.get(Cf::Audit, &key).unwrap().unwrap()).unwrap();
        let edited = raw.replace("\"cost_usd\":0.25", "\"cost_usd\":0.0");
        assert_ne!(raw, edited);
        store.put(Cf::Audit, &key, edited.as_bytes()).unwrap();
        store.sync().unwrap();
    }
    let (rc, out, err) = sluice_audit(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_eq!(rc, 1, "{out}{err}");
    assert!(
        out.contains(&format!("BROKEN at seq {}: changed", seeded[2])),
        "{out}"
    );
}

/// The gateway records its own traffic: a request (with its key, group, status, usage and PII
/// kinds, streamed ones at their end) and an admin action (with the record after it, no secret).
#[tokio::test]
async fn requests_and_admin_actions_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let gw = TestGateway::builder().config(config(dir.path())).spawn();
    let created: Value = client()
        .post(gw.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"alias": "audited", "pii": {"prompts": "detect"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (id, secret) = (
        created["id"].as_str().unwrap().to_string(),
        created["key"].as_str().unwrap().to_string(),
    );
    for stream in [false, true] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&json!({"model": "g", "stream": stream,
                          "messages": [{"role": "user", "content": "mail ann@example.com"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap();
    }
    let requests = common::audit_records(&gw, MASTER, &format!("kind=request&key={id}"), 2).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    for r in &requests {
        let rec = &r["request"];
        assert_eq!(rec["endpoint"], "/v1/chat/completions");
        assert_eq!(rec["key_alias"], "audited");
        assert_eq!(rec["model_group"], "g");
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["pii_kinds"], json!(["email"]));
        assert!(rec["prompt_tokens"].as_u64().unwrap() > 0, "{rec}");
        assert!(!rec["request_id"].as_str().unwrap().is_empty());
        assert!(
            rec.get("body").is_none(),
            "bodies are off by default: {rec}"
        );
    }
    let admin = common::audit_records(&gw, MASTER, "kind=admin", 1).await;
    let created = admin
        .iter()
        .find(|r| r["admin"]["action"] == "key.create")
        .unwrap();
    assert_eq!(created["admin"]["actor"], "master");
    assert_eq!(created["admin"]["target"], id.as_str());
    let text = serde_json::to_string(&admin).unwrap();
    assert!(
        !text.contains(&secret),
        "a key secret reached the audit log"
    );
}

#[tokio::test]
async fn bodies_are_logged_masked_with_log_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()) + "  audit: {log_bodies: true}\n";
    let gw = TestGateway::builder().config(cfg).spawn();
    for stream in [false, true] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(MASTER)
            .json(
                &json!({"model": "g", "stream": stream, "user": format!("u-{stream}"),
                          "messages": [{"role": "user", "content": "mail ann@example.com now"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.text().await.unwrap();
    }
    let records = common::audit_records(&gw, MASTER, "kind=request", 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        let body = &r["request"]["body"];
        let prompt = body["prompt"][0]["content"].as_str().unwrap();
        assert_eq!(prompt, "mail [EMAIL_1] now", "{body}");
        let answer = body["answer"][0]["content"].as_str().unwrap();
        assert!(!answer.is_empty(), "{body}");
        assert!(!r.to_string().contains("ann@example.com"), "{r}");
    }
}
