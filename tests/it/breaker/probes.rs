//! Breaker probes under load: a flapping provider, concurrent requests after the cool-down and the
//! long access-denial cool-down each let exactly one probe through.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::breaker::BreakerState;
use image_router::{AccessDenial, ErrorKind};
use std::time::Duration;

// Flap: outage of 30 s, one request per second for 60 s
#[tokio::test(start_paused = true)]
async fn flap_every_request_served_one_probe_per_cool_down_traffic_returns() {
    let primary = Fake::new("primary").arc();
    let fallback = Fake::new("fallback").arc();
    let router = builder_with(&[&primary, &fallback])
        .retry_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    primary.set_default(Step::fail(ErrorKind::Server));
    let mut primary_calls_at: Vec<Duration> = Vec::new();
    let mut first_primary_success: Option<Duration> = None;
    let mut cool_down_at_recovery = Duration::ZERO;
    let mut open_until_at_recovery = Duration::ZERO;
    for s in 0..60u64 {
        let now = start.elapsed();
        if s == 30 {
            primary.set_default(Step::Ok);
            let b = &router.status().providers[0].breaker;
            cool_down_at_recovery = b.cool_down;
            open_until_at_recovery = b.retry_in.unwrap_or_default();
        }
        let before = primary.calls();
        let res = router
            .generate(req())
            .await
            .expect("every request is served");
        if primary.calls() > before {
            primary_calls_at.push(now);
        }
        if res.provider == "primary" && first_primary_success.is_none() {
            first_primary_success = Some(now);
        }
        tokio::time::sleep_until(start + Duration::from_secs(s + 1)).await;
    }
    // While open (after the first few failures opened it), at most one attempt per
    // cool-down: attempts during the outage are the three opening ones plus one probe per
    // cool-down (2 s, then 4 s, the default cap) over the remaining 28 s.
    let outage: Vec<_> = primary_calls_at
        .iter()
        .filter(|t| **t < Duration::from_secs(30))
        .collect();
    assert!(
        outage.len() <= 3 + 7,
        "primary pestered during outage: {outage:?}"
    );
    let first = first_primary_success.expect("traffic returns to the primary");
    let bound = Duration::from_secs(30) + open_until_at_recovery.max(cool_down_at_recovery);
    assert!(
        first <= bound + Duration::from_secs(1),
        "returns within one cool-down: {first:?} > {bound:?}"
    );
    // Traffic is fully back at the end (ramp 30 s).
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
}

/// After the cool-down, twenty concurrent requests: exactly one reaches the recovering
/// provider (the probe); nobody is lost.
#[tokio::test(start_paused = true)]
async fn exactly_one_probe_under_concurrent_requests() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    a.set_default(Step::fail(ErrorKind::Server));
    let router = builder_with(&[&a, &b])
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    while router.status().providers[0].breaker.state != BreakerState::Open {
        router.generate(req()).await.unwrap();
    }
    let opened_after = a.calls();
    tokio::time::sleep(Duration::from_secs(10)).await;
    a.set_default(Step::Ok);
    a.set_latency(Duration::from_secs(2));
    b.set_latency(Duration::from_secs(2));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let r = router.clone();
        tasks.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    let mut by_a = 0;
    for t in tasks {
        if t.await.unwrap().expect("served").provider == "a" {
            by_a += 1;
        }
    }
    assert_eq!(a.calls() - opened_after, 1, "one probe only");
    assert_eq!(by_a, 1);
    assert_eq!(
        router.status().providers[0].breaker.state,
        BreakerState::Recovering
    );
}

/// After an access denial, the provider is left alone for the whole long cool-down, then
/// gets exactly one probe.
#[tokio::test(start_paused = true)]
async fn access_denial_cool_down_then_one_probe() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    a.set_default(Step::fail(ErrorKind::AccessDenied {
        reason: AccessDenial::OrganizationNotVerified,
    }));
    let router = builder_with(&[&a, &b]).build().unwrap();
    router.generate(req()).await.unwrap();
    assert_eq!(a.calls(), 1);
    for _ in 0..29 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "b");
        assert!(res.skipped.iter().any(|s| s.provider == "a"));
    }
    assert_eq!(a.calls(), 1, "left alone for the default 300 s cool-down");
    a.set_default(Step::Ok);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a", "{:?}", res.skipped);
    assert_eq!(a.calls(), 2);
}
