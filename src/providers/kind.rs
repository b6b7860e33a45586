//! Which wire protocol a deployment speaks, parsed once from `litellm_params.model`.

use std::fmt;

/// The provider prefix of `litellm_params.model` (`openai/gpt-4o` -> `OpenAi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// api.openai.com, or any server at `api_base`.
    OpenAi,
    /// An OpenAI-compatible vendor with a known default base URL.
    Compatible(CompatibleVendor),
    /// Azure OpenAI deployments.
    Azure,
    /// Anthropic Messages API.
    Anthropic,
    /// Google Gemini API.
    Gemini,
    /// Sluice's built-in deterministic mock.
    Mock,
}

/// OpenAI-compatible vendors that LiteLLM names by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompatibleVendor {
    Groq,
    TogetherAi,
    Mistral,
    DeepSeek,
    OpenRouter,
    FireworksAi,
    HostedVllm,
    Ollama,
}

impl CompatibleVendor {
    /// The vendor's base URL when the config gives none.
    pub fn default_api_base(self) -> Option<&'static str> {
        match self {
            Self::Groq => Some("https://api.groq.com/openai/v1"),
            Self::TogetherAi => Some("https://api.together.xyz/v1"),
            Self::Mistral => Some("https://api.mistral.ai/v1"),
            Self::DeepSeek => Some("https://api.deepseek.com/v1"),
            Self::OpenRouter => Some("https://openrouter.ai/api/v1"),
            Self::FireworksAi => Some("https://api.fireworks.ai/inference/v1"),
            Self::Ollama => Some("http://localhost:11434/v1"),
            Self::HostedVllm => None,
        }
    }

    /// The environment variable LiteLLM reads the key from when the config gives none.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Self::Groq => Some("GROQ_API_KEY"),
            Self::TogetherAi => Some("TOGETHERAI_API_KEY"),
            Self::Mistral => Some("MISTRAL_API_KEY"),
            Self::DeepSeek => Some("DEEPSEEK_API_KEY"),
            Self::OpenRouter => Some("OPENROUTER_API_KEY"),
            Self::FireworksAi => Some("FIREWORKS_AI_API_KEY"),
            Self::HostedVllm | Self::Ollama => None,
        }
    }
}

impl ProviderKind {
    /// Every prefix accepted in `litellm_params.model`, for error messages.
    pub const PREFIXES: &'static [&'static str] = &[
        "openai",
        "azure",
        "anthropic",
        "gemini",
        "groq",
        "together_ai",
        "mistral",
        "deepseek",
        "openrouter",
        "fireworks_ai",
        "hosted_vllm",
        "ollama",
        "mock",
    ];

    /// Parses the provider prefix.
    pub fn from_prefix(prefix: &str) -> Option<Self> {
        use CompatibleVendor::*;
        Some(match prefix {
            "openai" | "text-completion-openai" => Self::OpenAi,
            "azure" => Self::Azure,
            "anthropic" => Self::Anthropic,
            "gemini" => Self::Gemini,
            "mock" => Self::Mock,
            "groq" => Self::Compatible(Groq),
            "together_ai" => Self::Compatible(TogetherAi),
            "mistral" => Self::Compatible(Mistral),
            "deepseek" => Self::Compatible(DeepSeek),
            "openrouter" => Self::Compatible(OpenRouter),
            "fireworks_ai" => Self::Compatible(FireworksAi),
            "hosted_vllm" => Self::Compatible(HostedVllm),
            "ollama" | "ollama_chat" => Self::Compatible(Ollama),
            _ => return None,
        })
    }

    /// Splits `provider/model`; a bare model name means OpenAI, as in LiteLLM.
    pub fn parse_model(model: &str) -> Result<(Self, String), String> {
        match model.split_once('/') {
            None => Ok((Self::OpenAi, model.to_string())),
            Some((prefix, rest)) => match Self::from_prefix(prefix) {
                Some(kind) if !rest.is_empty() => Ok((kind, rest.to_string())),
                Some(_) => Err(format!("model name missing after \"{prefix}/\"")),
                None => Err(format!(
                    "unknown provider \"{prefix}\" (known: {})",
                    Self::PREFIXES.join(", ")
                )),
            },
        }
    }

    /// The environment variable holding the key when the config gives none.
    pub fn default_key_env(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("OPENAI_API_KEY"),
            Self::Azure => Some("AZURE_API_KEY"),
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Gemini => Some("GEMINI_API_KEY"),
            Self::Compatible(v) => v.default_key_env(),
            Self::Mock => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Mock => "mock",
            Self::Compatible(v) => match v {
                CompatibleVendor::Groq => "groq",
                CompatibleVendor::TogetherAi => "together_ai",
                CompatibleVendor::Mistral => "mistral",
                CompatibleVendor::DeepSeek => "deepseek",
                CompatibleVendor::OpenRouter => "openrouter",
                CompatibleVendor::FireworksAi => "fireworks_ai",
                CompatibleVendor::HostedVllm => "hosted_vllm",
                CompatibleVendor::Ollama => "ollama",
            },
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prefixes() {
        assert_eq!(
            ProviderKind::parse_model("openai/gpt-4o"),
            Ok((ProviderKind::OpenAi, "gpt-4o".into()))
        );
        assert_eq!(
            ProviderKind::parse_model("gpt-4o"),
            Ok((ProviderKind::OpenAi, "gpt-4o".into()))
        );
        assert_eq!(
            ProviderKind::parse_model("groq/llama-3.1-8b"),
            Ok((
                ProviderKind::Compatible(CompatibleVendor::Groq),
                "llama-3.1-8b".into()
            ))
        );
        let err = ProviderKind::parse_model("opnai/gpt-4o").unwrap_err();
        assert!(err.starts_with("unknown provider \"opnai\""), "{err}");
        for p in ProviderKind::PREFIXES {
            let kind = ProviderKind::from_prefix(p).unwrap();
            assert_eq!(&kind.to_string(), p);
        }
    }
}
