//! A fake Realtime API server (OpenAI's and Azure's handshake shapes): a tokio-tungstenite
//! server on an ephemeral port that records every handshake and frame, echoes text and binary
//! frames, and answers `{"type":"response.create"}` with a `response.done` carrying usage.
//!
//! Test-only commands (text frames): `{"type":"fake.close"}` makes the fake close with 4000
//! "bye". A fake started with [`FakeRealtime::refusing`] answers every handshake with HTTP 401.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// tungstenite's handshake callback returns its (large) `ErrorResponse` by value.
#![allow(clippy::result_large_err)]

use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Usage every `response.done` reports.
pub const INPUT_TOKENS: u64 = 120;
pub const OUTPUT_TOKENS: u64 = 45;

/// One upgrade request the fake received.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Path and query, as sent.
    pub uri: String,
    /// Every header, names lower-case.
    pub headers: Vec<(String, String)>,
}

impl Handshake {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A frame the fake received.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame: code and reason (`None`: no payload).
    Close(Option<(u16, String)>),
}

#[derive(Default)]
pub struct Shared {
    pub handshakes: Mutex<Vec<Handshake>>,
    pub frames: Mutex<Vec<Frame>>,
    /// Connections that ended (close frame or not).
    pub ended: Mutex<usize>,
}

pub struct FakeRealtime {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeRealtime {
    pub fn start() -> FakeRealtime {
        Self::spawn(false)
    }

    /// A fake that refuses every handshake with 401 and an OpenAI error body echoing the key.
    pub fn refusing() -> FakeRealtime {
        Self::spawn(true)
    }

    fn spawn(refuse: bool) -> FakeRealtime {
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let accept = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        tokio::spawn(serve(tcp, s.clone(), refuse));
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stop_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().unwrap();
        FakeRealtime {
            base: format!("http://{addr}"),
            shared,
            _stop: stop_tx,
        }
    }

    pub fn handshakes(&self) -> Vec<Handshake> {
        self.shared.handshakes.lock().unwrap().clone()
    }

    pub fn frames(&self) -> Vec<Frame> {
        self.shared.frames.lock().unwrap().clone()
    }

    pub fn ended(&self) -> usize {
        *self.shared.ended.lock().unwrap()
    }

    /// Waits (up to 10 s) until `cond` holds for the recorded frames.
    pub async fn wait_frames(&self, cond: impl Fn(&[Frame]) -> bool) -> Vec<Frame> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let frames = self.frames();
            if cond(&frames) || Instant::now() > end {
                return frames;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until `n` connections have ended.
    pub async fn wait_ended(&self, n: usize) -> usize {
        let end = Instant::now() + Duration::from_secs(10);
        while self.ended() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.ended()
    }
}

/// The `response.done` the fake sends for a `response.create`.
pub fn response_done() -> String {
    serde_json::json!({
        "type": "response.done",
        "event_id": "event_fake_1",
        "response": {
            "object": "realtime.response",
            "id": "resp_fake_1",
            "status": "completed",
            "output": [],
            "usage": {
                "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
                "input_tokens": INPUT_TOKENS,
                "output_tokens": OUTPUT_TOKENS,
                "input_token_details": {"text_tokens": 100, "audio_tokens": 20, "cached_tokens": 0},
                "output_token_details": {"text_tokens": 15, "audio_tokens": 30}
            }
        }
    })
    .to_string()
}

async fn serve(tcp: tokio::net::TcpStream, shared: Arc<Shared>, refuse: bool) {
    let record = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        shared.handshakes.lock().unwrap().push(Handshake {
            uri: req.uri().to_string(),
            headers,
        });
        if refuse {
            let presented = req
                .headers()
                .get("authorization")
                .or_else(|| req.headers().get("api-key"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {presented}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
            );
            let mut r = ErrorResponse::new(Some(body));
            *r.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
            return Err(r);
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) => {
                let text = t.to_string();
                shared
                    .frames
                    .lock()
                    .unwrap()
                    .push(Frame::Text(text.clone()));
                let reply = if text == r#"{"type":"response.create"}"# {
                    Message::text(response_done())
                } else if text == r#"{"type":"fake.close"}"# {
                    let _ = ws
                        .close(Some(CloseFrame {
                            code: CloseCode::from(4000),
                            reason: "bye".into(),
                        }))
                        .await;
                    continue;
                } else {
                    Message::Text(t)
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
            Message::Binary(b) => {
                shared
                    .frames
                    .lock()
                    .unwrap()
                    .push(Frame::Binary(b.to_vec()));
                if ws.send(Message::Binary(b)).await.is_err() {
                    break;
                }
            }
            Message::Close(f) => {
                shared.frames.lock().unwrap().push(Frame::Close(
                    f.map(|f| (u16::from(f.code), f.reason.to_string())),
                ));
            }
            _ => {}
        }
    }
    *shared.ended.lock().unwrap() += 1;
}
