//! Wire tests for the Azure OpenAI provider.

use crate::support::wire;

use std::time::Duration;

use image_router::providers::{Azure, AzureAuth};
use image_router::{
    AccessDenial, EditRequest, ErrorKind, GenerateRequest, InputImage, NotFoundKind, OutputFormat,
    Provider, ProviderError, ProviderKind, Quality, RateLimitScope, Size,
};
use serde_json::{json, Value};
use wire::*;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "azure-SECRET-key-0123456789";

async fn server_with(resp: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(resp).mount(&server).await;
    server
}

fn provider(server: &MockServer) -> Azure {
    Azure::builder()
        .client(client())
        .endpoint(server.uri())
        .api_key(KEY)
        .deployment("gpt-image-1", "img-dep")
        .build()
        .unwrap()
}

#[tokio::test]
async fn deployments_surface_generate() {
    let server = server_with(ok()).await;
    let p = provider(&server);
    let req = GenerateRequest::new("a boat")
        .model("gpt-image-1")
        .size(Size::SQUARE)
        .quality(Quality::High)
        .output_format(OutputFormat::Jpeg)
        .output_compression(80u8);
    let resp = p.generate(&req, &ctx()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.method.as_str(), "POST");
    assert_eq!(
        got.url.path(),
        "/openai/deployments/img-dep/images/generations"
    );
    assert_eq!(got.url.query(), Some("api-version=2025-04-01-preview"));
    assert_eq!(header(got, "api-key"), Some(KEY));
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(header(got, "content-type"), Some("application/json"));
    // No `model`: the deployment decides.
    assert_eq!(
        json_of(got),
        json!({"prompt": "a boat", "size": "1024x1024", "quality": "high",
               "output_format": "jpeg", "output_compression": 80})
    );
    assert_eq!(resp.model, "gpt-image-1");
    assert_eq!(resp.images.len(), 1);
}

#[tokio::test]
async fn bearer_token_and_custom_api_version() {
    let server = server_with(ok()).await;
    let p = Azure::builder()
        .client(client())
        .endpoint(format!("{}/", server.uri()))
        .auth(AzureAuth::BearerToken("entra-SECRET-token".into()))
        .api_version("2025-06-01")
        .default_deployment("default-dep")
        .build()
        .unwrap();
    p.generate(&GenerateRequest::new("x"), &ctx())
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        got.url.path(),
        "/openai/deployments/default-dep/images/generations"
    );
    assert_eq!(got.url.query(), Some("api-version=2025-06-01"));
    assert_eq!(
        header(got, "authorization"),
        Some("Bearer entra-SECRET-token")
    );
    assert!(got.headers.get("api-key").is_none());
    assert!(!format!("{p:?}").contains("entra-SECRET-token"));
}

#[tokio::test]
async fn v1_surface_puts_deployment_in_model() {
    let server = server_with(ok()).await;
    let p = Azure::builder()
        .client(client())
        .endpoint(server.uri())
        .api_key(KEY)
        .deployment("gpt-image-1", "img-dep")
        .v1_surface(true)
        .build()
        .unwrap();
    p.generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/openai/v1/images/generations");
    assert_eq!(got.url.query(), None);
    assert_eq!(json_of(got), json!({"prompt": "x", "model": "img-dep"}));
}

#[tokio::test]
async fn edits_are_multipart_without_model() {
    let server = server_with(ok()).await;
    let p = provider(&server);
    let req = EditRequest::new(
        "merge",
        vec![
            InputImage::new(png_bytes(), "a.png"),
            InputImage::new(png_bytes(), "b.png"),
        ],
    )
    .model("gpt-image-1")
    .quality(Quality::Low);
    p.edit(&req, &ctx()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/openai/deployments/img-dep/images/edits");
    assert_eq!(got.url.query(), Some("api-version=2025-04-01-preview"));
    assert_eq!(header(got, "api-key"), Some(KEY));
    let parts = parts(got).await;
    let names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prompt", "quality", "image[]", "image[]"]);
    assert!(parts
        .iter()
        .filter(|p| p.name == "image[]")
        .all(|p| p.content_type.as_deref() == Some("image/png")));
}

#[tokio::test]
async fn v1_surface_edit_sends_deployment_as_model() {
    let server = server_with(ok()).await;
    let p = Azure::builder()
        .client(client())
        .endpoint(server.uri())
        .api_key(KEY)
        .deployment("gpt-image-1", "img-dep")
        .v1_surface(true)
        .build()
        .unwrap();
    let req =
        EditRequest::new("x", vec![InputImage::new(png_bytes(), "a.png")]).model("gpt-image-1");
    p.edit(&req, &ctx()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/openai/v1/images/edits");
    let parts = parts(got).await;
    assert_eq!(text_part(&parts, "model"), Some("img-dep"));
    assert_eq!(parts.iter().filter(|p| p.name == "image").count(), 1);
}

#[test]
fn capabilities_only_for_deployed_models_and_no_webp() {
    let p = Azure::builder()
        .client(client())
        .endpoint("https://r.openai.azure.com")
        .api_key(KEY)
        .deployment("gpt-image-1", "d1")
        .build()
        .unwrap();
    assert_eq!(p.kind(), ProviderKind::Azure);
    let caps = p.capabilities("gpt-image-1").unwrap();
    assert!(!caps.output_formats.contains(&OutputFormat::Webp));
    assert!(caps.output_formats.contains(&OutputFormat::Png));
    assert!(p.capabilities("gpt-image-1-mini").is_none());
    assert_eq!(p.deployment_for("gpt-image-1"), Some("d1"));
    let req = GenerateRequest::new("x")
        .model("gpt-image-1")
        .output_format(OutputFormat::Webp);
    assert!(p.supports(&req.into()).is_err());
}

#[tokio::test]
async fn model_without_deployment_fails_without_a_call() {
    let server = server_with(ok()).await;
    let p = provider(&server);
    let err = p
        .generate(&GenerateRequest::new("x").model("dall-e-3"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::Deployment
        }
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn error_for(resp: ResponseTemplate) -> ProviderError {
    let server = server_with(resp).await;
    provider(&server)
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err()
}

fn body(v: Value, status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_json(v)
        .insert_header("apim-request-id", "apim-123")
}

#[tokio::test]
async fn azure_429_numeric_code_retry_from_message() {
    let err = error_for(body(json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}), 429)).await;
    assert_eq!(
        err.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Unknown
        }
    );
    assert_eq!(err.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(err.code.as_deref(), Some("429"));
    assert_eq!(err.status, Some(429));
    assert_eq!(err.request_id.as_deref(), Some("apim-123"));
    assert_eq!(err.provider, "azure");
}

#[tokio::test]
async fn azure_rate_limit_reached_with_headers() {
    let err = error_for(
        body(json!({"error": {"code": "RateLimitReached", "message": "Your requests to gpt-image-1 for gpt-image-1 in East US have exceeded the call rate limit. Please retry after 10 seconds."}}), 429)
            .insert_header("retry-after", "10")
            .insert_header("x-ms-retry-after-ms", "9500"),
    )
    .await;
    assert!(err.is_rate_limited(), "{err:?}");
    assert_eq!(err.retry_after, Some(Duration::from_millis(9500)));
}

#[tokio::test]
async fn azure_401_403_404() {
    let err = error_for(body(json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}), 401)).await;
    assert_eq!(err.kind, ErrorKind::Authentication);
    assert!(!format!("{err:?}").contains(KEY));

    let err = error_for(body(json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}), 404)).await;
    assert_eq!(
        err.kind,
        ErrorKind::NotFound {
            what: NotFoundKind::Deployment
        }
    );

    let err = error_for(body(json!({"error": {"code": "Forbidden", "message": "Your resource has been temporarily blocked because we detected behavior that may violate our content policy."}}), 403)).await;
    assert_eq!(
        err.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::ResourceBlocked
        }
    );
}

#[tokio::test]
async fn azure_content_filter_lists_categories() {
    let err = error_for(body(
        json!({"error": {
            "code": "content_policy_violation",
            "message": "Your request was rejected as a result of our safety system.",
            "inner_error": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": false, "severity": "safe"},
                    "violence": {"filtered": true, "severity": "high"},
                    "self_harm": {"filtered": false, "severity": "safe"}
                }
            }
        }}),
        400,
    ))
    .await;
    match &err.kind {
        ErrorKind::ContentPolicy { reason: Some(r) } => {
            assert!(r.contains("rejected"), "{r}");
            assert!(r.contains("violence"), "{r}");
            assert!(!r.contains("hate"), "{r}");
        }
        other => panic!("{other:?}"),
    }

    let err = error_for(body(json!({"error": {"code": "contentFilter", "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."}}), 400)).await;
    assert!(err.is_content_policy());
}

#[tokio::test]
async fn azure_success_with_filter_results_decodes() {
    let b = json!({"created": 1, "data": [{"b64_json": b64(&png_bytes()),
        "content_filter_results": {"violence": {"filtered": false, "severity": "safe"}},
        "prompt_filter_results": {"violence": {"filtered": false, "severity": "safe"}}}]});
    let server = server_with(
        ResponseTemplate::new(200)
            .set_body_json(b)
            .insert_header("apim-request-id", "apim-ok"),
    )
    .await;
    let resp = provider(&server)
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap();
    assert_eq!(resp.request_id.as_deref(), Some("apim-ok"));
    assert_eq!(resp.images[0].format, OutputFormat::Png);
}

#[test]
fn builder_errors_name_the_field() {
    let field = |r: Result<Azure, image_router::ConfigError>| r.unwrap_err().field;
    let ok = || {
        Azure::builder()
            .endpoint("https://r.openai.azure.com")
            .api_key("k")
            .deployment("gpt-image-1", "d")
    };
    assert!(ok().build().is_ok());
    assert_eq!(
        field(Azure::builder().api_key("k").deployment("m", "d").build()),
        "endpoint"
    );
    assert_eq!(field(ok().endpoint("nope").build()), "endpoint");
    assert_eq!(
        field(
            Azure::builder()
                .endpoint("https://r.openai.azure.com")
                .api_key("k")
                .build()
        ),
        "deployment"
    );
    assert_eq!(
        field(
            Azure::builder()
                .endpoint("https://r.openai.azure.com")
                .deployment("m", "d")
                .build()
        ),
        "api_key"
    );
    assert_eq!(field(ok().api_key("").build()), "api_key");
    assert_eq!(field(ok().bearer_token(" ").build()), "bearer_token");
    assert_eq!(field(ok().deployment("dall-e-3", "").build()), "deployment");
    assert_eq!(field(ok().api_version("").build()), "api_version");
    assert_eq!(field(ok().name(" ").build()), "name");
    let b = ok().api_key(KEY);
    assert!(!format!("{b:?}").contains(KEY));
    assert!(!format!("{:?}", b.build().unwrap()).contains(KEY));
}

#[tokio::test]
async fn the_attempt_trace_names_the_deployment_for_failures_and_successes() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"error": {"code": "ServiceUnavailable", "message": "busy"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(any()).respond_with(ok()).mount(&server).await;
    let p = provider(&server);
    assert_eq!(p.wire_model("gpt-image-1"), "img-dep");
    let router = image_router::Router::builder()
        .provider(p)
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("a boat").model("gpt-image-1"))
        .await
        .unwrap();
    assert_eq!(
        res.model, "gpt-image-1",
        "the response names the router's model"
    );
    let models: Vec<&str> = res.attempts.iter().map(|a| a.model.as_str()).collect();
    assert_eq!(models, vec!["img-dep", "img-dep"], "{:?}", res.attempts);
}
