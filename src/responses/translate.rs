//! Pure conversions between the Responses API and Chat Completions.
//!
//! - [`normalize_input`]: `input` (a string or a list of items) as stored items, each with an
//!   `id` and a `type`, checked with the bad field named (`input[2].type`).
//! - [`to_chat`]: a Responses request plus its resolved items as a [`ChatRequest`]
//!   (`instructions` -> system message, items -> messages, flat tools -> nested tools,
//!   `text.format` -> `response_format`, `max_output_tokens` -> `max_completion_tokens`).
//! - [`shell`], [`message_item`], [`function_call_item`], [`finish`]: the Response object and
//!   its output items, shared by the JSON path ([`to_response`]) and the event stream, so both
//!   produce the same object.
//!
//! No I/O and no clocks except where a caller passes the time in.

use crate::wire::{ChatRequest, Content, FieldError, Message, Role, StreamOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// `POST /v1/responses` body. Typed fields are the ones Sluice acts on; every other field is
/// kept in `extra` (forwarded to native upstreams, ignored by the translation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponsesRequest {
    /// Model group name.
    pub model: String,
    /// A string, or a list of input items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// System (developer) message for this response only; not carried over a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<Value>,
    /// Tools (function tools are translated; hosted tools only reach native upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `auto`, `none`, `required`, or a specific tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// `{"format": {...}, "verbosity": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Key-value pairs kept with the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Keep the response for `previous_response_id` and `GET` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// Continue the conversation of a stored response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Allow several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Stream as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `{"effort": ..., "summary": ...}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    /// LiteLLM's per-request cache controls; never sent upstream.
    #[serde(default, skip_serializing)]
    pub cache: Option<Value>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ResponsesRequest {
    /// Whether the caller asked for SSE.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the response is to be stored (the API's default is true).
    pub fn stores(&self) -> bool {
        self.store.unwrap_or(true)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.model.is_empty() {
            return Err(bad("model", "'model' must not be empty"));
        }
        if self.input.is_none() && self.previous_response_id.is_none() {
            return Err(bad("input", "'input' is required"));
        }
        if let Some(i) = &self.instructions {
            if !i.is_string() && !i.is_null() {
                return Err(bad("instructions", "'instructions' must be a string"));
            }
        }
        if let Some(id) = &self.previous_response_id {
            if id.is_empty() {
                return Err(bad(
                    "previous_response_id",
                    "'previous_response_id' must not be empty",
                ));
            }
        }
        Ok(())
    }
}

fn bad(param: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        param: param.to_string(),
        message: message.into(),
    }
}

/// An error on `param`, with the path repeated in the message (`input[2].type: ...`).
fn bad_at(param: &str, what: impl std::fmt::Display) -> FieldError {
    bad(param, format!("{param}: {what}"))
}

/// A fresh id with OpenAI's prefix style: `resp_…`, `msg_…`, `fc_…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The id of output item `index` of response `resp_id`: derived, so the event stream and the
/// final object (built separately) agree without sharing state.
pub fn output_item_id(resp_id: &str, prefix: &str, index: usize) -> String {
    let tail = resp_id.strip_prefix("resp_").unwrap_or(resp_id);
    format!("{prefix}_{tail}{index:02x}")
}

// ---------------------------------------------------------------------------------------------
// Input items
// ---------------------------------------------------------------------------------------------

/// Item types of the Responses API that only hosted tools produce: accepted by native
/// upstreams, refused by the translation with a message that says so.
const HOSTED_ITEM_TYPES: &[&str] = &[
    "item_reference",
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "tool_search_call",
    "tool_search_output",
    "compaction",
];

fn str_field<'a>(item: &'a Map<String, Value>, at: &str, key: &str) -> Result<&'a str, FieldError> {
    match item.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(bad_at(&format!("{at}.{key}"), "required")),
        Some(_) => Err(bad_at(&format!("{at}.{key}"), "must be a string")),
    }
}

/// One content part of an input message, checked.
fn check_part(part: &Value, at: &str) -> Result<(), FieldError> {
    let Some(p) = part.as_object() else {
        return Err(bad_at(at, "each content part must be an object"));
    };
    let kind = match p.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(bad_at(&format!("{at}.type"), "required")),
    };
    match kind {
        "input_text" | "output_text" => {
            str_field(p, at, "text")?;
        }
        "refusal" => {
            str_field(p, at, "refusal")?;
        }
        "input_image" => {
            if !p.get("image_url").is_some_and(Value::is_string)
                && !p.get("file_id").is_some_and(Value::is_string)
            {
                return Err(bad_at(
                    &format!("{at}.image_url"),
                    "an input_image needs 'image_url' or 'file_id'",
                ));
            }
        }
        "input_file" | "input_audio" => {}
        other => {
            return Err(bad_at(
                &format!("{at}.type"),
                format!("unknown content part type \"{other}\""),
            ))
        }
    }
    Ok(())
}

/// A message item as stored: `content` always a list of parts.
fn normalize_message(
    mut item: Map<String, Value>,
    at: &str,
    id_prefix: &str,
) -> Result<Value, FieldError> {
    let role = match item.get("role") {
        Some(Value::String(r)) => r.clone(),
        None | Some(Value::Null) => return Err(bad_at(&format!("{at}.role"), "required")),
        Some(_) => return Err(bad_at(&format!("{at}.role"), "must be a string")),
    };
    if !matches!(role.as_str(), "user" | "assistant" | "system" | "developer") {
        return Err(bad_at(
            &format!("{at}.role"),
            format!("unknown role \"{role}\" (expected user, assistant, system or developer)"),
        ));
    }
    let parts = match item.remove("content") {
        Some(Value::String(s)) if role == "assistant" => {
            vec![json!({"type": "output_text", "text": s, "annotations": []})]
        }
        Some(Value::String(s)) => vec![json!({"type": "input_text", "text": s})],
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                check_part(p, &format!("{at}.content[{j}]"))?;
            }
            parts
        }
        None | Some(Value::Null) => return Err(bad_at(&format!("{at}.content"), "required")),
        Some(_) => {
            return Err(bad_at(
                &format!("{at}.content"),
                "must be a string or a list of content parts",
            ))
        }
    };
    let id = match item.remove("id") {
        Some(Value::String(id)) => id,
        _ => new_id(id_prefix),
    };
    let status = item
        .remove("status")
        .filter(Value::is_string)
        .unwrap_or_else(|| json!("completed"));
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    out.insert("type".into(), json!("message"));
    out.insert("role".into(), json!(role));
    out.insert("content".into(), Value::Array(parts));
    out.insert("status".into(), status);
    // `phase` and other extensions stay with the item.
    for (k, v) in item {
        if k != "type" {
            out.entry(k).or_insert(v);
        }
    }
    Ok(Value::Object(out))
}

/// `input` as stored items: a string becomes one user message; every item gets an `id` and an
/// explicit `type`; message content becomes a list of parts. Bad items are named by path.
pub fn normalize_input(input: Option<&Value>) -> Result<Vec<Value>, FieldError> {
    let items = match input {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            return Ok(vec![json!({
                "id": new_id("msg"),
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": s}],
                "status": "completed",
            })])
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(bad(
                "input",
                "'input' must be a string or a list of input items",
            ))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(bad_at(&at, "each input item must be an object"));
        };
        let kind = match obj.get("type") {
            None | Some(Value::Null) => "message",
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(bad_at(&format!("{at}.type"), "must be a string")),
        };
        let mut obj = obj.clone();
        let normalized = match kind {
            "message" => normalize_message(obj, &at, "msg")?,
            "function_call" => {
                str_field(&obj, &at, "call_id")?;
                str_field(&obj, &at, "name")?;
                str_field(&obj, &at, "arguments")?;
                if !obj.get("id").is_some_and(Value::is_string) {
                    obj.insert("id".into(), json!(new_id("fc")));
                }
                obj.entry("status").or_insert(json!("completed"));
                Value::Object(obj)
            }
            "function_call_output" => {
                str_field(&obj, &at, "call_id")?;
                match obj.get("output") {
                    Some(Value::String(_)) => {}
                    Some(Value::Array(parts)) => {
                        for (j, p) in parts.iter().enumerate() {
                            check_part(p, &format!("{at}.output[{j}]"))?;
                        }
                    }
                    None | Some(Value::Null) => {
                        return Err(bad_at(&format!("{at}.output"), "required"))
                    }
                    Some(_) => {
                        return Err(bad_at(
                            &format!("{at}.output"),
                            "must be a string or a list of content parts",
                        ))
                    }
                }
                if !obj.get("id").is_some_and(Value::is_string) {
                    obj.insert("id".into(), json!(new_id("fco")));
                }
                obj.entry("status").or_insert(json!("completed"));
                Value::Object(obj)
            }
            "reasoning" => {
                if !obj.get("id").is_some_and(Value::is_string) {
                    obj.insert("id".into(), json!(new_id("rs")));
                }
                Value::Object(obj)
            }
            other if HOSTED_ITEM_TYPES.contains(&other) => {
                // Kept for native upstreams; `to_chat` refuses them.
                Value::Object(obj)
            }
            other => {
                return Err(bad_at(
                    &format!("{at}.type"),
                    format!("unknown item type \"{other}\""),
                ))
            }
        };
        out.push(normalized);
    }
    Ok(out)
}

/// The items a stored response contributes to a continuation: what it was given, then what it
/// answered (its `output`).
pub fn continuation(input_items: &[Value], response: &Value) -> Vec<Value> {
    let mut items = input_items.to_vec();
    if let Some(output) = response.get("output").and_then(Value::as_array) {
        items.extend(output.iter().cloned());
    }
    items
}

// ---------------------------------------------------------------------------------------------
// Request -> chat
// ---------------------------------------------------------------------------------------------

/// The text of content parts (`input_text`, `output_text`), concatenated.
fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter(|p| {
            matches!(
                p.get("type").and_then(Value::as_str),
                Some("input_text" | "output_text" | "text")
            )
        })
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

/// One input part as a chat content part.
fn chat_part(part: &Value, at: &str) -> Result<Value, FieldError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    let text = |key: &str| part.get(key).and_then(Value::as_str).unwrap_or_default();
    Ok(match kind {
        "input_text" | "output_text" => json!({"type": "text", "text": text("text")}),
        "refusal" => json!({"type": "text", "text": text("refusal")}),
        "input_image" => {
            let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                return Err(bad_at(
                    &format!("{at}.file_id"),
                    "images by file_id are not supported by this model's deployments; send image_url",
                ));
            };
            let mut image = Map::new();
            image.insert("url".into(), json!(url));
            if let Some(d) = part.get("detail").filter(|d| d.is_string()) {
                image.insert("detail".into(), d.clone());
            }
            json!({"type": "image_url", "image_url": image})
        }
        "input_file" => {
            let mut file = Map::new();
            for k in ["file_id", "file_data", "filename"] {
                if let Some(v) = part.get(k).filter(|v| v.is_string()) {
                    file.insert(k.into(), v.clone());
                }
            }
            json!({"type": "file", "file": file})
        }
        "input_audio" => {
            json!({"type": "input_audio", "input_audio": part.get("input_audio").cloned().unwrap_or(Value::Null)})
        }
        other => {
            return Err(bad_at(
                &format!("{at}.type"),
                format!("unknown content part type \"{other}\""),
            ))
        }
    })
}

/// User/system/developer content: a string when it is one text part, else chat parts.
fn chat_content(parts: &[Value], at: &str) -> Result<Content, FieldError> {
    if let [one] = parts {
        if matches!(
            one.get("type").and_then(Value::as_str),
            Some("input_text" | "output_text")
        ) {
            return Ok(Content::Text(parts_text(parts)));
        }
    }
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        out.push(chat_part(p, &format!("{at}.content[{j}]"))?);
    }
    Ok(Content::Parts(out))
}

fn role_of(role: &str) -> Role {
    match role {
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "developer" => Role::Developer,
        _ => Role::User,
    }
}

/// Appends a tool call to the assistant message of the same turn, or starts one.
fn push_tool_call(messages: &mut Vec<Message>, call: Value) {
    if let Some(last) = messages.last_mut().filter(|m| m.role == Role::Assistant) {
        if let Some(Value::Array(calls)) = last.extra.get_mut("tool_calls") {
            calls.push(call);
            return;
        }
        last.extra.insert("tool_calls".into(), json!([call]));
        return;
    }
    let mut extra = Map::new();
    extra.insert("tool_calls".into(), json!([call]));
    messages.push(Message {
        role: Role::Assistant,
        content: None,
        extra,
    });
}

/// Resolved items (chain + new input) as chat messages.
pub fn items_to_messages(items: &[Value]) -> Result<Vec<Message>, FieldError> {
    let mut messages: Vec<Message> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let empty = Vec::new();
                let parts = item
                    .get("content")
                    .and_then(Value::as_array)
                    .unwrap_or(&empty);
                if role == "assistant" {
                    let text = parts_text(parts);
                    let refusal: String = parts
                        .iter()
                        .filter_map(|p| p.get("refusal").and_then(Value::as_str))
                        .collect();
                    let mut extra = Map::new();
                    if !refusal.is_empty() {
                        extra.insert("refusal".into(), json!(refusal));
                    }
                    messages.push(Message {
                        role: Role::Assistant,
                        content: (!text.is_empty()).then_some(Content::Text(text)),
                        extra,
                    });
                } else {
                    messages.push(Message {
                        role: role_of(role),
                        content: Some(chat_content(parts, &at)?),
                        extra: Map::new(),
                    });
                }
            }
            "function_call" => {
                let field = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
                push_tool_call(
                    &mut messages,
                    json!({
                        "id": field("call_id"),
                        "type": "function",
                        "function": {"name": field("name"), "arguments": field("arguments")}
                    }),
                );
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts_text(parts),
                    _ => String::new(),
                };
                let mut extra = Map::new();
                extra.insert(
                    "tool_call_id".into(),
                    item.get("call_id").cloned().unwrap_or(Value::Null),
                );
                messages.push(Message {
                    role: Role::Tool,
                    content: Some(Content::Text(output)),
                    extra,
                });
            }
            // Reasoning is the upstream's own state; a chat upstream cannot take it back.
            "reasoning" => {}
            other => {
                return Err(bad_at(
                    &format!("{at}.type"),
                    format!(
                        "item type \"{other}\" needs a deployment that serves the Responses API natively"
                    ),
                ))
            }
        }
    }
    Ok(messages)
}

/// Flat Responses function tools as nested chat tools.
pub fn tools_to_chat(tools: &[Value]) -> Result<Vec<Value>, FieldError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        let Some(obj) = t.as_object() else {
            return Err(bad_at(&at, "each tool must be an object"));
        };
        match obj.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(bad_at(
                    &format!("{at}.type"),
                    format!("tool type \"{other}\" needs a deployment that serves the Responses API natively; only function tools are translated"),
                ))
            }
            None => return Err(bad_at(&format!("{at}.type"), "required")),
        }
        let name = str_field(obj, &at, "name")?;
        let mut function = Map::new();
        function.insert("name".into(), json!(name));
        for k in ["description", "parameters", "strict"] {
            if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
                function.insert(k.into(), v.clone());
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// `tool_choice` in chat's shape.
pub fn tool_choice_to_chat(choice: &Value) -> Result<Value, FieldError> {
    const AT: &str = "tool_choice";
    match choice {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(choice.clone()),
        Value::String(s) => Err(bad_at(AT, format!("unknown value \"{s}\""))),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = str_field(o, AT, "name")?;
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            Some("allowed_tools") => {
                let mode = o.get("mode").cloned().unwrap_or_else(|| json!("auto"));
                let empty = Vec::new();
                let tools = o.get("tools").and_then(Value::as_array).unwrap_or(&empty);
                let mut nested = Vec::with_capacity(tools.len());
                for (i, t) in tools.iter().enumerate() {
                    let at = format!("{AT}.tools[{i}]");
                    let obj = t
                        .as_object()
                        .ok_or_else(|| bad_at(&at, "must be an object"))?;
                    let name = str_field(obj, &at, "name")?;
                    nested.push(json!({"type": "function", "function": {"name": name}}));
                }
                Ok(json!({"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": nested}}))
            }
            Some(other) => Err(bad_at(
                &format!("{AT}.type"),
                format!("tool choice \"{other}\" needs a deployment that serves the Responses API natively"),
            )),
            None => Err(bad_at(&format!("{AT}.type"), "required")),
        },
        _ => Err(bad_at(AT, "must be a string or an object")),
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
pub fn format_to_chat(text: &Value) -> Result<Option<Value>, FieldError> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    let Some(obj) = format.as_object() else {
        return Err(bad_at("text.format", "must be an object"));
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let name = str_field(obj, "text.format", "name")?;
            let Some(schema) = obj.get("schema").filter(|s| s.is_object()) else {
                return Err(bad_at(
                    "text.format.schema",
                    "required (a JSON schema object)",
                ));
            };
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            if let Some(d) = obj.get("description").filter(|d| d.is_string()) {
                js.insert("description".into(), d.clone());
            }
            js.insert("schema".into(), schema.clone());
            if let Some(s) = obj.get("strict").filter(|s| s.is_boolean()) {
                js.insert("strict".into(), s.clone());
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": js})))
        }
        Some(other) => Err(bad_at(
            "text.format.type",
            format!("unknown format type \"{other}\" (expected text, json_object or json_schema)"),
        )),
        None => Err(bad_at("text.format.type", "required")),
    }
}

/// Fields of the Responses request that chat also has under the same name.
const SAME_NAME_FIELDS: &[&str] = &["service_tier", "prompt_cache_key", "safety_identifier"];

/// The chat request for a Responses request whose conversation is `items` (the resolved chain
/// followed by the new input).
pub fn to_chat(req: &ResponsesRequest, items: &[Value]) -> Result<ChatRequest, FieldError> {
    let mut messages = Vec::with_capacity(items.len() + 1);
    if let Some(Value::String(s)) = &req.instructions {
        messages.push(Message {
            role: Role::System,
            content: Some(Content::Text(s.clone())),
            extra: Map::new(),
        });
    }
    messages.extend(items_to_messages(items)?);
    if !messages
        .iter()
        .any(|m| !matches!(m.role, Role::System | Role::Developer))
    {
        return Err(bad("input", "'input' must contain at least one item"));
    }
    let mut extra = Map::new();
    let tools = match &req.tools {
        Some(t) if !t.is_empty() => tools_to_chat(t)?,
        _ => Vec::new(),
    };
    if !tools.is_empty() {
        extra.insert("tools".into(), Value::Array(tools));
        if let Some(p) = req.parallel_tool_calls {
            extra.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    if let Some(c) = req.tool_choice.as_ref().filter(|c| !c.is_null()) {
        extra.insert("tool_choice".into(), tool_choice_to_chat(c)?);
    }
    if let Some(text) = &req.text {
        if let Some(f) = format_to_chat(text)? {
            extra.insert("response_format".into(), f);
        }
        if let Some(v) = text.get("verbosity").filter(|v| v.is_string()) {
            extra.insert("verbosity".into(), v.clone());
        }
    }
    if let Some(n) = req.max_output_tokens {
        extra.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        extra.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        extra.insert("top_p".into(), json!(p));
    }
    if let Some(effort) = req
        .reasoning
        .as_ref()
        .and_then(|r| r.get("effort"))
        .filter(|e| e.is_string())
    {
        extra.insert("reasoning_effort".into(), effort.clone());
    }
    for k in SAME_NAME_FIELDS {
        if let Some(v) = req.extra.get(*k).filter(|v| !v.is_null()) {
            extra.insert((*k).into(), v.clone());
        }
    }
    let stream = req.is_stream();
    Ok(ChatRequest {
        model: req.model.clone(),
        messages,
        stream: stream.then_some(true),
        // The final `response.completed` carries usage, so streams always ask for it.
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        user: req.user.clone(),
        cache: req.cache.clone(),
        extra,
    })
}

// ---------------------------------------------------------------------------------------------
// Chat answer -> Response object
// ---------------------------------------------------------------------------------------------

/// Why a response stopped early, from chat's `finish_reason`.
pub fn incomplete_reason(finish_reason: Option<&str>) -> Option<&'static str> {
    match finish_reason {
        Some("length") => Some("max_output_tokens"),
        Some("content_filter") => Some("content_filter"),
        _ => None,
    }
}

/// Chat usage as Responses usage (`null` when the answer had none).
pub fn usage(chat: Option<&Value>) -> Value {
    let Some(u) = chat.filter(|u| u.is_object()) else {
        return Value::Null;
    };
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let input = n(u.get("prompt_tokens"));
    let output = n(u.get("completion_tokens"));
    let total = u
        .get("total_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(input + output);
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": n(u.pointer("/prompt_tokens_details/cached_tokens")),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": n(u.pointer("/completion_tokens_details/reasoning_tokens")),
        },
        "total_tokens": total,
    })
}

/// An `output_text` content part.
pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `refusal` content part.
pub fn refusal_part(refusal: &str) -> Value {
    json!({"type": "refusal", "refusal": refusal})
}

/// An assistant `message` output item.
pub fn message_item(id: &str, content: Vec<Value>, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "content": content, "role": "assistant"})
}

/// A `function_call` output item.
pub fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({"id": id, "type": "function_call", "status": status, "arguments": arguments, "call_id": call_id, "name": name})
}

/// The `call_id` of a tool call without one (some compatible servers omit it).
pub fn fallback_call_id(resp_id: &str, index: usize) -> String {
    output_item_id(resp_id, "call", index)
}

/// Item status for a response status.
pub fn item_status(incomplete: bool) -> &'static str {
    if incomplete {
        "incomplete"
    } else {
        "completed"
    }
}

/// The Response object before any output: every field of the real object, request settings
/// echoed, `status: in_progress`. [`finish`] fills in the outcome.
pub fn shell(req: &ResponsesRequest, id: &str, created_at: u64) -> Value {
    let extra = |k: &str, default: Value| {
        req.extra
            .get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let mut text = match &req.text {
        Some(Value::Object(t)) => t.clone(),
        _ => Map::new(),
    };
    if text.get("format").is_none_or(Value::is_null) {
        text.insert("format".into(), json!({"type": "text"}));
    }
    text.entry("verbosity").or_insert(json!("medium"));
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": false,
        "completed_at": null,
        "error": null,
        "incomplete_details": null,
        "instructions": req.instructions.clone().unwrap_or(Value::Null),
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": extra("max_tool_calls", Value::Null),
        "model": req.model,
        "output": [],
        "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": extra("prompt_cache_key", Value::Null),
        "reasoning": req.reasoning.clone().unwrap_or_else(|| json!({"effort": null, "summary": null})),
        "safety_identifier": extra("safety_identifier", Value::Null),
        "service_tier": extra("service_tier", json!("default")),
        "store": req.stores(),
        "temperature": req.temperature.unwrap_or(1.0),
        "text": text,
        "tool_choice": req.tool_choice.clone().filter(|c| !c.is_null()).unwrap_or_else(|| json!("auto")),
        "tools": req.tools.clone().unwrap_or_default(),
        "top_logprobs": extra("top_logprobs", json!(0)),
        "top_p": req.top_p.unwrap_or(1.0),
        "truncation": extra("truncation", json!("disabled")),
        "usage": null,
        "user": req.user,
        "metadata": req.metadata.clone().unwrap_or_default(),
    })
}

/// How a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `completed`, or `incomplete` with a reason.
    Finished {
        /// `max_output_tokens` / `content_filter`, when it stopped early.
        incomplete: Option<&'static str>,
    },
    /// `failed`, with the error's code and message.
    Failed {
        /// `server_error`, `rate_limit_exceeded`, ...
        code: String,
        /// What went wrong.
        message: String,
    },
}

/// The final Response object: the shell with output, status, usage and timestamps.
pub fn finish(
    mut shell: Value,
    output: Vec<Value>,
    outcome: &Outcome,
    usage: Value,
    now: u64,
) -> Value {
    if let Some(m) = shell.as_object_mut() {
        let (status, incomplete, error) = match outcome {
            Outcome::Finished { incomplete: None } => ("completed", Value::Null, Value::Null),
            Outcome::Finished {
                incomplete: Some(reason),
            } => ("incomplete", json!({"reason": reason}), Value::Null),
            Outcome::Failed { code, message } => (
                "failed",
                Value::Null,
                json!({"code": code, "message": message}),
            ),
        };
        m.insert("status".into(), json!(status));
        if status == "completed" {
            m.insert("completed_at".into(), json!(now));
        }
        m.insert("error".into(), error);
        m.insert("incomplete_details".into(), incomplete);
        m.insert("output".into(), Value::Array(output));
        m.insert("usage".into(), usage);
    }
    shell
}

/// A chat completion (JSON) as the Response object built on `shell`.
pub fn to_response(completion: &Value, shell: Value, now: u64) -> Value {
    let resp_id = shell
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let choice = completion.pointer("/choices/0");
    let message = choice.and_then(|c| c.get("message"));
    let finish_reason = choice
        .and_then(|c| c.get("finish_reason"))
        .and_then(Value::as_str);
    let incomplete = incomplete_reason(finish_reason);
    let status = item_status(incomplete.is_some());
    let text = message
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let refusal = message
        .and_then(|m| m.get("refusal"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let empty = Vec::new();
    let calls = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut output = Vec::new();
    if text.is_some() || refusal.is_some() || calls.is_empty() {
        let mut content = Vec::new();
        if text.is_some() || refusal.is_none() {
            content.push(output_text(text.unwrap_or_default()));
        }
        if let Some(r) = refusal {
            content.push(refusal_part(r));
        }
        let id = output_item_id(&resp_id, "msg", output.len());
        output.push(message_item(&id, content, status));
    }
    for call in calls {
        let index = output.len();
        let f = call.get("function");
        let field = |k: &str| {
            f.and_then(|f| f.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map_or_else(|| fallback_call_id(&resp_id, index), str::to_string);
        let id = output_item_id(&resp_id, "fc", index);
        output.push(function_call_item(
            &id,
            &call_id,
            field("name"),
            field("arguments"),
            status,
        ));
    }
    finish(
        shell,
        output,
        &Outcome::Finished { incomplete },
        usage(completion.get("usage")),
        now,
    )
}

/// A completed Response object (from a native upstream) as the chat completion the cache
/// stores, so that native and translated answers share one cache. `None` when the answer has
/// no chat form (hosted tool calls, an unfinished or failed response): such answers are not
/// cached. Reasoning items are dropped: they change nothing the client reads from a hit.
pub fn to_completion(response: &Value) -> Option<Value> {
    if response.get("status").and_then(Value::as_str) != Some("completed") {
        return None;
    }
    let mut text = String::new();
    let mut refusal = String::new();
    let mut calls = Vec::new();
    for item in response.get("output")?.as_array()? {
        match item.get("type").and_then(Value::as_str)? {
            "message" => {
                for part in item.get("content")?.as_array()? {
                    match part.get("type").and_then(Value::as_str)? {
                        "output_text" => text.push_str(part.get("text")?.as_str()?),
                        "refusal" => refusal.push_str(part.get("refusal")?.as_str()?),
                        _ => return None,
                    }
                }
            }
            "function_call" => {
                let field = |k: &str| item.get(k).and_then(Value::as_str);
                calls.push(json!({
                    "id": field("call_id")?,
                    "type": "function",
                    "function": {"name": field("name")?, "arguments": field("arguments")?},
                }));
            }
            "reasoning" => {}
            _ => return None,
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !refusal.is_empty() {
        message["refusal"] = json!(refusal);
    }
    let finish_reason = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let usage = chat_usage(response.get("usage"));
    Some(json!({
        "id": response.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": response.get("created_at").cloned().unwrap_or(json!(0)),
        "model": response.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
    }))
}

/// Token counts of a Responses usage object as chat usage (for cost and metrics).
pub fn chat_usage(responses_usage: Option<&Value>) -> crate::wire::Usage {
    let n = |k: &str| {
        responses_usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    crate::wire::Usage {
        prompt_tokens: n("input_tokens"),
        completion_tokens: n("output_tokens"),
        total_tokens: n("total_tokens"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_json;

    fn req(v: Value) -> ResponsesRequest {
        parse_json(v.to_string().as_bytes()).unwrap()
    }

    fn chat_of(v: Value) -> Value {
        let r = req(v);
        let items = normalize_input(r.input.as_ref()).unwrap();
        serde_json::to_value(to_chat(&r, &items).unwrap()).unwrap()
    }

    #[test]
    fn native_responses_become_completions_and_back() {
        let response = json!({
            "id": "resp_n", "object": "response", "created_at": 7, "status": "completed",
            "model": "gpt-4o",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                 "content": [{"type": "output_text", "text": "Hel", "annotations": []},
                             {"type": "output_text", "text": "lo", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "f",
                 "arguments": "{\"a\":1}", "status": "completed"}
            ],
            "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
        });
        let c = to_completion(&response).unwrap();
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(c["usage"]["total_tokens"], 8);
        // And back: what a cache hit on the native path sends.
        let again = to_response(&c, json!({"id": "resp_h"}), 9);
        assert_eq!(again["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(again["output"][1]["call_id"], "call_9");

        // No chat form, or not finished: not cached.
        let mut hosted = response.clone();
        hosted["output"] =
            json!([{"type": "web_search_call", "id": "ws_1", "status": "completed"}]);
        assert!(to_completion(&hosted).is_none());
        let mut partial = response;
        partial["status"] = json!("incomplete");
        assert!(to_completion(&partial).is_none());
    }

    #[test]
    fn string_input_and_instructions() {
        let chat = chat_of(json!({
            "model": "g", "input": "Hi there", "instructions": "Be brief.",
            "max_output_tokens": 50, "temperature": 0.2, "top_p": 0.9, "user": "u1",
            "metadata": {"a": "b"}, "store": true, "some_future_field": {"x": 1}
        }));
        assert_eq!(
            chat,
            json!({
                "model": "g",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi there"}
                ],
                "user": "u1",
                "max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.9
            })
        );
    }

    #[test]
    fn items_become_messages_with_tool_calls_merged() {
        let chat = chat_of(json!({
            "model": "g",
            "stream": true,
            "input": [
                {"role": "developer", "content": "dev note"},
                {"type": "message", "role": "user", "content": [
                    {"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}
                ]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
                {"type": "reasoning", "summary": []},
                {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
                {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "noon"}]},
                {"role": "user", "content": "thanks"}
            ]
        }));
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["stream_options"], json!({"include_usage": true}));
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0], json!({"role": "developer", "content": "dev note"}));
        assert_eq!(
            m[1]["content"],
            json!([
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
            ])
        );
        assert_eq!(
            m[2],
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]})
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "content": "18C", "tool_call_id": "call_1"})
        );
        assert_eq!(
            m[4],
            json!({"role": "tool", "content": "noon", "tool_call_id": "call_2"})
        );
        assert_eq!(m[5], json!({"role": "user", "content": "thanks"}));
    }

    #[test]
    fn a_function_call_without_a_preceding_message_starts_one() {
        let chat = chat_of(json!({"model": "g", "input": [
            {"role": "user", "content": "q"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "r"}
        ]}));
        assert_eq!(
            chat["messages"][1],
            json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
        );
    }

    #[test]
    fn tools_choice_and_format_are_translated() {
        let chat = chat_of(json!({
            "model": "g", "input": "q",
            "tools": [{"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": false,
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"},
            "reasoning": {"effort": "low"}
        }));
        assert_eq!(
            chat["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(
            chat["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        assert_eq!(chat["parallel_tool_calls"], false);
        assert_eq!(
            chat["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}})
        );
        assert_eq!(chat["verbosity"], "low");
        assert_eq!(chat["reasoning_effort"], "low");

        assert_eq!(
            format_to_chat(&json!({"format": {"type": "json_object"}})).unwrap(),
            Some(json!({"type": "json_object"}))
        );
        assert_eq!(
            format_to_chat(&json!({"format": {"type": "text"}})).unwrap(),
            None
        );
        assert_eq!(
            tool_choice_to_chat(&json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]})).unwrap(),
            json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "f"}}]}})
        );
        assert_eq!(tool_choice_to_chat(&json!("none")).unwrap(), json!("none"));
        // parallel_tool_calls without tools is not sent (chat refuses it).
        let chat = chat_of(json!({"model": "g", "input": "q", "parallel_tool_calls": true}));
        assert!(chat.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = normalize_input(Some(&json!([
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"type": "x"}
        ])))
        .unwrap_err();
        assert_eq!(e.param, "input[2].type");
        assert_eq!(e.message, "input[2].type: unknown item type \"x\"");
        let e = normalize_input(Some(&json!([{"role": "boss", "content": "a"}]))).unwrap_err();
        assert_eq!(e.param, "input[0].role");
        let e = normalize_input(Some(
            &json!([{"type": "function_call", "call_id": "c", "name": "f"}]),
        ))
        .unwrap_err();
        assert_eq!(e.param, "input[0].arguments");
        let e = normalize_input(Some(
            &json!([{"role": "user", "content": [{"type": "input_text"}]}]),
        ))
        .unwrap_err();
        assert_eq!(e.param, "input[0].content[0].text");
        let e = normalize_input(Some(&json!(5))).unwrap_err();
        assert_eq!(e.param, "input");
        let e = normalize_input(Some(
            &json!([{"type": "function_call_output", "call_id": "c", "output": 3}]),
        ))
        .unwrap_err();
        assert_eq!(e.param, "input[0].output");

        let r = req(json!({"model": "g", "input": "q", "tools": [{"type": "web_search"}]}));
        let items = normalize_input(r.input.as_ref()).unwrap();
        let e = to_chat(&r, &items).unwrap_err();
        assert_eq!(e.param, "tools[0].type");
        let r = req(
            json!({"model": "g", "input": "q", "text": {"format": {"type": "json_schema", "schema": {}}}}),
        );
        assert_eq!(to_chat(&r, &items).unwrap_err().param, "text.format.name");
        let r = req(json!({"model": "g", "input": [{"type": "web_search_call", "id": "ws_1"}]}));
        let items = normalize_input(r.input.as_ref()).unwrap();
        assert_eq!(to_chat(&r, &items).unwrap_err().param, "input[0].type");
        let r = req(json!({"model": "g", "input": [], "instructions": "x"}));
        assert_eq!(to_chat(&r, &[]).unwrap_err().param, "input");
        assert_eq!(
            req(json!({"model": "g"})).validate().unwrap_err().param,
            "input"
        );
        assert!(parse_json::<ResponsesRequest>(
            br#"{"model":"g","input":"q","max_output_tokens":"many"}"#
        )
        .unwrap_err()
        .param
        .contains("max_output_tokens"));
    }

    #[test]
    fn normalized_items_keep_ids_and_get_parts() {
        let items = normalize_input(Some(&json!([
            {"role": "assistant", "content": "before"},
            {"id": "msg_keep", "type": "message", "role": "user", "content": "q"},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
        ])))
        .unwrap();
        assert_eq!(
            items[0]["content"],
            json!([{"type": "output_text", "text": "before", "annotations": []}])
        );
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(items[1]["id"], "msg_keep");
        assert_eq!(items[1]["status"], "completed");
        assert!(items[2]["id"].as_str().unwrap().starts_with("fc_"));
        let one = normalize_input(Some(&json!("hello"))).unwrap();
        assert_eq!(one[0]["role"], "user");
        assert_eq!(
            one[0]["content"][0],
            json!({"type": "input_text", "text": "hello"})
        );
    }

    #[test]
    fn a_chain_feeds_previous_input_and_output_back() {
        let first = normalize_input(Some(&json!("My name is Ada."))).unwrap();
        let resp = json!({"output": [
            message_item("msg_1", vec![output_text("Hello Ada.")], "completed"),
            function_call_item("fc_1", "call_9", "f", "{}", "completed")
        ]});
        let mut items = continuation(&first, &resp);
        items.extend(normalize_input(Some(&json!("What is my name?"))).unwrap());
        let r = req(
            json!({"model": "g", "input": "What is my name?", "previous_response_id": "resp_1"}),
        );
        let chat = serde_json::to_value(to_chat(&r, &items).unwrap()).unwrap();
        assert_eq!(
            chat["messages"],
            json!([
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Hello Ada.", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "user", "content": "What is my name?"}
            ])
        );
    }

    fn completion(message: Value, finish: &str) -> Value {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
                      "prompt_tokens_details": {"cached_tokens": 4},
                      "completion_tokens_details": {"reasoning_tokens": 2}}
        })
    }

    fn a_shell() -> Value {
        let r = req(
            json!({"model": "g", "input": "q", "instructions": "Be brief.",
            "tools": [{"type": "function", "name": "f"}], "metadata": {"k": "v"}, "store": false}),
        );
        shell(&r, "resp_abc", 100)
    }

    #[test]
    fn a_text_answer_becomes_a_completed_response() {
        let out = to_response(
            &completion(json!({"role": "assistant", "content": "Hi!"}), "stop"),
            a_shell(),
            101,
        );
        assert_eq!(out["id"], "resp_abc");
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["created_at"], 100);
        assert_eq!(out["completed_at"], 101);
        assert_eq!(out["model"], "g");
        assert_eq!(out["instructions"], "Be brief.");
        assert_eq!(out["tools"], json!([{"type": "function", "name": "f"}]));
        assert_eq!(out["tool_choice"], "auto");
        assert_eq!(out["metadata"], json!({"k": "v"}));
        assert_eq!(out["store"], false);
        assert_eq!(
            out["text"],
            json!({"format": {"type": "text"}, "verbosity": "medium"})
        );
        assert_eq!(out["error"], Value::Null);
        assert_eq!(out["incomplete_details"], Value::Null);
        assert_eq!(
            out["output"],
            json!([{"id": "msg_abc00", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}]}])
        );
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 11, "input_tokens_details": {"cached_tokens": 4},
                   "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 16})
        );
        for k in [
            "background",
            "max_output_tokens",
            "parallel_tool_calls",
            "previous_response_id",
            "reasoning",
            "temperature",
            "top_p",
            "truncation",
            "user",
            "service_tier",
        ] {
            assert!(out.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn tool_calls_become_function_call_items() {
        let out = to_response(
            &completion(
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"type": "function", "function": {"name": "g", "arguments": "{}"}}
                ]}),
                "tool_calls",
            ),
            a_shell(),
            101,
        );
        assert_eq!(
            out["output"],
            json!([
                {"id": "fc_abc00", "type": "function_call", "status": "completed", "arguments": "{\"a\":1}", "call_id": "call_1", "name": "f"},
                {"id": "fc_abc01", "type": "function_call", "status": "completed", "arguments": "{}", "call_id": "call_abc01", "name": "g"}
            ])
        );
    }

    #[test]
    fn length_and_content_filter_are_incomplete() {
        for (finish, reason) in [
            ("length", "max_output_tokens"),
            ("content_filter", "content_filter"),
        ] {
            let out = to_response(
                &completion(json!({"role": "assistant", "content": "cut"}), finish),
                a_shell(),
                101,
            );
            assert_eq!(out["status"], "incomplete");
            assert_eq!(out["incomplete_details"], json!({"reason": reason}));
            assert_eq!(out["completed_at"], Value::Null);
            assert_eq!(out["output"][0]["status"], "incomplete");
        }
        let out = to_response(
            &completion(
                json!({"role": "assistant", "content": null, "refusal": "No."}),
                "stop",
            ),
            a_shell(),
            101,
        );
        assert_eq!(
            out["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "No."}])
        );
    }

    #[test]
    fn responses_usage_back_to_chat_usage() {
        let u = chat_usage(Some(
            &json!({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}),
        ));
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (3, 4, 7)
        );
        assert_eq!(usage(None), Value::Null);
    }
}
