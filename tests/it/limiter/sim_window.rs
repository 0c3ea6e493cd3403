//! Properties of the simulator's sliding window (no server involved).

use std::time::Duration;

use image_router::sim::{LimitKind, RateWindow, WINDOW};
use proptest::prelude::*;

proptest! {
    /// Over random arrivals and weights, no 60-second window ever holds more than the limits,
    /// and a refusal's retry time is exact: the request fits at `now + retry`, not before.
    #[test]
    fn never_exceeds_and_retry_is_exact(
        rpm in 1u32..8,
        tpm in 1_000u64..20_000,
        arrivals in prop::collection::vec((0u64..20_000, 1u64..6_000), 1..200),
    ) {
        let mut w = RateWindow::new(Some(rpm), Some(tpm));
        let mut now = Duration::ZERO;
        let mut admitted: Vec<(Duration, u64)> = Vec::new();
        for (gap_ms, tokens) in arrivals {
            now += Duration::from_millis(gap_ms);
            match w.check(now, tokens) {
                Ok(()) => {
                    admitted.push((now, tokens));
                    let live: Vec<_> = admitted.iter().filter(|(t, _)| *t + WINDOW > now).collect();
                    prop_assert!(live.len() as u64 <= u64::from(rpm));
                    prop_assert!(live.iter().map(|(_, k)| *k).sum::<u64>() <= tpm);
                }
                Err(r) => {
                    if tokens > tpm && r.kind == LimitKind::Tokens {
                        prop_assert_eq!(r.retry_in, None);
                        continue;
                    }
                    let Some(retry) = r.retry_in else {
                        // Requests limit full and this request is also too large.
                        prop_assert!(tokens > tpm);
                        continue;
                    };
                    prop_assert!(retry > Duration::ZERO && retry <= WINDOW);
                    // Just before the retry time it still would not fit for the same reason.
                    let mut probe = w.clone();
                    let before = now + retry - Duration::from_nanos(1);
                    let early = probe.check(before, tokens);
                    prop_assert!(early.is_err());
                    prop_assert_eq!(early.unwrap_err().kind, r.kind);
                }
            }
        }
    }
}

#[test]
fn requests_rejection_details() {
    let mut w = RateWindow::new(Some(2), None);
    let t = Duration::from_secs(5);
    w.try_admit(t, 1).unwrap();
    w.try_admit(t, 1).unwrap();
    let r = w.check(t + Duration::from_secs(1), 1).unwrap_err();
    assert_eq!(r.kind, LimitKind::Requests);
    assert_eq!((r.limit, r.used, r.requested), (2, 2, 1));
    assert_eq!(r.retry_in, Some(Duration::from_secs(59)));
}
