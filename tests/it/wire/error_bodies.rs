//! Real error bodies through a two-provider router: each is classified and fails over (or not)
//! as the policy says.

use super::helpers::*;
use image_router::{
    AccessDenial, Error, ErrorKind, NotFoundKind, Outcome, RateLimitScope, Router, SkipReason,
};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn openai_429_rate_limit_fails_over_with_retry_after() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    mount_error(
        &primary,
        429,
        openai_error(
            "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more.",
            json!("requests"),
            Value::Null,
            json!("rate_limit_exceeded"),
        ),
        &[
            ("retry-after", "12"),
            ("x-ratelimit-limit-requests", "5"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "12s"),
            ("x-ratelimit-limit-tokens", "100000"),
            ("x-ratelimit-remaining-tokens", "99000"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ],
    )
    .await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    let e = res.attempts[0].error.clone().unwrap();
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(12)));
    assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));
    let ex = e.explain();
    assert!(ex.cause.contains("rate limited"), "{}", ex.cause);
    assert!(ex.cause.contains("12"), "{}", ex.cause);
    // The primary stays out for its retry-after: the next request goes straight to secondary.
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    assert_eq!(res.attempts.len(), 1, "{:?}", res.attempts);
    assert_eq!(count(&primary).await, 1);
}

/// Real OpenAI error bodies: each is classified, fails over (or is returned at once) and is
/// explained as the policy says, and the next request remembers it. One row per former test
/// (named in the comment above the row); `run_case` names the case in every assertion.
#[tokio::test]
async fn openai_error_bodies_are_classified_and_fail_over_as_the_policy_says() {
    let cases = vec![
        // openai_429_images_variant_retry_after_from_message
        (
            "images 429",
            Case {
                status: 429,
                body: openai_error(
                    "You've exceeded the rate limit, please slow down and try again after 51.84 seconds.",
                    json!("requests"),
                    Value::Null,
                    json!("rate_limit_exceeded"),
                ),
                headers: vec![],
                kind: ErrorKind::RateLimited {
                    scope: RateLimitScope::Requests,
                },
                fails_over: true,
                words: &["rate limited", "51.8"],
            },
        ),
        // openai_429_zero_seconds_is_tier_access
        (
            "0.0 seconds",
            Case {
                status: 429,
                body: openai_error(
                    "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
                    json!("requests"),
                    Value::Null,
                    json!("rate_limit_exceeded"),
                ),
                headers: vec![],
                kind: ErrorKind::AccessDenied {
                    reason: AccessDenial::TierAccess,
                },
                fails_over: true,
                words: &["tier", "not a real rate limit"],
            },
        ),
        // openai_403_organization_not_verified
        (
            "403 verify",
            Case {
                status: 403,
                body: openai_error(
                    "Your organization must be verified to use the model `gpt-image-1`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.",
                    json!("invalid_request_error"),
                    Value::Null,
                    Value::Null,
                ),
                headers: vec![],
                kind: ErrorKind::AccessDenied {
                    reason: AccessDenial::OrganizationNotVerified,
                },
                fails_over: true,
                words: &["verif", "15 minutes"],
            },
        ),
        // openai_403_region_not_supported
        (
            "403 region",
            Case {
                status: 403,
                body: openai_error(
                    "Country, region, or territory not supported",
                    json!("request_forbidden"),
                    Value::Null,
                    json!("unsupported_country_region_territory"),
                ),
                headers: vec![],
                kind: ErrorKind::AccessDenied {
                    reason: AccessDenial::RegionNotSupported,
                },
                fails_over: true,
                words: &["region"],
            },
        ),
        // openai_400_billing_hard_limit
        (
            "billing",
            Case {
                status: 400,
                body: openai_error(
                    "Billing hard limit has been reached",
                    json!("billing_limit_user_error"),
                    Value::Null,
                    json!("billing_hard_limit_reached"),
                ),
                headers: vec![],
                kind: ErrorKind::AccessDenied {
                    reason: AccessDenial::BillingHardLimit,
                },
                fails_over: true,
                words: &["hard limit", "billing"],
            },
        ),
        // openai_400_moderation_blocked_is_returned_not_failed_over
        (
            "moderation",
            Case {
                status: 400,
                body: openai_error(
                    "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID req_123. safety_violations=[sexual].",
                    json!("image_generation_user_error"),
                    Value::Null,
                    json!("moderation_blocked"),
                ),
                headers: vec![],
                kind: ErrorKind::ContentPolicy {
                    reason: Some("Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID req_123. safety_violations=[sexual].".into()),
                },
                fails_over: false,
                words: &["safety", "safety_violations=[sexual]", "rephrase"],
            },
        ),
        // dall_e_content_policy_violation_is_content_policy
        (
            "dall-e content policy",
            Case {
                status: 400,
                body: openai_error(
                    "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
                    json!("invalid_request_error"),
                    Value::Null,
                    json!("content_policy_violation"),
                ),
                headers: vec![],
                kind: ErrorKind::ContentPolicy {
                    reason: Some("Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.".into()),
                },
                fails_over: false,
                words: &["safety"],
            },
        ),
        // openai_400_invalid_request_is_returned_at_once
        (
            "invalid",
            Case {
                status: 400,
                body: openai_error(
                    "Invalid value: 'ultra'. Supported values are: 'low', 'medium', 'high', and 'auto'.",
                    json!("invalid_request_error"),
                    json!("quality"),
                    json!("invalid_value"),
                ),
                headers: vec![],
                kind: ErrorKind::InvalidRequest,
                fails_over: false,
                words: &["quality"],
            },
        ),
        // openai_401_fails_over_and_cools_down
        (
            "401",
            Case {
                status: 401,
                body: openai_error(
                    "Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.",
                    json!("invalid_request_error"),
                    Value::Null,
                    json!("invalid_api_key"),
                ),
                headers: vec![],
                kind: ErrorKind::Authentication,
                fails_over: true,
                words: &["key", "401"],
            },
        ),
        // openai_404_model_not_found
        (
            "404 model",
            Case {
                status: 404,
                body: openai_error(
                    "The model `gpt-image-1` does not exist or you do not have access to it.",
                    json!("invalid_request_error"),
                    Value::Null,
                    json!("model_not_found"),
                ),
                headers: vec![],
                kind: ErrorKind::NotFound {
                    what: NotFoundKind::Model,
                },
                fails_over: true,
                words: &["model"],
            },
        ),
    ];
    for (name, case) in cases {
        run_case(name, case).await;
    }
}

#[tokio::test]
async fn openai_429_insufficient_quota_fails_over_and_cools_down() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    mount_error(
        &primary,
        429,
        openai_error(
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            json!("insufficient_quota"),
            Value::Null,
            json!("insufficient_quota"),
        ),
        &[],
    )
    .await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    let e = res.attempts[0].error.clone().unwrap();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::InsufficientQuota
        }
    );
    let ex = e.explain();
    assert!(ex.cause.contains("quota"), "{}", ex.cause);
    assert!(ex.action.contains("billing"), "{}", ex.action);
    // The next request does not pay the same failed attempt.
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(count(&primary).await, 1);
    assert!(res.skipped.iter().any(|s| s.provider == "primary"
        && matches!(
            s.reason,
            SkipReason::CoolingDown { .. } | SkipReason::CircuitOpen { .. }
        )));
}

#[tokio::test]
async fn content_policy_fails_over_when_configured() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    mount_error(
        &primary,
        400,
        openai_error(
            "Your request was rejected as a result of our safety system.",
            json!("invalid_request_error"),
            Value::Null,
            json!("content_policy_violation"),
        ),
        &[],
    )
    .await;
    mount_ok(&secondary, 2).await;
    let router = Router::builder()
        .provider(openai(&primary, "primary"))
        .provider(openai(&secondary, "secondary"))
        .failover_on_content_policy(true)
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    assert_eq!(res.attempts[0].outcome, Outcome::ContentPolicy);
}

async fn server_error_case(status: u16) {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    mount_error(
        &primary,
        status,
        openai_error(
            "The server had an error while processing your request. Sorry about that!",
            json!("server_error"),
            Value::Null,
            Value::Null,
        ),
        &[],
    )
    .await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    // One retry on the same provider, then failover.
    assert_eq!(count(&primary).await, 2, "HTTP {status}");
    assert_eq!(res.attempts.len(), 3);
    assert_eq!(res.attempts[0].outcome, Outcome::Server);
    assert_eq!(res.attempts[1].outcome, Outcome::Server);
    assert_eq!(res.attempts[1].retry, 1);
    assert_eq!(res.attempts[0].status, Some(status));
}

#[tokio::test]
async fn server_errors_retry_once_then_fail_over() {
    // Run together so the backoffs overlap.
    tokio::join!(
        server_error_case(500),
        server_error_case(502),
        server_error_case(503)
    );
}

#[tokio::test]
async fn html_502_from_a_gateway_is_a_server_error() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(502)
                .set_body_string("<html><body><h1>502 Bad Gateway</h1></body></html>"),
        )
        .mount(&primary)
        .await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    let e = res.attempts[0].error.clone().unwrap();
    assert_eq!(e.kind, ErrorKind::Server);
    assert!(e.message.contains("502 Bad Gateway"), "{}", e.message);
}

#[tokio::test]
async fn all_failed_lists_every_attempt_most_telling_first() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    mount_error(
        &primary,
        503,
        openai_error(
            "overloaded",
            json!("server_error"),
            Value::Null,
            Value::Null,
        ),
        &[],
    )
    .await;
    mount_error(
        &secondary,
        429,
        openai_error(
            "You exceeded your current quota, please check your plan and billing details.",
            json!("insufficient_quota"),
            Value::Null,
            json!("insufficient_quota"),
        ),
        &[],
    )
    .await;
    let router = two(&primary, &secondary);
    let err = router.generate(gen()).await.unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err:?}");
    let providers: Vec<&str> = err.attempts().iter().map(|a| a.provider.as_str()).collect();
    assert_eq!(providers, ["primary", "primary", "secondary"]);
    let cause = err.cause().unwrap();
    assert_eq!(cause.provider, "secondary");
    assert!(err.is_access_denied());
    let text = err.to_string();
    assert!(text.contains("quota"), "{text}");
    let ex = err.explain();
    assert!(ex.cause.contains("All providers failed"), "{}", ex.cause);
    assert!(ex.cause.contains("quota"), "{}", ex.cause);
}
