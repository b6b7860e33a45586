//! Spend: what each request cost (USD from the deployment's price and the real usage), rolled up
//! per key, end user, model group and UTC day, plus what cache hits saved; budgets per key, end
//! user and for the whole gateway, with alerts as they fill up.
//!
//! Owns the `spend` column family. Limits (requests and tokens per minute) live in `limits`.
//!
//! - **Rollups** are rows `(day, dimension, id) -> totals`. Requests add to an in-memory batch
//!   that a background thread folds into the rows every [`FLUSH_EVERY`] (and once more at
//!   shutdown). Reports read the store and the unwritten batch together, so they are always
//!   current.
//! - **Durability**: before [`Spend::record`] returns, the request's own delta (its totals, rows
//!   and budget windows) is one small RocksDB write (WAL, no fsync: it survives `kill -9` of the
//!   process). A flush writes the folded rows and windows and deletes the deltas it folded in one
//!   atomic batch; at start-up, deltas a crash left behind are folded in, rollups and budget
//!   windows alike, so no acknowledged spend is lost or counted twice.
//! - **Budgets** are fixed, consecutive windows of `budget_duration` from an origin: a key's
//!   creation time for key budgets; the Unix epoch for user and global budgets (so `1d` is the
//!   UTC day and `1h` the UTC hour). Without a duration a budget never resets. A request is
//!   refused when the spend of the current window has reached the budget; requests already
//!   running when it is reached still complete, so a window can end slightly over budget.
//! - **Alerts** fire when a window's spend crosses each configured fraction, once per window
//!   per budget.
//! - **Time** comes from an injectable [`Clock`], so tests cross window boundaries without
//!   sleeping.

mod alerts;

pub use alerts::{AlertsConfig, BudgetAlert, BUDGET_ALERTS_TOTAL};

use crate::clock::{day, format_duration, format_rfc3339};
use crate::config::Deployment;
use crate::keys::VirtualKey;
use crate::limits::Clock;
use crate::pricing::Price;
use crate::store::{Cf, Store, StoreError};
use crate::wire::Usage;
use alerts::Alerter;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Gauge: USD spent upstream, by `model_group` (monotonic; grows by each request's cost).
pub const SPEND_USD: &str = "sluice_spend_usd";
/// Counter: requests refused because a budget was spent, by `scope`.
pub const BUDGET_EXCEEDED_TOTAL: &str = "sluice_budget_exceeded_total";

/// How often unwritten spend reaches the store (what a crash of the process can lose).
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Budget windows kept in memory before written ones are dropped (they reload on demand).
const MAX_WINDOWS_IN_MEMORY: usize = 100_000;

/// Key prefix of rollup rows: `r\0DAY\0DIMENSION\0ID`.
const ROLLUP: &[u8] = b"r\0";
/// Key prefix of budget windows: `b\0SCOPE\0START\0ID`.
const BUDGET: &[u8] = b"b\0";
/// Key prefix of per-request deltas not yet folded into rollups and windows: `d\0SEQ`
/// (big-endian u64, so they sort in order).
const DELTA: &[u8] = b"d\0";

/// Why spend could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored row does not have the shape this code writes.
    #[error("corrupt spend row {key}: {detail}")]
    Corrupt {
        /// The row key, printable.
        key: String,
        /// What is wrong.
        detail: String,
    },
}

/// One budget: USD per window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// USD allowed per window.
    pub max_budget: f64,
    /// Window length in seconds; `None`: the budget never resets.
    pub duration_secs: Option<u64>,
}

/// `sluice.budgets` (and LiteLLM's `litellm_settings.max_budget` / `max_end_user_budget`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetsConfig {
    /// The whole gateway.
    pub global: Option<Budget>,
    /// Every end user, each on their own.
    pub user: Option<Budget>,
    /// Named end users, instead of `user`.
    pub users: BTreeMap<String, Budget>,
    /// Whether a cache hit's saved cost (what it would have cost upstream) counts against
    /// budgets, so a spent budget also stops hits. Off by default: hits are free.
    pub count_cache_hits: bool,
}

/// Totals of one rollup row (and of a report row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    /// USD paid upstream.
    pub spend_usd: f64,
    /// Prompt tokens paid upstream.
    pub prompt_tokens: u64,
    /// Completion tokens paid upstream.
    pub completion_tokens: u64,
    /// Requests served (upstream and cache).
    pub requests: u64,
    /// Requests answered by the cache.
    pub cache_hits: u64,
    /// Tokens cache hits did not pay for.
    pub saved_tokens: u64,
    /// USD cache hits did not pay for (at the price of the group's first priced deployment).
    pub saved_usd: f64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.spend_usd += o.spend_usd;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.requests += o.requests;
        self.cache_hits += o.cache_hits;
        self.saved_tokens += o.saved_tokens;
        self.saved_usd += o.saved_usd;
    }
}

/// Who pays for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Payer {
    /// Key id for rollups (`master`, `anonymous` or a virtual key's id).
    pub key_id: String,
    /// The virtual key, for its budget.
    pub key: Option<Arc<VirtualKey>>,
    /// The end user.
    pub user: Option<String>,
}

/// What one request cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Charge<'a> {
    /// Model group the request named.
    pub group: &'a str,
    /// Real usage (a cache hit's: what the original answer used).
    pub usage: Usage,
    /// USD paid upstream (0 for a cache hit, or when the deployment has no price).
    pub cost_usd: f64,
    /// Whether the cache answered.
    pub cache_hit: bool,
}

/// How a report groups rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Per virtual key id.
    Key,
    /// Per end user.
    User,
    /// Per model group.
    Model,
    /// Per UTC day.
    Day,
}

impl GroupBy {
    /// Parses `key`, `user`, `model`, `day`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(Self::Key),
            "user" => Some(Self::User),
            "model" => Some(Self::Model),
            "day" => Some(Self::Day),
            _ => None,
        }
    }

    /// The name of the grouping field in report rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::User => "user",
            Self::Model => "model",
            Self::Day => "day",
        }
    }

    /// The rollup dimension the report reads (`day` reads the all-requests rows).
    fn dimension(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::User => "user",
            Self::Model => "model",
            Self::Day => "all",
        }
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    /// The key id, user, model group or day.
    pub group: String,
    /// Its totals.
    #[serde(flatten)]
    pub totals: Totals,
}

/// Which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetScope {
    /// A virtual key's.
    Key,
    /// An end user's.
    User,
    /// The gateway's.
    Global,
}

impl BudgetScope {
    /// Label and key part.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Key => "key",
            BudgetScope::User => "user",
            BudgetScope::Global => "global",
        }
    }
}

/// A request refused because a budget is spent.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRefusal {
    /// Which budget.
    pub scope: BudgetScope,
    /// Key alias (or id), user, or empty for the gateway.
    pub name: String,
    /// USD spent in the current window.
    pub spend: f64,
    /// The budget.
    pub max_budget: f64,
    /// Window length, if the budget resets.
    pub duration_secs: Option<u64>,
    /// Unix seconds when the window ends, if it does.
    pub resets_at: Option<u64>,
    /// Time until then.
    pub retry_after: Option<Duration>,
    /// What the refused request was expected to cost (0 when unknown).
    pub expected_usd: f64,
}

impl fmt::Display for BudgetRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.scope {
            BudgetScope::Key => format!("key '{}'", self.name),
            BudgetScope::User => format!("user '{}'", self.name),
            BudgetScope::Global => "the gateway".to_string(),
        };
        write!(
            f,
            "budget exceeded for {who}: spent ${:.4} of ${:.4}",
            self.spend, self.max_budget
        )?;
        if self.expected_usd > 0.0 && self.spend < self.max_budget {
            write!(f, " and this request would cost ~${:.4}", self.expected_usd)?;
        }
        match (self.duration_secs, self.resets_at) {
            (Some(d), Some(at)) => write!(
                f,
                " in the current {} window; resets at {}",
                format_duration(d),
                format_rfc3339(at)
            ),
            _ => write!(f, "; the budget does not reset"),
        }
    }
}

impl std::error::Error for BudgetRefusal {}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BudgetId {
    scope: BudgetScope,
    id: String,
}

/// One budget's current window.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct BudgetWindow {
    /// Window start, Unix seconds.
    #[serde(skip)]
    start: u64,
    /// USD spent in it.
    spend: f64,
    /// Bit `i` set: threshold `i` has alerted in this window.
    fired: u32,
    #[serde(skip)]
    dirty: bool,
    /// Read from the store (or known to be new) for `start`.
    #[serde(skip)]
    loaded: bool,
}

/// One request's spend as written before [`Spend::record`] returns: what a crash must not lose.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Delta {
    /// UTC day of the rollup rows.
    day: String,
    /// Key id.
    key: String,
    /// End user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    /// Model group.
    group: String,
    /// What the request adds to each of its rows.
    totals: Totals,
    /// USD charged to budget windows.
    #[serde(default)]
    usd: f64,
    /// The windows charged: `(scope, start, id)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    windows: Vec<(String, u64, String)>,
}

impl Delta {
    /// The rollup rows it adds to.
    fn rows(&self) -> Vec<Vec<u8>> {
        let mut rows = Vec::with_capacity(4);
        rows.push(rollup_key(&self.day, "all", ""));
        rows.push(rollup_key(&self.day, "key", &self.key));
        if let Some(u) = &self.user {
            rows.push(rollup_key(&self.day, "user", u));
        }
        rows.push(rollup_key(&self.day, "model", &self.group));
        rows
    }
}

/// A budget that applies to a payer, with where its windows start.
#[derive(Debug, Clone)]
struct Applicable {
    id: BudgetId,
    name: String,
    budget: Budget,
    origin: u64,
}

/// `(start, end)` of the window holding `now` (Unix seconds).
fn window_of(origin: u64, duration: Option<u64>, now: u64) -> (u64, Option<u64>) {
    match duration.filter(|d| *d > 0) {
        Some(d) => {
            let start = origin + now.saturating_sub(origin) / d * d;
            (start, Some(start + d))
        }
        None => (origin, None),
    }
}

/// Spend rollups, budget windows and alerts.
#[derive(Debug)]
pub struct Spend {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    budgets: BudgetsConfig,
    alerter: Alerter,
    /// Price of each group's first priced deployment, for what hits saved.
    hit_prices: HashMap<String, Price>,
    /// Rollup deltas not yet in the store.
    pending: Mutex<HashMap<Vec<u8>, Totals>>,
    windows: Mutex<HashMap<BudgetId, BudgetWindow>>,
    /// Held while a flush moves `pending` into the store, and by reports, so a report never sees
    /// a delta in neither place.
    flushing: Mutex<()>,
    /// Shared by each `record` while it writes its delta and adds it to `pending` and the
    /// windows; taken exclusively by a flush to cut: deltas below `next_seq` are in what it takes.
    cut: RwLock<()>,
    /// Sequence number of the next delta.
    next_seq: AtomicU64,
    /// Deltas below this are folded (and deleted); a flush deletes `folded_upto..cut`.
    folded_upto: AtomicU64,
}

impl Spend {
    /// A ledger on `store`.
    pub fn new(
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        budgets: BudgetsConfig,
        alerts: AlertsConfig,
        deployments: &[Deployment],
    ) -> Arc<Self> {
        let mut hit_prices = HashMap::new();
        for d in deployments {
            if let Some(p) = d.price {
                hit_prices.entry(d.model_group.clone()).or_insert(p);
            }
        }
        let spend = Self {
            store,
            clock,
            budgets,
            alerter: Alerter::new(alerts),
            hit_prices,
            pending: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            flushing: Mutex::new(()),
            cut: RwLock::new(()),
            next_seq: AtomicU64::new(0),
            folded_upto: AtomicU64::new(0),
        };
        let next = spend.recover();
        spend.next_seq.store(next, Ordering::Relaxed);
        spend.folded_upto.store(next, Ordering::Relaxed);
        Arc::new(spend)
    }

    /// Folds the deltas a crash left in the store into rollups and budget windows, deleting
    /// them in the same batch; returns the sequence number to continue from (past any delta
    /// still there, e.g. when folding failed, so none is overwritten: the next start retries).
    fn recover(&self) -> u64 {
        let mut keys = Vec::new();
        let mut rows: HashMap<Vec<u8>, Totals> = HashMap::new();
        let mut windows: HashMap<Vec<u8>, f64> = HashMap::new();
        let mut next = 0u64;
        let scanned: Result<(), SpendError> = (|| {
            for item in self.store.iter_from(Cf::Spend, DELTA)? {
                let (key, value) = item?;
                let Some(seq) = key.strip_prefix(DELTA) else {
                    break;
                };
                let Ok(seq) = <[u8; 8]>::try_from(seq) else {
                    tracing::warn!(key = %printable(&key), "skipping a spend delta with a bad key");
                    continue;
                };
                next = next.max(u64::from_be_bytes(seq).saturating_add(1));
                let d = match decode::<Delta>(&value, "delta") {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an unreadable spend delta");
                        continue;
                    }
                };
                for row in d.rows() {
                    rows.entry(row).or_default().add(&d.totals);
                }
                if d.usd > 0.0 {
                    for (scope, start, id) in &d.windows {
                        *windows.entry(budget_key_of(scope, *start, id)).or_default() += d.usd;
                    }
                }
                keys.push(key.into_vec());
            }
            Ok(())
        })();
        if let Err(e) = scanned {
            tracing::warn!(error = %e, "cannot read spend deltas left by a crash; they stay for the next start");
            return next;
        }
        if keys.is_empty() {
            return next;
        }
        let folded = (|| {
            let mut puts = Vec::with_capacity(rows.len() + windows.len());
            for (key, delta) in &rows {
                puts.push((key.clone(), self.added_row(key, delta)?));
            }
            for (key, usd) in windows {
                let mut w = match self.store.get(Cf::Spend, &key)? {
                    Some(v) => decode::<BudgetWindow>(&v, "budget")?,
                    None => BudgetWindow::default(),
                };
                w.spend += usd;
                let v = encode(&w, &key)?;
                puts.push((key, v));
            }
            Ok::<_, SpendError>(self.store.write_batch(Cf::Spend, &puts, &keys)?)
        })();
        match folded {
            Ok(()) => {
                tracing::info!(
                    deltas = keys.len(),
                    "folded spend left unflushed by an unclean shutdown"
                );
                next
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fold spend deltas left by a crash; they stay for the next start");
                next
            }
        }
    }

    fn now(&self) -> u64 {
        self.clock.now_ms() / 1_000
    }

    /// Whether cache hits are charged against budgets (and so refused by a spent one).
    pub fn counts_cache_hits(&self) -> bool {
        self.budgets.count_cache_hits
    }

    /// The budgets that apply to a payer.
    fn applicable(&self, payer: &Payer) -> Vec<Applicable> {
        let mut out = Vec::with_capacity(3);
        if let Some(k) = &payer.key {
            if let Some(max) = k.max_budget {
                out.push(Applicable {
                    id: BudgetId {
                        scope: BudgetScope::Key,
                        id: k.id.clone(),
                    },
                    name: k.alias.clone().unwrap_or_else(|| k.id.clone()),
                    budget: Budget {
                        max_budget: max,
                        duration_secs: k.budget_duration_secs,
                    },
                    origin: k.created_at,
                });
            }
        }
        if let Some(u) = &payer.user {
            if let Some(b) = self.budgets.users.get(u).or(self.budgets.user.as_ref()) {
                out.push(Applicable {
                    id: BudgetId {
                        scope: BudgetScope::User,
                        id: u.clone(),
                    },
                    name: u.clone(),
                    budget: *b,
                    origin: 0,
                });
            }
        }
        if let Some(b) = &self.budgets.global {
            out.push(Applicable {
                id: BudgetId {
                    scope: BudgetScope::Global,
                    id: String::new(),
                },
                name: String::new(),
                budget: *b,
                origin: 0,
            });
        }
        out
    }

    /// The window of `a` holding `now`, loaded from the store the first time it is seen.
    fn window<'m>(
        &self,
        map: &'m mut HashMap<BudgetId, BudgetWindow>,
        a: &Applicable,
        now: u64,
    ) -> &'m mut BudgetWindow {
        let (start, _) = window_of(a.origin, a.budget.duration_secs, now);
        let w = map.entry(a.id.clone()).or_default();
        if !w.loaded || w.start != start {
            let stored = self
                .store
                .get(Cf::Spend, &budget_key(&a.id, start))
                .map_err(SpendError::from)
                .and_then(|v| v.map(|b| decode::<BudgetWindow>(&b, "budget")).transpose());
            *w = match stored {
                Ok(Some(s)) => BudgetWindow {
                    start,
                    dirty: false,
                    loaded: true,
                    ..s
                },
                Ok(None) => BudgetWindow {
                    start,
                    loaded: true,
                    ..BudgetWindow::default()
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a budget window; counting from zero");
                    BudgetWindow {
                        start,
                        loaded: true,
                        ..BudgetWindow::default()
                    }
                }
            };
        }
        w
    }

    /// Refuses a payer whose key, user or the gateway has spent its budget in the current window.
    pub fn check(&self, payer: &Payer) -> Result<(), BudgetRefusal> {
        self.check_with(payer, 0.0)
    }

    /// Like [`Spend::check`], and also refuses a request whose expected cost (the prompt at the
    /// chosen deployment's price, plus `max_tokens` of output when set) would take a budget past
    /// its limit.
    pub fn check_with(&self, payer: &Payer, expected_usd: f64) -> Result<(), BudgetRefusal> {
        let expected_usd = if expected_usd.is_finite() {
            expected_usd.max(0.0)
        } else {
            0.0
        };
        let budgets = self.applicable(payer);
        if budgets.is_empty() {
            return Ok(());
        }
        let now_ms = self.clock.now_ms();
        let now = now_ms / 1_000;
        let mut map = self.windows.lock();
        for a in &budgets {
            let w = self.window(&mut map, a, now);
            // The tolerance keeps a request that lands exactly on the budget (in decimal) from
            // being refused over float rounding.
            let would_pass = w.spend + expected_usd > a.budget.max_budget + 1e-9;
            if w.spend >= a.budget.max_budget || (expected_usd > 0.0 && would_pass) {
                let (_, end) = window_of(a.origin, a.budget.duration_secs, now);
                metrics::counter!(BUDGET_EXCEEDED_TOTAL, "scope" => a.id.scope.as_str())
                    .increment(1);
                return Err(BudgetRefusal {
                    scope: a.id.scope,
                    name: a.name.clone(),
                    spend: w.spend,
                    max_budget: a.budget.max_budget,
                    duration_secs: a.budget.duration_secs,
                    resets_at: end,
                    retry_after: end
                        .map(|e| Duration::from_millis((e * 1_000).saturating_sub(now_ms))),
                    expected_usd,
                });
            }
        }
        Ok(())
    }

    /// Records what a request cost: rollups for its day, key, user and group, its budgets, and
    /// any alert it triggers. Durable against a crash of the process when it returns (see the
    /// module doc); a store failure is logged and the spend kept in memory until the next flush.
    pub fn record(&self, payer: &Payer, c: &Charge<'_>) {
        let now = self.now();
        let mut t = Totals {
            requests: 1,
            ..Totals::default()
        };
        if c.cache_hit {
            t.cache_hits = 1;
            t.saved_tokens = c.usage.prompt_tokens + c.usage.completion_tokens;
            t.saved_usd = self
                .hit_prices
                .get(c.group)
                .map_or(0.0, |p| p.cost(&c.usage));
        } else {
            t.spend_usd = c.cost_usd;
            t.prompt_tokens = c.usage.prompt_tokens;
            t.completion_tokens = c.usage.completion_tokens;
        }
        let usd = if t.spend_usd > 0.0 {
            t.spend_usd
        } else if t.saved_usd > 0.0 && self.budgets.count_cache_hits {
            t.saved_usd
        } else {
            0.0
        };
        let budgets = if usd > 0.0 {
            self.applicable(payer)
        } else {
            Vec::new()
        };
        let delta = Delta {
            day: day(now),
            key: payer.key_id.clone(),
            user: payer.user.clone(),
            group: c.group.to_string(),
            totals: t,
            usd,
            windows: budgets
                .iter()
                .map(|a| {
                    let (start, _) = window_of(a.origin, a.budget.duration_secs, now);
                    (a.id.scope.as_str().to_string(), start, a.id.id.clone())
                })
                .collect(),
        };
        let raised = {
            let _in_cut = self.cut.read();
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let written = serde_json::to_vec(&delta)
                .map_err(|e| SpendError::Corrupt {
                    key: "delta".into(),
                    detail: e.to_string(),
                })
                .and_then(|v| Ok(self.store.put(Cf::Spend, &delta_key(seq), &v)?));
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot write a request's spend; kept in memory until the next flush");
            }
            {
                let mut pending = self.pending.lock();
                for row in delta.rows() {
                    pending.entry(row).or_default().add(&t);
                }
            }
            if usd > 0.0 {
                self.charge_budgets(payer, &budgets, usd, now)
            } else {
                Vec::new()
            }
        };
        if t.spend_usd > 0.0 {
            metrics::gauge!(SPEND_USD, "model_group" => c.group.to_string()).increment(t.spend_usd);
        }
        for alert in raised {
            self.alerter.raise(alert);
        }
    }

    /// Adds a cost to the payer's budget windows; returns the alerts it crosses, to raise.
    fn charge_budgets(
        &self,
        payer: &Payer,
        budgets: &[Applicable],
        usd: f64,
        now: u64,
    ) -> Vec<BudgetAlert> {
        let mut raised = Vec::new();
        {
            let mut map = self.windows.lock();
            for a in budgets {
                let w = self.window(&mut map, a, now);
                let before = w.spend;
                w.spend += usd;
                w.dirty = true;
                let max = a.budget.max_budget;
                for (i, t) in self.alerter.thresholds().iter().enumerate().take(32) {
                    let line = t * max;
                    if before < line && w.spend >= line && w.fired & (1 << i) == 0 {
                        w.fired |= 1 << i;
                        let (start, end) = window_of(a.origin, a.budget.duration_secs, now);
                        let key = payer
                            .key
                            .as_ref()
                            .filter(|_| a.id.scope == BudgetScope::Key);
                        raised.push(BudgetAlert {
                            kind: "budget_alert",
                            scope: a.id.scope.as_str(),
                            key_id: key.map(|k| k.id.clone()),
                            alias: key.and_then(|k| k.alias.clone()),
                            user_id: (a.id.scope == BudgetScope::User).then(|| a.id.id.clone()),
                            threshold: *t,
                            spend: w.spend,
                            max_budget: max,
                            window_start: format_rfc3339(start),
                            window_end: end.map(format_rfc3339),
                        });
                    }
                }
            }
        }
        raised
    }

    /// The last alerts raised (at most 100), oldest first.
    pub fn recent_alerts(&self) -> Vec<BudgetAlert> {
        self.alerter.recent()
    }

    /// USD spent in the current window of a key's budget (0 without a budget).
    pub fn key_window_spend(&self, key: &Arc<VirtualKey>) -> f64 {
        let payer = Payer {
            key_id: key.id.clone(),
            key: Some(Arc::clone(key)),
            user: None,
        };
        let now = self.now();
        let mut map = self.windows.lock();
        self.applicable(&payer)
            .iter()
            .find(|a| a.id.scope == BudgetScope::Key)
            .map_or(0.0, |a| self.window(&mut map, a, now).spend)
    }

    /// Writes unwritten rollups and changed budget windows to the store, and deletes the
    /// per-request deltas they fold, in one atomic batch. On failure everything stays queued
    /// for the next flush.
    pub fn flush(&self) -> Result<(), SpendError> {
        let _only_one = self.flushing.lock();
        let (deltas, windows, upto) = {
            let _cut = self.cut.write();
            let deltas = std::mem::take(&mut *self.pending.lock());
            let windows: Vec<(BudgetId, BudgetWindow)> = {
                let mut map = self.windows.lock();
                if map.len() > MAX_WINDOWS_IN_MEMORY {
                    // Every end user with a budget has a window: keep memory bounded.
                    map.retain(|_, w| w.dirty);
                }
                map.iter_mut()
                    .filter(|(_, w)| w.dirty)
                    .map(|(id, w)| {
                        w.dirty = false;
                        (id.clone(), *w)
                    })
                    .collect()
            };
            (deltas, windows, self.next_seq.load(Ordering::Relaxed))
        };
        let from = self.folded_upto.load(Ordering::Relaxed);
        if deltas.is_empty() && windows.is_empty() && from == upto {
            return Ok(());
        }
        match self.write_folded(&deltas, &windows, from, upto) {
            Ok(()) => {
                self.folded_upto.store(upto, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                {
                    let mut pending = self.pending.lock();
                    for (key, delta) in deltas {
                        pending.entry(key).or_default().add(&delta);
                    }
                }
                let mut map = self.windows.lock();
                for (id, w) in windows {
                    // The in-memory window stays authoritative; mark it for the next flush.
                    if let Some(m) = map.get_mut(&id).filter(|m| m.start == w.start) {
                        m.dirty = true;
                    }
                }
                Err(e)
            }
        }
    }

    /// One batch: rows plus their deltas, windows as they are, deltas `from..upto` deleted.
    fn write_folded(
        &self,
        deltas: &HashMap<Vec<u8>, Totals>,
        windows: &[(BudgetId, BudgetWindow)],
        from: u64,
        upto: u64,
    ) -> Result<(), SpendError> {
        let mut puts = Vec::with_capacity(deltas.len() + windows.len());
        for (key, delta) in deltas {
            puts.push((key.clone(), self.added_row(key, delta)?));
        }
        for (id, w) in windows {
            let key = budget_key(id, w.start);
            let v = encode(w, &key)?;
            puts.push((key, v));
        }
        // Deltas are numbered in order: the folded ones are one key range.
        Ok(self.store.write_batch_deleting_range(
            Cf::Spend,
            &puts,
            &delta_key(from),
            &delta_key(upto),
        )?)
    }

    /// The encoded row `key` once `delta` is added to what the store holds.
    fn added_row(&self, key: &[u8], delta: &Totals) -> Result<Vec<u8>, SpendError> {
        let mut row = match self.store.get(Cf::Spend, key)? {
            Some(v) => decode::<Totals>(&v, "rollup")?,
            None => Totals::default(),
        };
        row.add(delta);
        encode(&row, key)
    }

    /// Totals per key, user, model group or day for the days `from..=to` (`YYYY-MM-DD`),
    /// largest spend first (days in order).
    pub fn report(&self, by: GroupBy, from: &str, to: &str) -> Result<Vec<ReportRow>, SpendError> {
        let _consistent = self.flushing.lock();
        let mut rows: BTreeMap<String, Totals> = BTreeMap::new();
        let mut take = |key: &[u8], t: &Totals| {
            let Some((d, dim, id)) = parse_rollup_key(key) else {
                return;
            };
            if d < from || d > to || dim != by.dimension() {
                return;
            }
            let group = if by == GroupBy::Day { d } else { id };
            rows.entry(group.to_string()).or_default().add(t);
        };
        let start = rollup_key(from, "", "");
        for item in self.store.iter_from(Cf::Spend, &start)? {
            let (key, value) = item?;
            if !key.starts_with(ROLLUP) {
                break;
            }
            if parse_rollup_key(&key).is_some_and(|(d, _, _)| d > to) {
                break;
            }
            take(&key, &decode::<Totals>(&value, "rollup")?);
        }
        for (key, t) in self.pending.lock().iter() {
            take(key, t);
        }
        let mut out: Vec<ReportRow> = rows
            .into_iter()
            .map(|(group, totals)| ReportRow { group, totals })
            .collect();
        if by != GroupBy::Day {
            out.sort_by(|a, b| b.totals.spend_usd.total_cmp(&a.totals.spend_usd));
        }
        Ok(out)
    }

    /// The UTC day now, `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        day(self.now())
    }

    /// Starts the thread that flushes every [`FLUSH_EVERY`]; dropping the handle stops it and
    /// flushes one last time.
    pub fn start_flusher(self: &Arc<Self>) -> Flusher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spend = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("spend-flush".into())
            .spawn(move || {
                let tick = Duration::from_millis(50);
                let mut waited = Duration::ZERO;
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(tick);
                    waited += tick;
                    if waited >= FLUSH_EVERY {
                        waited = Duration::ZERO;
                        if let Err(e) = spend.flush() {
                            tracing::warn!(error = %e, "spend flush failed; retrying");
                        }
                    }
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the spend flusher; spend is written at shutdown only"))
            .ok();
        Flusher {
            spend: Arc::clone(self),
            stop,
            thread,
        }
    }
}

/// The background flusher; flushes a last time when dropped.
#[derive(Debug)]
pub struct Flusher {
    spend: Arc<Spend>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        match self.spend.flush() {
            Ok(()) => tracing::debug!("spend flushed"),
            Err(e) => tracing::warn!(error = %e, "final spend flush failed"),
        }
    }
}

fn rollup_key(day: &str, dim: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ROLLUP.len() + day.len() + dim.len() + id.len() + 2);
    k.extend_from_slice(ROLLUP);
    k.extend_from_slice(day.as_bytes());
    if !dim.is_empty() {
        k.push(0);
        k.extend_from_slice(dim.as_bytes());
        k.push(0);
        k.extend_from_slice(id.as_bytes());
    }
    k
}

fn parse_rollup_key(key: &[u8]) -> Option<(&str, &str, &str)> {
    let rest = std::str::from_utf8(key.strip_prefix(ROLLUP)?).ok()?;
    let mut parts = rest.splitn(3, '\0');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

fn budget_key(id: &BudgetId, start: u64) -> Vec<u8> {
    budget_key_of(id.scope.as_str(), start, &id.id)
}

fn budget_key_of(scope: &str, start: u64, id: &str) -> Vec<u8> {
    let mut k = BUDGET.to_vec();
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(&start.to_be_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn delta_key(seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(DELTA.len() + 8);
    k.extend_from_slice(DELTA);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn encode<T: Serialize>(value: &T, key: &[u8]) -> Result<Vec<u8>, SpendError> {
    serde_json::to_vec(value).map_err(|e| SpendError::Corrupt {
        key: printable(key),
        detail: e.to_string(),
    })
}

fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\0', "/")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, SpendError> {
    serde_json::from_slice(bytes).map_err(|e| SpendError::Corrupt {
        key: what.to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
