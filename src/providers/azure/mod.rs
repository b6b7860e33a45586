//! Azure OpenAI deployments: OpenAI's bodies, Azure's URLs and `api-key` header.
//!
//! Owns only the endpoint (URL with `api-version`, key header) and which API versions accept
//! `stream_options`; requests, streams and error bodies go through the OpenAI adapter's code,
//! which already reads Azure's error shape (`code` as a string, `innererror`) and its
//! `retry-after` / `retry-after-ms` headers. Azure's content filtering answers either a 400 with
//! `code: "content_filter"` (passed on as a client error) or a 200 with
//! `finish_reason: "content_filter"` (passed through unchanged).

use super::openai::{self, Auth, Endpoint};
use super::{label, Adapter, ChunkStream, Completion, UpstreamError};
use crate::config::Deployment;
use crate::wire::{ChatRequest, EmbeddingsRequest};

/// `api-version` used when the deployment sets none: the current GA data-plane version.
pub(super) const DEFAULT_API_VERSION: &str = "2024-10-21";
/// First API version whose chat endpoint accepts `stream_options.include_usage`.
const FIRST_VERSION_WITH_STREAM_USAGE: &str = "2024-08-01";

/// The `api-version` a deployment uses.
fn api_version(d: &Deployment) -> &str {
    d.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION)
}

/// `{api_base}/openai/deployments/{deployment}/{operation}?api-version={version}`.
///
/// `api_base` is required (config validation rejects Azure deployments without one); the
/// check here only guards deployments built some other way.
fn endpoint(d: &Deployment, operation: &str) -> Result<Endpoint, UpstreamError> {
    let base = d
        .api_base
        .as_deref()
        .ok_or_else(|| UpstreamError::Unsupported {
            deployment: label(d),
            detail: "Azure deployments need litellm_params.api_base \
                     (https://<resource>.openai.azure.com)"
                .into(),
        })?;
    let mut url = reqwest::Url::parse(base).map_err(|e| UpstreamError::Unsupported {
        deployment: label(d),
        detail: format!("api_base is not a URL: {e}"),
    })?;
    // Path segments are pushed one by one so a deployment name is always percent-encoded.
    url.path_segments_mut()
        .map_err(|()| UpstreamError::Unsupported {
            deployment: label(d),
            detail: "api_base cannot take a path".into(),
        })?
        .pop_if_empty()
        .extend(["openai", "deployments", d.upstream_model.as_str()])
        .extend(operation.split('/'));
    url.query_pairs_mut()
        .append_pair("api-version", api_version(d));
    Ok(Endpoint {
        url: url.into(),
        auth: Auth::Header("api-key"),
    })
}

/// Azure OpenAI.
pub(super) struct Azure;

impl Adapter for Azure {
    async fn chat(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
    ) -> Result<Completion, UpstreamError> {
        let ep = endpoint(d, "chat/completions")?;
        openai::post_json(client, d, &ep, openai::chat_body(d, req, false)?).await
    }

    async fn chat_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &ChatRequest,
        force_usage: bool,
    ) -> Result<ChunkStream, UpstreamError> {
        let ep = endpoint(d, "chat/completions")?;
        let body = openai::chat_body(d, req, force_usage)?;
        openai::post_stream(client, d, &ep, body).await
    }

    async fn embeddings(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        req: &EmbeddingsRequest,
    ) -> Result<Completion, UpstreamError> {
        let ep = endpoint(d, "embeddings")?;
        openai::post_json(client, d, &ep, openai::embeddings_body(d, req)?).await
    }

    /// Dated versions before 2024-08-01 reject `stream_options`; named versions (`preview`,
    /// `latest`) are newer than that.
    fn stream_usage(&self, d: &Deployment) -> bool {
        let v = api_version(d);
        !v.starts_with(|c: char| c.is_ascii_digit()) || v >= FIRST_VERSION_WITH_STREAM_USAGE
    }

    /// Only when configured (`model_info.responses_native: true`): not every resource and
    /// region serves the Responses API.
    fn responses_native(&self, d: &Deployment) -> bool {
        d.responses_native.unwrap_or(false)
    }

    async fn responses(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Completion, UpstreamError> {
        let ep = responses_endpoint(d)?;
        openai::post_json(client, d, &ep, openai::responses_body(d, body)?).await
    }

    async fn responses_stream(
        &self,
        client: &reqwest::Client,
        d: &Deployment,
        body: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<ChunkStream, UpstreamError> {
        let ep = responses_endpoint(d)?;
        openai::post_stream(client, d, &ep, openai::responses_body(d, body)?).await
    }
}

/// Azure's Responses API: `{api_base}/openai/v1/responses` (the v1 surface, no `api-version`);
/// the deployment name goes in the body's `model`.
fn responses_endpoint(d: &Deployment) -> Result<Endpoint, UpstreamError> {
    let base = d
        .api_base
        .as_deref()
        .ok_or_else(|| UpstreamError::Unsupported {
            deployment: label(d),
            detail: "Azure deployments need litellm_params.api_base".into(),
        })?;
    Ok(Endpoint {
        url: format!("{}/openai/v1/responses", base.trim_end_matches('/')),
        auth: Auth::Header("api-key"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::providers::ProviderKind;

    fn deployment(base: Option<&str>, version: Option<&str>) -> Deployment {
        // Built from a real config so new Deployment fields need no change here.
        let mut d = crate::config::Config::builtin().unwrap().deployments[0].clone();
        d.provider = ProviderKind::Azure;
        d.upstream_model = "my gpt4o".into();
        d.api_base = base.map(str::to_string);
        d.api_key = Some(Secret::new("azure-key-123"));
        d.api_version = version.map(str::to_string);
        d
    }

    #[test]
    fn urls_name_the_deployment_and_version() {
        let d = deployment(Some("https://res.openai.azure.com"), None);
        let ep = endpoint(&d, "chat/completions").unwrap();
        assert_eq!(
            ep.url,
            "https://res.openai.azure.com/openai/deployments/my%20gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(ep.auth, Auth::Header("api-key"));
        let d = deployment(Some("https://res.openai.azure.com/"), Some("2024-06-01"));
        assert_eq!(
            endpoint(&d, "embeddings").unwrap().url,
            "https://res.openai.azure.com/openai/deployments/my%20gpt4o/embeddings?api-version=2024-06-01"
        );
        let d = deployment(Some("http://127.0.0.1:9/proxy"), None);
        assert!(endpoint(&d, "embeddings")
            .unwrap()
            .url
            .starts_with("http://127.0.0.1:9/proxy/openai/deployments/"));
    }

    #[test]
    fn responses_use_the_v1_surface_when_configured() {
        let mut d = deployment(Some("https://res.openai.azure.com/"), None);
        assert!(!Azure.responses_native(&d));
        d.responses_native = Some(true);
        assert!(Azure.responses_native(&d));
        let ep = responses_endpoint(&d).unwrap();
        assert_eq!(ep.url, "https://res.openai.azure.com/openai/v1/responses");
        assert_eq!(ep.auth, Auth::Header("api-key"));
    }

    #[test]
    fn missing_base_is_explained() {
        let err = endpoint(&deployment(None, None), "chat/completions").unwrap_err();
        assert!(err.to_string().contains("api_base"), "{err}");
    }

    #[test]
    fn stream_usage_depends_on_the_version() {
        let a = Azure;
        assert!(a.stream_usage(&deployment(Some("https://x"), None)));
        assert!(a.stream_usage(&deployment(Some("https://x"), Some("2024-08-01-preview"))));
        assert!(a.stream_usage(&deployment(Some("https://x"), Some("preview"))));
        assert!(!a.stream_usage(&deployment(Some("https://x"), Some("2024-02-01"))));
        assert!(!a.stream_usage(&deployment(Some("https://x"), Some("2024-06-01"))));
    }
}
