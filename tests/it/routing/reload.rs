//! Hot reload under load loses no request and keeps provider state, and new limits apply at once.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::breaker::BreakerState;
use image_router::{ErrorKind, Provider, ProviderOptions, Router, SkipReason, Strategy};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn reload_under_200_in_flight_loses_nothing_and_keeps_state() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    let c = Fake::new("c").arc();
    let d = Fake::new("d").arc();
    for m in [&a, &b, &c, &d] {
        m.set_latency(Duration::from_secs(2));
    }
    let router = builder_with(&[&a, &b, &c])
        .strategy(Strategy::Weighted)
        .build()
        .unwrap();
    // Give `c` an open breaker (state that must survive the reload).
    c.set_default(Step::fail(ErrorKind::Authentication));
    c.set_latency(Duration::ZERO);
    let ranked_first = router.rank(&req().into(), None).unwrap();
    assert_eq!(ranked_first.order.len(), 3);
    // Send until the strategy has tried `c` (its 401 opens the breaker).
    while c.calls() == 0 {
        router.generate(req()).await.unwrap();
    }
    assert_eq!(
        router.status().providers[2].breaker.state,
        BreakerState::Open
    );
    let a_counts_before = router.status().providers[0].health.successes;

    let mut handles = Vec::new();
    for _ in 0..200 {
        let r = router.clone();
        handles.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Replace: drop b, keep a and c (with new weights), add d.
    router
        .reload(
            Router::builder()
                .provider_arc(
                    Arc::clone(&a) as Arc<dyn Provider>,
                    ProviderOptions::new().weight(2.0),
                )
                .provider_arc(Arc::clone(&c) as Arc<dyn Provider>, ProviderOptions::new())
                .provider_arc(Arc::clone(&d) as Arc<dyn Provider>, ProviderOptions::new()),
        )
        .unwrap();
    let mut more = Vec::new();
    for _ in 0..50 {
        let r = router.clone();
        more.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    let mut ok = 0;
    for h in handles.into_iter().chain(more) {
        let res = h.await.unwrap().expect("no request lost");
        assert!(["a", "b", "d"].contains(&res.provider.as_str()));
        ok += 1;
    }
    assert_eq!(ok, 250);
    assert_eq!(router.provider_names(), vec!["a", "c", "d"]);
    let st = router.status();
    assert_eq!(st.providers[1].name, "c");
    assert_eq!(
        st.providers[1].breaker.state,
        BreakerState::Open,
        "c keeps its breaker"
    );
    assert!(
        st.providers[1].last_error.is_some(),
        "c keeps its last error"
    );
    assert!(
        st.providers[0].health.successes >= a_counts_before,
        "a keeps its health"
    );
    // A bad reload changes nothing.
    let err = router.reload(Router::builder()).unwrap_err();
    assert!(!err.field.is_empty());
    assert_eq!(router.provider_names(), vec!["a", "c", "d"]);
}

/// Reload changes the limits of a provider that stays: its limiter log is kept and the new
/// limit applies at once.
#[tokio::test(start_paused = true)]
async fn reload_applies_new_limits_to_a_provider_that_stays() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    let router = builder_with(&[&a, &b])
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(router.generate(req()).await.unwrap().provider, "a");
    }
    router
        .reload(
            Router::builder()
                .strategy(Strategy::Ordered)
                .provider_arc(
                    Arc::clone(&a) as Arc<dyn Provider>,
                    ProviderOptions::new().rpm(3),
                )
                .provider_arc(Arc::clone(&b) as Arc<dyn Provider>, ProviderOptions::new()),
        )
        .unwrap();
    // The three requests already sent count against the new limit of 3 per minute.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b", "{:?}", res.skipped);
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "a" && matches!(s.reason, SkipReason::NoHeadroom { .. })));
    assert_eq!(router.status().providers[0].health.successes, 3);
}
