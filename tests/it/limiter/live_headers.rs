//! Live `x-ratelimit-*` headers and `retry-after`: the provider's own view of the window overrides
//! the local estimate.

use crate::support::quota::*;
use image_router::quota::headers::RateLimitHeaders;
use image_router::quota::headers::{parse_go_duration, retry_after};
use image_router::quota::limiter::Denied;
use std::time::{Duration, SystemTime};

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
