//! Prices and capabilities of models: the built-in table `data/model_prices.json` (embedded at
//! build time) and the cost of one answer.
//!
//! Owns what a token costs and what a model can do. Knows nothing of routing or HTTP; config
//! resolves each deployment's entry once at start-up, overrides from `model_info` win.

use crate::providers::ProviderKind;
use crate::wire::Usage;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The table as shipped.
const BUILTIN: &str = include_str!("../../data/model_prices.json");

/// One model's row of the table (LiteLLM's field names).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModelPrice {
    /// USD per prompt token.
    #[serde(default)]
    pub input_cost_per_token: f64,
    /// USD per completion token.
    #[serde(default)]
    pub output_cost_per_token: f64,
    /// Context window (prompt tokens).
    pub max_input_tokens: Option<u64>,
    /// Largest completion.
    pub max_output_tokens: Option<u64>,
    /// Tools / function calling.
    #[serde(default)]
    pub supports_function_calling: bool,
    /// Image inputs.
    #[serde(default)]
    pub supports_vision: bool,
    /// JSON mode / structured outputs.
    #[serde(default)]
    pub supports_response_schema: bool,
}

/// Prices by `provider/model`.
#[derive(Debug, Default)]
pub struct PriceTable {
    rows: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// Parses a table; keys starting with `_` are comments.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        let raw: HashMap<String, serde_json::Value> = serde_json::from_str(json)?;
        let mut rows = HashMap::with_capacity(raw.len());
        for (k, v) in raw {
            if k.starts_with('_') {
                continue;
            }
            rows.insert(k, serde_json::from_value(v)?);
        }
        Ok(Self { rows })
    }

    /// The table shipped with the binary.
    pub fn builtin() -> &'static PriceTable {
        static TABLE: OnceLock<PriceTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            Self::parse(BUILTIN).unwrap_or_else(|e| {
                // A unit test parses the shipped file, so this only fires on a bad edit.
                tracing::error!(error = %e, "data/model_prices.json is invalid; no built-in prices");
                Self::default()
            })
        })
    }

    /// The row for a deployment's model: `provider/model`, then without a date suffix
    /// (`gpt-4o-2024-08-06` -> `gpt-4o`). Azure deployments and OpenAI-compatible servers are
    /// priced as the OpenAI model of the same name unless their vendor has its own row.
    pub fn lookup(&self, provider: ProviderKind, model: &str) -> Option<&ModelPrice> {
        let own = provider.to_string();
        let fallback = matches!(provider, ProviderKind::Azure).then_some("openai");
        let names = [model, strip_date(model)];
        std::iter::once(own.as_str())
            .chain(fallback)
            .flat_map(|p| names.iter().map(move |m| format!("{p}/{m}")))
            .find_map(|key| self.rows.get(&key))
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// `gpt-4o-2024-08-06` -> `gpt-4o`, `claude-3-5-haiku-20241022` -> `claude-3-5-haiku`.
fn strip_date(model: &str) -> &str {
    let b = model.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // -YYYY-MM-DD
    if b.len() > 11 && b[b.len() - 11] == b'-' {
        let tail = &b[b.len() - 10..];
        if digits(&tail[0..4])
            && tail[4] == b'-'
            && digits(&tail[5..7])
            && tail[7] == b'-'
            && digits(&tail[8..10])
        {
            return &model[..model.len() - 11];
        }
    }
    // -YYYYMMDD
    if b.len() > 9 && b[b.len() - 9] == b'-' && digits(&b[b.len() - 8..]) {
        return &model[..model.len() - 9];
    }
    // -latest
    model.strip_suffix("-latest").unwrap_or(model)
}

/// Per-token prices of one deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// USD per prompt token.
    pub input: f64,
    /// USD per completion token.
    pub output: f64,
}

impl Price {
    /// USD for a given usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        self.input * usage.prompt_tokens as f64 + self.output * usage.completion_tokens as f64
    }

    /// USD expected for a prompt and completion size.
    pub fn expected(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.input * prompt_tokens as f64 + self.output * completion_tokens as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::providers::CompatibleVendor;

    #[test]
    fn shipped_table_parses_and_covers_every_provider() {
        let t = PriceTable::parse(BUILTIN).unwrap();
        assert!(t.len() >= 30);
        for (p, m) in [
            (ProviderKind::OpenAi, "gpt-4o"),
            (ProviderKind::Anthropic, "claude-sonnet-4-5"),
            (ProviderKind::Gemini, "gemini-2.5-flash"),
            (
                ProviderKind::Compatible(CompatibleVendor::Mistral),
                "mistral-large-latest",
            ),
            (
                ProviderKind::Compatible(CompatibleVendor::Groq),
                "llama-3.3-70b-versatile",
            ),
            (
                ProviderKind::Compatible(CompatibleVendor::DeepSeek),
                "deepseek-chat",
            ),
        ] {
            let row = t.lookup(p, m).unwrap_or_else(|| panic!("{p}/{m}"));
            assert!(row.input_cost_per_token > 0.0, "{p}/{m}");
            assert!(row.max_input_tokens.unwrap() >= 100_000, "{p}/{m}");
        }
    }

    #[test]
    fn dated_names_and_azure_find_their_row() {
        let t = PriceTable::builtin();
        let base = t.lookup(ProviderKind::OpenAi, "gpt-4o").unwrap();
        assert_eq!(
            t.lookup(ProviderKind::OpenAi, "gpt-4o-2024-08-06"),
            Some(base)
        );
        assert_eq!(t.lookup(ProviderKind::Azure, "gpt-4o"), Some(base));
        assert!(t
            .lookup(ProviderKind::Anthropic, "claude-3-5-haiku-20241022")
            .is_some());
        assert!(t.lookup(ProviderKind::OpenAi, "my-finetune").is_none());
        assert!(t.lookup(ProviderKind::Mock, "gpt-4o").is_none());
    }

    #[test]
    fn cost_of_usage() {
        let p = Price {
            input: 2.5e-6,
            output: 1e-5,
        };
        let u = Usage {
            prompt_tokens: 1000,
            completion_tokens: 100,
            total_tokens: 1100,
        };
        assert!((p.cost(&u) - 0.0035).abs() < 1e-12);
        assert!((p.expected(1000, 100) - 0.0035).abs() < 1e-12);
    }
}
