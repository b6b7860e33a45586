//! The frame pump of one realtime socket: connect upstream, relay frames both ways until either
//! side closes, the socket idles out or a message is too big, then close the other side.
//!
//! Text and binary frames are relayed as they are (fragmented client messages are reassembled
//! first); pings are answered on each side by Sluice; close frames are passed on with their code
//! and reason. Server text frames are checked for `"response.done"` (a substring test) and only
//! those are parsed, for usage.

use super::upstream::{connect, upstream_request, Upstream, UpstreamError};
use super::usage::{budget_refusal, record_usage, usage_of, Account};
use super::{Admitted, FRAMES_TOTAL};
use crate::config::Deployment;
use crate::state::AppState;
use actix_ws::{CloseCode, CloseReason, Item, Message, MessageStream, ProtocolError, Session};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as UpCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as UpError, Message as UpMessage, Utf8Bytes};

/// How long Sluice waits for the provider to finish the closing handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a socket ended, which decides what the other side is told.
#[derive(Debug)]
enum End {
    /// The client sent a close frame.
    ClientClosed(Option<CloseReason>),
    /// The client's connection ended without one.
    ClientGone,
    /// The client sent a message over `max_message_bytes`.
    ClientTooBig,
    /// The client broke the protocol (bad UTF-8, bad framing).
    ClientBroken(CloseCode, String),
    /// The provider sent a close frame.
    UpstreamClosed(Option<CloseFrame>),
    /// The provider's connection failed or ended without a close frame.
    UpstreamGone(String),
    /// The provider sent a message over `max_message_bytes`.
    UpstreamTooBig,
    /// No frame either way for `idle_timeout`.
    Idle,
}

/// A client message being reassembled from continuation frames.
struct Partial {
    text: bool,
    buf: BytesMut,
}

/// Serves one admitted socket to its end: connects to the first candidate deployment that
/// accepts (an `error` event and close 1011 when none does), then relays frames.
pub async fn run(state: Arc<AppState>, admitted: Admitted, client: Session, stream: MessageStream) {
    let Admitted {
        mut account,
        candidates,
        slot,
        beta,
        intent,
    } = admitted;
    let cfg = state.config.realtime;
    let stream = stream.max_frame_size(cfg.max_message_bytes);
    let mut last_error = None;
    let mut connected = None;
    for d in &candidates {
        let attempt = match upstream_request(d, beta.as_deref(), intent.as_deref()) {
            Ok(req) => connect(d, &req, cfg.max_message_bytes).await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(socket) => {
                connected = Some((socket, Arc::clone(d)));
                break;
            }
            Err(e) => {
                tracing::warn!(deployment = %d.id, error = %e, "realtime upstream connect failed");
                last_error = Some(e);
            }
        }
    }
    let Some((upstream, deployment)) = connected else {
        refuse(client, last_error).await;
        account.close();
        return;
    };
    tracing::info!(key = %account.payer.key_id, group = %account.group, deployment = %deployment.id, "realtime socket open");
    let mut relay = Relay {
        state: &state,
        account: &account,
        deployment: &deployment,
        client,
        upstream,
        max_message_bytes: cfg.max_message_bytes,
    };
    let end = relay.pump(stream, cfg.idle_timeout).await;
    tracing::info!(key = %account.payer.key_id, group = %account.group, deployment = %deployment.id, end = ?end, "realtime socket closed");
    relay.finish(end).await;
    account.close();
    drop(slot);
}

/// Tells the client that no deployment could be reached: an OpenAI-style `error` event, then
/// close 1011.
async fn refuse(mut client: Session, e: Option<UpstreamError>) {
    let message = e.map_or_else(
        || "no deployment could be reached".to_string(),
        |e| e.to_string(),
    );
    let _ = client
        .text(error_event(
            "server_error",
            "upstream_connect_failed",
            &message,
            None,
        ))
        .await;
    let _ = client
        .close(Some(reason(CloseCode::Error, "upstream connection failed")))
        .await;
}

/// An OpenAI Realtime `error` server event; `client_event` is the `event_id` of the client
/// event it answers, if any.
pub fn error_event(kind: &str, code: &str, message: &str, client_event: Option<&str>) -> String {
    json!({
        "type": "error",
        "event_id": format!("event_sluice_{}", uuid::Uuid::new_v4().simple()),
        "error": {
            "type": kind,
            "code": code,
            "message": message,
            "param": null,
            "event_id": client_event,
        }
    })
    .to_string()
}

fn reason(code: CloseCode, description: &str) -> CloseReason {
    CloseReason {
        code,
        description: Some(description.to_string()),
    }
}

fn up_close(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code: UpCode::from(code),
        reason: Utf8Bytes::from(reason),
    }
}

/// Both ends of one socket and what its usage is charged to.
struct Relay<'a> {
    state: &'a AppState,
    account: &'a Account,
    deployment: &'a Arc<Deployment>,
    client: Session,
    upstream: Upstream,
    max_message_bytes: usize,
}

impl Relay<'_> {
    /// Relays until one side ends, or the socket idles for `idle`.
    async fn pump(&mut self, mut stream: MessageStream, idle: Duration) -> End {
        let to_upstream = metrics::counter!(FRAMES_TOTAL, "direction" => "to_upstream");
        let to_client = metrics::counter!(FRAMES_TOTAL, "direction" => "to_client");
        let deadline = tokio::time::sleep(idle);
        tokio::pin!(deadline);
        let mut partial: Option<Partial> = None;
        loop {
            tokio::select! {
                msg = stream.recv() => {
                    deadline.as_mut().reset(Instant::now() + idle);
                    let out = match msg {
                        None => return End::ClientGone,
                        Some(Err(ProtocolError::Overflow)) => return End::ClientTooBig,
                        Some(Err(e)) => return End::ClientBroken(CloseCode::Protocol, e.to_string()),
                        Some(Ok(Message::Close(r))) => return End::ClientClosed(r),
                        Some(Ok(Message::Ping(b))) => {
                            if self.client.pong(&b).await.is_err() {
                                return End::ClientGone;
                            }
                            continue;
                        }
                        Some(Ok(Message::Pong(_) | Message::Nop)) => continue,
                        Some(Ok(Message::Text(t))) => {
                            // A spent budget refuses new responses; the socket stays usable.
                            if let Some((refusal, event_id)) =
                                budget_refusal(self.state, self.account, &t)
                            {
                                let event = error_event(
                                    "budget_exceeded",
                                    "budget_exceeded",
                                    &refusal.to_string(),
                                    event_id.as_deref(),
                                );
                                if self.client.text(event).await.is_err() {
                                    return End::ClientGone;
                                }
                                continue;
                            }
                            match text_up(t.into_bytes()) {
                                Ok(t) => UpMessage::Text(t),
                                Err(end) => return end,
                            }
                        }
                        Some(Ok(Message::Binary(b))) => UpMessage::Binary(b),
                        Some(Ok(Message::Continuation(item))) => {
                            match self.reassemble(&mut partial, item) {
                                Ok(Some(m)) => m,
                                Ok(None) => continue,
                                Err(end) => return end,
                            }
                        }
                    };
                    to_upstream.increment(1);
                    if let Err(e) = self.upstream.send(out).await {
                        return End::UpstreamGone(e.to_string());
                    }
                }
                msg = self.upstream.next() => {
                    deadline.as_mut().reset(Instant::now() + idle);
                    match msg {
                        None => return End::UpstreamGone("connection ended".into()),
                        Some(Err(UpError::Capacity(_))) => return End::UpstreamTooBig,
                        Some(Err(e)) => return End::UpstreamGone(e.to_string()),
                        Some(Ok(UpMessage::Close(f))) => return End::UpstreamClosed(f),
                        // tungstenite answers the provider's pings itself.
                        Some(Ok(UpMessage::Ping(_) | UpMessage::Pong(_) | UpMessage::Frame(_))) => {}
                        Some(Ok(UpMessage::Text(t))) => {
                            to_client.increment(1);
                            let usage = usage_of(&t);
                            let Ok(text) = ByteString::try_from(Bytes::from(t)) else {
                                return End::UpstreamGone("invalid UTF-8 in a text frame".into());
                            };
                            if self.client.text(text).await.is_err() {
                                return End::ClientGone;
                            }
                            if let Some(u) = usage {
                                record_usage(self.state, self.account, self.deployment, &u);
                            }
                        }
                        Some(Ok(UpMessage::Binary(b))) => {
                            to_client.increment(1);
                            if self.client.binary(b).await.is_err() {
                                return End::ClientGone;
                            }
                        }
                    }
                }
                () = &mut deadline => return End::Idle,
            }
        }
    }

    /// Adds a continuation frame; the whole message once its last frame arrived.
    fn reassemble(
        &self,
        partial: &mut Option<Partial>,
        item: Item,
    ) -> Result<Option<UpMessage>, End> {
        let (first, bytes, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        if let Some(text) = first {
            *partial = Some(Partial {
                text,
                buf: BytesMut::new(),
            });
        }
        let Some(p) = partial.as_mut() else {
            return Err(End::ClientBroken(
                CloseCode::Protocol,
                "continuation frame without a first frame".into(),
            ));
        };
        if p.buf.len() + bytes.len() > self.max_message_bytes {
            return Err(End::ClientTooBig);
        }
        p.buf.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let Some(p) = partial.take() else {
            return Ok(None);
        };
        let bytes = p.buf.freeze();
        if p.text {
            Ok(Some(UpMessage::Text(text_up(bytes)?)))
        } else {
            Ok(Some(UpMessage::Binary(bytes)))
        }
    }

    /// Closes what is still open, telling each side why the other ended.
    async fn finish(self, end: End) {
        let Relay {
            client,
            mut upstream,
            ..
        } = self;
        let (to_client, to_upstream) = match end {
            End::ClientClosed(r) => {
                let frame = r.as_ref().map(|r| {
                    up_close(
                        u16::from(r.code),
                        r.description.as_deref().unwrap_or_default(),
                    )
                });
                (r, frame)
            }
            End::ClientGone => (None, Some(up_close(1001, "client went away"))),
            End::ClientTooBig => (
                Some(reason(CloseCode::Size, "message too big")),
                Some(up_close(1001, "client sent a message too big")),
            ),
            End::ClientBroken(code, why) => {
                tracing::debug!(error = %why, "realtime client broke the protocol");
                (
                    Some(reason(code, "protocol error")),
                    Some(up_close(1001, "client protocol error")),
                )
            }
            End::UpstreamClosed(f) => {
                let r = f.map(|f| CloseReason {
                    code: CloseCode::from(u16::from(f.code)),
                    description: (!f.reason.is_empty()).then(|| f.reason.to_string()),
                });
                (r, None)
            }
            End::UpstreamGone(why) => {
                tracing::warn!(error = %why, "realtime upstream connection lost");
                (
                    Some(reason(CloseCode::Error, "upstream connection lost")),
                    None,
                )
            }
            End::UpstreamTooBig => (
                Some(reason(CloseCode::Size, "upstream message too big")),
                Some(up_close(1009, "message too big")),
            ),
            End::Idle => (
                Some(reason(CloseCode::Normal, "idle timeout")),
                Some(up_close(1000, "idle timeout")),
            ),
        };
        let _ = client.close(to_client).await;
        // Completes (or starts) the closing handshake with the provider, briefly.
        let _ = upstream.close(to_upstream).await;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = upstream.next().await {}
        })
        .await;
    }
}

/// A client text payload as tungstenite's text (already valid UTF-8 for whole frames; checked
/// again for reassembled ones).
fn text_up(bytes: Bytes) -> Result<Utf8Bytes, End> {
    Utf8Bytes::try_from(bytes)
        .map_err(|_| End::ClientBroken(CloseCode::Invalid, "invalid UTF-8 in a text frame".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_events_have_openai_shape() {
        let v: serde_json::Value = serde_json::from_str(&error_event(
            "server_error",
            "upstream_connect_failed",
            "no",
            Some("e1"),
        ))
        .unwrap_or_default();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["code"], "upstream_connect_failed");
        assert_eq!(v["error"]["message"], "no");
        assert_eq!(v["error"]["event_id"], "e1");
        assert!(v["event_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("event_")));
    }
}
