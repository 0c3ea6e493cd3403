//! Unit tests of the shared provider helpers (sanitizing, limits, usage clamping, option
//! checks), apart from the code so `mod.rs` stays the module's surface.

use std::time::Duration;

use super::bounds::FALLBACK_OUTPUT_TOKENS_PER_IMAGE;
use super::limits::{BODY_HEADROOM, FALLBACK_PIXELS, IMAGE_HEADROOM, TOKEN_HEADROOM};
use super::sanitize::clamp_usage;
use super::*;
use crate::error::{MAX_FIELD_BYTES, MAX_MESSAGE_BYTES};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::usage::{TokenDetails, Usage};
use crate::request::Size;

fn common(max_hint: Option<Duration>) -> Common {
    CommonOptions {
        max_retry_hint: max_hint,
        client: Some(reqwest::Client::new()),
        ..CommonOptions::default()
    }
    .build("p", false, Some("127.0.0.1"))
    .unwrap()
}

const KEY: &str = "abcdefgh-0123456789";

#[test]
fn sanitize_scrubs_every_string_field() {
    let mut e = ProviderError::new(
        "p",
        crate::ErrorKind::ContentPolicy {
            reason: Some(format!("reason {KEY}")),
        },
        format!("message {KEY}"),
    )
    .with_code(format!("code {KEY}"))
    .with_type(format!("type {KEY}"))
    .with_param(format!("param {KEY}"))
    .with_request_id(format!("id {KEY}"));
    e.sanitize(Some(KEY), &common(None));
    let text = format!("{e:?} {e} {}", serde_json::to_string(&e).unwrap());
    assert!(!text.contains(KEY), "{text}");
    assert!(text.matches("[redacted]").count() >= 6, "{text}");
}

#[test]
fn sanitize_truncates_and_caps() {
    let mut e = ProviderError::new("p", crate::ErrorKind::Server, "m".repeat(100_000))
        .with_request_id("r".repeat(10_000))
        .with_retry_after(Some(Duration::from_secs(1_000_000)));
    let mut rl = RateLimitHeaders {
        reset_tokens: Some(Duration::from_secs(10_000_000)),
        ..RateLimitHeaders::default()
    };
    rl.reset_requests = Some(Duration::from_secs(5));
    e = e.with_rate_limits(rl);
    e.sanitize(None, &common(None));
    assert!(
        e.message.len() < MAX_MESSAGE_BYTES + 200,
        "{}",
        e.message.len()
    );
    assert!(e.message.contains("truncated"));
    assert!(e
        .message
        .ends_with("(retry hint of 10000000s capped to 600s)"));
    assert!(e.request_id.as_ref().unwrap().len() < MAX_FIELD_BYTES + 40);
    assert_eq!(e.retry_after, Some(DEFAULT_MAX_RETRY_HINT));
    let rl = e.rate_limits.unwrap();
    assert_eq!(rl.reset_tokens, Some(DEFAULT_MAX_RETRY_HINT));
    assert_eq!(rl.reset_requests, Some(Duration::from_secs(5)));

    let mut e = ProviderError::new("p", crate::ErrorKind::Server, "short")
        .with_retry_after(Some(Duration::from_secs(45)));
    e.sanitize(None, &common(Some(Duration::from_secs(30))));
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    assert!(e.message.contains("capped to 30s"));
}

#[test]
fn limits_follow_the_request() {
    let c = common(None);
    let req = GenerateRequest::new("hi").model("gpt-image-1");
    let one = c.limits(&Shape::generate(&req, "gpt-image-1"));
    let req4 = req.clone().n(4).size(Size::SQUARE);
    let four = c.limits(&Shape::generate(&req4, "gpt-image-1"));
    // 1024×1024 at 4 bytes a pixel, plus headroom, base64: about 7.7 MB for one image.
    assert_eq!(four.image, 1024 * 1024 * 4 + IMAGE_HEADROOM);
    assert_eq!(
        four.body,
        (4 * four.image * 4 / 3) + BODY_HEADROOM,
        "{four:?}"
    );
    // No size: the largest size the catalog lists for the model (larger than square).
    assert!(one.image >= four.image, "{one:?}");
    assert_eq!(four.n, 4);
    assert!(four.output_tokens > one.output_tokens);
    let unknown = c.limits(&Shape::generate(&req, "no-such-model"));
    assert_eq!(unknown.image, FALLBACK_PIXELS * 4 + IMAGE_HEADROOM);
    let fixed = CommonOptions {
        max_response_bytes: Some(123),
        client: Some(reqwest::Client::new()),
        ..CommonOptions::default()
    }
    .build("p", false, None)
    .unwrap()
    .limits(&Shape::generate(&req, "gpt-image-1"));
    assert_eq!((fixed.body, fixed.image), (123, 123));
}

#[test]
fn every_catalog_model_has_its_bounds_from_its_entry() {
    // The bounds are computed once per provider (issue 16); a model missing from the map
    // would get the unknown-model bounds, so every catalog model must be there, with the
    // values its entry gives: the largest listed size and the largest table entry (else the
    // fallback) doubled.
    let c = common(None);
    let mut checked = 0;
    for spec in c.catalog.models() {
        let name = spec.name();
        let req = GenerateRequest::new("hi").model(name);
        let got = c.limits(&Shape::generate(&req, name));
        let pixels = spec
            .capabilities
            .sizes
            .iter()
            .filter_map(|s| s.dims())
            .map(|(w, h)| u64::from(w) * u64::from(h))
            .max()
            .unwrap_or(FALLBACK_PIXELS);
        assert_eq!(got.image, pixels * 4 + IMAGE_HEADROOM, "{name}");
        let table = spec
            .output_tokens
            .values()
            .flat_map(|t| t.values())
            .copied()
            .max()
            .unwrap_or(0)
            .max(spec.fallback_output_tokens);
        let per_image = if table > 0 {
            u64::from(table)
        } else {
            FALLBACK_OUTPUT_TOKENS_PER_IMAGE
        };
        assert_eq!(got.output_tokens, per_image * 2 + TOKEN_HEADROOM, "{name}");
        assert!(c.bounds.contains_key(name), "{name}");
        checked += 1;
    }
    assert_eq!(checked, c.bounds.len(), "one entry a model, no other");
    assert!(
        checked >= 3,
        "the builtin catalog has image models: {checked}"
    );
}

#[test]
fn usage_is_clamped_and_flagged() {
    let c = common(None);
    let req = GenerateRequest::new("hi").model("gpt-image-1");
    let limits = c.limits(&Shape::generate(&req, "gpt-image-1"));
    let mut fine = Usage {
        input_tokens: 10,
        output_tokens: 272,
        total_tokens: 282,
        ..Usage::default()
    };
    let before = fine;
    assert!(!clamp_usage(&mut fine, &limits));
    assert_eq!(fine, before);
    let mut absurd = Usage {
        input_tokens: u64::MAX,
        input_tokens_details: TokenDetails {
            text_tokens: u64::MAX,
            image_tokens: 0,
        },
        output_tokens: u64::MAX,
        output_tokens_details: Some(TokenDetails {
            text_tokens: 0,
            image_tokens: u64::MAX,
        }),
        total_tokens: u64::MAX,
    };
    assert!(clamp_usage(&mut absurd, &limits));
    assert_eq!(absurd.input_tokens, limits.input_tokens);
    assert_eq!(absurd.output_image_tokens(), limits.output_tokens);
    assert_eq!(
        absurd.total_tokens,
        limits.input_tokens + limits.output_tokens
    );
}

#[test]
fn option_checks_name_the_field() {
    let build = |o: CommonOptions| {
        CommonOptions {
            client: Some(reqwest::Client::new()),
            ..o
        }
        .build("p", false, None)
        .err()
        .map(|e| e.field)
    };
    assert_eq!(
        build(CommonOptions {
            max_response_bytes: Some(0),
            ..CommonOptions::default()
        }),
        Some("max_response_bytes".into())
    );
    assert_eq!(
        build(CommonOptions {
            max_retry_hint: Some(Duration::ZERO),
            ..CommonOptions::default()
        }),
        Some("max_retry_hint".into())
    );
    assert_eq!(
        build(CommonOptions {
            download_hosts: vec!["http://x/".into()],
            ..CommonOptions::default()
        }),
        Some("allow_download_hosts".into())
    );
}
