//! Sluice: an OpenAI-compatible AI gateway with a local semantic cache.
//!
//! Modules in the order a request meets them:
//!
//! ```text
//! server (actix, request id, access log)
//!   -> api (routes, bodies, headers)
//!   -> auth (key -> Principal)
//!   -> pipeline (one readable function per endpoint)
//!        -> limits (rpm/tpm/parallel per key, user, group, global), spend (budgets)
//!        -> cache (embed -> index -> store)      on a hit: respond
//!        -> router (model group -> deployment)
//!        -> providers (wire formats, HTTP clients)
//!        -> stream (SSE tee + accumulator)
//!        -> limits (settle tokens with real usage), spend (record cost, alerts)
//!   telemetry (metrics, logs) and audit (hash-chained record of requests and admin actions)
//!   around all of it; dashboard (/ui: sessions, per-minute rollups, live tail) fed by each
//!   finished request; config and error at the edges.
//! ```
pub mod api;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod dashboard;
pub mod embed;
pub mod error;
/// Entry points for the `cargo fuzz` targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod keys;
pub mod limits;
pub mod pii;
pub mod pipeline;
pub mod pricing;
pub mod providers;
pub mod realtime;
pub mod responses;
pub mod router;
pub mod server;
pub mod spend;
pub mod state;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tokens;
pub mod wire;
