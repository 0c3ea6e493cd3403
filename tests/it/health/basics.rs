//! Health: availability window, min samples, which outcomes count, peak-EWMA, in-flight penalty.

use std::sync::Arc;
use std::time::Duration;

use image_router::clock::{ManualClock, SharedClock};
use image_router::health::{availability_verdict, Health, HealthConfig};
use image_router::Outcome;

fn setup(config: HealthConfig) -> (ManualClock, Health) {
    let clock = ManualClock::new();
    let health = Health::new(config, Arc::new(clock.clone()) as SharedClock);
    (clock, health)
}

fn no_idle() -> HealthConfig {
    HealthConfig {
        idle_decay: None,
        ..HealthConfig::default()
    }
}

const MS: fn(u64) -> Duration = Duration::from_millis;

#[test]
fn availability_is_unknown_below_min_samples() {
    let (_clock, h) = setup(HealthConfig {
        min_samples: 5,
        ..HealthConfig::default()
    });
    for _ in 0..4 {
        h.record(Outcome::Server, MS(10));
    }
    assert_eq!(h.availability(), 1.0);
    assert!(!h.snapshot().known);
    h.record(Outcome::Success, MS(10));
    assert!((h.availability() - 0.2).abs() < 1e-9);
    assert!(h.snapshot().known);
}

#[test]
fn window_expiry_forgets_old_failures() {
    let (clock, h) = setup(HealthConfig {
        window: Duration::from_secs(60),
        buckets: 12,
        min_samples: 1,
        ..HealthConfig::default()
    });
    for _ in 0..10 {
        h.record(Outcome::Timeout, MS(10));
    }
    clock.advance(Duration::from_secs(30));
    for _ in 0..10 {
        h.record(Outcome::Success, MS(10));
    }
    assert_eq!(h.counts(), (10, 10));
    assert!((h.availability() - 0.5).abs() < 1e-9);
    // 65 s after the failures they left the window; the successes (35 s old) remain.
    clock.advance(Duration::from_secs(35));
    assert_eq!(h.counts(), (10, 0));
    assert_eq!(h.availability(), 1.0);
    clock.advance(Duration::from_secs(60));
    assert_eq!(h.counts(), (0, 0));
}

#[test]
fn only_provider_faults_count() {
    let (_clock, h) = setup(HealthConfig {
        min_samples: 1,
        ..HealthConfig::default()
    });
    for o in [
        Outcome::InvalidRequest,
        Outcome::ContentPolicy,
        Outcome::AccessDenied,
        Outcome::Authentication,
        Outcome::NotFound,
    ] {
        assert_eq!(availability_verdict(o), None, "{o}");
        h.record(o, MS(10));
    }
    assert_eq!(h.counts(), (0, 0));
    for o in [
        Outcome::Server,
        Outcome::Timeout,
        Outcome::Connect,
        Outcome::Decode,
        Outcome::RateLimited,
    ] {
        assert_eq!(availability_verdict(o), Some(false), "{o}");
        h.record(o, MS(10));
    }
    h.record(Outcome::Success, MS(10));
    assert_eq!(h.counts(), (1, 5));
    assert!((h.availability() - 1.0 / 6.0).abs() < 1e-9);
}

#[test]
fn peak_ewma_jumps_up_at_once_and_decays_with_the_time_constant() {
    let (clock, h) = setup(HealthConfig {
        latency_decay: Duration::from_secs(10),
        ..no_idle()
    });
    assert_eq!(h.latency(), None);
    h.record(Outcome::Success, MS(100));
    assert_eq!(h.latency(), Some(MS(100)));
    // Slower: replaces the estimate at once, however little time passed.
    clock.advance(MS(1));
    h.record(Outcome::Success, MS(2000));
    assert_eq!(h.latency(), Some(MS(2000)));
    // Faster, one time constant later: estimate = 2000·e⁻¹ + 100·(1−e⁻¹).
    clock.advance(Duration::from_secs(10));
    h.record(Outcome::Success, MS(100));
    let expected = 2000.0 * (-1f64).exp() + 100.0 * (1.0 - (-1f64).exp());
    let got = h.latency().unwrap().as_secs_f64() * 1000.0;
    assert!((got - expected).abs() < 0.01, "{got} vs {expected}");
    // A faster observation right away barely moves it (elapsed ≈ 0).
    clock.advance(MS(10));
    h.record(Outcome::Success, MS(100));
    let got2 = h.latency().unwrap().as_secs_f64() * 1000.0;
    assert!(got2 < got && got2 > got - 2.0, "{got2}");
    // After many time constants of fast answers it converges to them.
    for _ in 0..10 {
        clock.advance(Duration::from_secs(10));
        h.record(Outcome::Success, MS(100));
    }
    let settled = h.latency().unwrap().as_secs_f64() * 1000.0;
    assert!((settled - 100.0).abs() < 0.1, "{settled}");
}

#[test]
fn fast_errors_do_not_lower_latency_but_timeouts_raise_it() {
    let (clock, h) = setup(no_idle());
    h.record(Outcome::Success, MS(500));
    clock.advance(Duration::from_secs(60));
    h.record(Outcome::Connect, MS(2));
    h.record(Outcome::Server, MS(3));
    assert_eq!(h.latency(), Some(MS(500)));
    h.record(Outcome::Timeout, Duration::from_secs(30));
    assert_eq!(h.latency(), Some(Duration::from_secs(30)));
}

#[test]
fn idle_estimate_decays_so_slow_providers_get_retried() {
    let (clock, h) = setup(HealthConfig {
        idle_decay: Some(Duration::from_secs(100)),
        ..HealthConfig::default()
    });
    h.record(Outcome::Success, MS(1000));
    clock.advance(Duration::from_secs(100));
    let ms = h.latency().unwrap().as_secs_f64() * 1000.0;
    assert!((ms - 1000.0 * (-1f64).exp()).abs() < 0.01, "{ms}");
}

#[test]
fn in_flight_guard_counts_and_penalizes() {
    let (clock, h) = setup(no_idle());
    h.record(Outcome::Success, MS(200));
    assert_eq!(h.cost_ms(), 200.0);
    let a = h.start();
    let b = h.start();
    assert_eq!(h.in_flight(), 2);
    assert_eq!(h.cost_ms(), 600.0);
    drop(a); // cancelled: nothing recorded
    assert_eq!(h.in_flight(), 1);
    assert_eq!(h.counts(), (1, 0));
    clock.advance(MS(900));
    assert_eq!(b.elapsed(), MS(900));
    b.finish(Outcome::Success);
    assert_eq!(h.in_flight(), 0);
    assert_eq!(h.counts(), (2, 0));
    assert_eq!(h.latency(), Some(MS(900)));
    assert_eq!(h.cost_ms(), 900.0);
}

#[test]
fn default_latency_before_any_observation_and_snapshot_serializes() {
    let (_clock, h) = setup(HealthConfig {
        default_latency: Duration::from_secs(3),
        ..no_idle()
    });
    assert_eq!(h.cost_ms(), 3000.0);
    let _g = h.start();
    let snap = h.snapshot();
    assert_eq!(snap.in_flight, 1);
    assert_eq!(snap.cost_ms, 6000.0);
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["availability"], 1.0);
    assert_eq!(json["latency_ms"], serde_json::Value::Null);
    assert_eq!(json["window_ms"], 60_000);
}

#[test]
fn health_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Health>();
    check::<image_router::health::InFlight>();
}

#[test]
fn unmeasured_default_latency_also_idle_decays() {
    let (clock, h) = setup(HealthConfig {
        default_latency: Duration::from_secs(5),
        idle_decay: Some(Duration::from_secs(100)),
        ..HealthConfig::default()
    });
    assert_eq!(h.cost_ms(), 5000.0);
    clock.advance(Duration::from_secs(100));
    assert!((h.cost_ms() - 5000.0 * (-1f64).exp()).abs() < 0.01);
    assert_eq!(h.latency(), None, "still no observation");
}

#[test]
fn forgetting_outcomes_clears_availability_but_keeps_latency() {
    let (_clock, h) = setup(no_idle());
    for _ in 0..10 {
        h.record(Outcome::Server, MS(10));
    }
    h.record(Outcome::Success, MS(800));
    assert!(h.availability() < 0.1);
    h.forget_outcomes();
    assert_eq!(h.counts(), (0, 0));
    assert_eq!(h.availability(), 1.0);
    assert_eq!(h.latency(), Some(MS(800)));
}

#[test]
fn an_unmeasured_provider_is_assumed_fast_by_default() {
    let (_clock, h) = setup(HealthConfig::default());
    assert_eq!(h.latency(), None);
    assert_eq!(h.cost_ms(), 0.0);
}

#[test]
fn an_estimate_made_under_conditions_that_changed_is_forgotten() {
    let (_clock, h) = setup(no_idle());
    h.record(Outcome::Success, MS(555));
    // Measured when the best provider answered in 55 ms.
    h.set_measured_against(MS(55));
    // The best is now 100 ms: less than twice that, the estimate stands.
    assert!((h.cost_ms_floored(Some(MS(100))) - 555.0).abs() < 1e-6);
    assert_eq!(h.measured_latency(), Some(MS(555)));
    // The best is now 514 ms (the provider that beat it got 9x slower): forgotten, costed as
    // unmeasured (the optimistic default), and the next observation replaces it outright.
    assert_eq!(h.cost_ms_floored(Some(MS(514))), 0.0);
    assert_eq!(h.measured_latency(), None);
    h.record(Outcome::Success, MS(50));
    assert_eq!(h.measured_latency(), Some(MS(50)));
}

/// Availability is the share of calls that failed: calls that time out together in a stall
/// each count (unlike the breaker's consecutive run), and a stall among normal traffic
/// moves it only a little.
#[test]
fn overlapping_failures_each_count_for_availability() {
    let (clock, h) = setup(no_idle());
    for _ in 0..95 {
        let call = h.start();
        clock.advance(MS(100));
        call.finish(Outcome::Success);
    }
    let stalled: Vec<_> = (0..5).map(|_| h.start()).collect();
    assert_eq!(h.in_flight(), 5);
    clock.advance(MS(2_000));
    for call in stalled {
        call.finish(Outcome::Timeout);
    }
    assert_eq!(h.counts(), (95, 5));
    assert!((h.availability() - 0.95).abs() < 1e-9);
    assert_eq!(h.in_flight(), 0);
    // The timeout raised the latency estimate to its lower bound at once (peak).
    assert_eq!(h.latency(), Some(MS(2_000)));
}
