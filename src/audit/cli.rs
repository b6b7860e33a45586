//! `sluice audit verify|export`: checks or exports the audit log in the store of a stopped
//! gateway (RocksDB lets one process open a store; on a running gateway use `GET /admin/audit`).
//!
//! Exit codes: 0 ok (and the chain is intact), 1 the chain is broken, 2 could not run (bad
//! usage, no store, store in use, I/O error).

use super::{parse_time_ms, AuditLog, VerifyReport};
use crate::config::Config;
use crate::crypto::Keyring;
use crate::store::{Store, StoreError, StoreOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Exit code: success, chain intact.
pub const EXIT_OK: u8 = 0;
/// Exit code: `verify` found a changed, removed or reordered record.
pub const EXIT_BROKEN: u8 = 1;
/// Exit code: the command could not run.
pub const EXIT_ERROR: u8 = 2;

/// `sluice audit ...`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AuditAction,
    /// Config whose `data_dir` holds the store (built-in config when neither this nor
    /// --data-dir is given).
    #[arg(long, short, env = "SLUICE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The gateway's data directory (the one holding `db/`); wins over --config.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

/// One audit operation.
#[derive(Debug, clap::Subcommand)]
pub enum AuditAction {
    /// Check the hash chain from the anchor to the head (exit 0 intact, 1 broken).
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write records as JSON lines, exactly as stored.
    Export {
        /// Records at or after this time: RFC 3339 or Unix milliseconds.
        #[arg(long)]
        from: Option<String>,
        /// Records at or before this time: RFC 3339 or Unix milliseconds.
        #[arg(long)]
        to: Option<String>,
        /// File to write (default: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Runs `sluice audit ...`, printing to `out`; returns the exit code.
pub fn run(args: AuditArgs, out: &mut dyn Write) -> u8 {
    match execute(args, out) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERROR
        }
    }
}

fn execute(args: AuditArgs, out: &mut dyn Write) -> Result<u8, String> {
    let (db, keyring) = db_dir(args.data_dir.as_deref(), args.config.as_deref())?;
    match args.action {
        AuditAction::Verify { json } => {
            let log = open_log(&db, keyring)?;
            let report = log.verify().map_err(|e| e.to_string())?;
            let text = if json {
                serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
            } else {
                render(&report)
            };
            writeln!(out, "{text}").map_err(|e| format!("cannot write output: {e}"))?;
            Ok(if report.intact { EXIT_OK } else { EXIT_BROKEN })
        }
        AuditAction::Export { from, to, output } => {
            let time = |name: &str, v: Option<String>| -> Result<Option<u64>, String> {
                v.map(|t| {
                    parse_time_ms(&t).ok_or_else(|| {
                        format!("--{name}: expected RFC 3339 or Unix milliseconds, got \"{t}\"")
                    })
                })
                .transpose()
            };
            let (from, to) = (time("from", from)?, time("to", to)?);
            let log = open_log(&db, keyring)?;
            let n = match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    log.export(&mut w, from, to)
                }
                None => log.export(out, from, to),
            }
            .map_err(|e| e.to_string())?;
            let dest = output.map_or_else(|| "stdout".into(), |p| p.display().to_string());
            eprintln!("exported {n} audit records to {dest}");
            Ok(EXIT_OK)
        }
    }
}

/// The store directory: `DIR/db` for --data-dir (or DIR itself when it is the store), else the
/// config's `data_dir/db`. It must exist: opening would otherwise create an empty store.
/// Also the keyring of the config (`sluice.encryption`), when one is given or used.
fn db_dir(
    data_dir: Option<&Path>,
    config: Option<&Path>,
) -> Result<(PathBuf, Arc<Keyring>), String> {
    let config = match (data_dir, config) {
        (Some(_), None) => None,
        (_, Some(p)) => Some(Config::load(p)),
        (None, None) => Some(Config::builtin()),
    }
    .transpose()
    .map_err(|e| format!("invalid configuration:\n{e}"))?;
    let keyring = config
        .as_ref()
        .map_or_else(|| Arc::new(Keyring::none()), Config::keyring);
    let candidates = match (data_dir, &config) {
        (Some(dir), _) => vec![dir.join("db"), dir.to_path_buf()],
        (None, Some(config)) => vec![config.data_dir.join("db")],
        (None, None) => return Err("no data directory".into()),
    };
    candidates
        .iter()
        .find(|d| d.join("CURRENT").is_file())
        .cloned()
        .map(|db| (db, keyring))
        .ok_or_else(|| format!("no Sluice store at {}", candidates[0].display()))
}

fn open_log(db: &Path, keyring: Arc<Keyring>) -> Result<AuditLog, String> {
    let store =
        Store::open_encrypted(db, StoreOptions::default(), keyring).map_err(|e| match e {
            StoreError::Engine(msg) if msg.contains("lock") || msg.contains("LOCK") => format!(
            "the store in {} is in use (is the gateway running?): stop the gateway, or read the \
             log through GET /admin/audit",
            db.display()
        ),
            other => format!("cannot open the store in {}: {other}", db.display()),
        })?;
    AuditLog::open(Arc::new(store)).map_err(|e| e.to_string())
}

/// A human-readable verify report.
fn render(r: &VerifyReport) -> String {
    let range = match r.last_seq {
        Some(last) => format!(" (seq {}..={last})", r.anchor_seq + 1),
        None => String::new(),
    };
    let mut lines = Vec::new();
    match &r.broken {
        None => {
            lines.push(format!(
                "audit log intact: {} records verified{range}",
                r.checked
            ));
            if let Some(h) = &r.last_hash {
                lines.push(format!("head hash {h}"));
            }
        }
        Some(b) => {
            lines.push(format!(
                "audit log BROKEN at seq {}: {} ({})",
                b.seq,
                b.reason.as_str(),
                b.detail
            ));
            lines.push(format!("{} records verified before it", r.checked));
        }
    }
    if r.anchor_seq > 0 {
        lines.push(format!(
            "records up to seq {} were pruned by retention",
            r.anchor_seq
        ));
    }
    lines.join("\n")
}
