#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::config::Config;
use crate::limits::ManualClock;

/// 2026-11-25T10:00:00Z.
const NOW_S: u64 = 1_795_600_800;

fn deployments() -> Vec<Deployment> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        "model_list:\n  - {model_name: g, litellm_params: {model: mock/x}, model_info: {input_cost_per_token: 0.001, output_cost_per_token: 0.002}}\n",
    )
    .unwrap();
    Config::load(&path).unwrap().deployments
}

struct Fixture {
    spend: Arc<Spend>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

fn fixture(budgets: BudgetsConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let clock = Arc::new(ManualClock::at(NOW_S * 1_000));
    let spend = Spend::new(
        store,
        clock.clone(),
        budgets,
        AlertsConfig::default(),
        &deployments(),
    );
    Fixture { spend, clock, dir }
}

fn key(max_budget: Option<f64>, duration: Option<u64>, created_at: u64) -> Arc<VirtualKey> {
    Arc::new(VirtualKey {
        id: "key_1".into(),
        alias: Some("team-a".into()),
        models: vec![],
        rpm: None,
        tpm: None,
        max_parallel_requests: None,
        max_budget,
        budget_duration_secs: duration,
        expires_at: None,
        cache_namespace: None,
        cache_policy: Default::default(),
        pii: Default::default(),
        metadata: Default::default(),
        user_id: None,
        team_id: None,
        admin: false,
        created_at,
        revoked_at: None,
    })
}

fn payer(k: Option<Arc<VirtualKey>>, user: Option<&str>) -> Payer {
    Payer {
        key_id: k.as_ref().map_or("master".into(), |k| k.id.clone()),
        key: k,
        user: user.map(str::to_string),
    }
}

fn usage(p: u64, c: u64) -> Usage {
    Usage {
        prompt_tokens: p,
        completion_tokens: c,
        total_tokens: p + c,
    }
}

/// A miss in group `g` that paid `usd` upstream.
fn paid(usage: Usage, usd: f64) -> Charge<'static> {
    Charge {
        group: "g",
        usage,
        cost_usd: usd,
        cache_hit: false,
    }
}

/// A hit in group `g`: nothing paid upstream.
fn from_cache(usage: Usage) -> Charge<'static> {
    Charge {
        group: "g",
        usage,
        cost_usd: 0.0,
        cache_hit: true,
    }
}

fn pay(f: &Fixture, p: &Payer, usd: f64) {
    f.spend.record(p, &paid(usage(10, 5), usd));
}

#[test]
fn key_budget_refuses_until_its_window_ends() {
    // Created at 2026-11-24T00:00:00Z: its 1d windows start at midnight UTC.
    let created = NOW_S - 10 * 3_600 - 86_400;
    let f = fixture(BudgetsConfig::default());
    let p = payer(Some(key(Some(1.0), Some(86_400), created)), None);
    f.spend.check(&p).unwrap();
    pay(&f, &p, 0.6);
    f.spend.check(&p).unwrap();
    pay(&f, &p, 0.6003);
    let r = f.spend.check(&p).unwrap_err();
    assert_eq!(
        r.to_string(),
        "budget exceeded for key 'team-a': spent $1.2003 of $1.0000 in the current 1d window; resets at 2026-11-26T00:00:00Z"
    );
    assert_eq!(r.retry_after, Some(Duration::from_secs(14 * 3_600)));
    // One second before the end: still refused; at the end: a fresh window.
    f.clock.set((NOW_S + 14 * 3_600 - 1) * 1_000);
    assert!(f.spend.check(&p).is_err());
    f.clock.set((NOW_S + 14 * 3_600) * 1_000);
    f.spend.check(&p).unwrap();
    assert_eq!(f.spend.key_window_spend(p.key.as_ref().unwrap()), 0.0);
}

#[test]
fn a_request_that_would_pass_the_budget_is_refused() {
    let f = fixture(BudgetsConfig::default());
    let p = payer(Some(key(Some(1.0), None, 0)), None);
    pay(&f, &p, 0.7);
    // $0.25 more fits; $0.35 more would take the key past its $1.
    f.spend.check_with(&p, 0.25).unwrap();
    let r = f.spend.check_with(&p, 0.35).unwrap_err();
    assert_eq!(r.expected_usd, 0.35);
    assert!(
        r.to_string()
            .starts_with("budget exceeded for key 'team-a': spent $0.7000 of $1.0000 and this request would cost ~$0.3500"),
        "{r}"
    );
    // A nonsense estimate is ignored rather than trusted.
    f.spend.check_with(&p, f64::NAN).unwrap();
    f.spend.check_with(&p, -5.0).unwrap();
}

#[test]
fn cache_hits_are_free_unless_configured_to_count() {
    let hit = |f: &Fixture, p: &Payer| f.spend.record(p, &from_cache(usage(100, 100)));
    // Default: a hit saves $0.30 at g's prices and charges nothing.
    let f = fixture(BudgetsConfig::default());
    let p = payer(Some(key(Some(0.5), None, 0)), None);
    assert!(!f.spend.counts_cache_hits());
    hit(&f, &p);
    hit(&f, &p);
    f.spend.check(&p).unwrap();
    // Configured: what a hit saved counts against the budget, so the second one spends it.
    let f = fixture(BudgetsConfig {
        count_cache_hits: true,
        ..BudgetsConfig::default()
    });
    assert!(f.spend.counts_cache_hits());
    hit(&f, &p);
    f.spend.check(&p).unwrap();
    hit(&f, &p);
    assert!(f.spend.check(&p).is_err());
}

#[test]
fn a_budget_without_duration_never_resets() {
    let f = fixture(BudgetsConfig::default());
    let p = payer(Some(key(Some(0.5), None, 0)), None);
    pay(&f, &p, 0.5);
    let r = f.spend.check(&p).unwrap_err();
    assert!(r.to_string().ends_with("the budget does not reset"), "{r}");
    assert_eq!(r.retry_after, None);
    f.clock.advance(400 * 86_400 * 1_000);
    assert!(f.spend.check(&p).is_err());
}

#[test]
fn user_and_global_budgets_use_utc_windows() {
    let f = fixture(BudgetsConfig {
        global: Some(Budget {
            max_budget: 10.0,
            duration_secs: Some(30 * 86_400),
        }),
        user: Some(Budget {
            max_budget: 1.0,
            duration_secs: Some(3_600),
        }),
        users: BTreeMap::from([(
            "vip".to_string(),
            Budget {
                max_budget: 5.0,
                duration_secs: Some(3_600),
            },
        )]),
        count_cache_hits: false,
    });
    let alice = payer(None, Some("alice"));
    let vip = payer(None, Some("vip"));
    pay(&f, &alice, 1.0);
    pay(&f, &vip, 1.0);
    let r = f.spend.check(&alice).unwrap_err();
    assert_eq!(r.scope, BudgetScope::User);
    assert!(
        r.to_string().contains("resets at 2026-11-25T11:00:00Z"),
        "{r}"
    );
    f.spend.check(&vip).unwrap();
    f.clock.advance(3_600 * 1_000);
    f.spend.check(&alice).unwrap();
    // The global budget sums everyone.
    for _ in 0..8 {
        pay(&f, &vip, 1.0);
    }
    let r = f.spend.check(&payer(None, Some("bob"))).unwrap_err();
    assert_eq!(r.scope, BudgetScope::Global);
    assert!(
        r.to_string()
            .starts_with("budget exceeded for the gateway: spent $10.0000 of $10.0000"),
        "{r}"
    );
}

#[test]
fn alerts_fire_once_per_threshold_per_window() {
    let f = fixture(BudgetsConfig::default());
    let p = payer(Some(key(Some(1.0), Some(3_600), 0)), None);
    pay(&f, &p, 0.3);
    assert!(f.spend.recent_alerts().is_empty());
    pay(&f, &p, 0.3); // 0.6: crosses 50%
    pay(&f, &p, 0.1); // 0.7
    pay(&f, &p, 0.5); // 1.2: crosses 80% and 100% at once
    pay(&f, &p, 0.5); // nothing new
    let got: Vec<f64> = f
        .spend
        .recent_alerts()
        .iter()
        .map(|a| a.threshold)
        .collect();
    assert_eq!(got, [0.5, 0.8, 1.0]);
    let a = &f.spend.recent_alerts()[2];
    assert_eq!(a.scope, "key");
    assert_eq!(a.key_id.as_deref(), Some("key_1"));
    assert_eq!(a.alias.as_deref(), Some("team-a"));
    assert_eq!(a.window_start, "2026-11-25T10:00:00Z");
    assert_eq!(a.window_end.as_deref(), Some("2026-11-25T11:00:00Z"));
    let body = serde_json::to_value(a).unwrap();
    assert_eq!(body["type"], "budget_alert");
    assert!(body.get("user_id").is_none());
    // A new window alerts again.
    f.clock.advance(3_600 * 1_000);
    pay(&f, &p, 0.55);
    assert_eq!(f.spend.recent_alerts().len(), 4);
    // Reloaded from the store after a restart, a window does not alert twice.
    f.spend.flush().unwrap();
    let store = Arc::clone(&f.spend.store);
    let again = Spend::new(
        store,
        f.clock.clone(),
        BudgetsConfig::default(),
        AlertsConfig::default(),
        &[],
    );
    again.record(&p, &paid(usage(1, 1), 0.01));
    assert!(again.recent_alerts().is_empty());
    assert!((again.key_window_spend(p.key.as_ref().unwrap()) - 0.56).abs() < 1e-9);
}

#[test]
fn rollups_group_by_key_user_model_and_day_and_survive_a_reopen() {
    let f = fixture(BudgetsConfig::default());
    let k = payer(Some(key(None, None, 0)), Some("alice"));
    let m = payer(None, None);
    pay(&f, &k, 0.25);
    pay(&f, &m, 0.5);
    // A cache hit: a request and what it saved, no spend.
    f.spend.record(&k, &from_cache(usage(100, 50)));
    f.clock.advance(86_400 * 1_000);
    pay(&f, &m, 1.0);
    let today = f.spend.today();
    assert_eq!(today, "2026-11-26");

    let by_key = f
        .spend
        .report(GroupBy::Key, "2026-11-25", "2026-11-26")
        .unwrap();
    assert_eq!(by_key.len(), 2);
    assert_eq!(by_key[0].group, "master");
    assert!((by_key[0].totals.spend_usd - 1.5).abs() < 1e-9);
    let k1 = &by_key[1];
    assert_eq!(k1.group, "key_1");
    assert_eq!(k1.totals.requests, 2);
    assert_eq!(k1.totals.cache_hits, 1);
    assert_eq!(k1.totals.saved_tokens, 150);
    assert!((k1.totals.saved_usd - (100.0 * 0.001 + 50.0 * 0.002)).abs() < 1e-9);
    assert_eq!(k1.totals.prompt_tokens, 10, "hits pay no tokens");

    f.spend.flush().unwrap();
    let by_day = f
        .spend
        .report(GroupBy::Day, "2026-01-01", "2026-12-31")
        .unwrap();
    let days: Vec<(&str, u64)> = by_day
        .iter()
        .map(|r| (r.group.as_str(), r.totals.requests))
        .collect();
    assert_eq!(days, [("2026-11-25", 3), ("2026-11-26", 1)]);
    let users = f
        .spend
        .report(GroupBy::User, "2026-11-25", "2026-11-25")
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].group, "alice");
    let models = f
        .spend
        .report(GroupBy::Model, "2026-11-26", "2026-11-26")
        .unwrap();
    assert_eq!(models.len(), 1);
    assert!((models[0].totals.spend_usd - 1.0).abs() < 1e-9);

    // Written rows plus new unwritten ones add up; a reopened store has the written ones.
    pay(&f, &m, 2.0);
    let by_model = f
        .spend
        .report(GroupBy::Model, "2026-11-25", "2026-11-26")
        .unwrap();
    assert!((by_model[0].totals.spend_usd - 3.75).abs() < 1e-9);
    let flusher = f.spend.start_flusher();
    drop(flusher); // stops the thread and flushes
    let path = f.dir.path().to_path_buf();
    drop(f.spend);
    let store = Arc::new(Store::open(&path).unwrap());
    let reopened = Spend::new(
        store,
        f.clock.clone(),
        BudgetsConfig::default(),
        AlertsConfig::default(),
        &[],
    );
    let by_model = reopened
        .report(GroupBy::Model, "2026-11-25", "2026-11-26")
        .unwrap();
    assert!((by_model[0].totals.spend_usd - 3.75).abs() < 1e-9);
}

#[test]
fn group_by_names() {
    for n in ["key", "user", "model", "day"] {
        assert_eq!(GroupBy::parse(n).unwrap().as_str(), n);
    }
    assert_eq!(GroupBy::parse("team"), None);
}

/// Drops the ledger and its store without the final flush (what `kill -9` skips) and opens both
/// again from the same directory.
fn crash_and_reopen(
    spend: Arc<Spend>,
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
    budgets: BudgetsConfig,
) -> Arc<Spend> {
    assert_eq!(Arc::strong_count(&spend), 1, "no flusher or other holder");
    drop(spend);
    let store = Arc::new(Store::open(dir).unwrap());
    Spend::new(
        store,
        clock.clone(),
        budgets,
        AlertsConfig::default(),
        &deployments(),
    )
}

fn deltas_left(spend: &Spend) -> usize {
    spend
        .store
        .iter_from(Cf::Spend, DELTA)
        .unwrap()
        .map(|r| r.unwrap().0)
        .take_while(|k| k.starts_with(DELTA))
        .count()
}

fn key_totals(spend: &Spend) -> Totals {
    let rows = spend
        .report(GroupBy::Key, "2026-11-25", "2026-11-25")
        .unwrap();
    rows.iter()
        .find(|r| r.group == "key_1")
        .map(|r| r.totals)
        .unwrap_or_default()
}

fn hit(spend: &Spend, p: &Payer) {
    spend.record(p, &from_cache(usage(100, 50)));
}

#[test]
fn recorded_spend_survives_a_crash_before_any_flush() {
    let Fixture { spend, clock, dir } = fixture(BudgetsConfig::default());
    let k = key(Some(10.0), Some(3_600), 0);
    let p = payer(Some(k.clone()), Some("alice"));
    for usd in [0.25, 0.5] {
        spend.record(&p, &paid(usage(10, 5), usd));
    }
    hit(&spend, &p);
    assert_eq!(
        deltas_left(&spend),
        3,
        "each record is written before it returns"
    );

    let again = crash_and_reopen(spend, dir.path(), &clock, BudgetsConfig::default());
    assert_eq!(
        deltas_left(&again),
        0,
        "start-up folds and deletes the deltas"
    );
    let t = key_totals(&again);
    assert_eq!(t.requests, 3);
    assert_eq!(t.cache_hits, 1);
    assert_eq!(t.prompt_tokens, 20);
    assert_eq!(t.saved_tokens, 150);
    assert!((t.spend_usd - 0.75).abs() < 1e-9);
    let users = again
        .report(GroupBy::User, "2026-11-25", "2026-11-25")
        .unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].group, "alice");
    assert_eq!(users[0].totals.requests, 3);
    assert!((again.key_window_spend(&k) - 0.75).abs() < 1e-9);
}

#[test]
fn a_crash_after_a_flush_loses_nothing_and_counts_nothing_twice() {
    let budgets = BudgetsConfig {
        global: Some(Budget {
            max_budget: 100.0,
            duration_secs: Some(86_400),
        }),
        ..BudgetsConfig::default()
    };
    let Fixture { spend, clock, dir } = fixture(budgets.clone());
    let k = key(Some(10.0), None, 0);
    let p = payer(Some(k.clone()), None);
    let pay_to = |s: &Spend, usd: f64| s.record(&p, &paid(usage(10, 5), usd));
    pay_to(&spend, 1.0);
    pay_to(&spend, 2.0);
    spend.flush().unwrap();
    assert_eq!(deltas_left(&spend), 0, "a flush deletes what it folded");
    pay_to(&spend, 4.0);
    hit(&spend, &p);

    let again = crash_and_reopen(spend, dir.path(), &clock, budgets.clone());
    let t = key_totals(&again);
    assert_eq!(t.requests, 4);
    assert!((t.spend_usd - 7.0).abs() < 1e-9);
    assert!((again.key_window_spend(&k) - 7.0).abs() < 1e-9);

    // More spend, a flush that is not the last, a second crash, and a clean restart.
    pay_to(&again, 0.5);
    again.flush().unwrap();
    pay_to(&again, 0.25);
    let third = crash_and_reopen(again, dir.path(), &clock, budgets.clone());
    let fourth = crash_and_reopen(third, dir.path(), &clock, budgets.clone());
    let t = key_totals(&fourth);
    assert_eq!(t.requests, 6);
    assert!((t.spend_usd - 7.75).abs() < 1e-9);
    assert!((fourth.key_window_spend(&k) - 7.75).abs() < 1e-9);
    // The global window was rebuilt from the deltas too: 92.25 of 100 left, so 93 more refuses.
    assert!(fourth.check_with(&p, 93.0).is_err());
    assert!(fourth.check_with(&p, 2.0).is_ok());
    let models = fourth
        .report(GroupBy::Day, "2026-11-25", "2026-11-25")
        .unwrap();
    assert_eq!(models[0].totals.requests, 6);
}

#[test]
fn a_budget_spent_before_a_crash_still_refuses_after_it() {
    let Fixture { spend, clock, dir } = fixture(BudgetsConfig::default());
    let k = key(Some(1.0), Some(3_600), 0);
    let p = payer(Some(k.clone()), None);
    spend.record(&p, &paid(usage(10, 5), 1.0));
    assert!(spend.check(&p).is_err());
    let again = crash_and_reopen(spend, dir.path(), &clock, BudgetsConfig::default());
    let refused = again.check(&p).unwrap_err();
    assert!((refused.spend - 1.0).abs() < 1e-9);
    // The next window starts from zero.
    clock.advance(3_600 * 1_000);
    assert!(again.check(&p).is_ok());
}

#[test]
fn records_racing_flushes_are_counted_exactly_once_after_a_crash() {
    let budgets = BudgetsConfig {
        global: Some(Budget {
            max_budget: 1e9,
            duration_secs: None,
        }),
        ..BudgetsConfig::default()
    };
    let Fixture { spend, clock, dir } = fixture(budgets.clone());
    let p = payer(None, Some("racer"));
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (spend, stop) = (Arc::clone(&spend), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut flushes = 0u32;
            while !stop.load(Ordering::Acquire) {
                spend.flush().unwrap();
                flushes += 1;
            }
            flushes
        })
    };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (spend, p) = (Arc::clone(&spend), p.clone());
            std::thread::spawn(move || {
                for _ in 0..500 {
                    spend.record(&p, &paid(usage(10, 5), 0.5));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    assert!(flusher.join().unwrap() > 0);
    // And one more that no flush saw.
    spend.record(&p, &paid(usage(10, 5), 0.5));

    let again = crash_and_reopen(spend, dir.path(), &clock, budgets);
    let users = again
        .report(GroupBy::User, "2026-11-25", "2026-11-25")
        .unwrap();
    assert_eq!(users[0].totals.requests, 2_001);
    assert!((users[0].totals.spend_usd - 1_000.5).abs() < 1e-6);
    // The global window holds the same 1,000.5 USD: exactly the rest of the budget passes.
    assert!(again.check_with(&p, 1e9 - 1_000.5).is_ok());
    assert!(again.check_with(&p, 1e9 - 999.0).is_err());
}
