//! `sluice.pii`: the PII guard's policies (gateway-wide and per model group) and custom detectors.

use super::validate::ConfigIssues;
use super::Deployment;
use crate::pii::{PiiConfig, PiiOverride, PiiPolicy, Scanner};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `sluice.pii` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawPii {
    /// `off | detect | mask | block` for prompts.
    pub prompts: Option<String>,
    /// `off | detect | mask | block` for answers.
    pub responses: Option<String>,
    /// Custom detectors: `[{kind, regex}]`.
    #[serde(default)]
    pub custom: Vec<RawCustom>,
    /// Per model group: `{group: {prompts, responses}}`.
    #[serde(default)]
    pub groups: BTreeMap<String, RawPiiOverride>,
}

/// One custom detector.
#[derive(Debug, Default, Deserialize)]
pub struct RawCustom {
    /// Kind name reported and used in placeholders (`employee_id` -> `[EMPLOYEE_ID_1]`).
    pub kind: Option<String>,
    /// The pattern (Rust `regex` syntax).
    pub regex: Option<String>,
}

/// A per-group override.
#[derive(Debug, Default, Deserialize)]
pub struct RawPiiOverride {
    /// Policy for prompts.
    pub prompts: Option<String>,
    /// Policy for answers.
    pub responses: Option<String>,
}

fn policy(v: Option<&str>, path: &str, issues: &mut ConfigIssues) -> Option<PiiPolicy> {
    let v = v?;
    match v.parse() {
        Ok(p) => Some(p),
        Err(_) => {
            issues.push(
                path,
                format!("unknown policy {v:?}: expected off, detect, mask or block"),
            );
            None
        }
    }
}

/// Validates `sluice.pii` against the model groups of `deployments`.
pub fn pii(raw: &RawPii, deployments: &[Deployment], issues: &mut ConfigIssues) -> PiiConfig {
    let mut custom = Vec::new();
    for (i, c) in raw.custom.iter().enumerate() {
        let path = format!("sluice.pii.custom[{i}]");
        let kind = c.kind.as_deref().map(str::trim).unwrap_or_default();
        let valid_kind = !kind.is_empty()
            && kind
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !valid_kind {
            issues.push(
                format!("{path}.kind"),
                "required: a name of letters, digits, '_' or '-'",
            );
            continue;
        }
        let Some(regex) = c.regex.as_deref().filter(|r| !r.is_empty()) else {
            issues.push(format!("{path}.regex"), "required");
            continue;
        };
        // Compile once here so a bad pattern is reported with its path, not at first use.
        if let Err(e) = Scanner::new(&[(kind.to_string(), regex.to_string())]) {
            issues.push(format!("{path}.regex"), e.to_string());
            continue;
        }
        custom.push((kind.to_string(), regex.to_string()));
    }
    let mut overrides = BTreeMap::new();
    for (group, o) in &raw.groups {
        let path = format!("sluice.pii.groups.{group}");
        if !deployments.iter().any(|d| &d.model_group == group) {
            issues.push(&path, "no model group of that name in model_list");
            continue;
        }
        let o = PiiOverride {
            prompts: policy(o.prompts.as_deref(), &format!("{path}.prompts"), issues),
            responses: policy(o.responses.as_deref(), &format!("{path}.responses"), issues),
        };
        overrides.insert(group.clone(), o);
    }
    PiiConfig {
        prompts: policy(raw.prompts.as_deref(), "sluice.pii.prompts", issues).unwrap_or_default(),
        responses: policy(raw.responses.as_deref(), "sluice.pii.responses", issues)
            .unwrap_or_default(),
        custom,
        groups: overrides,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `sluice.pii` as written in a whole config with one model group, `gpt`.
    fn parse(yaml: &str) -> (PiiConfig, Vec<String>) {
        let pii: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let text = format!(
            "model_list:\n  - {{model_name: gpt, litellm_params: {{model: mock/gpt}}}}\nsluice:\n  pii:\n{pii}"
        );
        let vars = std::collections::HashMap::<String, String>::new();
        match super::super::Config::from_yaml(&text, &vars) {
            Ok(c) => (c.pii, Vec::new()),
            Err(e) => (
                PiiConfig::default(),
                e.to_string().lines().map(str::to_string).collect(),
            ),
        }
    }

    #[test]
    fn defaults_off() {
        let (c, issues) = parse("prompts: off");
        assert_eq!(c, PiiConfig::default());
        assert!(issues.is_empty());
    }

    #[test]
    fn policies_groups_and_custom() {
        let (c, issues) = parse(
            "prompts: mask\nresponses: detect\ncustom: [{kind: employee_id, regex: 'EMP-[0-9]{6}'}]\ngroups: {gpt: {prompts: block}}\n",
        );
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(c.prompts, PiiPolicy::Mask);
        assert_eq!(c.responses, PiiPolicy::Detect);
        assert_eq!(
            c.custom,
            [("employee_id".to_string(), "EMP-[0-9]{6}".to_string())]
        );
        assert_eq!(c.groups["gpt"].prompts, Some(PiiPolicy::Block));
    }

    #[test]
    fn errors_name_the_key() {
        let (_, issues) = parse(
            "prompts: sometimes\ncustom: [{kind: x, regex: '('}, {regex: 'a'}]\ngroups: {nope: {prompts: mask}, gpt: {responses: loud}}\n",
        );
        let all = issues.join("\n");
        assert!(
            all.contains("sluice.pii.prompts: unknown policy \"sometimes\""),
            "{all}"
        );
        assert!(all.contains("sluice.pii.custom[0].regex"), "{all}");
        assert!(all.contains("sluice.pii.custom[1].kind: required"), "{all}");
        assert!(
            all.contains("sluice.pii.groups.nope: no model group"),
            "{all}"
        );
        assert!(
            all.contains("sluice.pii.groups.gpt.responses: unknown policy"),
            "{all}"
        );
    }
}
