//! Structured random inputs for every parser of provider input and for the config loader.
//!
//! Why this exists: a provider, a proxy in front of it or a hand-edited config file can send
//! the router anything, and a panic there takes the caller's task down with it. Each parser is
//! fed inputs built around its real format (the real bodies and headers of the published API,
//! mutated: values swapped for other JSON types, huge numbers, empty strings, non-UTF-8 bytes,
//! deep nesting), not only random bytes, because random bytes almost never reach the code
//! behind the first `serde_json::from_slice`. Every property asserts "no panic" plus an
//! invariant of the parser (a retry hint is bounded, a classified error keeps its status and a
//! message, a config error names a key).
//!
//! Why proptest and not `cargo fuzz`: the crate builds on stable Rust only, and libFuzzer
//! needs nightly plus a separate harness crate; proptest runs inside `cargo test`, shrinks a
//! failure to a small input and needs no new dependency.
//!
//! Why through the providers for some parsers: the success-body decoding
//! (`providers/decode.rs`: base64, data URLs, image sniffing) and the chat-mode answer
//! parsing (`providers/compatible.rs`) live in private modules, so they are driven through
//! the public [`Provider::generate`] against a loopback mock server whose answer each case
//! sets. Error classification, headers, retry hints, `Usage` and the config loader are
//! called directly.
//!
//! Run length: `FUZZ_CASES` (default [`DEFAULT_CASES`]) is the number of cases per direct
//! parser; the properties that make an HTTP round trip per case run a tenth of it. A long run:
//! `FUZZ_CASES=200000 cargo test --all-features --lib fuzz::`. `FUZZ_TRACE=1` prints each
//! HTTP case before it is sent (to find an input that aborts the process, e.g. by overflowing
//! the stack, which proptest cannot shrink).
//!
//! Every finding is kept as a plain test at the end of this file with the smallest input
//! found (all five are fixed: two usage overflows, a sub-nanosecond retry hint read as no
//! delay, and two config errors with an empty message or field).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use crate::config::RouterConfig;
use crate::error::ErrorKind;
use crate::provider::{CallContext, Provider};
use crate::providers::classify::{classify_at, retry_after_from_message};
use crate::providers::{Compatible, CompatibleMode, OpenAi};
use crate::quota::headers::{self, RateLimitHeaders};
use crate::quota::usage::Usage;
use crate::request::{GenerateRequest, OutputFormat};
use crate::response::ImagesResponse;

/// Cases per direct parser when `FUZZ_CASES` is not set: a few seconds each on a loaded
/// 2-core machine.
const DEFAULT_CASES: u32 = 2_000;

/// Longest delay any parser may return: `parse_go_duration` caps at 1e10 s and the message
/// parser scales at most 1e9 hours; an HTTP date can lie at most in year 9999.
const MAX_HINT_SECS: f64 = 3.6e12;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Findings are kept as explicit tests below, not in a regressions file.
fn config_with(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn direct() -> ProptestConfig {
    config_with(cases())
}

fn over_http() -> ProptestConfig {
    config_with((cases() / 10).max(50))
}

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/// Numbers as text around the real formats: small, huge, fractional, signed, exponent, junk.
fn number_text() -> BoxedStrategy<String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        (0u32..100_000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
        any::<f64>().prop_map(|f| f.to_string()),
        Just("2777777".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("1e309".to_string()),
        Just("-1".to_string()),
        Just("-0.0".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just(String::new()),
        Just(".".to_string()),
        Just("0.0".to_string()),
        "[0-9.eE+-]{1,12}",
    ]
    .boxed()
}

/// A unit as Go writes it, or something close to one.
fn unit_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ns"),
        Just("us"),
        Just("µs"),
        Just("μs"),
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just(""),
        Just("d"),
        Just("S"),
        Just("sec"),
        Just("seconds"),
        Just("mss"),
    ]
    .prop_map(str::to_string)
}

/// Go-style durations (`1s`, `6m0s`, `1m30.5s`, `2777777h`) and their near misses.
fn go_duration_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::collection::vec((number_text(), unit_text()), 1..5)
            .prop_map(|parts| parts.into_iter().map(|(n, u)| n + &u).collect::<String>()),
        2 => (0u64..100, 0u64..60, 0u64..60, 0u32..1000)
            .prop_map(|(h, m, s, ms)| format!("{h}h{m}m{s}.{ms}s")),
        1 => Just("2777777h".to_string()),
        1 => Just("6ms".to_string()),
        1 => Just("1m30s".to_string()),
        1 => Just("0".to_string()),
        1 => "[+-]?[0-9a-zµ. ]{0,16}",
        1 => any::<String>(),
    ]
    .boxed()
}

/// A printable-ish string with the characters the parsers split on.
fn word() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-zA-Z0-9 _.,:;!?()\\[\\]{}\"'/-]{0,24}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
        Just(String::new()),
    ]
    .boxed()
}

/// A JSON value of any type, nested a little.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(word(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// `depth` levels of `{"error": ...}` or `[...]` around a value (serde_json stops at 128).
fn nested(depth: usize, object: bool) -> Vec<u8> {
    let (open, close) = if object {
        ("{\"error\":", "}")
    } else {
        ("[", "]")
    };
    let mut s = open.repeat(depth);
    s.push_str("\"x\"");
    s.push_str(&close.repeat(depth));
    s.into_bytes()
}

/// Error bodies as OpenAI, Azure and proxies send them (`/work/shared/api-facts.md`).
fn real_error_bodies() -> Vec<Value> {
    vec![
        json!({"error": {"message": "Incorrect API key provided: sk-abc***. You can find your API key at https://platform.openai.com/account/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
        json!({"error": {"message": "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 12s.", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
        json!({"error": {"message": "You've exceeded the rate limit, please slow down and try again after 51.84 seconds.", "type": "image_generation_user_error", "param": null, "code": "rate_limit_exceeded"}}),
        json!({"error": {"message": "Rate limit exceeded. Please try again after 0.0 seconds.", "type": "image_generation_user_error", "param": null, "code": null}}),
        json!({"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}),
        json!({"error": {"message": "Billing hard limit has been reached", "type": "invalid_request_error", "param": null, "code": "billing_hard_limit_reached"}}),
        json!({"error": {"message": "Your organization must be verified to use the model `gpt-image-1`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.", "type": "invalid_request_error", "param": null, "code": null}}),
        json!({"error": {"message": "Country, region, or territory not supported", "type": "request_forbidden", "param": null, "code": "unsupported_country_region_territory"}}),
        json!({"error": {"message": "Your request was rejected by the safety system. safety_violations=[sexual].", "type": "image_generation_user_error", "param": null, "code": "moderation_blocked"}}),
        json!({"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}),
        json!({"error": {"message": "The model `gpt-image-9` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}),
        json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}),
        json!({"error": {"code": "RateLimitReached", "message": "Your requests to gpt-image-1 have exceeded the token rate limit. Please retry after 1m30s."}}),
        json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
        json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}}),
        json!({"error": {"code": "content_policy_violation", "message": "Your request was rejected as a result of our safety system.", "inner_error": {"code": "ResponsibleAIPolicyViolation", "content_filter_results": {"sexual": {"filtered": true, "severity": "medium"}, "violence": {"filtered": false, "severity": "safe"}}}}}),
        json!({"error": {"code": "contentFilter", "message": "The response was filtered.", "innererror": {"content_filter_result": {"hate": {"filtered": true}}}}}),
        json!({"error": {"code": "403", "message": "Your resource has been temporarily blocked because we detected behavior that may violate our content policy."}}),
        json!({"error": {"code": "BadRequest", "message": "The api-version '2023-01-01' is not supported."}}),
        json!({"error": "upstream quota exhausted, try again in 20ms"}),
        json!({"message": "Too many requests, retry in 6ms", "code": 429}),
    ]
}

/// One mutation of a JSON value: a field replaced by any JSON, removed, or a new one added.
fn mutate(mut v: Value, path: &[usize], replacement: Value, op: u8) -> Value {
    fn pick<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
        let mut cur = v;
        for i in path {
            let key = match &*cur {
                Value::Object(m) if !m.is_empty() => match m.keys().nth(i % m.len()) {
                    Some(k) if m[k].is_object() => k.clone(),
                    _ => break,
                },
                _ => break,
            };
            cur = &mut cur[key.as_str()];
        }
        cur
    }
    let target = pick(&mut v, path);
    if let Value::Object(m) = target {
        let key = m
            .keys()
            .nth(path.last().copied().unwrap_or(0) % m.len().max(1))
            .cloned();
        match (op % 3, key) {
            (0, Some(k)) => {
                m.insert(k, replacement);
            }
            (1, Some(k)) => {
                m.remove(&k);
            }
            _ => {
                m.insert(format!("k{}", path.len()), replacement);
            }
        }
    } else {
        *target = replacement;
    }
    v
}

/// Error bodies: real ones mutated (up to three times), with a retry phrase spliced into the
/// message, random JSON, HTML, deep nesting, non-UTF-8 and random bytes.
fn error_body() -> BoxedStrategy<Vec<u8>> {
    let real = real_error_bodies();
    let n = real.len();
    let mutated = (
        0..n,
        prop::collection::vec(
            (
                prop::collection::vec(0usize..8, 1..4),
                any_json(),
                any::<u8>(),
            ),
            0..4,
        ),
    )
        .prop_map(move |(i, muts)| {
            let mut v = real[i].clone();
            for (path, rep, op) in muts {
                v = mutate(v, &path, rep, op);
            }
            serde_json::to_vec(&v).unwrap_or_default()
        });
    let real2 = real_error_bodies();
    let with_hint = (0..n, retry_message()).prop_map(move |(i, msg)| {
        let mut v = real2[i].clone();
        if let Some(e) = v.get_mut("error").and_then(Value::as_object_mut) {
            e.insert("message".into(), Value::String(msg));
        }
        serde_json::to_vec(&v).unwrap_or_default()
    });
    prop_oneof![
        6 => mutated,
        3 => with_hint,
        1 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        1 => Just(b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec()),
        1 => (1usize..400, any::<bool>()).prop_map(|(d, o)| nested(d, o)),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => (word(), prop::collection::vec(0x80u8..=0xff, 1..8)).prop_map(|(w, bad)| {
            let mut b = format!("{{\"error\":{{\"message\":\"{w}").into_bytes();
            b.extend(bad);
            b.extend_from_slice(b"\",\"code\":\"rate_limit_exceeded\"}}");
            b
        }),
        1 => (word(), 0usize..100_000).prop_map(|(w, n)| {
            format!("{{\"error\":{{\"message\":\"{}\"}}}}", w.repeat(n / w.len().max(1)).replace(['"', '\\'], "")).into_bytes()
        }),
        1 => Just(Vec::new()),
    ]
    .boxed()
}

/// Messages with a retry hint in every wording the parser knows, and near misses.
fn retry_message() -> BoxedStrategy<String> {
    let markers = prop_oneof![
        Just("Please try again in "),
        Just("try again after "),
        Just("Please retry after "),
        Just("retry in "),
        Just("TRY AGAIN IN "),
        Just("try again in"),
        Just("again after "),
    ];
    let amount = prop_oneof![
        go_duration_text(),
        (
            number_text(),
            prop_oneof![
                Just(" seconds"),
                Just(" second"),
                Just(" ms"),
                Just(" milliseconds"),
                Just(" minutes"),
                Just(" min"),
                Just(" m"),
                Just(" hours"),
                Just(" h"),
                Just(""),
                Just(" İ"),
                Just("\u{0}")
            ]
        )
            .prop_map(|(n, u)| format!("{n}{u}")),
    ];
    (word(), markers, amount, word())
        .prop_map(|(pre, marker, amount, post)| format!("{pre}{marker}{amount}.{post}"))
        .boxed()
}

/// Values for one rate-limit or retry header, around the real formats.
fn header_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => number_text().prop_map(String::into_bytes),
        3 => go_duration_text().prop_map(String::into_bytes),
        // httpdate formats years up to 9999 only.
        2 => (0u64..253_402_300_799).prop_map(|s| {
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s)).into_bytes()
        }),
        1 => Just(b"Wed, 21 Oct 2015 07:28:00 GMT".to_vec()),
        1 => Just(b"Fri, 31 Dec 9999 23:59:59 GMT".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => (number_text(), prop::collection::vec(0x80u8..=0xff, 1..4)).prop_map(|(n, b)| {
            let mut v = n.into_bytes();
            v.extend(b);
            v
        }),
    ]
    .boxed()
}

const HEADER_NAMES: [&str; 11] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "x-request-id",
    "apim-request-id",
];

/// A header map with some of the real headers (repeats allowed), invalid bytes dropped as
/// an HTTP stack would refuse them.
fn header_map() -> BoxedStrategy<Vec<(&'static str, Vec<u8>)>> {
    prop::collection::vec(
        (0..HEADER_NAMES.len(), header_value()).prop_map(|(i, v)| (HEADER_NAMES[i], v)),
        0..8,
    )
    .boxed()
}

fn to_header_map(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(HeaderName::from_static(name), v);
        }
    }
    h
}

fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

fn bounded(d: Duration) -> bool {
    d.as_secs_f64().is_finite() && d.as_secs_f64() <= MAX_HINT_SECS
}

// ---------------------------------------------------------------------------------------------
// Headers and retry hints
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Error classification
// ---------------------------------------------------------------------------------------------

fn status() -> BoxedStrategy<u16> {
    prop_oneof![
        3 => prop::sample::select(vec![400u16, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504]),
        1 => 100u16..1000,
        1 => any::<u16>(),
    ]
    .boxed()
}

/// Statuses a server can send (wiremock refuses others by panicking in its server thread,
/// which would break the pooled connection of the next case).
fn http_status() -> BoxedStrategy<u16> {
    prop_oneof![
        3 => prop::sample::select(vec![400u16, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504]),
        1 => 200u16..600,
    ]
    .boxed()
}

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

// ---------------------------------------------------------------------------------------------
// Usage and the images response
// ---------------------------------------------------------------------------------------------

/// A number as JSON of any type a proxy might send.
fn json_number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (0u64..100_000).prop_map(Value::from),
        2 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => Just(json!("1056")),
        1 => Just(Value::Null),
        1 => Just(json!(1e30)),
        1 => any_json(),
    ]
    .boxed()
}

fn details() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (json_number(), json_number())
            .prop_map(|(t, i)| json!({"text_tokens": t, "image_tokens": i})),
        1 => any_json(),
    ]
    .boxed()
}

/// A `usage` object around the real one: each field present or not, of any type.
fn usage_json() -> BoxedStrategy<Value> {
    (
        prop::option::of(json_number()),
        prop::option::of(details()),
        prop::option::of(json_number()),
        prop::option::of(details()),
        prop::option::of(json_number()),
        prop::option::of((word(), any_json())),
    )
        .prop_map(|(it, itd, ot, otd, tt, extra)| {
            let mut m = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_string(), v);
                }
            };
            put("input_tokens", it);
            put("input_tokens_details", itd);
            put("output_tokens", ot);
            put("output_tokens_details", otd);
            put("total_tokens", tt);
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
        .boxed()
}

proptest! {
    #![proptest_config(direct())]

    /// `usage` of any shape: parsing never panics, what parses round-trips, and totals add.
    #[test]
    fn usage(a in usage_json(), b in usage_json()) {
        let parsed_a = serde_json::from_value::<Usage>(a.clone());
        let parsed_b = serde_json::from_value::<Usage>(b);
        if let Ok(u) = &parsed_a {
            let back = serde_json::to_value(u).ok().and_then(|v| serde_json::from_value::<Usage>(v).ok());
            prop_assert_eq!(back.as_ref(), Some(u));
            let out = u.output_image_tokens();
            prop_assert!(u.output_tokens_details.map_or(out == u.output_tokens, |d| out == d.image_tokens));
        }
        if let (Ok(mut x), Ok(y)) = (parsed_a, parsed_b) {
            // Totals saturate: a provider's numbers never overflow.
            let before = x.input_tokens;
            x.add(&y);
            prop_assert_eq!(x.input_tokens, before.saturating_add(y.input_tokens));
        }
        // The same usage inside a whole images response.
        let body = json!({"created": 1, "data": [{"b64_json": "AAAA"}], "usage": a});
        let _ = serde_json::from_value::<ImagesResponse>(body);
    }

    /// Whole `ImagesResponse` bodies around the real shape, any JSON and raw bytes: parsing
    /// never panics, and what parses serializes back to the same response.
    #[test]
    fn images_response(
        created in json_number(),
        items in prop::collection::vec(prop_oneof![
            (prop::option::of(word()), prop::option::of(word()), prop::option::of(word()))
                .prop_map(|(b, u, r)| json!({"b64_json": b, "url": u, "revised_prompt": r})),
            any_json(),
        ], 0..3),
        usage in prop::option::of(usage_json()),
        echo in any_json(),
        v in any_json(),
        raw in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let body = json!({"created": created, "data": items, "usage": usage, "output_format": echo, "size": "1024x1024"});
        let parsed = [serde_json::from_value::<ImagesResponse>(body), serde_json::from_value(v)];
        for r in parsed.into_iter().flatten() {
            let back = serde_json::to_value(&r).ok().and_then(|v| serde_json::from_value::<ImagesResponse>(v).ok());
            prop_assert_eq!(back.as_ref(), Some(&r));
        }
        let _ = serde_json::from_slice::<ImagesResponse>(&raw);
    }

    /// Image sniffing: the magic numbers are recognised at the start of any bytes.
    #[test]
    fn sniffing(tail in prop::collection::vec(any::<u8>(), 0..32), any_bytes in prop::collection::vec(any::<u8>(), 0..16)) {
        let _ = OutputFormat::sniff(&any_bytes);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(&tail);
        prop_assert_eq!(OutputFormat::sniff(&png), Some(OutputFormat::Png));
        let mut jpeg = vec![0xFF, 0xD8, 0xFF];
        jpeg.extend(&tail);
        prop_assert_eq!(OutputFormat::sniff(&jpeg), Some(OutputFormat::Jpeg));
    }
}

// ---------------------------------------------------------------------------------------------
// Success bodies through the providers (decode.rs, compatible.rs chat mode)
// ---------------------------------------------------------------------------------------------

/// What the mock server answers next.
#[derive(Clone, Default)]
struct Next {
    status: u16,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Scripted(Arc<Mutex<Next>>);

impl wiremock::Respond for Scripted {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let next = self.0.lock().map(|n| n.clone()).unwrap_or_default();
        let mut t = wiremock::ResponseTemplate::new(next.status).set_body_bytes(next.body);
        for (name, value) in next.headers {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                t = t.insert_header(HeaderName::from_static(name), v);
            }
        }
        t
    }
}

/// A runtime, a loopback mock server answering every request with [`Next`], and its URL.
fn mock_server() -> (
    tokio::runtime::Runtime,
    wiremock::MockServer,
    Arc<Mutex<Next>>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("test runtime: {e}"));
    let next = Arc::new(Mutex::new(Next::default()));
    let server = rt.block_on(async {
        let s = wiremock::MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        mount(&s, &next).await;
        s
    });
    (rt, server, next)
}

/// Mounts the two answers: downloads (`url` items) get a PNG header and a few bytes, every
/// POST gets [`Next`].
async fn mount(server: &wiremock::MockServer, next: &Arc<Mutex<Next>>) {
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_bytes(b"\x89PNG\r\n\x1a\nrest".to_vec()),
        )
        .mount(server)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(Scripted(next.clone()))
        .mount(server)
        .await;
}

/// Cases between two remounts of the mock: a mounted wiremock mock keeps every request it
/// matched (even with recording disabled), about 5 KB a case, which would otherwise make a
/// long run's memory grow with its length.
const REMOUNT_EVERY: u32 = 1_000;

/// Base64 forms a provider might send for `bytes`: standard, unpadded, URL-safe, wrapped.
fn b64_forms(bytes: &[u8], form: u8) -> String {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    match form % 5 {
        0 => STANDARD.encode(bytes),
        1 => STANDARD_NO_PAD.encode(bytes),
        2 => URL_SAFE.encode(bytes),
        3 => URL_SAFE_NO_PAD.encode(bytes),
        _ => STANDARD
            .encode(bytes)
            .as_bytes()
            .chunks(7)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n"),
    }
}

/// Image bytes: real magic numbers (PNG, JPEG, WebP, GIF, AVIF) or anything, possibly empty.
fn image_bytes() -> BoxedStrategy<Vec<u8>> {
    let magic = prop::sample::select(vec![
        b"\x89PNG\r\n\x1a\n".to_vec(),
        vec![0xFF, 0xD8, 0xFF, 0xE0],
        b"RIFF\0\0\0\0WEBPVP8 ".to_vec(),
        b"GIF89a".to_vec(),
        b"\0\0\0\x1cftypavif".to_vec(),
        Vec::new(),
    ]);
    (magic, prop::collection::vec(any::<u8>(), 0..48))
        .prop_map(|(mut m, t)| {
            m.extend(t);
            m
        })
        .boxed()
}

/// One `data[]` item: base64 in some form, a data URL, a download URL, nothing, or junk.
fn image_item(base: String) -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (image_bytes(), any::<u8>()).prop_map(|(b, f)| json!({"b64_json": b64_forms(&b, f)})),
        1 => (image_bytes(), any::<u8>())
            .prop_map(|(b, f)| json!({"url": format!("data:image/png;base64,{}", b64_forms(&b, f))})),
        1 => Just(json!({"url": format!("{base}/files/img_1.png"), "revised_prompt": "x"})),
        1 => word().prop_map(|w| json!({"b64_json": w})),
        1 => any_json().prop_map(|v| json!({"b64_json": v, "url": null})),
        1 => Just(json!({})),
        1 => any_json(),
    ]
}

/// Standard padded base64 decodes to exactly its bytes (what the property checks).
fn standard_b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Runs `cases` generations against the mock answering what `strategy` makes.
fn over_mock<S, F>(strategy: S, provider: F, check_kinds: bool)
where
    S: Strategy<Value = (u16, Vec<(&'static str, Vec<u8>)>, Vec<u8>)>,
    F: Fn(&str) -> Box<dyn Provider>,
{
    let (rt, server, next) = mock_server();
    let p = provider(&server.uri());
    let mut runner = TestRunner::new(over_http());
    let served = std::cell::Cell::new(0u32);
    let result = runner.run(&strategy, |(status, headers, body)| {
        served.set(served.get() + 1);
        if served.get().is_multiple_of(REMOUNT_EVERY) {
            rt.block_on(async {
                server.reset().await;
                mount(&server, &next).await;
            });
        }
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!(
                "CASE {status} {headers:?} {}",
                String::from_utf8_lossy(&body)
            );
        }
        if let Ok(mut n) = next.lock() {
            *n = Next {
                status,
                headers,
                body: body.clone(),
            };
        }
        let ctx = CallContext::new(Duration::from_secs(10));
        let req = GenerateRequest::new("a lighthouse").model("gpt-image-1");
        let out = rt.block_on(p.generate(&req, &ctx));
        match out {
            Ok(resp) => {
                prop_assert!(!resp.images.is_empty());
                prop_assert!((200..300).contains(&status), "status {status} succeeded");
                for img in &resp.images {
                    prop_assert!(!img.bytes.is_empty());
                }
                // A single standard-base64 item decodes to exactly its bytes.
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some([item]) = v["data"].as_array().map(Vec::as_slice) {
                    if let Some(b) = item["b64_json"].as_str().and_then(standard_b64) {
                        prop_assert_eq!(resp.images[0].bytes.as_ref(), b.as_slice());
                    }
                }
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                if check_kinds && (200..300).contains(&status) {
                    prop_assert_eq!(&e.kind, &ErrorKind::Decode, "{}", e.message);
                }
                if let Some(d) = e.retry_after {
                    prop_assert!(bounded(d));
                }
            }
        }
        Ok::<(), TestCaseError>(())
    });
    drop(server);
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn openai(base: &str) -> Box<dyn Provider> {
    let key = ["sk", "fuzz", "0000"].join("-");
    match OpenAi::builder()
        .api_key(key)
        .base_url(format!("{base}/v1"))
        .client(reqwest::Client::new())
        .build()
    {
        Ok(p) => Box::new(p),
        Err(e) => panic!("provider: {e}"),
    }
}

fn chat_proxy(base: &str) -> Box<dyn Provider> {
    let key = ["sk", "fuzz", "0000"].join("-");
    match Compatible::builder()
        .api_key(key)
        .base_url(format!("{base}/v1"))
        .mode(CompatibleMode::Chat)
        .client(reqwest::Client::new())
        .build()
    {
        Ok(p) => Box::new(p),
        Err(e) => panic!("provider: {e}"),
    }
}

/// Images responses around the real one, and error answers, through `OpenAi::generate`.
#[test]
fn images_bodies_through_provider() {
    let (_rt, probe, _) = mock_server();
    let base = probe.uri();
    drop(probe);
    let ok_body = (
        prop::collection::vec(image_item(base), 0..4),
        prop::option::of(usage_json()),
        prop::option::of(word()),
        any::<bool>(),
    )
        .prop_map(|(items, usage, fmt, truncate)| {
            let mut v = json!({"created": 1_750_000_000, "data": items});
            if let Some(u) = usage {
                v["usage"] = u;
            }
            if let Some(f) = fmt {
                v["output_format"] = Value::String(f);
            }
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            if truncate {
                b.truncate(b.len() / 2);
            }
            b
        });
    let strategy = prop_oneof![
        3 => (Just(200u16), header_map(), ok_body),
        1 => (http_status(), header_map(), error_body()),
    ];
    // The download URL item points at a server that is gone, so only kinds of 2xx answers
    // without such items are checked: a refused download is a connect error.
    over_mock(strategy, openai, false);
}

/// Same, with every kind checked: 2xx answers without download URLs fail only as `Decode`.
#[test]
fn images_bodies_fail_as_decode() {
    let ok_body = (
        prop::collection::vec(
            prop_oneof![
                3 => (image_bytes(), any::<u8>()).prop_map(|(b, f)| json!({"b64_json": b64_forms(&b, f)})),
                1 => (image_bytes(), any::<u8>())
                    .prop_map(|(b, f)| json!({"url": format!("data:image/png;base64,{}", b64_forms(&b, f))})),
                1 => word().prop_map(|w| json!({"b64_json": w})),
                1 => Just(json!({})),
            ],
            0..4,
        ),
        prop::option::of(usage_json()),
    )
        .prop_map(|(items, usage)| {
            let mut v = json!({"created": 1, "data": items});
            if let Some(u) = usage {
                v["usage"] = u;
            }
            serde_json::to_vec(&v).unwrap_or_default()
        });
    over_mock((Just(200u16), header_map(), ok_body), openai, true);
}

/// Chat-completion answers around the real one: the image as a data URL, a markdown image,
/// an image part, in random text; usage of any shape.
#[test]
fn chat_answers_through_provider() {
    // Text with no "http" in it, so no URL outside this machine is ever fetched.
    let text = "[a-gi-z0-9 !\\[\\]()<>.,;:'\"/_-]{0,40}";
    let content_text = move || {
        (text, image_bytes(), any::<u8>(), 0u8..4, text).prop_map(
            |(pre, bytes, form, shape, post)| {
                let data = format!("data:image/png;base64,{}", b64_forms(&bytes, form));
                match shape {
                    0 => format!("{pre}![image]({data}){post}"),
                    1 => format!("{pre} {data} {post}"),
                    2 => format!("{pre}![x]({data} \"title\"){post}"),
                    _ => format!("{pre}{post}"),
                }
            },
        )
    };
    let content = prop_oneof![
        3 => content_text().prop_map(Value::String),
        1 => (content_text(), image_bytes()).prop_map(|(t, b)| json!([
            {"type": "text", "text": t},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64_forms(&b, 0))}}
        ])),
        1 => any_json(),
    ];
    // Any token counts, up to u64::MAX: their sum saturates.
    let usage = (any::<u64>(), any::<u64>(), json_number(), any_json()).prop_map(
        |(p, c, t, junk)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t, "x": junk}),
    );
    let body = (content, prop::option::of(usage), any::<bool>(), any::<bool>()).prop_map(
        |(content, usage, with_images, truncate)| {
            let mut message = json!({"role": "assistant", "content": content});
            if with_images {
                message["images"] = json!([{"image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}, {"image_url": "data:,x"}]);
            }
            let mut v = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]});
            if let Some(u) = usage {
                v["usage"] = u;
            }
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            if truncate {
                b.truncate(b.len() / 2);
            }
            b
        },
    );
    let strategy = prop_oneof![
        4 => (Just(200u16), header_map(), body),
        1 => (http_status(), header_map(), error_body()),
    ];
    over_mock(strategy, chat_proxy, true);
}

// ---------------------------------------------------------------------------------------------
// The config loader
// ---------------------------------------------------------------------------------------------

/// Every key the loader knows, per table, with a valid value.
const ROUTER_KEYS: [(&str, &str); 12] = [
    ("strategy", "\"scored\""),
    ("timeout", "\"30s\""),
    ("deadline", "\"120s\""),
    ("max_attempts", "4"),
    ("default_model", "\"gpt-image-1\""),
    ("failover_on_content_policy", "false"),
    ("cooldown", "\"1m\""),
    ("retry_backoff", "\"500ms\""),
    ("rate_limit_wait", "\"10s\""),
    ("max_wait", "\"30s\""),
    ("budgets", "[{ usd = 5.0, per = \"day\" }]"),
    ("fallback_usd_per_image", "0.2"),
];
const BREAKER_KEYS: [(&str, &str); 11] = [
    ("consecutive_failures", "5"),
    ("failure_ratio", "0.5"),
    ("window", "\"30s\""),
    ("min_samples", "10"),
    ("cool_down", "\"10s\""),
    ("max_cool_down", "\"5m\""),
    ("long_cool_down", "\"10m\""),
    ("cool_down_multiplier", "2.0"),
    ("ramp", "\"30s\""),
    ("ramp_start", "0.1"),
    ("cheap_probe", "true"),
];
const SCORE_KEYS: [(&str, &str); 7] = [
    ("availability", "1.0"),
    ("latency", "1.0"),
    ("headroom", "1.0"),
    ("budget", "1.0"),
    ("priority", "1.0"),
    ("latency_slack", "\"100ms\""),
    ("headroom_knee", "0.05"),
];
const HEALTH_KEYS: [(&str, &str); 6] = [
    ("window", "\"60s\""),
    ("buckets", "6"),
    ("min_samples", "5"),
    ("latency_decay", "\"10s\""),
    ("idle_decay", "\"off\""),
    ("default_latency", "\"2s\""),
];
const PROVIDER_KEYS: [(&str, &str); 25] = [
    ("name", "\"p\""),
    ("kind", "\"openai\""),
    ("base_url", "\"https://api.openai.com/v1\""),
    ("endpoint", "\"https://example.openai.azure.com\""),
    ("deployment", "\"gpt-image-1\""),
    ("deployments", "{ \"gpt-image-1\" = \"img\" }"),
    ("default_deployment", "\"img\""),
    ("api_version", "\"2025-04-01-preview\""),
    ("v1_surface", "false"),
    ("api_key_env", "\"OPENAI_API_KEY\""),
    ("bearer_token_env", "\"AZURE_TOKEN\""),
    ("tier", "\"tier-2\""),
    ("rpm", "15"),
    ("tpm", "500000"),
    ("safety_margin", "0.9"),
    ("weight", "1.0"),
    ("budgets", "[{ usd = 20.0, per = \"day\" }]"),
    ("reserved_for", "[\"interactive\"]"),
    ("preferred_by", "[\"batch\"]"),
    ("organization", "\"org-1\""),
    ("project", "\"proj-1\""),
    ("models", "[\"gpt-image-1\"]"),
    ("allow_unknown_models", "false"),
    ("mode", "\"images\""),
    ("rename", "{ \"gpt-image-1\" = \"img\" }"),
];

/// A key-shaped secret pasted into a value: it must never come back in an error.
fn secret() -> String {
    ["sk", "proj", "Zq8vN3xR5tY7wB2mK4pL6sD9fG1hJ0cV"].join("-")
}

/// A TOML value of a random type (the right one sometimes), with the interesting strings.
fn toml_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => go_duration_text().prop_map(|s| toml_string(&s)),
        2 => number_text().prop_map(|n| if n.is_empty() { "\"\"".into() } else { n }),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        1 => prop::sample::select(vec!["nan", "inf", "-inf", "true", "false", "1979-05-27T07:32:00Z", "0x7f", "1_000"]).prop_map(str::to_string),
        2 => word().prop_map(|w| toml_string(&w)),
        1 => prop::sample::select(vec!["openai", "azure", "compatible", "chat", "images", "scored", "ordered", "weighted", "free", "tier-1", "enterprise", "day", "month", "gpt-image-1", "dall-e-3", "interactive"]).prop_map(toml_string),
        1 => Just(toml_string(&secret())),
        1 => Just(format!("\"not a url {}\"", secret())),
        1 => prop::collection::vec(word(), 0..3)
            .prop_map(|v| format!("[{}]", v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", "))),
        1 => (json_number(), word()).prop_map(|(n, p)| format!("[{{ usd = {}, per = {} }}]", toml_number(&n), toml_string(&p))),
        1 => (word(), word()).prop_map(|(k, v)| format!("{{ {} = {} }}", toml_string(&k), toml_string(&v))),
        1 => (1usize..300).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d))),
        1 => (1usize..300).prop_map(|d| format!("{}{}", "{ a = ".repeat(d), "1 }".repeat(d))),
    ]
    .boxed()
}

fn toml_string(s: &str) -> String {
    // serde_json's escaping is valid TOML basic-string escaping for every char it emits.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn toml_number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => toml_string(&other.to_string()),
    }
}

/// A table of the config with its keys, some dropped, some with a random value.
fn table(
    header: &'static str,
    keys: &'static [(&'static str, &'static str)],
) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (any::<bool>(), prop::option::weighted(0.2, toml_value())),
        keys.len(),
    )
    .prop_map(move |choices| {
        let mut out = format!("{header}\n");
        for ((key, valid), (keep, random)) in keys.iter().zip(choices) {
            if !keep && random.is_none() {
                continue;
            }
            let value = random.unwrap_or_else(|| (*valid).to_string());
            out.push_str(&format!("{key} = {value}\n"));
        }
        out
    })
}

/// A provider table: a kind with the keys it needs, then random keys of all kinds.
fn provider_table() -> BoxedStrategy<String> {
    let base = prop_oneof![
        Just("name = \"openai-direct\"\nkind = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n"),
        Just("name = \"azure-east\"\nkind = \"azure\"\nendpoint = \"https://example.openai.azure.com\"\ndeployment = \"gpt-image-1\"\napi_key_env = \"AZURE_OPENAI_API_KEY\"\n"),
        Just("name = \"proxy\"\nkind = \"compatible\"\nbase_url = \"https://proxy.example/v1\"\napi_key_env = \"PROXY_API_KEY\"\nmode = \"chat\"\n"),
        Just(""),
    ];
    (
        base,
        prop::collection::vec(
            (
                0..PROVIDER_KEYS.len(),
                prop::option::weighted(0.5, toml_value()),
            ),
            0..4,
        ),
    )
        .prop_map(|(base, extra)| {
            let mut out = format!("[[provider]]\n{base}");
            for (i, value) in extra {
                let (key, valid) = PROVIDER_KEYS[i];
                out.push_str(&format!(
                    "{key} = {}\n",
                    value.unwrap_or_else(|| valid.to_string())
                ));
            }
            out
        })
        .boxed()
}

/// Whole config texts: tables in any order, and a line of junk now and then.
fn config_text() -> BoxedStrategy<String> {
    (
        prop::option::of(table("[router]", &ROUTER_KEYS)),
        prop::option::weighted(0.3, table("[router.breaker]", &BREAKER_KEYS)),
        prop::option::weighted(0.3, table("[router.score]", &SCORE_KEYS)),
        prop::option::weighted(0.3, table("[router.health]", &HEALTH_KEYS)),
        prop::collection::vec(provider_table(), 0..4),
        prop::option::weighted(
            0.1,
            prop_oneof![
                word(),
                Just("[router".to_string()),
                Just("x = ".to_string()),
                Just("[[provider]]\nname = 1\nname = 2".to_string())
            ],
        ),
        any::<bool>(),
    )
        .prop_map(
            |(router, breaker, score, health, providers, junk, providers_first)| {
                let routers: Vec<String> = [router, breaker, score, health]
                    .into_iter()
                    .flatten()
                    .collect();
                let mut parts = if providers_first {
                    [providers, routers].concat()
                } else {
                    [routers, providers].concat()
                };
                if let Some(j) = junk {
                    parts.push(j);
                }
                parts.join("\n")
            },
        )
        .boxed()
}

/// Names an error's `field` may use: the keys above, their tables, the file as a whole, or a
/// key or table written in the text (an unknown key or a broken header is named as written).
fn known_field(field: &str, text: &str) -> bool {
    let last = field.rsplit('.').next().unwrap_or(field);
    let last = last.split('[').next().unwrap_or(last);
    let keys = ROUTER_KEYS
        .iter()
        .chain(&BREAKER_KEYS)
        .chain(&SCORE_KEYS)
        .chain(&HEALTH_KEYS)
        .chain(&PROVIDER_KEYS)
        .map(|(k, _)| *k);
    let tables = [
        "config", "router", "provider", "breaker", "score", "health", "catalog", "usd", "per",
    ];
    keys.chain(tables).any(|k| k == last) || (!last.is_empty() && text.contains(last))
}

proptest! {
    #![proptest_config(direct())]

    /// Random configs from the real keys: no panic; an error names a known key, a line in
    /// the file, and never the secret pasted into a value.
    #[test]
    fn config_loader(text in config_text()) {
        match text.parse::<RouterConfig>() {
            Ok(cfg) => {
                let _ = format!("{cfg:?}");
            }
            Err(e) => {
                prop_assert!(!e.field.is_empty());
                prop_assert!(!e.message.trim().is_empty(), "no message for {:?}\n{text}", e.field);
                prop_assert!(known_field(&e.field, &text), "field {:?} ({})\n{text}", e.field, e.message);
                if let Some(line) = e.line {
                    prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}\n{text}");
                }
                prop_assert!(!e.message.contains(&secret()), "{}", e.message);
                prop_assert!(!e.to_string().contains(&secret()));
            }
        }
    }

    /// Arbitrary text is a config error or a config, never a panic.
    #[test]
    fn config_loader_any_text(text in any::<String>()) {
        if let Err(e) = text.parse::<RouterConfig>() {
            prop_assert!(!e.field.is_empty());
        }
    }
}

/// A config file that is not UTF-8 is a config error naming the file.
#[test]
fn config_file_not_utf8() {
    let mut runner = TestRunner::new(config_with((cases() / 20).max(20)));
    let result = runner.run(
        &(
            config_text(),
            prop::collection::vec(0x80u8..=0xff, 1..4),
            any::<usize>(),
        ),
        |(text, bad, at)| {
            let mut bytes = text.into_bytes();
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, bad);
            let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let path = dir.path().join("router.toml");
            std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match RouterConfig::from_file(&path) {
                Ok(_) => prop_assert!(std::str::from_utf8(&bytes).is_ok()),
                Err(e) => prop_assert!(!e.field.is_empty()),
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Findings, each fixed: the smallest input found.
// ---------------------------------------------------------------------------------------------

/// `Usage::add` (src/response.rs) adds with `+=`: two usages a provider reported near
/// `u64::MAX` overflow ("attempt to add with overflow" in debug builds, a wrapped total in
/// release). Expected: saturating totals.
#[test]
fn usage_add_overflow() {
    let parsed =
        serde_json::from_value::<Usage>(json!({"input_tokens": u64::MAX, "total_tokens": 1}));
    let mut a = parsed.unwrap_or_default();
    let b = a;
    a.add(&b);
    assert_eq!(a.input_tokens, u64::MAX);
}

/// Chat mode (src/providers/compatible.rs, `chat_usage`): with no `total_tokens`, the total
/// is `prompt_tokens + completion_tokens`, which overflows for a proxy reporting
/// `prompt_tokens = u64::MAX` ("attempt to add with overflow" in debug builds, so the
/// request's task panics). Expected: a saturated total or a `Decode` error.
#[test]
fn chat_usage_sum_overflow() {
    let (rt, server, next) = mock_server();
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
    let body = json!({"choices": [{"message": {"role": "assistant",
        "content": format!("![image](data:image/png;base64,{png})")}}],
        "usage": {"prompt_tokens": u64::MAX, "completion_tokens": 1}});
    if let Ok(mut n) = next.lock() {
        *n = Next {
            status: 200,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        };
    }
    let p = chat_proxy(&server.uri());
    let req = GenerateRequest::new("a lighthouse").model("gpt-image-1");
    let out = rt.block_on(p.generate(&req, &CallContext::new(Duration::from_secs(10))));
    assert!(out.is_ok());
}

/// A TOML syntax error in a value position (`x = `) gives a `ConfigError` whose message is
/// empty (src/config.rs `parse_error` passes on toml's message for this case, which is
/// empty), so the user sees the key and the line but not what is wrong. Expected: a message.
#[test]
fn config_error_message_empty() {
    let e = "x = ".parse::<RouterConfig>().err();
    assert!(
        e.as_ref().is_some_and(|e| !e.message.trim().is_empty()),
        "{e:?}"
    );
}

/// `headers::retry_after` (src/headers.rs) promises "only a delay above zero counts", but a
/// positive value below one nanosecond (`retry-after: 0.0000000001`, `retry-after-ms:
/// 0.0000001`) passes its `> 0.0` check and `Duration::from_secs_f64` rounds it down to
/// zero, so the caller gets `Some(0ns)` and may retry at once. Expected: `None`.
#[test]
fn retry_after_below_a_nanosecond() {
    for (name, value) in [
        ("retry-after", "0.0000000001"),
        ("retry-after-ms", "0.0000001"),
    ] {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        let d = headers::retry_after(&h, fixed_now());
        assert!(d.is_none_or(|d| !d.is_zero()), "{name}: {value} gave {d:?}");
    }
}

/// A table header with no name (`[`, `[]`) gives a `ConfigError` whose `field` is empty
/// (src/config.rs `key_at` returns the empty header name), so the error names no key.
/// Expected: a field such as `config`.
#[test]
fn config_error_field_empty() {
    for text in ["[", "[]", "[router]\n[ ]"] {
        let e = text.parse::<RouterConfig>().err();
        assert!(
            e.as_ref().is_some_and(|e| !e.field.is_empty()),
            "{text:?}: {e:?}"
        );
    }
}
