//! `sluice.limits`, `sluice.budgets`, `sluice.alerts` and LiteLLM's equivalents
//! (`general_settings.global_max_parallel_requests`, `litellm_settings.max_budget`,
//! `budget_duration`, `max_end_user_budget`) -> typed settings, problems named by path.

use super::raw::{RawAlerts, RawBudget, RawBudgets, RawLimits, RawLitellmSettings, RawRate};
use super::validate::ConfigIssues;
use super::Deployment;
use crate::clock::parse_duration;
use crate::limits::{LimitsConfig, Rate};
use crate::router::RoutingConfig;
use crate::spend::{AlertsConfig, Budget, BudgetsConfig};

/// One scope's limits; zeros are refused (leave a limit out for "unlimited").
fn rate(raw: &RawRate, path: &str, issues: &mut ConfigIssues) -> Rate {
    for (name, v) in [
        ("rpm", raw.rpm),
        ("tpm", raw.tpm),
        ("max_parallel_requests", raw.max_parallel_requests),
    ] {
        if v == Some(0) {
            issues.push(
                format!("{path}.{name}"),
                "must be at least 1 (leave it out for no limit)",
            );
        }
    }
    Rate {
        rpm: raw.rpm,
        tpm: raw.tpm,
        max_parallel_requests: raw.max_parallel_requests,
    }
}

/// `sluice.limits`; groups must exist (model groups or auto names).
pub(super) fn limits(
    raw: &RawLimits,
    global_max_parallel: Option<u64>,
    routing: &RoutingConfig,
    deployments: &[Deployment],
    issues: &mut ConfigIssues,
) -> LimitsConfig {
    let mut global = rate(&raw.global, "sluice.limits.global", issues);
    if global.max_parallel_requests.is_none() {
        if global_max_parallel == Some(0) {
            issues.push(
                "general_settings.global_max_parallel_requests",
                "must be at least 1",
            );
        }
        global.max_parallel_requests = global_max_parallel;
    }
    let mut groups = std::collections::BTreeMap::new();
    for (g, r) in &raw.groups {
        let path = format!("sluice.limits.groups.{g}");
        if !deployments.iter().any(|d| &d.model_group == g) && !routing.auto_groups.contains_key(g)
        {
            issues.push(path.clone(), format!("unknown model group \"{g}\""));
        }
        groups.insert(g.clone(), rate(r, &path, issues));
    }
    let users = raw
        .users
        .iter()
        .map(|(u, r)| {
            (
                u.clone(),
                rate(r, &format!("sluice.limits.users.{u}"), issues),
            )
        })
        .collect();
    LimitsConfig {
        global,
        groups,
        user: rate(&raw.user, "sluice.limits.user", issues),
        users,
        cache_hits_count_tokens: raw.cache_hits_count_tokens.unwrap_or(false),
    }
}

fn max_budget(v: f64, path: &str, issues: &mut ConfigIssues) -> f64 {
    if v.is_finite() && v >= 0.0 {
        v
    } else {
        issues.push(
            path,
            format!("must be a non-negative number of USD, got {v}"),
        );
        0.0
    }
}

fn duration(v: Option<&str>, path: &str, issues: &mut ConfigIssues) -> Option<u64> {
    let text = v?;
    let secs = parse_duration(text);
    if secs.is_none() {
        issues.push(
            path,
            format!("invalid duration \"{text}\" (use e.g. 30s, 15m, 1h, 1d, 30d, 1mo)"),
        );
    }
    secs
}

fn budget(raw: &RawBudget, path: &str, issues: &mut ConfigIssues) -> Budget {
    Budget {
        max_budget: max_budget(raw.max_budget, &format!("{path}.max_budget"), issues),
        duration_secs: duration(
            raw.budget_duration.as_deref(),
            &format!("{path}.budget_duration"),
            issues,
        ),
    }
}

/// `sluice.budgets`, with LiteLLM's `litellm_settings` keys as fallbacks.
pub(super) fn budgets(
    raw: &RawBudgets,
    litellm: &RawLitellmSettings,
    issues: &mut ConfigIssues,
) -> BudgetsConfig {
    let global = match (&raw.global, litellm.max_budget) {
        (Some(b), _) => Some(budget(b, "sluice.budgets.global", issues)),
        (None, Some(v)) => Some(Budget {
            max_budget: max_budget(v, "litellm_settings.max_budget", issues),
            duration_secs: duration(
                litellm.budget_duration.as_deref(),
                "litellm_settings.budget_duration",
                issues,
            ),
        }),
        (None, None) => None,
    };
    let user = match (&raw.user, litellm.max_end_user_budget) {
        (Some(b), _) => Some(budget(b, "sluice.budgets.user", issues)),
        (None, Some(v)) => Some(Budget {
            max_budget: max_budget(v, "litellm_settings.max_end_user_budget", issues),
            duration_secs: None,
        }),
        (None, None) => None,
    };
    let users = raw
        .users
        .iter()
        .map(|(u, b)| {
            (
                u.clone(),
                budget(b, &format!("sluice.budgets.users.{u}"), issues),
            )
        })
        .collect();
    BudgetsConfig {
        global,
        user,
        users,
        count_cache_hits: raw.count_cache_hits.unwrap_or(false),
    }
}

/// `sluice.alerts`.
pub(super) fn alerts(raw: &RawAlerts, issues: &mut ConfigIssues) -> AlertsConfig {
    let mut out = AlertsConfig::default();
    if let Some(url) = &raw.webhook_url {
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => issues.push(
                "sluice.alerts.webhook_url",
                format!("must be an http(s) URL, got \"{url}\""),
            ),
        }
        out.webhook_url = Some(url.clone());
    }
    if let Some(t) = &raw.thresholds {
        for (i, v) in t.iter().enumerate() {
            if !(v.is_finite() && *v > 0.0 && *v <= 10.0) {
                issues.push(
                    format!("sluice.alerts.thresholds[{i}]"),
                    format!("must be a fraction of the budget in (0, 10], got {v}"),
                );
            }
        }
        if t.len() > 32 {
            issues.push("sluice.alerts.thresholds", "at most 32 thresholds");
        }
        let mut sorted = t.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        out.thresholds = sorted;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::Config;

    fn load(yaml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        Config::load(&path).map_err(|e| e.to_string())
    }

    const MODELS: &str =
        "model_list:\n  - {model_name: g, litellm_params: {model: mock/x, rpm: 10}}\n";

    #[test]
    fn reads_limits_budgets_and_alerts() {
        let c = load(&format!(
            "{MODELS}sluice:\n  limits:\n    global: {{rpm: 100, tpm: 1000}}\n    groups: {{g: {{rpm: 5}}}}\n    user: {{rpm: 2}}\n    users: {{vip: {{rpm: 20}}}}\n    cache_hits_count_tokens: true\n  budgets:\n    user: {{max_budget: 1.5, budget_duration: 1d}}\n    users: {{vip: {{max_budget: 10}}}}\n  alerts: {{webhook_url: 'http://127.0.0.1:9/hook', thresholds: [0.9, 0.5]}}\n"
        ))
        .unwrap();
        assert_eq!(c.limits.global.rpm, Some(100));
        assert_eq!(c.limits.groups["g"].rpm, Some(5));
        assert_eq!(c.limits.user.rpm, Some(2));
        assert_eq!(c.limits.users["vip"].rpm, Some(20));
        assert!(c.limits.cache_hits_count_tokens);
        let u = c.budgets.user.unwrap();
        assert_eq!((u.max_budget, u.duration_secs), (1.5, Some(86_400)));
        assert_eq!(c.budgets.users["vip"].duration_secs, None);
        assert_eq!(c.alerts.thresholds, [0.5, 0.9]);
        assert!(c.ignored_keys.is_empty(), "{:?}", c.ignored_keys);
    }

    #[test]
    fn litellm_settings_are_understood() {
        let c = load(&format!(
            "{MODELS}litellm_settings: {{max_budget: 100, budget_duration: 30d, max_end_user_budget: 2}}\ngeneral_settings: {{global_max_parallel_requests: 8}}\n"
        ))
        .unwrap();
        let g = c.budgets.global.unwrap();
        assert_eq!((g.max_budget, g.duration_secs), (100.0, Some(30 * 86_400)));
        assert_eq!(c.budgets.user.unwrap().max_budget, 2.0);
        assert_eq!(c.limits.global.max_parallel_requests, Some(8));
        assert_eq!(c.alerts.thresholds, [0.5, 0.8, 1.0]);
    }

    #[test]
    fn bad_values_are_named_by_path() {
        let e = load(&format!(
            "{MODELS}sluice:\n  limits: {{global: {{rpm: 0}}, groups: {{nope: {{rpm: 1}}}}}}\n  budgets: {{global: {{max_budget: -1, budget_duration: 1year}}}}\n  alerts: {{webhook_url: 'ftp://x', thresholds: [0]}}\n"
        ))
        .unwrap_err();
        for want in [
            "sluice.limits.global.rpm: must be at least 1",
            "sluice.limits.groups.nope: unknown model group \"nope\"",
            "sluice.budgets.global.max_budget: must be a non-negative number",
            "sluice.budgets.global.budget_duration: invalid duration \"1year\"",
            "sluice.alerts.webhook_url: must be an http(s) URL",
            "sluice.alerts.thresholds[0]: must be a fraction",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }
}
