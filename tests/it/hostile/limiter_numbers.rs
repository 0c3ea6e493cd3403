//! The limiter's token arithmetic saturates on provider numbers.

use super::*;

#[test]
fn the_limiter_survives_u64_max_usage_and_headers() {
    use image_router::clock::ManualClock;
    use image_router::quota::limiter::RateLimiter;
    use image_router::quota::limits::Limits;

    let clock = ManualClock::new();
    let lim = RateLimiter::new(Limits::new(None, None).unwrap(), Arc::new(clock.clone())).unwrap();
    // Unlimited: two u64::MAX reconciliations in one window must neither panic nor wrap.
    lim.try_acquire(1000).unwrap().reconcile(u64::MAX);
    lim.try_acquire(1000).unwrap().reconcile(u64::MAX);
    let p = lim.try_acquire(u64::MAX).unwrap();
    p.reconcile_usage(&image_router::Usage::new(u64::MAX, u64::MAX));
    clock.advance(Duration::from_secs(61));
    assert!(lim.try_acquire(1).is_ok());

    let limited = RateLimiter::new(
        Limits::new(Some(5), Some(10_000)).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    limited.try_acquire(100).unwrap().reconcile(u64::MAX);
    // The window is full now (saturated, not wrapped to a small number).
    assert!(limited.try_acquire(100).is_err());
    clock.advance(Duration::from_secs(61));
    assert!(limited.try_acquire(100).is_ok());
}
