//! Independent audit of issue 3 (quota): token estimates, limiters, live headers, tiers,
//! prices, budgets. Written from the issue, api-facts and the public docs only.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use image_router::budget::{try_reserve_all, BudgetError, WallClock};
use image_router::catalog::{Catalog, Price};
use image_router::clock::{Clock, ManualClock, SharedClock};
use image_router::quota::cost::{tokens_usd, CostBasis, CostEstimator};
use image_router::quota::headers::{parse_go_duration, retry_after};
use image_router::quota::limiter::{Denied, LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;
use image_router::quota::tokens::{estimate, input_image_tokens, text_tokens};
use image_router::{
    budget::Budget, budget::BudgetLedger, budget::BudgetPeriod, quota::headers::RateLimitHeaders,
    EditRequest, GenerateRequest, ImageRequest, InputImage, Quality, Size, Usage,
};
use reqwest::header::{HeaderMap, HeaderValue};

fn clock() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    let shared: SharedClock = Arc::new(c.clone());
    (c, shared)
}

fn limiter(rpm: Option<u32>, tpm: Option<u64>, margin: f64) -> (ManualClock, RateLimiter) {
    let (c, shared) = clock();
    let l = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(rpm, tpm).unwrap()).margin(margin),
        shared,
    )
    .unwrap();
    (c, l)
}

fn gen(quality: Option<Quality>, size: Option<Size>, n: u8) -> ImageRequest {
    let mut g = GenerateRequest::new("abcd").model("gpt-image-1").n(n);
    if let Some(q) = quality {
        g = g.quality(q);
    }
    if let Some(s) = size {
        g = g.size(s);
    }
    g.into()
}

/// A PNG header of `w`×`h` (enough for dimension sniffing).
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(b"IHDR");
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    v
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

// ---------------------------------------------------------------------------------------------
// 1. Token estimates
// ---------------------------------------------------------------------------------------------

#[test]
fn estimate_matches_the_issue_table_for_every_size_and_quality() {
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let table = [
        (Quality::Low, [272, 408, 400]),
        (Quality::Medium, [1056, 1584, 1568]),
        (Quality::High, [4160, 6240, 6208]),
    ];
    let sizes = [Size::SQUARE, Size::PORTRAIT, Size::LANDSCAPE];
    for (q, row) in table {
        for (s, want) in sizes.iter().zip(row) {
            for n in [1u8, 3, 10] {
                let est = estimate(&gen(Some(q), Some(*s), n), m, 999);
                assert_eq!(est.image_output, want * u64::from(n), "{q:?} {s:?} n={n}");
                assert_eq!(est.text_input, 1, "4-char prompt");
                assert_eq!(est.image_input, 0);
                assert_eq!(est.total(), want * u64::from(n) + 1);
            }
        }
    }
    // `auto` and unset resolve to the documented default (high, 1024x1024) on gpt-image-1.
    for (q, s) in [
        (Some(Quality::Auto), Some(Size::Auto)),
        (None, None),
        (Some(Quality::Auto), Some(Size::SQUARE)),
        (Some(Quality::High), Some(Size::Auto)),
    ] {
        assert_eq!(estimate(&gen(q, s, 2), m, 1).image_output, 2 * 4160);
    }
    // Size auto with low quality: low at the default size.
    assert_eq!(
        estimate(&gen(Some(Quality::Low), Some(Size::Auto), 1), m, 1).image_output,
        272
    );
}

#[test]
fn estimate_for_models_without_a_table_uses_the_configurable_fallback() {
    let req = gen(Some(Quality::High), Some(Size::SQUARE), 2);
    // Unknown model: the fallback given.
    assert_eq!(estimate(&req, None, 1234).image_output, 2 * 1234);
    // The catalog's fallback is configurable at runtime.
    let cat = Catalog::builtin()
        .with_overrides(
            "default_output_tokens_per_image = 5000\n[models.\"new-model\"]\nlike = \"dall-e-2\"\n",
            "o.toml",
        )
        .unwrap();
    assert_eq!(cat.default_output_tokens_per_image(), 5000);
    let m = cat.model("new-model").unwrap();
    assert_eq!(m.output_image_tokens(None, None), 5000);
    // A model may declare its own per-image estimate.
    let cat = Catalog::builtin()
        .with_overrides(
            "[models.\"m2\"]\nlike = \"dall-e-2\"\ndefault_output_tokens_per_image = 77\n",
            "o.toml",
        )
        .unwrap();
    assert_eq!(cat.model("m2").unwrap().output_image_tokens(None, None), 77);
}

#[test]
fn text_tokens_are_a_quarter_of_the_characters_rounded_up() {
    assert_eq!(text_tokens(""), 0);
    assert_eq!(text_tokens("a"), 1);
    assert_eq!(text_tokens("abcd"), 1);
    assert_eq!(text_tokens("abcde"), 2);
    // Characters, not bytes.
    assert_eq!(text_tokens("äöüß"), 1);
    let long = "x".repeat(32_000);
    assert_eq!(text_tokens(&long), 8000);
}

#[test]
fn edit_estimates_count_each_input_image() {
    // 65 + 129 per 512 px tile after fit-in-2048 and short side ≤ 768.
    assert_eq!(input_image_tokens(512, 512), 65 + 129);
    assert_eq!(input_image_tokens(1024, 1024), 65 + 4 * 129);
    // 2048x1024 → 1536x768 → 3×2 tiles.
    assert_eq!(input_image_tokens(2048, 1024), 65 + 6 * 129);
    // 4096x8192 → 1024x2048 → 768x1536 → 2×3 tiles.
    assert_eq!(input_image_tokens(4096, 8192), 65 + 6 * 129);
    // Degenerate sizes never panic.
    assert!(input_image_tokens(0, 0) >= 65 + 129);
    assert!(input_image_tokens(u32::MAX, 1) >= 65 + 129);

    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let req: ImageRequest = EditRequest::new(
        "abcdefgh",
        vec![
            InputImage::new(png_header(1024, 1024), "a.png"),
            InputImage::new(png_header(2048, 1024), "b.png"),
        ],
    )
    .model("gpt-image-1")
    .quality(Quality::Low)
    .size(Size::LANDSCAPE)
    .n(2)
    .into();
    let est = estimate(&req, m, 1);
    assert_eq!(est.text_input, 2);
    assert_eq!(est.image_input, (65 + 4 * 129) + (65 + 6 * 129));
    assert_eq!(est.image_output, 2 * 400);

    // JPEG and WebP inputs are measured too (a 1536x1024 photo is 6 tiles, not the 4 of a
    // 1024² guess); an unreadable image is counted at the most an image can cost.
    let edit = |img: Vec<u8>| -> u64 {
        let req: ImageRequest = EditRequest::new("x", vec![InputImage::new(img, "in")])
            .model("gpt-image-1")
            .into();
        estimate(&req, m, 1).image_input
    };
    assert_eq!(edit(jpeg_header(1536, 1024)), 65 + 6 * 129);
    assert_eq!(edit(webp_vp8x(1536, 1024)), 65 + 6 * 129);
    assert_eq!(edit(webp_vp8l(512, 512)), 65 + 129);
    let mut vp8 = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\x10\x02\x00\x9d\x01\x2a".to_vec();
    vp8.extend_from_slice(&2048u16.to_le_bytes());
    vp8.extend_from_slice(&1024u16.to_le_bytes());
    assert_eq!(edit(vp8), 65 + 6 * 129);
    assert_eq!(edit(b"not an image at all".to_vec()), 65 + 8 * 129);
    assert_eq!(edit(vec![0xFF, 0xD8, 0xFF]), 65 + 8 * 129);
    assert_eq!(edit(Vec::new()), 65 + 8 * 129);
}

/// A JPEG with an APP0 segment then a baseline SOF0 frame header.
fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    v.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&[0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    v
}

fn webp_vp8x(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    v.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    v.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    v
}

fn webp_vp8l(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
    let bits = (w - 1) | ((h - 1) << 14);
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v
}

// ---------------------------------------------------------------------------------------------
// 2. Limiter: RPM + TPM, margin, never-fits, sliding window, reconcile
// ---------------------------------------------------------------------------------------------

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
fn safety_margin_defaults_to_90_percent() {
    let (_c, shared) = clock();
    let l = RateLimiter::new(Limits::new(Some(10), Some(100_000)).unwrap(), shared).unwrap();
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

// ---------------------------------------------------------------------------------------------
// 3. Live headers
// ---------------------------------------------------------------------------------------------

#[test]
fn go_durations_parse_as_openai_sends_them() {
    let cases = [
        ("1s", 1_000),
        ("6m0s", 360_000),
        ("20ms", 20),
        ("1m30.5s", 90_500),
        ("2ms", 2),
        ("0s", 0),
        ("59.999s", 59_999),
        ("1h0m0s", 3_600_000),
        ("17.28s", 17_280),
    ];
    for (s, ms) in cases {
        assert_eq!(parse_go_duration(s), Some(Duration::from_millis(ms)), "{s}");
    }
    for bad in ["", "s", "1x", "-1s", "abc", "1.2.3s", "NaNs", "ms"] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
    let h = RateLimitHeaders::from_headers(&headers(&[
        ("x-ratelimit-limit-requests", "15"),
        ("x-ratelimit-limit-tokens", "500000"),
        ("x-ratelimit-remaining-requests", "14"),
        ("x-ratelimit-remaining-tokens", "495840"),
        ("x-ratelimit-reset-requests", "4s"),
        ("x-ratelimit-reset-tokens", "1m30.5s"),
    ]));
    assert_eq!(h.limit_requests, Some(15));
    assert_eq!(h.limit_tokens, Some(500_000));
    assert_eq!(h.remaining_requests, Some(14));
    assert_eq!(h.remaining_tokens, Some(495_840));
    assert_eq!(h.reset_requests, Some(Duration::from_secs(4)));
    assert_eq!(h.reset_tokens, Some(Duration::from_millis(90_500)));
    assert_eq!(h.retry_after, None);
}

#[test]
fn retry_after_headers_in_every_form() {
    let now = SystemTime::now();
    assert_eq!(
        retry_after(&headers(&[("retry-after-ms", "1500")]), now),
        Some(Duration::from_millis(1500))
    );
    // retry-after-ms wins over retry-after.
    assert_eq!(
        retry_after(
            &headers(&[("retry-after-ms", "250"), ("retry-after", "20")]),
            now
        ),
        Some(Duration::from_millis(250))
    );
    assert_eq!(
        retry_after(&headers(&[("x-ms-retry-after-ms", "3000")]), now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        retry_after(&headers(&[("retry-after", "2.5")]), now),
        Some(Duration::from_millis(2500))
    );
    let at = now + Duration::from_secs(30);
    let d = retry_after(
        &headers(&[("retry-after", &httpdate::fmt_http_date(at))]),
        now,
    )
    .unwrap();
    assert!(
        d >= Duration::from_secs(29) && d <= Duration::from_secs(30),
        "{d:?}"
    );
    for bad in ["0", "-3", "soon", "NaN", "inf"] {
        assert_eq!(
            retry_after(&headers(&[("retry-after", bad)]), now),
            None,
            "{bad}"
        );
    }
}

#[test]
fn remaining_zero_with_reset_5s_keeps_the_provider_off_for_5s() {
    let (c, l) = limiter(Some(60), Some(1_000_000), 0.9);
    l.observe_headers(&RateLimitHeaders::from_headers(&headers(&[
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "5s"),
    ])));
    let err = l.try_acquire(10).unwrap_err();
    assert_eq!(err.retry_in(), Some(Duration::from_secs(5)), "{err:?}");
    c.advance(Duration::from_millis(4_999));
    assert!(l.try_acquire(10).is_err());
    c.advance(Duration::from_millis(1));
    assert!(l.try_acquire(10).is_ok(), "{:?}", l.headroom());

    // Tokens: remaining-tokens 0 with reset 20ms.
    let (c, l) = limiter(Some(60), Some(1_000_000), 0.9);
    l.observe_headers(&RateLimitHeaders::from_headers(&headers(&[
        ("x-ratelimit-remaining-tokens", "0"),
        ("x-ratelimit-reset-tokens", "20ms"),
    ])));
    assert!(l.try_acquire(10).is_err());
    c.advance(Duration::from_millis(20));
    assert!(l.try_acquire(10).is_ok());
}

#[test]
fn azure_sends_only_remaining_headers() {
    let (c, l) = limiter(Some(10), Some(100_000), 1.0);
    // Remaining 2 of our configured 10 with nothing sent by us: 8 used elsewhere.
    l.observe_headers(&RateLimitHeaders::from_headers(&headers(&[
        ("x-ratelimit-remaining-requests", "2"),
        ("x-ratelimit-remaining-tokens", "90000"),
        ("apim-request-id", "abc"),
    ])));
    let h = l.headroom();
    assert_eq!(h.requests, Some(2), "{h:?}");
    assert_eq!(h.tokens, Some(90_000), "{h:?}");
    let _a = l.try_acquire(1).unwrap();
    let _b = l.try_acquire(1).unwrap();
    assert!(l.try_acquire(1).is_err());
    // Within a minute the server's count has left its window.
    c.advance(Duration::from_secs(60));
    assert!(l.try_acquire(1).is_ok());

    // remaining 0 without a reset still blocks (briefly), and lifts by itself.
    let (c, l) = limiter(Some(10), None, 1.0);
    l.observe_headers(&RateLimitHeaders::from_headers(&headers(&[(
        "x-ratelimit-remaining-requests",
        "0",
    )])));
    assert!(l.try_acquire(1).is_err());
    c.advance(Duration::from_secs(60));
    assert!(l.try_acquire(1).is_ok());
}

#[test]
fn a_lower_server_limit_lowers_the_limiter_and_a_higher_one_does_not_raise_it() {
    let (_c, l) = limiter(Some(25), Some(1_000_000), 1.0);
    l.observe_headers(&RateLimitHeaders::from_headers(&headers(&[
        ("x-ratelimit-limit-requests", "5"),
        ("x-ratelimit-limit-tokens", "20000"),
        ("x-ratelimit-remaining-requests", "5"),
        ("x-ratelimit-remaining-tokens", "20000"),
    ])));
    let h = l.headroom();
    assert_eq!(h.effective_rpm, Some(5));
    assert_eq!(h.effective_tpm, Some(20_000));
    // A request larger than the server's TPM can never fit.
    assert!(matches!(
        l.try_acquire(20_001).unwrap_err(),
        Denied::NeverFits { .. }
    ));
    let (_c, l) = limiter(Some(5), Some(10_000), 1.0);
    l.observe_headers(&RateLimitHeaders::from_headers(&headers(&[
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-limit-tokens", "9999999"),
    ])));
    assert_eq!(l.headroom().effective_rpm, Some(5));
    assert_eq!(l.headroom().effective_tpm, Some(10_000));
}

#[test]
fn a_real_429_lowers_the_rate_fast_and_it_recovers_slowly() {
    let (c, l) = limiter(Some(20), Some(1_000_000), 1.0);
    l.on_rate_limited(Some(Duration::from_secs(2)));
    let h = l.headroom();
    assert_eq!(h.effective_rpm, Some(10));
    assert!(h.backoff_factor < 1.0);
    // Blocked for retry-after.
    assert_eq!(
        l.try_acquire(1).unwrap_err().retry_in(),
        Some(Duration::from_secs(2))
    );
    c.advance(Duration::from_secs(2));
    assert!(l.try_acquire(1).is_ok());
    // Recovers slowly: after one minute not yet back, after ten minutes fully.
    c.advance(Duration::from_secs(60));
    let rpm = l.headroom().effective_rpm.unwrap();
    assert!((10..20).contains(&rpm), "{rpm}");
    c.advance(Duration::from_secs(600));
    assert_eq!(l.headroom().effective_rpm, Some(20));
    assert_eq!(l.headroom().backoff_factor, 1.0);
    // Repeated 429s keep lowering, but never to zero.
    for _ in 0..20 {
        l.on_rate_limited(None);
    }
    assert!(l.headroom().effective_rpm.unwrap() >= 1);
    assert!(l.try_acquire(1).is_ok());
}

// ---------------------------------------------------------------------------------------------
// 4. Tiers and prices as data
// ---------------------------------------------------------------------------------------------

#[test]
fn tier_presets_match_the_tier_table() {
    let cat = Catalog::builtin();
    for (name, rpm, tpm) in [
        ("tier-1", 6, 250_000),
        ("tier-2", 15, 500_000),
        ("tier-3", 25, 1_000_000),
    ] {
        let t = cat.tier(name).unwrap();
        assert_eq!((t.rpm, t.tpm), (rpm, tpm), "{name}");
        let l = Limits::from_tier(cat, name).unwrap();
        assert_eq!((l.rpm, l.tpm), (Some(rpm), Some(tpm)));
    }
    assert_eq!(cat.tier("tier-1").unwrap().min_spend_usd, Some(5.0));
    assert_eq!(cat.tier("tier-2").unwrap().min_spend_usd, Some(50.0));
    assert_eq!(cat.tier("tier-2").unwrap().min_account_age_days, Some(7));
    assert_eq!(cat.tier("tier-3").unwrap().min_spend_usd, Some(500.0));
    assert_eq!(cat.tier("tier-3").unwrap().min_account_age_days, Some(30));
    assert!(cat.tier("enterprise").unwrap().rpm >= 60);
    let free = cat.tier("free").unwrap();
    assert!(!free.has_access());
    let l = Limits::from_tier(cat, "free").unwrap();
    let na = l.no_access.clone().unwrap();
    let msg = na.to_string();
    assert!(
        msg.contains("free") && msg.contains("tier-1") && msg.contains("$5"),
        "{msg}"
    );
    // A limiter on free refuses everything, permanently, saying why.
    let (_c, shared) = clock();
    let lim = RateLimiter::new(l, shared).unwrap();
    let err = lim.try_acquire(1).unwrap_err();
    assert!(matches!(err, Denied::NoAccess(_)) && err.is_permanent());
    assert!(err.to_string().contains("tier-1"), "{err}");
    // Explicit rpm / tpm override the tier's.
    let l = Limits::resolve(cat, Some("tier-2"), Some(40), None).unwrap();
    assert_eq!((l.rpm, l.tpm), (Some(40), Some(500_000)));
    let l = Limits::resolve(cat, Some("tier-2"), None, Some(7)).unwrap();
    assert_eq!((l.rpm, l.tpm), (Some(15), Some(7)));
    assert_eq!(
        Limits::resolve(cat, Some("tier-2"), Some(0), None)
            .unwrap_err()
            .field,
        "rpm"
    );
    assert!(Limits::resolve(cat, Some("gold"), None, None).is_err());
}

#[test]
fn prices_match_api_facts() {
    let cat = Catalog::builtin();
    match cat.model("gpt-image-1").unwrap().price.clone().unwrap() {
        Price::UsdPer1mTokens {
            text_input,
            image_input,
            image_output,
            cached_text_input,
            cached_image_input,
        } => {
            assert_eq!((text_input, image_input, image_output), (5.0, 10.0, 40.0));
            assert_eq!(cached_text_input, Some(1.25));
            assert_eq!(cached_image_input, Some(2.5));
        }
        other => panic!("{other:?}"),
    }
    match cat
        .model("gpt-image-1-mini")
        .unwrap()
        .price
        .clone()
        .unwrap()
    {
        Price::UsdPer1mTokens {
            text_input,
            image_input,
            image_output,
            ..
        } => assert_eq!((text_input, image_input, image_output), (2.0, 2.5, 8.0)),
        other => panic!("{other:?}"),
    }
    let d3 = cat.model("dall-e-3").unwrap();
    let est = CostEstimator::new();
    for (q, s, usd) in [
        (Quality::Standard, Size::SQUARE, 0.04),
        (Quality::Standard, Size::new(1792, 1024), 0.08),
        (Quality::Standard, Size::new(1024, 1792), 0.08),
        (Quality::Hd, Size::SQUARE, 0.08),
        (Quality::Hd, Size::new(1792, 1024), 0.12),
        (Quality::Hd, Size::new(1024, 1792), 0.12),
    ] {
        let req: ImageRequest = GenerateRequest::new("x")
            .model("dall-e-3")
            .quality(q)
            .size(s)
            .into();
        let e = estimate(&req, Some(d3), 4160);
        let c = est.estimate("dall-e-3", Some(d3), &req, &e).unwrap();
        assert!((c.usd - usd).abs() < 1e-12, "{q:?} {s:?} {}", c.usd);
        assert_eq!(c.basis, CostBasis::PerImage);
        // dall-e answers carry no usage: the per-image price is charged.
        let a = est.actual("dall-e-3", Some(d3), &req, None, &e).unwrap();
        assert!((a.usd - usd).abs() < 1e-12);
    }
    // Default dall-e-3 (standard 1024²).
    let req: ImageRequest = GenerateRequest::new("x").model("dall-e-3").into();
    let e = estimate(&req, Some(d3), 4160);
    assert!((est.estimate("dall-e-3", Some(d3), &req, &e).unwrap().usd - 0.04).abs() < 1e-12);
    // A high 1024x1024 gpt-image-1 image costs about $0.167.
    let p = cat.model("gpt-image-1").unwrap().price.clone().unwrap();
    assert!((tokens_usd(&p, 0, 0, 4160).unwrap() - 0.1664).abs() < 1e-9);
}

#[test]
fn cost_from_usage_uses_the_input_split() {
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let est = CostEstimator::new();
    let req = gen(Some(Quality::High), Some(Size::SQUARE), 1);
    let e = estimate(&req, m, 4160);
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 50,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        "output_tokens": 4160,
        "total_tokens": 4210
    }))
    .unwrap();
    let c = est
        .actual("gpt-image-1", m, &req, Some(&usage), &e)
        .unwrap();
    assert_eq!(c.basis, CostBasis::Usage);
    assert!(
        (c.usd - (50.0 * 5.0 + 4160.0 * 40.0) / 1e6).abs() < 1e-12,
        "{}",
        c.usd
    );

    // Edit: image input tokens at $10 / 1M.
    let edit: ImageRequest =
        EditRequest::new("x", vec![InputImage::new(png_header(1024, 1024), "a.png")])
            .model("gpt-image-1")
            .into();
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 600,
        "input_tokens_details": {"text_tokens": 19, "image_tokens": 581},
        "output_tokens": 272,
        "total_tokens": 872
    }))
    .unwrap();
    let e = estimate(&edit, m, 4160);
    let c = est
        .actual("gpt-image-1", m, &edit, Some(&usage), &e)
        .unwrap();
    assert!(
        (c.usd - (19.0 * 5.0 + 581.0 * 10.0 + 272.0 * 40.0) / 1e6).abs() < 1e-12,
        "{}",
        c.usd
    );

    // gpt-image-1-mini bills from usage at its own prices.
    let mini = cat.model("gpt-image-1-mini");
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 100,
        "input_tokens_details": {"text_tokens": 100, "image_tokens": 0},
        "output_tokens": 1000,
        "total_tokens": 1100
    }))
    .unwrap();
    let c = est
        .actual("gpt-image-1-mini", mini, &req, Some(&usage), &e)
        .unwrap();
    assert!((c.usd - (100.0 * 2.0 + 1000.0 * 8.0) / 1e6).abs() < 1e-12);
}

#[test]
fn a_usage_without_a_token_split_is_not_billed_as_free() {
    // Some proxies report only `total_tokens` (or an all-zero usage): charging $0 would let
    // spending through the budgets unnoticed.
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let est = CostEstimator::new();
    let req = gen(Some(Quality::High), Some(Size::SQUARE), 1);
    let e = estimate(&req, m, 4160);
    let expected = est.estimate("gpt-image-1", m, &req, &e).unwrap().usd;
    for usage in [
        serde_json::json!({"total_tokens": 4161}),
        serde_json::json!({}),
        serde_json::json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}),
    ] {
        let u: Usage = serde_json::from_value(usage.clone()).unwrap();
        let c = est.actual("gpt-image-1", m, &req, Some(&u), &e).unwrap();
        assert!(c.usd >= expected * 0.99, "{usage}: {}", c.usd);
    }
}

#[test]
fn catalog_overrides_add_models_prices_and_tiers_without_code() {
    let text = r#"
default_model = "house-model"

[models."house-model"]
like = "gpt-image-1"
max_n = 2
[models."house-model".price]
unit = "usd_per_1m_tokens"
text_input = 1.0
image_input = 2.0
image_output = 3.0

[models."gpt-image-1".price]
unit = "usd_per_1m_tokens"
image_output = 30.0

[tiers."tier-5"]
rpm = 250
tpm = 8000000
min_spend_usd = 1000
min_account_age_days = 30
requirement = "$1000 spend"

[tiers."tier-2"]
rpm = 20
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("over.toml");
    std::fs::write(&path, text).unwrap();
    let cat = Catalog::builtin().with_override_file(&path).unwrap();
    assert_eq!(cat.default_model(), "house-model");
    let m = cat.model("house-model").unwrap();
    assert_eq!(m.capabilities.max_n, 2);
    // Inherits the token table.
    assert_eq!(
        m.output_image_tokens(Some(Quality::Medium), Some(Size::PORTRAIT)),
        1584
    );
    assert!(matches!(
        m.price,
        Some(Price::UsdPer1mTokens { image_output, .. }) if image_output == 3.0
    ));
    // A partial price override keeps the other fields.
    match cat.model("gpt-image-1").unwrap().price.clone().unwrap() {
        Price::UsdPer1mTokens {
            text_input,
            image_output,
            ..
        } => assert_eq!((text_input, image_output), (5.0, 30.0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(cat.tier("tier-5").unwrap().rpm, 250);
    assert_eq!(cat.tier("tier-2").unwrap().rpm, 20);
    assert_eq!(cat.tier("tier-2").unwrap().tpm, 500_000);
    let l = Limits::from_tier(&cat, "tier-5").unwrap();
    assert_eq!(l.tpm, Some(8_000_000));
    // The builtin catalog is untouched.
    assert_eq!(Catalog::builtin().tier("tier-2").unwrap().rpm, 15);
}

fn override_err(text: &str) -> image_router::ConfigError {
    Catalog::builtin()
        .with_overrides(text, "user.toml")
        .expect_err(text)
}

#[test]
fn bad_override_files_give_errors_naming_entry_and_line() {
    // (text, a word the error must name, the line)
    let cases: &[(&str, &str, usize)] = &[
        // price without a unit
        (
            "\n[models.\"x\"]\nlike = \"gpt-image-1\"\n[models.\"x\".price]\ntext_input = 1.0\n",
            "x",
            4,
        ),
        // unknown unit
        (
            "[models.\"x\"]\nlike = \"gpt-image-1\"\n\n[models.\"x\".price]\nunit = \"eur\"\ntext_input = 1.0\n",
            "x",
            4,
        ),
        // negative tier rpm
        ("[tiers.\"t\"]\n\nrpm = -1\ntpm = 5\n", "t", 3),
        // unknown key
        ("[tiers.\"t\"]\nrpm = 1\ntpm = 5\nrpmm = 3\n", "rpmm", 4),
        // malformed TOML
        ("[models.\"x\"\nlike = 1\n", "", 1),
        // wrong type
        ("\n\n[models.\"gpt-image-1\"]\nmax_n = \"ten\"\n", "", 4),
        // negative price
        (
            "[models.\"gpt-image-1\".price]\nunit = \"usd_per_1m_tokens\"\n\nimage_output = -40.0\n",
            "image_output",
            4,
        ),
        // a token price missing a field on a new model
        (
            "[models.\"x\"]\nlike = \"gpt-image-1\"\n\n[models.\"x\".price]\nunit = \"usd_per_1m_tokens\"\ntext_input = 1.0\n",
            "image_input",
            4,
        ),
        // a new tier without rpm
        ("\n[tiers.\"t9\"]\ntpm = 5\n", "t9", 2),
        // a per-image price with a bad size
        (
            "[models.\"dall-e-3\".price]\nunit = \"usd_per_image\"\nstandard = { \"big\" = 0.1 }\n",
            "big",
            3,
        ),
        // like an unknown model
        ("\n\n[models.\"y\"]\nlike = \"nope\"\n", "nope", 4),
        // a typo in a token price key
        (
            "[models.\"gpt-image-1\".price]\nunit = \"usd_per_1m_tokens\"\ntext_inptu = 5.0\n",
            "text_inptu",
            3,
        ),
        // a tier rpm out of range
        ("[tiers.\"big\"]\ntpm = 5\nrpm = 99999999999\n", "big", 3),
        // a like cycle
        (
            "[models.\"p\"]\nlike = \"q\"\n[models.\"q\"]\nlike = \"p\"\n",
            "like",
            4,
        ),
        // max_n of zero
        ("[models.\"gpt-image-1\"]\n\nmax_n = 0\n", "max_n", 3),
        // an empty default model
        ("# mine\ndefault_model = \"\"\n", "default_model", 2),
        // default tokens of zero
        ("\ndefault_output_tokens_per_image = 0\n", "default_output_tokens_per_image", 2),
    ];
    for (text, word, line) in cases {
        let e = override_err(text);
        let full = format!("{} {}", e.field, e.message);
        assert!(full.contains(word), "{text:?}: {e}");
        assert!(
            e.to_string().contains("user.toml") || e.field.contains("user.toml"),
            "{text:?}: {e}"
        );
        assert_eq!(e.line, Some(*line), "{text:?}: {e}");
    }
    // A file that cannot be read names the path.
    let e = Catalog::builtin()
        .with_override_file("/nonexistent/over.toml")
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/over.toml"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// 5. Budgets
// ---------------------------------------------------------------------------------------------

fn wall_at(unix_secs: u64) -> (ManualClock, WallClock) {
    let (c, shared) = clock();
    (
        c,
        WallClock::new(UNIX_EPOCH + Duration::from_secs(unix_secs), shared),
    )
}

// 2026-11-28 23:59:00 UTC
const NOV28_2359: u64 = 1_795_910_340;

#[test]
fn day_budgets_reset_at_utc_midnight() {
    let (c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    l.try_reserve(0.6).unwrap().commit(0.6);
    let err = l.try_reserve(0.5).unwrap_err();
    match &err {
        BudgetError::Exhausted(e) => {
            assert_eq!(e.ledger, "p");
            assert_eq!(e.resets_in, Duration::from_secs(60));
            assert_eq!(e.resets_at_unix, NOV28_2359 + 60);
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("`p`") && msg.contains("day") && msg.contains("29 Nov 2026 00:00:00"),
        "{msg}"
    );
    c.advance(Duration::from_secs(59));
    assert!(l.try_reserve(0.5).is_err());
    c.advance(Duration::from_secs(1));
    l.try_reserve(0.5).unwrap().commit(0.5);
    let s = l.snapshot();
    assert!((s.budgets[0].spent_usd - 0.5).abs() < 1e-9);
    assert!((s.lifetime_spent_usd - 1.1).abs() < 1e-9);
    assert_eq!(s.committed, 2);
}

#[test]
fn month_budgets_reset_on_the_first_utc() {
    // 2028-02-28 12:00 UTC (leap year): resets at 2028-03-01 00:00.
    let feb28_2028 = 1_835_352_000u64;
    let (c, wall) = wall_at(feb28_2028);
    let l = BudgetLedger::new(
        "r",
        vec![Budget::new(2.0, BudgetPeriod::Month).unwrap()],
        wall,
    )
    .unwrap();
    l.try_reserve(2.0).unwrap().commit(2.0);
    let BudgetError::Exhausted(e) = l.try_reserve(0.01).unwrap_err() else {
        panic!()
    };
    let mar1_2028 = 1_835_481_600u64;
    assert_eq!(e.resets_at_unix, mar1_2028);
    // Through the 29th: still exhausted.
    c.advance(Duration::from_secs(mar1_2028 - feb28_2028 - 1));
    assert!(l.try_reserve(0.01).is_err());
    c.advance(Duration::from_secs(1));
    assert!(l.try_reserve(0.01).is_ok());
    // December → January rolls the year.
    let dec31_2026_2300 = 1_798_758_000u64;
    let (c, wall) = wall_at(dec31_2026_2300);
    let l = BudgetLedger::new(
        "r",
        vec![Budget::new(1.0, BudgetPeriod::Month).unwrap()],
        wall,
    )
    .unwrap();
    l.try_reserve(1.0).unwrap().commit(1.0);
    let BudgetError::Exhausted(e) = l.try_reserve(0.5).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.resets_at_unix, dec31_2026_2300 + 3600);
    c.advance(Duration::from_secs(3600));
    assert!(l.try_reserve(0.5).is_ok());
}

#[test]
fn custom_windows_and_several_budgets() {
    let (c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![
            Budget::new(0.5, BudgetPeriod::Custom(Duration::from_secs(3600))).unwrap(),
            Budget::new(1.0, BudgetPeriod::Month).unwrap(),
        ],
        wall,
    )
    .unwrap();
    l.try_reserve(0.5).unwrap().commit(0.5);
    let BudgetError::Exhausted(e) = l.try_reserve(0.1).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.period, BudgetPeriod::Custom(Duration::from_secs(3600)));
    c.advance(Duration::from_secs(3600));
    l.try_reserve(0.5).unwrap().commit(0.5);
    c.advance(Duration::from_secs(3600));
    // The hourly window has room, the month does not.
    let BudgetError::Exhausted(e) = l.try_reserve(0.1).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.period, BudgetPeriod::Month);
    // Bad budgets.
    assert_eq!(
        Budget::new(0.0, BudgetPeriod::Day).unwrap_err().field,
        "limit_usd"
    );
    assert_eq!(
        Budget::new(f64::NAN, BudgetPeriod::Day).unwrap_err().field,
        "limit_usd"
    );
    assert_eq!(
        Budget::new(1.0, BudgetPeriod::Custom(Duration::ZERO))
            .unwrap_err()
            .field,
        "period"
    );
    assert!(matches!(
        l.try_reserve(-1.0).unwrap_err(),
        BudgetError::InvalidAmount { .. }
    ));
    assert!(matches!(
        l.try_reserve(f64::NAN).unwrap_err(),
        BudgetError::InvalidAmount { .. }
    ));
}

#[test]
fn a_request_costing_more_than_the_whole_budget_says_it_can_never_fit() {
    let (_c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![Budget::new(0.1, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    let BudgetError::Exhausted(e) = l.try_reserve(0.1664).unwrap_err() else {
        panic!()
    };
    assert!(e.never_fits());
    let msg = e.to_string();
    assert!(msg.contains("never") && msg.contains("`p`"), "{msg}");
    // Exactly the limit fits.
    l.try_reserve(0.1).unwrap().commit(0.1);
    let BudgetError::Exhausted(e) = l.try_reserve(0.01).unwrap_err() else {
        panic!()
    };
    assert!(!e.never_fits());
    assert!(e.to_string().contains("resets"), "{e}");
}

#[test]
fn reservations_released_or_dropped_give_the_money_back() {
    let (_c, wall) = wall_at(NOV28_2359);
    let p = BudgetLedger::new(
        "p",
        vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()],
        wall.clone(),
    )
    .unwrap();
    let r = BudgetLedger::new(
        "router",
        vec![Budget::new(0.3, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    let a = try_reserve_all(&[&p, &r], 0.2).unwrap();
    // The router budget refuses: nothing stays reserved on the provider.
    let err = try_reserve_all(&[&p, &r], 0.2).unwrap_err();
    assert!(err.to_string().contains("router"), "{err}");
    assert!((p.snapshot().reserved_usd - 0.2).abs() < 1e-9);
    drop(a);
    assert_eq!(p.snapshot().reserved_usd, 0.0);
    assert_eq!(r.snapshot().reserved_usd, 0.0);
    assert_eq!(p.snapshot().lifetime_spent_usd, 0.0);
    let b = try_reserve_all(&[&p, &r], 0.3).unwrap();
    b.release();
    assert_eq!(r.snapshot().budgets[0].remaining_usd, 0.3);
}

#[test]
fn concurrent_reservations_never_overspend() {
    let (_c, wall) = wall_at(NOV28_2359);
    let l = BudgetLedger::new(
        "p",
        vec![Budget::new(1.0, BudgetPeriod::Day).unwrap()],
        wall,
    )
    .unwrap();
    let per = 0.16665; // high 1024² gpt-image-1 with a short prompt
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            let l = l.clone();
            std::thread::spawn(move || match l.try_reserve(per) {
                Ok(r) => {
                    // Some requests fail after reserving.
                    if i % 7 == 0 {
                        r.release();
                        0.0
                    } else {
                        let actual = per * 0.99;
                        r.commit(actual);
                        actual
                    }
                }
                Err(_) => 0.0,
            })
        })
        .collect();
    let total: f64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let s = l.snapshot();
    assert!(s.budgets[0].spent_usd <= 1.0 + 1e-9, "{s:?}");
    assert!(
        (s.lifetime_spent_usd - total).abs() < 1e-6,
        "{} vs {total}",
        s.lifetime_spent_usd
    );
    assert_eq!(s.reserved_usd, 0.0);
    assert!(s.committed >= 5, "{s:?}");
}

#[allow(dead_code)]
fn _clock_is_object_safe(c: &dyn Clock) -> Duration {
    c.now()
}

// ---------------------------------------------------------------------------------------------
// 6. End to end: the router on the simulator and on wiremock
// ---------------------------------------------------------------------------------------------

mod router_level {
    use super::*;
    use image_router::sim::{SimAccount, Simulator};
    use image_router::ProviderOptions;
    use image_router::{providers::OpenAi, Error, Router, SkipReason};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn key() -> String {
        format!("{}-{}", "sk", "audit-quota")
    }

    fn openai(base: String, name: &str) -> OpenAi {
        OpenAi::builder()
            .api_key(key())
            .base_url(base)
            .name(name)
            .build()
            .unwrap()
    }

    fn high(n: u8) -> GenerateRequest {
        GenerateRequest::new("a lighthouse at dusk")
            .model("gpt-image-1")
            .quality(Quality::High)
            .size(Size::SQUARE)
            .n(n)
    }

    fn low() -> GenerateRequest {
        GenerateRequest::new("a fox")
            .model("gpt-image-1")
            .quality(Quality::Low)
            .size(Size::SQUARE)
    }

    async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("request did not finish in 20 s")
    }

    fn b64_png() -> String {
        // 1x1 transparent PNG.
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==".to_string()
    }

    fn ok_body() -> serde_json::Value {
        serde_json::json!({
            "created": 1_700_000_000,
            "data": [{"b64_json": b64_png()}],
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
                "output_tokens": 272,
                "total_tokens": 282
            }
        })
    }

    #[tokio::test]
    async fn a_free_tier_provider_is_never_called_and_the_error_says_what_the_next_tier_needs() {
        let sim = Simulator::builder()
            .account("a", SimAccount::new())
            .start()
            .await
            .unwrap();
        let router = Router::builder()
            .provider_with(
                openai(sim.openai_base_url("a"), "free-acct"),
                ProviderOptions::new().tier("free"),
            )
            .build()
            .unwrap();
        let err = bounded(router.generate(low())).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("free") && msg.contains("tier-1") && msg.contains("$5"),
            "{msg}"
        );
        match &err {
            Error::Exhausted {
                attempts, skipped, ..
            } => {
                assert!(attempts.is_empty());
                assert!(
                    matches!(skipped[0].reason, SkipReason::Tier { .. }),
                    "{skipped:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sim.received("a").len(), 0);
        // An unknown tier is a build error naming it.
        let e = Router::builder()
            .provider_with(
                openai(sim.openai_base_url("a"), "x"),
                ProviderOptions::new().tier("platinum"),
            )
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("platinum"), "{e}");
        // Zero limits are build errors naming the field.
        for opts in [ProviderOptions::new().rpm(0), ProviderOptions::new().tpm(0)] {
            let e = Router::builder()
                .provider_with(openai(sim.openai_base_url("a"), "x"), opts)
                .build()
                .unwrap_err();
            assert!(e.field.contains("rpm") || e.field.contains("tpm"), "{e:?}");
        }
        for m in [0.0, 1.5, f64::NAN] {
            let e = Router::builder()
                .provider_with(
                    openai(sim.openai_base_url("a"), "x"),
                    ProviderOptions::new().safety_margin(m),
                )
                .build()
                .unwrap_err();
            assert!(e.field.contains("margin"), "{e:?}");
        }
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_request_larger_than_the_tpm_fails_at_once_saying_it_can_never_fit() {
        let sim = Simulator::builder()
            .account("a", SimAccount::new())
            .start()
            .await
            .unwrap();
        let router = Router::builder()
            .provider_with(
                openai(sim.openai_base_url("a"), "small"),
                ProviderOptions::new().rpm(100).tpm(10_000),
            )
            .build()
            .unwrap();
        // 3 × 4160 > 9000 (10 000 × 0.9).
        let err = bounded(router.generate(high(3))).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("never fit"), "{msg}");
        assert_eq!(sim.received("a").len(), 0);
        // Two fit.
        assert!(bounded(router.generate(high(2))).await.is_ok());
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn every_response_reports_its_cost_and_the_router_keeps_running_totals() {
        let sim = Simulator::builder()
            .account("a", SimAccount::new())
            .account("b", SimAccount::new())
            .start()
            .await
            .unwrap();
        let router = Router::builder()
            .provider(openai(sim.openai_base_url("a"), "a"))
            .build()
            .unwrap();
        let cat = Catalog::builtin();
        let mut sum = 0.0;
        let reqs: Vec<ImageRequest> = vec![
            high(1).into(),
            low().into(),
            high(2).size(Size::LANDSCAPE).into(),
            GenerateRequest::new("x")
                .model("gpt-image-1")
                .quality(Quality::Medium)
                .size(Size::PORTRAIT)
                .into(),
            GenerateRequest::new("auto everything")
                .model("gpt-image-1")
                .into(),
            GenerateRequest::new("mini")
                .model("gpt-image-1-mini")
                .quality(Quality::Low)
                .into(),
            EditRequest::new(
                "add a hat",
                vec![InputImage::new(png_header(1024, 1024), "a.png")],
            )
            .model("gpt-image-1")
            .quality(Quality::Low)
            .into(),
        ];
        for req in reqs {
            let resp = bounded(router.send(req.clone())).await.unwrap();
            let usage = resp.usage.expect("GPT image responses carry usage");
            let model = cat.model(&resp.model).unwrap();
            let want = match model.price.clone().unwrap() {
                Price::UsdPer1mTokens {
                    text_input,
                    image_input,
                    image_output,
                    ..
                } => {
                    (usage.input_tokens_details.text_tokens as f64 * text_input
                        + usage.input_tokens_details.image_tokens as f64 * image_input
                        + usage.output_tokens as f64 * image_output)
                        / 1e6
                }
                other => panic!("{other:?}"),
            };
            let cost = resp.cost_usd.expect("cost on every response");
            assert!((cost - want).abs() < 1e-9, "{req:?}: {cost} vs {want}");
            sum += cost;
        }
        let spend = router.spend();
        // The router's ledger first, then each provider's.
        assert!(
            (spend[0].lifetime_spent_usd - sum).abs() < 1e-6,
            "{spend:?}"
        );
        let a = spend.iter().find(|s| s.name == "a").unwrap();
        assert!((a.lifetime_spent_usd - sum).abs() < 1e-6, "{spend:?}");
        assert_eq!(a.committed, 7);
        assert_eq!(a.reserved_usd, 0.0);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn dall_e_3_is_charged_per_image() {
        let sim = Simulator::builder()
            .account("a", SimAccount::new())
            .start()
            .await
            .unwrap();
        let router = Router::builder()
            .provider(openai(sim.openai_base_url("a"), "a"))
            .build()
            .unwrap();
        let resp = bounded(
            router.generate(
                GenerateRequest::new("x")
                    .model("dall-e-3")
                    .quality(Quality::Hd)
                    .size(Size::new(1792, 1024)),
            ),
        )
        .await
        .unwrap();
        assert!(
            (resp.cost_usd.unwrap() - 0.12).abs() < 1e-12,
            "{:?}",
            resp.cost_usd
        );
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn budgets_skip_a_provider_that_cannot_pay_and_say_which_budget_and_when_it_resets() {
        let sim = Simulator::builder()
            .account("a", SimAccount::new())
            .account("b", SimAccount::new())
            .start()
            .await
            .unwrap();
        let (_c, wall) = wall_at(NOV28_2359);
        let router = Router::builder()
            .provider_with(
                openai(sim.openai_base_url("a"), "a"),
                ProviderOptions::new().budget(Budget::new(0.35, BudgetPeriod::Day).unwrap()),
            )
            .provider(openai(sim.openai_base_url("b"), "b"))
            .budget(Budget::new(0.6, BudgetPeriod::Month).unwrap())
            .wall_clock(wall)
            .strategy(image_router::Strategy::Ordered)
            .build()
            .unwrap();
        // ~$0.1674 each (high 1024², short prompt).
        let r1 = bounded(router.generate(high(1))).await.unwrap();
        let r2 = bounded(router.generate(high(1))).await.unwrap();
        assert_eq!((r1.provider.as_str(), r2.provider.as_str()), ("a", "a"));
        // a's day budget cannot cover a third: b serves it, and a is listed as skipped.
        let r3 = bounded(router.generate(high(1))).await.unwrap();
        assert_eq!(r3.provider, "b");
        assert!(
            r3.skipped
                .iter()
                .any(|s| s.provider == "a" && matches!(s.reason, SkipReason::Budget { .. })),
            "{:?}",
            r3.skipped
        );
        // The router's month budget ($0.60) cannot cover a fourth.
        let err = bounded(router.generate(high(1))).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("month") && msg.contains("resets"), "{msg}");
        assert!(
            msg.contains("1 Dec 2026") || msg.contains("01 Dec 2026"),
            "{msg}"
        );
        assert_eq!(sim.received("a").len() + sim.received("b").len(), 3);
        let spend = router.spend();
        assert!(spend[0].lifetime_spent_usd <= 0.6, "{spend:?}");
        sim.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_requests_never_overspend_a_dollar() {
        let sim = Simulator::builder()
            .account("a", SimAccount::new())
            .start()
            .await
            .unwrap();
        let router = Arc::new(
            Router::builder()
                .provider(openai(sim.openai_base_url("a"), "a"))
                .budget(Budget::new(1.0, BudgetPeriod::Day).unwrap())
                .build()
                .unwrap(),
        );
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let r = router.clone();
                tokio::spawn(async move { r.generate(high(1)).await })
            })
            .collect();
        let mut costs = 0.0;
        let mut ok = 0;
        for t in tasks {
            if let Ok(resp) = bounded(t).await.unwrap() {
                costs += resp.cost_usd.unwrap();
                ok += 1;
            }
        }
        let spend = router.spend();
        assert!(spend[0].lifetime_spent_usd <= 1.0 + 1e-9, "{spend:?}");
        assert!((spend[0].lifetime_spent_usd - costs).abs() < 1e-6);
        // $0.166425 each (4160 output + 5 prompt tokens): six fit in $1.
        assert_eq!(ok, 6);
        assert_eq!(sim.received("a").len(), 6);
        sim.shutdown().await;
    }

    /// Ten simulated minutes at the simulator's tier limit: zero upstream 429s and at least 97 %
    /// of the allowed requests; the overflow goes to a second provider instead of waiting.
    #[tokio::test]
    async fn ten_minutes_of_saturating_load_see_no_429_and_use_the_limit() {
        let manual = ManualClock::new();
        let shared: SharedClock = Arc::new(manual.clone());
        let sim = Simulator::builder()
            .clock(shared.clone())
            .account("a", SimAccount::new().tier("tier-1"))
            .account("b", SimAccount::new())
            .start()
            .await
            .unwrap();
        let router = Router::builder()
            .provider_with(
                openai(sim.openai_base_url("a"), "a"),
                ProviderOptions::new().tier("tier-1").safety_margin(1.0),
            )
            .provider(openai(sim.openai_base_url("b"), "b"))
            .strategy(image_router::Strategy::Ordered)
            .clock(shared)
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        let mut on_a = 0;
        let mut on_b = 0;
        // One request every 2 s for 10 minutes (30 per minute offered, 6 allowed).
        for _ in 0..300 {
            let resp = bounded(router.generate(low())).await.unwrap();
            match resp.provider.as_str() {
                "a" => on_a += 1,
                _ => on_b += 1,
            }
            manual.advance(Duration::from_secs(2));
        }
        assert_eq!(sim.stats("a").rate_limited, 0);
        assert!(on_a >= 59, "{on_a} of 60 allowed");
        assert!(on_a <= 60, "{on_a}");
        assert_eq!(on_a + on_b, 300);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn remaining_zero_and_reset_5s_on_a_success_keeps_the_provider_off_for_5s() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/images/generations"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(ok_body())
                    .insert_header("x-ratelimit-limit-requests", "60")
                    .insert_header("x-ratelimit-remaining-requests", "0")
                    .insert_header("x-ratelimit-reset-requests", "5s"),
            )
            .mount(&server)
            .await;
        let manual = ManualClock::new();
        let router = Router::builder()
            .provider_with(
                openai(format!("{}/v1", server.uri()), "a"),
                ProviderOptions::new().rpm(60),
            )
            .clock(Arc::new(manual.clone()))
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        bounded(router.generate(low())).await.unwrap();
        let err = bounded(router.generate(low())).await.unwrap_err();
        match &err {
            Error::Exhausted {
                skipped, attempts, ..
            } => {
                assert!(attempts.is_empty());
                match &skipped[0].reason {
                    SkipReason::NoHeadroom { retry_in, .. } => {
                        assert_eq!(*retry_in, Some(Duration::from_secs(5)))
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        manual.advance(Duration::from_millis(4_900));
        assert!(bounded(router.generate(low())).await.is_err());
        manual.advance(Duration::from_millis(100));
        bounded(router.generate(low())).await.unwrap();
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn the_tier_denial_429_is_not_a_rate_signal_but_a_real_429_is() {
        let manual = ManualClock::new();
        let shared: SharedClock = Arc::new(manual.clone());
        let sim = Simulator::builder()
            .clock(shared.clone())
            .account("free", SimAccount::new().tier("free"))
            .account("tight", SimAccount::new().rpm(1))
            .start()
            .await
            .unwrap();
        let router = Router::builder()
            .provider_with(
                openai(sim.openai_base_url("free"), "free"),
                ProviderOptions::new().rpm(10).tpm(1_000_000),
            )
            .provider_with(
                openai(sim.openai_base_url("tight"), "tight"),
                ProviderOptions::new().rpm(10).tpm(1_000_000),
            )
            .strategy(image_router::Strategy::Ordered)
            .clock(shared)
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        // free answers the 0.0-seconds denial, tight serves.
        let resp = bounded(router.generate(low())).await.unwrap();
        assert_eq!(resp.provider, "tight");
        let head = router.headroom();
        let free = &head.iter().find(|(n, _)| n == "free").unwrap().1;
        assert_eq!(free.backoff_factor, 1.0, "{free:?}");
        assert_eq!(free.effective_rpm, Some(9), "{free:?}");
        // tight's headers said "limit 1, remaining 0, reset 60s": the next request is not sent
        // to it at all (no upstream 429).
        let err = bounded(router.generate(low())).await.unwrap_err();
        assert!(err.to_string().contains("remaining"), "{err}");
        assert_eq!(sim.stats("tight").rate_limited, 0);
        let head = router.headroom();
        let tight = &head.iter().find(|(n, _)| n == "tight").unwrap().1;
        assert_eq!(tight.effective_rpm, Some(1), "{tight:?}");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_real_429_lowers_the_rate_and_blocks_for_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/images/generations"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "2")
                    .insert_header("retry-after-ms", "1500")
                    .set_body_json(serde_json::json!({"error": {
                        "message": "Rate limit reached for gpt-image-1 in organization org-x on requests per min (RPM): Limit 20, Used 20, Requested 1. Please try again in 1.5s.",
                        "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            )
            .mount(&server)
            .await;
        let manual = ManualClock::new();
        let router = Router::builder()
            .provider_with(
                openai(format!("{}/v1", server.uri()), "a"),
                ProviderOptions::new().rpm(20).safety_margin(1.0),
            )
            .clock(Arc::new(manual.clone()))
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        assert!(bounded(router.generate(low())).await.is_err());
        let h = router.headroom()[0].1.clone();
        assert_eq!(h.effective_rpm, Some(10), "{h:?}");
        assert_eq!(h.retry_in, Some(Duration::from_millis(1500)), "{h:?}");
        // Recovers slowly.
        manual.advance(Duration::from_secs(60));
        let rpm = router.headroom()[0].1.effective_rpm.unwrap();
        assert!((11..20).contains(&rpm), "{rpm}");
        manual.advance(Duration::from_secs(600));
        assert_eq!(router.headroom()[0].1.effective_rpm, Some(20));
    }

    /// Azure quota is per deployment and Azure reports only `remaining-*`: a deployment
    /// configured above its real quota stops being called once it reports 0 remaining.
    #[tokio::test]
    async fn azure_remaining_headers_keep_an_overconfigured_deployment_from_429s() {
        let manual = ManualClock::new();
        let shared: SharedClock = Arc::new(manual.clone());
        let sim = Simulator::builder()
            .clock(shared.clone())
            .account(
                "az",
                SimAccount::new().rpm(3).deployment("img", "gpt-image-1"),
            )
            .account("b", SimAccount::new())
            .start()
            .await
            .unwrap();
        let azure = image_router::providers::Azure::builder()
            .endpoint(sim.azure_endpoint("az"))
            .api_key(key())
            .deployment("gpt-image-1", "img")
            .name("az")
            .build()
            .unwrap();
        let router = Router::builder()
            .provider_with(azure, ProviderOptions::new().rpm(30).tpm(1_000_000))
            .provider(openai(sim.openai_base_url("b"), "b"))
            .strategy(image_router::Strategy::Ordered)
            .clock(shared)
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        let mut on_az = 0;
        for _ in 0..40 {
            let r = bounded(router.generate(low())).await.unwrap();
            if r.provider == "az" {
                on_az += 1;
            }
            manual.advance(Duration::from_secs(3));
        }
        // 40 requests over two minutes: never a 429. (Without a limit header, "2 remaining"
        // is read against the configured 30, i.e. 28 used elsewhere, so the limiter holds off
        // for the minute: conservative, one call per minute.)
        assert_eq!(sim.stats("az").rate_limited, 0);
        assert!((2..=6).contains(&on_az), "{on_az}");
        sim.shutdown().await;
    }

    /// A 429 whose only hint is the rate-limit headers (no retry-after, no time in the
    /// message) should keep the provider off until the reported reset.
    #[tokio::test]
    async fn a_429_with_only_reset_headers_blocks_until_the_reset() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/images/generations"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("x-ratelimit-limit-requests", "5")
                    .insert_header("x-ratelimit-remaining-requests", "0")
                    .insert_header("x-ratelimit-reset-requests", "20s")
                    .set_body_json(serde_json::json!({"error": {
                        "message": "You've exceeded the rate limit, please slow down.",
                        "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            )
            .mount(&server)
            .await;
        let manual = ManualClock::new();
        let router = Router::builder()
            .provider_with(
                openai(format!("{}/v1", server.uri()), "a"),
                ProviderOptions::new().rpm(20),
            )
            .clock(Arc::new(manual.clone()))
            .max_wait(Duration::ZERO)
            .build()
            .unwrap();
        assert!(bounded(router.generate(low())).await.is_err());
        let h = router.headroom()[0].1.clone();
        assert!(
            h.retry_in.is_some_and(|r| r >= Duration::from_secs(19)),
            "{h:?}"
        );
    }

    #[tokio::test]
    async fn tier_sets_provider_limits_and_explicit_numbers_override_it() {
        let router = Router::builder()
            .provider_with(
                openai("http://127.0.0.1:9/v1".into(), "t2"),
                ProviderOptions::new().tier("tier-2"),
            )
            .provider_with(
                openai("http://127.0.0.1:9/v1".into(), "t2-rpm"),
                ProviderOptions::new().tier("tier-2").rpm(40),
            )
            .provider_with(
                openai("http://127.0.0.1:9/v1".into(), "azure-like"),
                ProviderOptions::new().rpm(6).tpm(60_000).safety_margin(1.0),
            )
            .build()
            .unwrap();
        let h = router.headroom();
        assert_eq!(h[0].1.effective_rpm, Some(13)); // 15 × 0.9
        assert_eq!(h[0].1.effective_tpm, Some(450_000));
        assert_eq!(h[1].1.effective_rpm, Some(36));
        assert_eq!(h[1].1.effective_tpm, Some(450_000));
        assert_eq!(h[2].1.effective_rpm, Some(6));
        assert_eq!(h[2].1.effective_tpm, Some(60_000));
    }

    /// The simulator's windows and headers behave as api-facts describes the real API.
    #[tokio::test]
    async fn simulator_rate_limit_headers_match_the_real_apis() {
        let manual = ManualClock::new();
        let shared: SharedClock = Arc::new(manual.clone());
        let sim = Simulator::builder()
            .clock(shared)
            .account("o", SimAccount::new().rpm(2).tpm(100_000))
            .account(
                "az",
                SimAccount::new().rpm(1).deployment("img", "gpt-image-1"),
            )
            .start()
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let body = serde_json::json!({"model": "gpt-image-1", "prompt": "abcd", "quality": "low"});
        let post = |url: String| {
            http.post(url)
                .bearer_auth(key())
                .header("api-key", key())
                .json(&body)
                .send()
        };
        let o = format!("{}/images/generations", sim.openai_base_url("o"));
        let r = bounded(post(o.clone())).await.unwrap();
        assert_eq!(r.status(), 200);
        let h = RateLimitHeaders::from_headers(r.headers());
        assert_eq!(h.limit_requests, Some(2));
        assert_eq!(h.remaining_requests, Some(1));
        assert_eq!(h.limit_tokens, Some(100_000));
        assert_eq!(h.remaining_tokens, Some(100_000 - 273));
        assert!(
            h.reset_requests.is_some() && h.reset_tokens.is_some(),
            "{h:?}"
        );
        let usage = r.json::<serde_json::Value>().await.unwrap()["usage"].clone();
        assert_eq!(usage["total_tokens"], 273);
        manual.advance(Duration::from_secs(20));
        assert_eq!(bounded(post(o.clone())).await.unwrap().status(), 200);
        let r = bounded(post(o.clone())).await.unwrap();
        assert_eq!(r.status(), 429);
        // Room in 40 s, when the first request leaves the window.
        assert_eq!(r.headers()["retry-after"], "40");
        assert_eq!(r.headers()["retry-after-ms"], "40000");
        let err = r.json::<serde_json::Value>().await.unwrap();
        assert_eq!(err["error"]["code"], "rate_limit_exceeded");
        manual.advance(Duration::from_secs(40));
        assert_eq!(bounded(post(o)).await.unwrap().status(), 200);

        // Azure: only remaining-*, and retry-after(-ms) on 429.
        let az = format!(
            "{}/openai/deployments/img/images/generations?api-version=2025-04-01-preview",
            sim.azure_endpoint("az")
        );
        let r = bounded(post(az.clone())).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-ratelimit-limit-requests").is_none());
        assert!(r.headers().get("x-ratelimit-reset-requests").is_none());
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
        let r = bounded(post(az)).await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "60");
        assert_eq!(r.headers()["retry-after-ms"], "60000");
        sim.shutdown().await;
    }
}
