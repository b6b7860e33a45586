//! OpenAI-shaped wire types: the one canonical request/response format inside Sluice.
//!
//! Only the fields Sluice acts on are typed; everything else is kept in `extra` and sent on
//! unchanged, so vendor extensions and new OpenAI fields pass through.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A parse failure with the JSON path of the bad field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path such as `messages[0].role`, empty for the document itself.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

/// Parses a JSON body, reporting the path of the first bad field.
pub fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FieldError> {
    // The fast path; the path-tracking parse runs again only to explain a failure.
    if let Ok(v) = serde_json::from_slice(body) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut param = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || param == "?" {
            param = ".".to_string();
        }
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("request body is not valid JSON: {inner}")
        } else if param == "." {
            format!("invalid request body: {inner}")
        } else {
            format!("invalid value for '{param}': {inner}")
        };
        FieldError {
            param: if param == "." { String::new() } else { param },
            message,
        }
    })?;
    de.end().map_err(|e| FieldError {
        param: String::new(),
        message: format!("request body is not valid JSON: {e}"),
    })?;
    Ok(value)
}

/// `POST /v1/chat/completions` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model group name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Stream as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// LiteLLM's per-request cache controls; never sent upstream.
    #[serde(default, skip_serializing)]
    pub cache: Option<Value>,
    /// Every other field, passed through unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// Whether the caller asked for SSE.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the caller asked for a final usage chunk.
    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// Checks what serde cannot: values that parse but make no request.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.model.is_empty() {
            return Err(FieldError {
                param: "model".into(),
                message: "'model' must not be empty".into(),
            });
        }
        if self.messages.is_empty() {
            return Err(FieldError {
                param: "messages".into(),
                message: "'messages' must contain at least one message".into(),
            });
        }
        if self.stream_options.is_some() && !self.is_stream() {
            return Err(FieldError {
                param: "stream_options".into(),
                message: "'stream_options' is only allowed when 'stream' is true".into(),
            });
        }
        Ok(())
    }

    /// Text of the last user message (parts joined), if any.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .and_then(|m| m.content.as_ref())
            .map(Content::text)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Other options, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Text or parts; absent for some assistant tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// `name`, `tool_calls`, `tool_call_id`, ... passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message author.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// Message content: a string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": ...}, {"type": "image_url", ...}]`.
    Parts(Vec<Value>),
}

impl Content {
    /// The text of the content; text parts joined by newlines, other parts skipped.
    pub fn text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Content::Text(s)),
            Value::Array(parts) => {
                for p in &parts {
                    if !p.get("type").is_some_and(Value::is_string) {
                        return Err(D::Error::custom(
                            "each content part must be an object with a string 'type'",
                        ));
                    }
                }
                Ok(Content::Parts(parts))
            }
            other => Err(D::Error::custom(format!(
                "expected a string or an array of content parts, got {}",
                kind_of(&other)
            ))),
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Sum of both.
    #[serde(default)]
    pub total_tokens: u64,
}

/// Just the usage of a response body, parsed without building the rest.
#[derive(Debug, Default, Deserialize)]
pub struct UsageOnly {
    /// Usage, when the body has it.
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// `POST /v1/embeddings` request: only the model is read, the rest passes through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// Model group name.
    pub model: String,
    /// String, list of strings, or token arrays.
    pub input: Value,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EmbeddingsRequest {
    /// Rejects input that no provider accepts.
    pub fn validate(&self) -> Result<(), FieldError> {
        let ok = match &self.input {
            Value::String(_) => true,
            Value::Array(items) => !items.is_empty(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(FieldError {
                param: "input".into(),
                message: "'input' must be a string or a non-empty array".into(),
            })
        }
    }

    /// The inputs as strings (token arrays are rendered as their JSON).
    pub fn inputs(&self) -> Vec<String> {
        match &self.input {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn unknown_fields_pass_through() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"x"}],"tools":[{"type":"function"}],"seed":7,"cache":{"no-cache":true}}"#;
        let req: ChatRequest = parse_json(body).unwrap();
        let out = serde_json::to_value(&req).unwrap();
        assert_eq!(out["seed"], 7);
        assert_eq!(out["tools"][0]["type"], "function");
        assert_eq!(out["messages"][0]["name"], "x");
        assert!(out.get("cache").is_none());
        assert_eq!(req.last_user_text().as_deref(), Some("hi"));
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse_json::<ChatRequest>(
            br#"{"model":"m","messages":[{"role":"boss","content":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param, "messages[0].role");
        let e =
            parse_json::<ChatRequest>(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
                .unwrap_err();
        assert_eq!(e.param, "messages[0].content");
        assert!(e.message.contains("a number"), "{}", e.message);
        let e = parse_json::<ChatRequest>(br#"{"model":"m"}"#).unwrap_err();
        assert!(
            e.message.contains("missing field `messages`"),
            "{}",
            e.message
        );
        let e = parse_json::<ChatRequest>(br#"{"model": 3, "messages": []}"#).unwrap_err();
        assert_eq!(e.param, "model");
        let e = parse_json::<ChatRequest>(b"{not json").unwrap_err();
        assert!(
            e.message.starts_with("request body is not valid JSON"),
            "{}",
            e.message
        );
        let e = parse_json::<ChatRequest>(br#"{"model":"m","messages":[]} x"#).unwrap_err();
        assert!(
            e.message.starts_with("request body is not valid JSON"),
            "{}",
            e.message
        );
    }

    #[test]
    fn validation() {
        let req: ChatRequest = parse_json(br#"{"model":"m","messages":[]}"#).unwrap();
        assert_eq!(req.validate().unwrap_err().param, "messages");
        let req: ChatRequest = parse_json(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(req.validate().unwrap_err().param, "stream_options");
    }
}
