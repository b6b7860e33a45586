//! Token estimates made before a request goes upstream (routing by context window and cost).
//!
//! Owns the approximation only; real counts always come from the upstream's `usage`.
//! The estimate is deliberately simple and slightly high: about four characters per token for
//! text, plus OpenAI's per-message framing (4 tokens) and a fixed charge per image part.

use crate::wire::{ChatRequest, Content};
use serde_json::Value;

/// Framing tokens OpenAI counts per message.
const PER_MESSAGE: u64 = 4;
/// A low-detail image in OpenAI's accounting; high-detail ones cost more, see the upstream usage.
const PER_IMAGE: u64 = 85;

/// Tokens in a piece of text, about four characters each (never 0 for non-empty text).
pub fn text_tokens(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        (text.chars().count() as u64).div_ceil(4)
    }
}

/// Estimated prompt tokens of a chat request: messages, tool calls and tool definitions.
pub fn prompt_tokens(req: &ChatRequest) -> u64 {
    let mut total = 3; // every reply is primed with <|start|>assistant<|message|>
    for m in &req.messages {
        total += PER_MESSAGE;
        match &m.content {
            Some(Content::Text(s)) => total += text_tokens(s),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p.get("type").and_then(Value::as_str) {
                        Some("image_url") | Some("input_image") | Some("image") => {
                            total += PER_IMAGE
                        }
                        _ => {
                            total +=
                                text_tokens(p.get("text").and_then(Value::as_str).unwrap_or(""))
                        }
                    }
                }
            }
            None => {}
        }
        if let Some(calls) = m.extra.get("tool_calls") {
            total += text_tokens(&calls.to_string());
        }
    }
    if let Some(tools) = req.extra.get("tools") {
        total += text_tokens(&tools.to_string());
    }
    total
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_text_images_and_tools() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]
        }))
        .unwrap();
        let n = prompt_tokens(&req);
        // 3 + (4 + 2) + (4 + 6 + 85) + tools
        assert!(n > 104 && n < 140, "{n}");
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcde"), 2);
    }
}
