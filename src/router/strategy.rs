//! Routing strategies: how the deployments of a group are ordered for one request.
//!
//! Pure functions of the candidates' prices and observed health plus a seeded random source, so
//! every choice is reproducible in tests.

use super::health::Snapshot;
use crate::pricing::Price;
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// `router_settings.routing_strategy`: LiteLLM's names plus Sluice's `balanced`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingStrategy {
    /// Weighted random (`weight` per deployment).
    #[default]
    SimpleShuffle,
    /// Fewest calls in flight.
    LeastBusy,
    /// Lowest moving average of latency (time to first token for streams).
    LatencyBased,
    /// Lowest expected cost.
    CostBased,
    /// Lowest share of its rpm/tpm used this minute.
    UsageBased,
    /// Weighted sum of normalised expected cost, latency and recent error rate.
    Balanced,
}

impl RoutingStrategy {
    /// Accepted names (LiteLLM's, plus `balanced`).
    pub const NAMES: &'static [(&'static str, RoutingStrategy)] = &[
        ("simple-shuffle", Self::SimpleShuffle),
        ("least-busy", Self::LeastBusy),
        ("latency-based-routing", Self::LatencyBased),
        ("cost-based-routing", Self::CostBased),
        ("usage-based-routing", Self::UsageBased),
        ("usage-based-routing-v2", Self::UsageBased),
        ("balanced", Self::Balanced),
    ];

    /// Canonical name, for headers, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SimpleShuffle => "simple-shuffle",
            Self::LeastBusy => "least-busy",
            Self::LatencyBased => "latency-based-routing",
            Self::CostBased => "cost-based-routing",
            Self::UsageBased => "usage-based-routing",
            Self::Balanced => "balanced",
        }
    }
}

impl FromStr for RoutingStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown routing strategy \"{s}\" (known: {})",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for RoutingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `model: "auto"` chooses among every capable deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoPolicy {
    /// Lowest expected cost.
    Cheapest,
    /// Lowest observed latency.
    Fastest,
    /// The `balanced` score.
    #[default]
    Balanced,
}

impl AutoPolicy {
    /// The strategy that implements the policy.
    pub fn strategy(self) -> RoutingStrategy {
        match self {
            Self::Cheapest => RoutingStrategy::CostBased,
            Self::Fastest => RoutingStrategy::LatencyBased,
            Self::Balanced => RoutingStrategy::Balanced,
        }
    }

    /// Config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cheapest => "cheapest",
            Self::Fastest => "fastest",
            Self::Balanced => "balanced",
        }
    }
}

impl FromStr for AutoPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cheapest" => Ok(Self::Cheapest),
            "fastest" => Ok(Self::Fastest),
            "balanced" => Ok(Self::Balanced),
            _ => Err(format!(
                "unknown auto policy \"{s}\" (known: cheapest, fastest, balanced)"
            )),
        }
    }
}

/// Weights of the `balanced` score (`sluice.routing.weights`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreWeights {
    /// Weight of expected cost (normalised by the most expensive candidate).
    pub cost: f64,
    /// Weight of latency (normalised by the slowest candidate).
    pub latency: f64,
    /// Weight of the recent error rate (0..1).
    pub errors: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        Self {
            cost: 1.0,
            latency: 1.0,
            errors: 2.0,
        }
    }
}

/// What a strategy sees of one candidate.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// Prices, if known.
    pub price: Option<Price>,
    /// Observed health.
    pub health: Snapshot,
    /// `weight` from the config (simple-shuffle).
    pub weight: f64,
    /// Configured requests per minute.
    pub rpm: Option<u64>,
    /// Configured tokens per minute.
    pub tpm: Option<u64>,
}

/// The request's size, as far as routing is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// Estimated prompt tokens.
    pub prompt_tokens: u64,
    /// Expected completion tokens.
    pub completion_tokens: u64,
    /// Whether it streams (latency means time to first token then).
    pub stream: bool,
}

impl View {
    fn cost(&self, size: Size) -> Option<f64> {
        self.price
            .map(|p| p.expected(size.prompt_tokens, size.completion_tokens))
    }

    fn latency(&self, size: Size) -> Option<f64> {
        if size.stream {
            self.health.ttft_ms.or(self.health.total_ms)
        } else {
            self.health.total_ms
        }
    }

    fn usage_share(&self, size: Size) -> f64 {
        let r = self.rpm.map_or(0.0, |l| {
            (self.health.minute_requests + 1) as f64 / l.max(1) as f64
        });
        let t = self.tpm.map_or(0.0, |l| {
            (self.health.minute_tokens + size.prompt_tokens) as f64 / l.max(1) as f64
        });
        r.max(t)
    }
}

/// The order in which to try the candidates, and why the first one leads.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Indexes into the candidate slice, best first.
    pub order: Vec<usize>,
    /// Human-readable reason for the first choice.
    pub reason: String,
}

fn usd(v: f64) -> String {
    if v >= 0.01 {
        format!("${v:.4}")
    } else {
        format!("${v:.6}")
    }
}

/// Sorts indexes by `key` ascending; ties broken by a random draw so equal deployments share load.
fn by_key<R: Rng>(n: usize, rng: &mut R, key: impl Fn(usize) -> f64) -> Vec<usize> {
    let mut keyed: Vec<(f64, f64, usize)> = (0..n).map(|i| (key(i), rng.random(), i)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    keyed.into_iter().map(|(_, _, i)| i).collect()
}

/// Orders the candidates for one request.
pub fn rank<R: Rng>(
    strategy: RoutingStrategy,
    views: &[View],
    size: Size,
    weights: ScoreWeights,
    rng: &mut R,
) -> Ranking {
    let n = views.len();
    let (order, reason) = match strategy {
        RoutingStrategy::SimpleShuffle => {
            // Weighted random permutation (Efraimidis-Spirakis): key u^(1/w), largest first.
            let total: f64 = views.iter().map(|v| v.weight).sum();
            let mut keyed: Vec<(f64, usize)> = (0..n)
                .map(|i| {
                    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                    (u.powf(1.0 / views[i].weight.max(1e-9)), i)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            let order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
            let w = order.first().map_or(0.0, |&i| views[i].weight);
            (order, format!("weighted random (weight {w} of {total})"))
        }
        RoutingStrategy::LeastBusy => {
            let order = by_key(n, rng, |i| views[i].health.in_flight as f64);
            let busy = order.first().map_or(0, |&i| views[i].health.in_flight);
            (order, format!("{busy} calls in flight"))
        }
        RoutingStrategy::LatencyBased => {
            // Unobserved deployments go first so that every deployment gets measured.
            let order = by_key(n, rng, |i| views[i].latency(size).unwrap_or(-1.0));
            let reason = match order.first().and_then(|&i| views[i].latency(size)) {
                Some(ms) => format!(
                    "lowest {} {ms:.0} ms",
                    if size.stream { "ttft" } else { "latency" }
                ),
                None => "latency not measured yet".to_string(),
            };
            (order, reason)
        }
        RoutingStrategy::CostBased => {
            let order = by_key(n, rng, |i| views[i].cost(size).unwrap_or(f64::INFINITY));
            let reason = match order.first().and_then(|&i| views[i].cost(size)) {
                Some(c) => format!("lowest expected cost {}", usd(c)),
                None => "no prices known".to_string(),
            };
            (order, reason)
        }
        RoutingStrategy::UsageBased => {
            let order = by_key(n, rng, |i| views[i].usage_share(size));
            let share = order.first().map_or(0.0, |&i| views[i].usage_share(size));
            (
                order,
                format!("{:.0}% of its rpm/tpm used this minute", share * 100.0),
            )
        }
        RoutingStrategy::Balanced => {
            let max_cost = views
                .iter()
                .filter_map(|v| v.cost(size))
                .fold(0.0, f64::max);
            let known: Vec<f64> = views.iter().filter_map(|v| v.latency(size)).collect();
            let max_lat = known.iter().copied().fold(0.0, f64::max);
            // An unmeasured deployment is assumed average, neither favoured nor shunned.
            let mean_lat = if known.is_empty() {
                0.0
            } else {
                known.iter().sum::<f64>() / known.len() as f64
            };
            let parts = |i: usize| {
                let v = &views[i];
                let cost = v.cost(size).unwrap_or(max_cost);
                let lat = v.latency(size).unwrap_or(mean_lat);
                let c = if max_cost > 0.0 { cost / max_cost } else { 0.0 };
                let l = if max_lat > 0.0 { lat / max_lat } else { 0.0 };
                let score =
                    weights.cost * c + weights.latency * l + weights.errors * v.health.error_rate;
                (score, cost, lat, v.health.error_rate)
            };
            let order = by_key(n, rng, |i| parts(i).0);
            let reason = order.first().map_or_else(String::new, |&i| {
                let (score, cost, lat, err) = parts(i);
                format!(
                    "lowest score {score:.3} (cost {}, latency {lat:.0} ms, errors {:.0}%)",
                    usd(cost),
                    err * 100.0
                )
            });
            (order, reason)
        }
    };
    Ranking { order, reason }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn view(price: Option<(f64, f64)>, total_ms: Option<f64>) -> View {
        View {
            price: price.map(|(input, output)| Price { input, output }),
            health: Snapshot {
                total_ms,
                ..Snapshot::default()
            },
            weight: 1.0,
            rpm: None,
            tpm: None,
        }
    }

    const SIZE: Size = Size {
        prompt_tokens: 1000,
        completion_tokens: 200,
        stream: false,
    };

    #[test]
    fn names_round_trip() {
        for (name, s) in RoutingStrategy::NAMES {
            assert_eq!(name.parse::<RoutingStrategy>().unwrap(), *s);
        }
        assert!("fastest-please".parse::<RoutingStrategy>().is_err());
        assert_eq!(
            "cheapest".parse::<AutoPolicy>().unwrap(),
            AutoPolicy::Cheapest
        );
    }

    #[test]
    fn cost_based_picks_cheapest() {
        let mut rng = StdRng::seed_from_u64(7);
        let views = [
            view(Some((3e-6, 15e-6)), Some(100.0)),
            view(Some((0.15e-6, 0.6e-6)), Some(900.0)),
            view(None, Some(50.0)),
        ];
        let r = rank(
            RoutingStrategy::CostBased,
            &views,
            SIZE,
            ScoreWeights::default(),
            &mut rng,
        );
        assert_eq!(r.order, vec![1, 0, 2]);
        assert!(
            r.reason.starts_with("lowest expected cost $0.000270"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn latency_based_picks_fastest_and_explores_unmeasured_first() {
        let mut rng = StdRng::seed_from_u64(7);
        let views = [view(None, Some(400.0)), view(None, Some(80.0))];
        let r = rank(
            RoutingStrategy::LatencyBased,
            &views,
            SIZE,
            ScoreWeights::default(),
            &mut rng,
        );
        assert_eq!(r.order, vec![1, 0]);
        let views = [view(None, Some(400.0)), view(None, None)];
        let r = rank(
            RoutingStrategy::LatencyBased,
            &views,
            SIZE,
            ScoreWeights::default(),
            &mut rng,
        );
        assert_eq!(r.order[0], 1);
    }

    #[test]
    fn balanced_demotes_a_deployment_as_it_slows_and_fails() {
        let mut rng = StdRng::seed_from_u64(1);
        let same_price = Some((1e-6, 2e-6));
        let mut views = [view(same_price, Some(100.0)), view(same_price, Some(120.0))];
        let w = ScoreWeights::default();
        assert_eq!(
            rank(RoutingStrategy::Balanced, &views, SIZE, w, &mut rng).order[0],
            0
        );
        views[0].health.total_ms = Some(600.0);
        assert_eq!(
            rank(RoutingStrategy::Balanced, &views, SIZE, w, &mut rng).order[0],
            1
        );
        views[0].health.total_ms = Some(100.0);
        views[0].health.error_rate = 0.6;
        let r = rank(RoutingStrategy::Balanced, &views, SIZE, w, &mut rng);
        assert_eq!(r.order[0], 1);
        assert!(r.reason.contains("latency 120 ms"), "{}", r.reason);
    }

    #[test]
    fn shuffle_follows_weights_and_is_reproducible_with_a_seed() {
        let mut views = [view(None, None), view(None, None)];
        views[1].weight = 3.0;
        let mut rng = StdRng::seed_from_u64(42);
        let firsts: Vec<usize> = (0..4000)
            .map(|_| {
                rank(
                    RoutingStrategy::SimpleShuffle,
                    &views,
                    SIZE,
                    ScoreWeights::default(),
                    &mut rng,
                )
                .order[0]
            })
            .collect();
        let share = firsts.iter().filter(|&&i| i == 1).count() as f64 / 4000.0;
        assert!((share - 0.75).abs() < 0.04, "{share}");
        let mut a = StdRng::seed_from_u64(9);
        let mut b = StdRng::seed_from_u64(9);
        for _ in 0..20 {
            assert_eq!(
                rank(
                    RoutingStrategy::SimpleShuffle,
                    &views,
                    SIZE,
                    ScoreWeights::default(),
                    &mut a
                ),
                rank(
                    RoutingStrategy::SimpleShuffle,
                    &views,
                    SIZE,
                    ScoreWeights::default(),
                    &mut b
                )
            );
        }
    }

    #[test]
    fn least_busy_and_usage_based() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut views = [view(None, None), view(None, None)];
        views[0].health.in_flight = 5;
        views[1].health.in_flight = 1;
        assert_eq!(
            rank(
                RoutingStrategy::LeastBusy,
                &views,
                SIZE,
                ScoreWeights::default(),
                &mut rng
            )
            .order[0],
            1
        );
        views[0].tpm = Some(100_000);
        views[0].health.minute_tokens = 10_000;
        views[1].tpm = Some(10_000);
        views[1].health.minute_tokens = 8_000;
        assert_eq!(
            rank(
                RoutingStrategy::UsageBased,
                &views,
                SIZE,
                ScoreWeights::default(),
                &mut rng
            )
            .order[0],
            0
        );
    }
}
