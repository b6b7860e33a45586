//! Pure conversions for `anthropic/...` deployments: an OpenAI chat request into a Messages
//! request, and a Messages response back into an OpenAI `chat.completion`.
//!
//! No I/O here; errors name the OpenAI field that cannot be translated.

use super::wire::{
    ContentBlock, ImageSource, InputMessage, MessageContent, MessageResponse, MessageRole,
    MessagesRequest, Metadata, SystemPrompt, TextBlock, TextTag, Tool, ToolChoice,
    ToolResultContent,
};
use crate::wire::{ChatRequest, Content, FieldError, Role, Usage};
use serde_json::{json, Map, Value};

/// `max_tokens` sent when the client gives none (Anthropic requires one).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

fn field_error(param: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        param: param.into(),
        message: message.into(),
    }
}

/// Builds the Messages request for `model` (the deployment's upstream model).
pub(crate) fn to_messages_request(
    req: &ChatRequest,
    model: &str,
    stream: bool,
) -> Result<MessagesRequest, FieldError> {
    let extra = &req.extra;
    if let Some(n) = extra.get("n").and_then(Value::as_u64).filter(|n| *n > 1) {
        return Err(field_error(
            "n",
            format!("'n' = {n} is not supported by Anthropic models (one choice per request)"),
        ));
    }
    let (system, messages) = conversation(req)?;
    let tools = tools(extra.get("tools"))?;
    let tool_choice = if tools.is_some() {
        tool_choice(extra)?
    } else {
        None
    };
    Ok(MessagesRequest {
        model: model.to_string(),
        messages,
        max_tokens: max_tokens(extra)?,
        system,
        stop_sequences: stop(extra.get("stop"))?,
        temperature: number(extra, "temperature")?,
        top_p: number(extra, "top_p")?,
        top_k: extra.get("top_k").and_then(Value::as_u64),
        stream: stream.then_some(true),
        metadata: req.user.as_ref().map(|u| Metadata {
            user_id: Some(u.clone()),
        }),
        tools,
        tool_choice,
        extra: Map::new(),
    })
}

fn max_tokens(extra: &Map<String, Value>) -> Result<u64, FieldError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        match extra.get(key) {
            None | Some(Value::Null) => {}
            Some(v) => {
                return v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                    field_error(key, format!("'{key}' must be a positive integer, got {v}"))
                })
            }
        }
    }
    Ok(DEFAULT_MAX_TOKENS)
}

fn number(extra: &Map<String, Value>, key: &str) -> Result<Option<f64>, FieldError> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| field_error(key, format!("'{key}' must be a number, got {v}"))),
    }
}

fn stop(v: Option<&Value>) -> Result<Option<Vec<String>>, FieldError> {
    let bad = || field_error("stop", "'stop' must be a string or an array of strings");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => {
            let seqs = items
                .iter()
                .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((!seqs.is_empty()).then_some(seqs))
        }
        Some(_) => Err(bad()),
    }
}

fn tools(v: Option<&Value>) -> Result<Option<Vec<Tool>>, FieldError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(field_error("tools", "'tools' must be an array")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str).unwrap_or("function");
        if kind != "function" {
            return Err(field_error(
                format!("tools[{i}].type"),
                format!("tool type '{kind}' is not supported by Anthropic models; use 'function'"),
            ));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
            field_error(
                format!("tools[{i}].function.name"),
                "each tool needs a 'function.name'",
            )
        })?;
        out.push(Tool {
            kind: None,
            name: name.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            input_schema: f
                .get("parameters")
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            extra: t
                .get("cache_control")
                .map(|c| Map::from_iter([("cache_control".to_string(), c.clone())]))
                .unwrap_or_default(),
        });
    }
    Ok((!out.is_empty()).then_some(out))
}

fn tool_choice(extra: &Map<String, Value>) -> Result<Option<ToolChoice>, FieldError> {
    let no_parallel =
        (extra.get("parallel_tool_calls") == Some(&Value::Bool(false))).then_some(true);
    let bad = || {
        field_error(
            "tool_choice",
            "'tool_choice' must be \"auto\", \"required\", \"none\" or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )
    };
    Ok(match extra.get("tool_choice") {
        None | Some(Value::Null) => no_parallel.map(|_| ToolChoice::Auto {
            disable_parallel_tool_use: no_parallel,
        }),
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => ToolChoice::Auto {
                disable_parallel_tool_use: no_parallel,
            },
            "required" => ToolChoice::Any {
                disable_parallel_tool_use: no_parallel,
            },
            "none" => ToolChoice::None,
            _ => return Err(bad()),
        }),
        Some(obj @ Value::Object(_)) => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(bad)?;
            Some(ToolChoice::Tool {
                name: name.to_string(),
                disable_parallel_tool_use: no_parallel,
            })
        }
        Some(_) => return Err(bad()),
    })
}

/// System prompt and alternating turns.
fn conversation(
    req: &ChatRequest,
) -> Result<(Option<SystemPrompt>, Vec<InputMessage>), FieldError> {
    let mut system: Vec<TextBlock> = Vec::new();
    let mut turns: Vec<InputMessage> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role {
            Role::System | Role::Developer => {
                system.extend(system_blocks(i, m.content.as_ref())?);
                continue;
            }
            Role::User => (MessageRole::User, user_blocks(i, m.content.as_ref())?),
            Role::Assistant => (
                MessageRole::Assistant,
                assistant_blocks(i, m.content.as_ref(), &m.extra)?,
            ),
            Role::Tool => (MessageRole::User, vec![tool_result(i, m)?]),
            Role::Function => {
                return Err(field_error(
                    format!("messages[{i}].role"),
                    "role 'function' is not supported by Anthropic models; use 'tool'",
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic requires alternating roles: consecutive turns of one role become one.
        match turns.last_mut() {
            Some(InputMessage {
                role: last,
                content: MessageContent::Blocks(prev),
            }) if *last == role => prev.extend(blocks),
            _ => turns.push(InputMessage {
                role,
                content: MessageContent::Blocks(blocks),
            }),
        }
    }
    if turns.is_empty() {
        return Err(field_error(
            "messages",
            "Anthropic models need at least one user or assistant message with content",
        ));
    }
    let system = if system.is_empty() {
        None
    } else if system.iter().all(|b| b.cache_control.is_none()) {
        let texts: Vec<&str> = system.iter().map(|b| b.text.as_str()).collect();
        Some(SystemPrompt::Text(texts.join("\n\n")))
    } else {
        Some(SystemPrompt::Blocks(system))
    };
    Ok((system, turns))
}

fn system_blocks(i: usize, content: Option<&Content>) -> Result<Vec<TextBlock>, FieldError> {
    let text = |text: String, cache_control: Option<Value>| TextBlock {
        kind: TextTag::Text,
        text,
        cache_control,
    };
    Ok(match content {
        None => Vec::new(),
        Some(Content::Text(s)) if s.is_empty() => Vec::new(),
        Some(Content::Text(s)) => vec![text(s.clone(), None)],
        Some(Content::Parts(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = part_text(i, j, p)?;
                        if !t.is_empty() {
                            out.push(text(t.to_string(), p.get("cache_control").cloned()));
                        }
                    }
                    _ => {
                        return Err(field_error(
                            format!("messages[{i}].content[{j}].type"),
                            "system messages may only contain text parts",
                        ))
                    }
                }
            }
            out
        }
    })
}

fn part_text(i: usize, j: usize, p: &Value) -> Result<&str, FieldError> {
    p.get("text").and_then(Value::as_str).ok_or_else(|| {
        field_error(
            format!("messages[{i}].content[{j}].text"),
            "a text part needs a string 'text'",
        )
    })
}

/// User content: text, images and documents. Empty text is dropped (Anthropic rejects it).
fn user_blocks(i: usize, content: Option<&Content>) -> Result<Vec<ContentBlock>, FieldError> {
    match content {
        None => Ok(Vec::new()),
        Some(Content::Text(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Content::Text(s)) => Ok(vec![ContentBlock::Text {
            text: s.clone(),
            cache_control: None,
        }]),
        Some(Content::Parts(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, p) in parts.iter().enumerate() {
                if let Some(b) = part_block(i, j, p)? {
                    out.push(b);
                }
            }
            Ok(out)
        }
    }
}

fn part_block(i: usize, j: usize, p: &Value) -> Result<Option<ContentBlock>, FieldError> {
    let at = |k: &str| format!("messages[{i}].content[{j}].{k}");
    let cache_control = p.get("cache_control").cloned();
    match p.get("type").and_then(Value::as_str).unwrap_or("") {
        "text" => {
            let t = part_text(i, j, p)?;
            Ok((!t.is_empty()).then(|| ContentBlock::Text {
                text: t.to_string(),
                cache_control,
            }))
        }
        "image_url" => {
            let iu = p.get("image_url");
            let url = iu
                .and_then(|v| v.get("url").or(Some(v)))
                .and_then(Value::as_str)
                .ok_or_else(|| field_error(at("image_url.url"), "an image part needs a URL"))?;
            Ok(Some(ContentBlock::Image {
                source: image_source(url).map_err(|m| field_error(at("image_url.url"), m))?,
                cache_control,
            }))
        }
        "file" => {
            let data = p
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    field_error(
                        at("file.file_data"),
                        "Anthropic models accept files only as a base64 data: URL in 'file_data'",
                    )
                })?;
            let (media_type, data) = data_url(data)
                .ok_or_else(|| field_error(at("file.file_data"), "not a base64 data: URL"))?;
            let mut extra = Map::new();
            if let Some(c) = cache_control {
                extra.insert("cache_control".into(), c);
            }
            Ok(Some(ContentBlock::Document {
                source: json!({"type": "base64", "media_type": media_type, "data": data}),
                extra,
            }))
        }
        other => Err(field_error(
            at("type"),
            format!("content part type '{other}' is not supported by Anthropic models"),
        )),
    }
}

/// Splits `data:<media type>;base64,<data>`.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty()).then_some((media_type, data))
}

fn image_source(url: &str) -> Result<ImageSource, String> {
    if url.starts_with("data:") {
        let (media_type, data) = data_url(url).ok_or_else(|| {
            "a data: URL must look like data:<media type>;base64,<data>".to_string()
        })?;
        Ok(ImageSource::Base64 {
            media_type: media_type.to_string(),
            data: data.to_string(),
        })
    } else if url.starts_with("http://") || url.starts_with("https://") {
        Ok(ImageSource::Url {
            url: url.to_string(),
        })
    } else {
        Err("image URLs must be http(s) or base64 data: URLs".to_string())
    }
}

fn assistant_blocks(
    i: usize,
    content: Option<&Content>,
    extra: &Map<String, Value>,
) -> Result<Vec<ContentBlock>, FieldError> {
    let mut out = match content {
        None => Vec::new(),
        Some(Content::Text(s)) if s.is_empty() => Vec::new(),
        Some(Content::Text(s)) => vec![ContentBlock::Text {
            text: s.clone(),
            cache_control: None,
        }],
        Some(Content::Parts(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = part_text(i, j, p)?;
                        if !t.is_empty() {
                            out.push(ContentBlock::Text {
                                text: t.to_string(),
                                cache_control: p.get("cache_control").cloned(),
                            });
                        }
                    }
                    // A refusal is what the model said; Anthropic has no separate part for it.
                    Some("refusal") => {
                        if let Some(t) = p.get("refusal").and_then(Value::as_str) {
                            out.push(ContentBlock::Text {
                                text: t.to_string(),
                                cache_control: None,
                            });
                        }
                    }
                    _ => {
                        return Err(field_error(
                            format!("messages[{i}].content[{j}].type"),
                            "assistant messages may only contain text parts",
                        ))
                    }
                }
            }
            out
        }
    };
    let calls = match extra.get("tool_calls") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(field_error(
                format!("messages[{i}].tool_calls"),
                "'tool_calls' must be an array",
            ))
        }
    };
    for (j, call) in calls.iter().enumerate() {
        let at = |k: &str| format!("messages[{i}].tool_calls[{j}].{k}");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| field_error(at("id"), "each tool call needs an 'id'"))?;
        let f = call.get("function").unwrap_or(&Value::Null);
        let name = f.get("name").and_then(Value::as_str).ok_or_else(|| {
            field_error(
                at("function.name"),
                "each tool call needs a 'function.name'",
            )
        })?;
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        let input = if args.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str::<Value>(args).map_err(|e| {
                field_error(
                    at("function.arguments"),
                    format!("tool call arguments are not valid JSON: {e}"),
                )
            })?
        };
        if !input.is_object() {
            return Err(field_error(
                at("function.arguments"),
                "tool call arguments must be a JSON object",
            ));
        }
        out.push(ContentBlock::ToolUse {
            id: id.to_string(),
            name: name.to_string(),
            input,
        });
    }
    Ok(out)
}

fn tool_result(i: usize, m: &crate::wire::Message) -> Result<ContentBlock, FieldError> {
    let id = m
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            field_error(
                format!("messages[{i}].tool_call_id"),
                "a tool message needs the 'tool_call_id' it answers",
            )
        })?;
    let content = match &m.content {
        None => None,
        Some(Content::Text(s)) => Some(ToolResultContent::Text(s.clone())),
        Some(Content::Parts(_)) => Some(ToolResultContent::Blocks(user_blocks(
            i,
            m.content.as_ref(),
        )?)),
    };
    Ok(ContentBlock::ToolResult {
        tool_use_id: id.to_string(),
        content,
        is_error: None,
        cache_control: None,
    })
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything new.
        _ => "stop",
    }
}

/// OpenAI usage (with cached prompt tokens reported as OpenAI does) for Anthropic usage.
pub(crate) fn usage_json(prompt: u64, completion: u64, cached: Option<u64>) -> Value {
    let mut u = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if let (Some(c), Some(map)) = (cached, u.as_object_mut()) {
        map.insert("prompt_tokens_details".into(), json!({"cached_tokens": c}));
    }
    u
}

/// The OpenAI `chat.completion` body for a Messages response, and its usage.
pub(crate) fn to_chat_completion(
    msg: &MessageResponse,
    fallback_model: &str,
    created: u64,
) -> (Value, Usage) {
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for block in &msg.content {
        match block {
            ContentBlock::Text { text: t, .. } => text.get_or_insert_with(String::new).push_str(t),
            ContentBlock::ToolUse { id, name, input } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if let (false, Some(map)) = (calls.is_empty(), message.as_object_mut()) {
        map.insert("tool_calls".into(), Value::Array(calls));
    }
    let usage = Usage {
        prompt_tokens: msg.usage.prompt_tokens(),
        completion_tokens: msg.usage.output_tokens,
        total_tokens: msg.usage.prompt_tokens() + msg.usage.output_tokens,
    };
    let model = if msg.model.is_empty() {
        fallback_model
    } else {
        &msg.model
    };
    let body = json!({
        "id": format!("chatcmpl-{}", msg.id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(msg.stop_reason.as_deref()),
        }],
        "usage": usage_json(usage.prompt_tokens, usage.completion_tokens, msg.usage.cache_read_input_tokens),
    });
    (body, usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_json;

    fn req(body: Value) -> ChatRequest {
        parse_json(body.to_string().as_bytes()).unwrap()
    }

    fn translate(body: Value) -> Value {
        serde_json::to_value(to_messages_request(&req(body), "claude-x", false).unwrap()).unwrap()
    }

    fn translate_err(body: Value) -> FieldError {
        to_messages_request(&req(body), "claude-x", false).unwrap_err()
    }

    #[test]
    fn system_and_developer_become_top_level_and_max_tokens_defaults() {
        let out = translate(json!({
            "model": "group",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "user", "content": "hi"}
            ],
            "seed": 7, "frequency_penalty": 0.5, "logprobs": true
        }));
        assert_eq!(
            out,
            json!({
                "model": "claude-x",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "max_tokens": DEFAULT_MAX_TOKENS,
                "system": "Be brief.\n\nUse French."
            }),
            "OpenAI-only fields are dropped"
        );
    }

    #[test]
    fn system_with_cache_control_stays_blocks() {
        let out = translate(json!({"model": "g", "messages": [
            {"role": "system", "content": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": "q"}
        ]}));
        assert_eq!(
            out["system"],
            json!([{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}])
        );
    }

    #[test]
    fn sampling_fields_stop_user_and_stream() {
        let r = req(json!({
            "model": "g", "messages": [{"role": "user", "content": "q"}],
            "max_completion_tokens": 50, "max_tokens": 10, "temperature": 0.2, "top_p": 0.9,
            "stop": "END", "user": "u-1", "stream": true
        }));
        let out = serde_json::to_value(to_messages_request(&r, "claude-x", true).unwrap()).unwrap();
        assert_eq!(out["max_tokens"], 50, "max_completion_tokens wins");
        assert_eq!(out["temperature"], 0.2);
        assert_eq!(out["top_p"], 0.9);
        assert_eq!(out["stop_sequences"], json!(["END"]));
        assert_eq!(out["metadata"], json!({"user_id": "u-1"}));
        assert_eq!(out["stream"], true);
        let out = translate(
            json!({"model": "g", "messages": [{"role": "user", "content": "q"}], "stop": ["a", "b"], "max_tokens": 7}),
        );
        assert_eq!(out["stop_sequences"], json!(["a", "b"]));
        assert_eq!(out["max_tokens"], 7);
        assert!(out.get("stream").is_none());
        let e = translate_err(
            json!({"model": "g", "messages": [{"role": "user", "content": "q"}], "max_tokens": "many"}),
        );
        assert_eq!(e.param, "max_tokens");
        let e = translate_err(
            json!({"model": "g", "messages": [{"role": "user", "content": "q"}], "n": 2}),
        );
        assert_eq!(e.param, "n");
    }

    #[test]
    fn multi_part_content_and_images() {
        let out = translate(
            json!({"model": "g", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": ""}
            ]}]}),
        );
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
        let e = translate_err(
            json!({"model": "g", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}
            ]}]}),
        );
        assert_eq!(e.param, "messages[0].content[0].image_url.url");
        let e = translate_err(
            json!({"model": "g", "messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {}}
            ]}]}),
        );
        assert_eq!(e.param, "messages[0].content[0].type");
    }

    #[test]
    fn consecutive_roles_merge_and_tools_translate() {
        let out = translate(json!({
            "model": "g",
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "user", "content": "two"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "time"}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false
        }));
        assert_eq!(
            out["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
                    {"type": "text", "text": "thanks"}
                ]}
            ])
        );
        assert_eq!(
            out["tools"],
            json!([
                {"name": "weather", "description": "Weather by city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "time", "input_schema": {"type": "object", "properties": {}}}
            ])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn tool_choice_variants() {
        let with = |choice: Value| {
            translate(json!({
                "model": "g", "messages": [{"role": "user", "content": "q"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": choice
            }))["tool_choice"]
                .clone()
        };
        assert_eq!(with(json!("auto")), json!({"type": "auto"}));
        assert_eq!(with(json!("required")), json!({"type": "any"}));
        assert_eq!(with(json!("none")), json!({"type": "none"}));
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "f"}})),
            json!({"type": "tool", "name": "f"})
        );
        assert_eq!(with(Value::Null), Value::Null);
        let out = translate(json!({
            "model": "g", "messages": [{"role": "user", "content": "q"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "parallel_tool_calls": false
        }));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        // Without tools there is nothing to choose from: Anthropic would reject a tool_choice.
        let out = translate(
            json!({"model": "g", "messages": [{"role": "user", "content": "q"}], "tool_choice": "auto"}),
        );
        assert!(out.get("tool_choice").is_none());
        let e = translate_err(json!({
            "model": "g", "messages": [{"role": "user", "content": "q"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"
        }));
        assert_eq!(e.param, "tool_choice");
    }

    #[test]
    fn bad_tool_arguments_name_the_field() {
        let e = translate_err(json!({"model": "g", "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}
        ]}));
        assert_eq!(e.param, "messages[1].tool_calls[0].function.arguments");
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        let e =
            translate_err(json!({"model": "g", "messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(e.param, "messages[0].tool_call_id");
        let e = translate_err(
            json!({"model": "g", "messages": [{"role": "system", "content": "only"}]}),
        );
        assert_eq!(e.param, "messages");
    }

    fn response(content: Value, stop: &str) -> MessageResponse {
        serde_json::from_value(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "content": content,
            "model": "claude-x-2025", "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}
        }))
        .unwrap()
    }

    #[test]
    fn response_text_tools_and_usage() {
        let msg = response(
            json!([
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Checking "},
                {"type": "text", "text": "now."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}
            ]),
            "tool_use",
        );
        let (body, usage) = to_chat_completion(&msg, "fallback", 123);
        assert_eq!(body["id"], "chatcmpl-msg_01");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["created"], 123);
        assert_eq!(body["model"], "claude-x-2025");
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], "Checking now.");
        let call = &choice["message"]["tool_calls"][0];
        assert_eq!(call["id"], "toolu_1");
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 15,
                completion_tokens: 5,
                total_tokens: 20
            }
        );
        assert_eq!(body["usage"]["total_tokens"], 20);
        assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    }

    #[test]
    fn each_stop_reason_maps() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let (body, _) = to_chat_completion(&response(json!([]), stop), "m", 0);
            assert_eq!(body["choices"][0]["finish_reason"], finish, "{stop}");
            assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
            assert!(body["choices"][0]["message"].get("tool_calls").is_none());
        }
    }
}
