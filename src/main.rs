//! The `sluice` command: serve, manage keys, check a config.

use clap::{Parser, Subcommand};
use sluice::config::{Config, ConfigError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

// glibc malloc was ~12% of CPU at c=32 (perf); mimalloc cut CPU per request by about a fifth.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a config that cannot be used.
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "OpenAI-compatible AI gateway with a local semantic cache"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (built-in config when no --config is given).
    Serve {
        /// LiteLLM-style YAML config.
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// Override `sluice.listen`, e.g. 127.0.0.1:0 for an ephemeral port.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Measure the semantic cache's precision and recall on labelled pairs and recommend a threshold.
    Calibrate {
        /// JSONL pairs: {id, category, a, b, same_answer}.
        #[arg(long)]
        pairs: PathBuf,
        /// JSONL conversation pairs (a, b are OpenAI message lists).
        #[arg(long)]
        conversations: Option<PathBuf>,
        /// Precision the recommended threshold must reach.
        #[arg(long, default_value_t = 0.95)]
        target_precision: f64,
        /// Folder with the model files (default: ./models, else the build's).
        #[arg(long)]
        models_dir: Option<PathBuf>,
        /// Which ONNX file to calibrate: quantized (the default) or reference.
        #[arg(long, default_value_t = sluice::embed::EmbeddingModel::default())]
        embedding_model: sluice::embed::EmbeddingModel,
        /// List every wrong hit and missed pair at the recommended threshold.
        #[arg(long)]
        verbose: bool,
    },
    /// Manage virtual keys: create, list, revoke, rotate (0 ok, 1 error, 2 bad usage).
    Keys(Box<sluice::keys::cli::KeysArgs>),
    /// Check or export the audit log of a stopped gateway (0 ok, 1 chain broken, 2 error).
    Audit(Box<sluice::audit::cli::AuditArgs>),
    /// Re-encrypt every stored record and the index snapshot under the current
    /// `sluice.encryption.key` (gateway stopped; a running gateway does it at start-up).
    /// 0 ok, 1 error, 2 invalid config.
    RotateEncryptionKey {
        /// LiteLLM-style YAML config with `sluice.encryption` (built-in config when not given).
        #[arg(long, short, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and exit (0 valid, 2 invalid).
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, ConfigError> {
    match path {
        Some(p) => Config::load(p),
        None => Config::builtin(),
    }
}

fn report_config_error(e: &ConfigError) {
    eprintln!("error: invalid configuration");
    for line in e.to_string().lines() {
        eprintln!("  {line}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Calibrate {
            pairs,
            conversations,
            target_precision,
            models_dir,
            embedding_model,
            verbose,
        } => {
            let mut embed = match models_dir {
                Some(d) => sluice::embed::EmbedConfig::from_models_root(&d),
                None => sluice::embed::EmbedConfig::default(),
            };
            embed.model = embedding_model;
            let mut args = sluice::cache::calibrate::CalibrateArgs::new(pairs);
            args.conversations = conversations;
            args.target_precision = target_precision;
            args.embed = embed;
            args.verbose = verbose;
            match sluice::cache::calibrate::run(args, &mut std::io::stdout()) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys(args) => {
            ExitCode::from(sluice::keys::cli::run(*args, &mut std::io::stdout()))
        }
        Command::Audit(args) => {
            ExitCode::from(sluice::audit::cli::run(*args, &mut std::io::stdout()))
        }
        Command::RotateEncryptionKey { config } => {
            let config = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    report_config_error(&e);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match sluice::state::rotate_offline(&config) {
                Ok(report) => {
                    println!(
                        "re-encrypted {} of {} records under key id {}; previous keys can be \
                         removed from sluice.encryption",
                        report.resealed,
                        report.scanned,
                        config
                            .keyring()
                            .current_id()
                            .map(|k| k.to_string())
                            .unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                for k in &c.ignored_keys {
                    eprintln!("warning: ignoring unknown key {k}");
                }
                println!(
                    "{}: ok ({} deployments in {} model groups)",
                    file.display(),
                    c.deployments.len(),
                    c.model_groups().len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                report_config_error(&e);
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve { config, listen } => {
            let config = match load(config.as_ref()) {
                Ok(c) => c.with_listen(listen),
                Err(e) => {
                    report_config_error(&e);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let _log_guard = sluice::telemetry::init_logging(&config.log);
    for key in &config.ignored_keys {
        tracing::warn!(key = %key, "ignoring config key Sluice does not know");
    }
    if config.master_key.is_none() {
        tracing::warn!("no master key configured: the gateway serves every caller without authentication (set general_settings.master_key or SLUICE_MASTER_KEY)");
    }
    actix_web::rt::System::new().block_on(async move {
        let running = sluice::server::start(config)?;
        // The admin line comes first: scripts and tests take the main line as "all bound".
        for addr in &running.admin_addrs {
            tracing::info!(%addr, "admin listening");
            println!("sluice admin listening on {}://{addr}", running.scheme);
        }
        for addr in &running.addrs {
            tracing::info!(%addr, "listening");
            // A stable line on stdout that scripts and tests wait for.
            println!("sluice listening on {}://{addr}", running.scheme);
        }
        let handle = running.server.handle();
        actix_web::rt::spawn(sluice::server::shutdown_on_signal(
            handle,
            running.state.clone(),
        ));
        let upkeep = running
            .state
            .cache
            .clone()
            .map(sluice::server::spawn_cache_upkeep);
        running.server.await?;
        if let Some(u) = upkeep {
            u.stop();
        }
        if let Some(cache) = &running.state.cache {
            match cache.snapshot() {
                Ok(()) => tracing::info!("index snapshot written"),
                Err(e) => tracing::warn!(error = %e, "index snapshot at shutdown failed"),
            }
        }
        // Other clones of the state (signal task, workers) may outlive this point, so the
        // flusher's final flush on drop is not enough: write pending spend now.
        match running.state.spend.flush() {
            Ok(()) => tracing::debug!("spend flushed"),
            Err(e) => tracing::warn!(error = %e, "spend flush at shutdown failed"),
        }
        // Likewise the dashboard's per-minute rollups, so the charts keep the last seconds.
        running.state.dashboard.flush();
        tracing::info!("stopped");
        Ok(())
    })
}
