//! Google Gemini generateContent API.

use super::{unsupported, Adapter, ChunkStream, Completion, UpstreamError};
use crate::config::Deployment;
use crate::wire::ChatRequest;

/// Gemini adapter (in progress).
pub(super) struct Gemini;

impl Adapter for Gemini {
    async fn chat(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        _req: &ChatRequest,
    ) -> Result<Completion, UpstreamError> {
        Err(unsupported(d))
    }

    async fn chat_stream(
        &self,
        _client: &reqwest::Client,
        d: &Deployment,
        _req: &ChatRequest,
        _force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError> {
        Err(unsupported(d))
    }
}
