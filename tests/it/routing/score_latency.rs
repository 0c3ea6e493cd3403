//! Scored routing over latency at any traffic rate: comparable providers keep their order, a slow
//! primary is re-measured and wins back.

use crate::support::scoring::*;
use crate::support::Fake;
use image_router::health::HealthConfig;
use std::time::Duration;

/// Real image generation takes seconds. Comparable providers (same speed, or 1000 vs
/// 950 ms, all healthy): once each has been measured (an unmeasured provider is assumed
/// fast and tried once, by design, so latency differences can be discovered), every request
/// goes to the first, whatever the traffic rate. Before the fix, idle estimates decayed
/// toward zero: a fallback overtook the primary after a minute of idleness, and at one
/// request every two minutes the three providers took turns (a, b, c, a, b, a, c, b, ...).
#[tokio::test(start_paused = true)]
async fn scored_keeps_the_order_of_comparable_providers_at_any_rate() {
    for gap in [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(30),
        Duration::from_secs(120),
        Duration::from_secs(600),
    ] {
        for (la, lb, lc) in [(10_000, 10_000, 10_000), (1000, 950, 1000), (300, 300, 280)] {
            let a = Fake::new("a").arc();
            let b = Fake::new("b").arc();
            let c = Fake::new("c").arc();
            a.set_latency(Duration::from_millis(la));
            b.set_latency(Duration::from_millis(lb));
            c.set_latency(Duration::from_millis(lc));
            let router = builder_with(&[&a, &b, &c]).build().unwrap();
            let mut served = Vec::new();
            for _ in 0..40 {
                served.push(router.generate(req()).await.unwrap().provider);
                tokio::time::sleep(gap).await;
            }
            // Each provider measured once at most...
            assert!(b.calls() <= 1 && c.calls() <= 1, "gap {gap:?}: {served:?}");
            // ...and from then on the configured order holds.
            assert!(
                served[3..].iter().all(|p| p == "a"),
                "gap {gap:?}, latencies {la}/{lb}/{lc}: {served:?}"
            );
        }
    }
}

/// The idle decay still does its job: a primary that lost its traffic for being slow is
/// re-measured once the others are no faster, and wins back when it is fast again.
#[tokio::test(start_paused = true)]
async fn a_slow_primary_is_re_measured_and_wins_back() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    a.set_latency(Duration::from_millis(5000));
    b.set_latency(Duration::from_millis(500));
    let router = builder_with(&[&a, &b]).build().unwrap();
    let mut served = Vec::new();
    for _ in 0..20 {
        served.push(router.generate(req()).await.unwrap().provider);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(served[2..].iter().all(|p| p == "b"), "{served:?}");
    a.set_latency(Duration::from_millis(500));
    let mut later = Vec::new();
    for _ in 0..120 {
        later.push(router.generate(req()).await.unwrap().provider);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let back = later.iter().position(|p| p == "a").expect("a re-measured");
    assert!(later[back..].iter().all(|p| p == "a"), "{later:?}");
}

/// With a realistic `default_latency`, unmeasured fallbacks stay behind a comparable
/// measured primary from the first request on, at any traffic rate.
#[tokio::test(start_paused = true)]
async fn realistic_default_latency_keeps_unmeasured_fallbacks_behind() {
    for gap in [Duration::ZERO, Duration::from_secs(600)] {
        let a = Fake::new("a").arc();
        let b = Fake::new("b").arc();
        for m in [&a, &b] {
            m.set_latency(Duration::from_secs(8));
        }
        let router = builder_with(&[&a, &b])
            .health(HealthConfig {
                default_latency: Duration::from_secs(8),
                ..HealthConfig::default()
            })
            .build()
            .unwrap();
        for _ in 0..20 {
            assert_eq!(router.generate(req()).await.unwrap().provider, "a");
            tokio::time::sleep(gap).await;
        }
        assert_eq!(b.calls(), 0, "gap {gap:?}");
    }
}
