//! Failure classification: one HTTP error response or transport error → one [`ProviderError`].
//!
//! The router decides what to do (fail over, wait, retry, give up) from the [`ErrorKind`]
//! alone, so this module is where the provider-specific knowledge lives: OpenAI's
//! `{"error":{message,type,param,code}}`, Azure's `{"error":{code,message,inner_error}}`
//! (whose `code` may be a numeric string such as `"429"`), and the quirks seen in the wild
//! (a 429 saying "try again after 0.0 seconds" is a tier-access denial, not a rate limit).
//!
//! Classification looks at the *code* first (it is stable), then the status, then the
//! message wording (least stable, only used where no code exists). A non-JSON body (an HTML
//! page from a proxy) still classifies by status, with a short snippet as the message.
//!
//! Which limit a 429 names ([`RateLimitScope`]) comes from the message before the `type`,
//! because an images-per-minute 429 may say `type: "requests"`: a message naming "images
//! per min" (the issue-11 wording "… on images per min (IPM): Limit 5, Used 5, Requested 1 …",
//! the 2023 "Rate limit exceeded for images per minute … Limit: 5/1min", the 2026 edits'
//! "… on input-images per min …", all seen in public reports; OpenAI documents none of them)
//! is [`RateLimitScope::Images`]. The images 429 without any limit named ("You've exceeded
//! the rate limit, please slow down and try again after 51.84 seconds.") stays `Unknown`:
//! nothing in it says which limit. A stated limit of zero with no wait ("Limit: 0/1min") is
//! a tier without access, like the "try again after 0.0 seconds" 429.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::error::{AccessDenial, ErrorKind, NotFoundKind, ProviderError, RateLimitScope};
use crate::quota::headers::{self, RateLimitHeaders};

/// Longest body snippet kept as a message when the body is not a JSON error.
const SNIPPET_CHARS: usize = 200;

/// The parts of an error body that classification uses.
#[derive(Default)]
struct Body {
    message: Option<String>,
    code: Option<String>,
    error_type: Option<String>,
    param: Option<String>,
    inner_code: Option<String>,
    filtered: Vec<String>,
}

fn value_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_body(body: &[u8]) -> Option<Body> {
    let v: Value = serde_json::from_slice(body).ok()?;
    // OpenAI and Azure nest under "error"; some proxies send the fields at the top level.
    let err = match v.get("error") {
        Some(e @ Value::Object(_)) => e,
        Some(Value::String(s)) => {
            return Some(Body {
                message: Some(s.clone()),
                ..Body::default()
            })
        }
        _ if v.get("message").is_some() => &v,
        _ => return None,
    };
    let field = |name: &str| err.get(name).and_then(value_to_string);
    let inner = err.get("inner_error").or_else(|| err.get("innererror"));
    let mut filtered = Vec::new();
    // Azure spells it `content_filter_results` on image errors and `content_filter_result`
    // on others.
    let results = inner.and_then(|i| {
        i.get("content_filter_results")
            .or_else(|| i.get("content_filter_result"))
    });
    if let Some(Value::Object(results)) = results {
        for (category, r) in results {
            if r.get("filtered").and_then(Value::as_bool) == Some(true) {
                match r.get("severity").and_then(Value::as_str) {
                    Some(sev) => filtered.push(format!("{category} ({sev})")),
                    None => filtered.push(category.clone()),
                }
            }
        }
    }
    Some(Body {
        message: field("message"),
        code: field("code"),
        error_type: field("type"),
        param: field("param"),
        inner_code: inner.and_then(|i| i.get("code")).and_then(value_to_string),
        filtered,
    })
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = collapsed.chars().take(SNIPPET_CHARS).collect();
    if collapsed.chars().count() > SNIPPET_CHARS {
        out.push('…');
    }
    out
}

/// Parses a retry delay from an error message: "Please try again in 12s", "try again after
/// 51.84 seconds", "Please retry after 2 seconds", "try again in 1m30s", "in 20ms".
///
/// ```
/// use image_router::providers::classify::retry_after_from_message;
/// use std::time::Duration;
/// assert_eq!(retry_after_from_message("Please retry after 2 seconds."), Some(Duration::from_secs(2)));
/// assert_eq!(retry_after_from_message("Please try again in 12s."), Some(Duration::from_secs(12)));
/// ```
pub fn retry_after_from_message(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    for marker in [
        "try again in ",
        "try again after ",
        "retry after ",
        "retry in ",
    ] {
        let Some(pos) = lower.find(marker) else {
            continue;
        };
        let rest = &lower[pos + marker.len()..];
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let token = token.trim_end_matches('.');
        // "12s", "1m30s", "20ms": a Go-style duration.
        if let Some(d) = headers::parse_go_duration(token) {
            return Some(d);
        }
        // "51.84 seconds", "2 second", "500 milliseconds", "1 minute".
        let number: f64 = match token.parse() {
            Ok(n) => n,
            Err(_) => continue,
        };
        if !number.is_finite() || !(0.0..=1e9).contains(&number) {
            continue;
        }
        let after = rest[token.len()..].trim_start();
        let scale = if after.starts_with("ms") || after.starts_with("milli") {
            0.001
        } else if after.starts_with("min") || after.starts_with('m') {
            60.0
        } else if after.starts_with('h') {
            3600.0
        } else {
            1.0
        };
        // Overflow-safe: a huge number is no hint (providers cap hints anyway).
        if let Ok(d) = Duration::try_from_secs_f64(number * scale) {
            return Some(d);
        }
    }
    None
}

fn has(s: &Option<String>, needle: &str) -> bool {
    s.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(needle))
}

/// Classifies a non-2xx response. `body` may be anything (JSON error, HTML, empty).
pub fn classify(provider: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    classify_at(provider, status, headers, body, SystemTime::now())
}

/// As [`classify`], with `now` for HTTP-date `retry-after` headers.
pub fn classify_at(
    provider: &str,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> ProviderError {
    let parsed = parse_body(body);
    let b = parsed.as_ref();
    let message = b
        .and_then(|b| b.message.clone())
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| {
            let s = snippet(body);
            if s.is_empty() {
                format!("HTTP {status}")
            } else {
                s
            }
        });
    let lower = message.to_ascii_lowercase();
    let empty = Body::default();
    let b = b.unwrap_or(&empty);
    let code = &b.code;
    let etype = &b.error_type;
    let message_retry = retry_after_from_message(&message);
    let kind = kind_for(status, b, &lower, message_retry);

    let mut err = ProviderError::new(provider, kind, message.clone())
        .with_status(status)
        .with_rate_limits(RateLimitHeaders::from_headers_at(headers, now))
        // A zero delay is no delay (see `headers::retry_after`): fall back to the caller's wait.
        .with_retry_after(
            headers::retry_after(headers, now).or(message_retry.filter(|d| !d.is_zero())),
        );
    if let Some(c) = code {
        err = err.with_code(c.clone());
    }
    if let Some(t) = etype {
        err = err.with_type(t.clone());
    }
    if let Some(p) = &b.param {
        err = err.with_param(p.clone());
    }
    if let Some(id) = headers::request_id(headers) {
        err = err.with_request_id(id);
    }
    err
}

fn kind_for(status: u16, b: &Body, lower: &str, message_retry: Option<Duration>) -> ErrorKind {
    let code = &b.code;
    let etype = &b.error_type;
    let code_or_type = |c: &str| has(code, c) || has(etype, c);
    let denied = |reason| ErrorKind::AccessDenied { reason };
    let not_found = |what| ErrorKind::NotFound { what };

    // Codes that mean the same thing whatever the status.
    if code_or_type("billing_hard_limit_reached") {
        return denied(AccessDenial::BillingHardLimit);
    }
    if code_or_type("insufficient_quota") {
        return denied(AccessDenial::InsufficientQuota);
    }
    if code_or_type("unsupported_country_region_territory")
        || lower.contains("country, region, or territory not supported")
    {
        return denied(AccessDenial::RegionNotSupported);
    }
    let content_codes = [
        "moderation_blocked",
        "content_policy_violation",
        "contentfilter",
        "content_filter",
    ];
    if content_codes.iter().any(|c| has(code, c))
        || has(&b.inner_code, "ResponsibleAIPolicyViolation")
    {
        let reason = if b.filtered.is_empty() {
            non_empty(&b.message)
        } else {
            let msg = b.message.clone().unwrap_or_default();
            Some(
                format!("{msg} [filtered: {}]", b.filtered.join(", "))
                    .trim()
                    .to_string(),
            )
        };
        return ErrorKind::ContentPolicy { reason };
    }
    // Azure: the deployment exists but its model does not do this operation (a chat or
    // dall-e-3 deployment asked for images or edits): that deployment cannot serve the model.
    if has(code, "DeploymentNotFound") || has(code, "OperationNotSupported") {
        return not_found(NotFoundKind::Deployment);
    }
    // Azure: an `api-version` the resource does not take fails every request the same way:
    // a configuration problem of this provider, not of the request.
    if (400..500).contains(&status)
        && (lower.contains("api version") || lower.contains("api-version"))
        && (lower.contains("not supported")
            || lower.contains("unsupported")
            || lower.contains("invalid"))
    {
        return not_found(NotFoundKind::Endpoint);
    }
    if has(code, "model_not_found") {
        return not_found(NotFoundKind::Model);
    }

    match status {
        401 => ErrorKind::Authentication,
        403 => {
            let reason = if lower.contains("must be verified") {
                AccessDenial::OrganizationNotVerified
            } else if lower.contains("temporarily blocked") {
                AccessDenial::ResourceBlocked
            } else {
                AccessDenial::Forbidden
            };
            denied(reason)
        }
        404 => {
            if lower.contains("model") && lower.contains("does not exist") {
                not_found(NotFoundKind::Model)
            } else if lower.contains("deployment") && lower.contains("does not exist") {
                not_found(NotFoundKind::Deployment)
            } else {
                not_found(NotFoundKind::Endpoint)
            }
        }
        408 => ErrorKind::Timeout { sent: true },
        409 => ErrorKind::Server,
        429 => {
            // A stated limit of zero with no wait ("Limit: 0/1min", the older images wording)
            // is no access too.
            if (message_retry == Some(Duration::ZERO)
                && (zero_seconds_in_words(lower) || zero_limit(lower)))
                || (message_retry.is_none() && zero_limit(lower))
            {
                return denied(AccessDenial::TierAccess);
            }
            // Images first: an images-per-minute 429 may still say `type: "requests"`.
            let scope = if lower.contains("(ipm)") || images_per_min(lower) {
                RateLimitScope::Images
            } else if has(etype, "requests")
                || lower.contains("(rpm)")
                || lower.contains("requests per min")
            {
                RateLimitScope::Requests
            } else if has(etype, "tokens")
                || lower.contains("(tpm)")
                || lower.contains("tokens per min")
            {
                RateLimitScope::Tokens
            } else {
                RateLimitScope::Unknown
            };
            ErrorKind::RateLimited { scope }
        }
        400 | 422
            if [
                "unknown_parameter",
                "unsupported_parameter",
                "unsupported_value",
            ]
            .iter()
            .any(|c| has(code, c))
                || unsupported_wording(lower) =>
        {
            not_found(NotFoundKind::UnsupportedParameter)
        }
        s if s >= 500 => ErrorKind::Server,
        s if (400..500).contains(&s) => ErrorKind::InvalidRequest,
        // 1xx/3xx are not errors a client can act on; treat as a server fault.
        _ => ErrorKind::Server,
    }
}

/// Whether the message says "0 seconds" / "0.0 seconds" in words: the tier-denial wording
/// ("try again after 0.0 seconds"). A Go-style "try again in 0s" in an RPM/TPM message is a
/// real limit whose window is about to reset, and must not cool the provider down for
/// minutes.
fn zero_seconds_in_words(lower: &str) -> bool {
    let words: Vec<&str> = lower.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| w[1].starts_with("second") && w[0].parse::<f64>().is_ok_and(|n| n == 0.0))
}

/// Whether a 429 message names an images-per-minute limit: "images per min (IPM)", "images
/// per minute", or "input-images per min" (the input-image limit of edits is an images limit
/// too).
fn images_per_min(lower: &str) -> bool {
    lower.contains("images per min")
}

/// Whether an RPM/TPM message states a limit of zero ("Limit 0, Used 0, Requested 1"): the
/// account's tier has no access at all.
fn zero_limit(lower: &str) -> bool {
    let words: Vec<&str> = lower.split_whitespace().collect();
    words.windows(2).any(|w| {
        w[0].trim_end_matches(':') == "limit"
            && w[1]
                .trim_end_matches([',', '.', ';'])
                // "Limit: 0/1min" (older wording): the number before the period.
                .split('/')
                .next()
                .unwrap_or("")
                .parse::<f64>()
                .is_ok_and(|n| n == 0.0)
    })
}

fn non_empty(m: &Option<String>) -> Option<String> {
    m.clone().filter(|s| !s.trim().is_empty())
}

fn unsupported_wording(lower: &str) -> bool {
    lower.contains("unknown parameter")
        || lower.contains("unrecognized request argument")
        || ((lower.contains("parameter") || lower.contains("value"))
            && (lower.contains("is not supported") || lower.contains("not supported with")))
}

/// Classifies a transport failure (no HTTP response, or the body could not be read).
pub fn classify_transport(provider: &str, err: &reqwest::Error) -> ProviderError {
    let kind = if err.is_timeout() {
        // A connect-phase timeout means the request never left: nothing was done or billed.
        ErrorKind::Timeout {
            sent: !err.is_connect(),
        }
    } else if err.is_decode() && !body_read_failure(err) {
        ErrorKind::Decode
    } else {
        // Refused, reset, closed mid-body, incomplete message, TLS failure: all "could not
        // talk to it", which the router treats alike.
        ErrorKind::Connect
    };
    let mut message = describe(err);
    if message.is_empty() {
        message = "transport error".to_string();
    }
    let mut e = ProviderError::new(provider, kind, message);
    if let Some(s) = err.status() {
        e = e.with_status(s.as_u16());
    }
    e
}

/// reqwest reports a connection that closed mid-body from `bytes()` as a *decode* error
/// wrapping a body error; that is a transport failure, not a bad payload.
fn body_read_failure(err: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_body())
            || s.is::<std::io::Error>()
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error and its source chain in one line (no key can appear: keys only travel in
/// headers, which reqwest never prints).
fn describe(err: &reqwest::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_retry_forms() {
        let s = |x: f64| Some(Duration::from_secs_f64(x));
        assert_eq!(
            retry_after_from_message("Please try again in 12s."),
            s(12.0)
        );
        assert_eq!(
            retry_after_from_message("slow down and try again after 51.84 seconds."),
            s(51.84)
        );
        assert_eq!(
            retry_after_from_message("Please retry after 2 seconds. See"),
            s(2.0)
        );
        assert_eq!(retry_after_from_message("try again in 1m30s"), s(90.0));
        assert_eq!(retry_after_from_message("try again in 20ms"), s(0.02));
        assert_eq!(
            retry_after_from_message("try again after 0.0 seconds"),
            s(0.0)
        );
        assert_eq!(retry_after_from_message("nothing here"), None);
        // Years, and more than a Duration holds: a value or nothing, never a panic.
        assert!(retry_after_from_message("try again after 999999999 hours").is_some());
        assert_eq!(
            retry_after_from_message("try again after 1e400 seconds"),
            None
        );
    }

    #[test]
    fn zero_seconds_wording() {
        assert!(zero_seconds_in_words(
            "please slow down and try again after 0.0 seconds."
        ));
        assert!(zero_seconds_in_words("try again in 0 seconds"));
        assert!(!zero_seconds_in_words("please try again in 0s."));
        assert!(!zero_seconds_in_words("try again after 10 seconds"));
        assert!(zero_limit(
            "on requests per min (rpm): limit 0, used 0, requested 1."
        ));
        assert!(!zero_limit(
            "on requests per min (rpm): limit 5, used 5, requested 1."
        ));
        assert!(zero_limit(
            "rate limit exceeded for images per minute in organization org-x. limit: 0/1min. current: 1/1min."
        ));
        assert!(!zero_limit("limit: 5/1min. current: 6/1min."));
    }

    #[test]
    fn snippet_is_short() {
        let body = "<html>".repeat(100);
        assert!(snippet(body.as_bytes()).chars().count() <= SNIPPET_CHARS + 1);
    }
}
