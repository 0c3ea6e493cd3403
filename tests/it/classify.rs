//! Error classification from the real error bodies in `/work/shared/api-facts.md`.

use crate::support::wire;

use std::time::{Duration, SystemTime};

use image_router::providers::classify::{classify, classify_at};
use image_router::providers::OpenAi;
use image_router::{
    AccessDenial, ErrorKind, GenerateRequest, NotFoundKind, Provider, ProviderError, RateLimitScope,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use wire::*;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn run(status: u16, body: Value, hs: &[(&str, &str)]) -> ProviderError {
    classify("openai", status, &headers(hs), body.to_string().as_bytes())
}

fn openai_err(message: &str, typ: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": typ, "param": null, "code": code}})
}

const RPM: &str = "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more.";
const TPM: &str = "Rate limit reached for gpt-image-1 in organization org-abc on tokens per min (TPM): Limit 250000, Used 249000, Requested 4160. Please try again in 1.2s.";

#[test]
fn rate_limit_requests_from_message() {
    let e = run(
        429,
        openai_err(RPM, json!("requests"), json!("rate_limit_exceeded")),
        &[("x-request-id", "req_1")],
    );
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(e.error_type.as_deref(), Some("requests"));
    assert_eq!(e.request_id.as_deref(), Some("req_1"));
    assert_eq!(e.status, Some(429));
    assert_eq!(e.message, RPM);
}

#[test]
fn rate_limit_tokens_and_header_preference() {
    let e = run(
        429,
        openai_err(TPM, json!("tokens"), json!("rate_limit_exceeded")),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Tokens
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_millis(1200)));
    // Headers win over the message.
    let e = run(
        429,
        openai_err(TPM, json!("tokens"), json!("rate_limit_exceeded")),
        &[("retry-after", "3"), ("retry-after-ms", "2500")],
    );
    assert_eq!(e.retry_after, Some(Duration::from_millis(2500)));
    let e = run(
        429,
        openai_err(TPM, json!("tokens"), json!("rate_limit_exceeded")),
        &[("retry-after", "7")],
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
}

#[test]
fn images_variant_and_http_date_retry_after() {
    let msg = "You've exceeded the rate limit, please slow down and try again after 51.84 seconds.";
    let e = run(
        429,
        openai_err(msg, json!(null), json!("rate_limit_exceeded")),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Unknown
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs_f64(51.84)));

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
    let body = openai_err(msg, json!(null), json!("rate_limit_exceeded")).to_string();
    let e = classify_at(
        "openai",
        429,
        &headers(&[("retry-after", &date)]),
        body.as_bytes(),
        now,
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
}

#[test]
fn zero_second_retry_is_tier_access_not_rate_limit() {
    for msg in [
        "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
        "Rate limit reached for gpt-image-1 on requests per min (RPM): Limit 0, Used 0, Requested 1. Please try again in 0s.",
        "Please try again after 0 seconds.",
    ] {
        let e = run(429, openai_err(msg, json!("requests"), json!("rate_limit_exceeded")), &[]);
        assert_eq!(e.kind, ErrorKind::AccessDenied { reason: AccessDenial::TierAccess }, "{msg}");
        assert!(!e.is_rate_limited());
    }
}

#[test]
fn quota_billing_verification_region() {
    let quota = openai_err(
        "You exceeded your current quota, please check your plan and billing details.",
        json!("insufficient_quota"),
        json!("insufficient_quota"),
    );
    for status in [429, 403] {
        let e = run(status, quota.clone(), &[("retry-after", "20")]);
        assert_eq!(
            e.kind,
            ErrorKind::AccessDenied {
                reason: AccessDenial::InsufficientQuota
            }
        );
    }
    let e = run(
        400,
        openai_err(
            "Billing hard limit has been reached",
            json!("invalid_request_error"),
            json!("billing_hard_limit_reached"),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::BillingHardLimit
        }
    );
    let e = run(403, openai_err("Your organization must be verified to use the model `gpt-image-1`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.", json!("invalid_request_error"), json!(null)), &[]);
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::OrganizationNotVerified
        }
    );
    assert_eq!(e.code, None);
    let e = run(
        403,
        openai_err(
            "Country, region, or territory not supported",
            json!("request_forbidden"),
            json!("unsupported_country_region_territory"),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::RegionNotSupported
        }
    );
    let e = run(
        403,
        openai_err(
            "Country, region, or territory not supported",
            json!(null),
            json!(null),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::RegionNotSupported
        }
    );
    let e = run(
        403,
        openai_err(
            "You are not allowed to sample from this model",
            json!(null),
            json!(null),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::Forbidden
        }
    );
}

#[test]
fn not_found_and_unsupported() {
    let e = run(
        404,
        openai_err(
            "The model `gpt-image-9` does not exist or you do not have access to it.",
            json!("invalid_request_error"),
            json!("model_not_found"),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::Model
        }
    );
    let e = run(
        404,
        openai_err(
            "The model `gpt-image-9` does not exist",
            json!(null),
            json!(null),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::Model
        }
    );
    let e = run(
        404,
        json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist."}}),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::Deployment
        }
    );
    let e = classify("openai", 404, &HeaderMap::new(), b"Not Found");
    assert_eq!(
        e.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::Endpoint
        }
    );
    for code in [
        "unknown_parameter",
        "unsupported_parameter",
        "unsupported_value",
    ] {
        let e = run(
            400,
            json!({"error": {"message": "Unknown parameter: 'style'.", "type": "invalid_request_error", "param": "style", "code": code}}),
            &[],
        );
        assert_eq!(
            e.kind,
            ErrorKind::NotFound {
                what: NotFoundKind::UnsupportedParameter
            },
            "{code}"
        );
        assert_eq!(e.param.as_deref(), Some("style"));
    }
    let e = run(
        400,
        json!({"error": {"code": "BadRequest", "message": "The parameter output_format with value webp is not supported."}}),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::UnsupportedParameter
        }
    );
}

#[test]
fn auth_content_policy_invalid() {
    let e = run(
        401,
        openai_err(
            "Incorrect API key provided: sk-abc***xyz.",
            json!("invalid_request_error"),
            json!("invalid_api_key"),
        ),
        &[],
    );
    assert_eq!(e.kind, ErrorKind::Authentication);
    let msg = "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID req_1. safety_violations=[sexual].";
    let e = run(
        400,
        openai_err(
            msg,
            json!("image_generation_user_error"),
            json!("moderation_blocked"),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::ContentPolicy {
            reason: Some(msg.to_string())
        }
    );
    let e = run(
        400,
        openai_err(
            "Your request was rejected as a result of our safety system.",
            json!("invalid_request_error"),
            json!("content_policy_violation"),
        ),
        &[],
    );
    assert!(e.is_content_policy());
    let e = run(
        400,
        openai_err(
            "Invalid size '7x7'.",
            json!("invalid_request_error"),
            json!("invalid_value"),
        ),
        &[],
    );
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    let e = run(413, json!({}), &[]);
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
}

#[test]
fn transient_statuses() {
    let e = run(
        500,
        openai_err(
            "The server had an error while processing your request.",
            json!("server_error"),
            json!(null),
        ),
        &[("retry-after", "4")],
    );
    assert_eq!(e.kind, ErrorKind::Server);
    assert_eq!(e.retry_after, Some(Duration::from_secs(4)));
    assert_eq!(run(503, json!({}), &[]).kind, ErrorKind::Server);
    assert_eq!(
        run(408, json!({}), &[]).kind,
        ErrorKind::Timeout { sent: true }
    );
    assert_eq!(run(409, json!({}), &[]).kind, ErrorKind::Server);
}

#[test]
fn html_bodies_classify_by_status_with_snippet() {
    let html = format!(
        "<html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
        "x".repeat(1000)
    );
    let e = classify("proxy", 502, &HeaderMap::new(), html.as_bytes());
    assert_eq!(e.kind, ErrorKind::Server);
    assert!(
        e.message.starts_with("<html><head><title>502 Bad Gateway"),
        "{}",
        e.message
    );
    assert!(e.message.chars().count() < 300);
    let e = classify(
        "proxy",
        429,
        &headers(&[("retry-after", "5")]),
        b"<html>Too Many Requests</html>",
    );
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Unknown
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(5)));
    let e = classify("proxy", 401, &HeaderMap::new(), b"");
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.message, "HTTP 401");
}

#[test]
fn azure_bodies() {
    let e = classify("azure", 429, &headers(&[("apim-request-id", "apim-9")]), json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds."}}).to_string().as_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Unknown
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(e.request_id.as_deref(), Some("apim-9"));
    let e = classify(
        "azure",
        429,
        &headers(&[("retry-after-ms", "1500")]),
        json!({"error": {"code": "RateLimitReached", "message": "Rate limit reached."}})
            .to_string()
            .as_bytes(),
    );
    assert!(e.is_rate_limited());
    assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
    let e = classify(
        "azure",
        429,
        &headers(&[("x-ms-retry-after-ms", "800")]),
        json!({"error": {"code": 429, "message": "Too many requests"}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(e.code.as_deref(), Some("429"));
    assert_eq!(e.retry_after, Some(Duration::from_millis(800)));
    let e = classify("azure", 400, &HeaderMap::new(), json!({"error": {"code": "content_filter", "message": "filtered", "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_results": {"sexual": {"filtered": true, "severity": "medium"}}}}}).to_string().as_bytes());
    match e.kind {
        ErrorKind::ContentPolicy { reason: Some(r) } => {
            assert!(r.contains("sexual (medium)"), "{r}")
        }
        other => panic!("{other:?}"),
    }
    let e = classify("azure", 403, &HeaderMap::new(), json!({"error": {"code": "403", "message": "Your resource has been temporarily blocked because we detected behavior that may violate our content policy."}}).to_string().as_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::ResourceBlocked
        }
    );
}

#[tokio::test]
async fn classification_through_the_wire_keeps_headers() {
    let server = MockServer::start().await;
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(openai_err(
                    RPM,
                    json!("requests"),
                    json!("rate_limit_exceeded"),
                ))
                .insert_header("retry-after", date.as_str())
                .insert_header("x-request-id", "req_wire"),
        )
        .mount(&server)
        .await;
    let p = OpenAi::builder()
        .client(client())
        .api_key("sk-wire")
        .base_url(server.uri())
        .build()
        .unwrap();
    let e = p
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests
        }
    );
    assert_eq!(e.request_id.as_deref(), Some("req_wire"));
    let ra = e.retry_after.unwrap();
    assert!(
        ra > Duration::from_secs(50) && ra <= Duration::from_secs(60),
        "{ra:?}"
    );
    assert_eq!(e.provider, "openai");
}

/// The images-per-minute 429 (issue 11's wording): its `type` says `requests`, yet it is an
/// image limit, not a requests-per-minute one; the wait comes from the message.
const IPM: &str = "Rate limit reached for gpt-image-1 in organization org-abc on images per min (IPM): Limit 5, Used 5, Requested 1. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more.";

#[test]
fn images_per_minute_429_is_an_image_limit_even_with_type_requests() {
    let images = ErrorKind::RateLimited {
        scope: RateLimitScope::Images,
    };
    let e = run(
        429,
        openai_err(IPM, json!("requests"), json!("rate_limit_exceeded")),
        &[],
    );
    assert_eq!(e.kind, images);
    assert_eq!(e.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(e.error_type.as_deref(), Some("requests"));
    // Other wordings seen for images limits: "images per minute" (2023) and the edits'
    // "input-images per min" (2026).
    for msg in [
        "Rate limit exceeded for images per minute in organization org-abc. Limit: 5/1min. Current: 6/1min. Please visit https://platform.openai.com/docs/guides/rate-limits to learn how to increase your rate limit.",
        "Rate limit reached for gpt-image-2-codex (for limit gpt-image) in organization org-abc on input-images per min: Limit 4000, Used 4000, Requested 1. Please try again in 15ms.",
    ] {
        let e = run(429, openai_err(msg, json!("requests"), json!("rate_limit_exceeded")), &[]);
        assert_eq!(e.kind, images, "{msg}");
    }
    // The requests and tokens wordings keep their own scopes.
    let e = run(
        429,
        openai_err(RPM, json!("requests"), json!("rate_limit_exceeded")),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests
        }
    );
    // An images limit of 0 with no wait is a tier without access (dall-e-3 on a $5 account).
    let e = run(
        429,
        openai_err(
            "Rate limit exceeded for images per minute in organization org-abc. Limit: 0/1min. Current: 1/1min. Please visit https://platform.openai.com/docs/guides/rate-limits to learn how to increase your rate limit.",
            json!("requests"),
            json!("rate_limit_exceeded"),
        ),
        &[],
    );
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess
        }
    );
}

#[test]
fn azure_429_is_a_rate_limit_with_the_wait_from_the_message() {
    let body = json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}});
    let e = classify(
        "azure-east",
        429,
        &headers(&[]),
        body.to_string().as_bytes(),
    );
    assert!(e.is_rate_limited(), "{e:?}");
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(e.code.as_deref(), Some("429"));
    let body = json!({"error": {"code": "RateLimitReached", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please try again later."}});
    let e = classify(
        "azure-east",
        429,
        &headers(&[("retry-after-ms", "1500")]),
        body.to_string().as_bytes(),
    );
    assert!(e.is_rate_limited(), "{e:?}");
    assert_eq!(e.retry_after, Some(Duration::from_millis(1500)));
}
