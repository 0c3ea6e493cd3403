//! Scrubbing what leaves a provider: credentials and over-long text removed from every
//! string that came from the provider, retry hints capped, usage clamped to what the request
//! can produce. Apart because it is the one place where a provider's answer is made safe.

use std::time::Duration;

use super::common::Common;
use super::limits::Limits;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{redact, truncate_text, ProviderError, MAX_FIELD_BYTES, MAX_MESSAGE_BYTES};
use crate::provider::ProbeReport;
use crate::quota::headers::RateLimitHeaders;
use crate::quota::usage::Usage;
use crate::response::ProviderResponse;

/// Shortest credential that is scrubbed from error text: shorter strings are too likely to
/// occur in ordinary words, and no real key or token is that short.
pub(super) const MIN_SCRUB_LEN: usize = 8;

/// What leaves a built-in provider is made safe here, in one place: every string that came
/// from the provider (message, code, type, param, request id, content-policy reason, image
/// URLs, revised prompts, probe details) is scrubbed of the credential and truncated, and
/// every retry hint is capped.
///
/// Why: a misconfigured proxy or gateway may echo the credential it received anywhere in its
/// answer ("Incorrect API key provided: <the whole key>", a request-id header), and those
/// strings become the [`ProviderError`]'s `Display`, the router's `Error`, `explain()`, the
/// status JSON and log lines. The provider is the only place that knows the key, so it
/// sanitizes before anything leaves it; nothing in the providers logs before that.
pub(super) trait Sanitize {
    /// Scrubs `secret` (when given) from every provider string, truncates them, caps hints.
    fn sanitize(&mut self, secret: Option<&str>, common: &Common);
}

/// Scrubs and truncates one string.
pub(super) fn clean(text: &mut String, secret: Option<&str>, max: usize) {
    if let Some(s) = secret {
        redact(text, s);
    }
    truncate_text(text, max);
}

pub(super) fn clean_opt(text: &mut Option<String>, secret: Option<&str>, max: usize) {
    if let Some(t) = text.as_mut() {
        clean(t, secret, max);
    }
}

/// Caps every hint in `h` at `max`; returns the longest hint that was cut, if any.
pub(super) fn cap_rate_limits(h: &mut RateLimitHeaders, max: Duration) -> Option<Duration> {
    let mut capped = None;
    for d in [
        &mut h.reset_requests,
        &mut h.reset_tokens,
        &mut h.retry_after,
    ]
    .into_iter()
    .flatten()
    {
        if *d > max {
            capped = capped.max(Some(*d));
            *d = max;
        }
    }
    capped
}

pub(super) fn warn_capped(provider: &str, hint: Duration, max: Duration) {
    tracing::warn!(
        provider,
        hint_secs = hint.as_secs(),
        cap_secs = max.as_secs(),
        "retry hint capped"
    );
}

impl Sanitize for ProviderError {
    fn sanitize(&mut self, secret: Option<&str>, common: &Common) {
        clean(&mut self.message, secret, MAX_MESSAGE_BYTES);
        for field in [
            &mut self.code,
            &mut self.error_type,
            &mut self.param,
            &mut self.request_id,
        ] {
            clean_opt(field, secret, MAX_FIELD_BYTES);
        }
        if let crate::ErrorKind::ContentPolicy { reason } = &mut self.kind {
            clean_opt(reason, secret, MAX_MESSAGE_BYTES);
        }
        let max = common.max_retry_hint;
        let mut capped = None;
        if let Some(d) = self.retry_after.filter(|d| *d > max) {
            capped = Some(d);
            self.retry_after = Some(max);
        }
        if let Some(h) = self.rate_limits.as_deref_mut() {
            capped = capped.max(cap_rate_limits(h, max));
        }
        if let Some(hint) = capped {
            self.message.push_str(&format!(
                " (retry hint of {}s capped to {}s)",
                hint.as_secs(),
                max.as_secs()
            ));
            warn_capped(&self.provider, hint, max);
        }
    }
}

impl Sanitize for ProviderResponse {
    fn sanitize(&mut self, secret: Option<&str>, common: &Common) {
        clean_opt(&mut self.request_id, secret, MAX_FIELD_BYTES);
        for image in &mut self.images {
            clean_opt(&mut image.url, secret, MAX_MESSAGE_BYTES);
            clean_opt(&mut image.revised_prompt, secret, MAX_MESSAGE_BYTES);
        }
        if let Some(hint) = cap_rate_limits(&mut self.rate_limits, common.max_retry_hint) {
            warn_capped(&common.name, hint, common.max_retry_hint);
        }
    }
}

impl Sanitize for ProbeReport {
    fn sanitize(&mut self, secret: Option<&str>, common: &Common) {
        clean_opt(&mut self.request_id, secret, MAX_FIELD_BYTES);
        clean_opt(&mut self.detail, secret, MAX_MESSAGE_BYTES);
        clean_opt(&mut self.checked, secret, MAX_MESSAGE_BYTES);
        if let Some(hint) = cap_rate_limits(&mut self.rate_limits, common.max_retry_hint) {
            warn_capped(&common.name, hint, common.max_retry_hint);
        }
    }
}

/// [`Sanitize`] on both sides of a result: the last step of every provider call.
pub(super) fn sanitized<T: Sanitize>(
    r: Result<T, ProviderError>,
    secret: Option<&SecretString>,
    common: &Common,
) -> Result<T, ProviderError> {
    let secret = secret
        .map(|s| s.expose_secret())
        .filter(|s| s.len() >= MIN_SCRUB_LEN);
    match r {
        Ok(mut v) => {
            v.sanitize(secret, common);
            Ok(v)
        }
        Err(mut e) => {
            e.sanitize(secret, common);
            Err(e)
        }
    }
}

/// Clamps `usage` to what the request can produce (`limits`); returns whether it had to.
///
/// Why: usage drives cost, budgets and the token limiter, and a provider reporting
/// `u64::MAX` tokens would charge billions to the budgets (exhausting a month's budget in one
/// answer). A clamped usage is reported as suspicious by a tracing warning and the counter
/// `image_router_suspicious_usage_total{provider}`; the response keeps the clamped numbers.
pub(super) fn clamp_usage(usage: &mut Usage, limits: &Limits) -> bool {
    let mut clamped = false;
    let mut clamp = |v: &mut u64, max: u64| {
        if *v > max {
            *v = max;
            clamped = true;
        }
    };
    clamp(&mut usage.input_tokens, limits.input_tokens);
    clamp(
        &mut usage.input_tokens_details.text_tokens,
        limits.input_tokens,
    );
    clamp(
        &mut usage.input_tokens_details.image_tokens,
        limits.input_tokens,
    );
    clamp(&mut usage.output_tokens, limits.output_tokens);
    if let Some(d) = usage.output_tokens_details.as_mut() {
        clamp(&mut d.text_tokens, limits.output_tokens);
        clamp(&mut d.image_tokens, limits.output_tokens);
    }
    clamp(
        &mut usage.total_tokens,
        limits.input_tokens.saturating_add(limits.output_tokens),
    );
    clamped
}

/// Applies [`clamp_usage`] to a response and reports a clamp.
pub(super) fn check_usage(resp: &mut ProviderResponse, limits: &Limits, provider: &str) {
    if let Some(u) = resp.usage.as_mut() {
        if clamp_usage(u, limits) {
            tracing::warn!(
                provider,
                max_input_tokens = limits.input_tokens,
                max_output_tokens = limits.output_tokens,
                "reported usage exceeds what the request can produce; clamped"
            );
            crate::metrics::suspicious_usage(provider);
        }
    }
}
