//! Pure conversions between OpenAI chat/embeddings JSON and Gemini's `generateContent` /
//! `batchEmbedContents` JSON. No I/O: the adapter in `mod.rs` sends what these build.
//!
//! Request mapping: system/developer messages become `systemInstruction`; `assistant` turns
//! become role `model`; tool results become `functionResponse` parts of a `user` turn (the
//! function name is looked up from the assistant's earlier `tool_calls`); consecutive turns of
//! the same role are merged, as Gemini expects strictly alternating roles. JSON schemas
//! (tool parameters, `response_format.json_schema`) are reduced to the OpenAPI subset Gemini's
//! `Schema` accepts, see [`gemini_schema`].
//!
//! Thinking models sign their function calls (`thoughtSignature`) and Gemini 3 rejects a
//! replayed call without its signature. OpenAI has no field for it, so the signature rides in
//! the tool call id (`call_<n>__thought__<signature>`), which clients echo back unchanged;
//! a replayed turn without any signature gets Google's documented
//! `skip_thought_signature_validator` on its first call.

use super::wire::{
    BatchEmbedRequest, Candidate, Content, EmbedRequest, FileData, FunctionCall,
    FunctionDeclaration, FunctionResponse, GenerateContentRequest, GenerateContentResponse,
    GenerationConfig, InlineData, Part, Tool, UsageMetadata,
};
use crate::wire::{ChatRequest, Content as OpenAiContent, EmbeddingsRequest, Role, Usage};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Media type assumed for a linked file whose extension says nothing.
const DEFAULT_MEDIA_TYPE: &str = "image/jpeg";
/// How deep `$ref`s are followed before a recursive schema is cut off.
const MAX_REF_DEPTH: usize = 8;
/// Separates a tool call id from the thought signature carried in it.
const THOUGHT_SEPARATOR: &str = "__thought__";
/// Google's value for a function call whose signature is unknown (history from elsewhere).
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";
/// Schema keys Gemini's `Schema` object accepts; every other key is dropped.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];
/// `format` values Gemini accepts; others (`uri`, `email`, ...) are dropped.
const SCHEMA_FORMATS: &[&str] = &["enum", "date-time", "int32", "int64", "float", "double"];

/// Identity of one translated answer: shared by every chunk of a stream.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `chatcmpl-...` id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// Model name reported to the client.
    pub model: String,
    /// Tool call ids are `call_{prefix}{n}`; random per answer so ids from different turns of
    /// one conversation do not collide.
    pub call_prefix: String,
}

impl Meta {
    /// The id of the `n`th tool call of this answer.
    pub fn call_id(&self, n: usize) -> String {
        format!("call_{}{n}", self.call_prefix)
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI request -> Gemini request

/// Builds the Gemini request for an OpenAI chat request; `Err` says which field cannot be sent.
pub fn request(req: &ChatRequest) -> Result<GenerateContentRequest, String> {
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // Tool call id -> function name, updated in message order so a reused id maps to its
    // latest call.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        match m.role {
            Role::System | Role::Developer => {
                let text = m.content.as_ref().map(OpenAiContent::text);
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    system.push(Part::text(text));
                }
            }
            Role::User => {
                let parts = match &m.content {
                    Some(c) => user_parts(c, &at)?,
                    None => Vec::new(),
                };
                push_turn(&mut contents, "user", parts);
            }
            Role::Assistant => {
                let mut parts = Vec::new();
                let text = m.content.as_ref().map(OpenAiContent::text);
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    parts.push(Part::text(text));
                }
                let calls = m.extra.get("tool_calls").and_then(Value::as_array);
                let first_call = parts.len();
                for (j, call) in calls.into_iter().flatten().enumerate() {
                    let at = format!("{at}.tool_calls[{j}]");
                    let f = call.get("function").unwrap_or(&Value::Null);
                    let name = str_field(f, "name", &format!("{at}.function"))?;
                    let args = arguments(f.get("arguments"), &format!("{at}.function"))?;
                    let mut part = function_call_part(name, args);
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        call_names.insert(id.to_string(), name.to_string());
                        part.thought_signature = id
                            .split_once(THOUGHT_SEPARATOR)
                            .map(|(_, sig)| sig.to_string());
                    }
                    parts.push(part);
                }
                let replayed = &mut parts[first_call..];
                if replayed.iter().all(|p| p.thought_signature.is_none()) {
                    if let Some(first) = replayed.first_mut() {
                        first.thought_signature = Some(SKIP_SIGNATURE.to_string());
                    }
                }
                // Legacy single `function_call`.
                if let Some(f) = m.extra.get("function_call").filter(|f| f.is_object()) {
                    let at = format!("{at}.function_call");
                    let name = str_field(f, "name", &at)?;
                    parts.push(function_call_part(
                        name,
                        arguments(f.get("arguments"), &at)?,
                    ));
                }
                push_turn(&mut contents, "model", parts);
            }
            Role::Tool | Role::Function => {
                let by_id = m
                    .extra
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .and_then(|id| call_names.get(id))
                    .map(String::as_str);
                let name = by_id
                    .or_else(|| m.extra.get("name").and_then(Value::as_str))
                    .ok_or_else(|| {
                        format!(
                            "{at}.tool_call_id: no earlier assistant tool call has this id, \
                             and Gemini needs the function name of every tool result"
                        )
                    })?;
                let text = m
                    .content
                    .as_ref()
                    .map(OpenAiContent::text)
                    .unwrap_or_default();
                let part = Part {
                    function_response: Some(FunctionResponse {
                        name: name.to_string(),
                        response: tool_result(&text),
                    }),
                    ..Part::default()
                };
                push_turn(&mut contents, "user", vec![part]);
            }
        }
    }
    let x = &req.extra;
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then(|| Content {
            role: None,
            parts: system,
        }),
        tools: tools(x.get("tools"))?,
        tool_config: x
            .get("tool_choice")
            .filter(|v| !v.is_null())
            .map(tool_config)
            .transpose()?,
        generation_config: generation_config(x)?,
        safety_settings: x
            .get("safety_settings")
            .or_else(|| x.get("safetySettings"))
            .cloned(),
    })
}

/// Appends parts to the last turn when it has the same role, else starts a new turn.
fn push_turn(contents: &mut Vec<Content>, role: &str, parts: Vec<Part>) {
    if parts.is_empty() {
        return; // Gemini rejects turns without parts.
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_string()),
            parts,
        }),
    }
}

fn str_field<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{at}.{key} must be a string"))
}

fn function_call_part(name: &str, args: Value) -> Part {
    Part {
        function_call: Some(FunctionCall {
            name: name.to_string(),
            args,
        }),
        ..Part::default()
    }
}

/// Parses OpenAI's JSON-string `arguments` into the object Gemini wants.
fn arguments(raw: Option<&Value>, at: &str) -> Result<Value, String> {
    match raw {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(o)) => Ok(Value::Object(o.clone())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(v),
            _ => Err(format!("{at}.arguments must be a JSON object")),
        },
        Some(_) => Err(format!("{at}.arguments must be a JSON string")),
    }
}

/// A tool result: its JSON object as is, anything else as `{"content": text}`.
fn tool_result(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    }
}

fn user_parts(content: &OpenAiContent, at: &str) -> Result<Vec<Part>, String> {
    let parts = match content {
        OpenAiContent::Text(t) if t.is_empty() => return Ok(Vec::new()),
        OpenAiContent::Text(t) => return Ok(vec![Part::text(t.clone())]),
        OpenAiContent::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "text" => {
                let text = str_field(p, "text", &at)?;
                if !text.is_empty() {
                    out.push(Part::text(text));
                }
            }
            "image_url" => {
                let url = match p.get("image_url") {
                    Some(Value::String(u)) => u.as_str(),
                    Some(obj) => str_field(obj, "url", &format!("{at}.image_url"))?,
                    None => return Err(format!("{at}.image_url is missing")),
                };
                out.push(media_part(url, None, &at)?);
            }
            "input_audio" => {
                let a = p.get("input_audio").unwrap_or(&Value::Null);
                let at = format!("{at}.input_audio");
                let format = str_field(a, "format", &at)?;
                out.push(Part {
                    inline_data: Some(InlineData {
                        mime_type: format!("audio/{format}"),
                        data: str_field(a, "data", &at)?.to_string(),
                    }),
                    ..Part::default()
                });
            }
            "file" => {
                let f = p.get("file").unwrap_or(&Value::Null);
                let mime = f.get("format").and_then(Value::as_str);
                let url = f
                    .get("file_data")
                    .or_else(|| f.get("file_id"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{at}.file needs file_data or file_id"))?;
                out.push(media_part(url, mime, &at)?);
            }
            other => {
                return Err(format!(
                    "{at}.type \"{other}\" is not a content part Gemini accepts"
                ))
            }
        }
    }
    Ok(out)
}

/// `data:` URLs become `inlineData`, anything else a `fileData` link.
fn media_part(url: &str, mime: Option<&str>, at: &str) -> Result<Part, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| format!("{at}: data URL has no ','"))?;
        let media_type = header
            .strip_suffix(";base64")
            .ok_or_else(|| format!("{at}: only base64 data URLs can be sent to Gemini"))?;
        let media_type = if media_type.is_empty() {
            mime.unwrap_or(DEFAULT_MEDIA_TYPE)
        } else {
            media_type
        };
        return Ok(Part {
            inline_data: Some(InlineData {
                mime_type: media_type.to_string(),
                data: data.to_string(),
            }),
            ..Part::default()
        });
    }
    Ok(Part {
        file_data: Some(FileData {
            mime_type: mime.unwrap_or_else(|| guess_media_type(url)).to_string(),
            file_uri: url.to_string(),
        }),
        ..Part::default()
    })
}

/// The media type implied by a URL's file extension.
fn guess_media_type(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let file = path.rsplit('/').next().unwrap_or(path);
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        "txt" => "text/plain",
        _ => DEFAULT_MEDIA_TYPE,
    }
}

/// OpenAI `tools` -> one Gemini tool holding every function declaration.
fn tools(raw: Option<&Value>) -> Result<Vec<Tool>, String> {
    let Some(list) = raw.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut decls = Vec::new();
    for (i, t) in list.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(format!(
                "tools[{i}].type: only function tools can be sent to Gemini"
            ));
        }
        let f = t.get("function").unwrap_or(&Value::Null);
        let at = format!("tools[{i}].function");
        let parameters = f.get("parameters").map(gemini_schema).filter(|p| {
            p.get("properties")
                .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()))
        });
        decls.push(FunctionDeclaration {
            name: str_field(f, "name", &at)?.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters,
        });
    }
    Ok(if decls.is_empty() {
        Vec::new()
    } else {
        vec![Tool {
            function_declarations: decls,
        }]
    })
}

/// OpenAI `tool_choice` -> `toolConfig.functionCallingConfig`.
fn tool_config(choice: &Value) -> Result<Value, String> {
    let mode = |m: &str| json!({"functionCallingConfig": {"mode": m}});
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(mode("AUTO")),
            "none" => Ok(mode("NONE")),
            "required" => Ok(mode("ANY")),
            other => Err(format!(
                "tool_choice \"{other}\" is not auto, none or required"
            )),
        },
        Value::Object(_) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or("tool_choice.function.name must be a string")?;
            Ok(json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}))
        }
        _ => Err("tool_choice must be a string or an object".into()),
    }
}

fn generation_config(x: &Map<String, Value>) -> Result<GenerationConfig, String> {
    let f = |k: &str| x.get(k).and_then(Value::as_f64);
    let stop = match x.get("stop") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or("stop must be a string or an array of strings")?,
        ),
        Some(_) => return Err("stop must be a string or an array of strings".into()),
    };
    let mut config = GenerationConfig {
        temperature: f("temperature"),
        top_p: f("top_p"),
        max_output_tokens: x
            .get("max_completion_tokens")
            .or_else(|| x.get("max_tokens"))
            .and_then(Value::as_u64),
        stop_sequences: stop,
        candidate_count: x.get("n").and_then(Value::as_u64),
        seed: x.get("seed").and_then(Value::as_i64),
        presence_penalty: f("presence_penalty"),
        frequency_penalty: f("frequency_penalty"),
        ..GenerationConfig::default()
    };
    if let Some(rf) = x.get("response_format").filter(|v| !v.is_null()) {
        match rf.get("type").and_then(Value::as_str) {
            Some("text") => {}
            Some("json_object") => config.response_mime_type = Some("application/json".into()),
            Some("json_schema") => {
                config.response_mime_type = Some("application/json".into());
                config.response_schema = rf.pointer("/json_schema/schema").map(gemini_schema);
            }
            _ => {
                return Err("response_format.type must be text, json_object or json_schema".into())
            }
        }
    }
    Ok(config)
}

/// Reduces a JSON Schema to the OpenAPI subset Gemini's `Schema` accepts.
///
/// Keeps only [`SCHEMA_KEYS`] (so `additionalProperties`, `$schema`, `strict`, `$id`, `$defs`,
/// `examples`, `const`, `oneOf` ... never reach Gemini, which rejects unknown keys), and
/// rewrites what has an equivalent: local `$ref`s are inlined (recursion is cut after
/// [`MAX_REF_DEPTH`] levels), `type: [T, "null"]` and `anyOf: [.., {type: null}]` become
/// `nullable`, `const` becomes a one-value `enum`, `oneOf` becomes `anyOf`, a single-item
/// `allOf` is inlined, and `format`s outside [`SCHEMA_FORMATS`] are dropped.
pub fn gemini_schema(schema: &Value) -> Value {
    clean_schema(schema, schema, 0)
}

fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let path = reference.strip_prefix('#')?;
    root.pointer(path)
}

fn clean_schema(s: &Value, root: &Value, depth: usize) -> Value {
    let Some(obj) = s.as_object() else {
        return json!({});
    };
    if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
        return match resolve_ref(root, r) {
            Some(target) if depth < MAX_REF_DEPTH => {
                let mut out = clean_schema(target, root, depth + 1);
                if let (Some(d), Some(o)) = (obj.get("description"), out.as_object_mut()) {
                    o.insert("description".into(), d.clone());
                }
                out
            }
            _ => json!({"type": "object"}),
        };
    }
    if let Some([only]) = obj
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        let mut merged = obj.clone();
        merged.remove("allOf");
        if let Some(inner) = only.as_object() {
            for (k, v) in inner {
                merged.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        return clean_schema(&Value::Object(merged), root, depth);
    }
    let mut out = Map::new();
    let mut nullable = false;
    for (k, v) in obj {
        match k.as_str() {
            "type" => match v {
                Value::Array(types) => {
                    nullable |= types.iter().any(|t| t == "null");
                    if let Some(t) = types.iter().find(|t| *t != "null") {
                        out.insert("type".into(), t.clone());
                    }
                }
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, p)| (name.clone(), clean_schema(p, root, depth)))
                    .collect();
                out.insert("properties".into(), Value::Object(props));
            }
            "items" => {
                let item = match v {
                    Value::Array(a) => a.first().cloned().unwrap_or(json!({})),
                    other => other.clone(),
                };
                out.insert("items".into(), clean_schema(&item, root, depth));
            }
            "anyOf" | "oneOf" => {
                let mut variants = Vec::new();
                for alt in v.as_array().into_iter().flatten() {
                    if alt.get("type").is_some_and(|t| t == "null") {
                        nullable = true;
                    } else {
                        variants.push(clean_schema(alt, root, depth));
                    }
                }
                match <[Value; 1]>::try_from(variants) {
                    Ok([single]) => {
                        if let Value::Object(o) = single {
                            for (k, v) in o {
                                out.entry(k).or_insert(v);
                            }
                        }
                    }
                    Err(variants) if !variants.is_empty() => {
                        out.insert("anyOf".into(), Value::Array(variants));
                    }
                    Err(_) => {}
                }
            }
            "const" => {
                out.insert("enum".into(), json!([v]));
            }
            "format" if v.as_str().is_some_and(|f| SCHEMA_FORMATS.contains(&f)) => {
                out.insert(k.clone(), v.clone());
            }
            "format" => {}
            "nullable" => nullable |= v.as_bool().unwrap_or(false),
            key if SCHEMA_KEYS.contains(&key) => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    if nullable {
        out.insert("nullable".into(), Value::Bool(true));
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Gemini response -> OpenAI response

/// Gemini's finish reason as OpenAI's; `called` says whether the candidate called functions.
pub fn finish_reason(reason: Option<&str>, called: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        // STOP, and reasons OpenAI has no word for (OTHER, MALFORMED_FUNCTION_CALL, ...).
        _ if called => "tool_calls",
        _ => "stop",
    }
}

/// The answer text (thinking parts excluded) and the OpenAI tool calls of one candidate's
/// parts; `next_call` numbers tool calls across the whole answer.
pub fn parts_to_openai(parts: &[Part], meta: &Meta, next_call: &mut usize) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in parts {
        if let Some(t) = &p.text {
            if p.thought != Some(true) {
                text.push_str(t);
            }
        }
        if let Some(fc) = &p.function_call {
            let args = if fc.args.is_null() {
                json!({})
            } else {
                fc.args.clone()
            };
            let mut id = meta.call_id(*next_call);
            if let Some(sig) = &p.thought_signature {
                id.push_str(THOUGHT_SEPARATOR);
                id.push_str(sig);
            }
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": fc.name, "arguments": args.to_string()},
            }));
            *next_call += 1;
        }
    }
    (text, calls)
}

/// Usage as the gateway counts it: thinking tokens are completion tokens.
pub fn usage(u: Option<&UsageMetadata>) -> Usage {
    let Some(u) = u else {
        return Usage::default();
    };
    let completion = u.candidates_token_count + u.thoughts_token_count;
    let total = if u.total_token_count > 0 {
        u.total_token_count
    } else {
        u.prompt_token_count + completion
    };
    Usage {
        prompt_tokens: u.prompt_token_count,
        completion_tokens: completion,
        total_tokens: total,
    }
}

/// OpenAI's `usage` object, with reasoning and cached-token details when Gemini gave them.
pub fn usage_json(u: Option<&UsageMetadata>) -> Value {
    let base = usage(u);
    let mut v = json!({
        "prompt_tokens": base.prompt_tokens,
        "completion_tokens": base.completion_tokens,
        "total_tokens": base.total_tokens,
    });
    if let (Some(u), Some(o)) = (u, v.as_object_mut()) {
        if u.thoughts_token_count > 0 {
            o.insert(
                "completion_tokens_details".into(),
                json!({"reasoning_tokens": u.thoughts_token_count}),
            );
        }
        if u.cached_content_token_count > 0 {
            o.insert(
                "prompt_tokens_details".into(),
                json!({"cached_tokens": u.cached_content_token_count}),
            );
        }
    }
    v
}

fn choice(position: usize, c: &Candidate, meta: &Meta, next_call: &mut usize) -> Value {
    let parts = c.content.as_ref().map_or(&[][..], |c| c.parts.as_slice());
    let (text, calls) = parts_to_openai(parts, meta, next_call);
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) },
    });
    if !calls.is_empty() {
        if let Some(m) = message.as_object_mut() {
            m.insert("tool_calls".into(), Value::Array(calls.clone()));
        }
    }
    json!({
        "index": c.index.unwrap_or(position as u64),
        "message": message,
        "logprobs": null,
        "finish_reason": finish_reason(c.finish_reason.as_deref(), !calls.is_empty()),
    })
}

/// A `chat.completion` body and its usage; `Err` when the answer has neither candidates nor
/// a block reason.
pub fn response(r: &GenerateContentResponse, meta: &Meta) -> Result<(Value, Usage), String> {
    let mut next_call = 0;
    let choices: Vec<Value> = if r.candidates.is_empty() {
        // A blocked prompt is an answer, not an error: empty content, filtered.
        let blocked = r
            .prompt_feedback
            .as_ref()
            .and_then(|f| f.block_reason.as_deref())
            .ok_or("the answer has no candidates and no block reason")?;
        tracing::debug!(block_reason = blocked, "gemini blocked the prompt");
        vec![json!({
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": null,
            "finish_reason": "content_filter",
        })]
    } else {
        r.candidates
            .iter()
            .enumerate()
            .map(|(i, c)| choice(i, c, meta, &mut next_call))
            .collect()
    };
    let id = r
        .response_id
        .as_ref()
        .map_or_else(|| meta.id.clone(), |rid| format!("chatcmpl-{rid}"));
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": meta.created,
        "model": r.model_version.as_deref().unwrap_or(&meta.model),
        "choices": choices,
        "usage": usage_json(r.usage_metadata.as_ref()),
    });
    Ok((body, usage(r.usage_metadata.as_ref())))
}

// ---------------------------------------------------------------------------------------------
// Embeddings

/// The `batchEmbedContents` body for an OpenAI embeddings request.
pub fn embed_request(req: &EmbeddingsRequest, model: &str) -> Result<BatchEmbedRequest, String> {
    let texts: Vec<&str> = match &req.input {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or("input: Gemini embeds text only, not token arrays")?,
        _ => return Err("input must be a string or an array of strings".into()),
    };
    let dims = req.extra.get("dimensions").and_then(Value::as_u64);
    Ok(BatchEmbedRequest {
        requests: texts
            .into_iter()
            .map(|t| EmbedRequest {
                model: format!("models/{model}"),
                content: Content {
                    role: None,
                    parts: vec![Part::text(t)],
                },
                output_dimensionality: dims,
            })
            .collect(),
    })
}

/// OpenAI's embeddings list. Gemini reports no token counts, so usage is zero.
pub fn embed_response(vectors: Vec<Vec<f64>>, model: &str) -> Value {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_json;

    fn chat(v: Value) -> ChatRequest {
        parse_json(v.to_string().as_bytes()).unwrap()
    }

    fn to_json(r: &GenerateContentRequest) -> Value {
        serde_json::to_value(r).unwrap()
    }

    fn meta() -> Meta {
        Meta {
            id: "chatcmpl-x".into(),
            created: 7,
            model: "gemini-2.0-flash".into(),
            call_prefix: "t".into(),
        }
    }

    #[test]
    fn system_and_roles_and_merging() {
        let r = request(&chat(json!({"model": "m", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "no emoji"}]},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": "there"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": ""},
            {"role": "user", "content": "bye"}
        ]})))
        .unwrap();
        let v = to_json(&r);
        assert_eq!(
            v["systemInstruction"],
            json!({"parts": [{"text": "be brief"}, {"text": "no emoji"}]})
        );
        assert_eq!(
            v["contents"],
            json!([
                {"role": "user", "parts": [{"text": "hi"}, {"text": "there"}]},
                {"role": "model", "parts": [{"text": "hello"}]},
                {"role": "user", "parts": [{"text": "bye"}]}
            ])
        );
        assert!(v.get("generationConfig").is_none());
        assert!(v.get("tools").is_none());
    }

    #[test]
    fn images_inline_and_linked() {
        let r = request(&chat(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a/cat.WEBP?sig=1"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/photo"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}
            ]}]}),
        ))
        .unwrap();
        let parts = &to_json(&r)["contents"][0]["parts"];
        assert_eq!(parts[0], json!({"text": "what is this"}));
        assert_eq!(
            parts[1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}})
        );
        assert_eq!(
            parts[2],
            json!({"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/a/cat.WEBP?sig=1"}})
        );
        assert_eq!(parts[3]["fileData"]["mimeType"], "image/jpeg");
        assert_eq!(parts[4]["inlineData"]["mimeType"], "audio/wav");

        let err = request(&chat(
            json!({"model": "m", "messages": [{"role": "user", "content": [
                {"type": "video_thing"}
            ]}]}),
        ))
        .unwrap_err();
        assert!(err.starts_with("messages[0].content[0].type"), "{err}");
    }

    #[test]
    fn tool_calls_and_results_with_name_lookup() {
        let r = request(&chat(json!({"model": "m", "messages": [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "clock", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "c2", "content": "noon"},
            {"role": "user", "content": "thanks"}
        ]})))
        .unwrap();
        let v = to_json(&r);
        assert_eq!(
            v["contents"][1],
            json!({"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}},
                 "thoughtSignature": "skip_thought_signature_validator"},
                {"functionCall": {"name": "clock", "args": {}}}
            ]})
        );
        assert_eq!(
            v["contents"][2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "clock", "response": {"content": "noon"}}},
                {"text": "thanks"}
            ]})
        );
        let err = request(&chat(json!({"model": "m", "messages": [
            {"role": "tool", "tool_call_id": "nope", "content": "x"}
        ]})))
        .unwrap_err();
        assert!(err.starts_with("messages[0].tool_call_id"), "{err}");
        let err = request(&chat(json!({"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "[1"}}]}
        ]})))
        .unwrap_err();
        assert!(err.contains("tool_calls[0].function.arguments"), "{err}");
    }

    #[test]
    fn thought_signatures_ride_in_the_call_id() {
        let (body, _) = response(
            &gemini(json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {}}, "thoughtSignature": "c2lnbmVk+/="},
                {"functionCall": {"name": "clock", "args": {}}}
            ]}, "finishReason": "STOP"}]})),
            &meta(),
        )
        .unwrap();
        let calls = body["choices"][0]["message"]["tool_calls"].clone();
        assert_eq!(calls[0]["id"], "call_t0__thought__c2lnbmVk+/=");
        assert_eq!(calls[1]["id"], "call_t1");
        let r = request(&chat(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_t0__thought__c2lnbmVk+/=", "content": "{}"}
        ]})))
        .unwrap();
        let v = to_json(&r);
        assert_eq!(
            v["contents"][1]["parts"][0]["thoughtSignature"],
            "c2lnbmVk+/="
        );
        assert!(v["contents"][1]["parts"][1]
            .get("thoughtSignature")
            .is_none());
        assert_eq!(
            v["contents"][2]["parts"][0]["functionResponse"]["name"],
            "weather"
        );
    }

    #[test]
    fn tools_and_schema_stripping() {
        let r = request(&chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {"type": "function", "function": {"name": "weather", "description": "Weather now", "strict": true,
                 "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "city": {"type": "string", "format": "uri", "examples": ["Paris"]},
                        "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                        "when": {"$ref": "#/$defs/When", "description": "time"},
                        "tags": {"type": "array", "items": {"type": "string", "const": "a"}},
                        "pick": {"anyOf": [{"type": "integer"}, {"type": "null"}]}
                    },
                    "required": ["city"],
                    "$defs": {"When": {"type": "string", "format": "date-time", "additionalProperties": false}}
                 }}},
                {"type": "function", "function": {"name": "noargs", "parameters": {"type": "object", "properties": {}}}}
            ]})))
        .unwrap();
        let v = to_json(&r);
        let decls = &v["tools"][0]["functionDeclarations"];
        assert_eq!(decls[0]["name"], "weather");
        assert_eq!(decls[0]["description"], "Weather now");
        assert_eq!(
            decls[0]["parameters"],
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["c", "f"], "nullable": true},
                    "when": {"type": "string", "format": "date-time", "description": "time"},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["a"]}},
                    "pick": {"type": "integer", "nullable": true}
                },
                "required": ["city"]
            })
        );
        assert_eq!(
            decls[1],
            json!({"name": "noargs"}),
            "empty parameters are left out"
        );
        let recursive = json!({"type": "object", "properties": {"next": {"$ref": "#"}}});
        let cleaned = gemini_schema(&recursive);
        assert!(cleaned.to_string().len() < 4096, "recursion is cut off");
    }

    #[test]
    fn tool_choice_variants() {
        let with = |choice: Value| {
            let r = request(&chat(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tool_choice": choice}),
            ))
            .unwrap();
            to_json(&r)["toolConfig"]["functionCallingConfig"].clone()
        };
        assert_eq!(with(json!("auto")), json!({"mode": "AUTO"}));
        assert_eq!(with(json!("none")), json!({"mode": "NONE"}));
        assert_eq!(with(json!("required")), json!({"mode": "ANY"}));
        assert_eq!(
            with(json!({"type": "function", "function": {"name": "weather"}})),
            json!({"mode": "ANY", "allowedFunctionNames": ["weather"]})
        );
        assert!(request(&chat(
            json!({"model": "m", "messages": [], "tool_choice": "sometimes"})
        ))
        .is_err());
    }

    #[test]
    fn generation_config_fields() {
        let r = request(&chat(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "max_completion_tokens": 60,
            "stop": "END", "n": 2, "seed": 5, "presence_penalty": 0.5, "frequency_penalty": -0.5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true,
                "schema": {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string"}}}}},
            "safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]
        })))
        .unwrap();
        let v = to_json(&r);
        assert_eq!(
            v["generationConfig"],
            json!({
                "temperature": 0.2, "topP": 0.9, "maxOutputTokens": 60, "stopSequences": ["END"],
                "candidateCount": 2, "responseMimeType": "application/json",
                "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
                "seed": 5, "presencePenalty": 0.5, "frequencyPenalty": -0.5
            })
        );
        assert_eq!(v["safetySettings"][0]["threshold"], "BLOCK_NONE");
        let r = request(&chat(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}, "stop": ["a", "b"]}),
        ))
        .unwrap();
        let v = to_json(&r);
        assert_eq!(
            v["generationConfig"]["responseMimeType"],
            "application/json"
        );
        assert_eq!(v["generationConfig"]["stopSequences"], json!(["a", "b"]));
        assert!(v["generationConfig"].get("responseSchema").is_none());
    }

    fn gemini(v: Value) -> GenerateContentResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn text_answer() {
        let (body, usage) = response(
            &gemini(json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "thinking...", "thought": true}, {"text": "Hello "}, {"text": "world"}
                ]}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 3, "totalTokenCount": 9},
                "modelVersion": "gemini-2.0-flash-001"
            })),
            &meta(),
        )
        .unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["id"], "chatcmpl-x");
        assert_eq!(body["model"], "gemini-2.0-flash-001");
        assert_eq!(body["choices"][0]["message"]["content"], "Hello world");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 4,
                completion_tokens: 5,
                total_tokens: 9
            }
        );
        assert_eq!(
            body["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
        assert_eq!(body["usage"]["total_tokens"], 9);
    }

    #[test]
    fn function_call_answer() {
        let (body, _) = response(
            &gemini(
                json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "clock"}}
            ]}, "finishReason": "STOP"}]}),
            ),
            &meta(),
        )
        .unwrap();
        let m = &body["choices"][0]["message"];
        assert_eq!(m["content"], Value::Null);
        assert_eq!(m["tool_calls"][0]["id"], "call_t0");
        assert_eq!(m["tool_calls"][0]["type"], "function");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(m["tool_calls"][1]["id"], "call_t1");
        assert_eq!(m["tool_calls"][1]["function"]["arguments"], "{}");
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn finish_reasons() {
        for (gemini_reason, called, openai) in [
            (Some("STOP"), false, "stop"),
            (Some("STOP"), true, "tool_calls"),
            (Some("MAX_TOKENS"), false, "length"),
            (Some("MAX_TOKENS"), true, "length"),
            (Some("SAFETY"), false, "content_filter"),
            (Some("RECITATION"), false, "content_filter"),
            (Some("BLOCKLIST"), false, "content_filter"),
            (Some("PROHIBITED_CONTENT"), false, "content_filter"),
            (Some("SPII"), false, "content_filter"),
            (Some("OTHER"), false, "stop"),
            (None, false, "stop"),
        ] {
            assert_eq!(
                finish_reason(gemini_reason, called),
                openai,
                "{gemini_reason:?}"
            );
        }
        let (body, _) = response(
            &gemini(json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]})),
            &meta(),
        )
        .unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(body["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn blocked_prompt_is_a_filtered_answer() {
        let (body, usage) = response(
            &gemini(json!({"promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": {"promptTokenCount": 6, "totalTokenCount": 6}})),
            &meta(),
        )
        .unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(body["choices"][0]["message"]["content"], "");
        assert_eq!(usage.prompt_tokens, 6);
        assert!(response(&gemini(json!({})), &meta()).is_err());
    }

    #[test]
    fn embeddings_both_ways() {
        let req: EmbeddingsRequest =
            parse_json(br#"{"model":"e","input":["a","b"],"dimensions":8}"#).unwrap();
        let v = serde_json::to_value(embed_request(&req, "text-embedding-004").unwrap()).unwrap();
        assert_eq!(
            v["requests"][1],
            json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 8})
        );
        let req: EmbeddingsRequest = parse_json(br#"{"model":"e","input":[[1,2]]}"#).unwrap();
        assert!(embed_request(&req, "x").is_err());
        let body = embed_response(vec![vec![0.5], vec![0.25]], "text-embedding-004");
        assert_eq!(body["data"][1]["index"], 1);
        assert_eq!(body["data"][1]["embedding"][0], 0.25);
        assert_eq!(body["object"], "list");
    }
}
