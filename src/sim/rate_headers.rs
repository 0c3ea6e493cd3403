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
use super::window::{LimitKind, Rejection};
use crate::quota::headers::format_go_duration;

/// `x-ratelimit-*` headers describing the window after this request: the account's requests
/// and tokens limits, or, where the account has none, `model`'s own (OpenAI's published
/// limits are per model, and so are its headers). There is no images header: none is
/// documented, so none is invented (an IPM limit shows only in its 429).
pub(super) fn rate_headers(
    st: &mut AccountState,
    now: Duration,
    surface: &Surface,
    model: &str,
) -> Vec<(&'static str, String)> {
    let account = st.window.state(now);
    let model_window = st.model_windows.get_mut(model);
    let (m_rpm, m_tpm, m_state) = match model_window {
        Some(w) => (w.rpm(), w.tpm(), Some(w.state(now))),
        None => (None, None, None),
    };
    let (rpm, req_state) = match (st.window.rpm(), m_rpm) {
        (Some(r), _) => (Some(r), account),
        (None, Some(r)) => (Some(r), m_state.unwrap_or(account)),
        _ => (None, account),
    };
    let (tpm, tok_state) = match (st.window.tpm(), m_tpm) {
        (Some(t), _) => (Some(t), account),
        (None, Some(t)) => (Some(t), m_state.unwrap_or(account)),
        _ => (None, account),
    };
    let mut out = Vec::new();
    let azure = surface.is_azure();
    let state = req_state;
    if let Some(rpm) = rpm {
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
    let state = tok_state;
    if let Some(tpm) = tpm {
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
        if rej.kind == LimitKind::Images {
            return Reply::json(
                429,
                &bodies::images_too_many(model, org, rej.limit, rej.requested),
            );
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
