//! Pure conversions for the inbound Anthropic surface (`POST /v1/messages`): a Messages request
//! into the gateway's OpenAI [`ChatRequest`], and an OpenAI `chat.completion` back into an
//! Anthropic message. The inverse of `outbound`.
//!
//! Errors name the Anthropic field that cannot be expressed in the OpenAI format.

use super::wire::{
    ContentBlock, ImageSource, MessageContent, MessageResponse, MessageRole, MessageUsage,
    MessagesRequest, SystemPrompt, ToolChoice, ToolResultContent,
};
use crate::wire::{ChatRequest, Content, FieldError, Message, Role, StreamOptions};
use serde_json::{json, Map, Value};

fn field_error(param: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        param: param.into(),
        message: message.into(),
    }
}

/// Checks what serde cannot: values that parse but make no request.
pub(crate) fn validate(req: &MessagesRequest) -> Result<(), FieldError> {
    if req.model.is_empty() {
        return Err(field_error("model", "model: must not be empty"));
    }
    if req.messages.is_empty() {
        return Err(field_error(
            "messages",
            "messages: at least one message is required",
        ));
    }
    if req.max_tokens == 0 {
        return Err(field_error(
            "max_tokens",
            "max_tokens: must be greater than or equal to 1",
        ));
    }
    Ok(())
}

/// The OpenAI request for an Anthropic one. `model` stays the name the client asked for
/// (a model group).
pub(crate) fn to_chat_request(req: MessagesRequest) -> Result<ChatRequest, FieldError> {
    validate(&req)?;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    match req.system {
        None => {}
        Some(SystemPrompt::Text(s)) if s.is_empty() => {}
        Some(SystemPrompt::Text(s)) => messages.push(message(Role::System, Content::Text(s))),
        Some(SystemPrompt::Blocks(blocks)) => {
            let text: Vec<String> = blocks.into_iter().map(|b| b.text).collect();
            messages.push(message(Role::System, Content::Text(text.join("\n\n"))));
        }
    }
    for (i, m) in req.messages.into_iter().enumerate() {
        match m.role {
            MessageRole::User => user_messages(i, m.content, &mut messages)?,
            MessageRole::Assistant => messages.push(assistant_message(i, m.content)?),
        }
    }

    let mut extra = Map::new();
    extra.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        extra.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        extra.insert("top_p".into(), json!(p));
    }
    if let Some(stop) = req.stop_sequences.filter(|s| !s.is_empty()) {
        extra.insert("stop".into(), json!(stop));
    }
    if let Some(tools) = req.tools.filter(|t| !t.is_empty()) {
        let mut out = Vec::with_capacity(tools.len());
        for (i, t) in tools.into_iter().enumerate() {
            if let Some(kind) = t.kind.as_deref().filter(|k| *k != "custom") {
                return Err(field_error(
                    format!("tools[{i}].type"),
                    format!(
                        "tools[{i}].type: server tool '{kind}' is not supported by this gateway"
                    ),
                ));
            }
            let mut function = Map::new();
            function.insert("name".into(), Value::String(t.name));
            if let Some(d) = t.description {
                function.insert("description".into(), Value::String(d));
            }
            function.insert("parameters".into(), t.input_schema);
            out.push(json!({"type": "function", "function": function}));
        }
        extra.insert("tools".into(), Value::Array(out));
        if let Some(choice) = req.tool_choice {
            let (choice, no_parallel) = match choice {
                ToolChoice::Auto {
                    disable_parallel_tool_use,
                } => (json!("auto"), disable_parallel_tool_use),
                ToolChoice::Any {
                    disable_parallel_tool_use,
                } => (json!("required"), disable_parallel_tool_use),
                ToolChoice::Tool {
                    name,
                    disable_parallel_tool_use,
                } => (
                    json!({"type": "function", "function": {"name": name}}),
                    disable_parallel_tool_use,
                ),
                ToolChoice::None => (json!("none"), None),
            };
            extra.insert("tool_choice".into(), choice);
            if no_parallel == Some(true) {
                extra.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }
    let stream = req.stream.unwrap_or(false);
    Ok(ChatRequest {
        model: req.model,
        messages,
        stream: stream.then_some(true),
        // Anthropic streams end with usage; ask for it so `message_delta` can carry it.
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        user: req.metadata.and_then(|m| m.user_id),
        cache: None,
        extra,
    })
}

fn message(role: Role, content: Content) -> Message {
    Message {
        role,
        content: Some(content),
        extra: Map::new(),
    }
}

fn text_part(text: String) -> Value {
    json!({"type": "text", "text": text})
}

/// An image or document block as an OpenAI content part.
fn media_part(block: ContentBlock, at: &str) -> Result<Value, FieldError> {
    match block {
        ContentBlock::Image { source, .. } => {
            let url = match source {
                ImageSource::Base64 { media_type, data } => {
                    format!("data:{media_type};base64,{data}")
                }
                ImageSource::Url { url } => url,
            };
            Ok(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        ContentBlock::Document { source, .. } => {
            let media_type = source.get("media_type").and_then(Value::as_str);
            let data = source.get("data").and_then(Value::as_str);
            match (source.get("type").and_then(Value::as_str), media_type, data) {
                (Some("base64"), Some(mt), Some(data)) => Ok(json!({
                    "type": "file",
                    "file": {"filename": "document", "file_data": format!("data:{mt};base64,{data}")}
                })),
                (Some("text"), _, Some(text)) => Ok(text_part(text.to_string())),
                _ => Err(field_error(
                    format!("{at}.source"),
                    format!(
                        "{at}.source: only base64 and text documents are supported by this gateway"
                    ),
                )),
            }
        }
        _ => Err(field_error(
            at,
            format!("{at}: not an image or document block"),
        )),
    }
}

/// A user turn: its tool results become `tool` messages (first, in order), the rest one user
/// message.
fn user_messages(
    i: usize,
    content: MessageContent,
    out: &mut Vec<Message>,
) -> Result<(), FieldError> {
    let blocks = match content {
        MessageContent::Text(s) => {
            out.push(message(Role::User, Content::Text(s)));
            return Ok(());
        }
        MessageContent::Blocks(b) => b,
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let at = format!("messages[{i}].content[{j}]");
        match block {
            ContentBlock::Text { text, .. } => parts.push(text_part(text)),
            b @ (ContentBlock::Image { .. } | ContentBlock::Document { .. }) => {
                parts.push(media_part(b, &at)?)
            }
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            } => {
                let text = match content {
                    None => String::new(),
                    Some(ToolResultContent::Text(s)) => s,
                    Some(ToolResultContent::Blocks(blocks)) => {
                        let mut texts = Vec::new();
                        for (k, b) in blocks.into_iter().enumerate() {
                            match b {
                                ContentBlock::Text { text, .. } => texts.push(text),
                                _ => {
                                    return Err(field_error(
                                        format!("{at}.content[{k}]"),
                                        format!("{at}.content[{k}]: tool results may only contain text on this gateway"),
                                    ))
                                }
                            }
                        }
                        texts.join("\n")
                    }
                };
                let mut m = message(Role::Tool, Content::Text(text));
                m.extra
                    .insert("tool_call_id".into(), Value::String(tool_use_id));
                out.push(m);
            }
            // Thinking is the model's own; a user turn has none to pass on.
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolUse { .. } => {
                return Err(field_error(
                    format!("{at}.type"),
                    format!("{at}.type: tool_use blocks belong in assistant messages"),
                ))
            }
            ContentBlock::Unsupported => {
                return Err(field_error(
                    format!("{at}.type"),
                    format!("{at}.type: this content block type is not supported by this gateway"),
                ))
            }
        }
    }
    if !parts.is_empty() {
        let content = match parts.as_slice() {
            [only] if only.get("type") == Some(&json!("text")) => {
                Content::Text(only["text"].as_str().unwrap_or_default().to_string())
            }
            _ => Content::Parts(parts),
        };
        out.push(message(Role::User, content));
    }
    Ok(())
}

/// An assistant turn: text joined into `content`, tool_use blocks into `tool_calls`.
fn assistant_message(i: usize, content: MessageContent) -> Result<Message, FieldError> {
    let blocks = match content {
        MessageContent::Text(s) => return Ok(message(Role::Assistant, Content::Text(s))),
        MessageContent::Blocks(b) => b,
    };
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        match block {
            ContentBlock::Text { text: t, .. } => text.get_or_insert_with(String::new).push_str(&t),
            ContentBlock::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            _ => {
                return Err(field_error(
                    format!("messages[{i}].content[{j}].type"),
                    format!("messages[{i}].content[{j}].type: assistant messages may only contain text, tool_use and thinking blocks"),
                ))
            }
        }
    }
    let mut m = Message {
        role: Role::Assistant,
        content: text.map(Content::Text),
        extra: Map::new(),
    };
    if !calls.is_empty() {
        m.extra.insert("tool_calls".into(), Value::Array(calls));
    }
    Ok(m)
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub(crate) fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// A message id for an OpenAI completion id (`chatcmpl-msg_x` goes back to `msg_x`).
pub(crate) fn message_id(openai_id: Option<&str>) -> String {
    let id = openai_id.unwrap_or_default();
    let id = id.strip_prefix("chatcmpl-").unwrap_or(id);
    if id.starts_with("msg_") {
        id.to_string()
    } else if id.is_empty() {
        format!("msg_{}", uuid::Uuid::new_v4().simple())
    } else {
        format!("msg_{id}")
    }
}

/// Anthropic usage for OpenAI usage: cached prompt tokens are reported apart, as Anthropic does.
pub(crate) fn usage(openai: Option<&Value>) -> MessageUsage {
    let get = |k: &str| openai.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let prompt = get("prompt_tokens").unwrap_or(0);
    let cached = openai
        .and_then(|u| u.pointer("/prompt_tokens_details/cached_tokens"))
        .and_then(Value::as_u64)
        .filter(|c| *c > 0 && *c <= prompt);
    MessageUsage {
        input_tokens: prompt - cached.unwrap_or(0),
        output_tokens: get("completion_tokens").unwrap_or(0),
        cache_creation_input_tokens: None,
        cache_read_input_tokens: cached,
    }
}

/// Tool arguments as the JSON object Anthropic's `input` must be.
pub(crate) fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => json!({}),
        // Not an object: keep what the model produced rather than lose it.
        _ => json!({"arguments": arguments}),
    }
}

/// The Anthropic message for an OpenAI `chat.completion` (first choice).
pub(crate) fn to_message(completion: &Value) -> MessageResponse {
    let choice = completion
        .get("choices")
        .and_then(|c| c.get(0))
        .unwrap_or(&Value::Null);
    let msg = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    for key in ["content", "refusal"] {
        if let Some(t) = msg
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            content.push(ContentBlock::Text {
                text: t.to_string(),
                cache_control: None,
            });
        }
    }
    if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            let f = call.get("function").unwrap_or(&Value::Null);
            content.push(ContentBlock::ToolUse {
                id: call.get("id").and_then(Value::as_str).map_or_else(
                    || format!("toolu_{}", uuid::Uuid::new_v4().simple()),
                    str::to_string,
                ),
                name: f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                input: tool_input(f.get("arguments").and_then(Value::as_str).unwrap_or("")),
            });
        }
    }
    MessageResponse {
        id: message_id(completion.get("id").and_then(Value::as_str)),
        kind: "message".into(),
        role: MessageRole::Assistant,
        content,
        model: completion
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        stop_reason: Some(
            stop_reason(choice.get("finish_reason").and_then(Value::as_str)).to_string(),
        ),
        stop_sequence: None,
        usage: usage(completion.get("usage")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_json;

    fn parse(body: Value) -> MessagesRequest {
        parse_json(body.to_string().as_bytes()).unwrap()
    }

    fn chat(body: Value) -> Value {
        serde_json::to_value(to_chat_request(parse(body)).unwrap()).unwrap()
    }

    #[test]
    fn text_system_and_sampling() {
        let out = chat(json!({
            "model": "gpt-x", "max_tokens": 256,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5, "top_p": 0.9, "top_k": 5, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"}, "thinking": {"type": "enabled", "budget_tokens": 1024}
        }));
        assert_eq!(
            out,
            json!({
                "model": "gpt-x",
                "messages": [
                    {"role": "system", "content": "Be brief.\n\nBe kind."},
                    {"role": "user", "content": "hi"}
                ],
                "user": "u-1",
                "max_tokens": 256, "temperature": 0.5, "top_p": 0.9, "stop": ["END"]
            })
        );
        let out = chat(
            json!({"model": "m", "max_tokens": 1, "stream": true, "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(out["stream"], true);
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn blocks_images_documents_and_tool_round_trip() {
        let out = chat(json!({
            "model": "m", "max_tokens": 10,
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "late", "is_error": true},
                    {"type": "text", "text": "thanks"}
                ]}
            ],
            "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }));
        let m = &out["messages"];
        assert_eq!(
            m[0]["content"],
            json!([
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
                {"type": "file", "file": {"filename": "document", "file_data": "data:application/pdf;base64,JVBE"}}
            ])
        );
        assert_eq!(
            m[1],
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]})
        );
        assert_eq!(
            m[2],
            json!({"role": "tool", "content": "18C", "tool_call_id": "toolu_1"})
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "content": "late", "tool_call_id": "toolu_2"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "thanks"}));
        assert_eq!(
            out["tools"],
            json!([{"type": "function", "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object"}}}])
        );
        assert_eq!(out["tool_choice"], "required");
        assert_eq!(out["parallel_tool_calls"], false);
    }

    #[test]
    fn tool_choice_variants() {
        let with = |choice: Value| {
            chat(json!({
                "model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": choice
            }))
        };
        assert_eq!(with(json!({"type": "auto"}))["tool_choice"], "auto");
        assert_eq!(with(json!({"type": "none"}))["tool_choice"], "none");
        let out = with(json!({"type": "tool", "name": "f"}));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "function", "function": {"name": "f"}})
        );
        assert!(out.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_json::<MessagesRequest>(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("max_tokens"), "{}", e.message);
        let e = parse_json::<MessagesRequest>(
            br#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param, "messages[0].role");
        let e = to_chat_request(parse(
            json!({"model": "m", "max_tokens": 1, "messages": []}),
        ))
        .unwrap_err();
        assert_eq!(e.param, "messages");
        let e = to_chat_request(parse(json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": [{"type": "search_result", "source": "x"}]}
        ]})))
        .unwrap_err();
        assert_eq!(e.param, "messages[0].content[0].type");
        let e = to_chat_request(parse(json!({"model": "m", "max_tokens": 1,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]
        })))
        .unwrap_err();
        assert_eq!(e.param, "tools[0].type");
    }

    #[test]
    fn completion_becomes_a_message() {
        let msg = to_message(&json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "On it.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}}
                ]
            }}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15, "prompt_tokens_details": {"cached_tokens": 4}}
        }));
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({
                "id": "msg_abc", "type": "message", "role": "assistant",
                "content": [
                    {"type": "text", "text": "On it."},
                    {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
                    {"type": "tool_use", "id": "call_2", "name": "g", "input": {}}
                ],
                "model": "gpt-x", "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 8, "output_tokens": 3, "cache_read_input_tokens": 4}
            })
        );
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
        ] {
            let m = to_message(
                &json!({"choices": [{"finish_reason": finish, "message": {"content": null}}]}),
            );
            assert_eq!(m.stop_reason.as_deref(), Some(stop));
            assert!(m.content.is_empty());
            assert!(m.id.starts_with("msg_"));
        }
        assert_eq!(message_id(Some("chatcmpl-msg_01X")), "msg_01X");
        assert_eq!(tool_input("[1]"), json!({"arguments": "[1]"}));
    }
}
