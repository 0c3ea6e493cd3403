//! Circuit-breaker states on a manual clock: opening on runs and ratios, one probe, the ramp,
//! growing cool-downs and access denials.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::breaker::{BreakerConfig, BreakerState, CircuitBreaker, DenyReason, OpenReason};
use image_router::clock::ManualClock;
use image_router::{AccessDenial, ErrorKind, NotFoundKind, Outcome};
use std::time::Duration;

/// The cool-downs and ramp these breaker tests were written against (10 s doubling up to
/// 5 min, 30 s ramp); the defaults are shorter since recovery must be noticed in seconds.
fn slow_probing() -> BreakerConfig {
    BreakerConfig {
        cool_down: Duration::from_secs(10),
        max_cool_down: Duration::from_secs(300),
        ramp: Duration::from_secs(30),
        ..BreakerConfig::default()
    }
}

fn breaker(cfg: BreakerConfig) -> (ManualClock, CircuitBreaker) {
    let (clock, shared) = manual();
    (clock, CircuitBreaker::new(cfg, shared))
}

#[test]
fn breaker_opens_on_consecutive_failures() {
    let (_c, b) = breaker(BreakerConfig::default());
    for i in 0..5 {
        assert_eq!(b.state(), BreakerState::Closed, "still closed after {i}");
        b.acquire().unwrap().record(Outcome::Server);
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(
        b.snapshot().reason,
        Some(OpenReason::ConsecutiveFailures(5))
    );
    assert!(b.acquire().is_err(), "open: nothing goes through");
}

#[test]
fn breaker_opens_on_failure_ratio_without_a_consecutive_run() {
    let (_c, b) = breaker(BreakerConfig::default());
    // F S F S ...: never two failures in a row. The ratio is 0.5 from the 10th sample
    // (the minimum) on; the next failure (6 of 11) opens it.
    for i in 0..11 {
        let o = if i % 2 == 0 {
            Outcome::Server
        } else {
            Outcome::Success
        };
        assert_eq!(b.state(), BreakerState::Closed, "closed before sample {i}");
        b.acquire().unwrap().record(o);
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().reason, Some(OpenReason::FailureRatio));
}

#[test]
fn rate_limits_and_caller_errors_never_open_the_breaker() {
    let (_c, b) = breaker(BreakerConfig::default());
    for _ in 0..50 {
        b.acquire().unwrap().record(Outcome::RateLimited);
        b.acquire().unwrap().record(Outcome::InvalidRequest);
        b.acquire().unwrap().record(Outcome::ContentPolicy);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn exactly_one_probe_then_gradual_ramp_then_closed() {
    let (clock, b) = breaker(slow_probing());
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    clock.advance(Duration::from_secs(9));
    assert!(b.acquire().is_err(), "still cooling down");
    clock.advance(Duration::from_secs(1));
    let probe = b.acquire().expect("the probe");
    assert!(probe.is_probe());
    for _ in 0..20 {
        assert!(b.acquire().is_err(), "only one probe at a time");
    }
    probe.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Recovering);
    // At the start of the ramp about 10 % is admitted.
    let mut admitted = 0;
    for _ in 0..100 {
        if let Ok(p) = b.acquire() {
            assert!(!p.is_probe());
            admitted += 1;
            p.record(Outcome::Success);
        }
    }
    assert!(
        (5..=20).contains(&admitted),
        "gradual, not all at once: {admitted}/100"
    );
    // Half way: about 55 %.
    clock.advance(Duration::from_secs(15));
    let mut mid = 0;
    for _ in 0..100 {
        if let Ok(p) = b.acquire() {
            mid += 1;
            p.record(Outcome::Success);
        }
    }
    assert!(mid > admitted && mid < 100, "ramping: {mid}/100");
    clock.advance(Duration::from_secs(15));
    for _ in 0..10 {
        b.acquire().expect("ramp over").record(Outcome::Success);
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn dropped_probe_counts_as_failure_and_does_not_wedge() {
    let (clock, b) = breaker(BreakerConfig::default());
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    clock.advance(Duration::from_secs(10));
    let probe = b.acquire().unwrap();
    drop(probe);
    assert_eq!(b.state(), BreakerState::Open);
    clock.advance(Duration::from_secs(20));
    assert!(
        b.acquire().unwrap().is_probe(),
        "a new probe after the longer cool-down"
    );
}

#[test]
fn cool_down_grows_after_failed_probes_and_is_capped() {
    let (clock, b) = breaker(slow_probing());
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    let mut seen = vec![b.snapshot().retry_in.unwrap().as_secs()];
    for _ in 0..8 {
        clock.advance(b.snapshot().retry_in.unwrap());
        let p = b.acquire().unwrap();
        assert!(p.is_probe());
        p.record(Outcome::Timeout);
        assert_eq!(b.snapshot().reason, Some(OpenReason::ProbeFailed));
        seen.push(b.snapshot().retry_in.unwrap().as_secs());
    }
    assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300, 300]);
    // A good probe and a full ramp reset it.
    clock.advance(Duration::from_secs(300));
    b.acquire().unwrap().record(Outcome::Success);
    clock.advance(Duration::from_secs(31));
    b.acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    assert_eq!(b.snapshot().retry_in.unwrap().as_secs(), 10);
}

#[test]
fn failure_while_ramping_reopens_with_longer_cool_down() {
    let cfg = BreakerConfig {
        ramp_start: 1.0,
        ..slow_probing()
    };
    let (clock, b) = breaker(cfg);
    for _ in 0..5 {
        b.acquire().unwrap().record(Outcome::Server);
    }
    clock.advance(Duration::from_secs(10));
    b.acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Recovering);
    b.acquire().unwrap().record(Outcome::Server);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().reason, Some(OpenReason::FailedWhileRecovering));
    assert_eq!(b.snapshot().retry_in, Some(Duration::from_secs(20)));
}

#[test]
fn access_denial_opens_for_the_long_cool_down_and_keeps_the_reason() {
    let (clock, b) = breaker(BreakerConfig::default());
    b.acquire().unwrap().open_for(
        DenyReason::AccessDenied(AccessDenial::InsufficientQuota),
        "You exceeded your current quota".to_string(),
    );
    let s = b.snapshot();
    assert_eq!(s.state, BreakerState::Open);
    assert_eq!(
        s.reason,
        Some(OpenReason::Denied(DenyReason::AccessDenied(
            AccessDenial::InsufficientQuota
        )))
    );
    assert_eq!(
        s.message.as_deref(),
        Some("You exceeded your current quota")
    );
    assert_eq!(s.retry_in, Some(Duration::from_secs(600)));
    let rej = b.acquire().unwrap_err();
    assert!(
        rej.to_string().contains("You exceeded your current quota"),
        "{rej}"
    );
    clock.advance(Duration::from_secs(599));
    assert!(b.acquire().is_err());
}

#[tokio::test(start_paused = true)]
async fn access_denial_in_the_router_is_visible_in_status_and_in_skips() {
    let a = Fake::new("a").arc();
    let b = Fake::new("b").arc();
    a.set_default(Step::fail(tier_denied()));
    let router = builder_with(&[&a, &b]).build().unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(res.attempts.len(), 2);
    assert_eq!(res.attempts[0].outcome, Outcome::AccessDenied);

    let st = router.status();
    let pa = &st.providers[0];
    assert_eq!(pa.breaker.state, BreakerState::Open);
    assert_eq!(
        pa.breaker.reason,
        Some(OpenReason::Denied(DenyReason::AccessDenied(
            AccessDenial::TierAccess
        )))
    );
    assert_eq!(pa.breaker.message.as_deref(), Some("a says no"));
    assert!(pa.last_error.is_some());
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["providers"][0]["breaker"]["state"], "open");

    // The next request skips `a` without calling it, and says why.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(a.calls(), 1);
    assert_eq!(res.provider, "b");
    let skip = res
        .skipped
        .iter()
        .find(|s| s.provider == "a")
        .expect("skip listed");
    let text = skip.reason.to_string();
    assert!(text.contains("a says no"), "skip keeps the reason: {text}");
}

/// A model this provider lacks, or a parameter it does not take, is about *that request*:
/// the provider is fine for others and its breaker must not open for everyone.
#[tokio::test(start_paused = true)]
async fn per_request_not_found_does_not_open_the_providers_breaker() {
    for what in [NotFoundKind::UnsupportedParameter, NotFoundKind::Model] {
        let a = Fake::new("a").arc();
        let b = Fake::new("b").arc();
        let router = builder_with(&[&a, &b]).build().unwrap();
        a.set_default(Step::fail(ErrorKind::NotFound { what }));
        for i in 0..8 {
            // A different model each time, so a per-model cool-down does not hide `a`.
            let r = req().model(format!("gpt-image-1-variant-{i}"));
            let res = router.generate(r).await.unwrap();
            assert_eq!(res.provider, "b");
        }
        assert_eq!(
            router.status().providers[0].breaker.state,
            BreakerState::Closed,
            "{what:?} must not open the breaker"
        );
        a.set_default(Step::Ok);
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "a", "{what:?}: a still serves other requests");
    }
}
