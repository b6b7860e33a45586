//! Sluice: an OpenAI-compatible AI gateway with a local semantic cache.
//!
//! Modules follow the path of one request:
//!
//! ```text
//! server -> auth -> (limits) -> api handler -> pipeline
//!     pipeline: cache lookup (embed -> index -> store) -> router -> providers -> stream -> write back
//!     telemetry: metrics and logs around all of it
//! ```
pub mod cache;
pub mod embed;
pub mod index;
pub mod store;
