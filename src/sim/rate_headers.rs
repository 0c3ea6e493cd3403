//! Rate-limit answers: the `x-ratelimit-*` headers that describe an account's window after a
//! request, the `retry-after` / `retry-after-ms` pair, and the 429 for a request the window
//! refused (a rate limit with the time until it fits, or, when it can never fit, the tier
//! denial or "Request too large").
//!
//! Why apart from [`image_op`](super::image_op): these are the answers the router's limiter
//! reads back, so their wording and header formats (Go-style reset durations; Azure sends only
//! the `remaining-*` pair) are kept in one place next to each other.

use std::time::Duration;

use super::account::AccountState;
use super::bodies;
use super::exchange::Reply;
use super::exchange::{Op, Surface};
use super::window::Rejection;
use crate::quota::headers::format_go_duration;

/// `x-ratelimit-*` headers describing the window after this request.
pub(super) fn rate_headers(
    st: &mut AccountState,
    now: Duration,
    surface: &Surface,
) -> Vec<(&'static str, String)> {
    let state = st.window.state(now);
    let mut out = Vec::new();
    let azure = surface.is_azure();
    if let Some(rpm) = st.window.rpm() {
        let rpm = u64::from(rpm);
        if !azure {
            out.push(("x-ratelimit-limit-requests", rpm.to_string()));
        }
        out.push((
            "x-ratelimit-remaining-requests",
            rpm.saturating_sub(state.requests).to_string(),
        ));
        if !azure {
            out.push((
                "x-ratelimit-reset-requests",
                format_go_duration(state.reset_requests),
            ));
        }
    }
    if let Some(tpm) = st.window.tpm() {
        if !azure {
            out.push(("x-ratelimit-limit-tokens", tpm.to_string()));
        }
        out.push((
            "x-ratelimit-remaining-tokens",
            tpm.saturating_sub(state.tokens).to_string(),
        ));
        if !azure {
            out.push((
                "x-ratelimit-reset-tokens",
                format_go_duration(state.reset_tokens),
            ));
        }
    }
    out
}

/// Adds `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
pub(super) fn retry_headers(reply: Reply, retry: Duration) -> Reply {
    reply
        .header("retry-after", bodies::ceil_secs(retry).to_string())
        .header("retry-after-ms", bodies::ceil_millis(retry).to_string())
}

/// The 429 for a request the window refused.
pub(super) fn window_429(
    surface: &Surface,
    op: Op,
    model: &str,
    org: &str,
    rej: &Rejection,
) -> Reply {
    let Some(retry) = rej.retry_in else {
        // It can never fit: a zero limit is the tier denial; a request over the TPM limit is
        // "Request too large".
        if rej.limit == 0 {
            return Reply::json(429, &bodies::tier_denied());
        }
        return Reply::json(
            429,
            &bodies::request_too_large(model, org, rej.limit, rej.requested),
        );
    };
    let body = match surface {
        Surface::Azure { api_version, .. } => bodies::azure_rate_limited(
            bodies::azure_operation(op == Op::Edit),
            api_version,
            rej.kind,
            Some(retry),
        ),
        Surface::OpenAi => bodies::rate_limited(
            model,
            org,
            rej.kind,
            rej.limit,
            rej.used,
            rej.requested,
            retry,
        ),
    };
    retry_headers(Reply::json(429, &body), retry)
}
