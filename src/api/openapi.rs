//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json` (no key needed).
//!
//! Owns the document's assembly (which operations, security schemes, shared responses) and the
//! schemas of bodies that the handlers read or write as raw JSON (chat requests are parsed
//! leniently and passed through, so they have no Rust type of their own to derive from). The
//! operations themselves are the `#[utoipa::path]` attributes next to each handler; a handler's
//! behaviour is never changed here. Routes also served without the `/v1` prefix are documented
//! once, under `/v1`.

use crate::error::ApiError;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Map, Value};
use std::sync::LazyLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

/// The whole document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Self-hosted AI API gateway with a local semantic cache. OpenAI-compatible \
            endpoints under `/v1` (also served without the prefix), Anthropic's Messages API, and \
            the admin API under `/admin` (master key or an admin virtual key).",
    ),
    paths(
        super::chat::chat_completions,
        super::chat::embeddings,
        super::messages::messages,
        super::responses::create,
        super::responses::connect,
        super::responses::retrieve,
        super::responses::delete,
        super::responses::input_items,
        super::realtime::connect,
        super::models::list,
        super::models::get,
        super::admin::get_config,
        super::admin::put_config,
        super::admin::stats,
        super::admin::lookup,
        super::admin::flush,
        super::admin::delete_entry,
        super::keys::create,
        super::keys::list,
        super::keys::get,
        super::keys::update,
        super::keys::revoke,
        super::keys::rotate,
        super::keys::litellm_generate,
        super::keys::litellm_info,
        super::keys::litellm_update,
        super::keys::litellm_delete,
        super::spend::report,
        super::audit::list,
        super::spend::token_counter,
        super::health::health,
        super::health::liveness,
        super::health::liveliness,
        super::health::readiness,
        super::health::metrics,
        serve,
    ),
    components(responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        TooManyRequests,
        UpstreamFailure,
        ServerError,
    )),
    modifiers(&Security),
    tags(
        (name = "openai", description = "OpenAI-compatible API"),
        (name = "anthropic", description = "Anthropic Messages API"),
        (name = "admin", description = "Admin API: master key or an admin virtual key"),
        (name = "ops", description = "Health probes, metrics and this document"),
    ),
)]
pub struct ApiDoc;

/// Adds the two ways of presenting a key: `Authorization: Bearer` and `x-api-key`.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The master key or a virtual key (`sk-sluice-...`)".to_string(),
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The same key in Anthropic's header",
            ))),
        );
    }
}

/// The document as JSON, built once.
static DOCUMENT: LazyLock<Result<String, String>> =
    LazyLock::new(|| ApiDoc::openapi().to_json().map_err(|e| e.to_string()));

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json"),
    ),
)]
pub async fn serve() -> HttpResponse {
    match &*DOCUMENT {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json.clone()),
        Err(e) => ApiError::Internal(format!("openapi document: {e}")).error_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// OpenAI's error body, used by every endpoint except `/v1/messages`.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema: never built, only described
pub struct ErrorBody {
    /// The error.
    error: ErrorDetail,
}

/// The error inside [`ErrorBody`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// What went wrong, for a human.
    message: String,
    /// `invalid_request_error`, `rate_limit_error`, `budget_exceeded`, `pii_detected`,
    /// `upstream_error`, `server_error`, ...
    #[schema(rename = "type")]
    kind: String,
    /// The request field at fault, as a JSON path.
    param: Option<String>,
    /// A machine-readable code (`invalid_api_key`, `model_not_found`, `rate_limit_exceeded`, ...).
    code: Option<String>,
}

/// Anthropic's error body, used by `/v1/messages`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnthropicErrorBody {
    /// Always `error`.
    #[schema(rename = "type", pattern = "^error$")]
    kind: String,
    /// The error.
    error: AnthropicErrorDetail,
}

/// The error inside [`AnthropicErrorBody`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `api_error`, `overloaded_error`, ...
    #[schema(rename = "type")]
    kind: String,
    /// What went wrong.
    message: String,
}

/// 400: a malformed body, query or header; `param` names the field.
#[derive(ToResponse)]
#[response(description = "Invalid request: `error.param` names the bad field")]
#[allow(dead_code)]
pub struct BadRequest(ErrorBody);

/// 401: no key, a wrong key or an expired key.
#[derive(ToResponse)]
#[response(description = "Missing, invalid or expired key")]
#[allow(dead_code)]
pub struct Unauthorized(ErrorBody);

/// 403: the key may not do this.
#[derive(ToResponse)]
#[response(description = "The key may not use this model or endpoint")]
#[allow(dead_code)]
pub struct Forbidden(ErrorBody);

/// 404: no such thing.
#[derive(ToResponse)]
#[response(description = "Not found")]
#[allow(dead_code)]
pub struct NotFound(ErrorBody);

/// 405: the route exists, the method does not.
#[derive(ToResponse)]
#[response(description = "Method not allowed on this route")]
#[allow(dead_code)]
pub struct MethodNotAllowed(ErrorBody);

/// 413: the body is over `sluice.max_request_body_bytes`.
#[derive(ToResponse)]
#[response(description = "Request body too large")]
#[allow(dead_code)]
pub struct PayloadTooLarge(ErrorBody);

/// 429: a rate limit or a budget refused the request (`Retry-After` says when to retry).
#[derive(ToResponse)]
#[response(
    description = "Rate limit or budget exceeded",
    headers(("retry-after" = String, description = "Seconds to wait before retrying"))
)]
#[allow(dead_code)]
pub struct TooManyRequests(ErrorBody);

/// 5xx: the upstream provider failed, timed out or answered nonsense.
#[derive(ToResponse)]
#[response(description = "Upstream failure (502 bad gateway, 503, 504 timeout) or internal error")]
#[allow(dead_code)]
pub struct UpstreamFailure(ErrorBody);

/// 500: a storage failure or a bug; details only in the gateway's log.
#[derive(ToResponse)]
#[response(description = "Internal error (storage failure); details only in the log")]
#[allow(dead_code)]
pub struct ServerError(ErrorBody);

// ---------------------------------------------------------------------------------------------
// Request controls shared by the model endpoints

/// Per-request cache controls and the end-user id, as headers.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct CacheHeaders {
    /// `no-cache` (skip the lookup) and/or `no-store` (do not write the answer).
    #[param(rename = "cache-control", required = false)]
    cache_control: String,
    /// Similarity a semantic hit needs for this request, in (0, 1].
    #[param(
        rename = "x-sluice-cache-threshold",
        required = false,
        pattern = r"^(0?\.0*[1-9][0-9]{0,5}|1(\.0*)?)$"
    )]
    threshold: String,
    /// Time to live of the entry this request writes, in seconds.
    #[param(
        rename = "x-sluice-cache-ttl",
        required = false,
        pattern = "^[1-9][0-9]{0,8}$"
    )]
    ttl: String,
    /// Cache namespace (master key only; ignored for virtual keys, which have their own).
    #[param(
        rename = "x-sluice-cache-namespace",
        required = false,
        pattern = "^[A-Za-z0-9_.:/-]{1,128}$"
    )]
    namespace: String,
}

/// LiteLLM's body field `cache`: per-request cache controls (never sent upstream).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CacheBodyControl {
    /// Skip the lookup.
    #[schema(rename = "no-cache")]
    no_cache: Option<bool>,
    /// Do not write the answer.
    #[schema(rename = "no-store")]
    no_store: Option<bool>,
    /// Time to live of the written entry, in seconds.
    #[schema(exclusive_minimum = 0)]
    ttl: Option<f64>,
    /// Cache namespace (master key only).
    #[schema(pattern = "^[A-Za-z0-9_.:/-]{1,128}$")]
    namespace: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Chat completions

/// `POST /v1/chat/completions` body. Fields not listed are passed to the provider unchanged.
#[derive(ToSchema)]
#[schema(
    example = json!({"model": "mock", "messages": [{"role": "user", "content": "Say hello"}]})
)]
#[allow(dead_code)]
pub struct ChatCompletionRequest {
    /// A model group (or `auto`).
    #[schema(min_length = 1)]
    model: String,
    /// The conversation; at least one message.
    #[schema(min_items = 1)]
    messages: Vec<ChatMessage>,
    /// Answer as server-sent events.
    stream: Option<bool>,
    /// Only with `stream: true`: `{"include_usage": true}` adds a last chunk with usage.
    stream_options: Option<StreamOptions>,
    /// End-user id (limits, budgets, spend by user).
    user: Option<String>,
    /// Per-request cache controls.
    cache: Option<CacheBodyControl>,
}

/// `stream_options`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    include_usage: Option<bool>,
}

/// Author of a message.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Role {
    /// System prompt.
    System,
    /// Developer instructions.
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
    /// A legacy function result.
    Function,
}

/// One message; `name`, `tool_calls`, `tool_call_id`, ... pass through.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChatMessage {
    /// Who wrote it.
    role: Role,
    /// Text, or a list of typed parts; absent or null for some assistant tool calls.
    content: Option<MessageContent>,
}

/// Message content.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": ...}, {"type": "image_url", ...}]`.
    Parts(Vec<ContentPart>),
}

/// One content part: an object with a string `type`.
#[derive(ToSchema, serde::Serialize)]
#[allow(dead_code)]
pub struct ContentPart {
    /// `text`, `image_url`, `input_audio`, ...
    #[serde(rename = "type")]
    kind: String,
}

/// A chat completion (non-streamed answer).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ChatCompletion {
    /// Completion id.
    id: String,
    /// `chat.completion`.
    object: String,
    /// Unix seconds.
    created: Option<i64>,
    /// The model that answered.
    model: Option<String>,
    /// The answers.
    choices: Vec<Object>,
    /// Token usage.
    usage: Option<Usage>,
}

/// Token usage.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Usage {
    /// Tokens in the prompt.
    prompt_tokens: Option<u64>,
    /// Tokens in the answer.
    completion_tokens: Option<u64>,
    /// Both.
    total_tokens: Option<u64>,
}

/// Any JSON object.
pub type Object = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Embeddings

/// `POST /v1/embeddings` body; other fields pass through.
#[derive(ToSchema)]
#[schema(
    example = json!({"model": "mock-embedding", "input": "hello"})
)]
#[allow(dead_code)]
pub struct EmbeddingsRequest {
    /// A model group serving embeddings.
    model: String,
    /// A string, or a non-empty list of strings or token arrays.
    input: EmbeddingsInput,
    /// End-user id.
    user: Option<String>,
}

/// Embeddings input.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EmbeddingsInput {
    /// One text.
    Text(String),
    /// Texts or token arrays (at least one).
    Many(Vec<Value>),
}

/// The embeddings list.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EmbeddingsResponse {
    /// `list`.
    object: String,
    /// One `{"object": "embedding", "index", "embedding"}` per input.
    data: Vec<Object>,
    /// The model that answered.
    model: Option<String>,
    /// Token usage.
    usage: Option<Object>,
}

// ---------------------------------------------------------------------------------------------
// Anthropic Messages

/// `POST /v1/messages` body (Anthropic's Messages API); other fields pass through.
#[derive(ToSchema)]
#[schema(
    example = json!({"model": "mock", "max_tokens": 64,
                     "messages": [{"role": "user", "content": "Say hello"}]})
)]
#[allow(dead_code)]
pub struct MessagesRequest {
    /// A model group.
    model: String,
    /// Alternating user and assistant turns.
    messages: Vec<AnthropicMessage>,
    /// Most tokens to generate.
    max_tokens: u64,
    /// A string or a list of text blocks.
    system: Option<Value>,
    /// Stop sequences.
    stop_sequences: Option<Vec<String>>,
    /// Sampling temperature.
    temperature: Option<f64>,
    /// Nucleus sampling.
    top_p: Option<f64>,
    /// Top-k sampling.
    top_k: Option<u64>,
    /// Answer as server-sent events in Anthropic's event format.
    stream: Option<bool>,
    /// `{"user_id": ...}`.
    metadata: Option<Object>,
    /// Tool definitions.
    tools: Option<Vec<Object>>,
    /// Tool choice.
    tool_choice: Option<Object>,
}

/// One Anthropic message.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnthropicMessage {
    /// `user` or `assistant`.
    role: AnthropicRole,
    /// Text, or a list of content blocks.
    content: AnthropicContent,
}

/// Author of an Anthropic message.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum AnthropicRole {
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// Anthropic message content.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum AnthropicContent {
    /// Plain text.
    Text(String),
    /// Content blocks (`text`, `image`, `tool_use`, `tool_result`, ...).
    Blocks(Vec<ContentPart>),
}

/// An Anthropic message (non-streamed answer).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AnthropicMessageResponse {
    /// Message id.
    id: String,
    /// `message`.
    #[schema(rename = "type")]
    kind: String,
    /// `assistant`.
    role: String,
    /// Content blocks.
    content: Vec<Object>,
    /// The model that answered.
    model: Option<String>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`.
    stop_reason: Option<String>,
    /// `input_tokens`, `output_tokens`.
    usage: Option<Object>,
}

// ---------------------------------------------------------------------------------------------
// Responses

/// `POST /v1/responses` body (OpenAI's Responses API); other fields pass through.
#[derive(ToSchema)]
#[schema(
    example = json!({"model": "mock", "input": "Say hello"})
)]
#[allow(dead_code)]
pub struct ResponsesRequest {
    /// A model group.
    model: String,
    /// A string, or a list of input items.
    input: Option<Value>,
    /// System-level instructions.
    instructions: Option<Value>,
    /// Tool definitions.
    tools: Option<Vec<Value>>,
    /// Tool choice.
    tool_choice: Option<Value>,
    /// Text format options.
    text: Option<Value>,
    /// Most tokens to generate.
    max_output_tokens: Option<u64>,
    /// Sampling temperature.
    temperature: Option<f64>,
    /// Nucleus sampling.
    top_p: Option<f64>,
    /// Metadata kept with the stored response.
    metadata: Option<Object>,
    /// Store the response for retrieval and `previous_response_id` (default true).
    store: Option<bool>,
    /// Continue from a stored response of this key.
    previous_response_id: Option<String>,
    /// End-user id.
    user: Option<String>,
    /// Allow parallel tool calls.
    parallel_tool_calls: Option<bool>,
    /// Answer as server-sent events.
    stream: Option<bool>,
    /// Reasoning options.
    reasoning: Option<Value>,
    /// Per-request cache controls.
    cache: Option<CacheBodyControl>,
}

/// A response object.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResponseObject {
    /// `resp_...`.
    id: String,
    /// `response`.
    object: String,
    /// `completed`, `incomplete`, `failed`, ...
    status: Option<String>,
    /// Output items.
    output: Option<Vec<Object>>,
}

/// The answer to a delete.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ResponseDeleted {
    /// The deleted id.
    id: String,
    /// `response`.
    object: String,
    /// Always true.
    deleted: bool,
}

/// Query of `GET /v1/responses/{id}/input_items`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InputItemsQuery {
    /// `asc` or `desc` (default `desc`).
    order: Option<String>,
    /// 1 to 100 (default 20).
    limit: Option<i64>,
    /// An item id: list the items after it.
    after: Option<String>,
}

/// A page of items.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ItemList {
    /// `list`.
    object: String,
    /// The items.
    data: Vec<Object>,
    /// Id of the first item, null on an empty page.
    first_id: Option<String>,
    /// Id of the last item, null on an empty page.
    last_id: Option<String>,
    /// Whether more items follow.
    has_more: bool,
}

// ---------------------------------------------------------------------------------------------
// Models

/// A model group as OpenAI's model object.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Model {
    /// The group name.
    id: String,
    /// `model`.
    object: String,
    /// Unix seconds (the gateway's start).
    created: u64,
    /// `sluice`.
    owned_by: String,
}

/// The model list.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ModelList {
    /// `list`.
    object: String,
    /// The groups the key may use.
    data: Vec<Model>,
}

// ---------------------------------------------------------------------------------------------
// Admin: cache

/// Live cache settings. `PUT` takes any subset; the result must validate as a whole.
#[derive(ToSchema)]
#[schema(example = json!({"default_threshold": 0.9}))]
#[allow(dead_code)]
pub struct CacheSettingsDoc {
    /// Whether chat completions consult and fill the cache.
    #[schema(required = false)]
    enabled: bool,
    /// Similarity a semantic candidate needs, in (0, 1].
    #[schema(required = false)]
    default_threshold: f32,
    /// Threshold per model group.
    #[schema(required = false)]
    group_thresholds: std::collections::BTreeMap<String, f32>,
    /// Threshold per namespace (wins over the group's).
    #[schema(required = false)]
    namespace_thresholds: std::collections::BTreeMap<String, f32>,
    /// Time to live of new entries in seconds; null: never expire.
    default_ttl_seconds: Option<u64>,
    /// Most entries kept.
    max_entries: Option<u64>,
    /// Most bytes of entries kept.
    max_bytes: Option<u64>,
}

/// The answer of a dry-run lookup.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LookupResult {
    /// The group the model resolved to.
    model_group: String,
    /// The namespace searched.
    namespace: String,
    /// The threshold applied.
    threshold: f32,
    /// Whether the request has a semantic scope (else exact match only).
    semantic: bool,
    /// Nearest entries with similarity and verdict.
    candidates: Vec<Object>,
}

/// The answer of a flush.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Flushed {
    /// Entries deleted.
    deleted: u64,
}

/// The answer of an entry delete.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EntryDeleted {
    /// The entry id.
    id: u64,
    /// Always true.
    deleted: bool,
}

// ---------------------------------------------------------------------------------------------
// Admin: keys

/// Fields of a virtual key (create and update); `null` clears a field on update.
#[derive(ToSchema)]
#[schema(example = json!({"alias": "team-a", "rpm": 60}))]
#[allow(dead_code)]
pub struct KeyFields {
    /// Human name, 1-256 characters.
    alias: Option<String>,
    /// Model groups the key may use; empty or null: all.
    models: Option<Vec<String>>,
    /// Requests per minute, > 0.
    rpm: Option<u64>,
    /// Tokens per minute, > 0.
    tpm: Option<u64>,
    /// Concurrent requests, > 0.
    max_parallel_requests: Option<u64>,
    /// Budget in USD, >= 0.
    max_budget: Option<f64>,
    /// Budget window: `30s`, `15m`, `1h`, `1d`, `30d`, `2w`.
    budget_duration: Option<String>,
    /// RFC 3339 time, or a duration from now (`30d`).
    expires: Option<String>,
    /// Cache namespace, 1-128 of `[A-Za-z0-9-_.:/]` (default: the key id).
    cache_namespace: Option<String>,
    /// `"default"`, `"off"`, or `{"mode": "threshold", "threshold": 0.9}`.
    cache_policy: Option<Value>,
    /// Any JSON object.
    metadata: Option<Object>,
    /// Owner user id.
    user_id: Option<String>,
    /// Owner team id.
    team_id: Option<String>,
    /// May use `/admin` and the key endpoints.
    admin: Option<bool>,
    /// PII policy of the key: `{"prompts": ..., "responses": ...}`.
    pii: Option<Object>,
}

/// A virtual key record (never its secret, except `key` on create and rotate).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KeyRecord {
    /// `key_` + 16 hex.
    id: String,
    /// `active`, `expired` or `revoked`.
    status: String,
    /// The secret: only in the answers of create and rotate.
    key: Option<String>,
}

/// The key list.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KeyList {
    /// `list`.
    object: String,
    /// Every key, oldest first.
    data: Vec<KeyRecord>,
}

/// Body of a rotation.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RotateBody {
    /// Seconds the old secret keeps working (default 86400, 0 = stops at once).
    grace_seconds: Option<u64>,
}

/// LiteLLM's `/key/update` body: the key and the fields to change.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LiteLlmUpdate {
    /// Key id, secret or sha256 hex.
    key: String,
}

/// LiteLLM's `/key/delete` body.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LiteLlmDelete {
    /// Key ids, secrets or sha256 hexes.
    keys: Vec<String>,
}

/// LiteLLM's `/key/delete` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LiteLlmDeleted {
    /// Ids of the revoked keys.
    deleted_keys: Vec<String>,
}

/// LiteLLM's `/key/info` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LiteLlmInfo {
    /// Key id.
    key: String,
    /// The record, with LiteLLM's field names next to Sluice's.
    info: KeyRecord,
}

// ---------------------------------------------------------------------------------------------
// Admin: spend and audit, token counter

/// Spend report.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SpendReport {
    /// `key`, `user`, `model` or `day`.
    group_by: String,
    /// First day (YYYY-MM-DD).
    from: String,
    /// Last day (YYYY-MM-DD).
    to: String,
    /// One row per group.
    rows: Vec<Object>,
    /// Sum of the rows.
    total: Object,
}

/// A page of audit records.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditPage {
    /// `list`.
    object: String,
    /// Records in sequence order.
    data: Vec<Object>,
    /// Whether another page follows.
    has_more: bool,
    /// The `cursor` of the next page (a number as a string); null on the last one.
    next_cursor: Option<String>,
}

/// The token count.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenCount {
    /// Tokens of the prompt.
    total_tokens: u64,
    /// The model asked for.
    request_model: String,
    /// The model whose tokenizer counted.
    model_used: String,
    /// `openai_tokenizer` or an estimate.
    tokenizer_type: String,
    /// BPE name, when one was used.
    encoding: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Health

/// `/health` answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Health {
    /// `healthy` or `not_ready`.
    status: String,
    /// Gateway version.
    version: String,
    /// Seconds since start.
    uptime_seconds: u64,
    /// Configured model groups.
    model_groups: Vec<String>,
    /// Number of deployments.
    deployments: u64,
}

/// A probe's answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Probe {
    /// `alive`, `ready` or `not_ready`.
    status: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_with_both_key_schemes() {
        let doc: Value = serde_json::from_str(DOCUMENT.as_ref().unwrap()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["api_key"]["name"], "x-api-key");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/chat/completions",
            "/v1/responses/{id}/input_items",
            "/admin/keys/{id}/rotate",
            "/admin/audit",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
    }
}
