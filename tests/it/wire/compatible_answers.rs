//! Black-box OpenAI-compatible proxies: base URL joining.

use super::helpers::*;
use image_router::providers::Compatible;
use image_router::{GenerateRequest, Router};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn compatible_base_url_joining() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let cases = [
        ("/v1", "/v1/images/generations"),
        ("/v1/", "/v1/images/generations"),
        // A bare host gets `/v1` (forgetting it is the classic base-URL mistake).
        ("", "/v1/images/generations"),
        ("/", "/v1/images/generations"),
        ("/proxy/openai/v1", "/proxy/openai/v1/images/generations"),
        ("/proxy/openai/v1/", "/proxy/openai/v1/images/generations"),
        // A full endpoint URL pasted as the base.
        ("/v1/images/generations", "/v1/images/generations"),
        ("/v1/chat/completions", "/v1/images/generations"),
    ];
    for (i, (suffix, expected)) in cases.iter().enumerate() {
        let p = Compatible::builder()
            .name(format!("proxy{i}"))
            .base_url(format!("{}{suffix}", server.uri()))
            .api_key(key())
            .build()
            .unwrap();
        let router = Router::builder().provider(p).build().unwrap();
        router.generate(gen()).await.unwrap();
        let reqs = server.received_requests().await.unwrap();
        let got = reqs.last().unwrap();
        assert_eq!(got.url.path(), *expected, "base suffix {suffix:?}");
        assert_eq!(
            got.headers.get("authorization").unwrap().to_str().unwrap(),
            format!("Bearer {}", key())
        );
    }
}

#[tokio::test]
async fn compatible_renames_model_on_the_wire_only() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let p = Compatible::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key(key())
        .rename_model("gpt-image-1", "openai/gpt-image-1")
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    let res = router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["model"], "openai/gpt-image-1");
    assert_eq!(res.model, "gpt-image-1");
}

#[tokio::test]
async fn compatible_chat_mode_markdown_and_data_url() {
    let server = MockServer::start().await;
    let data_url = format!("data:image/png;base64,{}", b64(&png(7)));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 5,
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": format!("Here you go: ![image]({data_url})")}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 272, "total_tokens": 281}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = Compatible::builder()
        .base_url(format!("{}/v1", server.uri()))
        .api_key(key())
        .mode(image_router::providers::CompatibleMode::Chat)
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    let res = router
        .generate(GenerateRequest::new("a cat").model("gpt-image-1"))
        .await
        .unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(7)[..]);
    let got = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body,
        json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": "a cat"}]})
    );
}
