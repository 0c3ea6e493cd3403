//! Health: availability counts only the provider's own faults, the peak EWMA of latency and the in-
//! flight penalty; these feed the score, so a wrong input moves traffic.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::breaker::BreakerState;
use image_router::health::{availability_verdict, Health, HealthConfig};
use image_router::{ErrorKind, Outcome};
use std::time::Duration;

#[test]
fn availability_counts_only_the_providers_faults() {
    for o in [
        Outcome::Server,
        Outcome::Timeout,
        Outcome::Connect,
        Outcome::Decode,
        Outcome::RateLimited,
    ] {
        assert_eq!(
            availability_verdict(o),
            Some(false),
            "{o:?} is a provider fault"
        );
    }
    assert_eq!(availability_verdict(Outcome::Success), Some(true));
    for o in [Outcome::InvalidRequest, Outcome::ContentPolicy] {
        assert_eq!(availability_verdict(o), None, "{o:?} is the caller's");
    }

    let (clock, shared) = manual();
    let health = Health::new(HealthConfig::default(), shared);
    for _ in 0..20 {
        health.record(Outcome::InvalidRequest, Duration::from_millis(5));
        health.record(Outcome::ContentPolicy, Duration::from_millis(5));
    }
    assert_eq!(health.counts(), (0, 0));
    assert_eq!(health.availability(), 1.0);
    // Below min_samples (5): unknown = healthy.
    for _ in 0..4 {
        health.record(Outcome::Server, Duration::ZERO);
    }
    assert_eq!(health.availability(), 1.0);
    health.record(Outcome::RateLimited, Duration::ZERO);
    for _ in 0..5 {
        health.record(Outcome::Success, Duration::from_millis(100));
    }
    assert_eq!(health.counts(), (5, 5));
    assert!((health.availability() - 0.5).abs() < 1e-9);
    // The window is time based: after it passes, the evidence is gone.
    clock.advance(Duration::from_secs(61));
    assert_eq!(health.counts(), (0, 0));
    assert_eq!(health.availability(), 1.0);
}

#[tokio::test(start_paused = true)]
async fn caller_faults_do_not_hurt_a_providers_availability_in_the_router() {
    let a = Fake::new("a").arc();
    let router = builder_with(&[&a]).build().unwrap();
    a.set_default(Step::fail(ErrorKind::InvalidRequest));
    for _ in 0..10 {
        let err = router.generate(req()).await.unwrap_err();
        assert!(err.is_invalid());
    }
    a.set_default(Step::fail(ErrorKind::ContentPolicy { reason: None }));
    for _ in 0..10 {
        let err = router.generate(req()).await.unwrap_err();
        assert!(err.is_content_policy());
    }
    let st = router.status();
    let p = &st.providers[0];
    assert_eq!((p.health.successes, p.health.failures), (0, 0));
    assert_eq!(p.health.availability, 1.0);
    assert_eq!(p.breaker.state, BreakerState::Closed);
    assert_eq!(p.breaker.consecutive_failures, 0);
}

#[test]
fn peak_ewma_jumps_up_at_once_and_decays_down_gradually() {
    let (clock, shared) = manual();
    let cfg = HealthConfig {
        idle_decay: None,
        ..HealthConfig::default()
    };
    let health = Health::new(cfg, shared);
    assert_eq!(health.latency(), None);
    health.record(Outcome::Success, Duration::from_millis(100));
    assert_eq!(health.latency(), Some(Duration::from_millis(100)));
    clock.advance(Duration::from_secs(1));
    health.record(Outcome::Success, Duration::from_millis(1000));
    assert_eq!(
        health.latency(),
        Some(Duration::from_millis(1000)),
        "a slower observation is adopted at once"
    );
    clock.advance(Duration::from_secs(1));
    health.record(Outcome::Success, Duration::from_millis(100));
    let after_one = health.latency().unwrap();
    assert!(
        after_one > Duration::from_millis(500) && after_one < Duration::from_millis(1000),
        "a faster observation only pulls the estimate down gradually: {after_one:?}"
    );
    // Many fast observations over several decay windows bring it back near 100 ms.
    for _ in 0..60 {
        clock.advance(Duration::from_secs(1));
        health.record(Outcome::Success, Duration::from_millis(100));
    }
    let settled = health.latency().unwrap();
    assert!(
        settled < Duration::from_millis(150),
        "decays back over the window: {settled:?}"
    );
    // A fast *failure* says nothing about image latency.
    health.record(Outcome::Connect, Duration::from_millis(1));
    assert_eq!(health.latency().unwrap(), settled);
}

#[test]
fn in_flight_penalty_multiplies_the_cost() {
    let (_clock, shared) = manual();
    let cfg = HealthConfig {
        idle_decay: None,
        ..HealthConfig::default()
    };
    let health = Health::new(cfg, shared);
    health.record(Outcome::Success, Duration::from_millis(200));
    assert!((health.cost_ms() - 200.0).abs() < 1e-6);
    let g1 = health.start();
    let g2 = health.start();
    assert_eq!(health.in_flight(), 2);
    assert!(
        (health.cost_ms() - 600.0).abs() < 1e-6,
        "{}",
        health.cost_ms()
    );
    drop(g1);
    g2.finish(Outcome::Success);
    assert_eq!(health.in_flight(), 0);
}
