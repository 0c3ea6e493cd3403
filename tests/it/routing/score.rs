//! Score and rank: every component (latency, health, headroom, budget, in-flight) is explained by
//! `rank` and never NaN or negative.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::breaker::{BreakerConfig, BreakerState};
use image_router::score::{ScoreInputs, ScoreWeights, Scorer};
use image_router::{
    ErrorKind, GenerateRequest, Provider, ProviderOptions, Router, SkipReason, Strategy,
};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn region_formula_is_expressible() {
    let s = image_router::score::DefaultScorer::new(ScoreWeights::REGION).score(&ScoreInputs {
        availability: 0.8,
        latency_ms: 400.0,
        headroom: 0.01,
        budget_left: Some(0.1),
        priority: 5,
        weight: 1.0,
    });
    assert!((s.total - 0.8 * 1000.0 / 400.0).abs() < 1e-9, "{}", s.total);
}

#[test]
fn scorer_never_returns_nan_or_negative_on_bad_inputs() {
    let sc = image_router::score::DefaultScorer::default();
    for inputs in [
        ScoreInputs {
            availability: f64::NAN,
            latency_ms: f64::NAN,
            headroom: f64::INFINITY,
            budget_left: Some(-3.0),
            priority: usize::MAX,
            weight: f64::NEG_INFINITY,
        },
        ScoreInputs {
            latency_ms: -5.0,
            weight: 1e308,
            ..ScoreInputs::default()
        },
    ] {
        let s = sc.score(&inputs);
        assert!(s.total.is_finite() && s.total >= 0.0, "{s:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn rank_explains_every_component() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    let c = Fake::new("c").arc();
    c.set_default(Step::fail(ErrorKind::Server));
    let router = builder_with(&[&a, &b, &c])
        .breaker(BreakerConfig {
            consecutive_failures: 1,
            // Long enough to still be open when the ranking is read.
            cool_down: Duration::from_secs(10),
            ..BreakerConfig::default()
        })
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    // Open c's breaker: with a and b rate limited, the request reaches c and fails.
    a.set_default(Step::fail(rate_limited()));
    b.set_default(Step::fail(rate_limited()));
    let _ = router.generate(req()).await;
    a.set_default(Step::Ok);
    b.set_default(Step::Ok);
    assert_eq!(
        router.status().providers[2].breaker.state,
        BreakerState::Open
    );

    let ranked = router.rank(&req().into(), None).unwrap();
    let names: Vec<&str> = ranked.order.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&"c"));
    assert!(ranked
        .skipped
        .iter()
        .any(|s| s.provider == "c" && matches!(s.reason, SkipReason::CircuitOpen { .. })));
    for (name, s) in &ranked.order {
        let product = s.availability * s.latency * s.headroom * s.budget * s.priority * s.weight;
        assert!(
            (s.total - product).abs() <= 1e-9 * product.max(1.0),
            "{name}: total is the product of the components: {s:?}"
        );
        assert_eq!(
            s.inputs.priority,
            router
                .provider_names()
                .iter()
                .position(|n| n == name)
                .unwrap()
        );
    }
    let json = serde_json::to_value(&ranked).unwrap();
    for key in [
        "availability",
        "latency",
        "headroom",
        "budget",
        "priority",
        "weight",
        "total",
        "inputs",
    ] {
        assert!(
            json["order"][0][1].get(key).is_some(),
            "rank JSON lacks {key}: {json}"
        );
    }
    // Bad input is a typed error naming the field, not a panic.
    let err = router
        .rank(&GenerateRequest::new("").into(), None)
        .unwrap_err();
    assert_eq!(err.field, "prompt");
}

/// Headroom from live headers is a score component: a provider whose last answer said
/// `x-ratelimit-remaining-requests: 0` goes last (Scored and Ordered) until the reset.
#[tokio::test(start_paused = true)]
async fn live_headers_feed_the_headroom_component() {
    for strategy in [Strategy::Scored, Strategy::Ordered] {
        let a = Fake::new("a").arc();
        let b = Fake::new("b").arc();
        a.set_headers(image_router::quota::headers::RateLimitHeaders {
            limit_requests: Some(5),
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_secs(20)),
            ..Default::default()
        });
        let router = builder_with(&[&a, &b]).strategy(strategy).build().unwrap();
        assert_eq!(router.generate(req()).await.unwrap().provider, "a");
        let ranked = router.rank(&req().into(), None).unwrap();
        assert_eq!(ranked.order[0].0, "b", "{strategy:?}: {ranked:?}");
        let a_score = &ranked.order.iter().find(|(n, _)| n == "a").unwrap().1;
        assert_eq!(a_score.inputs.headroom, 0.0);
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "b", "{strategy:?}");
        assert_eq!(a.calls(), 1, "{strategy:?}: no 429 paid for");
        a.set_headers(image_router::quota::headers::RateLimitHeaders::default());
        tokio::time::sleep(Duration::from_secs(21)).await;
        assert_eq!(
            router.generate(req()).await.unwrap().provider,
            "a",
            "{strategy:?}"
        );
    }
}

/// The budget component: spend on a provider with a budget lowers its budget factor, and
/// `rank` shows it.
#[tokio::test(start_paused = true)]
async fn budget_left_is_a_score_component() {
    let a = Fake::new("a").arc();
    let budget =
        image_router::budget::Budget::new(1.0, image_router::budget::BudgetPeriod::Day).unwrap();
    let router = Router::builder()
        .provider_arc(
            Arc::clone(&a) as Arc<dyn Provider>,
            ProviderOptions::new().budget(budget),
        )
        .build()
        .unwrap();
    let before = router.rank(&req().into(), None).unwrap().order[0].1;
    assert_eq!(before.inputs.budget_left, Some(1.0));
    for _ in 0..5 {
        router.generate(req()).await.unwrap();
    }
    let after = router.rank(&req().into(), None).unwrap().order[0].1;
    let left = after.inputs.budget_left.unwrap();
    assert!(left < 1.0, "{after:?}");
    assert!(
        (after.budget - left.sqrt()).abs() < 1e-9,
        "default budget exponent 0.5"
    );
    let st = serde_json::to_value(router.status()).unwrap();
    assert!(st["providers"][0]["spend"].is_object());
}

/// The in-flight penalty spreads concurrent requests instead of piling them onto the first
/// provider (once both are measured).
#[tokio::test(start_paused = true)]
async fn in_flight_penalty_spreads_concurrent_requests() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    for m in [&a, &b] {
        m.set_latency(Duration::from_secs(1));
    }
    let router = builder_with(&[&a, &b]).build().unwrap();
    // Measure both (b gets one exploratory request).
    for _ in 0..3 {
        router.generate(req()).await.unwrap();
    }
    let (a0, b0) = (a.calls(), b.calls());
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let r = router.clone();
        tasks.push(tokio::spawn(async move { r.generate(req()).await }));
        tokio::task::yield_now().await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let (da, db) = (a.calls() - a0, b.calls() - b0);
    assert_eq!(da + db, 10);
    assert!(da >= 3 && db >= 3, "spread: a {da}, b {db}");
    let st = router.status();
    assert_eq!(st.providers[0].health.in_flight, 0);
    assert_eq!(st.providers[1].health.in_flight, 0);
}
