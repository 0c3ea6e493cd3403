//! Structured random inputs for every parser of provider input and for the config loader.
//! This file holds the shared generators and run settings; each parser family's properties
//! are in their own file.
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
//! Every finding is kept as a plain test in `findings.rs` with the smallest input
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
mod chat;
mod config;
mod errors;
mod findings;
mod hints;
mod images;
mod mock;
mod usage;

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
// Usage and the images response
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
