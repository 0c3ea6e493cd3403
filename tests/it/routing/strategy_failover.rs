//! Every strategy keeps the failover rules (rate limit, access denied, server errors, invalid
//! requests, deadline), and weighted splits by weight.

use crate::support::scoring::*;
use crate::support::{Fake, Script, Step};
use image_router::score::{ScoreBreakdown, ScoreInputs, Scorer};
use image_router::{ErrorKind, Outcome, Provider, ProviderOptions, Router, Strategy};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A scorer that prefers the *last* provider: the configured order is reversed.
struct Reverse;
impl Scorer for Reverse {
    fn score(&self, inputs: &ScoreInputs) -> ScoreBreakdown {
        let total = 1.0 + inputs.priority as f64;
        ScoreBreakdown {
            inputs: *inputs,
            total,
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    Ordered,
    Scored,
    Weighted,
    Custom,
}

const FLAVORS: [Flavor; 4] = [
    Flavor::Ordered,
    Flavor::Scored,
    Flavor::Weighted,
    Flavor::Custom,
];

/// Three providers sharing one script: the script's first entries apply to whichever
/// provider the strategy picks first, so the rules are checked for every strategy.
fn flavored(flavor: Flavor) -> (Router, Vec<Arc<Fake>>, Script) {
    let script: Script = Arc::default();
    let mocks: Vec<Arc<Fake>> = ["p0", "p1", "p2"]
        .iter()
        .map(|n| Fake::with_script(n, Arc::clone(&script)).arc())
        .collect();
    let mut b = builder_with(&mocks.iter().collect::<Vec<_>>())
        .deadline(Duration::from_secs(30))
        .attempt_timeout(Duration::from_secs(10));
    b = match flavor {
        Flavor::Ordered => b.strategy(Strategy::Ordered),
        Flavor::Scored => b.strategy(Strategy::Scored),
        Flavor::Weighted => b.strategy(Strategy::Weighted),
        Flavor::Custom => b.scorer(Arc::new(Reverse)),
    };
    (b.build().unwrap(), mocks, script)
}

#[tokio::test(start_paused = true)]
async fn every_strategy_fails_over_at_once_on_rate_limit() {
    for f in FLAVORS {
        let (router, _m, script) = flavored(f);
        script.lock().push_back(Step::fail(rate_limited()));
        let t0 = tokio::time::Instant::now();
        let res = router.generate(req()).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::ZERO, "{f:?}: no wait");
        assert_eq!(res.attempts.len(), 2, "{f:?}");
        assert_eq!(res.attempts[0].outcome, Outcome::RateLimited);
        assert_ne!(res.attempts[0].provider, res.attempts[1].provider, "{f:?}");
        assert_eq!(res.provider, res.attempts[1].provider);
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_cools_down_after_access_denied() {
    for f in FLAVORS {
        let (router, mocks, script) = flavored(f);
        script.lock().push_back(Step::fail(tier_denied()));
        let res = router.generate(req()).await.unwrap();
        let denied = res.attempts[0].provider.clone();
        assert_eq!(res.attempts[0].outcome, Outcome::AccessDenied, "{f:?}");
        let before: usize = mocks.iter().map(|m| m.calls()).sum();
        for _ in 0..10 {
            let res = router.generate(req()).await.unwrap();
            assert_ne!(res.provider, denied, "{f:?}");
            assert_eq!(res.attempts.len(), 1, "{f:?}: no repeated failed attempt");
            assert!(
                res.skipped.iter().any(|s| s.provider == denied),
                "{f:?}: the denied provider is listed as skipped"
            );
        }
        let m = mocks.iter().find(|m| m.name() == denied).unwrap();
        assert_eq!(m.calls(), 1, "{f:?}: not called again in the cool-down");
        let after: usize = mocks.iter().map(|m| m.calls()).sum();
        assert_eq!(after - before, 10);
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_retries_server_errors_once_then_fails_over() {
    for f in FLAVORS {
        let (router, mocks, script) = flavored(f);
        script
            .lock()
            .extend([Step::fail(ErrorKind::Server), Step::fail(ErrorKind::Server)]);
        let res = router.generate(req()).await.unwrap();
        let a = &res.attempts;
        assert_eq!(a.len(), 3, "{f:?}: {a:?}");
        assert_eq!(
            a[0].provider, a[1].provider,
            "{f:?}: retried on the same provider"
        );
        assert_eq!((a[0].retry, a[1].retry), (0, 1), "{f:?}");
        assert_ne!(a[2].provider, a[0].provider, "{f:?}: then failed over");
        assert_eq!(a[2].outcome, Outcome::Success);
        let first = mocks.iter().find(|m| m.name() == a[0].provider).unwrap();
        assert_eq!(
            first.retries(),
            vec![0, 1],
            "{f:?}: ctx.retry tells the provider"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn every_strategy_returns_invalid_request_and_content_policy_at_once() {
    for f in FLAVORS {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::ContentPolicy {
                reason: Some("safety_violations=[sexual]".into()),
            },
        ] {
            let (router, mocks, script) = flavored(f);
            script.lock().push_back(Step::fail(kind.clone()));
            let err = router.generate(req()).await.unwrap_err();
            assert_eq!(err.attempts().len(), 1, "{f:?} {kind:?}");
            assert_eq!(mocks.iter().map(|m| m.calls()).sum::<usize>(), 1, "{f:?}");
            assert_eq!(err.cause().unwrap().kind, kind);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn content_policy_fails_over_when_configured() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    a.set_default(Step::fail(ErrorKind::ContentPolicy { reason: None }));
    let router = builder_with(&[&a, &b])
        .failover_on_content_policy(true)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
}

#[tokio::test(start_paused = true)]
async fn every_strategy_keeps_the_deadline_and_lists_every_attempt() {
    for f in FLAVORS {
        let (router, mocks, _script) = flavored(f);
        for m in &mocks {
            m.set_default(Step::Hang);
        }
        let t0 = tokio::time::Instant::now();
        let err = router.generate(req()).await.unwrap_err();
        let took = t0.elapsed();
        assert!(
            took <= Duration::from_secs(30),
            "{f:?}: {took:?} past the deadline"
        );
        assert!(err.is_deadline_exceeded(), "{f:?}: {err}");
        let calls: usize = mocks.iter().map(|m| m.calls()).sum();
        assert_eq!(err.attempts().len(), calls, "{f:?}: every call is listed");
        assert!(err
            .attempts()
            .iter()
            .all(|a| a.outcome == Outcome::Timeout && a.error.is_some()));
    }
}

#[tokio::test(start_paused = true)]
async fn scored_prefers_a_much_faster_provider_and_follows_a_swap() {
    let a = Fake::new("slow").arc();
    let b = Fake::new("fast").arc();
    a.set_latency(Duration::from_millis(500));
    b.set_latency(Duration::from_millis(50));
    let router = builder_with(&[&a, &b]).build().unwrap();
    let mut served: HashMap<String, usize> = HashMap::new();
    for _ in 0..100 {
        let p = router.generate(req()).await.unwrap().provider;
        *served.entry(p).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(served["fast"] >= 80, "{served:?}");
    a.set_latency(Duration::from_millis(50));
    b.set_latency(Duration::from_millis(500));
    let mut later: HashMap<String, usize> = HashMap::new();
    for _ in 0..200 {
        let p = router.generate(req()).await.unwrap().provider;
        *later.entry(p).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        later.get("slow").copied().unwrap_or(0) >= 100,
        "moves when speeds swap: {later:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn weighted_splits_by_weight() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    let router = Router::builder()
        .provider_arc(
            Arc::clone(&a) as Arc<dyn Provider>,
            ProviderOptions::new().weight(1.0),
        )
        .provider_arc(
            Arc::clone(&b) as Arc<dyn Provider>,
            ProviderOptions::new().weight(3.0),
        )
        .strategy(Strategy::Weighted)
        .build()
        .unwrap();
    for _ in 0..400 {
        router.generate(req()).await.unwrap();
    }
    let share_b = b.calls() as f64 / 400.0;
    // Expected 0.75 (equal headroom: power of two choices keeps the weight split).
    assert!((0.6..=0.9).contains(&share_b), "b got {share_b}");
}
