//! Properties of the header and retry-hint parsers: Go durations, "try again in …" in
//! messages and any text, and the rate-limit headers. Apart because they are called directly
//! and share no harness with the HTTP properties.

use super::*;

proptest! {
    #![proptest_config(direct())]

    /// Go durations: no panic, a bounded result, and the exact value for well-formed ones.
    #[test]
    fn go_durations(text in go_duration_text()) {
        if let Some(d) = headers::parse_go_duration(&text) {
            prop_assert!(d.as_secs_f64() <= 1e10, "{text:?} gave {d:?}");
        }
    }

    /// Go durations written by the simulator's formatter parse back to the same value.
    #[test]
    fn go_durations_round_trip(ms in 0u64..10_000_000_000_000) {
        let d = Duration::from_millis(ms);
        let text = headers::format_go_duration(d);
        let back = headers::parse_go_duration(&text);
        prop_assert!(back.is_some(), "{text:?} did not parse");
        let back = back.unwrap_or_default();
        let diff = back.abs_diff(d);
        prop_assert!(diff <= Duration::from_millis(2), "{d:?} -> {text:?} -> {back:?}");
    }

    /// Retry hints in messages: no panic, bounded, and exact for "try again in Ns".
    #[test]
    fn retry_hints_in_messages(msg in retry_message(), secs in 0u64..1_000_000_000) {
        if let Some(d) = retry_after_from_message(&msg) {
            prop_assert!(bounded(d), "{msg:?} gave {d:?}");
        }
        let exact = format!("Please try again in {secs}s.");
        prop_assert_eq!(retry_after_from_message(&exact), Some(Duration::from_secs(secs)));
    }

    /// Arbitrary text never panics the message parser.
    #[test]
    fn retry_hints_in_any_text(msg in any::<String>()) {
        if let Some(d) = retry_after_from_message(&msg) {
            prop_assert!(bounded(d));
        }
    }

    /// Rate-limit headers: no panic; numbers parse exactly; `retry_after` is positive and
    /// bounded; the request id is the header's.
    #[test]
    fn rate_limit_headers(pairs in header_map()) {
        let h = to_header_map(&pairs);
        let now = fixed_now();
        let parsed = RateLimitHeaders::from_headers_at(&h, now);
        let retry = headers::retry_after(&h, now);
        prop_assert_eq!(parsed.retry_after, retry);
        if let Some(d) = retry {
            prop_assert!(bounded(d), "{pairs:?} gave {d:?}");
            prop_assert!(!d.is_zero(), "{pairs:?} gave zero");
        }
        for d in [parsed.reset_requests, parsed.reset_tokens].into_iter().flatten() {
            prop_assert!(d.as_secs_f64() <= 1e10);
        }
        let first = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let exact = first("x-ratelimit-remaining-requests").and_then(|v| v.parse::<u64>().ok());
        prop_assert_eq!(parsed.remaining_requests, exact);
        let id = h
            .get("x-request-id")
            .or_else(|| h.get("apim-request-id"))
            .and_then(|v| v.to_str().ok());
        if h.get("x-request-id").is_none_or(|v| v.to_str().is_ok()) {
            let rid = headers::request_id(&h);
            prop_assert_eq!(rid.as_deref(), id);
        }
    }
}
