//! Helpers for the token, limiter, catalog and budget tests: a manual clock, a limiter on it,
//! requests by quality and size, PNG headers and header maps.
#![allow(dead_code)]

use image_router::budget::WallClock;
use image_router::clock::{ManualClock, SharedClock};
use image_router::quota::limiter::{LimiterConfig, RateLimiter};
use image_router::quota::limits::Limits;
use image_router::{GenerateRequest, ImageRequest, Quality, Size};
use reqwest::header::{HeaderMap, HeaderValue};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

pub fn clock() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    let shared: SharedClock = Arc::new(c.clone());
    (c, shared)
}

pub fn limiter(rpm: Option<u32>, tpm: Option<u64>, margin: f64) -> (ManualClock, RateLimiter) {
    let (c, shared) = clock();
    let l = RateLimiter::with_config(
        LimiterConfig::new(Limits::new(rpm, tpm).unwrap()).margin(margin),
        shared,
    )
    .unwrap();
    (c, l)
}

pub fn gen(quality: Option<Quality>, size: Option<Size>, n: u8) -> ImageRequest {
    let mut g = GenerateRequest::new("abcd").model("gpt-image-1").n(n);
    if let Some(q) = quality {
        g = g.quality(q);
    }
    if let Some(s) = size {
        g = g.size(s);
    }
    g.into()
}

/// A PNG header of `w`×`h` (enough for dimension sniffing).
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut v = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(b"IHDR");
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    v
}

pub fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

pub fn wall_at(unix_secs: u64) -> (ManualClock, WallClock) {
    let (c, shared) = clock();
    (
        c,
        WallClock::new(UNIX_EPOCH + Duration::from_secs(unix_secs), shared),
    )
}

// 2026-11-28 23:59:00 UTC
pub const NOV28_2359: u64 = 1_795_910_340;
