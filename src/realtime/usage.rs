//! What a realtime socket costs: `response.done` usage into tokens metrics, cost, rate-limit
//! windows and spend.
//!
//! [`record_usage`] is the single call site through which a socket's usage reaches limits and
//! spend; the pump calls it once per `response.done` server event.

use crate::config::Deployment;
use crate::limits::{Demand, Scope, Ticket};
use crate::spend::{BudgetRefusal, Charge, Payer};
use crate::state::AppState;
use crate::telemetry as t;
use crate::wire::Usage;
use serde::Deserialize;

/// The marker looked for before any server frame is parsed.
pub(super) const RESPONSE_DONE: &str = "\"response.done\"";
/// The marker looked for in client frames before the budget is checked.
const RESPONSE_CREATE: &str = "\"response.create\"";

/// Who pays for a socket and which rate windows its tokens count in, fixed at the handshake.
#[derive(Debug)]
pub struct Account {
    /// Key and end user.
    pub payer: Payer,
    /// Model group the client asked for (the metrics label).
    pub group: String,
    scopes: Vec<Scope>,
    /// The socket's own request; held while it is open (a parallel slot), settled at the end.
    socket: Ticket,
    /// The handshake's request id; each response's audit record is `{request_id}.{n}`.
    pub request_id: String,
    /// Responses accounted so far (numbers their audit records).
    responses: std::sync::atomic::AtomicU64,
}

impl Account {
    /// An account for an admitted socket.
    pub fn new(payer: Payer, group: String, scopes: Vec<Scope>, socket: Ticket) -> Self {
        Self {
            payer,
            group,
            scopes,
            socket,
            request_id: String::new(),
            responses: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Frees the socket's parallel slot; its request stays counted.
    pub fn close(&mut self) {
        self.socket.settle(0);
    }
}

/// `response.done`, reduced to what accounting reads.
#[derive(Debug, Deserialize)]
struct DoneEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    response: Option<DoneResponse>,
}

#[derive(Debug, Deserialize)]
struct DoneResponse {
    #[serde(default)]
    usage: Option<RealtimeUsage>,
}

/// Realtime usage: `input_tokens` and `output_tokens` include text, audio and image tokens.
#[derive(Debug, Deserialize)]
struct RealtimeUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// The usage a server text frame reports, if it is a `response.done` with usage.
///
/// Cheap for every other frame: only frames containing `"response.done"` are parsed.
pub fn usage_of(text: &str) -> Option<Usage> {
    if !text.contains(RESPONSE_DONE) {
        return None;
    }
    let event: DoneEvent = serde_json::from_str(text).ok()?;
    if event.kind != "response.done" {
        return None;
    }
    let u = event.response?.usage?;
    Some(Usage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total_tokens.unwrap_or(u.input_tokens + u.output_tokens),
    })
}

/// A client event's `type` and `event_id`.
#[derive(Debug, Deserialize)]
struct ClientEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    event_id: Option<String>,
}

/// Why a client's `response.create` is refused rather than relayed: the payer's budget is
/// spent. Returns the refusal and the event's `event_id`.
///
/// Only frames containing `"response.create"` are looked at, and parsed only when a budget is
/// actually spent; every other frame passes without a check.
pub fn budget_refusal(
    state: &AppState,
    account: &Account,
    text: &str,
) -> Option<(BudgetRefusal, Option<String>)> {
    if !text.contains(RESPONSE_CREATE) {
        return None;
    }
    let refusal = state.spend.check(&account.payer).err()?;
    let event: ClientEvent = serde_json::from_str(text).ok()?;
    (event.kind == "response.create").then_some((refusal, event.event_id))
}

/// Records one response's usage: tokens and cost metrics (as chat does), the tokens in the
/// socket's rate windows (key, user, group, gateway, deployment), and the spend.
///
/// Audio tokens are priced as the deployment's text tokens (`Price` has one input and one
/// output price).
pub fn record_usage(state: &AppState, account: &Account, d: &Deployment, usage: &Usage) {
    metrics::counter!(t::TOKENS_TOTAL, "model_group" => account.group.clone(), "direction" => "in")
        .increment(usage.prompt_tokens);
    metrics::counter!(t::TOKENS_TOTAL, "model_group" => account.group.clone(), "direction" => "out")
        .increment(usage.completion_tokens);
    let cost = d.price.map(|p| p.cost(usage));
    if let Some(c) = cost {
        metrics::gauge!(t::COST_USD_TOTAL, "model_group" => d.model_group.clone(), "deployment" => d.id.clone())
            .increment(c);
    }
    let tokens = usage.prompt_tokens + usage.completion_tokens;
    let mut scopes = account.scopes.clone();
    scopes.extend(crate::limits::Limiter::deployment_scope(d));
    // Counted after the fact: a zero demand is never refused, and settling adds the tokens.
    let no_demand = Demand {
        request: false,
        tokens: 0,
    };
    if let Ok(mut ticket) = state.limits.admit(&scopes, no_demand) {
        ticket.settle(tokens);
    }
    let charge = Charge {
        group: &account.group,
        usage: *usage,
        cost_usd: cost.unwrap_or(0.0),
        cache_hit: false,
    };
    state.spend.record(&account.payer, &charge);
    audit(state, account, d, usage, cost);
}

/// Appends one realtime response to the audit log (and the dashboard's rollups). Latency is not
/// measured: a realtime response is paced by the conversation, not by the gateway.
fn audit(state: &AppState, account: &Account, d: &Deployment, usage: &Usage, cost: Option<f64>) {
    let n = account
        .responses
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let record = crate::audit::RequestRecord {
        request_id: format!("{}.{n}", account.request_id),
        key_id: account.payer.key_id.clone(),
        key_alias: account.payer.key.as_ref().and_then(|k| k.alias.clone()),
        user: account.payer.user.clone(),
        endpoint: "/v1/realtime".to_string(),
        model_group: Some(account.group.clone()),
        deployment: Some(d.id.clone()),
        status: 200,
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        cost_usd: cost.unwrap_or(0.0),
        ..crate::audit::RequestRecord::default()
    };
    state.dashboard.record(&record, None);
    if let Err(e) = state.audit.append_request(record) {
        tracing::warn!(error = %e, "audit append failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_response_done_usage() {
        let done = r#"{"type":"response.done","event_id":"e1","response":{"id":"r1","status":"completed",
            "usage":{"total_tokens":253,"input_tokens":132,"output_tokens":121,
            "input_token_details":{"text_tokens":119,"audio_tokens":13,"cached_tokens":64},
            "output_token_details":{"text_tokens":30,"audio_tokens":91}}}}"#;
        assert_eq!(
            usage_of(done),
            Some(Usage {
                prompt_tokens: 132,
                completion_tokens: 121,
                total_tokens: 253
            })
        );
        let no_total =
            r#"{"type":"response.done","response":{"usage":{"input_tokens":2,"output_tokens":3}}}"#;
        assert_eq!(usage_of(no_total).map(|u| u.total_tokens), Some(5));
    }

    #[test]
    fn ignores_everything_else() {
        assert_eq!(
            usage_of(r#"{"type":"response.created","response":{}}"#),
            None
        );
        assert_eq!(
            usage_of(r#"{"type":"response.done","response":{"usage":null}}"#),
            None
        );
        // A delta that quotes the name is not a response.done.
        let delta = r#"{"type":"response.text.delta","delta":"\"response.done\"","response":{"usage":{"input_tokens":9}}}"#;
        assert_eq!(usage_of(delta), None);
        assert_eq!(usage_of("not json \"response.done\""), None);
    }
}
