//! Helpers shared by the provider wire tests.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use image_router::CallContext;
use serde_json::{json, Value};
use wiremock::{Request, ResponseTemplate};

/// A tiny byte string starting with the PNG signature (enough for format sniffing).
pub fn png_bytes() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    v.extend_from_slice(b"fake-png-body");
    v
}

/// A tiny byte string starting with the JPEG signature.
pub fn jpeg_bytes() -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    v.extend_from_slice(b"fake-jpeg");
    v
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A full GPT-image success body with one b64 image, echo fields and usage.
pub fn ok_body() -> Value {
    json!({
        "created": 1_713_833_628,
        "data": [{"b64_json": b64(&png_bytes())}],
        "background": "opaque",
        "output_format": "png",
        "size": "1024x1024",
        "quality": "low",
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
            "output_tokens": 272,
            "output_tokens_details": {"text_tokens": 0, "image_tokens": 272},
            "total_tokens": 322
        }
    })
}

pub fn ok() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(ok_body())
        .insert_header("x-request-id", "req_ok_1")
        .insert_header("x-ratelimit-remaining-requests", "4")
        .insert_header("x-ratelimit-reset-requests", "12s")
}

pub fn ctx() -> CallContext {
    CallContext::new(Duration::from_secs(10))
}

pub fn json_of(req: &Request) -> Value {
    serde_json::from_slice(&req.body).expect("JSON body")
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// One multipart part as received.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// Parses a received multipart/form-data body.
pub async fn parts(req: &Request) -> Vec<Part> {
    let ct = header(req, "content-type").expect("content-type");
    assert!(ct.starts_with("multipart/form-data"), "content type {ct}");
    let boundary = multer::parse_boundary(ct).expect("boundary");
    let body = Bytes::from(req.body.clone());
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = mp.next_field().await.expect("multipart field") {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(|m| m.to_string());
        let data = field.bytes().await.expect("field bytes");
        out.push(Part {
            name,
            filename,
            content_type,
            data,
        });
    }
    out
}

pub fn text_part<'a>(parts: &'a [Part], name: &str) -> Option<&'a str> {
    parts
        .iter()
        .find(|p| p.name == name)
        .map(|p| std::str::from_utf8(&p.data).expect("utf8"))
}

/// A local address nothing listens on (bound, then dropped).
pub fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

/// A fresh client per test: each `#[tokio::test]` has its own runtime, and pooled
/// connections of a client used on a dropped runtime are dead.
pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}
