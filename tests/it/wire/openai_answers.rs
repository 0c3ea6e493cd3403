//! Black-box OpenAI generate and edit (multipart) against wiremock answering the real wire shapes.

use super::helpers::*;
use image_router::providers::OpenAi;
use image_router::{
    Background, EditRequest, Error, GenerateRequest, InputFidelity, InputImage, Moderation,
    Outcome, OutputFormat, Quality, ResponseFormat, Router, Size,
};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

// OpenAI generate
#[tokio::test]
async fn openai_generate_sends_every_field_exactly() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(header(
            "authorization",
            format!("Bearer {}", key()).as_str(),
        ))
        .and(header("content-type", "application/json"))
        .respond_with(ok(1))
        .expect(1)
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let req = GenerateRequest::new("a red fox")
        .model("gpt-image-1")
        .n(2)
        .size(Size::LANDSCAPE)
        .quality(Quality::High)
        .output_format(OutputFormat::Webp)
        .output_compression(80)
        .background(Background::Transparent)
        .moderation(Moderation::Low)
        .user("user-42");
    let res = router.generate(req).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        body,
        json!({
            "prompt": "a red fox",
            "model": "gpt-image-1",
            "n": 2,
            "size": "1536x1024",
            "quality": "high",
            "output_format": "webp",
            "output_compression": 80,
            "background": "transparent",
            "moderation": "low",
            "user": "user-42"
        })
    );
    assert!(got.url.query().is_none(), "no query on OpenAI: {}", got.url);
    for absent in ["api-key", "openai-organization", "openai-project"] {
        assert!(got.headers.get(absent).is_none(), "{absent} sent");
    }
    assert_eq!(res.provider, "openai");
    assert_eq!(res.model, "gpt-image-1");
    assert_eq!(res.images.len(), 1);
    assert_eq!(&res.images[0].bytes[..], &png(1)[..]);
    assert_eq!(res.images[0].format, OutputFormat::Png);
    assert_eq!(res.request_id.as_deref(), Some("req_ok"));
    let usage = res.usage.unwrap();
    assert_eq!(usage.output_tokens, 272);
    assert_eq!(usage.total_tokens, 282);
    // gpt-image-1: 10 text-in tokens at $5/1M + 272 image-out tokens at $40/1M.
    let cost = res.cost_usd.unwrap();
    assert!(
        (cost - (10.0 * 5.0 + 272.0 * 40.0) / 1e6).abs() < 1e-9,
        "{cost}"
    );
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(res.attempts[0].outcome, Outcome::Success);
}

#[tokio::test]
async fn openai_generate_minimal_body_and_default_model() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("just a prompt"))
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/generations");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    // Unset fields are not sent; the model defaults to the catalog's.
    assert_eq!(
        body,
        json!({"prompt": "just a prompt", "model": "gpt-image-1"})
    );
    assert_eq!(res.model, "gpt-image-1");
}

#[tokio::test]
async fn openai_organization_and_project_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("openai-organization", "org-abc"))
        .and(header("openai-project", "proj_xyz"))
        .respond_with(ok(1))
        .expect(1)
        .mount(&server)
        .await;
    let p = OpenAi::builder()
        .api_key(key())
        .base_url(format!("{}/v1/", server.uri()))
        .organization("org-abc")
        .project("proj_xyz")
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    // A trailing slash on the base URL does not double the slash.
    assert_eq!(got.url.path(), "/v1/images/generations");
}

#[tokio::test]
async fn response_format_is_never_sent_to_gpt_image_models() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let err = router
        .generate(gen().response_format(ResponseFormat::B64Json))
        .await
        .unwrap_err();
    match &err {
        Error::Invalid(v) => assert_eq!(v.field, "response_format"),
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert_eq!(count(&server).await, 0);
}

#[tokio::test]
async fn dall_e_3_url_response_is_downloaded() {
    let server = MockServer::start().await;
    let image_url = format!("{}/files/img-1.png", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1,
            "data": [{"url": image_url, "revised_prompt": "a fox, watercolor"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/img-1.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png(9)))
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let res = router
        .generate(
            GenerateRequest::new("a fox")
                .model("dall-e-3")
                .size(Size::new(1792, 1024))
                .quality(Quality::Hd)
                .style(image_router::Style::Natural)
                .response_format(ResponseFormat::Url),
        )
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(
        body,
        json!({"prompt": "a fox", "model": "dall-e-3", "size": "1792x1024", "quality": "hd",
               "style": "natural", "response_format": "url"})
    );
    assert_eq!(&res.images[0].bytes[..], &png(9)[..]);
    assert_eq!(
        res.images[0].revised_prompt.as_deref(),
        Some("a fox, watercolor")
    );
}

#[tokio::test]
async fn validation_errors_name_the_field_and_send_nothing() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let cases: Vec<(GenerateRequest, &str)> = vec![
        (GenerateRequest::new("  "), "prompt"),
        (gen().n(0), "n"),
        (gen().n(11), "n"),
        (gen().output_compression(50), "output_compression"),
        (
            gen()
                .output_format(OutputFormat::Jpeg)
                .background(Background::Transparent),
            "background",
        ),
        (gen().size(Size::new(512, 512)), "size"),
        (GenerateRequest::new("x".repeat(32_001)), "prompt"),
        (gen().quality(Quality::Hd), "quality"),
        (gen().style(image_router::Style::Vivid), "style"),
    ];
    for (req, field) in cases {
        match router.generate(req).await {
            Err(Error::Invalid(v)) => assert_eq!(v.field, field),
            other => panic!("{field}: expected a validation error, got {other:?}"),
        }
    }
    assert_eq!(count(&server).await, 0);
}

// OpenAI edit (multipart)
#[tokio::test]
async fn openai_edit_multipart_parts_are_exact() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/edits"))
        .and(header(
            "authorization",
            format!("Bearer {}", key()).as_str(),
        ))
        .respond_with(ok(2))
        .expect(1)
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let jpeg = {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
        v.extend_from_slice(b"jpegdata");
        v
    };
    let req = EditRequest::new(
        "put them in one picture",
        vec![
            InputImage::new(png(1), "a.png"),
            InputImage::new(jpeg.clone(), "b.jpg"),
            InputImage::new(png(3), "c.png"),
        ],
    )
    .mask(InputImage::new(png(4), "mask.png"))
    .model("gpt-image-1")
    .n(1)
    .size(Size::PORTRAIT)
    .quality(Quality::Medium)
    .background(Background::Opaque)
    .output_format(OutputFormat::Jpeg)
    .output_compression(60)
    .input_fidelity(InputFidelity::High)
    .user("u-1");
    let res = router.edit(req).await.unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(2)[..]);

    let got = &server.received_requests().await.unwrap()[0];
    let parts = multipart(got);
    let images: Vec<&Part> = parts.iter().filter(|p| p.name == "image[]").collect();
    assert_eq!(images.len(), 3, "{parts:?}");
    assert!(!parts.iter().any(|p| p.name == "image"));
    assert_eq!(images[0].filename.as_deref(), Some("a.png"));
    assert_eq!(images[0].content_type.as_deref(), Some("image/png"));
    assert_eq!(images[0].body, png(1));
    assert_eq!(images[1].filename.as_deref(), Some("b.jpg"));
    assert_eq!(images[1].content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(images[1].body, jpeg);
    assert_eq!(images[2].body, png(3));
    let mask = parts.iter().find(|p| p.name == "mask").unwrap();
    assert_eq!(mask.filename.as_deref(), Some("mask.png"));
    assert_eq!(mask.content_type.as_deref(), Some("image/png"));
    assert_eq!(mask.body, png(4));
    for (name, value) in [
        ("prompt", "put them in one picture"),
        ("model", "gpt-image-1"),
        ("n", "1"),
        ("size", "1024x1536"),
        ("quality", "medium"),
        ("background", "opaque"),
        ("output_format", "jpeg"),
        ("output_compression", "60"),
        ("input_fidelity", "high"),
        ("user", "u-1"),
    ] {
        assert_eq!(text_field(&parts, name).as_deref(), Some(value), "{name}");
        let p = parts.iter().find(|p| p.name == name).unwrap();
        assert!(p.filename.is_none(), "{name} is a text field");
    }
    // No `moderation` on edits, and nothing unexpected.
    let known = [
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "input_fidelity",
        "user",
        "image[]",
        "mask",
    ];
    for p in &parts {
        assert!(
            known.contains(&p.name.as_str()),
            "unexpected part {}",
            p.name
        );
    }
}

#[tokio::test]
async fn openai_edit_single_image_and_minimal_fields() {
    let server = MockServer::start().await;
    mount_ok(&server, 2).await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    router
        .edit(EditRequest::new(
            "add a hat",
            vec![InputImage::new(png(1), "cat.png")],
        ))
        .await
        .unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/edits");
    let parts = multipart(got);
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("image")).count(),
        1,
        "{names:?}"
    );
    let img = parts
        .iter()
        .find(|p| p.name == "image" || p.name == "image[]")
        .unwrap();
    assert_eq!(img.content_type.as_deref(), Some("image/png"));
    assert_eq!(img.body, png(1));
    assert_eq!(text_field(&parts, "prompt").as_deref(), Some("add a hat"));
    assert_eq!(text_field(&parts, "model").as_deref(), Some("gpt-image-1"));
    assert_eq!(parts.len(), 3, "{names:?}");
}
