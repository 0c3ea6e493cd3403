//! The simulator over real HTTP, driven with reqwest: the router's end-to-end tests trust its
//! shapes, windows and faults, so they are checked here against the published API facts.

mod azure;
mod chat;
mod faults;
mod ipm;
mod lifecycle;
mod openai;
mod windows;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use image_router::clock::{Clock, ManualClock};
use image_router::quota::headers::{format_go_duration, parse_go_duration};
use image_router::quota::tokens::{input_image_tokens, text_tokens};
use image_router::sim::{ChatImageStyle, Fault, SimAccount, Simulator, Times};
use image_router::RateLimitScope;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

const PROMPT: &str = "a lighthouse at dusk, oil painting";

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn send(rb: reqwest::RequestBuilder) -> Answer {
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(url: &str, key: Option<&str>, body: Value) -> Answer {
    let mut rb = client().post(url).json(&body);
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    send(rb).await
}

fn gen_url(sim: &Simulator, acct: &str) -> String {
    format!("{}/images/generations", sim.openai_base_url(acct))
}

fn decode_png(bytes: &[u8]) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    (info.width, info.height)
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn error_of(a: &Answer) -> &Value {
    &a.body["error"]
}

async fn plain() -> Simulator {
    Simulator::start_default().await.unwrap()
}

async fn limited(rpm: Option<u32>, tpm: Option<u64>) -> (Simulator, ManualClock) {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(1000));
    let mut acct = SimAccount::new();
    if let Some(r) = rpm {
        acct = acct.rpm(r);
    }
    if let Some(t) = tpm {
        acct = acct.tpm(t);
    }
    let sim = Simulator::builder()
        .account("o", acct.clone())
        .account("az", acct.deployment("dep", "gpt-image-1"))
        .clock(Arc::new(clock.clone()) as Arc<dyn Clock>)
        .start()
        .await
        .unwrap();
    (sim, clock)
}

fn part(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str("image/png")
        .unwrap()
}

fn png_of(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&vec![128; (w * h * 3) as usize])
            .unwrap();
    }
    out
}

fn low() -> Value {
    json!({"model": "gpt-image-1", "prompt": "abcd", "quality": "low"})
}
