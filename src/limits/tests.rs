#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const T0: u64 = 1_800_000_000_000; // some Unix time in ms, on a whole second

fn limiter(config: LimitsConfig) -> (Arc<Limiter>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(T0));
    (Limiter::new(config, clock.clone()), clock)
}

fn scope(kind: ScopeKind, id: &str, rpm: Option<u64>, tpm: Option<u64>) -> Scope {
    Scope {
        kind,
        id: id.into(),
        name: id.into(),
        rate: Rate {
            rpm,
            tpm,
            max_parallel_requests: None,
        },
    }
}

fn request(tokens: u64) -> Demand {
    Demand {
        request: true,
        tokens,
    }
}

fn key(id: &str, alias: Option<&str>, rpm: Option<u64>, tpm: Option<u64>) -> VirtualKey {
    VirtualKey {
        id: id.into(),
        alias: alias.map(str::to_string),
        models: vec![],
        rpm,
        tpm,
        max_parallel_requests: None,
        max_budget: None,
        budget_duration_secs: None,
        expires_at: None,
        cache_namespace: None,
        cache_policy: Default::default(),
        pii: Default::default(),
        metadata: Default::default(),
        user_id: None,
        team_id: None,
        admin: false,
        created_at: 0,
        revoked_at: None,
    }
}

#[test]
fn a_refusing_scope_counts_nothing_anywhere() {
    let (l, _) = limiter(LimitsConfig::default());
    let k = scope(ScopeKind::Key, "k", Some(2), None);
    let g = scope(ScopeKind::Global, "", Some(3), None);
    let both = [k.clone(), g.clone()];
    let mut tickets = vec![
        l.admit(&both, request(0)).unwrap(),
        l.admit(&both, request(0)).unwrap(),
    ];
    let r = l.admit(&both, request(0)).unwrap_err();
    assert_eq!(r.kind, ScopeKind::Key);
    assert_eq!(r.limit, Limit::Rpm(2));
    // The refused request did not count against the global scope: one more global fits.
    tickets.push(l.admit(std::slice::from_ref(&g), request(0)).unwrap());
    let r = l.admit(std::slice::from_ref(&g), request(0)).unwrap_err();
    assert_eq!(r.kind, ScopeKind::Global);
    assert_eq!(
        r.to_string(),
        "rate limit exceeded for the gateway (rpm 3): retry in 60 s"
    );
    assert_eq!(r.error_type(), "requests");
}

#[test]
fn exactly_rpm_requests_pass_under_concurrency() {
    let (l, _) = limiter(LimitsConfig::default());
    let scopes = vec![
        scope(ScopeKind::Key, "k", Some(50), None),
        scope(ScopeKind::User, "u", Some(1_000), None),
        scope(ScopeKind::Global, "", Some(10_000), Some(1_000_000)),
    ];
    let passed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..200 {
            s.spawn(|| {
                if let Ok(mut t) = l.admit(&scopes, request(10)) {
                    passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    t.settle(12);
                }
            });
        }
    });
    assert_eq!(passed.into_inner(), 50);
    let h = l.peek(&scopes);
    assert_eq!(h.requests.unwrap().remaining, 0);
    assert_eq!(h.requests.unwrap().limit, 50);
    assert_eq!(h.tokens.unwrap().remaining, 1_000_000 - 50 * 12);
}

#[test]
fn retry_after_and_reset_are_exact() {
    let (l, clock) = limiter(LimitsConfig::default());
    let k = [scope(ScopeKind::Key, "k", Some(2), None)];
    l.admit(&k, request(0)).unwrap();
    clock.advance(20_000);
    l.admit(&k, request(0)).unwrap();
    clock.advance(5_500);
    let r = l.admit(&k, request(0)).unwrap_err();
    // The first request leaves the window 60 s after its second: 34.5 s from now.
    assert_eq!(r.retry_after, Some(Duration::from_millis(34_500)));
    assert_eq!(r.retry_after_secs(), Some(35));
    let q = r.headers.requests.unwrap();
    assert_eq!((q.limit, q.remaining), (2, 0));
    assert_eq!(go_duration(q.reset), "34.5s");
    clock.advance(34_500);
    l.admit(&k, request(0)).unwrap();
}

#[test]
fn tokens_are_reconciled_with_real_usage() {
    let (l, clock) = limiter(LimitsConfig::default());
    let k = [scope(ScopeKind::Key, "k", None, Some(1_000))];
    let mut a = l.admit(&k, request(600)).unwrap();
    // 600 estimated: another 600 does not fit...
    let r = l.admit(&k, request(600)).unwrap_err();
    assert_eq!(
        r.limit,
        Limit::Tpm {
            tpm: 1_000,
            needed: 600
        }
    );
    assert_eq!(r.error_type(), "tokens");
    // ...until the first turns out to have used 300.
    clock.advance(2_000);
    a.settle(300);
    let mut b = l.admit(&k, request(600)).unwrap();
    assert_eq!(l.peek(&k).tokens.unwrap().remaining, 100);
    // Using more than estimated adds the difference.
    b.settle(700);
    assert_eq!(l.peek(&k).tokens.unwrap().remaining, 0);
    // A request larger than the whole limit can never pass, and says so.
    let r = l.admit(&k, request(5_000)).unwrap_err();
    assert!(matches!(r.limit, Limit::TooLarge { .. }));
    assert_eq!(r.retry_after, None);
    assert!(
        r.to_string()
            .contains("more than its whole tpm limit of 1000"),
        "{r}"
    );
}

#[test]
fn the_second_step_rolls_the_first_back_on_refusal() {
    let (l, _) = limiter(LimitsConfig::default());
    let k = [scope(ScopeKind::Key, "k", Some(10), Some(100))];
    let mut t = l
        .admit(
            &k,
            Demand {
                request: true,
                tokens: 0,
            },
        )
        .unwrap();
    assert_eq!(l.peek(&k).requests.unwrap().remaining, 9);
    let r = l.admit_tokens(&k, &mut t, 500).unwrap_err();
    assert!(matches!(r.limit, Limit::TooLarge { .. }));
    assert_eq!(l.peek(&k).requests.unwrap().remaining, 10, "rolled back");
    // A cache hit: counted as a request, its tokens not at all.
    let mut hit = l
        .admit(
            &k,
            Demand {
                request: true,
                tokens: 0,
            },
        )
        .unwrap();
    hit.settle(0);
    let h = l.peek(&k);
    assert_eq!(h.requests.unwrap().remaining, 9);
    assert_eq!(h.tokens.unwrap().remaining, 100);
}

#[test]
fn parallel_slots_are_held_until_the_ticket_ends() {
    let (l, _) = limiter(LimitsConfig::default());
    let k = [Scope {
        rate: Rate {
            rpm: None,
            tpm: None,
            max_parallel_requests: Some(2),
        },
        ..scope(ScopeKind::Key, "k", None, None)
    }];
    let a = l.admit(&k, request(0)).unwrap();
    let mut b = l.admit(&k, request(0)).unwrap();
    let r = l.admit(&k, request(0)).unwrap_err();
    assert_eq!(r.limit, Limit::Parallel(2));
    assert!(r
        .to_string()
        .starts_with("too many parallel requests for key 'k'"));
    drop(a);
    let c = l.admit(&k, request(0)).unwrap();
    b.settle(5);
    let _d = l.admit(&k, request(0)).unwrap();
    assert!(l.admit(&k, request(0)).is_err());
    drop(c);
}

#[test]
fn scopes_come_from_key_user_group_and_global() {
    let config = LimitsConfig {
        global: Rate {
            rpm: Some(1_000),
            ..Rate::default()
        },
        groups: BTreeMap::from([(
            "g".to_string(),
            Rate {
                tpm: Some(10),
                ..Rate::default()
            },
        )]),
        user: Rate {
            rpm: Some(5),
            ..Rate::default()
        },
        users: BTreeMap::from([(
            "vip".to_string(),
            Rate {
                rpm: Some(50),
                ..Rate::default()
            },
        )]),
        cache_hits_count_tokens: false,
    };
    let (l, _) = limiter(config);
    let k = key("key_1", Some("team-a"), Some(3), None);
    let s = l.scopes(Some(&k), Some("alice"), "g");
    let kinds: Vec<_> = s.iter().map(|s| (s.kind, s.name.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (ScopeKind::Key, "team-a"),
            (ScopeKind::User, "alice"),
            (ScopeKind::Group, "g"),
            (ScopeKind::Global, "")
        ]
    );
    assert_eq!(l.scopes(None, Some("vip"), "other")[0].rate.rpm, Some(50));
    // A key without limits and an unlimited group add no scope.
    let free = key("key_2", None, None, None);
    assert_eq!(l.scopes(Some(&free), None, "other").len(), 1);
}

#[test]
fn idle_windows_are_swept() {
    let (l, clock) = limiter(LimitsConfig::default());
    for u in 0..100 {
        let s = [scope(ScopeKind::User, &format!("u{u}"), Some(10), None)];
        l.admit(&s, request(0)).unwrap();
    }
    assert_eq!(l.windows(), 100);
    clock.advance(120_000);
    let s = [scope(ScopeKind::User, "late", Some(10), None)];
    l.admit(&s, request(0)).unwrap();
    assert_eq!(l.windows(), 1);
}

#[test]
fn end_user_header_wins_over_the_body() {
    use actix_web::http::header::{HeaderName, HeaderValue};
    let mut h = HeaderMap::new();
    assert_eq!(end_user(&h, Some("body")), Some("body".into()));
    assert_eq!(end_user(&h, Some("  ")), None);
    h.insert(
        HeaderName::from_static(USER_HEADER),
        HeaderValue::from_static("hdr"),
    );
    assert_eq!(end_user(&h, Some("body")), Some("hdr".into()));
}
