//! Limits: requests and tokens per minute, and requests running at once, per virtual key, end
//! user, model group, deployment and for the whole gateway.
//!
//! Owns admission (may this request go on?) and the counts behind it; it knows nothing of HTTP
//! beyond the header names, and spend and budgets live in `spend`.
//!
//! - **Windows.** Each scope has a sliding 60-second window of one-second buckets
//!   ([`window::Window`]): a request counted at second `s` stops counting at `s + 60`, so the
//!   reset times in headers and `retry-after` are exact to the second.
//! - **Atomic across scopes.** One lock covers every window. [`Limiter::admit`] checks every scope
//!   a request falls under and counts it in all of them only if none refuses, so 200 concurrent
//!   requests against `rpm: 50` let exactly 50 through.
//! - **Tokens.** A request is admitted with an estimate (prompt tokens from [`crate::tokens`]
//!   plus `max_tokens` when set) and its [`Ticket`] is settled with the real usage after the call:
//!   the difference is added to or taken from the second it was counted in.
//! - **Two steps when the cache may answer.** The request is counted first (RPM, parallel), its
//!   tokens only after the cache missed, so cache hits count against RPM but not TPM
//!   (`sluice.limits.cache_hits_count_tokens` changes that). A refusal in the second step rolls
//!   the first back, so a refused request is never counted.
//! - **Deployments** are checked separately, just before each attempt, so a deployment at its
//!   own `rpm`/`tpm` is skipped in favour of another one of its group.
//!
//! Counts live in memory: a restart starts every window empty.

mod clock;
mod headers;
pub mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use headers::{go_duration, Quota, RateHeaders};

use crate::config::Deployment;
use crate::keys::VirtualKey;
use actix_web::http::header::HeaderMap;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use window::{Measure, Window, WINDOW_SECS};

/// Counter: requests refused by a rate limit, by `scope` (key, user, model_group, deployment,
/// global).
pub const RATE_LIMITED_TOTAL: &str = "sluice_rate_limited_total";

/// Header naming the end user, as an alternative to the body's `user` field.
pub const USER_HEADER: &str = "x-sluice-user";

/// How often idle windows are dropped (users come and go; their windows should not pile up).
const SWEEP_EVERY_SECS: u64 = WINDOW_SECS;

/// Per-minute limits of one scope; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute (prompt + completion).
    pub tpm: Option<u64>,
    /// Requests running at once.
    pub max_parallel_requests: Option<u64>,
}

impl Rate {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.max_parallel_requests.is_some()
    }
}

/// `sluice.limits`: limits that do not come from keys or deployments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    /// The whole gateway (`sluice.limits.global`).
    pub global: Rate,
    /// Per model group (`sluice.limits.groups`).
    pub groups: BTreeMap<String, Rate>,
    /// Every end user, each on their own (`sluice.limits.user`).
    pub user: Rate,
    /// Named end users, instead of `user` (`sluice.limits.users`).
    pub users: BTreeMap<String, Rate>,
    /// Whether cache hits count their tokens against TPM (default: no, only against RPM).
    pub cache_hits_count_tokens: bool,
}

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// A virtual key.
    Key,
    /// An end user (`user` field or `x-sluice-user`).
    User,
    /// A model group (or auto name).
    Group,
    /// One deployment.
    Deployment,
    /// The whole gateway.
    Global,
}

impl ScopeKind {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Key => "key",
            ScopeKind::User => "user",
            ScopeKind::Group => "model_group",
            ScopeKind::Deployment => "deployment",
            ScopeKind::Global => "global",
        }
    }
}

/// One scope a request falls under, with its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Which kind.
    pub kind: ScopeKind,
    /// Its id (key id, user, group, deployment id; empty for global).
    pub id: String,
    /// Name for messages (a key's alias, else its id).
    pub name: String,
    /// Its limits.
    pub rate: Rate,
}

impl Scope {
    /// `key 'alias'`, `user 'u'`, `the gateway`.
    fn describe(&self) -> String {
        match self.kind {
            ScopeKind::Key => format!("key '{}'", self.name),
            ScopeKind::User => format!("user '{}'", self.name),
            ScopeKind::Group => format!("model group '{}'", self.name),
            ScopeKind::Deployment => format!("deployment '{}'", self.name),
            ScopeKind::Global => "the gateway".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeId {
    kind: ScopeKind,
    id: String,
}

impl From<&Scope> for ScopeId {
    fn from(s: &Scope) -> Self {
        ScopeId {
            kind: s.kind,
            id: s.id.clone(),
        }
    }
}

/// What a request asks of its scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Count one request (and hold a parallel slot until the ticket is settled).
    pub request: bool,
    /// Tokens to count (the estimate).
    pub tokens: u64,
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Requests per minute.
    Rpm(u64),
    /// Tokens per minute; `needed` is this request's estimate.
    Tpm {
        /// The limit.
        tpm: u64,
        /// Tokens this request needs.
        needed: u64,
    },
    /// Requests running at once.
    Parallel(u64),
    /// The request alone needs more tokens than the scope's whole TPM.
    TooLarge {
        /// The limit.
        tpm: u64,
        /// Tokens this request needs.
        needed: u64,
    },
}

/// A refused request: which scope and limit, when to retry, and the headers to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Kind of the refusing scope.
    pub kind: ScopeKind,
    /// Its description (`key 'alias'`, `deployment 'gpt-4o/0'`, `the gateway`).
    pub scope: String,
    /// The limit.
    pub limit: Limit,
    /// When a retry can succeed, if that can be known.
    pub retry_after: Option<Duration>,
    /// Rate-limit headers at the time of the refusal.
    pub headers: RateHeaders,
}

impl Refusal {
    /// OpenAI's error `type` for it: `requests` or `tokens`.
    pub fn error_type(&self) -> &'static str {
        match self.limit {
            Limit::Rpm(_) | Limit::Parallel(_) => "requests",
            Limit::Tpm { .. } | Limit::TooLarge { .. } => "tokens",
        }
    }

    /// Whole seconds for `retry-after` (at least 1), if a retry can succeed.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_millis().div_ceil(1_000).max(1) as u64)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retry = match self.retry_after_secs() {
            Some(s) => format!("retry in {s} s"),
            None => "retry later".to_string(),
        };
        match self.limit {
            Limit::Rpm(n) => write!(
                f,
                "rate limit exceeded for {} (rpm {n}): {retry}",
                self.scope
            ),
            Limit::Tpm { tpm, needed } => write!(
                f,
                "rate limit exceeded for {} (tpm {tpm}; this request needs about {needed} tokens): {retry}",
                self.scope
            ),
            Limit::Parallel(n) => write!(
                f,
                "too many parallel requests for {} (max_parallel_requests {n}): retry when one finishes",
                self.scope
            ),
            Limit::TooLarge { tpm, needed } => write!(
                f,
                "request too large for {}: about {needed} tokens, more than its whole tpm limit of {tpm}",
                self.scope
            ),
        }
    }
}

impl std::error::Error for Refusal {}

#[derive(Debug)]
struct Inner {
    windows: HashMap<ScopeId, Window>,
    last_sweep: u64,
}

/// Every rate window, behind one lock.
#[derive(Debug)]
pub struct Limiter {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    config: LimitsConfig,
}

/// The end user of a request: the `x-sluice-user` header, else the body's `user` field.
pub fn end_user(headers: &HeaderMap, body_user: Option<&str>) -> Option<String> {
    headers
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .or(body_user)
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
}

/// Tokens a chat request is admitted with: the prompt estimate plus `max_tokens` when set (as
/// OpenAI counts against TPM); the real usage replaces it after the call.
pub fn estimate(needs: &crate::router::Needs) -> u64 {
    needs.prompt_tokens + needs.max_output.unwrap_or(0)
}

impl Limiter {
    /// A limiter with empty windows.
    pub fn new(config: LimitsConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                windows: HashMap::new(),
                last_sweep: 0,
            }),
            clock,
            config,
        })
    }

    /// The configured limits.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// The scopes a request falls under, most specific first; scopes without limits are left
    /// out.
    pub fn scopes(&self, key: Option<&VirtualKey>, user: Option<&str>, group: &str) -> Vec<Scope> {
        let mut out = Vec::with_capacity(4);
        if let Some(k) = key {
            let rate = Rate {
                rpm: k.rpm,
                tpm: k.tpm,
                max_parallel_requests: k.max_parallel_requests,
            };
            if rate.is_limited() {
                out.push(Scope {
                    kind: ScopeKind::Key,
                    id: k.id.clone(),
                    name: k.alias.clone().unwrap_or_else(|| k.id.clone()),
                    rate,
                });
            }
        }
        if let Some(u) = user {
            let rate = *self.config.users.get(u).unwrap_or(&self.config.user);
            if rate.is_limited() {
                out.push(Scope {
                    kind: ScopeKind::User,
                    id: u.to_string(),
                    name: u.to_string(),
                    rate,
                });
            }
        }
        if let Some(rate) = self.config.groups.get(group).filter(|r| r.is_limited()) {
            out.push(Scope {
                kind: ScopeKind::Group,
                id: group.to_string(),
                name: group.to_string(),
                rate: *rate,
            });
        }
        if self.config.global.is_limited() {
            out.push(Scope {
                kind: ScopeKind::Global,
                id: String::new(),
                name: String::new(),
                rate: self.config.global,
            });
        }
        out
    }

    /// The scope of a deployment's own `rpm`/`tpm`, if it has any.
    pub fn deployment_scope(d: &Deployment) -> Option<Scope> {
        let rate = Rate {
            rpm: d.rpm,
            tpm: d.tpm,
            max_parallel_requests: None,
        };
        rate.is_limited().then(|| Scope {
            kind: ScopeKind::Deployment,
            id: d.id.clone(),
            name: d.id.clone(),
            rate,
        })
    }

    /// Checks `demand` against every scope and, only if none refuses, counts it in all of them.
    pub fn admit(
        self: &Arc<Self>,
        scopes: &[Scope],
        demand: Demand,
    ) -> Result<Ticket, Box<Refusal>> {
        let mut ticket = Ticket {
            limiter: Arc::clone(self),
            held: scopes.iter().map(|s| (ScopeId::from(s), s.rate)).collect(),
            parallel: Vec::new(),
            request_at: None,
            tokens_at: None,
            tokens: 0,
            headers: RateHeaders::default(),
            open: true,
        };
        self.count(scopes, demand, &mut ticket)?;
        Ok(ticket)
    }

    /// The second step for a ticket admitted with requests only: its tokens. On refusal the
    /// ticket is rolled back (the request no longer counts) and closed.
    pub fn admit_tokens(
        &self,
        scopes: &[Scope],
        ticket: &mut Ticket,
        tokens: u64,
    ) -> Result<(), Box<Refusal>> {
        let demand = Demand {
            request: false,
            tokens,
        };
        match self.count(scopes, demand, ticket) {
            Ok(()) => Ok(()),
            Err(r) => {
                ticket.cancel();
                Err(r)
            }
        }
    }

    /// The check-and-count itself, under the one lock.
    fn count(
        &self,
        scopes: &[Scope],
        demand: Demand,
        ticket: &mut Ticket,
    ) -> Result<(), Box<Refusal>> {
        if scopes.is_empty() {
            return Ok(());
        }
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1_000;
        let mut inner = self.inner.lock();
        inner.sweep(now);
        let mut refusal: Option<(usize, Limit, Option<Duration>)> = None;
        // The ticket holds the scopes' ids in the same order (built from the same list).
        for (i, (s, (id, _))) in scopes.iter().zip(&ticket.held).enumerate() {
            let w = inner.window(id, now);
            let r = &s.rate;
            let until = |m: Measure, need: u64| {
                w.frees_at(m, need)
                    .map(|at| Duration::from_millis((at * 1_000).saturating_sub(now_ms)))
            };
            if demand.request {
                if let Some(rpm) = r.rpm {
                    let used = w.used(Measure::Requests);
                    if used + 1 > rpm {
                        let wait = until(Measure::Requests, used + 1 - rpm);
                        refusal = Some((i, Limit::Rpm(rpm), wait));
                        break;
                    }
                }
                if let Some(max) = r.max_parallel_requests {
                    if w.in_flight + 1 > max {
                        refusal = Some((i, Limit::Parallel(max), Some(Duration::from_secs(1))));
                        break;
                    }
                }
            }
            if let (Some(tpm), n @ 1..) = (r.tpm, demand.tokens) {
                let used = w.used(Measure::Tokens);
                if n > tpm {
                    refusal = Some((i, Limit::TooLarge { tpm, needed: n }, None));
                    break;
                }
                if used + n > tpm {
                    let wait = until(Measure::Tokens, used + n - tpm);
                    refusal = Some((i, Limit::Tpm { tpm, needed: n }, wait));
                    break;
                }
            }
        }
        if let Some((i, limit, retry_after)) = refusal {
            let s = &scopes[i];
            metrics::counter!(RATE_LIMITED_TOTAL, "scope" => s.kind.as_str()).increment(1);
            return Err(Box::new(Refusal {
                kind: s.kind,
                scope: s.describe(),
                limit,
                retry_after,
                headers: inner.headers(&ticket.held, now_ms),
            }));
        }
        for (id, rate) in &ticket.held {
            let w = inner.window(id, now);
            w.add(u64::from(demand.request), demand.tokens);
            if demand.request && rate.max_parallel_requests.is_some() {
                w.in_flight += 1;
                ticket.parallel.push(id.clone());
            }
        }
        if demand.request {
            ticket.request_at = Some(now);
        }
        if demand.tokens > 0 {
            ticket.tokens_at = Some(now);
            ticket.tokens = demand.tokens;
        }
        ticket.headers = inner.headers(&ticket.held, now_ms);
        Ok(())
    }

    /// Current headers for a set of scopes, without counting anything.
    pub fn peek(&self, scopes: &[Scope]) -> RateHeaders {
        let now_ms = self.clock.now_ms();
        let held: Vec<(ScopeId, Rate)> =
            scopes.iter().map(|s| (ScopeId::from(s), s.rate)).collect();
        let mut inner = self.inner.lock();
        for (id, _) in &held {
            inner.window(id, now_ms / 1_000);
        }
        inner.headers(&held, now_ms)
    }

    /// Number of windows held (tests, debugging).
    pub fn windows(&self) -> usize {
        self.inner.lock().windows.len()
    }
}

impl Inner {
    /// The scope's window, advanced to `now`.
    fn window(&mut self, id: &ScopeId, now: u64) -> &mut Window {
        let w = self
            .windows
            .entry(id.clone())
            .or_insert_with(|| Window::new(now));
        w.advance(now);
        w
    }

    /// Drops idle windows once a minute.
    fn sweep(&mut self, now: u64) {
        if now < self.last_sweep + SWEEP_EVERY_SECS {
            return;
        }
        self.last_sweep = now;
        self.windows.retain(|_, w| {
            w.advance(now);
            !w.is_idle()
        });
    }

    /// The tightest requests and tokens quotas among `held` (windows already advanced).
    fn headers(&self, held: &[(ScopeId, Rate)], now_ms: u64) -> RateHeaders {
        let mut h = RateHeaders::default();
        for (id, rate) in held {
            let Some(w) = self.windows.get(id) else {
                continue;
            };
            let quota = |limit: Option<u64>, m: Measure| {
                limit.map(|limit| Quota {
                    limit,
                    remaining: limit.saturating_sub(w.used(m)),
                    reset: w
                        .frees_at(m, 1)
                        .map(|at| Duration::from_millis((at * 1_000).saturating_sub(now_ms)))
                        .unwrap_or_default(),
                })
            };
            h.offer(
                quota(rate.rpm, Measure::Requests),
                quota(rate.tpm, Measure::Tokens),
            );
        }
        h
    }
}

/// A request's place in its windows: settle it with the real token count after the call,
/// cancel it if the request is refused later on. Dropping it frees its parallel slots and keeps
/// the counted estimate.
#[derive(Debug)]
pub struct Ticket {
    limiter: Arc<Limiter>,
    held: Vec<(ScopeId, Rate)>,
    parallel: Vec<ScopeId>,
    request_at: Option<u64>,
    tokens_at: Option<u64>,
    tokens: u64,
    headers: RateHeaders,
    open: bool,
}

impl Ticket {
    /// Rate-limit headers as of the admission (or the settlement, once settled).
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Tokens counted so far (the estimate until settled).
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Replaces the counted estimate with `actual` tokens (or counts them now, if none were
    /// counted) and frees the parallel slots.
    pub fn settle(&mut self, actual: u64) {
        if !self.open {
            return;
        }
        let now = self.limiter.clock.now_ms() / 1_000;
        let delta = i64::try_from(actual).unwrap_or(i64::MAX)
            - i64::try_from(self.tokens).unwrap_or(i64::MAX);
        let mut inner = self.limiter.inner.lock();
        for (id, _) in &self.held {
            if let Some(w) = inner.windows.get_mut(id) {
                w.advance(now);
                match self.tokens_at {
                    Some(at) => w.adjust(at, 0, delta),
                    None => w.add(0, actual),
                }
            }
        }
        self.tokens = actual;
        release(&mut self.parallel, &mut inner);
        self.headers = inner.headers(&self.held, self.limiter.clock.now_ms());
        self.open = false;
    }

    /// Takes back everything this ticket counted, as if the request had never been admitted.
    pub fn cancel(&mut self) {
        if !self.open {
            return;
        }
        let now = self.limiter.clock.now_ms() / 1_000;
        let tokens = -i64::try_from(self.tokens).unwrap_or(i64::MAX);
        let mut inner = self.limiter.inner.lock();
        for (id, _) in &self.held {
            if let Some(w) = inner.windows.get_mut(id) {
                w.advance(now);
                if let Some(at) = self.request_at {
                    w.adjust(at, -1, 0);
                }
                if let Some(at) = self.tokens_at {
                    w.adjust(at, 0, tokens);
                }
            }
        }
        self.tokens = 0;
        release(&mut self.parallel, &mut inner);
        self.headers = inner.headers(&self.held, self.limiter.clock.now_ms());
        self.open = false;
    }
}

/// Frees the parallel slots a ticket holds.
fn release(parallel: &mut Vec<ScopeId>, inner: &mut Inner) {
    for id in parallel.drain(..) {
        if let Some(w) = inner.windows.get_mut(&id) {
            w.in_flight = w.in_flight.saturating_sub(1);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.open && !self.parallel.is_empty() {
            let mut inner = self.limiter.inner.lock();
            release(&mut self.parallel, &mut inner);
        }
    }
}

#[cfg(test)]
mod tests;
