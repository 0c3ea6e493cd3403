//! Wire tests for the direct OpenAI provider.

use crate::support::wire;

use std::time::Duration;

use image_router::providers::OpenAi;
use image_router::{
    CallContext, EditRequest, ErrorKind, GenerateRequest, InputImage, OutputFormat, Provider,
    Quality, Size,
};
use serde_json::json;
use wire::*;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A test key, split so no key-shaped literal sits in the source.
const KEY: &str = concat!("sk-", "test-SECRET-1234567890");

async fn server_with(resp: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(resp).mount(&server).await;
    server
}

fn provider(server: &MockServer) -> OpenAi {
    OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn generate_sends_exact_request_and_decodes() {
    let server = server_with(ok()).await;
    let p = OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .base_url(format!("{}/v1/", server.uri())) // trailing slash is fine
        .organization("org-abc")
        .project("proj_xyz")
        .build()
        .unwrap();
    let req = GenerateRequest::new("a red fox")
        .model("gpt-image-1")
        .size(Size::SQUARE)
        .quality(Quality::Low);
    let resp = p.generate(&req, &ctx()).await.unwrap();

    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.method.as_str(), "POST");
    assert_eq!(got.url.path(), "/v1/images/generations");
    assert_eq!(got.url.query(), None);
    assert_eq!(
        header(got, "authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(header(got, "openai-organization"), Some("org-abc"));
    assert_eq!(header(got, "openai-project"), Some("proj_xyz"));
    assert_eq!(header(got, "content-type"), Some("application/json"));
    assert_eq!(
        json_of(got),
        json!({"prompt": "a red fox", "model": "gpt-image-1", "size": "1024x1024", "quality": "low"})
    );

    assert_eq!(resp.images.len(), 1);
    assert_eq!(resp.images[0].bytes.as_ref(), png_bytes().as_slice());
    assert_eq!(resp.images[0].format, OutputFormat::Png);
    assert_eq!(resp.model, "gpt-image-1");
    assert_eq!(resp.created, 1_713_833_628);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.request_id.as_deref(), Some("req_ok_1"));
    assert_eq!(resp.rate_limits.remaining_requests, Some(4));
    assert_eq!(
        resp.rate_limits.reset_requests,
        Some(Duration::from_secs(12))
    );
    let usage = resp.usage.unwrap();
    assert_eq!(usage.output_image_tokens(), 272);
    assert_eq!(usage.total_tokens, 322);
}

#[tokio::test]
async fn generate_without_model_uses_catalog_default_and_no_optional_headers() {
    let server = server_with(ok()).await;
    let p = provider(&server);
    p.generate(&GenerateRequest::new("x"), &ctx())
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    let default = image_router::catalog::Catalog::builtin().default_model();
    assert_eq!(json_of(got), json!({"prompt": "x", "model": default}));
    assert!(got.headers.get("openai-organization").is_none());
    assert!(got.headers.get("openai-project").is_none());
}

#[tokio::test]
async fn edit_single_image_is_multipart_with_image_and_mask() {
    let server = server_with(ok()).await;
    let p = provider(&server);
    let mut req = EditRequest::new("add a hat", vec![InputImage::new(png_bytes(), "cat.png")])
        .model("gpt-image-1")
        .size(Size::SQUARE);
    req.mask = Some(InputImage::new(png_bytes(), "mask.png"));
    p.edit(&req, &ctx()).await.unwrap();

    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/edits");
    assert_eq!(
        header(got, "authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    let parts = parts(got).await;
    let names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prompt", "size", "model", "image", "mask"]);
    assert_eq!(text_part(&parts, "prompt"), Some("add a hat"));
    assert_eq!(text_part(&parts, "model"), Some("gpt-image-1"));
    assert_eq!(text_part(&parts, "size"), Some("1024x1024"));
    let image = parts.iter().find(|p| p.name == "image").unwrap();
    assert_eq!(image.filename.as_deref(), Some("cat.png"));
    assert_eq!(image.content_type.as_deref(), Some("image/png"));
    assert_eq!(image.data.as_ref(), png_bytes().as_slice());
    let mask = parts.iter().find(|p| p.name == "mask").unwrap();
    assert_eq!(mask.filename.as_deref(), Some("mask.png"));
    assert_eq!(mask.content_type.as_deref(), Some("image/png"));
}

#[tokio::test]
async fn edit_several_images_repeats_image_brackets() {
    let server = server_with(ok()).await;
    let p = provider(&server);
    let req = EditRequest::new(
        "combine",
        vec![
            InputImage::new(png_bytes(), "a.png"),
            InputImage::new(jpeg_bytes(), "b.jpg"),
        ],
    )
    .model("gpt-image-1");
    p.edit(&req, &ctx()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    let parts = parts(got).await;
    let images: Vec<_> = parts.iter().filter(|p| p.name == "image[]").collect();
    assert_eq!(images.len(), 2);
    assert!(parts.iter().all(|p| p.name != "image" && p.name != "mask"));
    assert_eq!(images[0].filename.as_deref(), Some("a.png"));
    assert_eq!(images[1].filename.as_deref(), Some("b.jpg"));
    assert_eq!(images[1].content_type.as_deref(), Some("image/jpeg"));
}

#[tokio::test]
async fn url_items_are_downloaded() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::path("/files/img.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg_bytes()))
        .mount(&server)
        .await;
    let url = format!("{}/files/img.jpg", server.uri());
    Mock::given(wiremock::matchers::path("/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"created": 1, "data": [{"url": url, "revised_prompt": "a better fox"}]}),
        ))
        .mount(&server)
        .await;
    let resp = provider(&server)
        .generate(&GenerateRequest::new("fox").model("dall-e-3"), &ctx())
        .await
        .unwrap();
    assert_eq!(resp.images[0].bytes.as_ref(), jpeg_bytes().as_slice());
    assert_eq!(resp.images[0].format, OutputFormat::Jpeg);
    assert_eq!(resp.images[0].url.as_deref(), Some(url.as_str()));
    assert_eq!(
        resp.images[0].revised_prompt.as_deref(),
        Some("a better fox")
    );
    assert!(resp.usage.is_none());
}

#[tokio::test]
async fn missing_usage_details_and_echo_fields_are_fine() {
    let body = json!({
        "created": 5,
        "data": [{"b64_json": b64(&png_bytes())}, {"b64_json": b64(&png_bytes())}],
        "usage": {"input_tokens": 3, "input_tokens_details": {"text_tokens": 3, "image_tokens": 0},
                  "output_tokens": 100, "total_tokens": 103}
    });
    let server = server_with(ResponseTemplate::new(200).set_body_json(body)).await;
    // Two images asked for: a provider's extra images beyond `n` are dropped.
    let resp = provider(&server)
        .generate(&GenerateRequest::new("x").model("gpt-image-1").n(2), &ctx())
        .await
        .unwrap();
    assert_eq!(resp.images.len(), 2);
    let usage = resp.usage.unwrap();
    assert!(usage.output_tokens_details.is_none());
    assert_eq!(usage.output_image_tokens(), 100);
    assert!(resp.request_id.is_none());
    assert!(resp.rate_limits.is_empty());
}

async fn decode_error_for(resp: ResponseTemplate) -> image_router::ProviderError {
    let server = server_with(resp).await;
    provider(&server)
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn broken_success_bodies_are_decode_errors() {
    let cases = vec![
        ResponseTemplate::new(200)
            .set_body_raw(r#"{"created": 1, "data": [{"b64_js"#, "application/json"),
        ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": []})),
        ResponseTemplate::new(200).set_body_json(json!({"created": 1})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"created": 1, "data": [{"revised_prompt": "x"}]})),
        ResponseTemplate::new(200)
            .set_body_json(json!({"created": 1, "data": [{"b64_json": "@@not base64@@"}]})),
        ResponseTemplate::new(200)
            .set_body_raw("<html><body>Bad gateway</body></html>", "text/html"),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let err = decode_error_for(case).await;
        assert_eq!(err.kind, ErrorKind::Decode, "case {i}: {err}");
        assert_eq!(err.status, Some(200), "case {i}");
        assert_eq!(err.provider, "openai");
    }
}

#[tokio::test]
async fn failed_url_download_is_decode_error() {
    let server = MockServer::start().await;
    let url = format!("{}/files/gone.png", server.uri());
    Mock::given(wiremock::matchers::path("/v1/images/generations"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": [{"url": url}]})),
        )
        .mount(&server)
        .await;
    Mock::given(wiremock::matchers::path("/files/gone.png"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let err = provider(&server)
        .generate(&GenerateRequest::new("x").model("dall-e-3"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
}

#[tokio::test]
async fn slow_answer_is_a_timeout() {
    let server = server_with(ok().set_delay(Duration::from_secs(3))).await;
    let err = provider(&server)
        .generate(
            &GenerateRequest::new("x").model("gpt-image-1"),
            &CallContext::new(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout { sent: true }, "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn provider_timeout_cap_applies() {
    let server = server_with(ok().set_delay(Duration::from_secs(3))).await;
    let p = OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .base_url(format!("{}/v1", server.uri()))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = p
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn connection_refused_is_connect() {
    let p = OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .base_url(refused_url())
        .build()
        .unwrap();
    let err = p
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connect, "{err}");
    assert!(!format!("{err:?}{err}").contains(KEY));
}

#[tokio::test]
async fn unauthorized_never_leaks_the_key() {
    let body = json!({"error": {"message": "Incorrect API key provided: sk-test-****7890. You can find your API key at https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
    let server = server_with(
        ResponseTemplate::new(401)
            .set_body_json(body)
            .insert_header("x-request-id", "req_401"),
    )
    .await;
    let p = provider(&server);
    let err = p
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Authentication);
    assert_eq!(err.code.as_deref(), Some("invalid_api_key"));
    assert_eq!(err.request_id.as_deref(), Some("req_401"));
    for text in [format!("{err:?}"), err.to_string(), format!("{p:?}")] {
        assert!(!text.contains(KEY), "{text}");
    }
    let builder = OpenAi::builder().api_key(KEY);
    assert!(!format!("{builder:?}").contains(KEY));
}

#[tokio::test]
async fn capabilities_follow_catalog_and_allow_list() {
    let p = OpenAi::builder().api_key(KEY).build().unwrap();
    assert_eq!(p.kind(), image_router::ProviderKind::OpenAi);
    assert!(p.capabilities("gpt-image-1").is_some());
    assert!(p.capabilities("no-such-model").is_none());
    let p = OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .allow_unknown_models(true)
        .build()
        .unwrap();
    assert!(p.capabilities("no-such-model").is_some());
    let p = OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .models(["gpt-image-1"])
        .build()
        .unwrap();
    assert!(p.capabilities("gpt-image-1").is_some());
    assert!(p.capabilities("gpt-image-1-mini").is_none());
}

#[test]
fn builder_errors_name_the_field() {
    let field = |r: Result<OpenAi, image_router::ConfigError>| r.unwrap_err().field;
    assert_eq!(field(OpenAi::builder().build()), "api_key");
    // Keys are accepted as &str, String or SecretString.
    assert!(OpenAi::builder().api_key(String::from("k")).build().is_ok());
    assert!(OpenAi::builder()
        .api_key(secrecy::SecretString::from("k"))
        .build()
        .is_ok());
    assert_eq!(field(OpenAi::builder().api_key("  ").build()), "api_key");
    assert_eq!(
        field(OpenAi::builder().api_key("k").base_url("not a url").build()),
        "base_url"
    );
    assert_eq!(
        field(
            OpenAi::builder()
                .api_key("k")
                .base_url("ftp://x.test")
                .build()
        ),
        "base_url"
    );
    assert_eq!(
        field(OpenAi::builder().api_key("k").name("").build()),
        "name"
    );
    assert_eq!(
        field(
            OpenAi::builder()
                .api_key("k")
                .timeout(Duration::ZERO)
                .build()
        ),
        "timeout"
    );
    assert_eq!(
        field(
            OpenAi::builder()
                .api_key("k")
                .models(Vec::<String>::new())
                .build()
        ),
        "models"
    );
    assert_eq!(
        field(OpenAi::builder().api_key("k").organization("a\nb").build()),
        "organization"
    );
}

#[tokio::test]
async fn no_time_left_is_timeout_not_sent() {
    let server = server_with(ok()).await;
    let err = provider(&server)
        .generate(
            &GenerateRequest::new("x").model("gpt-image-1"),
            &CallContext::new(Duration::ZERO),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout { sent: false });
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn connection_closed_mid_body_is_connect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 65536];
        let _ = sock.read(&mut buf).await;
        let _ = sock
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"created\":1,\"da")
            .await;
        let _ = sock.shutdown().await;
    });
    let p = OpenAi::builder()
        .client(client())
        .api_key(KEY)
        .base_url(format!("http://{addr}/v1"))
        .build()
        .unwrap();
    let err = p
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Connect, "{err}");
    assert_eq!(err.status, Some(200));
}

#[tokio::test]
async fn huge_timeout_does_not_overflow() {
    let server = server_with(ok()).await;
    let resp = provider(&server)
        .generate(
            &GenerateRequest::new("x").model("gpt-image-1"),
            &CallContext::new(Duration::MAX),
        )
        .await
        .unwrap();
    assert_eq!(resp.images.len(), 1);
}

#[tokio::test]
async fn a_429s_rate_limit_headers_reach_the_limiter() {
    // A 429 without retry-after whose headers say the request window is empty for 1m30s
    // and the account's limit is 3 a minute: the provider stays off for the whole reset
    // (not just the router's 1 s default wait) and its limiter takes the lower limit.
    let limited = server_with(
        ResponseTemplate::new(429)
            .set_body_json(json!({"error": {
                "message": "Rate limit reached for gpt-image-1 in organization org-x on requests per min (RPM): Limit 3, Used 3, Requested 1.",
                "type": "requests", "param": null, "code": "rate_limit_exceeded"}}))
            .insert_header("x-ratelimit-limit-requests", "3")
            .insert_header("x-ratelimit-remaining-requests", "0")
            .insert_header("x-ratelimit-reset-requests", "1m30s"),
    )
    .await;
    let fallback = server_with(ok()).await;
    let router = image_router::Router::builder()
        .provider(
            OpenAi::builder()
                .name("limited")
                .client(client())
                .api_key(KEY)
                .base_url(format!("{}/v1", limited.uri()))
                .build()
                .unwrap(),
        )
        .provider(
            OpenAi::builder()
                .name("fallback")
                .client(client())
                .api_key(KEY)
                .base_url(format!("{}/v1", fallback.uri()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let req = || GenerateRequest::new("a boat").model("gpt-image-1");
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    let err = res.attempts[0].error.as_ref().unwrap();
    assert_eq!(
        err.rate_limits.as_ref().unwrap().remaining_requests,
        Some(0)
    );
    let status = router.status();
    let headroom = &status.providers[0].headroom;
    assert!(
        headroom
            .retry_in
            .is_some_and(|d| d > Duration::from_secs(60)),
        "{headroom:?}"
    );
    assert!(
        headroom.effective_rpm.is_some_and(|r| r <= 3),
        "{headroom:?}"
    );
    // The next requests skip it without a call.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(limited.received_requests().await.unwrap().len(), 1);
}
