//! Gemini's own JSON types (`generateContent`, `batchEmbedContents`, error bodies).
//!
//! Only what the translation reads or writes is typed; unknown response fields are ignored
//! and request fields the translation does not set are left out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST models/{model}:generateContent` body (also `:streamGenerateContent`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest {
    /// The conversation, system messages excluded.
    pub contents: Vec<Content>,
    /// System and developer messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    /// `[{functionDeclarations: [...]}]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    /// `{functionCallingConfig: {mode, allowedFunctionNames}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<Value>,
    /// Sampling and output settings.
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub generation_config: GenerationConfig,
    /// Passed through from the client's `safety_settings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_settings: Option<Value>,
}

/// One turn (`role` is `user` or `model`; absent in `systemInstruction`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// `user` or `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The turn's parts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a turn; exactly one data field is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Inline bytes (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<InlineData>,
    /// A file by URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<FileData>,
    /// A call the model wants made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// The result of a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// This text is the model's thinking, not its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
    /// Opaque signature of the model's thinking, to be sent back with a function call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thought_signature: Option<String>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }
}

/// `inlineData`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InlineData {
    /// IANA media type.
    pub mime_type: String,
    /// Base64 bytes.
    pub data: String,
}

/// `fileData`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    /// IANA media type.
    pub mime_type: String,
    /// Where the file is.
    pub file_uri: String,
}

/// `functionCall`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments object.
    #[serde(default)]
    pub args: Value,
}

/// `functionResponse`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionResponse {
    /// Function name.
    pub name: String,
    /// Result object.
    pub response: Value,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// The functions the model may call.
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// One declared function.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionDeclaration {
    /// Name.
    pub name: String,
    /// What it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Parameter schema (Gemini's OpenAPI subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `generationConfig`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Stop sequences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Number of candidates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<u64>,
    /// `application/json` for JSON mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<String>,
    /// Output schema (Gemini's OpenAPI subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    /// Sampling seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Frequency penalty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
}

impl GenerationConfig {
    /// Whether nothing is set (the field is then left out).
    pub fn is_empty(&self) -> bool {
        *self == GenerationConfig::default()
    }
}

/// A `generateContent` answer, or one frame of a stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// The answers.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Why the prompt was blocked, if it was.
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    /// Token counts.
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    /// The model that answered.
    #[serde(default)]
    pub model_version: Option<String>,
    /// Gemini's id for the answer.
    #[serde(default)]
    pub response_id: Option<String>,
}

/// One candidate answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// What the model said (absent when blocked).
    #[serde(default)]
    pub content: Option<Content>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, ...
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Candidate number (absent for the first in some answers).
    #[serde(default)]
    pub index: Option<u64>,
}

/// `promptFeedback`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `SAFETY`, `OTHER`, `BLOCKLIST`, `PROHIBITED_CONTENT`, ...
    #[serde(default)]
    pub block_reason: Option<String>,
}

/// `usageMetadata`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_token_count: u64,
    /// Answer tokens, thinking excluded.
    #[serde(default)]
    pub candidates_token_count: u64,
    /// Thinking tokens.
    #[serde(default)]
    pub thoughts_token_count: u64,
    /// Prompt tokens served from Gemini's context cache.
    #[serde(default)]
    pub cached_content_token_count: u64,
    /// Everything.
    #[serde(default)]
    pub total_token_count: u64,
}

/// `POST models/{model}:batchEmbedContents` body.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchEmbedRequest {
    /// One request per input.
    pub requests: Vec<EmbedRequest>,
}

/// One embedding request.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbedRequest {
    /// `models/{model}`.
    pub model: String,
    /// The text.
    pub content: Content,
    /// Truncate to this many dimensions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_dimensionality: Option<u64>,
}

/// `batchEmbedContents` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchEmbedResponse {
    /// One embedding per request, in order.
    #[serde(default)]
    pub embeddings: Vec<Embedding>,
}

/// One embedding.
#[derive(Debug, Clone, Deserialize)]
pub struct Embedding {
    /// The vector.
    #[serde(default)]
    pub values: Vec<f64>,
}

/// `{"error": {...}}`, Google's standard error body.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// `google.rpc.Status` as JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    /// HTTP status number.
    #[serde(default)]
    pub code: Option<u16>,
    /// What went wrong.
    #[serde(default)]
    pub message: Option<String>,
    /// Canonical code name (`RESOURCE_EXHAUSTED`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// Typed details (`google.rpc.RetryInfo`, `google.rpc.ErrorInfo`, ...).
    #[serde(default)]
    pub details: Vec<Map<String, Value>>,
}
