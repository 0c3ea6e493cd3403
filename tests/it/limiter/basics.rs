//! Limiter behaviour: saturating load against an independent sliding-window oracle (the same
//! check the upstream simulator applies), live headers, 429 back-off, tier presets, permits.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use image_router::catalog::Catalog;
use image_router::clock::{Clock, ManualClock, SystemClock};
use image_router::quota::headers::RateLimitHeaders;
use image_router::quota::limiter::{
    BlockReason, Denied, LimitKind, LimiterConfig, RateLimiter, SHARED_KEY_MARGIN,
};
use image_router::quota::limits::Limits;

const SEC: Duration = Duration::from_secs(1);

fn limiter(rpm: u32, tpm: u64, margin: f64, clock: &ManualClock) -> RateLimiter {
    let limits = Limits::new(Some(rpm), Some(tpm)).unwrap();
    RateLimiter::with_config(
        LimiterConfig::new(limits).margin(margin),
        Arc::new(clock.clone()),
    )
    .unwrap()
}

/// The upstream's check, written independently: admitted iff the count in (t − 60 s, t] + 1 ≤ rpm
/// and the tokens in (t − 60 s, t] + w ≤ tpm.
struct Oracle {
    rpm: u64,
    tpm: u64,
    log: VecDeque<(Duration, u64)>,
    admitted_requests: u64,
    admitted_tokens: u64,
}

impl Oracle {
    fn new(rpm: u64, tpm: u64) -> Self {
        Self {
            rpm,
            tpm,
            log: VecDeque::new(),
            admitted_requests: 0,
            admitted_tokens: 0,
        }
    }
    fn try_admit(&mut self, t: Duration, w: u64) -> bool {
        while self
            .log
            .front()
            .is_some_and(|(at, _)| *at + Duration::from_secs(60) <= t)
        {
            self.log.pop_front();
        }
        let count = self.log.len() as u64;
        let tokens: u64 = self.log.iter().map(|(_, w)| w).sum();
        if count < self.rpm && tokens + w <= self.tpm {
            self.log.push_back((t, w));
            self.admitted_requests += 1;
            self.admitted_tokens += w;
            true
        } else {
            false
        }
    }
}

/// Ten simulated minutes, `attempts` tries per simulated second, each admitted request sent to
/// the oracle upstream. Returns (upstream rejections, oracle).
fn saturate(
    lim: &RateLimiter,
    clock: &ManualClock,
    oracle: &mut Oracle,
    attempts_per_sec: u32,
    mut weight: impl FnMut(u64) -> u64,
) -> u64 {
    let step = SEC / attempts_per_sec;
    let mut rejections = 0;
    let mut i = 0u64;
    let end = clock.now() + Duration::from_secs(600);
    while clock.now() < end {
        let w = weight(i);
        i += 1;
        if let Ok(p) = lim.try_acquire(w) {
            if !oracle.try_admit(clock.now(), w) {
                rejections += 1;
            }
            p.reconcile(w);
        }
        clock.advance(step);
    }
    rejections
}

#[test]
fn ten_minutes_saturating_load_zero_429s_and_full_utilisation() {
    // guide-tier-2 requests per minute with a TPM that exactly matches high 1024x1024 images: both
    // limits bind at once.
    let clock = ManualClock::new();
    let lim = limiter(15, 15 * 4160, 1.0, &clock);
    let mut up = Oracle::new(15, 15 * 4160);
    let rejections = saturate(&lim, &clock, &mut up, 20, |_| 4160);
    assert_eq!(rejections, 0);
    let allowed_requests = 10 * 15;
    let allowed_tokens = 10 * 15 * 4160;
    assert!(
        up.admitted_requests * 100 >= allowed_requests * 97,
        "{}",
        up.admitted_requests
    );
    assert!(
        up.admitted_tokens * 100 >= allowed_tokens * 97,
        "{}",
        up.admitted_tokens
    );
}

#[test]
fn mixed_weights_saturate_the_binding_limit() {
    // Mixed qualities (low/medium/high) against guide-tier-1-like limits where TPM binds.
    let clock = ManualClock::new();
    let (rpm, tpm) = (60u32, 100_000u64);
    let lim = limiter(rpm, tpm, 1.0, &clock);
    let mut up = Oracle::new(u64::from(rpm), tpm);
    let weights = [272u64, 1056, 4160, 408, 6240, 1568];
    let rejections = saturate(&lim, &clock, &mut up, 50, |i| weights[(i % 6) as usize]);
    assert_eq!(rejections, 0);
    let allowed_tokens = 10 * tpm;
    assert!(
        up.admitted_tokens * 100 >= allowed_tokens * 97,
        "{}",
        up.admitted_tokens
    );
}

#[test]
fn margin_point_nine_never_trips_the_upstream() {
    let clock = ManualClock::new();
    let lim = limiter(25, 1_000_000, 0.9, &clock);
    let mut up = Oracle::new(25, 1_000_000);
    let rejections = saturate(&lim, &clock, &mut up, 30, |i| {
        [4160, 6240, 272][(i % 3) as usize]
    });
    assert_eq!(rejections, 0);
    // floor(25 × 0.9) = 22 per minute.
    assert!(
        up.admitted_requests >= 10 * 22 * 97 / 100,
        "{}",
        up.admitted_requests
    );
    assert!(up.admitted_requests <= 10 * 22 + 22);
}

#[test]
fn overflow_goes_to_the_second_limiter() {
    let clock = ManualClock::new();
    let first = limiter(6, 250_000, 1.0, &clock);
    let second = limiter(15, 500_000, 1.0, &clock);
    let mut up1 = Oracle::new(6, 250_000);
    let mut up2 = Oracle::new(15, 500_000);
    let (mut to_first, mut to_second, mut waited) = (0, 0, 0);
    for _ in 0..600 {
        // One request every 200 ms: far more than the first can take.
        let t = clock.now();
        match first.try_acquire(4160) {
            Ok(p) => {
                assert!(up1.try_admit(t, 4160));
                to_first += 1;
                p.reconcile(4160);
            }
            Err(d) => {
                assert!(matches!(
                    d,
                    Denied::NoRoom {
                        limit: LimitKind::Requests,
                        ..
                    }
                ));
                match second.try_acquire(4160) {
                    Ok(p) => {
                        assert!(up2.try_admit(t, 4160));
                        to_second += 1;
                        drop(p);
                    }
                    Err(_) => waited += 1,
                }
            }
        }
        clock.advance(Duration::from_millis(200));
    }
    // 120 simulated seconds: the first takes 6 per minute, the rest overflows at once.
    assert_eq!(to_first, 12);
    assert_eq!(to_second, 30);
    assert_eq!(to_first + to_second + waited, 600);
}

#[test]
fn retry_in_is_exact() {
    let clock = ManualClock::new();
    let lim = limiter(3, 10_000, 1.0, &clock);
    let _a = lim.try_acquire(5000).unwrap();
    clock.advance(Duration::from_secs(10));
    let _b = lim.try_acquire(4000).unwrap();
    clock.advance(Duration::from_secs(5));
    // Tokens: 9000 used, 2000 asked: the first entry must leave (at t = 60 s).
    let d = lim.try_acquire(2000).unwrap_err();
    assert!(matches!(
        d,
        Denied::NoRoom {
            limit: LimitKind::Tokens,
            limit_value: 10_000,
            ..
        }
    ));
    assert_eq!(d.retry_in(), Some(Duration::from_secs(45)));
    clock.advance(Duration::from_secs(45) - Duration::from_nanos(1));
    assert!(lim.try_acquire(2000).is_err());
    clock.advance(Duration::from_nanos(1));
    let _c = lim.try_acquire(2000).unwrap();
    let _d = lim.try_acquire(1).unwrap();
    // Requests: 3 in the window now (b, c, d); the next one fits when `_b` leaves at t = 70 s.
    let d = lim.try_acquire(1).unwrap_err();
    assert!(matches!(
        d,
        Denied::NoRoom {
            limit: LimitKind::Requests,
            ..
        }
    ));
    assert_eq!(d.retry_in(), Some(Duration::from_secs(10)));
}

#[test]
fn never_fits_says_so() {
    let clock = ManualClock::new();
    let lim = limiter(10, 10_000, 0.9, &clock);
    let d = lim.try_acquire(9_001).unwrap_err();
    assert_eq!(
        d,
        Denied::NeverFits {
            tokens: 9_001,
            effective_tpm: 9_000
        }
    );
    assert!(d.is_permanent());
    assert!(d.to_string().contains("can never fit"), "{d}");
    assert!(lim.try_acquire(9_000).is_ok());
}

#[test]
fn remaining_requests_zero_blocks_for_the_reset() {
    let clock = ManualClock::new();
    let lim = limiter(100, 1_000_000, 0.9, &clock);
    let p = lim.try_acquire(4160).unwrap();
    lim.observe_headers(&RateLimitHeaders {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    p.reconcile(4160);
    for _ in 0..49 {
        let d = lim.try_acquire(100).unwrap_err();
        assert!(
            matches!(
                d,
                Denied::Blocked {
                    reason: BlockReason::RemainingRequestsZero,
                    ..
                }
            ),
            "{d:?}"
        );
        assert!(d.retry_in().unwrap() <= Duration::from_secs(5));
        clock.advance(Duration::from_millis(100));
    }
    clock.advance(Duration::from_millis(99));
    assert!(lim.try_acquire(100).is_err());
    clock.advance(Duration::from_millis(1));
    assert!(lim.try_acquire(100).is_ok());
    assert_eq!(lim.headroom().blocked_until, None);
}

#[test]
fn remaining_tokens_zero_blocks_too_and_azure_without_reset_blocks_briefly() {
    let clock = ManualClock::new();
    let lim = limiter(100, 1_000_000, 0.9, &clock);
    lim.observe_headers(&RateLimitHeaders {
        remaining_tokens: Some(0),
        reset_tokens: Some(Duration::from_millis(1500)),
        ..Default::default()
    });
    let h = lim.headroom();
    assert_eq!(h.fraction, 0.0);
    assert_eq!(h.retry_in, Some(Duration::from_millis(1500)));
    clock.advance(Duration::from_millis(1500));
    assert!(lim.try_acquire(10).is_ok());
    // Azure: only remaining-*, no reset: one second.
    lim.observe_headers(&RateLimitHeaders {
        remaining_requests: Some(0),
        ..Default::default()
    });
    assert!(lim.try_acquire(10).is_err());
    clock.advance(SEC);
    // The held capacity (the server counted the whole limit) still caps it below the limit.
    let h = lim.headroom();
    assert_eq!(h.blocked_until, None);
}

#[test]
fn lower_server_limit_lowers_the_effective_limit() {
    let clock = ManualClock::new();
    let lim = limiter(15, 500_000, 1.0, &clock);
    lim.observe_headers(&RateLimitHeaders {
        limit_requests: Some(5),
        limit_tokens: Some(100_000),
        ..Default::default()
    });
    let h = lim.headroom();
    assert_eq!(h.effective_rpm, Some(5));
    assert_eq!(h.effective_tpm, Some(100_000));
    for _ in 0..5 {
        let _ = lim.try_acquire(10).unwrap();
    }
    assert!(lim.try_acquire(10).is_err());
    // A higher server limit does not raise it above the configured one.
    lim.observe_headers(&RateLimitHeaders {
        limit_requests: Some(50),
        ..Default::default()
    });
    assert_eq!(lim.headroom().effective_rpm, Some(15));
}

#[test]
fn remaining_lower_than_the_log_holds_the_difference_until_reset() {
    let clock = ManualClock::new();
    let lim = limiter(10, 1_000_000, 1.0, &clock);
    let _p = lim.try_acquire(1000).unwrap();
    // The server says 4 remaining of 10: 6 used, we know of 1 → 5 more held for 20 s.
    lim.observe_headers(&RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(4),
        reset_requests: Some(Duration::from_secs(20)),
        ..Default::default()
    });
    assert_eq!(lim.headroom().requests, Some(4));
    for _ in 0..4 {
        let _ = lim.try_acquire(1000).unwrap();
    }
    let d = lim.try_acquire(1000).unwrap_err();
    assert_eq!(d.retry_in(), Some(Duration::from_secs(20)));
    clock.advance(Duration::from_secs(20));
    assert_eq!(lim.headroom().requests, Some(5));
}

#[test]
fn a_429_halves_the_rate_then_recovers_slowly() {
    let clock = ManualClock::new();
    let lim = limiter(100, 10_000_000, 1.0, &clock);
    lim.on_rate_limited(Some(Duration::from_secs(2)));
    let d = lim.try_acquire(1).unwrap_err();
    assert!(matches!(
        d,
        Denied::Blocked {
            reason: BlockReason::RateLimited,
            ..
        }
    ));
    assert_eq!(d.retry_in(), Some(Duration::from_secs(2)));
    clock.advance(Duration::from_secs(2));
    assert_eq!(lim.headroom().effective_rpm, Some(50));
    // Repeated 429s: never below 10 %.
    for _ in 0..10 {
        lim.on_rate_limited(None);
    }
    assert_eq!(lim.headroom().effective_rpm, Some(10));
    assert!(
        lim.try_acquire(1).is_ok(),
        "no retry-after: no block, just a lower rate"
    );
    // +10 % of the limit per minute without 429s.
    clock.advance(Duration::from_secs(60));
    assert_eq!(lim.headroom().effective_rpm, Some(20));
    clock.advance(Duration::from_secs(30));
    assert_eq!(lim.headroom().effective_rpm, Some(25));
    clock.advance(Duration::from_secs(600));
    assert_eq!(lim.headroom().effective_rpm, Some(100));
    assert_eq!(lim.headroom().backoff_factor, 1.0);
}

#[test]
fn tier_presets() {
    let cat = Catalog::builtin();
    let clock = ManualClock::new();
    // free: refused, and the error names the next tier's requirement.
    let free = RateLimiter::new(
        Limits::from_tier(cat, "free").unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let d = free.try_acquire(100).unwrap_err();
    assert!(matches!(d, Denied::NoAccess(_)));
    assert!(d.is_permanent());
    let msg = d.to_string();
    assert!(msg.contains("free") && msg.contains("tier-1"), "{msg}");
    assert!(msg.contains("$5 paid to the API"), "{msg}");
    assert_eq!(free.headroom().fraction, 0.0);
    assert!(free.headroom().no_access);
    // guide-tier-2 → 15 / 500000.
    let l = Limits::from_tier(cat, "guide-tier-2").unwrap();
    assert_eq!((l.rpm, l.tpm), (Some(15), Some(500_000)));
    let t2 = RateLimiter::with_config(LimiterConfig::new(l).margin(1.0), Arc::new(clock.clone()))
        .unwrap();
    assert_eq!(t2.headroom().effective_rpm, Some(15));
    assert_eq!(t2.headroom().effective_tpm, Some(500_000));
    // Explicit override.
    let l = Limits::resolve(cat, Some("guide-tier-2"), Some(20), None).unwrap();
    assert_eq!((l.rpm, l.tpm), (Some(20), Some(500_000)));
    // OpenAI's usage tier 2 (gpt-image-1 by default): 250k tokens, 20 images, no RPM.
    let l = Limits::from_tier(cat, "tier-2").unwrap();
    assert_eq!((l.rpm, l.tpm, l.ipm), (None, Some(250_000), Some(20)));
    // Default margin 1: the whole limit.
    let t2 = RateLimiter::new(
        Limits::from_tier(cat, "guide-tier-2").unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(t2.headroom().effective_rpm, Some(15));
    // A shared key without headers keeps the 0.9 margin: floor(15 × 0.9) = 13.
    let t2 = RateLimiter::with_config(
        LimiterConfig::new(Limits::from_tier(cat, "guide-tier-2").unwrap())
            .shared(true)
            .margin(SHARED_KEY_MARGIN),
        Arc::new(clock),
    )
    .unwrap();
    assert_eq!(t2.headroom().effective_rpm, Some(13));
    // Unknown tier: names it and lists the known ones.
    let e = Limits::from_tier(cat, "tier-9").unwrap_err();
    assert_eq!(e.field, "tier");
    assert!(e.message.contains("tier-9"));
    for known in [
        "free",
        "tier-1",
        "tier-2",
        "tier-3",
        "tier-4",
        "tier-5",
        "guide-tier-1",
        "guide-tier-2",
        "guide-tier-3",
        "guide-enterprise",
    ] {
        assert!(e.message.contains(known), "{e}");
    }
    // Zero / negative explicit limits.
    assert_eq!(
        Limits::resolve(cat, None, Some(0), None).unwrap_err().field,
        "rpm"
    );
    assert_eq!(
        Limits::resolve(cat, None, None, Some(-3))
            .unwrap_err()
            .field,
        "tpm"
    );
}

#[test]
fn bad_tuning_is_a_config_error() {
    let clock: Arc<ManualClock> = Arc::new(ManualClock::new());
    for (m, ok) in [
        (0.0, false),
        (1.0, true),
        (1.01, false),
        (f64::NAN, false),
        (0.5, true),
    ] {
        let r = RateLimiter::with_config(
            LimiterConfig::new(Limits::UNLIMITED).margin(m),
            clock.clone(),
        );
        assert_eq!(r.is_ok(), ok, "margin {m}");
        if let Err(e) = r {
            assert_eq!(e.field, "margin");
        }
    }
}

#[test]
fn reconcile_and_cancel_adjust_the_log() {
    let clock = ManualClock::new();
    let lim = limiter(10, 10_000, 1.0, &clock);
    let p = lim.try_acquire(8000).unwrap();
    assert!(lim.try_acquire(3000).is_err());
    p.reconcile(5000);
    assert_eq!(lim.headroom().tokens, Some(5000));
    let q = lim.try_acquire(3000).unwrap();
    // Charging more than the estimate.
    q.reconcile(4000);
    assert_eq!(lim.headroom().tokens, Some(1000));
    let r = lim.try_acquire(1000).unwrap();
    assert_eq!(lim.headroom().requests, Some(7));
    r.cancel();
    assert_eq!(lim.headroom().requests, Some(8));
    assert_eq!(lim.headroom().tokens, Some(1000));
    // Dropping keeps the estimate charged.
    drop(lim.try_acquire(500).unwrap());
    assert_eq!(lim.headroom().tokens, Some(500));
    // After the window, reconcile is harmless.
    let s = lim.try_acquire(100).unwrap();
    clock.advance(Duration::from_secs(60));
    s.reconcile(9_999);
    assert_eq!(lim.headroom().tokens, Some(10_000));
}

#[test]
fn set_limits_keeps_the_log() {
    let clock = ManualClock::new();
    let lim = limiter(10, 10_000, 1.0, &clock);
    for _ in 0..4 {
        let _ = lim.try_acquire(1000).unwrap();
    }
    lim.set_limits(Limits::new(Some(4), None).unwrap()).unwrap();
    assert!(lim.try_acquire(1).is_err());
    assert_eq!(lim.headroom().effective_tpm, None);
    let mut zero = Limits::UNLIMITED;
    zero.rpm = Some(0);
    assert_eq!(lim.set_limits(zero).unwrap_err().field, "rpm");
}

#[tokio::test(start_paused = true)]
async fn acquire_waits_exactly_until_room_and_never_past_max_wait() {
    let clock = Arc::new(SystemClock::new());
    let lim = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(Some(2), None).unwrap()).margin(1.0),
        clock.clone(),
    )
    .unwrap();
    let _a = lim.acquire(1, Duration::ZERO).await.unwrap();
    tokio::time::advance(Duration::from_secs(20)).await;
    let _b = lim.acquire(1, Duration::ZERO).await.unwrap();
    // Room appears at t = 60 s, 40 s from now: a 10-s budget is refused at once.
    let start = clock.now();
    let d = lim.acquire(1, Duration::from_secs(10)).await.unwrap_err();
    assert_eq!(d.retry_in(), Some(Duration::from_secs(40)));
    assert_eq!(clock.now(), start, "did not sleep");
    // A 60-s budget waits the 40 s.
    let _c = lim.acquire(1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(clock.now() - start, Duration::from_secs(40));
    // Permanent denials return at once.
    let never = RateLimiter::new(Limits::new(None, Some(10)).unwrap(), clock.clone()).unwrap();
    assert!(matches!(
        never.acquire(100, Duration::from_secs(3600)).await,
        Err(Denied::NeverFits { .. })
    ));
}

#[test]
fn limiter_is_send_sync_and_shared() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RateLimiter>();
    assert_send_sync::<image_router::quota::limiter::Permit>();
    let clock = ManualClock::new();
    let lim = Arc::new(limiter(1000, 100_000_000, 1.0, &clock));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let lim = lim.clone();
            std::thread::spawn(move || (0..500).filter(|_| lim.try_acquire(10).is_ok()).count())
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(admitted, 1000);
}

#[test]
fn reconcile_with_usage_and_serializable_status() {
    use image_router::Usage;
    let clock = ManualClock::new();
    let lim = limiter(10, 10_000, 1.0, &clock);
    let p = lim.try_acquire(4160).unwrap();
    p.reconcile_usage(&Usage::new(40, 1000).with_total_tokens(1040));
    assert_eq!(lim.headroom().tokens, Some(10_000 - 1040));
    // No usage reported: the estimate stays charged.
    let p = lim.try_acquire(2000).unwrap();
    p.reconcile_usage(&Usage::default());
    assert_eq!(lim.headroom().tokens, Some(10_000 - 1040 - 2000));

    let h = serde_json::to_value(lim.headroom()).unwrap();
    assert_eq!(h["effective_rpm"], 10);
    assert_eq!(h["requests"], 8);
    let d = lim.try_acquire(9000).unwrap_err();
    let j = serde_json::to_value(&d).unwrap();
    assert_eq!(j["kind"], "no_room");
    assert_eq!(j["limit"], "tokens");
    let free = RateLimiter::new(
        Limits::from_tier(Catalog::builtin(), "free").unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    let j = serde_json::to_value(free.try_acquire(1).unwrap_err()).unwrap();
    assert_eq!(j["kind"], "no_access");
    assert_eq!(j["next_tier"]["name"], "tier-1");
}
