//! Wire tests for OpenAI-compatible proxies (images and chat modes).

use crate::support::wire;

use image_router::providers::{Compatible, CompatibleMode};
use image_router::{
    EditRequest, ErrorKind, GenerateRequest, InputImage, OutputFormat, Provider, ProviderKind,
};
use serde_json::{json, Value};
use wire::*;
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "proxy-SECRET-key-42";

async fn server_with(resp: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(resp).mount(&server).await;
    server
}

fn images(server: &MockServer) -> Compatible {
    Compatible::builder()
        .client(client())
        .base_url(format!("{}/v1", server.uri()))
        .api_key(KEY)
        .rename_model("gpt-image-1", "openai/gpt-image-1")
        .build()
        .unwrap()
}

fn chat(server: &MockServer) -> Compatible {
    Compatible::builder()
        .client(client())
        .base_url(format!("{}/v1", server.uri()))
        .api_key(KEY)
        .mode(CompatibleMode::Chat)
        .build()
        .unwrap()
}

fn chat_answer(message: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 77,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1200, "total_tokens": 1209}
    }))
}

#[tokio::test]
async fn images_mode_renames_the_wire_model() {
    let server = server_with(ok()).await;
    let p = images(&server);
    let resp = p
        .generate(
            &GenerateRequest::new("x").model("gpt-image-1").n(2u8),
            &ctx(),
        )
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/generations");
    assert_eq!(
        header(got, "authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(
        json_of(got),
        json!({"prompt": "x", "model": "openai/gpt-image-1", "n": 2})
    );
    assert_eq!(resp.model, "openai/gpt-image-1");
    assert_eq!(p.kind(), ProviderKind::Compatible);
}

#[tokio::test]
async fn images_mode_edit_renames_model_part() {
    let server = server_with(ok()).await;
    let p = images(&server);
    let req =
        EditRequest::new("x", vec![InputImage::new(png_bytes(), "a.png")]).model("gpt-image-1");
    p.edit(&req, &ctx()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/edits");
    let parts = parts(got).await;
    assert_eq!(text_part(&parts, "model"), Some("openai/gpt-image-1"));
    assert_eq!(parts.iter().filter(|p| p.name == "image").count(), 1);
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    let server = server_with(ok()).await;
    let p = Compatible::builder()
        .client(client())
        .base_url(server.uri())
        .build()
        .unwrap();
    p.generate(&GenerateRequest::new("x").model("local-model"), &ctx())
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    // A bare host as base URL gets `/v1`.
    assert_eq!(got.url.path(), "/v1/images/generations");
    assert!(got.headers.get("authorization").is_none());
}

#[tokio::test]
async fn chat_mode_request_and_markdown_image() {
    let server = MockServer::start().await;
    let url = format!("{}/img/1.png", server.uri());
    Mock::given(path("/img/1.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png_bytes()))
        .mount(&server)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(chat_answer(
            json!({"role": "assistant", "content": format!("Here you go:\n\n![image]({url})")}),
        ))
        .mount(&server)
        .await;
    let p = chat(&server);
    let resp = p
        .generate(&GenerateRequest::new("a cat").model("gpt-image-1"), &ctx())
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let got = reqs
        .iter()
        .find(|r| r.url.path() == "/v1/chat/completions")
        .unwrap();
    assert_eq!(
        header(got, "authorization"),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(
        json_of(got),
        json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": "a cat"}]})
    );
    assert_eq!(resp.images.len(), 1);
    assert_eq!(resp.images[0].bytes.as_ref(), png_bytes().as_slice());
    assert_eq!(resp.images[0].url.as_deref(), Some(url.as_str()));
    assert_eq!(resp.created, 77);
    let usage = resp.usage.unwrap();
    assert_eq!(usage.input_tokens, 9);
    assert_eq!(usage.output_tokens, 1200);
    assert!(usage.output_tokens_details.is_none());
}

#[tokio::test]
async fn chat_mode_data_url_parts_and_images_field() {
    let data_url = format!("data:image/jpeg;base64,{}", b64(&jpeg_bytes()));
    let shapes = [
        json!({"role": "assistant", "content": data_url}),
        json!({"role": "assistant", "content": [
            {"type": "text", "text": "Done."},
            {"type": "image_url", "image_url": {"url": data_url}}]}),
        json!({"role": "assistant", "content": "", "images": [
            {"type": "image_url", "image_url": {"url": data_url}}]}),
    ];
    for (i, message) in shapes.into_iter().enumerate() {
        let server = server_with(chat_answer(message)).await;
        let resp = chat(&server)
            .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
            .await
            .unwrap_or_else(|e| panic!("shape {i}: {e}"));
        assert_eq!(
            resp.images[0].bytes.as_ref(),
            jpeg_bytes().as_slice(),
            "shape {i}"
        );
        assert_eq!(resp.images[0].format, OutputFormat::Jpeg);
    }
}

#[tokio::test]
async fn chat_mode_without_image_is_decode_error() {
    for message in [
        json!({"role": "assistant", "content": "I cannot draw that."}),
        json!({"role": "assistant", "content": null}),
    ] {
        let server = server_with(chat_answer(message)).await;
        let err = chat(&server)
            .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    }
    let server =
        server_with(ResponseTemplate::new(200).set_body_raw("not json", "text/plain")).await;
    let err = chat(&server)
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode);
}

#[tokio::test]
async fn chat_mode_errors_classify_like_openai() {
    let server = server_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
        "message": "Rate limit reached for gpt-image-1 on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 12s.",
        "type": "requests", "param": null, "code": "rate_limit_exceeded"}}))).await;
    let err = chat(&server)
        .generate(&GenerateRequest::new("x").model("gpt-image-1"), &ctx())
        .await
        .unwrap_err();
    assert!(err.is_rate_limited());
    assert_eq!(err.retry_after, Some(std::time::Duration::from_secs(12)));
}

#[tokio::test]
async fn chat_mode_has_no_edits_and_one_image() {
    let server = server_with(ok()).await;
    let p = chat(&server);
    let caps = p.capabilities("gpt-image-1").unwrap();
    assert!(!caps.edits);
    assert_eq!(caps.max_n, 1);
    let req =
        EditRequest::new("x", vec![InputImage::new(png_bytes(), "a.png")]).model("gpt-image-1");
    assert!(p.supports(&req.clone().into()).is_err());
    assert!(p.edit(&req, &ctx()).await.is_err());
    assert!(server.received_requests().await.unwrap().is_empty());
    // Images mode keeps edits.
    assert!(images(&server).capabilities("gpt-image-1").unwrap().edits);
}

#[test]
fn builder_errors_and_redaction() {
    let field = |r: Result<Compatible, image_router::ConfigError>| r.unwrap_err().field;
    assert_eq!(field(Compatible::builder().build()), "base_url");
    assert_eq!(
        field(Compatible::builder().base_url("::").build()),
        "base_url"
    );
    assert_eq!(
        field(
            Compatible::builder()
                .base_url("http://x.test")
                .api_key("")
                .build()
        ),
        "api_key"
    );
    assert_eq!(
        field(
            Compatible::builder()
                .base_url("http://x.test")
                .rename_model("a", "")
                .build()
        ),
        "rename_model"
    );
    let b = Compatible::builder().base_url("http://x.test").api_key(KEY);
    assert!(!format!("{b:?}").contains(KEY));
    let p = b.build().unwrap();
    assert!(!format!("{p:?}").contains(KEY));
    assert_eq!(p.name(), "compatible");
    // Unknown models are allowed by default; can be turned off.
    assert!(p.capabilities("brand-new").is_some());
    let strict = Compatible::builder()
        .base_url("http://x.test")
        .allow_unknown_models(false)
        .build()
        .unwrap();
    assert!(strict.capabilities("brand-new").is_none());
}
