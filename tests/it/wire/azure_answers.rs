//! Black-box Azure OpenAI: deployments, api-version, key header and Azure's own error shapes.

use super::helpers::*;
use image_router::providers::Azure;
use image_router::{
    AccessDenial, EditRequest, ErrorKind, InputImage, NotFoundKind, OutputFormat, RateLimitScope,
    Router, SkipReason,
};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer};

// Azure
#[tokio::test]
async fn azure_deployment_url_api_key_and_body() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/img-prod/images/generations"))
        .and(query_param("api-version", "2025-04-01-preview"))
        .and(header("api-key", other_key().as_str()))
        .respond_with(ok(5).insert_header("apim-request-id", "apim-1"))
        .expect(1)
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(azure(&server).api_key(other_key()).build().unwrap())
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(got.url.query(), Some("api-version=2025-04-01-preview"));
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["prompt"], "a lighthouse at dusk");
    assert_eq!(body["quality"], "low");
    assert_eq!(body["size"], "1024x1024");
    if let Some(m) = body.get("model") {
        // If sent at all on the deployments surface, it must be the deployment name.
        assert_eq!(m, "img-prod");
    }
    assert_eq!(res.provider, "azure");
    assert_eq!(&res.images[0].bytes[..], &png(5)[..]);
}

#[tokio::test]
async fn azure_entra_token_and_custom_version_and_trailing_slash() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/img-prod/images/generations"))
        .and(query_param("api-version", "2025-06-01"))
        .and(header("authorization", "Bearer entra-token-123"))
        .respond_with(ok(5))
        .expect(1)
        .mount(&server)
        .await;
    let p = Azure::builder()
        .endpoint(format!("{}/", server.uri()))
        .bearer_token("entra-token-123")
        .deployment("gpt-image-1", "img-prod")
        .api_version("2025-06-01")
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert!(got.headers.get("api-key").is_none());
}

#[tokio::test]
async fn azure_v1_surface_puts_deployment_in_model() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/v1/images/generations"))
        .and(header("api-key", other_key().as_str()))
        .respond_with(ok(5))
        .expect(1)
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(
            azure(&server)
                .api_key(other_key())
                .v1_surface(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["model"], "img-prod");
}

#[tokio::test]
async fn azure_edit_multipart() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/img-prod/images/edits"))
        .and(query_param("api-version", "2025-04-01-preview"))
        .respond_with(ok(6))
        .expect(1)
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(azure(&server).api_key(other_key()).build().unwrap())
        .build()
        .unwrap();
    router
        .edit(
            EditRequest::new(
                "merge",
                vec![
                    InputImage::new(png(1), "a.png"),
                    InputImage::new(png(2), "b.png"),
                ],
            )
            .model("gpt-image-1"),
        )
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    let parts = multipart(got);
    assert_eq!(parts.iter().filter(|p| p.name == "image[]").count(), 2);
    assert_eq!(text_field(&parts, "prompt").as_deref(), Some("merge"));
}

#[tokio::test]
async fn azure_never_receives_webp() {
    let az = MockServer::start().await;
    let oa = MockServer::start().await;
    mount_ok(&az, 1).await;
    mount_ok(&oa, 2).await;
    let router = Router::builder()
        .provider(azure(&az).api_key(other_key()).build().unwrap())
        .provider(openai(&oa, "openai"))
        .build()
        .unwrap();
    let res = router
        .generate(gen().output_format(OutputFormat::Webp))
        .await
        .unwrap();
    assert_eq!(res.provider, "openai");
    assert_eq!(count(&az).await, 0);
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "azure" && matches!(s.reason, SkipReason::Unsupported { .. })));
    // png still goes to Azure first.
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "azure");
}

// Azure error shapes
/// One Azure error shape: what `azure_case` sends and expects, then the row's own checks.
struct AzureCase {
    name: &'static str,
    args: (
        u16,
        Value,
        &'static [(&'static str, &'static str)],
        ErrorKind,
        bool,
    ),
    then: fn(&str, &image_router::ProviderError),
}

/// Azure's error shapes: each is classified and fails over (or is returned at once) as the
/// policy says. One row per former test, named in every assertion.
#[tokio::test]
async fn azure_error_shapes_are_classified() {
    let cases = vec![
        AzureCase {
            name: "azure_429_numeric_code_retry_after_from_message",
            args: (
            429,
            json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}),
            &[],
            ErrorKind::RateLimited {
                scope: RateLimitScope::Unknown,
            },
            true,
            ),
            then: |name, e| {
                assert_eq!(e.retry_after, Some(Duration::from_secs(2)), "{name}");
                assert_eq!(e.code.as_deref(), Some("429"), "{name}");
            },
        },
        AzureCase {
            name: "azure_429_rate_limit_reached_with_ms_headers",
            args: (
            429,
            json!({"error": {"code": "RateLimitReached", "message": "Your requests to gpt-image-1 for gpt-image-1 in East US have exceeded the call rate limit for your current AIServices S0 pricing tier. Please retry after 5 seconds."}}),
            &[("retry-after", "5"), ("retry-after-ms", "4500"), ("x-ms-retry-after-ms", "4500")],
            ErrorKind::RateLimited {
                scope: RateLimitScope::Unknown,
            },
            true,
            ),
            then: |name, e| {
                assert_eq!(e.retry_after, Some(Duration::from_millis(4500)), "{name}");
            },
        },
        AzureCase {
            name: "azure_401_invalid_subscription_key",
            args: (
            401,
            json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
            &[],
            ErrorKind::Authentication,
            true,
            ),
            then: |name, e| {
                let ex = e.explain();
                assert!(ex.action.contains("endpoint"), "{name}: {}", ex.action);
            },
        },
        AzureCase {
            name: "azure_404_deployment_not_found",
            args: (
            404,
            json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}),
            &[],
            ErrorKind::NotFound {
                what: NotFoundKind::Deployment,
            },
            true,
            ),
            then: |_, _| {},
        },
        AzureCase {
            name: "azure_content_filter_inner_error",
            args: (
            400,
            json!({"error": {
                "code": "content_policy_violation",
                "message": "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
                "param": "prompt",
                "type": null,
                "inner_error": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_results": {
                        "sexual": {"filtered": false, "severity": "safe"},
                        "violence": {"filtered": true, "severity": "high"},
                        "hate": {"filtered": false, "severity": "safe"},
                        "self_harm": {"filtered": false, "severity": "safe"},
                        "jailbreak": {"filtered": false, "detected": false}
                    }
                }
            }}),
            &[],
            ErrorKind::ContentPolicy {
                reason: Some("Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system. [filtered: violence (high)]".into()),
            },
            false,
            ),
            then: |name, e| {
                assert!(e.explain().cause.contains("violence"), "{name}");
            },
        },
        AzureCase {
            name: "azure_content_filter_code",
            args: (
            400,
            json!({"error": {"code": "contentFilter", "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."}}),
            &[],
            ErrorKind::ContentPolicy {
                reason: Some("The response was filtered due to the prompt triggering Azure OpenAI's content management policy.".into()),
            },
            false,
            ),
            then: |_, _| {},
        },
        AzureCase {
            name: "azure_403_resource_blocked",
            args: (
            403,
            json!({"error": {"code": "403", "message": "Your resource has been temporarily blocked because we detected behavior that may violate our content policy."}}),
            &[],
            ErrorKind::AccessDenied {
                reason: AccessDenial::ResourceBlocked,
            },
            true,
            ),
            then: |_, _| {},
        },
    ];
    for c in cases {
        let (status, body, headers, kind, fails_over) = c.args;
        let e = azure_case(c.name, status, body, headers, kind, fails_over).await;
        (c.then)(c.name, &e);
    }
}
