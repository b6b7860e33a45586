//! From YAML text to a typed [`Config`]: every problem is collected with the path of its key.

use super::env::{self, Vars};
use super::raw::{RawConfig, RawModel};
use super::{Config, Deployment, LogFormat, LogSettings, MockSettings, Secret, ServerSettings};
use crate::pricing::{Price, PriceTable};
use crate::providers::ProviderKind;
use crate::router::{AutoPolicy, Capabilities, RoutingConfig, RoutingStrategy};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

const DEFAULT_TIMEOUT_SECS: f64 = 600.0;
const DEFAULT_CONNECT_TIMEOUT_SECS: f64 = 10.0;
const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE_SECS: f64 = 30.0;
const DEFAULT_LISTEN: &str = "0.0.0.0:4000";
const DEFAULT_DATA_DIR: &str = "./data/state";

/// One problem in a config, at a YAML path such as `model_list[1].litellm_params.model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Path of the offending key.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every problem found in one config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigIssues(pub Vec<ConfigIssue>);

impl ConfigIssues {
    /// Records a problem.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            path: path.into(),
            message: message.into(),
        });
    }
}

impl fmt::Display for ConfigIssues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if issue.path.is_empty() {
                write!(f, "{}", issue.message)?;
            } else {
                write!(f, "{}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

/// A YAML path being walked, printed as `a.b[2].c`.
#[derive(Debug, Default)]
pub struct PathBuf(Vec<Segment>);

#[derive(Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl PathBuf {
    /// Enters a mapping key.
    pub fn push_key(&mut self, key: &str) {
        self.0.push(Segment::Key(key.to_string()));
    }
    /// Enters a sequence item.
    pub fn push_index(&mut self, index: usize) {
        self.0.push(Segment::Index(index));
    }
    /// Leaves the last segment.
    pub fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for PathBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => f.write_str(k)?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Formats a `serde_ignored` path the same way as our own paths.
fn ignored_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => {
            let p = ignored_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

/// Parses YAML text into a validated config.
pub fn parse(text: &str, vars: &dyn Vars) -> Result<Config, ConfigIssues> {
    let mut issues = ConfigIssues::default();
    let mut value: serde_yaml_ng::Value = match serde_yaml_ng::from_str(text) {
        Ok(serde_yaml_ng::Value::Null) => serde_yaml_ng::Value::Mapping(Default::default()),
        Ok(v) => v,
        Err(e) => {
            issues.push("", format!("invalid YAML: {e}"));
            return Err(issues);
        }
    };
    env::resolve(&mut value, &mut PathBuf::default(), vars, &mut issues);
    if !issues.0.is_empty() {
        return Err(issues);
    }
    let mut ignored = Vec::new();
    let mut on_ignored = |p: serde_ignored::Path<'_>| ignored.push(ignored_path(&p));
    let de = serde_ignored::Deserializer::new(value, &mut on_ignored);
    let raw: RawConfig = match serde_path_to_error::deserialize(de) {
        Ok(raw) => raw,
        Err(e) => {
            issues.push(e.path().to_string(), e.inner().to_string());
            return Err(issues);
        }
    };
    let config = validate(raw, ignored, vars, &mut issues);
    if issues.0.is_empty() {
        Ok(config)
    } else {
        Err(issues)
    }
}

fn seconds(value: Option<f64>, default: f64, path: &str, issues: &mut ConfigIssues) -> Duration {
    let secs = value.unwrap_or(default);
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if secs > 0.0 => d,
        _ => {
            issues.push(
                path,
                format!("must be a positive number of seconds, got {secs}"),
            );
            Duration::from_secs_f64(default)
        }
    }
}

fn validate(
    raw: RawConfig,
    ignored_keys: Vec<String>,
    vars: &dyn Vars,
    issues: &mut ConfigIssues,
) -> Config {
    let default_timeout = raw
        .router_settings
        .timeout
        .or(raw.litellm_settings.request_timeout)
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    let connect_default = raw
        .sluice
        .connect_timeout_seconds
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT_SECS);

    let mut deployments: Vec<Deployment> = Vec::new();
    for (i, m) in raw.model_list.into_iter().enumerate() {
        if let Some(d) = deployment(
            i,
            m,
            &deployments,
            default_timeout,
            connect_default,
            vars,
            issues,
        ) {
            deployments.push(d);
        }
    }

    let routing = routing(
        &raw.router_settings,
        &raw.sluice.routing,
        &deployments,
        issues,
    );

    let listen_text = raw.sluice.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|e| {
        issues.push(
            "sluice.listen",
            format!("invalid address \"{listen_text}\": {e}"),
        );
        SocketAddr::from(([0, 0, 0, 0], 4000))
    });
    let max_body_bytes = raw
        .sluice
        .max_request_body_bytes
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        issues.push("sluice.max_request_body_bytes", "must be greater than 0");
    }
    if raw.sluice.workers == Some(0) {
        issues.push("sluice.workers", "must be greater than 0");
    }
    let grace = raw
        .sluice
        .shutdown_grace_seconds
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS);
    let shutdown_grace = Duration::try_from_secs_f64(grace).unwrap_or_else(|_| {
        issues.push(
            "sluice.shutdown_grace_seconds",
            format!("must be a non-negative number of seconds, got {grace}"),
        );
        Duration::from_secs(30)
    });
    let format = match (
        raw.sluice.log_format.as_deref(),
        raw.litellm_settings.json_logs,
    ) {
        (Some("json"), _) | (None, Some(true)) => LogFormat::Json,
        (Some("text"), _) | (None, _) => LogFormat::Text,
        (Some(other), _) => {
            issues.push(
                "sluice.log_format",
                format!("unknown log format \"{other}\" (known: text, json)"),
            );
            LogFormat::Text
        }
    };
    let master_key = match raw.general_settings.master_key {
        Some(k) if k.is_empty() => {
            issues.push("general_settings.master_key", "must not be empty");
            None
        }
        Some(k) => Some(Secret::new(k)),
        None => None,
    };

    // Before `cache_config`, which moves `raw.sluice.cache` out.
    let security = super::security::security(&raw.sluice, issues);
    let cache = cache_config(raw.sluice.cache, &deployments, issues);
    let limits = super::limits::limits(
        &raw.sluice.limits,
        raw.general_settings.global_max_parallel_requests,
        &routing,
        &deployments,
        issues,
    );
    let budgets = super::limits::budgets(&raw.sluice.budgets, &raw.litellm_settings, issues);
    let alerts = super::limits::alerts(&raw.sluice.alerts, issues);
    let realtime = super::realtime::realtime(&raw.sluice.realtime, issues);
    let pii = super::pii::pii(&raw.sluice.pii, &deployments, issues);
    let encryption = super::encryption::encryption(raw.sluice.encryption.as_ref(), issues);
    if raw.sluice.audit.retention_days == Some(0) {
        issues.push(
            "sluice.audit.retention_days",
            "must be at least 1 (leave it out to keep records forever)",
        );
    }
    let dashboard_retention = raw
        .sluice
        .dashboard
        .retention_days
        .unwrap_or(crate::dashboard::DEFAULT_RETENTION_DAYS);
    if !(1..=3650).contains(&dashboard_retention) {
        issues.push(
            "sluice.dashboard.retention_days",
            format!("must be between 1 and 3650 days, got {dashboard_retention}"),
        );
    }
    Config {
        encryption,
        realtime,
        pii,
        dashboard: crate::dashboard::DashboardConfig {
            retention_days: dashboard_retention.clamp(1, 3650),
        },
        audit_retention_days: raw.sluice.audit.retention_days.filter(|d| *d > 0),
        audit_log_bodies: raw.sluice.audit.log_bodies.unwrap_or(false),
        security,
        routing,
        limits,
        budgets,
        alerts,
        cache,
        deployments,
        master_key,
        server: ServerSettings {
            listen,
            workers: raw.sluice.workers,
            max_body_bytes,
            shutdown_grace,
        },
        data_dir: raw
            .sluice
            .data_dir
            .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string())
            .into(),
        log: LogSettings {
            format,
            level: raw.sluice.log_level.unwrap_or_else(|| "info".to_string()),
        },
        ignored_keys,
    }
}

fn cache_config(
    raw: super::raw::RawCache,
    deployments: &[Deployment],
    issues: &mut ConfigIssues,
) -> super::CacheConfig {
    let defaults = crate::cache::CacheSettings::default();
    let settings = crate::cache::CacheSettings {
        enabled: raw.enabled.unwrap_or(true),
        default_threshold: raw
            .similarity_threshold
            .unwrap_or(defaults.default_threshold),
        group_thresholds: raw.group_thresholds,
        namespace_thresholds: Default::default(),
        default_ttl_seconds: raw.ttl_seconds,
        max_entries: raw.max_entries,
        max_bytes: raw.max_bytes,
    };
    let mut groups: Vec<String> = deployments.iter().map(|d| d.model_group.clone()).collect();
    groups.sort();
    groups.dedup();
    if let Err(e) = settings.validate(&groups) {
        let field = match e.field.as_str() {
            "default_threshold" => "similarity_threshold".to_string(),
            "default_ttl_seconds" => "ttl_seconds".to_string(),
            other => other.to_string(),
        };
        issues.push(format!("sluice.cache.{field}"), e.message);
    }
    let embedding_model = match raw.embedding_model.as_deref().map(str::parse) {
        None => Default::default(),
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            issues.push("sluice.cache.embedding_model", e);
            Default::default()
        }
    };
    super::CacheConfig {
        enabled: settings.enabled,
        embedding_model,
        settings,
        models_dir: raw.models_dir.map(Into::into),
        sync_writes: raw.sync_writes.unwrap_or(false),
        embedding_memo_entries: raw
            .embedding_memo_entries
            .unwrap_or(crate::embed::DEFAULT_MEMO_ENTRIES),
    }
}

/// `router_settings` and `sluice.routing` -> [`RoutingConfig`]; fallbacks must name groups.
fn routing(
    rs: &super::raw::RawRouterSettings,
    rr: &super::raw::RawRouting,
    deployments: &[Deployment],
    issues: &mut ConfigIssues,
) -> RoutingConfig {
    let mut out = RoutingConfig::default();
    if let Some(s) = &rs.routing_strategy {
        match s.parse::<RoutingStrategy>() {
            Ok(v) => out.strategy = v,
            Err(e) => issues.push("router_settings.routing_strategy", e),
        }
    }
    if let Some(n) = rs.num_retries {
        out.num_retries = n;
    }
    if let Some(n) = rs.allowed_fails {
        out.allowed_fails = n;
    }
    let non_negative =
        |v: Option<f64>, path: &str, default: Duration, issues: &mut ConfigIssues| match v {
            None => default,
            Some(secs) => match Duration::try_from_secs_f64(secs) {
                Ok(d) => d,
                Err(_) => {
                    issues.push(
                        path,
                        format!("must be a non-negative number of seconds, got {secs}"),
                    );
                    default
                }
            },
        };
    out.backoff_base = non_negative(
        rs.retry_after,
        "router_settings.retry_after",
        out.backoff_base,
        issues,
    );
    out.cooldown = non_negative(
        rs.cooldown_time,
        "router_settings.cooldown_time",
        out.cooldown,
        issues,
    );
    out.backoff_max = non_negative(
        rr.max_backoff_seconds,
        "sluice.routing.max_backoff_seconds",
        out.backoff_max,
        issues,
    );
    if let Some(w) = &rr.weights {
        for (name, v, slot) in [
            ("cost", w.cost, &mut out.weights.cost),
            ("latency", w.latency, &mut out.weights.latency),
            ("errors", w.errors, &mut out.weights.errors),
        ] {
            match v {
                Some(x) if x.is_finite() && x >= 0.0 => *slot = x,
                Some(x) => issues.push(
                    format!("sluice.routing.weights.{name}"),
                    format!("must be a non-negative number, got {x}"),
                ),
                None => {}
            }
        }
    }
    if let Some(n) = rr.expected_completion_tokens {
        out.expected_completion_tokens = n;
    }
    out.seed = rr.seed;
    let groups: std::collections::BTreeSet<&str> =
        deployments.iter().map(|d| d.model_group.as_str()).collect();
    if let Some(p) = &rr.auto.policy {
        match p.parse::<AutoPolicy>() {
            Ok(v) => {
                out.auto_groups.insert("auto".into(), v);
            }
            Err(e) => issues.push("sluice.routing.auto.policy", e),
        }
    }
    for (name, p) in &rr.auto.groups {
        match p.parse::<AutoPolicy>() {
            Ok(v) => {
                out.auto_groups.insert(name.clone(), v);
            }
            Err(e) => issues.push(format!("sluice.routing.auto.groups.{name}"), e),
        }
    }
    let known = |g: &str| groups.contains(g) || out.auto_groups.contains_key(g);
    let fallback_map = |key: &str,
                        lists: &[std::collections::BTreeMap<String, Vec<String>>],
                        issues: &mut ConfigIssues| {
        let mut map = std::collections::BTreeMap::new();
        for (i, entry) in lists.iter().enumerate() {
            for (from, to) in entry {
                if from != "*" && !known(from) {
                    issues.push(
                        format!("router_settings.{key}[{i}].{from}"),
                        format!("unknown model group \"{from}\""),
                    );
                }
                for (j, g) in to.iter().enumerate() {
                    if !known(g) {
                        issues.push(
                            format!("router_settings.{key}[{i}].{from}[{j}]"),
                            format!("unknown model group \"{g}\""),
                        );
                    }
                }
                map.insert(from.clone(), to.clone());
            }
        }
        map
    };
    let fallbacks = fallback_map("fallbacks", &rs.fallbacks, issues);
    let context = fallback_map(
        "context_window_fallbacks",
        &rs.context_window_fallbacks,
        issues,
    );
    let content = fallback_map(
        "content_policy_fallbacks",
        &rs.content_policy_fallbacks,
        issues,
    );
    out.fallbacks = fallbacks;
    out.context_window_fallbacks = context;
    out.content_policy_fallbacks = content;
    out
}

fn deployment(
    i: usize,
    m: RawModel,
    earlier: &[Deployment],
    default_timeout: f64,
    connect_default: f64,
    vars: &dyn Vars,
    issues: &mut ConfigIssues,
) -> Option<Deployment> {
    let at = |key: &str| format!("model_list[{i}].{key}");
    if m.model_name.trim().is_empty() {
        issues.push(at("model_name"), "must not be empty");
    }
    let p = m.litellm_params;
    let (provider, upstream_model) = match ProviderKind::parse_model(&p.model) {
        Ok(v) => v,
        Err(msg) => {
            issues.push(at("litellm_params.model"), msg);
            return None;
        }
    };
    let api_base = match (&p.api_base, provider) {
        (Some(base), _) => {
            match reqwest::Url::parse(base) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => issues.push(
                    at("litellm_params.api_base"),
                    format!("must be an http(s) URL, got \"{base}\""),
                ),
            }
            Some(base.trim_end_matches('/').to_string())
        }
        (None, ProviderKind::Compatible(v)) => match v.default_api_base() {
            Some(b) => Some(b.to_string()),
            None => {
                issues.push(
                    at("litellm_params.api_base"),
                    format!("required for {provider}"),
                );
                None
            }
        },
        (None, ProviderKind::Azure) => {
            issues.push(
                at("litellm_params.api_base"),
                "required for azure (https://<resource>.openai.azure.com)",
            );
            None
        }
        (None, _) => None,
    };
    let api_key = p
        .api_key
        .or_else(|| provider.default_key_env().and_then(|name| vars.get(name)))
        .filter(|k| !k.is_empty())
        .map(Secret::new);
    if provider == ProviderKind::OpenAi && api_base.is_none() && api_key.is_none() {
        issues.push(
            at("litellm_params.api_key"),
            "required for api.openai.com (set it, or set OPENAI_API_KEY)",
        );
    }
    let id = m.model_info.id.clone().unwrap_or_else(|| {
        let n = earlier
            .iter()
            .filter(|d| d.model_group == m.model_name)
            .count();
        format!("{}/{n}", m.model_name)
    });
    if earlier.iter().any(|d| d.id == id) {
        issues.push(
            at("model_info.id"),
            format!("duplicate deployment id \"{id}\""),
        );
    }
    for (key, cost) in [
        (
            "model_info.input_cost_per_token",
            m.model_info.input_cost_per_token,
        ),
        (
            "model_info.output_cost_per_token",
            m.model_info.output_cost_per_token,
        ),
    ] {
        if cost.is_some_and(|c| !(c >= 0.0 && c.is_finite())) {
            issues.push(at(key), "must be a non-negative number");
        }
    }
    let timeout = seconds(
        p.timeout,
        default_timeout,
        &at("litellm_params.timeout"),
        issues,
    );
    let stream_timeout = seconds(
        p.stream_timeout.or(p.timeout),
        default_timeout,
        &at("litellm_params.stream_timeout"),
        issues,
    );
    let connect_timeout = seconds(
        p.connect_timeout,
        connect_default,
        &at("litellm_params.connect_timeout"),
        issues,
    );
    // Prices and capabilities: the built-in table, then `model_info` field by field.
    let info = &m.model_info;
    let row = PriceTable::builtin().lookup(
        provider,
        info.base_model.as_deref().unwrap_or(&upstream_model),
    );
    let price = match (
        info.input_cost_per_token
            .or(row.map(|r| r.input_cost_per_token)),
        info.output_cost_per_token
            .or(row.map(|r| r.output_cost_per_token)),
    ) {
        (Some(input), Some(output)) => Some(Price { input, output }),
        (Some(input), None) => Some(Price { input, output: 0.0 }),
        (None, Some(output)) => Some(Price { input: 0.0, output }),
        (None, None) => None,
    };
    let unknown = Capabilities::default();
    let caps = Capabilities {
        context_window: info
            .max_input_tokens
            .or(row.and_then(|r| r.max_input_tokens)),
        max_output: info
            .max_output_tokens
            .or(info.max_tokens)
            .or(row.and_then(|r| r.max_output_tokens)),
        tools: info
            .supports_function_calling
            .or(row.map(|r| r.supports_function_calling))
            .unwrap_or(unknown.tools),
        vision: info
            .supports_vision
            .or(row.map(|r| r.supports_vision))
            .unwrap_or(unknown.vision),
        json: info
            .supports_response_schema
            .or(row.map(|r| r.supports_response_schema))
            .unwrap_or(unknown.json),
    };
    let weight = match p.weight {
        None => 1.0,
        Some(w) if w.is_finite() && w > 0.0 => w,
        Some(w) => {
            issues.push(
                at("litellm_params.weight"),
                format!("must be a positive number, got {w}"),
            );
            1.0
        }
    };
    Some(Deployment {
        id,
        model_group: m.model_name,
        provider,
        upstream_model,
        api_base,
        api_key,
        api_version: p.api_version,
        organization: p.organization,
        timeout,
        stream_timeout,
        connect_timeout,
        rpm: p.rpm,
        tpm: p.tpm,
        input_cost_per_token: price.map(|p| p.input),
        output_cost_per_token: price.map(|p| p.output),
        price,
        caps,
        weight,
        max_retries: p.max_retries,
        responses_native: m.model_info.responses_native,
        mock: MockSettings {
            response: p.mock_response,
            latency: Duration::from_millis(p.mock_latency_ms.unwrap_or(0)),
            chunk_delay: Duration::from_millis(p.mock_chunk_delay_ms.unwrap_or(0)),
        },
    })
}
