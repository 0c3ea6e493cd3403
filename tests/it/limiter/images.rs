//! Images per minute: a request weighs its `n`, the window slides for images as for requests
//! and tokens, a request of more images than the limit never fits, and the in-process store
//! keeps one window per model (headers and 429s go to the window of the answered model).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::support::quota::clock;
use image_router::breaker::{BreakerConfig, CircuitBreaker};
use image_router::budget::{BudgetLedger, WallClock};
use image_router::clock::{Clock, ManualClock, SharedClock};
use image_router::quota::cost::{Cost, CostBasis, PriceUnknown};
use image_router::quota::headers::RateLimitHeaders;
use image_router::quota::limiter::{Denied, LimitKind, LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;
use image_router::store::{
    BudgetSettlement, Demand, InProcessStore, LimitSettings, Settlement, StateStore,
    MAX_MODEL_WINDOWS,
};

const SEC: Duration = Duration::from_secs(1);

fn ipm_limiter(ipm: u32, rpm: Option<u32>, c: &SharedClock) -> RateLimiter {
    let mut limits = Limits::new(rpm, None).unwrap();
    limits = limits.with_ipm(i64::from(ipm)).unwrap();
    RateLimiter::with_config(LimiterConfig::new(limits), c.clone()).unwrap()
}

#[test]
fn a_request_weighs_its_n_images() {
    let (c, shared) = clock();
    let l = ipm_limiter(5, Some(100), &shared);
    let h = l.headroom();
    assert_eq!((h.effective_ipm, h.images), (Some(5), Some(5)));
    let _a = l.try_acquire_images(4, 100).unwrap();
    assert_eq!(l.headroom().images, Some(1));
    // Two more images do not fit; one does.
    let d = l.try_acquire_images(2, 100).unwrap_err();
    match d {
        Denied::NoRoom {
            limit,
            limit_value,
            retry_in,
        } => {
            assert_eq!(limit, LimitKind::Images);
            assert_eq!(limit_value, 5);
            // The 4 images leave exactly 60 s after they were admitted.
            assert_eq!(retry_in, Duration::from_secs(60));
        }
        other => panic!("{other:?}"),
    }
    assert!(d.to_string().contains("images per minute"), "{d}");
    let _b = l.try_acquire_images(1, 100).unwrap();
    assert_eq!(l.headroom().images, Some(0));
    assert_eq!(l.headroom().fraction, 0.0);
    // The requests dimension counted two requests, not five.
    assert_eq!(l.headroom().requests, Some(98));
    c.advance(Duration::from_secs(60));
    assert_eq!(l.headroom().images, Some(5));
}

#[test]
fn the_images_window_slides_and_the_retry_time_is_exact() {
    let (c, shared) = clock();
    let l = ipm_limiter(5, None, &shared);
    // t = 0: 2 images, t = 10: 2 images, t = 20: 1 image. Full.
    let _a = l.try_acquire_images(2, 1).unwrap();
    c.advance(Duration::from_secs(10));
    let _b = l.try_acquire_images(2, 1).unwrap();
    c.advance(Duration::from_secs(10));
    let _c = l.try_acquire_images(1, 1).unwrap();
    // t = 30: a request of 3 fits when both t = 0 and t = 10 left: at t = 70, 40 s from now.
    c.advance(Duration::from_secs(10));
    assert_eq!(
        l.try_acquire_images(3, 1).unwrap_err().retry_in(),
        Some(Duration::from_secs(40))
    );
    // A request of 2 fits at t = 60 (the first entry leaves).
    assert_eq!(
        l.try_acquire_images(2, 1).unwrap_err().retry_in(),
        Some(Duration::from_secs(30))
    );
    c.advance(Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(l.try_acquire_images(2, 1).is_err());
    c.advance(Duration::from_nanos(1));
    assert!(l.try_acquire_images(2, 1).is_ok());
    // Cancelling gives the images back.
    let p = l.try_acquire_images(1, 1);
    assert!(p.is_err(), "full again");
    c.advance(Duration::from_secs(10));
    let p = l.try_acquire_images(2, 1).unwrap();
    assert_eq!(l.headroom().images, Some(0));
    p.cancel();
    assert_eq!(l.headroom().images, Some(2));
}

#[test]
fn more_images_than_the_limit_never_fit() {
    let (_c, shared) = clock();
    let l = ipm_limiter(5, None, &shared);
    let d = l.try_acquire_images(6, 1).unwrap_err();
    assert_eq!(
        d,
        Denied::NeverFitsImages {
            images: 6,
            effective_ipm: 5
        }
    );
    assert!(d.is_permanent());
    assert!(d.to_string().contains("6 images can never fit"), "{d}");
    // Exactly the limit fits, into an empty window.
    assert!(l.try_acquire_images(5, 1).is_ok());
    // A margin lowers the ceiling: floor(5 × 0.5) = 2.
    let limits = Limits::UNLIMITED.with_ipm(5).unwrap();
    let l = RateLimiter::with_config(LimiterConfig::new(limits).margin(0.5), shared).unwrap();
    assert!(matches!(
        l.try_acquire_images(3, 1).unwrap_err(),
        Denied::NeverFitsImages {
            images: 3,
            effective_ipm: 2
        }
    ));
}

#[test]
fn a_zero_ipm_is_an_error_naming_the_field() {
    let (_c, shared) = clock();
    let mut limits = Limits::UNLIMITED;
    limits.ipm = Some(0);
    let e = RateLimiter::with_config(LimiterConfig::new(limits), shared).unwrap_err();
    assert_eq!(e.field, "ipm");
    assert_eq!(Limits::UNLIMITED.with_ipm(0).unwrap_err().field, "ipm");
}

/// Saturation on the images dimension with mixed `n`: a queue of requests of 1, 2, 4, 1, 2,
/// 4, … images; the head goes as soon as it fits, and while it waits a smaller request takes
/// the room that is free (a saturating load always has one). Never more than the limit in any
/// 60 s, and at least 97 % of the limit used over ten minutes.
#[test]
fn saturating_with_mixed_n_uses_every_image_and_never_more() {
    let (c, shared) = clock();
    let l = ipm_limiter(5, None, &shared);
    let ns = [1u32, 2, 4];
    let mut admitted: Vec<(Duration, u32)> = Vec::new();
    let start = c.now();
    let mut head = 0usize;
    for _tick in 0..(600 * 4) {
        loop {
            let n = ns[head % ns.len()];
            if let Ok(p) = l.try_acquire_images(n, 10) {
                drop(p);
                admitted.push((c.now() - start, n));
                head += 1;
                continue;
            }
            let filler = ns.iter().rev().filter(|&&m| m < n).find_map(|&m| {
                l.try_acquire_images(m, 10).ok().map(|p| {
                    drop(p);
                    m
                })
            });
            match filler {
                Some(m) => admitted.push((c.now() - start, m)),
                None => break,
            }
        }
        c.advance(Duration::from_millis(250));
    }
    for &(t, _) in &admitted {
        let in_window: u32 = admitted
            .iter()
            .filter(|&&(s, _)| s <= t && s + Duration::from_secs(60) > t)
            .map(|&(_, n)| n)
            .sum();
        assert!(
            in_window <= 5,
            "{in_window} images in the window up to {t:?}"
        );
    }
    let total: u32 = admitted.iter().map(|&(_, n)| n).sum();
    assert!(f64::from(total) >= 0.97 * 50.0, "{total} images of 50");
    assert!(total <= 50, "{total}");
    for n in ns {
        assert!(admitted.iter().any(|&(_, m)| m == n), "no request of {n}");
    }
}

// --- The store: one window per model ---------------------------------------------------

fn store(limits: LimitSettings) -> (ManualClock, InProcessStore) {
    let (c, shared) = clock();
    let wall = WallClock::new(SystemTime::now(), shared.clone());
    let ledger = BudgetLedger::new("p", vec![], wall.clone()).unwrap();
    let router = BudgetLedger::new("router", vec![], wall).unwrap();
    let breaker = CircuitBreaker::new(BreakerConfig::default(), shared.clone());
    let store = InProcessStore::new(limits, shared, ledger, router, breaker).unwrap();
    (c, store)
}

fn free() -> Result<Cost, PriceUnknown> {
    Ok(Cost {
        usd: 0.0,
        basis: CostBasis::PerImage,
    })
}

fn settle<'a>(model: &'a str, headers: Option<&'a RateLimitHeaders>) -> Settlement<'a> {
    Settlement {
        refund_rate_limit: false,
        usage: None,
        budget: BudgetSettlement::Commit(0.0),
        model,
        headers,
        rate_limited: None,
    }
}

fn per_model(rpm: u32, ipm: u32) -> LimitSettings {
    let mut l = LimitSettings::new(None, Some(rpm), None);
    l.ipm = Some(ipm);
    l
}

#[tokio::test]
async fn each_model_has_its_own_window() {
    let (_c, store) = store(per_model(100, 5));
    let a = store
        .admit(Demand::new("gpt-image-1", 5, 10), free())
        .await
        .unwrap();
    store.settle(a, settle("gpt-image-1", None)).await.unwrap();
    // gpt-image-1 is full; gpt-image-1-mini is untouched.
    assert!(matches!(
        store.admit(Demand::new("gpt-image-1", 1, 10), free()).await,
        Err(image_router::store::Refusal::RateLimit(Denied::NoRoom {
            limit: LimitKind::Images,
            ..
        }))
    ));
    assert_eq!(store.headroom("gpt-image-1").images, Some(0));
    assert_eq!(store.headroom("gpt-image-1-mini").images, Some(5));
    let b = store
        .admit(Demand::new("gpt-image-1-mini", 4, 10), free())
        .await
        .unwrap();
    store
        .settle(b, settle("gpt-image-1-mini", None))
        .await
        .unwrap();
    assert!(store
        .rate_limit_check(Demand::new("gpt-image-1-mini", 2, 10))
        .is_err());
    assert!(store
        .rate_limit_check(Demand::new("gpt-image-1-mini", 1, 10))
        .is_ok());
    // Status lists both windows.
    let windows = store.windows();
    let names: Vec<&str> = windows.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["gpt-image-1", "gpt-image-1-mini"]);
    assert_eq!(windows[0].1.images, Some(0));
    assert_eq!(windows[1].1.images, Some(1));
}

#[tokio::test]
async fn headers_and_429s_apply_to_the_answered_models_window() {
    let (c, store) = store(per_model(10, 100));
    // gpt-image-1's answer says 3 requests remain of 10 while we sent 1: 6 are others'.
    let a = store
        .admit(Demand::new("gpt-image-1", 1, 10), free())
        .await
        .unwrap();
    let h = RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(3),
        ..Default::default()
    };
    store
        .settle(a, settle("gpt-image-1", Some(&h)))
        .await
        .unwrap();
    assert_eq!(store.headroom("gpt-image-1").requests, Some(3));
    assert_eq!(store.headroom("gpt-image-1-mini").requests, Some(10));
    // A 429 on the mini blocks the mini only.
    let b = store
        .admit(Demand::new("gpt-image-1-mini", 1, 10), free())
        .await
        .unwrap();
    let mut s = settle("gpt-image-1-mini", None);
    s.refund_rate_limit = true;
    s.budget = BudgetSettlement::Release;
    s.rate_limited = Some(Duration::from_secs(5));
    store.settle(b, s).await.unwrap();
    assert!(matches!(
        store.rate_limit_check(Demand::new("gpt-image-1-mini", 1, 1)),
        Err(Denied::Blocked { .. })
    ));
    assert!(store
        .rate_limit_check(Demand::new("gpt-image-1", 1, 1))
        .is_ok());
    // A probe's headers go to the probed model.
    store
        .observe(
            "gpt-image-1",
            &RateLimitHeaders {
                remaining_requests: Some(0),
                reset_requests: Some(2 * SEC),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(store.headroom("gpt-image-1").retry_in.is_some());
    c.advance(5 * SEC);
    assert!(store
        .rate_limit_check(Demand::new("gpt-image-1-mini", 1, 1))
        .is_ok());
}

#[tokio::test]
async fn an_answer_in_flight_is_not_mistaken_for_room() {
    // 10 RPM. We admit 4 requests; the first answer comes back while the other 3 are still
    // on their way, and the provider counted only the first (plus 2 of another client).
    let (_c, store) = store(per_model(10, 100));
    let mut admitted = Vec::new();
    for _ in 0..4 {
        admitted.push(
            store
                .admit(Demand::new("gpt-image-1", 1, 10), free())
                .await
                .unwrap(),
        );
    }
    let h = RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(7), // 3 used: ours (1) + 2 others
        ..Default::default()
    };
    let first = admitted.remove(0);
    store
        .settle(first, settle("gpt-image-1", Some(&h)))
        .await
        .unwrap();
    // 4 ours + 2 others' = 6 used: 4 left. (Counting all 4 of ours as seen by the provider
    // would have held nothing for the other client and left 6.)
    assert_eq!(store.headroom("gpt-image-1").requests, Some(4));
    for a in admitted {
        store.settle(a, settle("gpt-image-1", None)).await.unwrap();
    }
}

#[tokio::test]
async fn model_windows_are_bounded() {
    let (c, store) = store(per_model(10, 100));
    // Fill every window slot with a busy window.
    for i in 0..MAX_MODEL_WINDOWS {
        let m = format!("model-{i}");
        let a = store.admit(Demand::new(&m, 1, 1), free()).await.unwrap();
        store.settle(a, settle(&m, None)).await.unwrap();
    }
    // One more model: refused by the store, not grown.
    let r = store.admit(Demand::new("one-too-many", 1, 1), free()).await;
    assert!(
        matches!(r, Err(image_router::store::Refusal::Store(ref e)) if e.message.contains("model windows")),
        "{r:?}"
    );
    assert_eq!(store.windows().len(), MAX_MODEL_WINDOWS);
    assert_eq!(store.headroom("one-too-many").fraction, 0.0);
    // Once the windows are idle (their minute has passed), they make room.
    c.advance(Duration::from_secs(60));
    let a = store
        .admit(Demand::new("one-too-many", 1, 1), free())
        .await
        .unwrap();
    store.settle(a, settle("one-too-many", None)).await.unwrap();
    assert_eq!(store.windows().len(), 1);
}

#[tokio::test]
async fn explicit_numbers_apply_to_each_model_and_reload_reaches_every_window() {
    let (_c, store) = store(per_model(10, 5));
    for m in ["gpt-image-1", "gpt-image-1-mini"] {
        let h = store.headroom(m);
        assert_eq!(
            (h.effective_rpm, h.effective_ipm),
            (Some(10), Some(5)),
            "{m}"
        );
    }
    let a = store
        .admit(Demand::new("gpt-image-1", 2, 1), free())
        .await
        .unwrap();
    store.settle(a, settle("gpt-image-1", None)).await.unwrap();
    let config = image_router::store::StoreConfig {
        limits: per_model(20, 8),
        budgets: vec![],
        breaker: BreakerConfig::default(),
    };
    store.reconfigure(&config).unwrap();
    let h = store.headroom("gpt-image-1");
    assert_eq!((h.effective_rpm, h.effective_ipm), (Some(20), Some(8)));
    assert_eq!(h.images, Some(6), "the window's log is kept");
    let h = store.headroom("gpt-image-1-mini");
    assert_eq!((h.effective_rpm, h.effective_ipm), (Some(20), Some(8)));
    // An invalid reload changes nothing.
    let mut bad = per_model(20, 8);
    bad.margin = Some(1.5);
    let e = store
        .reconfigure(&image_router::store::StoreConfig {
            limits: bad,
            budgets: vec![],
            breaker: BreakerConfig::default(),
        })
        .unwrap_err();
    assert_eq!(e.field, "margin");
    assert_eq!(store.headroom("gpt-image-1").effective_ipm, Some(8));
}

#[test]
fn a_shared_key_keeps_its_margin_only_without_remaining_headers() {
    let c = ManualClock::new();
    let shared: SharedClock = Arc::new(c.clone());
    let limits = Limits::new(Some(10), None).unwrap();
    let l = RateLimiter::with_config(LimiterConfig::new(limits).margin(0.9).shared(true), shared)
        .unwrap();
    assert_eq!(l.headroom().effective_rpm, Some(9));
    assert_eq!(l.headroom().margin, 0.9);
    // The provider reports its figures, which agree with our (empty) log: the whole limit.
    l.observe_headers(&RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(10),
        ..Default::default()
    });
    assert_eq!(l.headroom().effective_rpm, Some(10));
    assert_eq!(l.headroom().margin, 1.0);
    // Figures older than a window no longer count: the margin is back.
    c.advance(Duration::from_secs(60));
    assert_eq!(l.headroom().effective_rpm, Some(9));
    // No header reports images: on a shared key the images per minute keep the margin even
    // while the requests' figures are fresh.
    let l = RateLimiter::with_config(
        LimiterConfig::new(
            Limits::new(Some(10), Some(100_000))
                .unwrap()
                .with_ipm(20)
                .unwrap(),
        )
        .margin(0.9)
        .shared(true),
        Arc::new(c.clone()),
    )
    .unwrap();
    l.observe_headers(&RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(10),
        limit_tokens: Some(100_000),
        remaining_tokens: Some(100_000),
        ..Default::default()
    });
    let h = l.headroom();
    assert_eq!(
        (h.effective_rpm, h.effective_tpm, h.effective_ipm),
        (Some(10), Some(100_000), Some(18))
    );
    assert_eq!(l.try_acquire_images(18, 100).map(|p| p.cancel()), Ok(()));
    assert!(l.try_acquire_images(19, 100).is_err());
    // A key not declared shared keeps an explicit margin whatever the headers say.
    let l = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(Some(10), None).unwrap()).margin(0.9),
        Arc::new(c.clone()),
    )
    .unwrap();
    l.observe_headers(&RateLimitHeaders {
        remaining_requests: Some(10),
        ..Default::default()
    });
    assert_eq!(l.headroom().effective_rpm, Some(9));
}

/// The in-process store answers `admit_now` and `settle_now` itself (the router's fast path),
/// with the same answers and the same effect on its window as `admit` and `settle`.
#[tokio::test]
async fn the_synchronous_answers_are_the_async_ones() {
    let (_c1, fast) = store(per_model(3, 100));
    let (_c2, slow) = store(per_model(3, 100));
    let model = "gpt-image-1";
    for i in 0..4 {
        let demand = Demand::new(model, 1, 10);
        let now = fast
            .admit_now(demand, &free())
            .expect("the in-process store answers now");
        let later = slow.admit(demand, free()).await;
        assert_eq!(now.is_ok(), later.is_ok(), "admission {i}");
        match (now, later) {
            (Ok(a), Ok(b)) => {
                let settled = fast.settle_now(a, settle(model, None));
                assert!(matches!(settled, Ok(Ok(()))), "settlement {i}");
                slow.settle(b, settle(model, None)).await.unwrap();
            }
            (Err(x), Err(y)) => {
                assert!(
                    matches!(x, image_router::store::Refusal::RateLimit(_)),
                    "{x:?}"
                );
                assert!(
                    matches!(y, image_router::store::Refusal::RateLimit(_)),
                    "{y:?}"
                );
            }
            _ => unreachable!("compared above"),
        }
        assert_eq!(
            fast.headroom(model).requests,
            slow.headroom(model).requests,
            "after admission {i}"
        );
    }
    assert_eq!(fast.headroom(model).requests, Some(0));
}
