//! Properties of error classification: any status, headers and error body classify into an
//! error that keeps its status, has a message and a bounded retry hint.

use super::*;

proptest! {
    #![proptest_config(direct())]

    /// Any status, headers and body classify without a panic into an error that keeps the
    /// status, has a message, a bounded retry hint, and the same kind when asked twice.
    #[test]
    fn classification(status in status(), pairs in header_map(), body in error_body()) {
        let h = to_header_map(&pairs);
        let now = fixed_now();
        let e = classify_at("fuzz", status, &h, &body, now);
        prop_assert_eq!(e.status, Some(status));
        prop_assert!(!e.message.trim().is_empty());
        prop_assert_eq!(&e.provider, "fuzz");
        if let Some(d) = e.retry_after {
            prop_assert!(bounded(d), "{d:?}");
            prop_assert!(!d.is_zero(), "zero retry hint");
        }
        let again = classify_at("fuzz", status, &h, &body, now);
        prop_assert_eq!(&again.kind, &e.kind);
        // The status decides when the body says nothing: an empty body is classified by it.
        if body.is_empty() {
            let expected = match status {
                401 => Some(ErrorKind::Authentication),
                500..=u16::MAX => Some(ErrorKind::Server),
                _ => None,
            };
            if let Some(k) = expected {
                prop_assert_eq!(&e.kind, &k);
            }
            if status == 429 {
                prop_assert!(matches!(e.kind, ErrorKind::RateLimited { .. }), "{:?}", e.kind);
            }
        }
        // Display and Debug of what the caller sees never panic either.
        let _ = (e.to_string(), format!("{e:?}"));
    }
}
