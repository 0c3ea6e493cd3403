//! The fixed loopback server of the overhead measurements (issue 16), shared by
//! `benches/router_overhead.rs`, `examples/count_instructions.rs` and `tests/alloc_copies.rs`
//! (each includes this file with `#[path]`; it is no target of its own).
//!
//! Why not the simulator: the simulator is part of the crate and changes with it, so its work
//! would be counted as the router's. This server is a few lines of hyper (a dependency of the
//! `sim` feature) that answer every request at once with the same bytes, so the router and the
//! direct call, and two versions of the crate, all talk to an identical peer.
//!
//! The two payloads of the issue: a tiny image (a PNG of about 1 KB) and a realistic one (a
//! 1024×1024 PNG of about 1.5 MB, about 2 MB of base64 in the JSON body). The pixels are
//! pseudo-random from a fixed seed (noise does not compress, so the PNG has a realistic size)
//! and the same on every run.

#![allow(dead_code)] // Each includer uses part of it.

use std::convert::Infallible;
use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Boxed error of the harnesses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The image in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A PNG of about 1 KB.
    Tiny,
    /// A 1024×1024 PNG of about 1.5 MB.
    Realistic,
}

impl Payload {
    /// `tiny` | `realistic` (also `big`).
    pub fn parse(s: &str) -> Result<Self, BoxError> {
        match s {
            "tiny" => Ok(Self::Tiny),
            "realistic" | "big" => Ok(Self::Realistic),
            other => Err(format!("unknown payload {other:?}: tiny | realistic").into()),
        }
    }

    /// The name in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tiny => "tiny_1KB",
            Self::Realistic => "realistic_1.5MB",
        }
    }

    /// The PNG's bytes.
    pub fn png(self) -> Vec<u8> {
        match self {
            // 16×16 RGB noise: about 0.8 KB of pixels plus the PNG framing.
            Self::Tiny => png(16, 16, 16),
            // 1024×1024 RGB, the top 360 rows noise, the rest one grey: about 1.5 MB
            // (noise does not compress, and the encoder spends about 4 KB per noisy row; one grey
            // compresses to almost nothing).
            Self::Realistic => png(1024, 1024, 360),
        }
    }
}

/// An RGB PNG of `w`×`h` pixels: the first `noisy_rows` rows pseudo-random, the rest grey.
fn png(w: u32, h: u32, noisy_rows: u32) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(16);
    let noisy = (w * noisy_rows.min(h) * 3) as usize;
    let pixels: Vec<u8> = (0..(w * h * 3) as usize)
        .map(|i| if i < noisy { rng.random::<u8>() } else { 128 })
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // In-memory encoding of a valid image cannot fail; a harness may panic.
        let mut writer = enc.write_header().expect("png header");
        writer.write_image_data(&pixels).expect("png data");
    }
    out
}

/// OpenAI's success body for one base64 image (as `gpt-image-1` answers).
pub fn ok_body(png: &[u8]) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD.encode(png);
    let body = serde_json::json!({
        "created": 1_700_000_000u64,
        "data": [{"b64_json": b64}],
        "background": "opaque",
        "output_format": "png",
        "size": "1024x1024",
        "quality": "low",
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
            "output_tokens": 272,
            "output_tokens_details": {"image_tokens": 272, "text_tokens": 0},
            "total_tokens": 282
        }
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

/// OpenAI's 429 body for a request-rate limit (the shape of `/work/shared/api-facts.md`).
pub const RATE_LIMITED_BODY: &str = r#"{"error":{"message":"Rate limit reached for gpt-image-1 in organization org-bench on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 12s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

/// What the server answers to `POST /v1/images/generations`.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body (JSON).
    pub body: Bytes,
    /// Extra headers.
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Answer {
    /// A 200 with one image of `payload`.
    pub fn ok(payload: Payload) -> Self {
        Self {
            status: StatusCode::OK,
            body: ok_body(&payload.png()),
            headers: Vec::new(),
        }
    }

    /// A 429 rate-limit answer with `retry-after: 12`.
    pub fn rate_limited() -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: Bytes::from_static(RATE_LIMITED_BODY.as_bytes()),
            headers: vec![("retry-after", "12")],
        }
    }
}

/// Starts the server on the current tokio runtime; returns its `…/v1` base URL. A POST to
/// `/v1/images/generations` gets `answer`, anything else a 404.
pub async fn serve(answer: Answer) -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let generation = req.method() == hyper::Method::POST
                            && req.uri().path() == "/v1/images/generations";
                        // The request body is read whole, as a real server would.
                        let _ = req.into_body().collect().await;
                        let resp = if generation {
                            let mut r = Response::new(Full::new(answer.body));
                            *r.status_mut() = answer.status;
                            let h = r.headers_mut();
                            h.insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("application/json"),
                            );
                            for (name, value) in answer.headers {
                                h.insert(name, hyper::header::HeaderValue::from_static(value));
                            }
                            r
                        } else {
                            let mut r = Response::new(Full::new(Bytes::from_static(
                                br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
                            )));
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}/v1"))
}

/// The request both sides send.
pub fn request() -> image_router::GenerateRequest {
    image_router::GenerateRequest::new("a small test image")
        .model("gpt-image-1")
        .quality(image_router::Quality::Low)
        .size(image_router::Size::SQUARE)
}

/// A router with one OpenAI provider on `base`, default settings.
pub fn router(base: &str) -> Result<image_router::Router, BoxError> {
    Ok(image_router::Router::builder()
        .provider(
            image_router::providers::OpenAi::builder()
                .base_url(base)
                .api_key("sk-bench")
                .build()?,
        )
        .build()?)
}

/// The direct call: POST, typed JSON parse, base64 decode of `data[0]`. Returns the image.
pub async fn direct(
    client: &reqwest::Client,
    url: &str,
    request: &image_router::GenerateRequest,
) -> Result<Vec<u8>, BoxError> {
    let res = client
        .post(url)
        .bearer_auth("sk-bench")
        .json(request)
        .send()
        .await?
        .error_for_status()?;
    let body: image_router::ImagesResponse = res.json().await?;
    let b64 = body
        .data
        .first()
        .and_then(|d| d.b64_json.as_deref())
        .ok_or("no b64_json")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

/// What [`direct_bounded`] gives its call: the router's call timeout by default.
pub const BOUND: std::time::Duration = image_router::DEFAULT_ATTEMPT_TIMEOUT;

/// The direct call with one bound on it: a `tokio::time::timeout` around the whole call, the
/// one timer the router's built-in providers give a call (`src/providers/http/mod.rs`, "One
/// deadline"). Not the issue's reference (a new user's call has no timeout), but the
/// cheapest call that keeps the rule the router must keep, that every await is bounded: the
/// difference between it and [`direct`] is what that rule costs, router or not.
pub async fn direct_bounded(
    client: &reqwest::Client,
    url: &str,
    request: &image_router::GenerateRequest,
) -> Result<Vec<u8>, BoxError> {
    tokio::time::timeout(BOUND, direct(client, url, request)).await?
}
