//! The simulator over real HTTP, driven with reqwest.

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

#[tokio::test]
async fn generation_has_exact_shape_png_and_usage() {
    let sim = plain().await;
    let a = post(
        &gen_url(&sim, "openai"),
        None,
        json!({"model": "gpt-image-1", "prompt": PROMPT, "n": 2, "size": "1536x1024", "quality": "low"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.h("x-request-id").unwrap().starts_with("req_"));
    assert!(a.h("openai-processing-ms").unwrap().parse::<u64>().is_ok());
    assert!(
        a.h("x-ratelimit-limit-requests").is_none(),
        "no limits, no headers"
    );
    let obj = a.body.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "background",
            "created",
            "data",
            "output_format",
            "quality",
            "size",
            "usage"
        ]
    );
    assert!(a.body["created"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(a.body["background"], "opaque");
    assert_eq!(a.body["output_format"], "png");
    assert_eq!(a.body["size"], "1536x1024");
    assert_eq!(a.body["quality"], "low");
    let data = a.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for d in data {
        assert_eq!(d.as_object().unwrap().len(), 1, "only b64_json: {d}");
        assert_eq!(
            decode_png(&b64(d["b64_json"].as_str().unwrap())),
            (1536, 1024)
        );
    }
    let t = text_tokens(PROMPT);
    assert_eq!(
        a.body["usage"],
        json!({
            "input_tokens": t,
            "input_tokens_details": {"text_tokens": t, "image_tokens": 0},
            "output_tokens": 800,
            "output_tokens_details": {"image_tokens": 800, "text_tokens": 0},
            "total_tokens": t + 800
        })
    );
    // The body parses as the crate's wire type.
    let parsed: image_router::ImagesResponse = serde_json::from_value(a.body.clone()).unwrap();
    assert_eq!(parsed.usage.unwrap().output_image_tokens(), 800);
    let s = sim.stats("openai");
    assert_eq!((s.requests, s.succeeded, s.images), (1, 1, 2));
}

#[tokio::test]
async fn token_table_and_defaults() {
    let sim = plain().await;
    // No size, no quality: gpt-image-1 defaults (1024x1024, high) -> 4160 tokens.
    let a = post(&gen_url(&sim, "openai"), None, json!({"prompt": "x"})).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["size"], "1024x1024");
    assert_eq!(a.body["quality"], "high");
    assert_eq!(a.body["usage"]["output_tokens"], 4160);
    let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(decode_png(&img), (1024, 1024));
    for (q, size, tokens) in [
        ("low", "1024x1024", 272),
        ("low", "1024x1536", 408),
        ("medium", "1024x1536", 1584),
        ("medium", "1536x1024", 1568),
        ("high", "1024x1536", 6240),
        ("high", "1536x1024", 6208),
        ("auto", "auto", 4160),
    ] {
        let a = post(
            &gen_url(&sim, "openai"),
            None,
            json!({"prompt": "abcd", "quality": q, "size": size, "n": 3}),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["usage"]["output_tokens"], tokens * 3, "{q} {size}");
        assert_eq!(a.body["usage"]["total_tokens"], tokens * 3 + 1);
    }
}

#[tokio::test]
async fn jpeg_and_webp_requests_get_png_bytes_and_echo() {
    let sim = plain().await;
    for fmt in ["jpeg", "webp"] {
        let a = post(
            &gen_url(&sim, "openai"),
            None,
            json!({"prompt": PROMPT, "output_format": fmt, "output_compression": 50, "quality": "low"}),
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body["output_format"], fmt);
        let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
        assert!(img.starts_with(b"\x89PNG"));
    }
    // Transparent background is echoed and the PNG has an alpha channel.
    let a = post(
        &gen_url(&sim, "openai"),
        None,
        json!({"prompt": PROMPT, "background": "transparent", "quality": "low"}),
    )
    .await;
    assert_eq!(a.body["background"], "transparent");
    let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
    let r = png::Decoder::new(std::io::Cursor::new(img))
        .read_info()
        .unwrap();
    assert_eq!(r.info().color_type, png::ColorType::Rgba);
}

#[tokio::test]
async fn invalid_requests_are_400_naming_the_field() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    let a = post(&url, None, json!({"prompt": PROMPT, "size": "640x480"})).await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a)["type"], "invalid_request_error");
    assert_eq!(error_of(&a)["param"], "size");
    let a = post(&url, None, json!({"prompt": "", "quality": "low"})).await;
    assert_eq!(
        (a.status, error_of(&a)["param"].as_str()),
        (400, Some("prompt"))
    );
    let a = post(
        &url,
        None,
        json!({"prompt": PROMPT, "output_compression": 50}),
    )
    .await;
    assert_eq!(error_of(&a)["param"], "output_compression");
    let a = send(client().post(&url).body("{not json")).await;
    assert_eq!(a.status, 400);
    assert!(error_of(&a)["message"].as_str().unwrap().contains("parse"));
    assert_eq!(sim.stats("openai").rejected, 4);
    assert_eq!(sim.stats("openai").succeeded, 0);
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

fn part(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str("image/png")
        .unwrap()
}

#[tokio::test]
async fn edits_multipart_single_and_many_images() {
    let sim = plain().await;
    let url = format!("{}/images/edits", sim.openai_base_url("openai"));
    // One image as `image`, with a mask.
    let form = reqwest::multipart::Form::new()
        .part("image", part(png_of(1024, 1024), "a.png"))
        .part("mask", part(png_of(1024, 1024), "mask.png"))
        .text("prompt", "add a hat")
        .text("model", "gpt-image-1")
        .text("quality", "medium")
        .text("size", "1024x1536")
        .text("input_fidelity", "high");
    let a = send(client().post(&url).multipart(form)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["size"], "1024x1536");
    assert_eq!(a.body["usage"]["output_tokens"], 1584);
    let img_tokens = input_image_tokens(1024, 1024);
    assert_eq!(
        a.body["usage"]["input_tokens_details"]["image_tokens"],
        img_tokens
    );
    assert_eq!(
        a.body["usage"]["input_tokens"],
        img_tokens + text_tokens("add a hat")
    );
    let img = b64(a.body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(decode_png(&img), (1024, 1536));

    // Three images as repeated `image[]`.
    let form = reqwest::multipart::Form::new()
        .part("image[]", part(png_of(512, 512), "a.png"))
        .part("image[]", part(png_of(512, 512), "b.png"))
        .part("image[]", part(png_of(2048, 1024), "c.png"))
        .text("prompt", "combine")
        .text("quality", "low");
    let a = send(client().post(&url).multipart(form)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let expect = 2 * input_image_tokens(512, 512) + input_image_tokens(2048, 1024);
    assert_eq!(
        a.body["usage"]["input_tokens_details"]["image_tokens"],
        expect
    );

    // The simulator recorded the multipart body verbatim.
    let rec = sim.received("openai");
    assert_eq!(rec.len(), 2);
    assert!(rec[1]
        .header("content-type")
        .unwrap()
        .starts_with("multipart/form-data"));
    let body = String::from_utf8_lossy(&rec[1].body);
    assert_eq!(body.matches("name=\"image[]\"").count(), 3);

    // No image: 400 naming it.
    let form = reqwest::multipart::Form::new().text("prompt", "nothing");
    let a = send(client().post(&url).multipart(form)).await;
    assert_eq!(
        (a.status, error_of(&a)["param"].as_str()),
        (400, Some("image"))
    );
}

#[tokio::test]
async fn models_endpoints_and_model_not_found() {
    let sim = Simulator::builder()
        .account("a", SimAccount::new().models(["gpt-image-1", "my-model"]))
        .start()
        .await
        .unwrap();
    let base = sim.openai_base_url("a");
    let a = send(client().get(format!("{base}/models"))).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["object"], "list");
    let ids: Vec<&str> = a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-image-1", "my-model"]);
    let a = send(client().get(format!("{base}/models/my-model"))).await;
    assert_eq!((a.status, a.body["object"].as_str()), (200, Some("model")));
    let a = send(client().get(format!("{base}/models/dall-e-3"))).await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "model_not_found");

    let a = post(
        &gen_url(&sim, "a"),
        None,
        json!({"model": "gpt-image-1-mini", "prompt": "x"}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "model_not_found");
    assert_eq!(
        error_of(&a)["message"],
        "The model `gpt-image-1-mini` does not exist or you do not have access to it."
    );
    // A model the catalog does not know is served with the default estimate.
    let a = post(
        &gen_url(&sim, "a"),
        None,
        json!({"model": "my-model", "prompt": "x"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["usage"]["output_tokens"], 4160);
}

#[tokio::test]
async fn unknown_account_and_path_are_404() {
    let sim = plain().await;
    let a = post(
        &format!("{}/nobody/v1/images/generations", sim.url()),
        None,
        json!({"prompt": "x"}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert!(a.h("x-request-id").is_some() && a.h("openai-processing-ms").is_some());
    let a = post(
        &format!("{}/openai/v1/images/variations", sim.url()),
        None,
        json!({}),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(sim.stats("openai").rejected, 1);
}

#[tokio::test]
async fn api_key_is_checked_and_masked() {
    // Built at run time so no key-shaped literal sits in the repository.
    let key_owned = format!("sk-{}", "sim-openai-0123456789abcdef");
    let key = key_owned.as_str();
    let sim = Simulator::builder()
        .account("o", SimAccount::new().api_key(key))
        .account(
            "az",
            SimAccount::new()
                .api_key("azure-key-0123456789")
                .deployment("img", "gpt-image-1"),
        )
        .start()
        .await
        .unwrap();
    let url = gen_url(&sim, "o");
    let body = json!({"prompt": "x", "quality": "low"});
    let wrong_owned = format!("sk-{}", "wrong-key-abcdefghijklmnop");
    let wrong = wrong_owned.as_str();
    let a = post(&url, Some(wrong), body.clone()).await;
    assert_eq!(a.status, 401);
    assert_eq!(error_of(&a)["code"], "invalid_api_key");
    assert_eq!(error_of(&a)["type"], "invalid_request_error");
    let msg = error_of(&a)["message"].as_str().unwrap();
    assert!(msg.starts_with("Incorrect API key provided: sk-w"), "{msg}");
    assert!(msg.contains("mnop") && !msg.contains(wrong), "{msg}");
    assert!(!a.body.to_string().contains(key));

    let a = post(&url, None, body.clone()).await;
    assert_eq!(a.status, 401);
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .starts_with("You didn't provide an API key"));
    let a = post(&url, Some(key), body.clone()).await;
    assert_eq!(a.status, 200);
    let a = send(client().get(format!("{}/models", sim.openai_base_url("o")))).await;
    assert_eq!(a.status, 401);
    assert_eq!(sim.stats("o").unauthorized, 3);
    // The log keeps what was sent, but Debug redacts it.
    let rec = sim.received("o");
    assert_eq!(
        rec[2].header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );
    assert!(!format!("{rec:?}").contains(key));

    // Azure: `api-key` header.
    let az = format!(
        "{}/openai/deployments/img/images/generations?api-version=2025-04-01-preview",
        sim.azure_endpoint("az")
    );
    let a = send(client().post(&az).header("api-key", "nope").json(&body)).await;
    assert_eq!(a.status, 401);
    assert_eq!(error_of(&a)["code"], "401");
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .starts_with("Access denied due to invalid subscription key"));
    let a = send(
        client()
            .post(&az)
            .header("api-key", "azure-key-0123456789")
            .json(&body),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = send(
        client()
            .post(&az)
            .bearer_auth("azure-key-0123456789")
            .json(&body),
    )
    .await;
    assert_eq!(a.status, 200, "Entra-style bearer is accepted too");
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

fn low() -> Value {
    json!({"model": "gpt-image-1", "prompt": "abcd", "quality": "low"})
}

#[tokio::test]
async fn rpm_window_admits_exactly_rpm_and_slides() {
    let (sim, clock) = limited(Some(5), None).await;
    let url = gen_url(&sim, "o");
    // Requests at t = 0, 10, 20, 30, 40 s.
    for i in 0..5u64 {
        let a = post(&url, None, low()).await;
        assert_eq!(a.status, 200, "request {i}");
        assert_eq!(a.h("x-ratelimit-limit-requests"), Some("5"));
        assert_eq!(
            a.h("x-ratelimit-remaining-requests"),
            Some(&*(4 - i).to_string())
        );
        // The oldest request (t = 0) leaves at t = 60.
        let reset = parse_go_duration(a.h("x-ratelimit-reset-requests").unwrap()).unwrap();
        assert_eq!(reset, Duration::from_secs(60 - 10 * i));
        assert!(a.h("x-ratelimit-limit-tokens").is_none());
        clock.advance(Duration::from_secs(10));
    }
    // t = 50: full; room again at t = 60.
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("10"));
    assert_eq!(a.h("retry-after-ms"), Some("10000"));
    assert_eq!(a.h("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(
        error_of(&a),
        &json!({
            "message": "Rate limit reached for gpt-image-1 in organization org-sim on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 10s. Visit https://platform.openai.com/account/rate-limits to learn more.",
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded"
        })
    );
    // 9.5 s later: still 500 ms to go; the refused request did not count.
    clock.advance(Duration::from_millis(9_500));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("1"));
    assert_eq!(a.h("retry-after-ms"), Some("500"));
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("Please try again in 500ms."));
    clock.advance(Duration::from_millis(500));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-remaining-requests"), Some("0"));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    let s = sim.stats("o");
    assert_eq!((s.requests, s.succeeded, s.rate_limited), (9, 6, 3));
}

#[tokio::test]
async fn rpm_window_never_exceeded_over_ten_simulated_minutes() {
    let (sim, clock) = limited(Some(6), None).await;
    let url = gen_url(&sim, "o");
    let mut admitted: Vec<Duration> = Vec::new();
    // One attempt every 3.7 s for 10 minutes.
    for _ in 0..162 {
        let a = post(&url, None, low()).await;
        if a.status == 200 {
            admitted.push(clock.now());
        } else {
            assert_eq!(a.status, 429);
        }
        clock.advance(Duration::from_millis(3_700));
    }
    for (i, &t) in admitted.iter().enumerate() {
        let in_window = admitted[..=i]
            .iter()
            .filter(|&&s| s + Duration::from_secs(60) > t)
            .count();
        assert!(in_window <= 6);
    }
    // Capacity is used: at most 6 per minute, 10 minutes -> close to 60.
    assert!(admitted.len() >= 55, "{}", admitted.len());
    assert_eq!(sim.stats("o").succeeded as usize, admitted.len());
}

#[tokio::test]
async fn tpm_window_counts_tokens() {
    // Each high 1024x1024 request is 4160 + 1 tokens.
    let (sim, clock) = limited(None, Some(10_000)).await;
    let url = gen_url(&sim, "o");
    let high = json!({"prompt": "abcd", "quality": "high"});
    let a = post(&url, None, high.clone()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("10000"));
    assert_eq!(a.h("x-ratelimit-remaining-tokens"), Some("5839"));
    assert_eq!(a.h("x-ratelimit-reset-tokens"), Some("1m0s"));
    assert!(a.h("x-ratelimit-limit-requests").is_none());
    clock.advance(Duration::from_secs(20));
    assert_eq!(post(&url, None, high.clone()).await.status, 200);
    clock.advance(Duration::from_secs(1));
    let a = post(&url, None, high.clone()).await;
    assert_eq!(a.status, 429);
    assert_eq!(error_of(&a)["type"], "tokens");
    assert_eq!(error_of(&a)["code"], "rate_limit_exceeded");
    assert!(error_of(&a)["message"].as_str().unwrap().contains(
        "on tokens per min (TPM): Limit 10000, Used 8322, Requested 4161. Please try again in 39s."
    ));
    assert_eq!(a.h("retry-after"), Some("39"));
    // A small request still fits.
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.h("x-ratelimit-remaining-tokens"),
        Some(&*(10_000 - 8322 - 273).to_string())
    );
    // Larger than the limit: never fits, no retry headers.
    let a = post(
        &url,
        None,
        json!({"prompt": "x", "quality": "high", "n": 3}),
    )
    .await;
    assert_eq!(a.status, 429);
    assert!(a.h("retry-after").is_none());
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .starts_with("Request too large for gpt-image-1 in organization org-sim on tokens per min (TPM): Limit 10000, Requested 12481."));
    assert_eq!(sim.stats("o").tokens, 2 * 4161 + 273);
}

#[tokio::test]
async fn limits_change_at_runtime_and_tiers() {
    let (sim, clock) = limited(None, None).await;
    let url = gen_url(&sim, "o");
    assert!(post(&url, None, low())
        .await
        .h("x-ratelimit-limit-requests")
        .is_none());
    assert!(sim.set_limits("o", Some(1), Some(1_000_000)));
    // The request admitted before the change is still in the window.
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("60"));
    assert_eq!(sim.window("o").unwrap().requests, 1);
    clock.advance(Duration::from_secs(60));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("1000000"));
    assert_eq!(post(&url, None, low()).await.status, 429);
    assert!(!sim.set_limits("nobody", None, None));

    // Tier presets come from the catalog.
    let sim = Simulator::builder()
        .account("t2", SimAccount::new().tier("tier-2"))
        .account("free", SimAccount::new().tier("free"))
        .start()
        .await
        .unwrap();
    let a = post(&gen_url(&sim, "t2"), None, low()).await;
    assert_eq!(a.h("x-ratelimit-limit-requests"), Some("15"));
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("500000"));
    let a = post(&gen_url(&sim, "free"), None, low()).await;
    assert_eq!(a.status, 429);
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .ends_with("try again after 0.0 seconds."));
    let err = Simulator::builder()
        .account("x", SimAccount::new().tier("tier-9"))
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tier-9"));
}

#[tokio::test]
async fn scripted_error_faults_have_real_bodies() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    let body = json!({"model": "gpt-image-1", "prompt": "x", "quality": "low"});
    struct Case {
        fault: Fault,
        status: u16,
        code: Value,
        kind: Value,
        message_has: &'static str,
        retry_after: Option<&'static str>,
    }
    let cases = vec![
        Case {
            fault: Fault::RateLimited { retry_after: Some(Duration::from_millis(2_500)), scope: RateLimitScope::Requests },
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: json!("requests"),
            message_has: "Please try again in 2.5s.",
            retry_after: Some("3"),
        },
        Case {
            fault: Fault::RateLimited { retry_after: None, scope: RateLimitScope::Tokens },
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: json!("tokens"),
            message_has: "on tokens per min (TPM)",
            retry_after: None,
        },
        Case {
            fault: Fault::RateLimited { retry_after: Some(Duration::from_millis(51_840)), scope: RateLimitScope::Unknown },
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: Value::Null,
            message_has: "You've exceeded the rate limit, please slow down and try again after 51.84 seconds.",
            retry_after: Some("52"),
        },
        Case {
            fault: Fault::TierDenied,
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: json!("requests"),
            message_has: "try again after 0.0 seconds.",
            retry_after: None,
        },
        Case {
            fault: Fault::InsufficientQuota,
            status: 429,
            code: json!("insufficient_quota"),
            kind: json!("insufficient_quota"),
            message_has: "You exceeded your current quota, please check your plan and billing details.",
            retry_after: None,
        },
        Case {
            fault: Fault::BillingHardLimit,
            status: 400,
            code: json!("billing_hard_limit_reached"),
            kind: json!("invalid_request_error"),
            message_has: "Billing hard limit has been reached",
            retry_after: None,
        },
        Case {
            fault: Fault::OrgNotVerified,
            status: 403,
            code: Value::Null,
            kind: json!("invalid_request_error"),
            message_has: "Your organization must be verified to use the model `gpt-image-1`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.",
            retry_after: None,
        },
        Case {
            fault: Fault::RegionNotSupported,
            status: 403,
            code: json!("unsupported_country_region_territory"),
            kind: json!("request_forbidden"),
            message_has: "Country, region, or territory not supported",
            retry_after: None,
        },
        Case {
            fault: Fault::InvalidApiKey,
            status: 401,
            code: Value::Null,
            kind: json!("invalid_request_error"),
            message_has: "You didn't provide an API key",
            retry_after: None,
        },
        Case {
            fault: Fault::ModelNotFound,
            status: 404,
            code: json!("model_not_found"),
            kind: json!("invalid_request_error"),
            message_has: "The model `gpt-image-1` does not exist",
            retry_after: None,
        },
        Case {
            fault: Fault::Status(503),
            status: 503,
            code: Value::Null,
            kind: json!("server_error"),
            message_has: "overloaded",
            retry_after: None,
        },
        Case {
            fault: Fault::Status(500),
            status: 500,
            code: Value::Null,
            kind: json!("server_error"),
            message_has: "The server had an error",
            retry_after: None,
        },
        Case {
            fault: Fault::ContentPolicy,
            status: 400,
            code: json!("moderation_blocked"),
            kind: json!("image_generation_user_error"),
            message_has: "Your request was rejected by the safety system.",
            retry_after: None,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        assert!(sim.fail("openai", c.fault.clone(), Times::Once));
        let a = post(&url, None, body.clone()).await;
        let e = error_of(&a);
        assert_eq!(a.status, c.status, "{:?}: {}", c.fault, a.body);
        assert_eq!(e["code"], c.code, "{:?}", c.fault);
        assert_eq!(e["type"], c.kind, "{:?}", c.fault);
        assert!(e.get("param").is_some(), "OpenAI bodies always carry param");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(c.message_has), "{:?}: {msg}", c.fault);
        assert_eq!(a.h("retry-after"), c.retry_after, "{:?}", c.fault);
        assert!(a.h("x-request-id").is_some());
        assert_eq!(sim.stats("openai").faults_served, i as u64 + 1);
    }
    // Queue is empty again: normal answer.
    assert_eq!(post(&url, None, body).await.status, 200);
    let s = sim.stats("openai");
    assert_eq!((s.succeeded, s.rate_limited), (1, 0));
}

#[tokio::test]
async fn fault_counts_and_clear() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    sim.fail("openai", Fault::Status(502), Times::N(2));
    sim.fail("openai", Fault::Status(504), Times::Once);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(post(&url, None, low()).await.status);
    }
    assert_eq!(got, [502, 502, 504, 200]);
    sim.fail("openai", Fault::Status(500), Times::Always);
    for _ in 0..3 {
        assert_eq!(post(&url, None, low()).await.status, 500);
    }
    assert!(sim.clear_faults("openai"));
    assert_eq!(post(&url, None, low()).await.status, 200);
    // Faults are per account.
    sim.fail("openai", Fault::Status(500), Times::Always);
    let az = format!(
        "{}/openai/deployments/gpt-image-1/images/generations?api-version=2025-04-01-preview",
        sim.azure_endpoint("azure")
    );
    assert_eq!(post(&az, None, low()).await.status, 200);
    assert!(!sim.fail("nobody", Fault::Reset, Times::Once));
}

#[tokio::test]
async fn transport_faults() {
    let sim = Simulator::builder()
        .account("o", SimAccount::new())
        .hang_limit(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let url = gen_url(&sim, "o");

    sim.fail("o", Fault::Reset, Times::Once);
    let err = client().post(&url).json(&low()).send().await.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");

    sim.fail("o", Fault::Hang, Times::Once);
    let err = client()
        .post(&url)
        .json(&low())
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The hanging request ends on the server once the client is gone.
    let mut waited = 0;
    while sim.stats("o").in_flight > 0 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(sim.stats("o").in_flight, 0, "hang outlived its client");

    sim.fail("o", Fault::TruncatedJson, Times::Once);
    let resp = client().post(&url).json(&low()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("{\"created\":"));
    assert!(serde_json::from_str::<Value>(&text).is_err());

    sim.fail("o", Fault::EmptyData, Times::Once);
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"], json!([]));
    assert!(a.body["created"].is_i64());

    sim.fail("o", Fault::Slow(Duration::from_millis(200)), Times::Once);
    let started = std::time::Instant::now();
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The server survives all of it.
    assert_eq!(post(&url, None, low()).await.status, 200);
    assert_eq!(sim.stats("o").faults_served, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_answers() {
    let sim = Simulator::builder()
        .account("o", SimAccount::new().latency(Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(post(&gen_url(&sim, "o"), None, low()).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn azure_surfaces() {
    let (sim, clock) = limited(Some(2), Some(100_000)).await;
    let endpoint = sim.azure_endpoint("az");
    let dep = |d: &str, op: &str| {
        format!("{endpoint}/openai/deployments/{d}/images/{op}?api-version=2025-04-01-preview")
    };
    let body = json!({"prompt": "abcd", "quality": "low"});
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.h("apim-request-id").is_some());
    assert!(a.h("x-request-id").is_none());
    assert_eq!(a.h("x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(a.h("x-ratelimit-remaining-tokens"), Some("99727"));
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(a.h(h).is_none(), "{h}");
    }
    assert_eq!(a.body["usage"]["output_tokens"], 272);

    // Missing api-version.
    let a = post(
        &format!("{endpoint}/openai/deployments/dep/images/generations"),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "404");
    // Unknown deployment.
    let a = post(&dep("nope", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "DeploymentNotFound");
    // webp.
    let a = post(
        &dep("dep", "generations"),
        None,
        json!({"prompt": "x", "output_format": "webp"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a)["param"], "output_format");
    assert!(error_of(&a)["message"].as_str().unwrap().contains("webp"));

    // v1 surface: the deployment in the body.
    let v1 = format!("{endpoint}/openai/v1/images/generations");
    let a = post(
        &v1,
        None,
        json!({"model": "dep", "prompt": "abcd", "quality": "low"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(&v1, None, json!({"model": "gpt-image-1", "prompt": "abcd"})).await;
    assert_eq!(error_of(&a)["code"], "DeploymentNotFound");

    // Window 429 in Azure's words.
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 429);
    assert_eq!(error_of(&a)["code"], "429");
    let msg = error_of(&a)["message"].as_str().unwrap();
    assert!(msg.starts_with("Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit"), "{msg}");
    assert!(msg.contains("Please retry after 60 seconds."), "{msg}");
    assert_eq!(a.h("retry-after"), Some("60"));
    assert_eq!(a.h("retry-after-ms"), Some("60000"));
    assert!(a.h("apim-request-id").is_some());
    clock.advance(Duration::from_secs(60));

    // Edits on Azure (multipart, image[]).
    let form = reqwest::multipart::Form::new()
        .part("image[]", part(png_of(64, 64), "a.png"))
        .part("image[]", part(png_of(64, 64), "b.png"))
        .text("prompt", "merge")
        .text("quality", "low");
    let a = send(client().post(dep("dep", "edits")).multipart(form)).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Azure faults.
    sim.fail("az", Fault::ContentPolicy, Times::Once);
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a)["code"], "content_policy_violation");
    assert_eq!(
        error_of(&a)["inner_error"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    assert_eq!(
        error_of(&a)["inner_error"]["content_filter_results"]["violence"]["filtered"],
        true
    );
    sim.fail(
        "az",
        Fault::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            scope: RateLimitScope::Requests,
        },
        Times::Once,
    );
    let a = post(&dep("dep", "edits"), None, body.clone()).await;
    assert_eq!(a.status, 429);
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("ImageEdits_Create"));
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("Please retry after 2 seconds."));
    assert_eq!(a.h("retry-after-ms"), Some("2000"));
    sim.fail(
        "az",
        Fault::RateLimited {
            retry_after: None,
            scope: RateLimitScope::Requests,
        },
        Times::Once,
    );
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(error_of(&a)["code"], "RateLimitReached");
    assert!(a.h("retry-after").is_none());
    assert!(!error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("retry after"));
    sim.fail("az", Fault::ModelNotFound, Times::Once);
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(
        (a.status, &error_of(&a)["code"]),
        (404, &json!("DeploymentNotFound"))
    );
    sim.fail("az", Fault::InvalidApiKey, Times::Once);
    let a = post(&dep("dep", "generations"), None, body).await;
    assert_eq!((a.status, &error_of(&a)["code"]), (401, &json!("401")));
}

#[tokio::test]
async fn azure_without_deployments_serves_catalog_models() {
    let sim = Simulator::builder()
        .account("az", SimAccount::new())
        .start()
        .await
        .unwrap();
    let url = format!(
        "{}/openai/deployments/gpt-image-1-mini/images/generations?api-version=preview",
        sim.azure_endpoint("az")
    );
    assert_eq!(post(&url, None, low()).await.status, 200);
}

fn chat_body() -> Value {
    json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": PROMPT}]})
}

#[tokio::test]
async fn chat_modes_carry_the_image() {
    let sim = Simulator::builder()
        .account(
            "data",
            SimAccount::new().chat_image(ChatImageStyle::DataUrl),
        )
        .account(
            "md",
            SimAccount::new().chat_image(ChatImageStyle::MarkdownUrl),
        )
        .account(
            "plain",
            SimAccount::new().chat_image(ChatImageStyle::PlainUrl),
        )
        .start()
        .await
        .unwrap();
    let chat = |a: &str| format!("{}/chat/completions", sim.openai_base_url(a));

    let a = post(&chat("data"), None, chat_body()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["object"], "chat.completion");
    assert_eq!(a.body["model"], "gpt-image-1");
    assert_eq!(a.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(a.body["choices"][0]["finish_reason"], "stop");
    let content = a.body["choices"][0]["message"]["content"].as_str().unwrap();
    let data = content.strip_prefix("data:image/png;base64,").unwrap();
    assert_eq!(decode_png(&b64(data)), (1024, 1024));
    assert_eq!(a.body["usage"]["completion_tokens"], 4160);

    let a = post(&chat("md"), None, chat_body()).await;
    let content = a.body["choices"][0]["message"]["content"].as_str().unwrap();
    let url = content
        .strip_prefix("![image](")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap();
    assert!(
        url.starts_with(&format!("{}/md/files/", sim.url())) && url.ends_with(".png"),
        "{url}"
    );
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(decode_png(&resp.bytes().await.unwrap()), (1024, 1024));

    let a = post(&chat("plain"), None, chat_body()).await;
    let url = a.body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"));
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Files are per account; an unknown id is 404.
    let resp = client()
        .get(format!("{}/md/files/nope.png", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Text parts in array form and a missing user message.
    let a = post(
        &chat("data"),
        None,
        json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}]}),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = post(
        &chat("data"),
        None,
        json!({"model": "gpt-image-1", "messages": []}),
    )
    .await;
    assert_eq!(
        (a.status, error_of(&a)["param"].as_str()),
        (400, Some("messages"))
    );
    assert_eq!(sim.stats("md").images, 1);
}

#[tokio::test]
async fn dalle_url_response_format_downloads() {
    let sim = plain().await;
    let a = post(
        &gen_url(&sim, "openai"),
        None,
        json!({"model": "dall-e-3", "prompt": PROMPT, "response_format": "url", "size": "1792x1024"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("usage").is_none());
    assert_eq!(a.body["data"][0]["revised_prompt"], PROMPT);
    let url = a.body["data"][0]["url"].as_str().unwrap();
    let bytes = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(decode_png(&bytes), (1792, 1024));
}

#[tokio::test]
async fn received_log_and_stats() {
    let clock = ManualClock::new();
    let sim = Simulator::builder()
        .account("o", SimAccount::new())
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(7));
    let resp = client()
        .post(format!("{}?x=1", gen_url(&sim, "o")))
        .header("OpenAI-Organization", "org-abc")
        .json(&low())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = sim.received("o");
    assert_eq!(rec.len(), 1);
    let r = &rec[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/o/v1/images/generations");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(r.header("openai-organization"), Some("org-abc"));
    assert_eq!(r.json().unwrap(), low());
    assert_eq!(r.at, Duration::from_secs(7));
    assert_eq!(sim.stats("nobody"), Default::default());
    assert!(sim.received("nobody").is_empty());
    assert!(sim.reset_stats("o"));
    assert_eq!(sim.stats("o").requests, 0);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    assert_eq!(post(&url, None, low()).await.status, 200);
    sim.fail("openai", Fault::Hang, Times::Once);
    let hanging = tokio::spawn({
        let url = url.clone();
        async move { client().post(&url).json(&low()).send().await }
    });
    // Let the hanging request reach the server.
    while sim.stats("openai").faults_served == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.shutdown().await;
    // The hanging request ends (with an error) instead of waiting for its timeout.
    assert!(hanging.await.unwrap().is_err());
    assert!(client().post(&url).json(&low()).send().await.is_err());
}

#[test]
fn go_durations_in_headers_round_trip() {
    for d in [
        Duration::from_secs(60),
        Duration::from_millis(500),
        Duration::from_millis(39_500),
    ] {
        assert_eq!(parse_go_duration(&format_go_duration(d)), Some(d));
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Simulator>();
    check::<SimAccount>();
    check::<Fault>();
    check::<image_router::sim::SimStats>();
    check::<image_router::sim::ReceivedRequest>();
    check::<image_router::sim::RateWindow>();
}

#[test]
fn account_debug_hides_the_key() {
    let acct = SimAccount::new().api_key(format!("sk-{}", "very-secret-key-123456"));
    assert!(!format!("{acct:?}").contains("very-secret"));
}

/// A client that waits exactly `retry-after-ms` after each 429 always gets in next time, and
/// over ten simulated minutes uses the whole allowance of the binding limit.
#[tokio::test]
async fn waiting_retry_after_ms_always_suffices() {
    // medium 1024x1024 = 1056 + 1 tokens: TPM 20_000 binds (18 per minute) before RPM 25.
    let (sim, clock) = limited(Some(25), Some(20_000)).await;
    let url = gen_url(&sim, "o");
    let body = json!({"prompt": "abcd", "quality": "medium"});
    let start = clock.now();
    let mut ok = 0u32;
    let mut after_wait = false;
    while clock.now() < start + Duration::from_secs(600) {
        let a = post(&url, None, body.clone()).await;
        match a.status {
            200 => {
                ok += 1;
                after_wait = false;
            }
            429 => {
                assert!(!after_wait, "refused again after waiting retry-after-ms");
                assert_eq!(error_of(&a)["type"], "tokens");
                let ms: u64 = a.h("retry-after-ms").unwrap().parse().unwrap();
                assert!(ms > 0);
                clock.advance(Duration::from_millis(ms));
                after_wait = true;
            }
            s => panic!("unexpected {s}"),
        }
    }
    // 18 per 60 s window: ten windows plus the first burst.
    assert!((180..=18 * 11).contains(&ok), "{ok}");
    assert_eq!(sim.stats("o").tokens, u64::from(ok) * 1057);
}
