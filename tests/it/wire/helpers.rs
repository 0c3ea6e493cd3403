//! Helpers for the black-box wire tests: keys built at run time, PNG bytes, wiremock answers
//! and providers pointed at a mock server.
#![allow(dead_code)]

use base64::Engine;
use image_router::providers::{Azure, OpenAi};
use image_router::{Error, ErrorKind, GenerateRequest, Outcome, Quality, Router, Size};
use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

// ---------------------------------------------------------------------------------------------
// helpers

/// A key built at run time (no key-shaped literal in the file).
pub fn key() -> String {
    format!("sk-{}", "x".repeat(30))
}

pub fn other_key() -> String {
    format!("az{}", "k".repeat(30))
}

/// Bytes that look like a PNG (signature + a fake IHDR), distinct per `tag`.
pub fn png(tag: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, tag]);
    v
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn ok_body(tag: u8) -> Value {
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

pub fn ok(tag: u8) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(ok_body(tag))
        .insert_header("x-request-id", "req_ok")
}

pub fn openai(server: &MockServer, name: &str) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .api_key(key())
        .base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap()
}

/// Two OpenAI-style providers, `primary` then `secondary`, strict order (these tests are
/// about what happens after the primary's answer, not about ranking).
pub fn two(primary: &MockServer, secondary: &MockServer) -> Router {
    Router::builder()
        .provider(openai(primary, "primary"))
        .provider(openai(secondary, "secondary"))
        .build()
        .unwrap()
}

pub async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

pub async fn mount_ok(server: &MockServer, tag: u8) {
    Mock::given(method("POST"))
        .respond_with(ok(tag))
        .mount(server)
        .await;
}

pub async fn mount_error(server: &MockServer, status: u16, body: Value, headers: &[(&str, &str)]) {
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

pub fn openai_error(message: &str, etype: Value, param: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": etype, "param": param, "code": code}})
}

pub fn gen() -> GenerateRequest {
    GenerateRequest::new("a lighthouse at dusk")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

/// A multipart part: headers (lower-cased names) and body.
#[derive(Debug)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a multipart/form-data body by hand (byte-exact, no helper crate).
pub fn multipart(req: &Request) -> Vec<Part> {
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

pub fn text_field(parts: &[Part], name: &str) -> Option<String> {
    parts
        .iter()
        .find(|p| p.name == name)
        .map(|p| String::from_utf8(p.body.clone()).unwrap())
}

pub fn azure(server: &MockServer) -> image_router::providers::AzureBuilder {
    Azure::builder()
        .name("azure")
        .endpoint(server.uri())
        .deployment("gpt-image-1", "img-prod")
}

pub async fn azure_case(
    name: &str,
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
        let res = result.unwrap_or_else(|e| panic!("{name}: expected failover, got {e}"));
        assert_eq!(res.provider, "secondary", "{name}");
        res.attempts[0].error.clone().unwrap()
    } else {
        let err = result.expect_err(name);
        assert!(matches!(err, Error::Rejected { .. }), "{name}: {err:?}");
        assert_eq!(count(&fallback).await, 0, "{name}: no failover");
        err.cause().unwrap().clone()
    };
    assert_eq!(count(&az).await, 1, "{name}: no retry");
    assert_eq!(e.kind, kind, "{name}");
    assert_eq!(e.provider, "azure", "{name}");
    assert_eq!(e.request_id.as_deref(), Some("apim-err"), "{name}");
    e
}

pub fn azure_router(az: &MockServer, fallback: &MockServer) -> Router {
    Router::builder()
        .provider(azure(az).api_key(other_key()).build().unwrap())
        .provider(openai(fallback, "secondary"))
        .build()
        .unwrap()
}

pub async fn run_case(name: &str, c: Case) {
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

pub struct Case {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, &'static str)>,
    pub kind: ErrorKind,
    pub fails_over: bool,
    /// Words the explanation (cause + action) must contain.
    pub words: &'static [&'static str],
}
