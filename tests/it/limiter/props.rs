//! Properties of the limiter over random arrival sequences and weights (ManualClock), checked
//! against an independent sliding-window oracle.

use std::sync::Arc;
use std::time::Duration;

use image_router::clock::{Clock, ManualClock};
use image_router::quota::limiter::{Denied, LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;
use proptest::prelude::*;

const WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
enum Op {
    /// Wait this many milliseconds, then try to admit a request of this weight; afterwards
    /// reconcile it down to `actual_pct` % of the weight, cancel it, or keep it.
    Try {
        gap_ms: u64,
        weight: u64,
        after: After,
    },
}

#[derive(Clone, Copy, Debug)]
enum After {
    Keep,
    ReconcileDown(u8),
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    (
        prop_oneof![0u64..50, 0u64..2_000, 0u64..30_000],
        prop_oneof![1u64..500, 1u64..7_000, 1u64..40_000],
        prop_oneof![
            3 => Just(After::Keep),
            1 => (0u8..=100).prop_map(After::ReconcileDown),
            1 => Just(After::Cancel),
        ],
    )
        .prop_map(|(gap_ms, weight, after)| Op::Try {
            gap_ms,
            weight,
            after,
        })
}

/// Checks every 60-second window: the maximum over windows is reached at an admission time,
/// so checking the windows (t − 60 s, t] ending at each admission suffices.
fn max_window(admitted: &[(Duration, u64)]) -> (u64, u64) {
    let mut worst = (0, 0);
    for &(t, _) in admitted {
        let (mut c, mut w) = (0u64, 0u64);
        for &(s, weight) in admitted {
            if s <= t && s + WINDOW > t {
                c += 1;
                w += weight;
            }
        }
        worst.0 = worst.0.max(c);
        worst.1 = worst.1.max(w);
    }
    worst
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No 60-second window ever admits more than the effective limits, whatever the arrivals,
    /// weights, margin, reconciliations and cancellations.
    #[test]
    fn no_window_exceeds_the_effective_limit(
        rpm in 1u32..40,
        tpm in 1_000u64..200_000,
        margin_pct in 50u32..=100,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let clock = ManualClock::new();
        let margin = f64::from(margin_pct) / 100.0;
        let lim = RateLimiter::with_config(
            LimiterConfig::new(Limits::new(Some(rpm), Some(tpm)).unwrap()).margin(margin),
            Arc::new(clock.clone()),
        ).unwrap();
        let eff_rpm = ((f64::from(rpm) * margin).floor() as u64).max(1);
        let eff_tpm = ((tpm as f64 * margin).floor() as u64).max(1);
        // What the provider counts: admissions minus cancellations, with reconciled weights.
        let mut admitted: Vec<(Duration, u64)> = Vec::new();
        for Op::Try { gap_ms, weight, after } in ops {
            clock.advance(Duration::from_millis(gap_ms));
            match lim.try_acquire(weight) {
                Ok(p) => match after {
                    After::Keep => { drop(p); admitted.push((clock.now(), weight)); }
                    After::ReconcileDown(pct) => {
                        let actual = weight * u64::from(pct) / 100;
                        p.reconcile(actual);
                        admitted.push((clock.now(), actual));
                    }
                    After::Cancel => p.cancel(),
                },
                Err(Denied::NeverFits { tokens, effective_tpm }) => {
                    prop_assert_eq!(tokens, weight);
                    prop_assert_eq!(effective_tpm, eff_tpm);
                    prop_assert!(weight > eff_tpm);
                }
                Err(Denied::NoRoom { retry_in, .. }) => {
                    prop_assert!(retry_in > Duration::ZERO && retry_in <= WINDOW);
                }
                Err(other) => prop_assert!(false, "unexpected denial {other:?}"),
            }
        }
        let (c, w) = max_window(&admitted);
        prop_assert!(c <= eff_rpm, "window had {} requests > {}", c, eff_rpm);
        prop_assert!(w <= eff_tpm, "window had {} tokens > {}", w, eff_tpm);
    }

    /// With margin 1.0 the limiter admits exactly what the upstream's sliding window admits
    /// (nothing the upstream would refuse, and nothing refused that it would take: full
    /// utilisation), and a refusal's `retry_in` is exactly when the request would fit.
    #[test]
    fn agrees_with_the_upstream_window(
        rpm in 1u32..20,
        tpm in 1_000u64..50_000,
        arrivals in proptest::collection::vec((0u64..20_000, 1u64..10_000), 1..200),
    ) {
        let clock = ManualClock::new();
        let lim = RateLimiter::with_config(
            LimiterConfig::new(Limits::new(Some(rpm), Some(tpm)).unwrap()).margin(1.0),
            Arc::new(clock.clone()),
        ).unwrap();
        let mut log: Vec<(Duration, u64)> = Vec::new();
        let upstream_admits = |log: &[(Duration, u64)], t: Duration, w: u64| {
            let live: Vec<_> = log.iter().filter(|(s, _)| *s + WINDOW > t).collect();
            (live.len() as u64) < u64::from(rpm) && live.iter().map(|(_, w)| w).sum::<u64>() + w <= tpm
        };
        for (gap_ms, w) in arrivals {
            clock.advance(Duration::from_millis(gap_ms));
            let t = clock.now();
            let expect = upstream_admits(&log, t, w);
            match lim.try_acquire(w) {
                Ok(p) => {
                    prop_assert!(expect, "limiter admitted what the upstream refuses");
                    drop(p);
                    log.push((t, w));
                }
                Err(Denied::NeverFits { .. }) => prop_assert!(w > tpm),
                Err(d) => {
                    prop_assert!(!expect, "limiter refused what the upstream admits: {d:?}");
                    let r = d.retry_in().unwrap();
                    prop_assert!(upstream_admits(&log, t + r, w));
                    prop_assert!(!upstream_admits(&log, t + r - Duration::from_nanos(1), w));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Images per minute beside requests and tokens: with any margin, no 60-second window holds
    /// more than the effective limit of any dimension, whatever the arrivals, `n`s,
    /// reconciliations and cancellations (images are never reconciled: the provider counts
    /// the `n` it was asked for).
    #[test]
    fn no_window_exceeds_any_of_the_three_limits(
        rpm in 1u32..40,
        ipm in 1u32..60,
        tpm in 1_000u64..200_000,
        margin_pct in 50u32..=100,
        ops in proptest::collection::vec((op(), 1u32..=10), 1..300),
    ) {
        let clock = ManualClock::new();
        let margin = f64::from(margin_pct) / 100.0;
        let limits = Limits::new(Some(rpm), Some(tpm)).unwrap().with_ipm(i64::from(ipm)).unwrap();
        let lim = RateLimiter::with_config(
            LimiterConfig::new(limits).margin(margin),
            Arc::new(clock.clone()),
        ).unwrap();
        let eff = |l: u64| ((l as f64 * margin).floor() as u64).max(1);
        let (eff_rpm, eff_ipm, eff_tpm) = (eff(u64::from(rpm)), eff(u64::from(ipm)), eff(tpm));
        // (time, images, tokens) of what the provider counts.
        let mut admitted: Vec<(Duration, u64, u64)> = Vec::new();
        for (Op::Try { gap_ms, weight, after }, n) in ops {
            clock.advance(Duration::from_millis(gap_ms));
            match lim.try_acquire_images(n, weight) {
                Ok(p) => match after {
                    After::Keep => { drop(p); admitted.push((clock.now(), u64::from(n), weight)); }
                    After::ReconcileDown(pct) => {
                        let actual = weight * u64::from(pct) / 100;
                        p.reconcile(actual);
                        admitted.push((clock.now(), u64::from(n), actual));
                    }
                    After::Cancel => p.cancel(),
                },
                Err(Denied::NeverFitsImages { images, effective_ipm }) => {
                    prop_assert_eq!(images, n);
                    prop_assert_eq!(effective_ipm, eff_ipm);
                    prop_assert!(u64::from(n) > eff_ipm);
                }
                Err(Denied::NeverFits { effective_tpm, .. }) => {
                    prop_assert_eq!(effective_tpm, eff_tpm);
                    prop_assert!(weight > eff_tpm);
                }
                Err(Denied::NoRoom { retry_in, .. }) => {
                    prop_assert!(retry_in > Duration::ZERO && retry_in <= WINDOW);
                }
                Err(other) => prop_assert!(false, "unexpected denial {other:?}"),
            }
        }
        for &(t, _, _) in &admitted {
            let live = admitted.iter().filter(|(s, _, _)| *s <= t && *s + WINDOW > t);
            let (c, i, w) = live.fold((0u64, 0u64, 0u64), |(c, i, w), (_, n, tok)| (c + 1, i + n, w + tok));
            prop_assert!(c <= eff_rpm, "window had {} requests > {}", c, eff_rpm);
            prop_assert!(i <= eff_ipm, "window had {} images > {}", i, eff_ipm);
            prop_assert!(w <= eff_tpm, "window had {} tokens > {}", w, eff_tpm);
        }
    }

    /// With the whole limit (the default) the limiter admits exactly what an upstream counting
    /// requests, images and tokens over a sliding minute admits (no 429, no unused room), and
    /// a refusal's `retry_in` is exactly when the request would fit.
    #[test]
    fn agrees_with_the_upstream_window_on_images_too(
        rpm in 1u32..20,
        ipm in 1u32..30,
        tpm in 1_000u64..50_000,
        arrivals in proptest::collection::vec((0u64..20_000, 1u32..=10, 1u64..10_000), 1..200),
    ) {
        let clock = ManualClock::new();
        let limits = Limits::new(Some(rpm), Some(tpm)).unwrap().with_ipm(i64::from(ipm)).unwrap();
        let lim = RateLimiter::with_config(LimiterConfig::new(limits), Arc::new(clock.clone())).unwrap();
        let mut log: Vec<(Duration, u64, u64)> = Vec::new();
        let upstream_admits = |log: &[(Duration, u64, u64)], t: Duration, n: u64, w: u64| {
            let live: Vec<_> = log.iter().filter(|(s, _, _)| *s + WINDOW > t).collect();
            (live.len() as u64) < u64::from(rpm)
                && live.iter().map(|(_, n, _)| n).sum::<u64>() + n <= u64::from(ipm)
                && live.iter().map(|(_, _, w)| w).sum::<u64>() + w <= tpm
        };
        for (gap_ms, n, w) in arrivals {
            clock.advance(Duration::from_millis(gap_ms));
            let t = clock.now();
            let expect = upstream_admits(&log, t, u64::from(n), w);
            match lim.try_acquire_images(n, w) {
                Ok(p) => {
                    prop_assert!(expect, "limiter admitted what the upstream refuses");
                    drop(p);
                    log.push((t, u64::from(n), w));
                }
                Err(Denied::NeverFits { .. }) => prop_assert!(w > tpm),
                Err(Denied::NeverFitsImages { .. }) => prop_assert!(n > ipm),
                Err(d) => {
                    prop_assert!(!expect, "limiter refused what the upstream admits: {d:?}");
                    let r = d.retry_in().unwrap();
                    prop_assert!(upstream_admits(&log, t + r, u64::from(n), w));
                    prop_assert!(!upstream_admits(&log, t + r - Duration::from_nanos(1), u64::from(n), w));
                }
            }
        }
    }
}

/// Many tokio tasks waiting in `acquire` at once (tokio's paused clock): every admission lands
/// inside the limits, every task that could be served within its `max_wait` was, and nobody
/// waited past `max_wait`.
#[tokio::test(start_paused = true)]
async fn concurrent_acquire_respects_the_window_and_max_wait() {
    use image_router::clock::SystemClock;
    let clock = Arc::new(SystemClock::new());
    let lim = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(Some(10), Some(30_000)).unwrap()).margin(1.0),
        clock.clone(),
    )
    .unwrap();
    let max_wait = Duration::from_secs(125);
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let (lim, clock) = (lim.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let start = clock.now();
            let w = [1000u64, 4000, 2500][(i % 3) as usize];
            let r = lim.acquire(w, max_wait).await;
            let waited = clock.now() - start;
            assert!(waited <= max_wait, "waited {waited:?}");
            r.map(|p| {
                drop(p);
                (clock.now(), w)
            })
        }));
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => admitted.push(a),
            Err(d) => {
                assert!(d.retry_in().is_some());
                refused += 1;
            }
        }
    }
    let (c, w) = max_window(&admitted);
    assert!(
        c <= 10 && w <= 30_000,
        "{c} requests / {w} tokens in one window"
    );
    // 60 s, 120 s, and the start: three windows of capacity within 125 s.
    assert!(
        admitted.len() >= 25,
        "{} admitted, {refused} refused",
        admitted.len()
    );
}
