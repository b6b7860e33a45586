//! Encryption at rest end to end: the real binary with `sluice.encryption`, a fake upstream, and
//! a byte-level search of every file under the data directory.
//!
//! RocksDB here is built without compression, and even with it the search would be meaningful
//! only because values are sealed before they reach RocksDB: a prompt in a compressed block
//! could hide from a byte search, so the test also checks that the records are sealed (the
//! snapshot manifest names the key id) and that a restart without the key cannot read them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fake_openai::FakeOpenAi;
use common::{client, config_for, TestGateway};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const MASTER: &str = "mk-encryption";
/// Two keys (32 bytes each, base64): A = 0..32, B = 100..132.
const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=";
/// Recognisable text that must never reach the disk in the clear.
const PROMPT: &str = "Zanzibar quokka 7731: what does the purple lighthouse whisper at dawn?";
const RESPONSES_PROMPT: &str = "Marmalade octopus 4410 asks about velvet glaciers";

fn config(fake: &FakeOpenAi, encryption: &str) -> String {
    config_for(
        &fake.base,
        &["gpt-x"],
        &format!(
            "general_settings:\n  master_key: {MASTER}\nsluice:\n  data_dir: {{data_dir}}\n{encryption}"
        ),
    )
}

fn with_key(fake: &FakeOpenAi) -> String {
    config(fake, "  encryption:\n    key: os.environ/TEST_SLUICE_KEY\n")
}

fn rotated(fake: &FakeOpenAi) -> String {
    config(
        fake,
        "  encryption:\n    key: os.environ/TEST_SLUICE_KEY\n    previous_keys: [os.environ/TEST_SLUICE_OLD_KEY]\n",
    )
}

fn spawn(cfg: &str, data: &Path, key: &str, old: Option<&str>) -> TestGateway {
    let mut b = TestGateway::builder()
        .config(cfg)
        .data_dir(data)
        .env("TEST_SLUICE_KEY", key);
    if let Some(old) = old {
        b = b.env("TEST_SLUICE_OLD_KEY", old);
    }
    b.spawn()
}

async fn ask(gw: &TestGateway, question: &str) -> (String, Value) {
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "gpt-x", "messages": [{"role": "user", "content": question}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cache = resp
        .headers()
        .get("x-sluice-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (cache, resp.json().await.unwrap())
}

/// Asks until the answer comes from the cache: the write-back is asynchronous.
async fn ask_until_hit(gw: &TestGateway, question: &str) -> Value {
    for _ in 0..100 {
        let (cache, body) = ask(gw, question).await;
        if cache.starts_with("hit") {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never a cache hit; stderr:\n{}", gw.stderr());
}

fn stop(mut gw: TestGateway) -> String {
    gw.terminate();
    assert!(gw.wait_exit(Duration::from_secs(30)).is_some(), "no exit");
    gw.stderr()
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

/// Asserts that no file under `dir` holds any of `needles`; returns how many files were read.
fn assert_nowhere(dir: &Path, needles: &[&str]) -> usize {
    let mut files = Vec::new();
    all_files(dir, &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} contains {n:?}",
                f.display()
            );
        }
    }
    files.len()
}

/// Runs `sluice <args>` with `cfg` (its `{data_dir}` replaced) and the keys in the environment.
fn run_sluice(cfg: &str, data: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        cfg.replace("{data_dir}", &data.display().to_string()),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args)
        .arg("--config")
        .arg(&path)
        .env_remove("SLUICE_CONFIG")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn prompts_and_answers_never_reach_the_disk_in_the_clear() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let cfg = with_key(&fake);
    let gw = spawn(&cfg, data.path(), KEY_A, None);
    assert_eq!(ask(&gw, PROMPT).await.0, "miss");
    let answer = ask_until_hit(&gw, PROMPT).await;
    let answer_text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(answer_text.contains("purple lighthouse"));
    // A stored Responses object (prompt and answer) too.
    let resp: Value = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(MASTER)
        .json(&json!({"model": "gpt-x", "input": RESPONSES_PROMPT, "store": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp_id = resp["id"].as_str().expect("response id").to_string();
    // Graceful stop: flushes the WAL and writes the (sealed) index snapshot.
    let log = stop(gw);
    assert!(log.contains("index snapshot written"), "{log}");
    assert!(!log.contains("stored as plaintext"), "{log}");

    let manifest = std::fs::read_to_string(data.path().join("index/MANIFEST")).unwrap();
    assert!(manifest.contains("encrypted="), "{manifest}");
    let needles = [
        PROMPT,
        "purple lighthouse",
        RESPONSES_PROMPT,
        "velvet glaciers",
    ];
    let files = assert_nowhere(data.path(), &needles);
    assert!(files > 5, "only {files} files under the data dir");

    // Same key: the cached answer and the stored response come back.
    let gw = spawn(&cfg, data.path(), KEY_A, None);
    let (cache, body) = ask(&gw, PROMPT).await;
    assert!(cache.starts_with("hit"), "{cache}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        answer_text.as_str()
    );
    let got = common::get_json(&gw, MASTER, &format!("/v1/responses/{resp_id}")).await;
    assert_eq!(got["id"], resp_id.as_str());
    assert!(got.to_string().contains("velvet glaciers"), "{got}");
    stop(gw);

    // The audit chain verifies offline through the keys.
    let out = run_sluice(
        &cfg,
        data.path(),
        &["audit", "verify"],
        &[("TEST_SLUICE_KEY", KEY_A)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nowhere(data.path(), &needles);
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_a_start_up_error() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let cfg = with_key(&fake);
    let gw = spawn(&cfg, data.path(), KEY_A, None);
    ask(&gw, PROMPT).await;
    stop(gw);

    let wrong = run_sluice(
        &cfg,
        data.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TEST_SLUICE_KEY", KEY_B)],
    );
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("was encrypted with key id"), "{err}");
    assert!(err.contains("the configured key is"), "{err}");
    assert!(!err.contains(KEY_A) && !err.contains(KEY_B), "{err}");

    let plain = run_sluice(
        &config(&fake, ""),
        data.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(!plain.status.success());
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(err.contains("no key is configured"), "{err}");

    // A key that is not 32 bytes of base64 is a config error naming the field.
    let bad = run_sluice(
        &cfg,
        data.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TEST_SLUICE_KEY", "c2hvcnQ=")],
    );
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("sluice.encryption.key"), "{err}");
    assert!(err.contains("decodes to 5 bytes"), "{err}");
}

#[tokio::test]
async fn rotation_keeps_everything_readable_then_needs_only_the_new_key() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let gw = spawn(&with_key(&fake), data.path(), KEY_A, None);
    ask(&gw, PROMPT).await;
    ask_until_hit(&gw, PROMPT).await;
    stop(gw);

    // B with A as a previous key: the start-up pass re-seals in the background while serving.
    let gw = spawn(&rotated(&fake), data.path(), KEY_B, Some(KEY_A));
    assert!(ask(&gw, PROMPT).await.0.starts_with("hit"));
    for _ in 0..200 {
        if gw.stderr().contains("encryption rotation pass complete") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = gw.stderr();
    assert!(log.contains("encryption rotation pass complete"), "{log}");
    assert!(ask(&gw, PROMPT).await.0.starts_with("hit"));
    stop(gw);

    // B alone opens everything; A alone no longer does.
    let gw = spawn(&with_key(&fake), data.path(), KEY_B, None);
    assert!(ask(&gw, PROMPT).await.0.starts_with("hit"));
    let log = stop(gw);
    assert!(!log.contains("rebuilding the index"), "{log}");
    let old = run_sluice(
        &with_key(&fake),
        data.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TEST_SLUICE_KEY", KEY_A)],
    );
    assert!(!old.status.success());
    assert_nowhere(data.path(), &[PROMPT, "purple lighthouse"]);

    // Offline rotation back to A (gateway stopped): the CLI re-seals everything, snapshot too.
    let out = run_sluice(
        &rotated(&fake),
        data.path(),
        &["rotate-encryption-key"],
        &[("TEST_SLUICE_KEY", KEY_A), ("TEST_SLUICE_OLD_KEY", KEY_B)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted"));
    let gw = spawn(&with_key(&fake), data.path(), KEY_A, None);
    assert!(ask(&gw, PROMPT).await.0.starts_with("hit"));
    let log = stop(gw);
    assert!(!log.contains("rebuilding the index"), "{log}");
}

#[tokio::test]
async fn turning_encryption_on_seals_what_was_stored_before() {
    let fake = FakeOpenAi::start();
    let data = tempfile::tempdir().unwrap();
    let plain_cfg = config(&fake, "");
    let gw = TestGateway::builder()
        .config(plain_cfg.as_str())
        .data_dir(data.path())
        .spawn();
    ask(&gw, PROMPT).await;
    ask_until_hit(&gw, PROMPT).await;
    let log = stop(gw);
    assert!(log.contains("stored as plaintext"), "{log}");
    let mut files = Vec::new();
    all_files(data.path(), &mut files);
    assert!(
        files.iter().any(|f| {
            let b = std::fs::read(f).unwrap();
            b.windows(PROMPT.len()).any(|w| w == PROMPT.as_bytes())
        }),
        "without a key the prompt is on disk (the search below can find it)"
    );

    // With a key: the start-up pass seals the plaintext records, and compaction drops the old
    // forms from RocksDB's files.
    let gw = spawn(&with_key(&fake), data.path(), KEY_A, None);
    for _ in 0..200 {
        if gw.stderr().contains("encryption rotation pass complete") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ask(&gw, PROMPT).await.0.starts_with("hit"));
    let log = stop(gw);
    assert!(log.contains("encryption rotation pass complete"), "{log}");
    assert_nowhere(data.path(), &[PROMPT, "purple lighthouse"]);
}
