//! WebSocket mode of the Responses API: `GET /v1/responses` with an Upgrade.
//!
//! Each `response.create` client event (the create body minus `stream`, at the top level next
//! to `type`) runs one response through [`super::create`] (the HTTP handler's code path:
//! limits, budgets, routing, cache, spend, store), always streamed; its server events are the
//! HTTP SSE events' `data`, one JSON text frame each. Responses run one after another; events
//! that arrive while one runs wait their turn (up to [`MAX_QUEUED`]).
//!
//! The connection keeps the responses it produced with `store: false` in memory, so that a
//! `previous_response_id` naming one of them continues it on this socket (and nowhere else);
//! stored responses are continued from the store as over HTTP.
//!
//! A bad client event (broken JSON, unknown `type`, bad field) or a refused create (rate limit,
//! budget, unknown model) gets an `error` event and the socket stays usable. Pings are answered,
//! an idle socket is closed (1000) after `sluice.realtime.idle_timeout_seconds`, a message over
//! `sluice.realtime.max_message_bytes` closes it (1009), and the per-key socket count is the
//! realtime one. Closing the socket drops the response in flight, which cancels its upstream
//! call.

use super::translate::{self, ResponsesRequest};
use super::{ResponseStore, ResponsesError};
use crate::api::PendingRecord;
use crate::auth::Principal;
use crate::cache;
use crate::error::ApiError;
use crate::limits;
use crate::pipeline::{Caller, ReplyBody};
use crate::realtime::SocketSlot;
use crate::state::AppState;
use crate::stream::{event_data, OnEnd, SseSplitter};
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::ResponseError;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError, Session};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;

/// The endpoint audit records of WebSocket-mode responses name.
pub const WS_ENDPOINT: &str = "/v1/responses (websocket)";

/// Client events waiting while a response runs; one more gets an `error` event.
pub const MAX_QUEUED: usize = 16;
/// `store: false` responses a connection remembers for `previous_response_id` (oldest dropped).
pub const MAX_REMEMBERED: usize = 256;

/// An admitted socket: who it is and its place in the per-key socket count.
pub struct Connection {
    /// The key of the handshake.
    pub principal: Principal,
    /// The handshake's headers (cache controls, end user), read again for every create.
    pub headers: HeaderMap,
    /// Freed when the socket ends.
    pub slot: SocketSlot,
    /// The handshake's request id; each response's audit record is `{request_id}.{n}`.
    pub request_id: String,
}

/// A `store: false` response this connection produced: what continues it.
struct Remembered {
    input_items: Vec<Value>,
    response: Value,
}

/// The events of one response, as JSON text.
type Events = Pin<Box<dyn Stream<Item = String>>>;

/// One response being streamed.
struct Turn {
    events: Events,
    /// Input items (chain included), when the response is to be remembered (`store: false`).
    remember: Option<Vec<Value>>,
    /// A `previous_response_id` resolved from this connection's memory: put back into the
    /// Response objects of the events (the create itself ran without it).
    previous: Option<String>,
}

/// How the socket ended.
#[derive(Debug)]
enum End {
    ClientClosed(Option<CloseReason>),
    ClientGone,
    TooBig,
    Broken(String),
    Idle,
}

/// Serves one socket until it ends.
pub async fn run(
    state: Arc<AppState>,
    conn: Connection,
    mut session: Session,
    stream: actix_ws::MessageStream,
) {
    let cfg = state.config.realtime;
    let mut stream = stream
        .max_frame_size(cfg.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(cfg.max_message_bytes);
    let mut socket = Socket {
        state,
        principal: conn.principal,
        headers: conn.headers,
        request_id: conn.request_id,
        turns: 0,
        remembered: HashMap::new(),
        order: VecDeque::new(),
    };
    let idle = cfg.idle_timeout;
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    let mut queue: VecDeque<ByteString> = VecDeque::new();
    let mut turn: Option<Turn> = None;
    let end = loop {
        if turn.is_none() {
            while let Some(text) = queue.pop_front() {
                match socket.start(&text).await {
                    Ok(t) => {
                        turn = Some(t);
                        break;
                    }
                    Err(event) => {
                        if session.text(event).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        tokio::select! {
            msg = stream.recv() => {
                deadline.as_mut().reset(Instant::now() + idle);
                match msg {
                    None => break End::ClientGone,
                    Some(Err(ProtocolError::Overflow)) => break End::TooBig,
                    Some(Err(ProtocolError::Io(e))) if e.to_string().contains("maximum continuation size") => break End::TooBig,
                    Some(Err(e)) => break End::Broken(e.to_string()),
                    Some(Ok(AggregatedMessage::Close(r))) => break End::ClientClosed(r),
                    Some(Ok(AggregatedMessage::Ping(b))) => {
                        if session.pong(&b).await.is_err() {
                            break End::ClientGone;
                        }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        let e = error_event(StatusCode::BAD_REQUEST, "invalid_request_error", Some("invalid_event"), "binary frames are not supported: send client events as JSON text", None);
                        if session.text(e).await.is_err() {
                            break End::ClientGone;
                        }
                    }
                    Some(Ok(AggregatedMessage::Text(t))) => {
                        if queue.len() >= MAX_QUEUED {
                            let e = error_event(StatusCode::TOO_MANY_REQUESTS, "invalid_request_error", Some("too_many_queued_events"), &format!("{MAX_QUEUED} client events are already waiting for the response in progress"), None);
                            if session.text(e).await.is_err() {
                                break End::ClientGone;
                            }
                        } else {
                            queue.push_back(t);
                        }
                    }
                }
            }
            event = next_event(&mut turn) => {
                deadline.as_mut().reset(Instant::now() + idle);
                match event {
                    Some(text) => {
                        let text = match &turn {
                            Some(t) => socket.observe(t, text),
                            None => text,
                        };
                        if session.text(text).await.is_err() {
                            break End::ClientGone;
                        }
                    }
                    None => turn = None,
                }
            }
            () = &mut deadline => break End::Idle,
        }
    };
    // Drops the response in flight first: its upstream call is cancelled.
    drop(turn);
    tracing::debug!(key = %socket.principal.key_id(), end = ?end, "responses socket closed");
    let reason = match end {
        End::ClientClosed(r) => r,
        End::ClientGone => None,
        End::TooBig => Some(reason(CloseCode::Size, "message too big")),
        End::Broken(why) => {
            tracing::debug!(error = %why, "responses socket client broke the protocol");
            Some(reason(CloseCode::Protocol, "protocol error"))
        }
        End::Idle => Some(reason(CloseCode::Normal, "idle timeout")),
    };
    let _ = session.close(reason).await;
    drop(conn.slot);
}

/// The next event of the response in flight; pending forever when there is none.
async fn next_event(turn: &mut Option<Turn>) -> Option<String> {
    match turn {
        Some(t) => t.events.next().await,
        None => std::future::pending().await,
    }
}

fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_string()),
    }
}

/// The per-connection state.
struct Socket {
    state: Arc<AppState>,
    principal: Principal,
    headers: HeaderMap,
    request_id: String,
    /// Responses started on this socket (numbers their audit records).
    turns: u64,
    remembered: HashMap<String, Remembered>,
    order: VecDeque<String>,
}

impl Socket {
    /// Starts the response a client event asks for, or the `error` event refusing it.
    async fn start(&mut self, text: &str) -> Result<Turn, String> {
        let mut body = parse_event(text)?;
        let mut previous = None;
        // A continuation of a `store: false` response of this connection: the chain is spelled
        // out as input, as the store would have resolved it.
        let local = body
            .previous_response_id
            .as_ref()
            .and_then(|id| self.remembered.get(id).map(|r| (id.clone(), r)));
        let chain = if let Some((id, r)) = local {
            let mut items: Vec<Value> = translate::continuation(&r.input_items, &r.response)
                .iter()
                .map(resend)
                .collect();
            let new = translate::normalize_input(body.input.as_ref())
                .map_err(|e| api_event(&ApiError::from(e)))?;
            items.extend(new);
            body.input = Some(Value::Array(items.clone()));
            body.previous_response_id = None;
            previous = Some(id);
            Some(items)
        } else {
            None
        };
        let remember = if body.stores() {
            None
        } else {
            match chain {
                Some(items) => Some(items),
                None => Some(self.input_items(&body).await.unwrap_or_default()),
            }
        };
        let control = cache::control::parse(&self.headers, body.cache.as_ref())
            .map_err(|e| api_event(&ApiError::invalid(&e.param, e.message)))?;
        let mut caller = Caller::keeping_bodies(self.state.audit.options().log_bodies);
        caller.user = limits::end_user(&self.headers, body.user.as_deref());
        caller.identify(&self.principal);
        self.turns += 1;
        let request_id = format!("{}.{}", self.request_id, self.turns);
        // The create runs inside the event stream, so that a close, a ping or a queued event is
        // seen while it waits for the upstream's first byte (and a close cancels it there too).
        let (state, principal) = (Arc::clone(&self.state), self.principal.clone());
        let events: Events = Box::pin(
            futures_util::stream::once(async move {
                let mut caller = caller;
                let started = std::time::Instant::now();
                let model = body.model.clone();
                let result = super::create(&state, &principal, body, control, &mut caller).await;
                // Each response is one audited request, written when its events end (or the
                // socket drops it), with its final usage and cost, as an HTTP stream's.
                let status = match &result {
                    Ok(_) => StatusCode::OK,
                    Err(e) => e.status_code(),
                };
                let turn = crate::audit::RequestRecord {
                    request_id,
                    endpoint: WS_ENDPOINT.to_string(),
                    model_group: Some(model),
                    deployment: result
                        .as_ref()
                        .ok()
                        .and_then(|r| r.deployment.as_ref())
                        .map(|d| d.id.clone()),
                    cache_outcome: result.as_ref().ok().map(|r| r.outcome.as_str().to_string()),
                    status: status.as_u16(),
                    cost_usd: result.as_ref().ok().and_then(|r| r.cost_usd).unwrap_or(0.0),
                    ..crate::api::base_record(&caller)
                };
                // A stream's cost is known at its end, from its usage.
                let price = match &result {
                    Ok(r) if matches!(r.body, ReplyBody::Stream(_)) => {
                        r.deployment.as_ref().and_then(|d| d.price)
                    }
                    _ => None,
                };
                let pending = PendingRecord::new(&state, turn, &caller, started);
                let events: Events = match result {
                    Ok(reply) => match reply.body {
                        ReplyBody::Stream(s) => Box::pin(sse_events(s)),
                        // Streams are asked for; a JSON body is a complete Response object.
                        ReplyBody::Json(b) => {
                            let response: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                            let done = json!({"type": "response.completed",
                                "sequence_number": 0, "response": response});
                            Box::pin(futures_util::stream::iter([done.to_string()]))
                        }
                    },
                    Err(e) => Box::pin(futures_util::stream::iter([responses_event(&e)])),
                };
                let hook = Box::new(move || pending.append(price, None));
                Box::pin(OnEnd::new(events, hook)) as Events
            })
            .flatten(),
        );
        Ok(Turn {
            events,
            remember,
            previous,
        })
    }

    /// The items a new response gets (stored chain + its input), for remembering it.
    async fn input_items(&self, body: &ResponsesRequest) -> Option<Vec<Value>> {
        let mut items = match &body.previous_response_id {
            Some(prev) => {
                let found = ResponseStore::new(Arc::clone(&self.state.store))
                    .get_async(prev, &self.principal)
                    .await
                    .ok()??;
                translate::continuation(&found.input_items, &found.response)
            }
            None => Vec::new(),
        };
        items.extend(translate::normalize_input(body.input.as_ref()).ok()?);
        Some(items)
    }

    /// Patches an event of `turn` where needed and remembers its final Response object.
    fn observe(&mut self, turn: &Turn, text: String) -> String {
        let final_event = text.contains("\"response.completed\"")
            || text.contains("\"response.incomplete\"")
            || text.contains("\"response.failed\"");
        let needs_patch = turn.previous.is_some() && text.contains("\"response\"");
        if !final_event && !needs_patch {
            return text;
        }
        let Ok(mut event) = serde_json::from_str::<Value>(&text) else {
            return text;
        };
        let mut changed = false;
        if let (Some(prev), Some(resp)) = (
            &turn.previous,
            event.get_mut("response").and_then(Value::as_object_mut),
        ) {
            resp.insert("previous_response_id".into(), json!(prev));
            changed = true;
        }
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if matches!(
            kind,
            "response.completed" | "response.incomplete" | "response.failed"
        ) {
            if let (Some(items), Some(response)) = (&turn.remember, event.get("response")) {
                self.remember(items.clone(), response.clone());
            }
        }
        if changed {
            event.to_string()
        } else {
            text
        }
    }

    fn remember(&mut self, input_items: Vec<Value>, response: Value) {
        let Some(id) = response.get("id").and_then(Value::as_str).map(String::from) else {
            return;
        };
        if self.remembered.len() >= MAX_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.remembered.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.remembered.insert(
            id,
            Remembered {
                input_items,
                response,
            },
        );
    }
}

/// A `response.create` client event as a create body (`stream` forced on), or the `error`
/// event refusing it.
fn parse_event(text: &str) -> Result<ResponsesRequest, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        error_event(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            &format!("the client event is not valid JSON: {e}"),
            None,
        )
    })?;
    let Value::Object(mut event) = value else {
        return Err(error_event(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("invalid_json"),
            "the client event must be a JSON object",
            None,
        ));
    };
    match event.get("type") {
        Some(Value::String(t)) if t == "response.create" => {}
        Some(Value::String(t)) => {
            return Err(error_event(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("unknown_event_type"),
                &format!("unknown client event type '{t}': expected 'response.create'"),
                Some("type"),
            ))
        }
        _ => {
            return Err(error_event(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("missing_required_parameter"),
                "the client event needs a 'type' ('response.create')",
                Some("type"),
            ))
        }
    }
    event.remove("type");
    event.remove("event_id");
    // The create body at the top level (as the SDKs send it), or nested under `response`.
    let mut body = match event.remove("response") {
        Some(Value::Object(inner)) if !event.contains_key("model") => inner,
        Some(other) => {
            event.insert("response".into(), other);
            event
        }
        None => event,
    };
    // Transport fields of HTTP: every response on the socket is streamed, in the foreground.
    body.remove("stream");
    body.remove("stream_options");
    body.remove("background");
    body.insert("stream".into(), json!(true));
    let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
    crate::wire::parse_json::<ResponsesRequest>(&bytes).map_err(|e| api_event(&ApiError::from(e)))
}

/// An item of a resolved chain as sent again: only reasoning items and item references keep
/// the ids another response minted (as the native path resends a stored chain).
fn resend(item: &Value) -> Value {
    let mut out = item.clone();
    if let Some(m) = out.as_object_mut() {
        if !matches!(
            m.get("type").and_then(Value::as_str),
            Some("reasoning" | "item_reference")
        ) {
            m.remove("id");
        }
    }
    out
}

/// The `data` of every event of a Responses SSE body, in order.
fn sse_events(body: crate::pipeline::SseBody) -> impl Stream<Item = String> {
    let mut splitter = SseSplitter::default();
    let mut ended = false;
    body.map(Some)
        .chain(futures_util::stream::once(async { None }))
        .flat_map(move |chunk| {
            let mut out = Vec::new();
            match chunk {
                Some(Ok(bytes)) => {
                    for event in splitter.push(&bytes) {
                        out.extend(event_data(&event));
                    }
                }
                Some(Err(never)) => match never {},
                None if !ended => {
                    ended = true;
                    if let Some(rest) = splitter.finish() {
                        out.extend(event_data(&rest));
                    }
                }
                None => {}
            }
            futures_util::stream::iter(out.into_iter().filter(|d| d != "[DONE]"))
        })
}

/// The WebSocket `error` event:
/// `{"type":"error","status":N,"error":{"type","code","message","param"}}`.
pub fn error_event(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> String {
    json!({
        "type": "error",
        "status": status.as_u16(),
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": param,
        }
    })
    .to_string()
}

/// The `error` event of a chat-surface error (its HTTP body's `error`, with the status).
fn api_event(e: &ApiError) -> String {
    let mut body = e.body();
    let error = body
        .get_mut("error")
        .map(Value::take)
        .unwrap_or_else(|| Value::Object(Map::new()));
    json!({"type": "error", "status": e.status_code().as_u16(), "error": error}).to_string()
}

/// The `error` event of a refused create.
fn responses_event(e: &ResponsesError) -> String {
    match e {
        ResponsesError::Api(api) => api_event(api),
        ResponsesError::Store(s) => api_event(&ApiError::Internal(s.to_string())),
        ResponsesError::PreviousNotFound { .. } => error_event(
            e.status_code(),
            "invalid_request_error",
            Some("previous_response_not_found"),
            &e.to_string(),
            Some("previous_response_id"),
        ),
        ResponsesError::NotFound { .. } => error_event(
            e.status_code(),
            "invalid_request_error",
            None,
            &e.to_string(),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or_default()
    }

    #[test]
    fn create_events_become_streamed_bodies() {
        let body = parse_event(
            r#"{"type":"response.create","model":"m","input":"hi","stream":false,"background":false,"store":false}"#,
        )
        .expect("a valid create");
        assert_eq!(body.model, "m");
        assert!(body.is_stream());
        assert!(!body.stores());
        assert!(!body.extra.contains_key("type"));
        assert!(!body.extra.contains_key("background"));
        let nested =
            parse_event(r#"{"type":"response.create","response":{"model":"n","input":"x"}}"#)
                .expect("nested create");
        assert_eq!(nested.model, "n");
    }

    #[test]
    fn bad_events_get_error_events() {
        let e = parsed(&parse_event("{not json").err().unwrap_or_default());
        assert_eq!(e["type"], "error");
        assert_eq!(e["status"], 400);
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"], "invalid_json");
        let e = parsed(
            &parse_event(r#"{"type":"session.update"}"#)
                .err()
                .unwrap_or_default(),
        );
        assert_eq!(e["error"]["code"], "unknown_event_type");
        assert_eq!(e["error"]["param"], "type");
        let e = parsed(
            &parse_event(r#"{"type":"response.create","model":"m","temperature":"hot"}"#)
                .err()
                .unwrap_or_default(),
        );
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], "temperature");
    }

    #[test]
    fn previous_not_found_has_its_code() {
        let e = parsed(&responses_event(&ResponsesError::PreviousNotFound {
            id: "resp_x".into(),
        }));
        assert_eq!(e["status"], 404);
        assert_eq!(e["error"]["code"], "previous_response_not_found");
        assert_eq!(e["error"]["param"], "previous_response_id");
    }
}
