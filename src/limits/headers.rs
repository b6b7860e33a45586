//! OpenAI's rate-limit response headers (`x-ratelimit-*-requests`, `x-ratelimit-*-tokens`) and
//! their duration format (`12s`, `1m0s`, `250ms`).

use actix_web::http::header::{HeaderName, HeaderValue};
use std::time::Duration;

/// One limit as the headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// The limit per minute.
    pub limit: u64,
    /// What is left of it now.
    pub remaining: u64,
    /// Until the oldest counted request (or token) leaves the window and `remaining` grows.
    pub reset: Duration,
}

impl Quota {
    /// The tighter of two quotas: fewer remaining, then the later reset.
    fn tighter(a: Option<Quota>, b: Option<Quota>) -> Option<Quota> {
        match (a, b) {
            (Some(a), Some(b)) => Some(
                if (b.remaining, std::cmp::Reverse(b.reset))
                    < (a.remaining, std::cmp::Reverse(a.reset))
                {
                    b
                } else {
                    a
                },
            ),
            (a, b) => a.or(b),
        }
    }
}

/// Rate-limit state of the tightest scope that applies to a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// Requests per minute.
    pub requests: Option<Quota>,
    /// Tokens per minute.
    pub tokens: Option<Quota>,
}

impl RateHeaders {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Keeps, for requests and for tokens separately, the tighter of `self` and `other`.
    pub fn tighten(&mut self, other: &RateHeaders) {
        self.requests = Quota::tighter(self.requests, other.requests);
        self.tokens = Quota::tighter(self.tokens, other.tokens);
    }

    /// Adds a quota of a scope, keeping the tighter.
    pub(crate) fn offer(&mut self, requests: Option<Quota>, tokens: Option<Quota>) {
        self.tighten(&RateHeaders { requests, tokens });
    }

    /// The header lines, in OpenAI's names.
    pub fn pairs(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::with_capacity(6);
        for (q, kind) in [(self.requests, "requests"), (self.tokens, "tokens")] {
            let Some(q) = q else { continue };
            for (name, value) in [
                ("limit", q.limit.to_string()),
                ("remaining", q.remaining.to_string()),
                ("reset", go_duration(q.reset)),
            ] {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::try_from(format!("x-ratelimit-{name}-{kind}")),
                    HeaderValue::try_from(value),
                ) {
                    out.push((n, v));
                }
            }
        }
        out
    }
}

/// A duration the way OpenAI (and Go) write it: `250ms`, `12s`, `1.5s`, `1m0s`, `1h2m3s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
    let (s, frac) = (ms / 1_000 % 60, ms % 1_000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_openai() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration(ms(0)), "0s");
        assert_eq!(go_duration(ms(250)), "250ms");
        assert_eq!(go_duration(ms(12_000)), "12s");
        assert_eq!(go_duration(ms(1_500)), "1.5s");
        assert_eq!(go_duration(ms(60_000)), "1m0s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_723_040)), "1h2m3.04s");
    }

    #[test]
    fn keeps_the_tightest_scope() {
        let q = |limit, remaining, reset| Quota {
            limit,
            remaining,
            reset: Duration::from_secs(reset),
        };
        let mut h = RateHeaders::default();
        h.offer(Some(q(100, 40, 5)), None);
        h.offer(Some(q(50, 10, 1)), Some(q(1000, 900, 3)));
        h.offer(Some(q(60, 10, 9)), None);
        assert_eq!(h.requests, Some(q(60, 10, 9)));
        assert_eq!(h.tokens, Some(q(1000, 900, 3)));
        let names: Vec<String> = h.pairs().iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            names,
            [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens"
            ]
        );
    }
}
