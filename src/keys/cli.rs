//! `sluice keys create|list|revoke|rotate`: the same operations as `/admin/keys`, run against
//! the store in `data_dir`, or against a running gateway's admin API.
//!
//! RocksDB lets one process open a store. When the gateway holds it, the command falls back to
//! the gateway's admin API (`--url`, else the config's listen address, with the master key from
//! `SLUICE_MASTER_KEY` or the config). Both paths build the same JSON body and print the same
//! JSON, so the output does not depend on which one ran.
//!
//! Exit codes: 0 ok, 1 error, 2 bad usage (including a field the key API rejects).

use super::input::{Dialect, KeyChanges};
use super::store::{KeyError, KeyStore};
use super::view;
use crate::clock::parse_duration;
use crate::config::{Config, ConfigError};
use crate::router::Router;
use crate::store::{Store, StoreError};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the operation failed.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: the command line or a value in it is wrong.
pub const EXIT_USAGE: u8 = 2;

/// `sluice keys ...`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeysAction,
    /// LiteLLM-style YAML config: where the data is, the model groups, the listen address
    /// (built-in config when not given).
    #[arg(long, short, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Use the admin API of the gateway at this URL (e.g. http://127.0.0.1:4000) instead of
    /// opening the store.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Master key for the admin API (default: the config's).
    #[arg(long, env = "SLUICE_MASTER_KEY", hide_env_values = true, global = true)]
    pub master_key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// One key operation.
#[derive(Debug, clap::Subcommand)]
pub enum KeysAction {
    /// Create a key and print its secret (shown once).
    Create {
        /// Human name.
        #[arg(long)]
        alias: Option<String>,
        /// Model groups it may call, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Requests running at once.
        #[arg(long)]
        max_parallel_requests: Option<u64>,
        /// Budget in USD per budget window.
        #[arg(long)]
        max_budget: Option<f64>,
        /// Budget window: 1h, 1d, 30d...
        #[arg(long)]
        budget_duration: Option<String>,
        /// Expiry: a duration from now (30d) or an RFC 3339 time.
        #[arg(long)]
        expires: Option<String>,
        /// Owning user id.
        #[arg(long)]
        user_id: Option<String>,
        /// Owning team id.
        #[arg(long)]
        team_id: Option<String>,
        /// Cache namespace (default: the key id).
        #[arg(long)]
        cache_namespace: Option<String>,
        /// May call /admin.
        #[arg(long)]
        admin: bool,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key: it stops working at once.
    Revoke {
        /// Key id (key_...).
        id: String,
    },
    /// Give a key a new secret; the old one keeps working for the grace period.
    Rotate {
        /// Key id (key_...).
        id: String,
        /// How long the old secret keeps working: 0s, 30m, 1h, 1d...
        #[arg(long, default_value = "1d")]
        grace: String,
    },
}

/// What the CLI can fail with.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("invalid configuration:\n{0}")]
    Config(ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "the store in {path} is in use (is the gateway running?) and its admin API at {url} \
         did not answer ({detail}); stop the gateway, or pass --url with the gateway's address"
    )]
    Locked {
        path: String,
        url: String,
        detail: String,
    },
    #[error("cannot open the store: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Remote(String),
    #[error("the gateway answered {status}: {message}")]
    Api { status: u16, message: String },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) | CliError::Key(KeyError::Invalid(_)) => {
                EXIT_USAGE
            }
            CliError::Api { status: 400, .. } => EXIT_USAGE,
            _ => EXIT_ERROR,
        }
    }
}

/// One operation, in the shape both paths understand.
enum Op {
    Create(Value),
    List,
    Revoke(String),
    Rotate(String, u64),
}

impl Op {
    fn from_action(action: KeysAction) -> Result<Op, CliError> {
        Ok(match action {
            KeysAction::Create {
                alias,
                models,
                rpm,
                tpm,
                max_parallel_requests,
                max_budget,
                budget_duration,
                expires,
                user_id,
                team_id,
                cache_namespace,
                admin,
            } => {
                let mut b = Map::new();
                let mut set = |k: &str, v: Value| {
                    if !v.is_null() {
                        b.insert(k.into(), v);
                    }
                };
                set("alias", json!(alias));
                if !models.is_empty() {
                    set("models", json!(models));
                }
                set("rpm", json!(rpm));
                set("tpm", json!(tpm));
                set("max_parallel_requests", json!(max_parallel_requests));
                set("max_budget", json!(max_budget));
                set("budget_duration", json!(budget_duration));
                set("expires", json!(expires));
                set("user_id", json!(user_id));
                set("team_id", json!(team_id));
                set("cache_namespace", json!(cache_namespace));
                if admin {
                    set("admin", json!(true));
                }
                Op::Create(Value::Object(b))
            }
            KeysAction::List => Op::List,
            KeysAction::Revoke { id } => Op::Revoke(id),
            KeysAction::Rotate { id, grace } => {
                let secs = match grace.trim() {
                    "0" | "0s" => 0,
                    g => parse_duration(g).ok_or_else(|| {
                        CliError::Usage(format!(
                            "--grace: expected like 0s, 30m, 1h, 1d, got \"{grace}\""
                        ))
                    })?,
                };
                Op::Rotate(id, secs)
            }
        })
    }
}

/// Runs `sluice keys ...`, printing to `out`; returns the exit code.
pub fn run(args: KeysArgs, out: &mut dyn Write) -> u8 {
    match execute(args) {
        Ok((value, json_output)) => {
            let text = if json_output {
                serde_json::to_string_pretty(&value).unwrap_or_default()
            } else {
                render(&value)
            };
            match writeln!(out, "{text}") {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("error: cannot write output: {e}");
                    EXIT_ERROR
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn execute(args: KeysArgs) -> Result<(Value, bool), CliError> {
    let config = match &args.config {
        Some(p) => Config::load(p),
        None => Config::builtin(),
    }
    .map_err(CliError::Config)?;
    let op = Op::from_action(args.action)?;
    let master = args
        .master_key
        .filter(|k| !k.is_empty())
        .or_else(|| config.master_key.as_ref().map(|k| k.expose().to_string()));
    let value = match &args.url {
        Some(url) => remote(url, master.as_deref(), &op)?,
        None => match local(&config, &op) {
            Err(CliError::Store(e)) if is_lock_error(&e) => {
                let url = listen_url(&config);
                remote(&url, master.as_deref(), &op).map_err(|err| match err {
                    CliError::Remote(detail) => CliError::Locked {
                        path: config.data_dir.join("db").display().to_string(),
                        url,
                        detail,
                    },
                    other => other,
                })?
            }
            other => other?,
        },
    };
    Ok((value, args.json))
}

fn is_lock_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Engine(msg) if msg.contains("lock") || msg.contains("LOCK"))
}

/// The gateway's own address for a client on this machine.
fn listen_url(config: &Config) -> String {
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// Runs the operation on the store directly (the gateway is not running).
fn local(config: &Config, op: &Op) -> Result<Value, CliError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        CliError::Remote(format!("cannot create {}: {e}", config.data_dir.display()))
    })?;
    let store = Arc::new(
        Store::open_encrypted(
            &config.data_dir.join("db"),
            crate::store::StoreOptions::default(),
            config.keyring(),
        )
        .map_err(CliError::Store)?,
    );
    let keys = KeyStore::load(Arc::clone(&store))?;
    let now = keys.now();
    let value = match op {
        Op::Create(body) => {
            let router = Router::new(config);
            let changes = KeyChanges::from_json(body, Dialect::Sluice, now, &|m| router.knows(m))
                .map_err(KeyError::Invalid)?;
            let (k, secret) = keys.create(&changes)?;
            view::created_json(&k, &secret, now)
        }
        Op::List => view::list_json(&keys.list(), now),
        Op::Revoke(id) => view::key_json(&*keys.revoke(id)?, now),
        Op::Rotate(id, grace) => {
            let (k, secret) = keys.rotate(id, *grace)?;
            view::rotated_json(&k, &secret, *grace, now)
        }
    };
    store.sync().map_err(CliError::Store)?;
    Ok(value)
}

/// Runs the operation through a gateway's admin API.
fn remote(base: &str, master: Option<&str>, op: &Op) -> Result<Value, CliError> {
    let base = base.trim_end_matches('/');
    let (method, path, body) = match op {
        Op::Create(b) => (
            reqwest::Method::POST,
            "/admin/keys".to_string(),
            Some(b.clone()),
        ),
        Op::List => (reqwest::Method::GET, "/admin/keys".to_string(), None),
        Op::Revoke(id) => (reqwest::Method::DELETE, format!("/admin/keys/{id}"), None),
        Op::Rotate(id, grace) => (
            reqwest::Method::POST,
            format!("/admin/keys/{id}/rotate"),
            Some(json!({"grace_seconds": grace})),
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Remote(format!("cannot start the HTTP client: {e}")))?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| CliError::Remote(e.to_string()))?;
        let mut rb = client.request(method, format!("{base}{path}"));
        if let Some(k) = master {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| CliError::Remote(format!("{base}: {e}")))?;
        let status = resp.status().as_u16();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let message = value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            Err(CliError::Api { status, message })
        }
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "all".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// A human-readable rendering of an API answer.
fn render(v: &Value) -> String {
    if let Some(rows) = v["data"].as_array() {
        let cols = [
            ("ID", "id"),
            ("ALIAS", "alias"),
            ("STATUS", "status"),
            ("MODELS", "models"),
            ("RPM", "rpm"),
            ("TPM", "tpm"),
            ("BUDGET", "max_budget"),
            ("EXPIRES", "expires"),
            ("ADMIN", "admin"),
        ];
        let table: Vec<Vec<String>> = std::iter::once(cols.iter().map(|c| c.0.into()).collect())
            .chain(
                rows.iter()
                    .map(|r| cols.iter().map(|c| cell(&r[c.1])).collect()),
            )
            .collect();
        let widths: Vec<usize> = (0..cols.len())
            .map(|i| {
                table
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let lines: Vec<String> = table
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            })
            .collect();
        return lines.join("\n");
    }
    let mut lines = Vec::new();
    if let Some(secret) = v["key"].as_str() {
        lines.push(format!("key      {secret}"));
        lines.push("         (shown once: store it now)".into());
    }
    for field in [
        "id",
        "alias",
        "status",
        "models",
        "rpm",
        "tpm",
        "max_parallel_requests",
        "max_budget",
        "budget_duration",
        "expires",
        "admin",
        "revoked",
        "previous_key_valid_until",
    ] {
        if v.get(field).is_some_and(|x| !x.is_null()) {
            lines.push(format!("{field:<8} {}", cell(&v[field])));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_list_as_a_table() {
        let v = json!({"object": "list", "data": [
            {"id": "key_1", "alias": "a", "status": "active", "models": [], "rpm": 5,
             "tpm": null, "max_budget": 1.5, "expires": null, "admin": false},
            {"id": "key_2", "alias": null, "status": "revoked", "models": ["m1", "m2"],
             "rpm": null, "tpm": 10, "max_budget": null, "expires": "2030-01-01T00:00:00Z",
             "admin": true}
        ]});
        let t = render(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID     ALIAS  STATUS"));
        assert!(lines[1].contains("all") && lines[1].contains("1.5"));
        assert!(lines[2].contains("m1,m2") && lines[2].contains("yes"));
    }

    #[test]
    fn listen_url_points_at_this_machine() {
        let mut c = Config::builtin().unwrap();
        c.server.listen = "0.0.0.0:4000".parse().unwrap();
        assert_eq!(listen_url(&c), "http://127.0.0.1:4000");
    }

    #[test]
    fn grace_and_create_bodies() {
        let op = Op::from_action(KeysAction::Rotate {
            id: "key_1".into(),
            grace: "1h".into(),
        })
        .unwrap();
        assert!(matches!(op, Op::Rotate(id, 3_600) if id == "key_1"));
        assert!(Op::from_action(KeysAction::Rotate {
            id: "k".into(),
            grace: "soon".into()
        })
        .is_err());
        assert_eq!(
            parse_duration("1d"),
            Some(crate::keys::DEFAULT_GRACE_SECS),
            "the CLI default matches the API default"
        );
    }
}
