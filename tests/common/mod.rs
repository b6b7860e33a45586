//! Test harness: the real `sluice` binary on an ephemeral port, and fake upstreams that speak
//! OpenAI's wire format.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fake_anthropic;
pub mod fake_gemini;
pub mod fake_openai;
pub mod fake_realtime;
pub mod fake_server;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running gateway process.
pub struct TestGateway {
    pub child: Child,
    pub base: String,
    /// Base URL of the admin listener (`sluice.admin_listen`), when the config has one.
    pub admin_base: Option<String>,
    pub dir: tempfile::TempDir,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Builder for [`TestGateway`].
#[derive(Default)]
pub struct GatewayBuilder {
    config: Option<String>,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
}

impl GatewayBuilder {
    pub fn config(mut self, yaml: impl Into<String>) -> Self {
        self.config = Some(yaml.into());
        self
    }

    /// Uses this data directory for `{data_dir}` in the config (to restart on the same data).
    pub fn data_dir(mut self, dir: &std::path::Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn spawn(self) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        if let Some(yaml) = &self.config {
            let data = self
                .data_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("state"));
            let yaml = yaml.replace("{data_dir}", &data.display().to_string());
            let path = dir.path().join("config.yaml");
            std::fs::write(&path, yaml).unwrap();
            cmd.arg("--config").arg(path);
        }
        cmd.env_remove("OPENAI_API_KEY")
            .env_remove("SLUICE_MASTER_KEY")
            .env_remove("SLUICE_CONFIG")
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sluice");
        let stderr_buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr_buf.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("sluice listening on ") {
                    let _ = tx.send((false, url.to_string()));
                } else if let Some(url) = line.strip_prefix("sluice admin listening on ") {
                    let _ = tx.send((true, url.to_string()));
                }
            }
        });
        // The gateway prints its admin line (if any) before the main one.
        let mut admin_base = None;
        let base = loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok((true, url)) => admin_base = Some(url),
                Ok((false, url)) => break url,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "gateway did not start; stderr:\n{}",
                        stderr_buf.lock().unwrap()
                    );
                }
            }
        };
        TestGateway {
            child,
            base,
            admin_base,
            dir,
            stderr: stderr_buf,
        }
    }
}

impl TestGateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A URL on the admin listener; panics when the config has no `sluice.admin_listen`.
    pub fn admin_url(&self, path: &str) -> String {
        let base = self.admin_base.as_ref().expect("no admin listener");
        format!("{base}{path}")
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config with one OpenAI-compatible deployment per fake model, all pointing at `base`.
pub fn config_for(base: &str, models: &[&str], extra: &str) -> String {
    let mut s = String::from("model_list:\n");
    for m in models {
        s.push_str(&format!(
            "  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n      api_base: {base}/v1\n      api_key: sk-upstream-secret\n      timeout: 2\n"
        ));
    }
    s.push_str(extra);
    s
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The path of the repository, for fixtures.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// POSTs JSON to the gateway.
pub async fn post_json(
    gw: &TestGateway,
    path: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client().post(gw.url(path)).json(body).send().await.unwrap()
}

/// GETs `path` with `key` as the bearer token; the JSON body (`Null` if it is not JSON).
pub async fn get_json(gw: &TestGateway, key: &str, path: &str) -> serde_json::Value {
    let r = client()
        .get(gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    r.json().await.unwrap_or(serde_json::Value::Null)
}

/// The records of `GET /admin/audit?{query}` read with `key`, asked again until there are at
/// least `min` (a streamed or WebSocket request is written when its stream ends) or 5 s pass.
pub async fn audit_records(
    gw: &TestGateway,
    key: &str,
    query: &str,
    min: usize,
) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for _ in 0..50 {
        let page = get_json(gw, key, &format!("/admin/audit?{query}")).await;
        records = page["data"].as_array().cloned().unwrap_or_default();
        if records.len() >= min {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    records
}
