//! Rate limits in plain words: an images-per-minute 429 names the model's limit at the
//! configured tier and what the next tier gives; an Azure 429 names the deployment's quota,
//! where to raise it and the router's `rpm`.

use std::time::Duration;

use image_router::catalog::Catalog;
use image_router::providers::classify::classify;
use image_router::{ErrorKind, ProviderError, RateLimitScope};
use reqwest::header::HeaderMap;
use serde_json::json;

fn ipm_error(model: &str, limit: u32) -> ProviderError {
    let body = json!({"error": {
        "message": format!("Rate limit reached for {model} in organization org-abc on images per min (IPM): Limit {limit}, Used {limit}, Requested 1. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more."),
        "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
    classify(
        "direct",
        429,
        &HeaderMap::new(),
        body.to_string().as_bytes(),
    )
}

#[test]
fn ipm_429_names_the_models_limit_and_what_the_next_tier_gives() {
    let e = ipm_error("gpt-image-1", 5);
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Images
        }
    );
    let x = e.explain_with(Catalog::builtin(), Some("tier-1"));
    assert!(
        x.cause
            .contains("images-per-minute limit (IPM) for gpt-image-1"),
        "{}",
        x.cause
    );
    assert!(x.cause.contains("retry after 12.0 s"), "{}", x.cause);
    // The tier it is on and what that allows, the next tier's requirement and figure.
    assert!(
        x.action
            .contains("tier-1 (gpt-image-1: 5 images per minute (IPM)"),
        "{}",
        x.action
    );
    assert!(x.action.contains("tier-2"), "{}", x.action);
    assert!(
        x.action.contains("$50 paid and 7 or more days"),
        "{}",
        x.action
    );
    assert!(
        x.action.contains("gpt-image-1: 20 images per minute (IPM)"),
        "{}",
        x.action
    );
    assert!(x.action.contains("`ipm`"), "{}", x.action);
    // Without a configured tier: where to look, and the first tier with access.
    let x = e.explain();
    assert!(
        x.action.contains("settings/organization/limits"),
        "{}",
        x.action
    );
    assert!(x.action.contains("tier-1"), "{}", x.action);
    // Another model: its own figures (dall-e-3 at tier 2: 2,500; tier 3: 5,000).
    let x = ipm_error("dall-e-3", 2500).explain_with(Catalog::builtin(), Some("tier-2"));
    assert!(
        x.action.contains("dall-e-3: 2500 images per minute"),
        "{}",
        x.action
    );
    assert!(
        x.action.contains("dall-e-3: 5000 images per minute"),
        "{}",
        x.action
    );
    // At the top tier there is nothing to move up to: the text says what it can.
    let x = e.explain_with(Catalog::builtin(), Some("tier-5"));
    assert!(x.action.contains("250 images per minute"), "{}", x.action);
    assert!(!x.action.contains("next tier"), "{}", x.action);
}

#[test]
fn requests_per_minute_429_keeps_its_own_text() {
    let e = ProviderError::new(
        "direct",
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests,
        },
        "Rate limit reached for gpt-image-1 on requests per min (RPM): Limit 5.",
    )
    .with_status(429);
    let x = e.explain();
    assert!(x.cause.contains("requests per minute (RPM)"), "{}", x.cause);
    assert!(!x.cause.contains("images-per-minute"), "{}", x.cause);
}

#[test]
fn azure_429_names_the_deployments_quota_and_the_routers_rpm() {
    let body = json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}});
    // The provider's name is the user's: the answer's shape is what says Azure.
    let e = classify(
        "images-eu",
        429,
        &HeaderMap::new(),
        body.to_string().as_bytes(),
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    let x = e.explain();
    assert!(
        x.cause.contains("deployment reached its quota"),
        "{}",
        x.cause
    );
    assert!(x.cause.contains("requests per minute"), "{}", x.cause);
    assert!(x.action.contains("Azure AI Foundry"), "{}", x.action);
    assert!(x.action.contains("Quota page"), "{}", x.action);
    assert!(
        x.action.contains("https://aka.ms/oai/quotaincrease"),
        "{}",
        x.action
    );
    assert!(x.action.contains("set `rpm`"), "{}", x.action);
    assert!(x.action.contains("images-eu"), "{}", x.action);
    // The newer body without a delay says the same.
    let body = json!({"error": {"code": "RateLimitReached", "message": "Requests to the ImageEdits_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please try again later."}});
    let e = classify(
        "images-eu",
        429,
        &HeaderMap::new(),
        body.to_string().as_bytes(),
    );
    let x = e.explain();
    assert!(x.cause.contains("did not say when"), "{}", x.cause);
    assert!(x.action.contains("set `rpm`"), "{}", x.action);
    // An OpenAI 429 is not explained as Azure's.
    let x = ipm_error("gpt-image-1", 5).explain();
    assert!(!x.action.contains("Azure"), "{}", x.action);
}
