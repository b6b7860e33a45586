//! Router: model groups, the choice of deployment for a request, and what it has learnt about
//! each deployment (latency, errors, cooldown).
//!
//! Owns *which* deployment serves a request and in what order the others are tried; the
//! pipeline owns the attempts themselves. No I/O, no HTTP, no caching. Randomness comes from one
//! seedable generator (`sluice.routing.seed`) so tests are deterministic.

mod health;
mod strategy;

pub use health::{Health, InFlight, Snapshot};
pub use strategy::{rank, AutoPolicy, Ranking, RoutingStrategy, ScoreWeights, Size, View};

use crate::config::{Config, Deployment};
use crate::providers::UpstreamError;
use crate::wire::{ChatRequest, Content};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Routing and reliability settings (`router_settings` plus `sluice.routing`).
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// Strategy within a model group.
    pub strategy: RoutingStrategy,
    /// Weights of the `balanced` score.
    pub weights: ScoreWeights,
    /// Retries after the first attempt, within a group (`num_retries`).
    pub num_retries: u32,
    /// First backoff before trying a deployment again (`retry_after`); doubles per retry.
    pub backoff_base: Duration,
    /// Longest backoff, and the longest `Retry-After` Sluice waits for; a deployment asking for
    /// longer is not retried (the client gets its 429 and `Retry-After`).
    pub backoff_max: Duration,
    /// Failures tolerated per `cooldown_time` window before a deployment cools down.
    pub allowed_fails: u32,
    /// How long a deployment is skipped after too many failures (`cooldown_time`).
    pub cooldown: Duration,
    /// Groups to try when a group fails (`fallbacks`).
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Groups to try when the prompt is too long (`context_window_fallbacks`).
    pub context_window_fallbacks: BTreeMap<String, Vec<String>>,
    /// Groups to try when a content policy refused (`content_policy_fallbacks`).
    pub content_policy_fallbacks: BTreeMap<String, Vec<String>>,
    /// Model names that choose among every capable deployment, with their policy (`auto`).
    pub auto_groups: BTreeMap<String, AutoPolicy>,
    /// Completion size assumed when the request sets no `max_tokens`.
    pub expected_completion_tokens: u64,
    /// Seed of the routing random source (`None`: from the OS).
    pub seed: Option<u64>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            strategy: RoutingStrategy::default(),
            weights: ScoreWeights::default(),
            num_retries: 2,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            allowed_fails: 3,
            cooldown: Duration::from_secs(5),
            fallbacks: BTreeMap::new(),
            context_window_fallbacks: BTreeMap::new(),
            content_policy_fallbacks: BTreeMap::new(),
            auto_groups: BTreeMap::from([("auto".to_string(), AutoPolicy::Balanced)]),
            expected_completion_tokens: 256,
            seed: None,
        }
    }
}

/// What a deployment can do (from the price table, overridden by `model_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Context window in tokens, if known.
    pub context_window: Option<u64>,
    /// Largest completion, if known.
    pub max_output: Option<u64>,
    /// Tools / function calling.
    pub tools: bool,
    /// Image inputs.
    pub vision: bool,
    /// JSON mode / structured outputs.
    pub json: bool,
}

impl Default for Capabilities {
    /// A model nothing is known about is assumed capable; declare limits in `model_info`.
    fn default() -> Self {
        Self {
            context_window: None,
            max_output: None,
            tools: true,
            vision: true,
            json: true,
        }
    }
}

/// What a request needs from a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// `max_tokens` / `max_completion_tokens`, if set.
    pub max_output: Option<u64>,
    /// Sends tools.
    pub tools: bool,
    /// Sends images.
    pub vision: bool,
    /// Asks for JSON output.
    pub json: bool,
    /// Streams.
    pub stream: bool,
}

impl Needs {
    /// Reads the needs of a chat request.
    pub fn of(req: &ChatRequest) -> Self {
        let has = |k: &str| {
            req.extra
                .get(k)
                .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        };
        let vision = req.messages.iter().any(|m| match &m.content {
            Some(Content::Parts(parts)) => parts.iter().any(|p| {
                matches!(
                    p.get("type").and_then(Value::as_str),
                    Some("image_url" | "input_image" | "image")
                )
            }),
            _ => false,
        });
        let json = req
            .extra
            .get("response_format")
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "json_object" || t == "json_schema");
        let max_output = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|k| req.extra.get(*k).and_then(Value::as_u64));
        Self {
            prompt_tokens: crate::tokens::prompt_tokens(req),
            max_output,
            tools: has("tools") || has("functions"),
            vision,
            json,
            stream: req.is_stream(),
        }
    }

    /// Why `caps` cannot serve these needs, if it cannot.
    pub fn unmet_by(&self, caps: &Capabilities) -> Option<String> {
        if let Some(window) = caps.context_window {
            let want = self.prompt_tokens + self.max_output.unwrap_or(0);
            if want > window {
                return Some(format!("context window {window} < {want} tokens"));
            }
        }
        if let (Some(max), Some(want)) = (caps.max_output, self.max_output) {
            if want > max {
                return Some(format!("max output {max} < max_tokens {want}"));
            }
        }
        if self.tools && !caps.tools {
            return Some("no tool calling".into());
        }
        if self.vision && !caps.vision {
            return Some("no image input".into());
        }
        if self.json && !caps.json {
            return Some("no JSON mode".into());
        }
        None
    }
}

/// One deployment with what the router knows about it.
#[derive(Debug)]
pub struct Target {
    /// The deployment.
    pub deployment: Arc<Deployment>,
    /// Its observed health.
    pub health: Health,
}

/// The deployments sharing one `model_name`.
#[derive(Debug)]
pub struct ModelGroup {
    /// The name clients use.
    pub name: String,
    /// Its deployments, in config order.
    pub targets: Vec<Arc<Target>>,
}

/// The router's answer for one request: candidates in the order to try them.
#[derive(Debug, Clone)]
pub struct Route {
    /// Model group (or auto name) the request asked for.
    pub group: String,
    /// Strategy that ordered the candidates.
    pub strategy: RoutingStrategy,
    /// Candidates, best first; cooled-down deployments come last.
    pub candidates: Vec<Arc<Target>>,
    /// Why the first candidate leads.
    pub reason: String,
}

/// Why no route exists.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// Unknown model name.
    #[error("the model '{model}' does not exist")]
    UnknownModel {
        /// What was asked.
        model: String,
    },
    /// `auto` found no deployment able to serve the request.
    #[error("no deployment can serve this request for '{model}': {}", reasons.join("; "))]
    NoCapableDeployment {
        /// What was asked.
        model: String,
        /// Why each deployment was excluded.
        reasons: Vec<String>,
    },
}

/// Which fallback list a failure consults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The prompt did not fit: `context_window_fallbacks`.
    ContextWindow,
    /// A content policy refused: `content_policy_fallbacks`.
    ContentPolicy,
    /// Anything else worth another group: `fallbacks`.
    General,
    /// The request itself is wrong (4xx): no fallback.
    Client,
}

impl FailureClass {
    /// Whether the failure counts against the deployment's health (error rate, cooldown):
    /// outages, rate limits and timeouts do; a request the upstream rejected as wrong does not.
    pub fn blames_deployment(self) -> bool {
        matches!(self, Self::General)
    }

    /// Classifies an upstream error.
    pub fn of(e: &UpstreamError) -> Self {
        use crate::providers::UpstreamErrorKind as K;
        match e.kind() {
            K::ClientStatus => {
                let UpstreamError::Status(s) = e else {
                    return Self::Client;
                };
                let code = s.code.as_deref().unwrap_or("").to_ascii_lowercase();
                let kind = s.kind.as_deref().unwrap_or("").to_ascii_lowercase();
                let msg = s.message.to_ascii_lowercase();
                if code == "context_length_exceeded"
                    || msg.contains("context length")
                    || msg.contains("context window")
                    || msg.contains("maximum context")
                    || msg.contains("prompt is too long")
                    || msg.contains("too many tokens")
                {
                    Self::ContextWindow
                } else if code.contains("content_filter")
                    || code.contains("content_policy")
                    || kind.contains("content_policy")
                    || msg.contains("content management policy")
                    || msg.contains("content policy")
                {
                    Self::ContentPolicy
                } else {
                    Self::Client
                }
            }
            K::RateLimited
            | K::Auth
            | K::ServerStatus
            | K::Timeout
            | K::Connect
            | K::Protocol
            | K::Unsupported => Self::General,
        }
    }

    /// Whether trying the same deployment again can help.
    pub fn retry_same(e: &UpstreamError) -> bool {
        use crate::providers::UpstreamErrorKind as K;
        matches!(
            e.kind(),
            K::RateLimited | K::ServerStatus | K::Timeout | K::Connect | K::Protocol
        )
    }
}

/// Every model group, by name, with the routing state.
#[derive(Debug)]
pub struct Router {
    groups: HashMap<String, ModelGroup>,
    order: Vec<String>,
    all: Vec<Arc<Target>>,
    config: RoutingConfig,
    rng: Mutex<StdRng>,
}

impl Router {
    /// Builds the groups from the config.
    pub fn new(config: &Config) -> Self {
        let mut groups: HashMap<String, ModelGroup> = HashMap::new();
        let mut order = Vec::new();
        let mut all = Vec::new();
        for d in &config.deployments {
            let g = groups.entry(d.model_group.clone()).or_insert_with(|| {
                order.push(d.model_group.clone());
                ModelGroup {
                    name: d.model_group.clone(),
                    targets: Vec::new(),
                }
            });
            let t = Arc::new(Target {
                deployment: Arc::new(d.clone()),
                health: Health::default(),
            });
            g.targets.push(Arc::clone(&t));
            all.push(t);
        }
        let rng = match config.routing.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            groups,
            order,
            all,
            config: config.routing.clone(),
            rng: Mutex::new(rng),
        }
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&ModelGroup> {
        self.groups.get(name)
    }

    /// Whether `name` is a group or an auto name.
    pub fn knows(&self, name: &str) -> bool {
        self.groups.contains_key(name) || self.auto_policy(name).is_some()
    }

    /// The policy of an auto name (a real group of the same name wins).
    pub fn auto_policy(&self, name: &str) -> Option<AutoPolicy> {
        if self.groups.contains_key(name) {
            return None;
        }
        self.config.auto_groups.get(name).copied()
    }

    /// Group names in config order.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Auto names that are not groups.
    pub fn auto_names(&self) -> impl Iterator<Item = &str> {
        self.config
            .auto_groups
            .keys()
            .filter(|n| !self.groups.contains_key(*n))
            .map(String::as_str)
    }

    /// Routing settings.
    pub fn config(&self) -> &RoutingConfig {
        &self.config
    }

    /// Every deployment with its health, in config order.
    pub fn targets(&self) -> &[Arc<Target>] {
        &self.all
    }

    /// Fallback groups for a failed group.
    pub fn fallbacks(&self, group: &str, class: FailureClass) -> &[String] {
        let map = match class {
            FailureClass::ContextWindow => &self.config.context_window_fallbacks,
            FailureClass::ContentPolicy => &self.config.content_policy_fallbacks,
            FailureClass::General => &self.config.fallbacks,
            FailureClass::Client => return &[],
        };
        map.get(group)
            .or_else(|| map.get("*"))
            .map_or(&[], Vec::as_slice)
    }

    /// Orders the deployments that may serve `model` for this request.
    pub fn route(&self, model: &str, needs: &Needs) -> Result<Route, RouteError> {
        let now = Instant::now();
        let (strategy, pool): (RoutingStrategy, Vec<Arc<Target>>) =
            if let Some(g) = self.groups.get(model) {
                (self.config.strategy, g.targets.clone())
            } else if let Some(policy) = self.auto_policy(model) {
                let mut reasons = Vec::new();
                let capable: Vec<Arc<Target>> = self
                    .all
                    .iter()
                    .filter(|t| match needs.unmet_by(&t.deployment.caps) {
                        None => true,
                        Some(why) => {
                            reasons.push(format!("{}: {why}", t.deployment.id));
                            false
                        }
                    })
                    .cloned()
                    .collect();
                if capable.is_empty() {
                    return Err(RouteError::NoCapableDeployment {
                        model: model.to_string(),
                        reasons,
                    });
                }
                (policy.strategy(), capable)
            } else {
                return Err(RouteError::UnknownModel {
                    model: model.to_string(),
                });
            };
        let (cool, warm): (Vec<_>, Vec<_>) =
            pool.into_iter().partition(|t| t.health.cooling_down(now));
        // Everything cooling down: try them anyway rather than fail without a call.
        let ranked_pool = if warm.is_empty() { cool.clone() } else { warm };
        let views: Vec<View> = ranked_pool
            .iter()
            .map(|t| View {
                price: t.deployment.price,
                health: t.health.snapshot(now),
                weight: t.deployment.weight,
                rpm: t.deployment.rpm,
                tpm: t.deployment.tpm,
            })
            .collect();
        let size = Size {
            prompt_tokens: needs.prompt_tokens,
            completion_tokens: needs
                .max_output
                .unwrap_or(self.config.expected_completion_tokens)
                .min(self.config.expected_completion_tokens.max(1) * 16),
            stream: needs.stream,
        };
        let ranking = rank(
            strategy,
            &views,
            size,
            self.config.weights,
            &mut *self.rng.lock(),
        );
        let mut candidates: Vec<Arc<Target>> = ranking
            .order
            .iter()
            .filter_map(|&i| ranked_pool.get(i).cloned())
            .collect();
        // Cooled-down deployments stay reachable as a last resort.
        for t in cool {
            if !candidates.iter().any(|c| Arc::ptr_eq(c, &t)) {
                candidates.push(t);
            }
        }
        let reason = if self.auto_policy(model).is_some() {
            format!("auto {}: {}", strategy, ranking.reason)
        } else {
            format!("{}: {}", strategy, ranking.reason)
        };
        Ok(Route {
            group: model.to_string(),
            strategy,
            candidates,
            reason,
        })
    }

    /// A random fraction in `[0, 1)` from the routing generator (retry jitter).
    pub fn jitter(&self) -> f64 {
        use rand::Rng;
        self.rng.lock().random()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn router(yaml: &str) -> Router {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        Router::new(&Config::load(&path).unwrap())
    }

    #[test]
    fn picks_every_deployment_of_a_group() {
        let r = router("model_list:\n  - {model_name: a, litellm_params: {model: mock/x}}\n  - {model_name: a, litellm_params: {model: mock/y}}\n  - {model_name: b, litellm_params: {model: mock/z}}\nsluice: {routing: {seed: 5}}\n");
        assert_eq!(r.names(), ["a", "b"]);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let route = r.route("a", &Needs::default()).unwrap();
            assert_eq!(route.candidates.len(), 2);
            seen.insert(route.candidates[0].deployment.id.clone());
        }
        assert_eq!(seen.len(), 2);
        assert!(matches!(
            r.route("c", &Needs::default()),
            Err(RouteError::UnknownModel { .. })
        ));
    }

    #[test]
    fn cooled_down_deployments_go_last() {
        let r = router("model_list:\n  - {model_name: a, litellm_params: {model: mock/x}}\n  - {model_name: a, litellm_params: {model: mock/y}}\nrouter_settings: {allowed_fails: 0, cooldown_time: 60}\nsluice: {routing: {seed: 5}}\n");
        let g = r.group("a").unwrap();
        let cfg = r.config();
        assert!(g.targets[0].health.record_failure(
            Instant::now(),
            cfg.allowed_fails,
            cfg.cooldown,
            cfg.cooldown
        ));
        for _ in 0..20 {
            let route = r.route("a", &Needs::default()).unwrap();
            assert_eq!(route.candidates[0].deployment.id, "a/1");
            assert_eq!(route.candidates.len(), 2);
        }
    }

    #[test]
    fn auto_filters_by_capability_and_policy() {
        let r = router(concat!(
            "model_list:\n",
            "  - {model_name: small, litellm_params: {model: mock/s}, model_info: {max_input_tokens: 100, input_cost_per_token: 0.0000001, output_cost_per_token: 0.0000002}}\n",
            "  - {model_name: big, litellm_params: {model: mock/b}, model_info: {max_input_tokens: 100000, input_cost_per_token: 0.000003, output_cost_per_token: 0.000015}}\n",
            "  - {model_name: blind, litellm_params: {model: mock/n}, model_info: {supports_vision: false, max_input_tokens: 1000, input_cost_per_token: 0.00000001, output_cost_per_token: 0.00000001}}\n",
            "sluice: {routing: {seed: 1, auto: {policy: cheapest}}}\n",
        ));
        let short = Needs {
            prompt_tokens: 20,
            ..Needs::default()
        };
        let route = r.route("auto", &short).unwrap();
        assert_eq!(
            route.candidates[0].deployment.id, "blind/0",
            "{}",
            route.reason
        );
        assert!(
            route.reason.starts_with("auto cost-based-routing"),
            "{}",
            route.reason
        );
        let long_image = Needs {
            prompt_tokens: 5000,
            vision: true,
            ..Needs::default()
        };
        let route = r.route("auto", &long_image).unwrap();
        assert_eq!(route.candidates.len(), 1);
        assert_eq!(route.candidates[0].deployment.id, "big/0");
        let huge = Needs {
            prompt_tokens: 10_000_000,
            ..Needs::default()
        };
        let err = r.route("auto", &huge).unwrap_err().to_string();
        assert!(err.contains("small/0: context window 100 <"), "{err}");
    }

    #[test]
    fn failures_are_classified_for_fallbacks() {
        use crate::providers::StatusError;
        let status = |status: u16, code: Option<&str>, message: &str| {
            UpstreamError::Status(Box::new(StatusError {
                deployment: "d".into(),
                status,
                message: message.into(),
                kind: None,
                param: None,
                code: code.map(str::to_string),
                retry_after: None,
            }))
        };
        assert_eq!(
            FailureClass::of(&status(400, Some("context_length_exceeded"), "x")),
            FailureClass::ContextWindow
        );
        assert_eq!(
            FailureClass::of(&status(400, None, "prompt is too long: 210000 tokens")),
            FailureClass::ContextWindow
        );
        assert_eq!(
            FailureClass::of(&status(400, Some("content_filter"), "x")),
            FailureClass::ContentPolicy
        );
        assert_eq!(
            FailureClass::of(&status(400, None, "bad")),
            FailureClass::Client
        );
        assert_eq!(
            FailureClass::of(&status(500, None, "x")),
            FailureClass::General
        );
        assert_eq!(
            FailureClass::of(&status(429, None, "x")),
            FailureClass::General
        );
        assert!(FailureClass::retry_same(&status(429, None, "x")));
        assert!(!FailureClass::retry_same(&status(401, None, "x")));
    }
}
