//! The limiter: RPM and TPM together, the safety margin, requests that never fit, the sliding
//! window and reconciling the estimate with the answer's usage.

use crate::support::quota::*;
use image_router::catalog::Catalog;
use image_router::clock::SharedClock;
use image_router::quota::limiter::{Denied, LimiterConfig, RateLimiter, SHARED_KEY_MARGIN};
use image_router::quota::limits::Limits;
use image_router::Usage;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn rpm_and_tpm_are_enforced_together() {
    // RPM binds.
    let (_c, l) = limiter(Some(3), Some(1_000_000), 1.0);
    let _p: Vec<_> = (0..3).map(|_| l.try_acquire(10).unwrap()).collect();
    match l.try_acquire(10).unwrap_err() {
        Denied::NoRoom {
            limit, limit_value, ..
        } => {
            assert_eq!(limit, image_router::quota::limiter::LimitKind::Requests);
            assert_eq!(limit_value, 3);
        }
        other => panic!("{other:?}"),
    }
    // TPM binds, weighted by the estimate.
    let (c, l) = limiter(Some(100), Some(10_000), 1.0);
    let _a = l.try_acquire(4160).unwrap();
    let _b = l.try_acquire(4160).unwrap();
    let err = l.try_acquire(4160).unwrap_err();
    assert!(
        matches!(
            err,
            Denied::NoRoom {
                limit: image_router::quota::limiter::LimitKind::Tokens,
                ..
            }
        ),
        "{err:?}"
    );
    // A smaller request still fits.
    let _s = l.try_acquire(1680).unwrap();
    assert!(l.try_acquire(1).is_err());
    // Capacity comes back exactly 60 s after it was used, not before.
    c.advance(Duration::from_millis(59_999));
    assert!(l.try_acquire(1).is_err());
    c.advance(Duration::from_millis(1));
    assert!(l.try_acquire(4160).is_ok());
}

#[test]
fn safety_margin_defaults_to_the_whole_limit_and_to_90_percent_for_a_shared_key() {
    let (_c, shared) = clock();
    let l = RateLimiter::new(
        Limits::new(Some(10), Some(100_000)).unwrap(),
        shared.clone(),
    )
    .unwrap();
    let h = l.headroom();
    assert_eq!(h.effective_rpm, Some(10));
    assert_eq!(h.effective_tpm, Some(100_000));
    let _p: Vec<_> = (0..10).map(|_| l.try_acquire(1).unwrap()).collect();
    assert!(l.try_acquire(1).is_err());

    // A shared key (no headers seen): 90 %.
    let l = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(Some(10), Some(100_000)).unwrap())
            .shared(true)
            .margin(SHARED_KEY_MARGIN),
        shared,
    )
    .unwrap();
    let h = l.headroom();
    assert_eq!(h.effective_rpm, Some(9));
    assert_eq!(h.effective_tpm, Some(90_000));
    let _p: Vec<_> = (0..9).map(|_| l.try_acquire(1).unwrap()).collect();
    assert!(l.try_acquire(1).is_err());

    // A custom margin.
    let (_c, l) = limiter(Some(100), Some(1000), 0.5);
    assert_eq!(l.headroom().effective_tpm, Some(500));
    assert!(l.try_acquire(500).is_ok());
    assert!(l.try_acquire(1).is_err());
}

#[test]
fn bad_limiter_settings_are_config_errors_naming_the_field() {
    let (_c, shared) = clock();
    let lim = Limits::new(Some(5), Some(1000)).unwrap();
    for (m, ok) in [
        (0.0, false),
        (-0.5, false),
        (1.5, false),
        (f64::NAN, false),
        (f64::INFINITY, false),
        (1.0, true),
        (0.01, true),
    ] {
        let r = RateLimiter::with_config(LimiterConfig::new(lim.clone()).margin(m), shared.clone());
        assert_eq!(r.is_ok(), ok, "margin {m}");
        if let Err(e) = r {
            assert_eq!(e.field, "margin");
        }
    }
    assert_eq!(Limits::new(Some(0), None).unwrap_err().field, "rpm");
    assert_eq!(Limits::new(None, Some(0)).unwrap_err().field, "tpm");
    assert_eq!(Limits::UNLIMITED.with_rpm(-1).unwrap_err().field, "rpm");
    assert_eq!(Limits::UNLIMITED.with_tpm(-1).unwrap_err().field, "tpm");
    assert_eq!(
        Limits::UNLIMITED.with_rpm(i64::MAX).unwrap_err().field,
        "rpm"
    );
    let e = Limits::from_tier(Catalog::builtin(), "tier-7").unwrap_err();
    assert!(
        e.message.contains("tier-7") && e.message.contains("tier-1"),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_that_can_never_fit_is_refused_at_once_with_a_reason() {
    let (_c, l) = limiter(Some(100), Some(10_000), 0.9);
    // 9000 effective; 9001 can never fit.
    let err = l.try_acquire(9_001).unwrap_err();
    assert!(
        matches!(
            err,
            Denied::NeverFits {
                tokens: 9_001,
                effective_tpm: 9_000
            }
        ),
        "{err:?}"
    );
    assert!(err.is_permanent());
    assert!(err.to_string().contains("never fit"), "{err}");
    // The waiting form returns at once instead of waiting out its whole budget.
    let before = tokio::time::Instant::now();
    let err = l
        .acquire(9_001, Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(matches!(err, Denied::NeverFits { .. }));
    assert_eq!(before, tokio::time::Instant::now());
    // Exactly the effective limit fits.
    assert!(l.try_acquire(9_000).is_ok());
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_for_room_but_never_past_its_budget() {
    // The limiter's clock is the tokio clock here so waiting moves it.
    let shared: SharedClock = Arc::new(image_router::clock::SystemClock::new());
    let l = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(Some(1), None).unwrap()).margin(1.0),
        shared,
    )
    .unwrap();
    let _a = l.try_acquire(1).unwrap();
    // Room in 60 s; 10 s of patience: refused without sleeping 10 s for nothing.
    let t0 = tokio::time::Instant::now();
    let err = l.acquire(1, Duration::from_secs(10)).await.unwrap_err();
    assert!(matches!(err, Denied::NoRoom { .. }));
    assert!(tokio::time::Instant::now() - t0 <= Duration::from_secs(10));
    // 61 s of patience: admitted at 60 s.
    let t0 = tokio::time::Instant::now();
    let p = l.acquire(1, Duration::from_secs(61)).await.unwrap();
    let waited = tokio::time::Instant::now() - t0;
    assert!(
        waited >= Duration::from_secs(59) && waited <= Duration::from_secs(61),
        "{waited:?}"
    );
    drop(p);
}

#[test]
fn reconcile_gives_back_or_charges_the_difference() {
    let (c, l) = limiter(None, Some(10_000), 1.0);
    let p = l.try_acquire(6_000).unwrap();
    assert_eq!(p.tokens(), 6_000);
    assert_eq!(l.headroom().tokens, Some(4_000));
    p.reconcile(2_000);
    assert_eq!(l.headroom().tokens, Some(8_000));
    let p = l.try_acquire(1_000).unwrap();
    p.reconcile(3_000); // charged more than estimated
    assert_eq!(l.headroom().tokens, Some(5_000));
    // From a usage: total_tokens.
    let p = l.try_acquire(5_000).unwrap();
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 10, "output_tokens": 272, "total_tokens": 282,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}
    }))
    .unwrap();
    p.reconcile_usage(&usage);
    assert_eq!(l.headroom().tokens, Some(5_000 - 282));
    // Cancel refunds everything.
    let p = l.try_acquire(100).unwrap();
    p.cancel();
    assert_eq!(l.headroom().tokens, Some(5_000 - 282));
    // Reconciled amounts still leave the window 60 s after admission.
    c.advance(Duration::from_secs(60));
    assert_eq!(l.headroom().tokens, Some(10_000));
}

/// Deterministic pseudo-random (xorshift) so the outcome is fixed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn no_60_second_window_ever_admits_more_than_the_limit() {
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (rpm, tpm) = (20u64, 50_000u64);
        let (c, l) = limiter(Some(rpm as u32), Some(tpm), 1.0);
        let mut admitted: Vec<(Duration, u64)> = Vec::new();
        let mut now = Duration::ZERO;
        for _ in 0..3000 {
            let step = Duration::from_millis(rng.next() % 3000);
            c.advance(step);
            now += step;
            let w = [272u64, 1056, 4160, 6240, 10, 50_000][(rng.next() % 6) as usize];
            if let Ok(p) = l.try_acquire(w) {
                // Sometimes the usage is lower than the estimate.
                let actual = if rng.next().is_multiple_of(3) {
                    w / 2
                } else {
                    w
                };
                p.reconcile(actual);
                admitted.push((now, actual));
            }
        }
        // Every window (t-60s, t] ending at an admission.
        for (i, &(t, _)) in admitted.iter().enumerate() {
            let in_window: Vec<_> = admitted[..=i]
                .iter()
                .filter(|(a, _)| *a + Duration::from_secs(60) > t)
                .collect();
            assert!(
                in_window.len() as u64 <= rpm,
                "seed {seed}: {} requests",
                in_window.len()
            );
            let toks: u64 = in_window.iter().map(|(_, w)| w).sum();
            assert!(toks <= tpm, "seed {seed}: {toks} tokens");
        }
        assert!(admitted.len() > 100, "seed {seed}: only {}", admitted.len());
    }
}

#[test]
fn saturating_load_uses_the_limit_fully() {
    // Ten minutes, a request offered every 100 ms: ≥ 97 % of the allowed requests.
    let (c, l) = limiter(Some(15), Some(500_000), 1.0);
    let mut n = 0u64;
    for _ in 0..6000 {
        if let Ok(p) = l.try_acquire(4160) {
            drop(p);
            n += 1;
        }
        c.advance(Duration::from_millis(100));
    }
    assert!(n >= (15 * 10 * 97) / 100, "{n}");
    assert!(n <= 150, "{n}");
}
