//! Time to first partial image: its own peak-EWMA, apart from the image latency, so a
//! stream's first partial never moves a plain request's estimate.

use crate::support::scoring::*;
use image_router::health::{Health, HealthConfig};
use image_router::Outcome;
use std::time::Duration;

#[test]
fn first_partial_is_a_separate_peak_ewma_that_leaves_latency_alone() {
    let (clock, shared) = manual();
    let health = Health::new(HealthConfig::default(), shared);
    assert_eq!(health.first_partial_latency(), None);
    assert_eq!(health.snapshot().first_partial_ms, None);
    // Unmeasured: costed as `default_latency` (0), as latency is.
    assert_eq!(health.first_partial_cost_ms_floored(None), 0.0);

    health.record(Outcome::Success, Duration::from_secs(20));
    health.record_first_partial(Duration::from_secs(3));
    assert_eq!(health.latency(), Some(Duration::from_secs(20)));
    assert_eq!(health.first_partial_latency(), Some(Duration::from_secs(3)));
    assert_eq!(health.snapshot().first_partial_ms, Some(3000.0));
    assert_eq!(health.cost_ms(), 20_000.0);
    assert_eq!(health.first_partial_cost_ms_floored(None), 3000.0);

    // Peak: a slower first partial replaces the estimate at once; latency does not move.
    health.record_first_partial(Duration::from_secs(8));
    assert_eq!(health.first_partial_latency(), Some(Duration::from_secs(8)));
    assert_eq!(health.latency(), Some(Duration::from_secs(20)));
    // A faster one pulls it down gradually, weighted by the time since the last one.
    clock.advance(Duration::from_secs(10));
    health.record_first_partial(Duration::from_secs(2));
    let fp = health.measured_first_partial().unwrap();
    assert!(
        fp > Duration::from_secs(2) && fp < Duration::from_secs(8),
        "{fp:?}"
    );
    // And a plain observation leaves the first-partial estimate alone.
    health.record(Outcome::Success, Duration::from_secs(40));
    assert_eq!(health.measured_first_partial(), Some(fp));
    assert_eq!(health.latency(), Some(Duration::from_secs(40)));

    // The in-flight penalty applies as for latency.
    let call = health.start();
    let one = health.first_partial_cost_ms_floored(None);
    let fp_ms = health.first_partial_latency().unwrap().as_secs_f64() * 1000.0;
    assert!((one - 2.0 * fp_ms).abs() < 1e-6, "{one} vs {fp_ms}");
    drop(call);
}

#[test]
fn finish_excluding_takes_time_that_was_not_the_providers_off_the_latency() {
    let (clock, shared) = manual();
    let health = Health::new(HealthConfig::default(), shared);
    let call = health.start();
    clock.advance(Duration::from_secs(10));
    call.finish_excluding(Outcome::Success, Duration::from_secs(4));
    assert_eq!(health.latency(), Some(Duration::from_secs(6)));
    assert_eq!(health.in_flight(), 0);
    // More excluded than elapsed: zero, never a panic.
    let call = health.start();
    clock.advance(Duration::from_secs(1));
    call.finish_excluding(Outcome::Success, Duration::from_secs(5));
    assert!(health.latency().unwrap() < Duration::from_secs(6));
}
