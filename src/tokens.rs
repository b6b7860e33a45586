//! Token estimates made before a request goes upstream (routing by context window, rate limits,
//! `/utils/token_counter`).
//!
//! Owns the estimate only; real counts always come from the upstream's `usage`.
//!
//! - OpenAI models are counted with their own BPE (tiktoken-rs, whose rank files are compiled
//!   into the binary: nothing is downloaded): `o200k_base` for the GPT-4o / 4.1 / 4.5 / 5 and
//!   o-series families, `cl100k_base` for the older GPT-4 / 3.5 and embedding models.
//! - Every other model (Anthropic, Gemini, Mistral, Llama…) uses the documented approximation of
//!   about four characters per token, which runs slightly high for English.
//!
//! On top of the text, both add OpenAI's chat framing: 4 tokens per message, 3 to prime the reply,
//! and a fixed 85 tokens per image part (a low-detail image in OpenAI's accounting). Loading a BPE
//! takes tens of milliseconds, so each is loaded once per process ([`warm_up`] does it early).

use crate::wire::{ChatRequest, Content};
use serde_json::Value;
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// Framing tokens OpenAI counts per message.
const PER_MESSAGE: u64 = 4;
/// Tokens that prime every reply (`<|start|>assistant<|message|>`).
const REPLY_PRIMING: u64 = 3;
/// A low-detail image in OpenAI's accounting; high-detail ones cost more, see the upstream usage.
const PER_IMAGE: u64 = 85;

/// How a model's tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// OpenAI's `o200k_base` (GPT-4o, 4.1, 4.5, 5, o-series).
    O200k,
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5, text-embedding-3 / ada-002).
    Cl100k,
    /// About four characters per token (every non-OpenAI model).
    Approximation,
}

impl Tokenizer {
    /// Picks the tokenizer for a model name (`gpt-4o`, `openai/gpt-4.1-mini`, `claude-…`).
    /// Unknown names get the approximation.
    pub fn for_model(model: &str) -> Self {
        // A provider prefix (`openai/`, `azure/`) says nothing about the encoding.
        let name = model.rsplit('/').next().unwrap_or(model);
        let name = name.to_ascii_lowercase();
        let o200k = [
            "gpt-4o",
            "chatgpt-4o",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-5",
            "gpt-oss",
            "o1",
            "o3",
            "o4",
            "codex-",
            "computer-use",
        ];
        let cl100k = [
            "gpt-4",
            "gpt-3.5",
            "gpt-35",
            "text-embedding-3",
            "text-embedding-ada-002",
        ];
        if o200k.iter().any(|p| family(&name, p)) {
            Tokenizer::O200k
        } else if cl100k.iter().any(|p| family(&name, p)) {
            Tokenizer::Cl100k
        } else {
            Tokenizer::Approximation
        }
    }

    /// Name for `/utils/token_counter` (LiteLLM's `tokenizer_type` values).
    pub fn kind(self) -> &'static str {
        match self {
            Tokenizer::O200k | Tokenizer::Cl100k => "openai_tokenizer",
            Tokenizer::Approximation => "approximation",
        }
    }

    /// The encoding's name (`o200k_base`, `cl100k_base`, `chars/4`).
    pub fn encoding(self) -> &'static str {
        match self {
            Tokenizer::O200k => "o200k_base",
            Tokenizer::Cl100k => "cl100k_base",
            Tokenizer::Approximation => "chars/4",
        }
    }

    /// Tokens in a piece of text.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let bpe = match self {
            Tokenizer::O200k => o200k(),
            Tokenizer::Cl100k => cl100k(),
            Tokenizer::Approximation => None,
        };
        match bpe {
            Some(b) => b.encode_ordinary(text).len() as u64,
            None => text_tokens(text),
        }
    }
}

/// Whether `name` is `prefix` itself or one of its variants (`o1` matches `o1-mini`, not `o10x`;
/// `gpt-4` does not match `gpt-4o`, which the o200k list claims first anyway).
fn family(name: &str, prefix: &str) -> bool {
    match name.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('-') || rest.is_empty() || rest.starts_with(['-', '.', ':', '_'])
        }
        None => false,
    }
}

fn o200k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| load("o200k_base", tiktoken_rs::o200k_base))
        .as_ref()
}

fn cl100k() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| load("cl100k_base", tiktoken_rs::cl100k_base))
        .as_ref()
}

/// Builds a BPE from its embedded ranks; on failure (a broken build) the approximation is used.
fn load(name: &str, f: fn() -> anyhow::Result<CoreBPE>) -> Option<CoreBPE> {
    match f() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(encoding = name, error = %e, "cannot load tokenizer; using the chars/4 approximation");
            None
        }
    }
}

/// Loads both OpenAI encodings now, so the first request does not pay for it.
pub fn warm_up() {
    let _ = (o200k(), cl100k());
}

/// Tokens in a piece of text, about four characters each (never 0 for non-empty text).
pub fn text_tokens(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        (text.chars().count() as u64).div_ceil(4)
    }
}

/// Estimated prompt tokens of a chat request, with the tokenizer its `model` name implies
/// (a group named like an OpenAI model is counted with that model's BPE).
pub fn prompt_tokens(req: &ChatRequest) -> u64 {
    prompt_tokens_with(req, Tokenizer::for_model(&req.model))
}

/// Estimated prompt tokens of a chat request for the model a deployment runs.
pub fn prompt_tokens_for(req: &ChatRequest, model: &str) -> u64 {
    prompt_tokens_with(req, Tokenizer::for_model(model))
}

/// Estimated prompt tokens of a chat request: messages, tool calls and tool definitions.
pub fn prompt_tokens_with(req: &ChatRequest, tok: Tokenizer) -> u64 {
    let mut total = REPLY_PRIMING;
    for m in &req.messages {
        total += PER_MESSAGE;
        match &m.content {
            Some(Content::Text(s)) => total += tok.count(s),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p.get("type").and_then(Value::as_str) {
                        Some("image_url") | Some("input_image") | Some("image") => {
                            total += PER_IMAGE
                        }
                        _ => {
                            total += tok.count(p.get("text").and_then(Value::as_str).unwrap_or(""))
                        }
                    }
                }
            }
            None => {}
        }
        if let Some(calls) = m.extra.get("tool_calls") {
            total += tok.count(&calls.to_string());
        }
    }
    if let Some(tools) = req.extra.get("tools") {
        total += tok.count(&tools.to_string());
    }
    total
}

/// Estimated tokens of embeddings inputs (token arrays count one token per element).
pub fn input_tokens(input: &Value, model: &str) -> u64 {
    let tok = Tokenizer::for_model(model);
    match input {
        Value::String(s) => tok.count(s),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => tok.count(s),
                Value::Number(_) => 1,
                Value::Array(ids) => ids.len() as u64,
                other => tok.count(&other.to_string()),
            })
            .sum(),
        other => tok.count(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request(model: &str) -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        }))
        .unwrap()
    }

    #[test]
    fn counts_text_images_and_tools() {
        let n = prompt_tokens(&request("m"));
        // 3 + (4 + 2) + (4 + 6 + 85) + tools
        assert!(n > 104 && n < 140, "{n}");
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcde"), 2);
    }

    #[test]
    fn picks_the_encoding_by_model_family() {
        use Tokenizer::*;
        for (m, t) in [
            ("gpt-4o", O200k),
            ("gpt-4o-mini-2024-07-18", O200k),
            ("openai/gpt-4.1-mini", O200k),
            ("azure/gpt-5", O200k),
            ("o1-mini", O200k),
            ("o3", O200k),
            ("o4-mini", O200k),
            ("gpt-4", Cl100k),
            ("gpt-4-turbo", Cl100k),
            ("gpt-3.5-turbo", Cl100k),
            ("text-embedding-3-small", Cl100k),
            ("claude-sonnet-4-5", Approximation),
            ("gemini-2.5-flash", Approximation),
            ("o10x", Approximation),
            ("mock", Approximation),
        ] {
            assert_eq!(Tokenizer::for_model(m), t, "{m}");
        }
    }

    #[test]
    fn openai_counts_match_tiktoken() {
        // "hello world" is 2 tokens in both encodings.
        assert_eq!(Tokenizer::O200k.count("hello world"), 2);
        assert_eq!(Tokenizer::Cl100k.count("hello world"), 2);
        assert_eq!(Tokenizer::Approximation.count("hello world"), 3);
        // English runs about 4.5 characters a token in o200k; the approximation assumes 4.
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
        let bpe = Tokenizer::O200k.count(text.trim_end());
        assert_eq!(bpe, 400, "10 tokens per sentence");
        assert_eq!(Tokenizer::Approximation.count(text.trim_end()), 450);
        assert_eq!(
            prompt_tokens(&request("gpt-4o")) - prompt_tokens_for(&request("x"), "gpt-4o"),
            0
        );
    }

    #[test]
    fn embeddings_inputs() {
        let v = serde_json::json!(["hello world", [1, 2, 3], 7]);
        assert_eq!(input_tokens(&v, "text-embedding-3-small"), 2 + 3 + 1);
        assert_eq!(input_tokens(&serde_json::json!("abcdefgh"), "mock"), 2);
    }
}
