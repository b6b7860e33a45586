//! Native passthrough: a model group whose every deployment serves the Responses API itself
//! (api.openai.com, or `model_info.responses_native: true`) gets the client's body forwarded to
//! `{base}/responses` with unknown fields intact; only the model name changes.
//!
//! Sluice still owns the conversation: a `previous_response_id` was resolved from its store
//! before this point and is sent as explicit `input` items, so chains work across deployments
//! and never depend on the upstream having stored anything. Routing, retries and failover are
//! the chat pipeline's (`with_failover`), limits and budgets are admitted and settled as for
//! chat (with the usage of the upstream's Response object). The cache is consulted before this
//! point in chat form (`super::create`); a completed answer is written back here.

use super::translate::{self, ResponsesRequest};
use super::{ResponsesError, Saver};
use crate::auth::Principal;
use crate::cache::CacheOutcome;
use crate::error::ApiError;
use crate::limits::{self, Demand, Ticket};
use crate::pipeline::{self, Bodies, CacheCtx, Caller, Reply, ReplyBody};
use crate::providers::{self, UpstreamError};
use crate::router::Needs;
use crate::spend::{Charge, Payer, Spend};
use crate::state::AppState;
use crate::stream::{event_data, Settling, SseSplitter};
use crate::wire::Usage;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

/// Whether every deployment of `model`'s group serves `/responses` natively (a mixed group is
/// translated for all its deployments, so failover can reach any of them).
pub(super) fn serves(state: &AppState, model: &str) -> bool {
    state.router.group(model).is_some_and(|g| {
        !g.targets.is_empty()
            && g.targets
                .iter()
                .all(|t| providers::responses_native(&t.deployment))
    })
}

/// An item of a resolved chain as sent back upstream: ids that Sluice minted (or that another
/// upstream minted) mean nothing to this upstream, so only reasoning items (their encrypted
/// content is tied to the id) and item references (the id is all they are) keep theirs.
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

/// The body forwarded upstream: the request as the client sent it, except that a chain is
/// spelled out as `input` items instead of `previous_response_id`.
pub(super) fn upstream_body(req: &ResponsesRequest, items: &[Value]) -> Map<String, Value> {
    let mut body = match serde_json::to_value(req) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    if body.remove("previous_response_id").is_some() {
        body.insert(
            "input".into(),
            Value::Array(items.iter().map(resend).collect()),
        );
    }
    body
}

/// Puts the client's `previous_response_id` back into an upstream Response object.
fn patch(response: &mut Value, previous: Option<&str>) {
    if let (Some(m), Some(p)) = (response.as_object_mut(), previous) {
        m.insert("previous_response_id".into(), json!(p));
    }
}

/// A native call's part in limits and spend: admitted before the call, settled with the
/// usage of the upstream's Response object (or refunded when the call fails).
struct Account {
    spend: Arc<Spend>,
    payer: Payer,
    group: String,
    ticket: Ticket,
    slot: Option<Ticket>,
}

impl Account {
    /// Settles the estimate with the real usage and records the spend.
    fn settle(mut self, usage: Usage, cost_usd: f64) {
        let used = usage.prompt_tokens + usage.completion_tokens;
        self.ticket.settle(used);
        if let Some(slot) = self.slot.as_mut() {
            slot.settle(used);
        }
        let charge = Charge {
            group: &self.group,
            usage,
            cost_usd,
            cache_hit: false,
        };
        self.spend.record(&self.payer, &charge);
    }
}

/// Undoes an admitted request that failed, as the chat pipeline does: refused by every
/// deployment's own limit, nothing counts; failed upstream, the request counts, no tokens.
fn refund(ticket: &mut Ticket, e: &ApiError) {
    if matches!(e, ApiError::RateLimited(_)) {
        ticket.cancel();
    } else {
        ticket.settle(0);
    }
}

/// Serves a native group.
pub(super) async fn create(
    state: &AppState,
    principal: &Principal,
    req: ResponsesRequest,
    items: Vec<Value>,
    saver: Option<Saver>,
    caller: &mut Caller,
    cache: Option<(String, CacheCtx)>,
) -> Result<Reply, ResponsesError> {
    if !principal.allows_model(&req.model) {
        return Err(ApiError::ModelNotAllowed {
            model: req.model.clone(),
        }
        .into());
    }
    // Capabilities as the chat translation sees them; hosted tools have no chat form, so
    // such requests route on size and streaming alone.
    let needs = translate::to_chat(&req, &items).map_or_else(
        |_| Needs {
            stream: req.is_stream(),
            ..Needs::default()
        },
        |c| Needs::of(&c),
    );
    let route = pipeline::route(state, &req.model, &needs)?;
    let body = upstream_body(&req, &items);
    let previous = req.previous_response_id.clone();

    // Limits and budgets, everything at once (no cache hit can make them moot).
    let payer = caller.payer(principal);
    state
        .spend
        .check_with(&payer, pipeline::expected_cost(&route, &needs))
        .map_err(ApiError::from)?;
    let scopes = state.limits.scopes(
        principal.key().map(|k| &**k),
        caller.user.as_deref(),
        &route.group,
    );
    let demand = Demand {
        request: true,
        tokens: limits::estimate(&needs),
    };
    let mut ticket = state
        .limits
        .admit(&scopes, demand)
        .map_err(ApiError::from)?;
    if !ticket.headers().is_empty() {
        caller.rate = Some(*ticket.headers());
    }
    let group = route.group.clone();
    let outcome = cache
        .as_ref()
        .map_or(CacheOutcome::Bypass, |(_, c)| c.outcome());

    if !req.is_stream() {
        let result = pipeline::with_failover(state, route, &needs, |t| {
            let body = &body;
            async move {
                let started = Instant::now();
                let c = providers::responses(&state.http, &t.deployment, body).await?;
                t.health
                    .record_success(Some(started.elapsed()), Some(started.elapsed()));
                Ok(c)
            }
        })
        .await;
        let (c, routed) = result.inspect_err(|e| refund(&mut ticket, e))?;
        let d = Arc::clone(&routed.target.deployment);
        let account = Account {
            spend: Arc::clone(&state.spend),
            payer,
            group,
            ticket,
            slot: routed.slot,
        };
        let mut response: Value = serde_json::from_slice(&c.body).map_err(|e| {
            ApiError::from(UpstreamError::Protocol {
                deployment: providers::label(&d),
                detail: format!("the Responses body is not JSON: {e}"),
            })
        })?;
        patch(&mut response, previous.as_deref());
        keep_output(caller.bodies.as_ref(), &response);
        let usage = translate::chat_usage(response.get("usage"));
        let cost_usd = d.price.map(|p| p.cost(&usage));
        account.settle(usage, cost_usd.unwrap_or(0.0));
        caller.set_usage(usage);
        // Stored before the answer is sent, as for chat: an acknowledged answer is a stored one.
        if let (Some((group, ctx)), Some(completion)) = (cache, cacheable_completion(&response)) {
            ctx.store(&group, &completion, usage).await;
        }
        let out = serde_json::to_vec(&response)
            .map_err(|e| ApiError::Internal(format!("cannot encode response: {e}")))?;
        if let Some(s) = saver {
            s.save(response).await;
        }
        return Ok(Reply {
            cost_usd,
            deployment: Some(d),
            route_reason: Some(routed.reason),
            outcome,
            hit: None,
            body: ReplyBody::Json(Bytes::from(out)),
        });
    }

    // As for chat: failover until the first byte, then the stream is the client's.
    let result = pipeline::with_failover(state, route, &needs, |t| {
        let body = &body;
        async move {
            let d = &t.deployment;
            let started = Instant::now();
            let mut s = providers::responses_stream(&state.http, d, body).await?;
            match s.next().await {
                Some(Ok(first)) => {
                    t.health.record_success(Some(started.elapsed()), None);
                    Ok((first, s))
                }
                Some(Err(e)) => Err(e),
                None => Err(UpstreamError::Protocol {
                    deployment: providers::label(d),
                    detail: "the stream ended before any data".into(),
                }),
            }
        }
    })
    .await;
    let ((first, rest), routed) = result.inspect_err(|e| refund(&mut ticket, e))?;
    let d = Arc::clone(&routed.target.deployment);
    let account = Account {
        spend: Arc::clone(&state.spend),
        payer,
        group,
        ticket,
        slot: routed.slot,
    };
    let price = d.price;
    let usage_cell = Arc::clone(&caller.usage);
    let bodies = caller.bodies.clone();
    let settle: Settle = Box::new(move |response: Option<&Value>| {
        let usage = translate::chat_usage(response.and_then(|r| r.get("usage")));
        if let Some(r) = response {
            *usage_cell.lock() = Some(usage);
            keep_output(bodies.as_ref(), r);
        }
        account.settle(usage, price.map_or(0.0, |p| p.cost(&usage)));
        if let (Some((group, ctx)), Some(completion)) =
            (cache, response.and_then(cacheable_completion))
        {
            return ctx.store_at_end(group, completion, usage);
        }
        None
    });
    let upstream = futures_util::stream::once(async move { Ok(first) }).chain(rest);
    Ok(Reply {
        deployment: Some(d),
        route_reason: Some(routed.reason),
        cost_usd: None,
        outcome,
        hit: None,
        body: ReplyBody::Stream(Box::pin(passthrough_sse(
            Box::pin(upstream),
            previous,
            saver,
            Some(settle),
        ))),
    })
}

/// Kind names of the PII in every string of the input items (for requests with no chat form).
pub(super) fn input_kinds(scanner: &crate::pii::Scanner, items: &[Value]) -> Vec<String> {
    fn walk(
        v: &Value,
        scanner: &crate::pii::Scanner,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        match v {
            Value::String(s) => out.extend(scanner.kinds(s).iter().map(|k| k.as_str().to_string())),
            Value::Array(a) => a.iter().for_each(|v| walk(v, scanner, out)),
            Value::Object(m) => m.values().for_each(|v| walk(v, scanner, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    items.iter().for_each(|i| walk(i, scanner, &mut out));
    out.into_iter().collect()
}

/// Keeps a native answer's output items for the audit record (with `audit.log_bodies`).
fn keep_output(bodies: Option<&Arc<parking_lot::Mutex<Bodies>>>, response: &Value) {
    if let Some(b) = bodies {
        b.lock().answer = response.get("output").cloned();
    }
}

/// A completed native answer in the chat form the cache stores and every surface replays.
fn cacheable_completion(response: &Value) -> Option<Value> {
    translate::to_completion(response).filter(crate::cache::cacheable)
}

/// Called once when a passed-through stream ends, with its final Response object if one came;
/// what it returns (the cache write-back) completes before the final event goes out.
type Settle = Box<dyn FnOnce(Option<&Value>) -> Option<Settling>>;

/// Event types that carry the final Response object.
const FINAL_EVENTS: &[&str] = &[
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// Upstream Responses SSE passed on event by event: events that carry a Response object get
/// the client's `previous_response_id` back, the final one is stored before it is sent, and a
/// broken upstream becomes an `error` event.
fn passthrough_sse<S>(
    upstream: S,
    previous: Option<String>,
    saver: Option<Saver>,
    settle: Option<Settle>,
) -> impl Stream<Item = Result<Bytes, Infallible>>
where
    S: Stream<Item = Result<Bytes, UpstreamError>> + Unpin,
{
    struct State<S> {
        upstream: S,
        splitter: SseSplitter,
        queue: VecDeque<Bytes>,
        previous: Option<String>,
        saver: Option<Saver>,
        settle: Option<Settle>,
        final_response: Option<Value>,
        /// The latest Response object seen (from `response.created` on): what `response.failed`
        /// reports when the upstream breaks before its own final event.
        last_response: Option<Value>,
        finished: bool,
        next_seq: u64,
        ended: bool,
    }
    impl<S> State<S> {
        fn feed(&mut self, event: Bytes) {
            let parsed = event_data(&event)
                .and_then(|d| serde_json::from_str::<Value>(&d).ok())
                .filter(Value::is_object);
            let Some(mut data) = parsed else {
                self.queue.push_back(event);
                return;
            };
            if let Some(n) = data.get("sequence_number").and_then(Value::as_u64) {
                self.next_seq = n + 1;
            }
            let kind = data
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Some(response) = data.get_mut("response").filter(|r| r.is_object()) else {
                self.queue.push_back(event);
                return;
            };
            patch(response, self.previous.as_deref());
            if FINAL_EVENTS.contains(&kind.as_str()) {
                self.final_response = Some(response.clone());
                self.finished = true;
            } else {
                self.last_response = Some(response.clone());
            }
            let mut out = format!("event: {kind}\ndata: ").into_bytes();
            // Serializing a `Value` to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &data);
            out.extend_from_slice(b"\n\n");
            self.queue.push_back(Bytes::from(out));
        }

        /// An `error` event then `response.failed`, as a live response that fails ends, so
        /// SDKs waiting for a terminal event get one.
        fn error(&mut self, message: &str) {
            let data = json!({"type": "error", "sequence_number": self.next_seq,
                "code": "server_error", "message": message, "param": null});
            self.next_seq += 1;
            self.queue
                .push_back(Bytes::from(format!("event: error\ndata: {data}\n\n")));
            let mut response = self
                .last_response
                .take()
                .unwrap_or_else(|| json!({"object": "response"}));
            response["status"] = json!("failed");
            response["error"] = json!({"code": "server_error", "message": message});
            let data = json!({"type": "response.failed", "sequence_number": self.next_seq,
                "response": response});
            self.next_seq += 1;
            self.queue.push_back(Bytes::from(format!(
                "event: response.failed\ndata: {data}\n\n"
            )));
            self.finished = true;
        }
    }
    let state = State {
        upstream,
        splitter: SseSplitter::default(),
        queue: VecDeque::new(),
        previous,
        saver,
        settle,
        final_response: None,
        last_response: None,
        finished: false,
        next_seq: 0,
        ended: false,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(response) = s.final_response.take() {
                if let Some(settling) = s.settle.take().and_then(|f| f(Some(&response))) {
                    settling.await;
                }
                if let Some(saver) = s.saver.take() {
                    saver.save(response).await;
                }
            }
            if let Some(frame) = s.queue.pop_front() {
                return Some((Ok(frame), s));
            }
            if s.ended {
                // No final object (the upstream broke): the request counts, no tokens.
                if let Some(settling) = s.settle.take().and_then(|f| f(None)) {
                    settling.await;
                }
                return None;
            }
            match s.upstream.next().await {
                Some(Ok(bytes)) => {
                    for event in s.splitter.push(&bytes) {
                        s.feed(event);
                    }
                }
                Some(Err(e)) => {
                    s.error(&e.to_string());
                    s.ended = true;
                }
                None => {
                    if let Some(rest) = s.splitter.finish() {
                        s.feed(rest);
                    }
                    if !s.finished {
                        s.error("the upstream stream ended before completion");
                    }
                    s.ended = true;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_are_spelled_out_and_unknown_fields_kept() {
        let req: ResponsesRequest = serde_json::from_value(json!({
            "model": "g", "input": "and now?", "previous_response_id": "resp_1",
            "include": ["reasoning.encrypted_content"], "tools": [{"type": "web_search"}],
            "cache": {"no-cache": true}
        }))
        .unwrap();
        let items = vec![
            json!({"id": "msg_a", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}),
            json!({"id": "rs_b", "type": "reasoning", "summary": []}),
            json!({"id": "msg_c", "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo"}]}),
        ];
        let body = upstream_body(&req, &items);
        assert!(body.get("previous_response_id").is_none());
        assert!(body.get("cache").is_none());
        assert_eq!(body["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(body["tools"], json!([{"type": "web_search"}]));
        assert_eq!(body["input"][0].get("id"), None);
        assert_eq!(body["input"][1]["id"], "rs_b");
        assert_eq!(body["input"][2]["content"][0]["text"], "yo");

        let req: ResponsesRequest =
            serde_json::from_value(json!({"model": "g", "input": "plain", "seed": 3})).unwrap();
        let body = upstream_body(&req, &[]);
        assert_eq!(body["input"], "plain");
        assert_eq!(body["seed"], 3);
    }

    #[tokio::test]
    async fn passthrough_patches_and_keeps_the_final_response() {
        let sse = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_u\",\"previous_response_id\":null}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_u\",\"status\":\"completed\"}}\n\n",
        );
        let pieces: Vec<Result<Bytes, UpstreamError>> = sse
            .as_bytes()
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let frames: Vec<Bytes> = passthrough_sse(
            futures_util::stream::iter(pieces),
            Some("resp_prev".into()),
            None,
            None,
        )
        .map(|r| match r {
            Ok(b) => b,
            Err(e) => match e {},
        })
        .collect()
        .await;
        assert_eq!(frames.len(), 3);
        let last: Value = serde_json::from_str(&event_data(&frames[2]).unwrap()).unwrap();
        assert_eq!(last["response"]["previous_response_id"], "resp_prev");
        assert!(std::str::from_utf8(&frames[2])
            .unwrap()
            .starts_with("event: response.completed\n"));
        assert_eq!(
            &frames[1][..],
            b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}\n\n"
        );

        let broken: Vec<Result<Bytes, UpstreamError>> = vec![
            Ok(Bytes::from_static(b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{}}\n\n")),
            Err(UpstreamError::Connect {
                deployment: "d".into(),
                detail: "reset".into(),
            }),
        ];
        let settled = std::rc::Rc::new(std::cell::Cell::new(None));
        let seen = std::rc::Rc::clone(&settled);
        let settle: Settle = Box::new(move |r| {
            seen.set(Some(r.is_some()));
            None
        });
        let frames: Vec<Bytes> =
            passthrough_sse(futures_util::stream::iter(broken), None, None, Some(settle))
                .map(|r| match r {
                    Ok(b) => b,
                    Err(e) => match e {},
                })
                .collect()
                .await;
        let err: Value = serde_json::from_str(&event_data(&frames[1]).unwrap()).unwrap();
        assert_eq!(
            settled.get(),
            Some(false),
            "settled without a final response"
        );
        assert_eq!(err["type"], "error");
        assert_eq!(err["sequence_number"], 1);
        let failed: Value = serde_json::from_str(&event_data(&frames[2]).unwrap()).unwrap();
        assert_eq!(failed["type"], "response.failed");
        assert_eq!(failed["sequence_number"], 2);
        assert_eq!(failed["response"]["status"], "failed");
        assert_eq!(frames.len(), 3);

        // An upstream that just stops (no final event) fails the response the same way.
        let cut: Vec<Result<Bytes, UpstreamError>> = vec![Ok(Bytes::from_static(
            b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_c\"}}\n\n",
        ))];
        let frames: Vec<Bytes> = passthrough_sse(futures_util::stream::iter(cut), None, None, None)
            .map(|r| match r {
                Ok(b) => b,
                Err(e) => match e {},
            })
            .collect()
            .await;
        let kinds: Vec<String> = frames
            .iter()
            .map(|f| {
                let v: Value = serde_json::from_str(&event_data(f).unwrap()).unwrap();
                v["type"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(kinds, ["response.created", "error", "response.failed"]);
        let failed: Value = serde_json::from_str(&event_data(&frames[2]).unwrap()).unwrap();
        assert_eq!(failed["response"]["id"], "resp_c");
    }
}
