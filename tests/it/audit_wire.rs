//! Black-box audit: the public API against wiremock servers that answer with the real wire
//! shapes and error bodies of OpenAI and Azure OpenAI (see `shared/api-facts.md`), as a new user
//! would exercise it. Real time, builder defaults unless a test is about a setting.

use std::time::Duration;

use base64::Engine;
use image_router::providers::{Azure, Compatible, OpenAi};
use image_router::{
    AccessDenial, Background, EditRequest, Error, ErrorKind, GenerateRequest, InputFidelity,
    InputImage, Moderation, NotFoundKind, Outcome, OutputFormat, Quality, RateLimitScope,
    ResponseFormat, Router, Size, SkipReason,
};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// helpers

/// A key built at run time (no key-shaped literal in the file).
fn key() -> String {
    format!("sk-{}", "x".repeat(30))
}

fn other_key() -> String {
    format!("az{}", "k".repeat(30))
}

/// Bytes that look like a PNG (signature + a fake IHDR), distinct per `tag`.
fn png(tag: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, tag]);
    v
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn ok_body(tag: u8) -> Value {
    json!({
        "created": 1_713_833_628,
        "data": [{"b64_json": b64(&png(tag))}],
        "background": "opaque",
        "output_format": "png",
        "quality": "low",
        "size": "1024x1024",
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
            "output_tokens": 272,
            "total_tokens": 282
        }
    })
}

fn ok(tag: u8) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(ok_body(tag))
        .insert_header("x-request-id", "req_ok")
}

fn openai(server: &MockServer, name: &str) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .api_key(key())
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap()
}

/// Two OpenAI-style providers, `primary` then `secondary`, strict order (these tests are
/// about what happens after the primary's answer, not about ranking).
fn two(primary: &MockServer, secondary: &MockServer) -> Router {
    Router::builder()
        .provider(openai(primary, "primary"))
        .provider(openai(secondary, "secondary"))
        .build()
        .unwrap()
}

async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

async fn mount_ok(server: &MockServer, tag: u8) {
    Mock::given(method("POST"))
        .respond_with(ok(tag))
        .mount(server)
        .await;
}

async fn mount_error(server: &MockServer, status: u16, body: Value, headers: &[(&str, &str)]) {
    let mut t = ResponseTemplate::new(status)
        .set_body_json(body)
        .insert_header("x-request-id", "req_err");
    for (k, v) in headers {
        t = t.insert_header(*k, *v);
    }
    Mock::given(method("POST"))
        .respond_with(t)
        .mount(server)
        .await;
}

fn openai_error(message: &str, etype: Value, param: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": etype, "param": param, "code": code}})
}

fn gen() -> GenerateRequest {
    GenerateRequest::new("a lighthouse at dusk")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

/// A multipart part: headers (lower-cased names) and body.
#[derive(Debug)]
struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a multipart/form-data body by hand (byte-exact, no helper crate).
fn multipart(req: &Request) -> Vec<Part> {
    let ct = req
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
    let boundary = ct.split("boundary=").nth(1).unwrap().trim_matches('"');
    let delim = format!("--{boundary}");
    let body = &req.body[..];
    let mut parts = Vec::new();
    let mut rest = &body[find(body, delim.as_bytes()).unwrap() + delim.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = rest.strip_prefix(b"\r\n").unwrap();
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&rest[..head_end]).unwrap();
        let after = &rest[head_end + 4..];
        let next = find(after, format!("\r\n{delim}").as_bytes()).unwrap();
        let data = after[..next].to_vec();
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            body: data,
        };
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').unwrap();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for item in v.split(';').map(str::trim) {
                        if let Some(n) = item.strip_prefix("name=") {
                            part.name = n.trim_matches('"').to_string();
                        }
                        if let Some(n) = item.strip_prefix("filename=") {
                            part.filename = Some(n.trim_matches('"').to_string());
                        }
                    }
                }
                "content-type" => part.content_type = Some(v.trim().to_string()),
                _ => {}
            }
        }
        parts.push(part);
        rest = &after[next + 2 + delim.len()..];
    }
    parts
}

fn text_field(parts: &[Part], name: &str) -> Option<String> {
    parts
        .iter()
        .find(|p| p.name == name)
        .map(|p| String::from_utf8(p.body.clone()).unwrap())
}

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
// Azure

fn azure(server: &MockServer) -> image_router::providers::AzureBuilder {
    Azure::builder()
        .name("azure")
        .endpoint(server.uri())
        .deployment("gpt-image-1", "img-prod")
}

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

// ---------------------------------------------------------------------------------------------
// Compatible proxy: base URL joining

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

// ---------------------------------------------------------------------------------------------
// Real error bodies through a two-provider router

struct Case {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, &'static str)>,
    kind: ErrorKind,
    fails_over: bool,
    /// Words the explanation (cause + action) must contain.
    words: &'static [&'static str],
}

async fn run_case(name: &str, c: Case) {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    mount_error(&primary, c.status, c.body.clone(), &c.headers).await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let result = router.generate(gen()).await;
    let first_error = if c.fails_over {
        let res = result.unwrap_or_else(|e| panic!("{name}: expected failover, got {e}"));
        assert_eq!(res.provider, "secondary", "{name}");
        assert_eq!(res.attempts.len(), 2, "{name}: {:?}", res.attempts);
        assert_eq!(res.attempts[1].outcome, Outcome::Success, "{name}");
        res.attempts[0].error.clone().unwrap()
    } else {
        let err = result.expect_err(name);
        assert!(matches!(err, Error::Rejected { .. }), "{name}: {err:?}");
        assert_eq!(count(&secondary).await, 0, "{name}: no failover");
        assert_eq!(err.attempts().len(), 1, "{name}");
        let text = err.to_string();
        let cause = err.cause().unwrap().clone();
        assert!(
            text.contains(&cause.message),
            "{name}: Display has the provider's reason: {text}"
        );
        cause
    };
    assert_eq!(count(&primary).await, 1, "{name}: no retry on primary");
    assert_eq!(first_error.kind, c.kind, "{name}");
    assert_eq!(first_error.status, Some(c.status), "{name}");
    assert_eq!(first_error.provider, "primary", "{name}");
    assert_eq!(first_error.request_id.as_deref(), Some("req_err"), "{name}");
    let e = first_error.explain();
    let all = format!("{} {}", e.cause, e.action).to_lowercase();
    for w in c.words {
        assert!(all.contains(&w.to_lowercase()), "{name}: {w:?} in {all}");
    }
    // The next request: a provider that failed over is remembered (cool-down, or put last
    // until its retry-after) and not paid for again; a refusal of the request itself says
    // nothing about the provider, which is asked again.
    let again = router.generate(gen()).await;
    if c.fails_over {
        let res = again.unwrap();
        assert_eq!(res.provider, "secondary", "{name}");
        assert_eq!(res.attempts.len(), 1, "{name}: {:?}", res.attempts);
        assert_eq!(count(&primary).await, 1, "{name}: primary not called again");
    } else {
        assert!(again.is_err(), "{name}");
        assert_eq!(count(&primary).await, 2, "{name}: primary asked again");
    }
}

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

#[tokio::test]
async fn openai_429_images_variant_retry_after_from_message() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_429_zero_seconds_is_tier_access() {
    run_case(
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
    )
    .await;
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
async fn openai_403_organization_not_verified() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_403_region_not_supported() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_400_billing_hard_limit() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_400_moderation_blocked_is_returned_not_failed_over() {
    run_case(
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
    )
    .await;
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

#[tokio::test]
async fn dall_e_content_policy_violation_is_content_policy() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_400_invalid_request_is_returned_at_once() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_401_fails_over_and_cools_down() {
    run_case(
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
    )
    .await;
}

#[tokio::test]
async fn openai_404_model_not_found() {
    run_case(
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
    )
    .await;
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

// ---------------------------------------------------------------------------------------------
// Azure error shapes

fn azure_router(az: &MockServer, fallback: &MockServer) -> Router {
    Router::builder()
        .provider(azure(az).api_key(other_key()).build().unwrap())
        .provider(openai(fallback, "secondary"))
        .build()
        .unwrap()
}

async fn azure_case(
    status: u16,
    body: Value,
    headers: &[(&str, &str)],
    kind: ErrorKind,
    fails_over: bool,
) -> image_router::ProviderError {
    let az = MockServer::start().await;
    let fallback = MockServer::start().await;
    let mut t = ResponseTemplate::new(status)
        .set_body_json(body)
        .insert_header("apim-request-id", "apim-err");
    for (k, v) in headers {
        t = t.insert_header(*k, *v);
    }
    Mock::given(method("POST")).respond_with(t).mount(&az).await;
    mount_ok(&fallback, 2).await;
    let router = azure_router(&az, &fallback);
    let result = router.generate(gen()).await;
    let e = if fails_over {
        let res = result.unwrap();
        assert_eq!(res.provider, "secondary");
        res.attempts[0].error.clone().unwrap()
    } else {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
        assert_eq!(count(&fallback).await, 0);
        err.cause().unwrap().clone()
    };
    assert_eq!(count(&az).await, 1);
    assert_eq!(e.kind, kind);
    assert_eq!(e.provider, "azure");
    assert_eq!(e.request_id.as_deref(), Some("apim-err"));
    e
}

#[tokio::test]
async fn azure_429_numeric_code_retry_after_from_message() {
    let e = azure_case(
        429,
        json!({"error": {"code": "429", "message": "Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}),
        &[],
        ErrorKind::RateLimited {
            scope: RateLimitScope::Unknown,
        },
        true,
    )
    .await;
    assert_eq!(e.retry_after, Some(Duration::from_secs(2)));
    assert_eq!(e.code.as_deref(), Some("429"));
}

#[tokio::test]
async fn azure_429_rate_limit_reached_with_ms_headers() {
    let e = azure_case(
        429,
        json!({"error": {"code": "RateLimitReached", "message": "Your requests to gpt-image-1 for gpt-image-1 in East US have exceeded the call rate limit for your current AIServices S0 pricing tier. Please retry after 5 seconds."}}),
        &[("retry-after", "5"), ("retry-after-ms", "4500"), ("x-ms-retry-after-ms", "4500")],
        ErrorKind::RateLimited {
            scope: RateLimitScope::Unknown,
        },
        true,
    )
    .await;
    assert_eq!(e.retry_after, Some(Duration::from_millis(4500)));
}

#[tokio::test]
async fn azure_401_invalid_subscription_key() {
    let e = azure_case(
        401,
        json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
        &[],
        ErrorKind::Authentication,
        true,
    )
    .await;
    let ex = e.explain();
    assert!(ex.action.contains("endpoint"), "{}", ex.action);
}

#[tokio::test]
async fn azure_404_deployment_not_found() {
    azure_case(
        404,
        json!({"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}),
        &[],
        ErrorKind::NotFound {
            what: NotFoundKind::Deployment,
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn azure_content_filter_inner_error() {
    let e = azure_case(
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
    )
    .await;
    assert!(e.explain().cause.contains("violence"));
}

#[tokio::test]
async fn azure_content_filter_code() {
    azure_case(
        400,
        json!({"error": {"code": "contentFilter", "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy."}}),
        &[],
        ErrorKind::ContentPolicy {
            reason: Some("The response was filtered due to the prompt triggering Azure OpenAI's content management policy.".into()),
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn azure_403_resource_blocked() {
    azure_case(
        403,
        json!({"error": {"code": "403", "message": "Your resource has been temporarily blocked because we detected behavior that may violate our content policy."}}),
        &[],
        ErrorKind::AccessDenied {
            reason: AccessDenial::ResourceBlocked,
        },
        true,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 200s that are not successes

async fn broken_200(name: &str, template: ResponseTemplate) {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(template)
        .mount(&primary)
        .await;
    mount_ok(&secondary, 2).await;
    let router = two(&primary, &secondary);
    let res = router
        .generate(gen())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(res.provider, "secondary", "{name}");
    assert_eq!(&res.images[0].bytes[..], &png(2)[..], "{name}");
    assert_eq!(res.attempts[0].outcome, Outcome::Decode, "{name}");
    assert_eq!(res.attempts[0].status, Some(200), "{name}");
    assert!(
        (1..=2).contains(&count(&primary).await),
        "{name}: at most one retry"
    );
    // Everything broken: an error, never a success.
    let only = Router::builder()
        .provider(openai(&primary, "primary"))
        .build()
        .unwrap();
    let err = only.generate(gen()).await.unwrap_err();
    assert!(
        err.attempts().iter().all(|a| a.outcome == Outcome::Decode),
        "{name}: {err:?}"
    );
}

#[tokio::test]
async fn success_status_without_images_is_an_error_and_fails_over() {
    tokio::join!(
        broken_200(
            "broken json",
            ResponseTemplate::new(200).set_body_raw(
                r#"{"created": 1, "data": [{"b64_json": "iVBOR"#,
                "application/json"
            ),
        ),
        broken_200(
            "empty data",
            ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": []})),
        ),
        broken_200(
            "no data",
            ResponseTemplate::new(200).set_body_json(json!({"created": 1})),
        ),
        broken_200(
            "null data",
            ResponseTemplate::new(200).set_body_json(json!({"created": 1, "data": null})),
        ),
        broken_200(
            "item without image",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"revised_prompt": "x"}]})),
        ),
        broken_200(
            "invalid base64",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": "%%%not base64%%%"}]})),
        ),
        broken_200(
            "one good one bad",
            ResponseTemplate::new(200).set_body_json(
                json!({"created": 1, "data": [{"b64_json": b64(&png(1))}, {"b64_json": "@@"}]})
            ),
        ),
        broken_200(
            "html",
            ResponseTemplate::new(200).set_body_string("<html>login</html>"),
        ),
        broken_200("empty body", ResponseTemplate::new(200)),
        // Short ASCII strings that are valid unpadded / URL-safe base64 by accident.
        broken_200(
            "not-base64",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": "not-base64"}]})),
        ),
        broken_200(
            "this is not base64",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": "this is not base64"}]})),
        ),
        broken_200(
            "b64 null and url null",
            ResponseTemplate::new(200)
                .set_body_json(json!({"created": 1, "data": [{"b64_json": null, "url": null}]})),
        ),
    );
}

#[tokio::test]
async fn url_items_that_do_not_download_an_image_are_errors() {
    for (name, download) in [
        (
            "html page",
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html; charset=utf-8")
                .set_body_string("<html><body>This link has expired</body></html>"),
        ),
        (
            "xml error",
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/xml")
                .set_body_string("<Error><Code>AuthenticationFailed</Code></Error>"),
        ),
        ("404", ResponseTemplate::new(404)),
        (
            "403 expired SAS",
            ResponseTemplate::new(403).set_body_string("expired"),
        ),
    ] {
        let primary = MockServer::start().await;
        let secondary = MockServer::start().await;
        let url = format!("{}/files/img.png", primary.uri());
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"created": 1, "data": [{"url": url}]})),
            )
            .mount(&primary)
            .await;
        Mock::given(method("GET"))
            .respond_with(download)
            .mount(&primary)
            .await;
        mount_ok(&secondary, 2).await;
        let router = two(&primary, &secondary);
        let res = router
            .generate(GenerateRequest::new("a fox").model("dall-e-3"))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(res.provider, "secondary", "{name}");
        assert_eq!(res.attempts[0].outcome, Outcome::Decode, "{name}");
    }
}

#[tokio::test]
async fn success_with_nulls_and_missing_optionals_is_fine() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1,
            "data": [{"b64_json": b64(&png(3)), "url": null, "revised_prompt": null}],
            "usage": null
        })))
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(3)[..]);
    assert!(res.usage.is_none());
}

// ---------------------------------------------------------------------------------------------
// Keys never shown

#[tokio::test]
async fn no_key_in_debug_or_display() {
    let k = key();
    let ak = other_key();
    let server = MockServer::start().await;
    // A proxy that echoes the key it was given in its 401 message.
    mount_error(
        &server,
        401,
        openai_error(
            &format!("Incorrect API key provided: {k}."),
            json!("invalid_request_error"),
            Value::Null,
            json!("invalid_api_key"),
        ),
        &[],
    )
    .await;
    let azure_server = MockServer::start().await;
    mount_error(
        &azure_server,
        401,
        json!({"error": {"code": "401", "message": format!("Access denied due to invalid subscription key {ak}.")}}),
        &[],
    )
    .await;
    let oa = openai(&server, "openai");
    let az = azure(&azure_server).api_key(ak.clone()).build().unwrap();
    let proxy = Compatible::builder()
        .base_url(format!("{}/v1", server.uri()))
        .name("proxy")
        .api_key(k.clone())
        .build()
        .unwrap();
    let builder_dbg = format!(
        "{:?} {:?} {:?} {:?}",
        OpenAi::builder().api_key(k.clone()),
        Azure::builder().api_key(ak.clone()),
        Azure::builder().bearer_token(ak.clone()),
        Compatible::builder().api_key(k.clone())
    );
    let router = Router::builder()
        .provider(oa.clone())
        .provider(az.clone())
        .provider(proxy.clone())
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    let texts = [
        format!("{oa:?} {az:?} {proxy:?}"),
        builder_dbg,
        format!("{router:?}"),
        format!("{err} {err:?}"),
        format!("{}", err.explain()),
        err.attempts()
            .iter()
            .map(|a| format!("{a} {a:?} {}", a.error.as_ref().unwrap().explain()))
            .collect::<Vec<_>>()
            .join("\n"),
        serde_json::to_string(&err.attempts()).unwrap(),
        serde_json::to_string(&router.status()).unwrap(),
    ];
    assert_eq!(err.attempts().len(), 3, "{err:?}");
    for t in &texts {
        assert!(!t.contains(&k), "OpenAI key leaked: {t}");
        assert!(!t.contains(&ak), "Azure key leaked: {t}");
        assert!(!t.contains(&"x".repeat(30)), "key body leaked: {t}");
    }
}

#[tokio::test]
async fn openai_bare_host_base_url_gets_v1() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let p = OpenAi::builder()
        .api_key(key())
        .base_url(server.uri())
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    router.generate(gen()).await.unwrap();
    let got = &server.received_requests().await.unwrap()[0];
    assert_eq!(got.url.path(), "/v1/images/generations");
}

#[tokio::test]
async fn azure_content_filter_singular_result_key() {
    // Azure also spells it `innererror` / `content_filter_result`.
    azure_case(
        400,
        json!({"error": {
            "code": "content_filter",
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "param": "prompt",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    "hate": {"filtered": true, "severity": "medium"},
                    "sexual": {"filtered": false, "severity": "safe"}
                }
            }
        }}),
        &[],
        ErrorKind::ContentPolicy {
            reason: Some("The response was filtered due to the prompt triggering Azure OpenAI's content management policy. [filtered: hate (medium)]".into()),
        },
        false,
    )
    .await;
}

#[tokio::test]
async fn attempt_model_is_the_wire_model_for_failures_too() {
    let proxy = MockServer::start().await;
    let fallback = MockServer::start().await;
    mount_error(
        &proxy,
        400,
        openai_error(
            "Unsupported parameter: 'quality'.",
            json!("invalid_request_error"),
            json!("quality"),
            json!("unsupported_parameter"),
        ),
        &[],
    )
    .await;
    mount_ok(&fallback, 2).await;
    let p = Compatible::builder()
        .name("proxy")
        .base_url(format!("{}/v1", proxy.uri()))
        .api_key(key())
        .rename_model("gpt-image-1", "openai/gpt-image-1")
        .build()
        .unwrap();
    let router = Router::builder()
        .provider(p)
        .provider(openai(&fallback, "secondary"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    // Attempt::model is documented as "Model as sent to the provider (after any renaming)".
    assert_eq!(res.attempts[0].model, "openai/gpt-image-1");
}

#[tokio::test]
async fn azure_operation_not_supported_fails_over() {
    azure_case(
        400,
        json!({"error": {"code": "OperationNotSupported", "message": "The imagesGenerate operation does not work with the specified model, gpt-4o. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993."}}),
        &[],
        ErrorKind::NotFound {
            what: NotFoundKind::Deployment,
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn azure_unsupported_api_version_fails_over() {
    let e = azure_case(
        400,
        json!({"error": {"code": "BadRequest", "message": "API version not supported"}}),
        &[],
        ErrorKind::NotFound {
            what: NotFoundKind::Endpoint,
        },
        true,
    )
    .await;
    assert!(e.explain().action.contains("api_version"));
}

#[tokio::test]
async fn go_style_zero_wait_on_a_real_limit_is_a_rate_limit_not_a_tier_denial() {
    // "in 0s" on an RPM message with a real limit: the window resets now; this is not the
    // tier denial ("after 0.0 seconds", or "Limit 0"), so no long cool-down.
    run_case(
        "in 0s",
        Case {
            status: 429,
            body: openai_error(
                "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 0s.",
                json!("requests"),
                Value::Null,
                json!("rate_limit_exceeded"),
            ),
            headers: vec![],
            kind: ErrorKind::RateLimited {
                scope: RateLimitScope::Requests,
            },
            fails_over: true,
            words: &["rate limited"],
        },
    )
    .await;
    run_case(
        "limit 0",
        Case {
            status: 429,
            body: openai_error(
                "Rate limit reached for gpt-image-1 in organization org-abc on requests per min (RPM): Limit 0, Used 0, Requested 1. Please try again in 0s.",
                json!("requests"),
                Value::Null,
                json!("rate_limit_exceeded"),
            ),
            headers: vec![],
            kind: ErrorKind::AccessDenied {
                reason: AccessDenial::TierAccess,
            },
            fails_over: true,
            words: &["tier"],
        },
    )
    .await;
}

#[test]
fn bad_configuration_is_a_typed_error_naming_the_field() {
    let e = OpenAi::builder().api_key("").build().unwrap_err();
    assert_eq!(e.field, "api_key");
    let e = OpenAi::builder().build().unwrap_err();
    assert_eq!(e.field, "api_key");
    let e = OpenAi::builder()
        .api_key(key())
        .base_url("not a url")
        .build()
        .unwrap_err();
    assert_eq!(e.field, "base_url");
    let e = Compatible::builder().api_key(key()).build().unwrap_err();
    assert_eq!(e.field, "base_url");
    let e = Azure::builder()
        .endpoint("https://r.openai.azure.com")
        .api_key(other_key())
        .build()
        .unwrap_err();
    assert_eq!(e.field, "deployment");
    let e = Azure::builder()
        .api_key(other_key())
        .deployment("gpt-image-1", "d")
        .build()
        .unwrap_err();
    assert_eq!(e.field, "endpoint");
    let ok = || {
        OpenAi::builder()
            .api_key(key())
            .base_url("http://127.0.0.1:9/v1")
            .build()
            .unwrap()
    };
    let e = Router::builder()
        .provider(ok())
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "attempt_timeout");
    let e = Router::builder()
        .provider(ok())
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "deadline");
    let e = Router::builder()
        .provider(ok())
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "max_attempts");
    let e = Router::builder()
        .provider_with(ok(), image_router::ProviderOptions::new().rpm(0))
        .build()
        .unwrap_err();
    assert!(e.field.contains("rpm"), "{e}");
    let e = Router::builder()
        .provider_with(ok(), image_router::ProviderOptions::new().tier("tier-9"))
        .build()
        .unwrap_err();
    assert!(e.field.contains("tier"), "{e}");
    let e = Router::builder()
        .provider(ok())
        .provider(ok())
        .build()
        .unwrap_err();
    assert!(e.field.contains("name"), "{e}");
    assert!(!format!("{e} {e:?}").contains(&key()));
}

/// A PNG header with the given dimensions (enough for the size check).
fn png_sized(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 6, 0, 0, 0]);
    v
}

#[tokio::test]
async fn mask_of_another_size_is_refused_before_sending() {
    let server = MockServer::start().await;
    mount_ok(&server, 1).await;
    let router = Router::builder()
        .provider(openai(&server, "openai"))
        .build()
        .unwrap();
    let req = |mask: Vec<u8>| {
        EditRequest::new(
            "fill the hole",
            vec![InputImage::new(png_sized(1024, 1024), "a.png")],
        )
        .mask(InputImage::new(mask, "mask.png"))
    };
    match router.edit(req(png_sized(512, 512))).await {
        Err(Error::Invalid(v)) => assert_eq!(v.field, "mask"),
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&server).await, 0);
    router.edit(req(png_sized(1024, 1024))).await.unwrap();
    assert_eq!(count(&server).await, 1);
}

#[tokio::test]
async fn compatible_chat_mode_url_link_and_no_image() {
    let server = MockServer::start().await;
    let url = format!("{}/files/out.png", server.uri());
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant",
                "content": format!("Done. [Download]({url})")}}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(png(8)),
        )
        .mount(&server)
        .await;
    let chat = |s: &MockServer, name: &str| {
        Compatible::builder()
            .name(name)
            .base_url(format!("{}/v1", s.uri()))
            .api_key(key())
            .mode(image_router::providers::CompatibleMode::Chat)
            .build()
            .unwrap()
    };
    let router = Router::builder()
        .provider(chat(&server, "chat"))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("a cat"))
        .await
        .unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(8)[..]);
    assert_eq!(res.images[0].url.as_deref(), Some(url.as_str()));

    // A chat answer without an image is an error, and the router fails over.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"role": "assistant", "content": "I can't help with that."}}]
        })))
        .mount(&refusing)
        .await;
    let fallback = MockServer::start().await;
    mount_ok(&fallback, 2).await;
    let router = Router::builder()
        .provider(chat(&refusing, "refusing"))
        .provider(openai(&fallback, "secondary"))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("a cat"))
        .await
        .unwrap();
    assert_eq!(res.provider, "secondary");
    assert_eq!(res.attempts[0].outcome, Outcome::Decode);
}

#[tokio::test]
async fn azure_endpoint_pasted_with_openai_path() {
    let server = MockServer::start().await;
    mount_ok(&server, 5).await;
    // `…/openai/v1/` is the base URL the Azure docs give OpenAI SDKs: the v1 surface.
    let v1 = Azure::builder()
        .name("v1")
        .endpoint(format!("{}/openai/v1/", server.uri()))
        .api_key(other_key())
        .deployment("gpt-image-1", "img-prod")
        .build()
        .unwrap();
    let classic = Azure::builder()
        .name("classic")
        .endpoint(format!("{}/openai", server.uri()))
        .api_key(other_key())
        .deployment("gpt-image-1", "img-prod")
        .build()
        .unwrap();
    Router::builder()
        .provider(v1)
        .build()
        .unwrap()
        .generate(gen())
        .await
        .unwrap();
    Router::builder()
        .provider(classic)
        .build()
        .unwrap()
        .generate(gen())
        .await
        .unwrap();
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs[0].url.path(), "/openai/v1/images/generations");
    let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["model"], "img-prod");
    assert_eq!(
        reqs[1].url.path(),
        "/openai/deployments/img-prod/images/generations"
    );
    assert_eq!(reqs[1].url.query(), Some("api-version=2025-04-01-preview"));
}

#[tokio::test]
async fn azure_success_with_filter_results_is_fine() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1_713_833_628,
            "data": [{
                "b64_json": b64(&png(4)),
                "content_filter_results": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": false, "severity": "safe"}
                },
                "prompt_filter_results": {
                    "jailbreak": {"filtered": false, "detected": false}
                }
            }],
            "usage": {"input_tokens": 12, "output_tokens": 4160, "total_tokens": 4172}
        })))
        .mount(&server)
        .await;
    let router = Router::builder()
        .provider(azure(&server).api_key(other_key()).build().unwrap())
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(&res.images[0].bytes[..], &png(4)[..]);
    assert_eq!(res.usage.unwrap().output_tokens, 4160);
}
