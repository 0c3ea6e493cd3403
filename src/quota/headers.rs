//! Rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, `retry-after`
//! (seconds or HTTP date), `retry-after-ms`, Azure's `x-ms-retry-after-ms`, and the request id.
//!
//! Reset values are Go-style durations (`1s`, `6m0s`, `20ms`, `1m30.5s`). Every header is
//! optional: OpenAI omits them on some image responses and Azure sends only `remaining-*`.
//! Go durations are parsed here by hand because no maintained crate parses Go's format
//! exactly (`humantime` rejects `1m30.5s` and `6m0s`-style compounds with fractions).

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName};
use serde::Serialize;

// The names as `HeaderName` constants: a lookup by constant skips parsing and lower-casing the
// name on every response (eleven lookups per answer; issue 16).
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const APIM_REQUEST_ID: HeaderName = HeaderName::from_static("apim-request-id");

/// Rate-limit state a provider reported on one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RateLimitHeaders {
    /// `x-ratelimit-limit-requests`.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-limit-tokens`.
    pub limit_tokens: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-requests`.
    pub reset_requests: Option<Duration>,
    /// `x-ratelimit-reset-tokens`.
    pub reset_tokens: Option<Duration>,
    /// `retry-after-ms`, `x-ms-retry-after-ms` or `retry-after` (in that order of preference).
    pub retry_after: Option<Duration>,
}

impl RateLimitHeaders {
    /// Reads the headers (missing or malformed values are `None`).
    pub fn from_headers(h: &HeaderMap) -> Self {
        // The clock is read only for an HTTP-date `retry-after` (rare), not on every answer.
        Self::read(h, SystemTime::now)
    }

    /// As [`from_headers`](Self::from_headers) with `now` for HTTP-date `retry-after` values.
    pub fn from_headers_at(h: &HeaderMap, now: SystemTime) -> Self {
        Self::read(h, || now)
    }

    fn read(h: &HeaderMap, now: impl FnOnce() -> SystemTime) -> Self {
        // One pass over the (few) names present instead of eleven hashed lookups when none of
        // the headers read here is there (a proxy or server that sends no rate-limit headers;
        // issue 16). The same result either way: every field below is `None` then.
        if !h.keys().any(|k| is_rate_limit_name(k.as_str())) {
            return Self::default();
        }
        let num =
            |name: &HeaderName| header_str(h, name).and_then(|v| v.trim().parse::<u64>().ok());
        let dur = |name: &HeaderName| header_str(h, name).and_then(parse_go_duration);
        Self {
            limit_requests: num(&LIMIT_REQUESTS),
            limit_tokens: num(&LIMIT_TOKENS),
            remaining_requests: num(&REMAINING_REQUESTS),
            remaining_tokens: num(&REMAINING_TOKENS),
            reset_requests: dur(&RESET_REQUESTS),
            reset_tokens: dur(&RESET_TOKENS),
            retry_after: retry_after_with(h, now),
        }
    }

    /// Whether no header was present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Whether `name` (lower case, as `HeaderName` keeps it) is one of the headers
/// [`RateLimitHeaders`] reads: the `x-ratelimit-*` family, `retry-after`, `retry-after-ms` or
/// `x-ms-retry-after-ms`. Matching more than is read only costs the full lookups.
fn is_rate_limit_name(name: &str) -> bool {
    name.starts_with("x-ratelimit-")
        || name.starts_with("retry-after")
        || name == MS_RETRY_AFTER_MS.as_str()
}

fn header_str<'a>(h: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The retry delay a response asks for: `retry-after-ms`, then `x-ms-retry-after-ms`, then
/// `retry-after` as (fractional) seconds or an HTTP date (relative to `now`).
///
/// Only a delay above zero counts (as in openai-python): `retry-after: 0`, a negative value
/// or an HTTP date already past give `None`, so callers fall back to their own back-off
/// instead of retrying a rate-limited provider in a tight loop.
///
/// ```
/// use image_router::quota::headers::retry_after;
/// use reqwest::header::{HeaderMap, HeaderValue};
/// use std::time::{Duration, SystemTime};
/// let mut h = HeaderMap::new();
/// h.insert("retry-after", HeaderValue::from_static("2"));
/// assert_eq!(retry_after(&h, SystemTime::now()), Some(Duration::from_secs(2)));
/// h.insert("retry-after", HeaderValue::from_static("0"));
/// assert_eq!(retry_after(&h, SystemTime::now()), None);
/// ```
pub fn retry_after(h: &HeaderMap, now: SystemTime) -> Option<Duration> {
    retry_after_with(h, || now)
}

/// [`retry_after`] reading the clock only for an HTTP date.
fn retry_after_with(h: &HeaderMap, now: impl FnOnce() -> SystemTime) -> Option<Duration> {
    for name in [&RETRY_AFTER_MS, &MS_RETRY_AFTER_MS] {
        if let Some(ms) = header_str(h, name).and_then(|v| v.trim().parse::<f64>().ok()) {
            if ms.is_finite() && ms > 0.0 && ms < 1e12 {
                // A positive value below a nanosecond rounds to zero: no delay at all.
                if let Ok(d) = Duration::try_from_secs_f64(ms / 1000.0) {
                    if !d.is_zero() {
                        return Some(d);
                    }
                }
            }
        }
    }
    let v = header_str(h, &reqwest::header::RETRY_AFTER)?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs > 0.0 && secs < 1e9 {
            return Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero());
        }
        return None;
    }
    let at = httpdate::parse_http_date(v).ok()?;
    at.duration_since(now()).ok().filter(|d| !d.is_zero())
}

/// The request id: `x-request-id`, else Azure's `apim-request-id`.
pub fn request_id(h: &HeaderMap) -> Option<String> {
    header_str(h, &X_REQUEST_ID)
        .or_else(|| header_str(h, &APIM_REQUEST_ID))
        .map(str::to_string)
}

/// Parses a Go duration string (`1s`, `6m0s`, `20ms`, `1m30.5s`, `1h2m`, `500us`, `0`).
///
/// ```
/// use image_router::quota::headers::parse_go_duration;
/// use std::time::Duration;
/// assert_eq!(parse_go_duration("1m30.5s"), Some(Duration::from_millis(90_500)));
/// assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
/// assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_go_duration("soon"), None);
/// ```
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        any = true;
    }
    if !any || !total.is_finite() || total > 1e10 {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Formats a duration the way OpenAI's reset headers do (`1s`, `6m0s`, `20ms`, `1m30.5s`).
pub fn format_go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total = d.as_secs_f64();
    let hours = (total / 3600.0).floor();
    let minutes = ((total - hours * 3600.0) / 60.0).floor();
    let secs = total - hours * 3600.0 - minutes * 60.0;
    let secs = (secs * 1000.0).round() / 1000.0;
    let sec_str = if secs.fract() == 0.0 {
        format!("{}s", secs as u64)
    } else {
        let t = format!("{secs:.3}");
        format!("{}s", t.trim_end_matches('0').trim_end_matches('.'))
    };
    if hours > 0.0 {
        format!("{}h{}m{sec_str}", hours as u64, minutes as u64)
    } else if minutes > 0.0 {
        format!("{}m{sec_str}", minutes as u64)
    } else {
        sec_str
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn absurd_hints_parse_without_overflow() {
        let now = SystemTime::now();
        let with = |k: &'static str, v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(k, HeaderValue::from_static(v));
            retry_after(&h, now)
        };
        // Out of range: no hint rather than a panic or a wrapped value.
        assert_eq!(with("retry-after-ms", "1e300"), None);
        assert_eq!(with("retry-after-ms", "inf"), None);
        assert_eq!(with("retry-after", "1e300"), None);
        assert_eq!(with("retry-after", "-5"), None);
        // Long but representable: parsed (providers cap it, see `providers::Sanitize`).
        assert!(with("retry-after-ms", "999999999999").is_some());
        assert!(with("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT").is_some());
        assert!(parse_go_duration("2777777h").is_some());
        assert_eq!(parse_go_duration("99999999999999999999h"), None);
        assert_eq!(parse_go_duration("1e400s"), None);
    }

    /// The early return for answers without rate-limit headers must not skip any header that
    /// is read: each one alone, among unrelated headers, still reaches its field.
    #[test]
    fn every_read_header_alone_is_still_read() {
        let now = SystemTime::now();
        let read = |name: Option<(&'static str, &'static str)>| {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h.insert("x-request-id", HeaderValue::from_static("req_1"));
            if let Some((k, v)) = name {
                h.insert(k, HeaderValue::from_static(v));
            }
            RateLimitHeaders::from_headers_at(&h, now)
        };
        assert!(read(None).is_empty());
        let some = |k, v| read(Some((k, v)));
        assert_eq!(
            some("x-ratelimit-limit-requests", "5").limit_requests,
            Some(5)
        );
        assert_eq!(some("x-ratelimit-limit-tokens", "6").limit_tokens, Some(6));
        assert_eq!(
            some("x-ratelimit-remaining-requests", "7").remaining_requests,
            Some(7)
        );
        assert_eq!(
            some("x-ratelimit-remaining-tokens", "8").remaining_tokens,
            Some(8)
        );
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(
            some("x-ratelimit-reset-requests", "1s").reset_requests,
            secs(1)
        );
        assert_eq!(some("x-ratelimit-reset-tokens", "2s").reset_tokens, secs(2));
        assert_eq!(some("retry-after", "3").retry_after, secs(3));
        assert_eq!(some("retry-after-ms", "4000").retry_after, secs(4));
        assert_eq!(some("x-ms-retry-after-ms", "5000").retry_after, secs(5));
    }
}
