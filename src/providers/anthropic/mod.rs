//! Anthropic Messages API.

use super::{unsupported, Adapter, ChunkStream, Completion, UpstreamError};
use crate::config::Deployment;
use crate::wire::ChatRequest;

/// Anthropic adapter (in progress).
pub(super) struct Anthropic;

impl Adapter for Anthropic {
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
