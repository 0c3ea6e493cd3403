//! Hostile providers: a raw-TCP HTTP server on loopback that answers with what a compromised,
//! buggy or malicious endpoint (or a proxy in the middle) could send, and a second loopback
//! listener as "the other host". Each test asserts the bound the library must keep: no request
//! (and no key) reaches the other host, bytes read stay bounded, time stays bounded, the key
//! appears in no error text, explanation, status JSON or tracing output, hints are capped,
//! usage is clamped, and non-images are not images.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_router::providers::{Azure, Compatible, CompatibleMode, OpenAi};
use image_router::{
    CallContext, ErrorKind, GenerateRequest, OutputFormat, Provider, Quality, Router, Size,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{b64, jpeg_bytes, png_bytes};

/// A key assembled from pieces so no key-shaped literal is tracked.
fn key() -> String {
    ["hostile", "KEY", "7f3a9c", "e21b84"].join("-")
}

/// What the hostile server sends for one request.
#[derive(Clone)]
enum Reply {
    /// These bytes, then close.
    Raw(Vec<u8>),
    /// `head`, then `chunk` forever (until the client hangs up or the safety cap).
    Endless { head: Vec<u8>, chunk: Vec<u8> },
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    head: String,
}

type Handler = Arc<dyn Fn(&Seen, u16) -> Reply + Send + Sync>;

/// A loopback HTTP/1.1 server that records every request and counts the bytes it sent.
#[derive(Clone)]
struct Hostile {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    sent: Arc<AtomicU64>,
}

/// Safety cap on what one endless answer sends: far above every bound asserted below, so a
/// missing limit still fails the test (instead of filling memory) and the test stops by itself.
const SAFETY_CAP: u64 = 512 * 1024 * 1024;

impl Hostile {
    async fn start(handler: impl Fn(&Seen, u16) -> Reply + Send + Sync + 'static) -> Hostile {
        let handler: Handler = Arc::new(handler);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = Hostile {
            port,
            seen: Arc::default(),
            sent: Arc::default(),
        };
        let state = h.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (state, handler) = (state.clone(), handler.clone());
                tokio::spawn(async move { state.serve(sock, handler).await });
            }
        });
        h
    }

    /// A listener that answers every request with a 404 and records it.
    async fn other_host() -> Hostile {
        Hostile::start(|_, _| Reply::Raw(raw(404, &[], b"not here"))).await
    }

    async fn serve(&self, mut sock: TcpStream, handler: Handler) {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = buf.len() - head_end;
        while body < length {
            match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut tmp)).await {
                Ok(Ok(n)) if n > 0 => body += n,
                _ => break,
            }
        }
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let seen = Seen { path, head };
        self.seen.lock().unwrap().push(seen.clone());
        match handler(&seen, self.port) {
            Reply::Raw(bytes) => {
                let _ = sock.write_all(&bytes).await;
                self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            Reply::Endless { head, chunk } => {
                if sock.write_all(&head).await.is_err() {
                    return;
                }
                while self.sent.load(Ordering::Relaxed) < SAFETY_CAP {
                    if sock.write_all(&chunk).await.is_err() {
                        break;
                    }
                    self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
        }
        let _ = sock.shutdown().await;
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete HTTP/1.1 answer with a content length.
fn raw(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_reply(status: u16, headers: &[(&str, &str)], body: serde_json::Value) -> Reply {
    let mut h = headers.to_vec();
    h.push(("content-type", "application/json"));
    Reply::Raw(raw(status, &h, body.to_string().as_bytes()))
}

/// A close-delimited answer (no length) that never ends.
fn endless(status: u16, content_type: &str, prefix: &str) -> Reply {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n{prefix}"
    );
    Reply::Endless {
        head: head.into_bytes(),
        chunk: vec![b'A'; 64 * 1024],
    }
}

fn gen() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

fn ctx() -> CallContext {
    CallContext::new(Duration::from_secs(20))
}

fn openai(h: &Hostile) -> OpenAi {
    OpenAi::builder()
        .base_url(h.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

fn compatible(h: &Hostile, mode: CompatibleMode) -> Compatible {
    Compatible::builder()
        .base_url(h.base())
        .api_key(key())
        .mode(mode)
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

fn azure_at(h: &Hostile) -> image_router::providers::AzureBuilder {
    Azure::builder()
        .endpoint(format!("http://127.0.0.1:{}", h.port))
        .api_key(key())
        .deployment("gpt-image-1", "img")
}

fn ok_images(data: serde_json::Value) -> serde_json::Value {
    json!({"created": 1, "data": data})
}

// ---------------------------------------------------------------------------------------
// 1. Redirects: no key and no prompt leave for another origin.
// ---------------------------------------------------------------------------------------

fn redirect_to(other: &Hostile, status: u16) -> impl Fn(&Seen, u16) -> Reply + Send + Sync {
    let target = other.url("/v1/images/generations?sig=secret-query");
    move |_, _| Reply::Raw(raw(status, &[("location", target.as_str())], b"moved"))
}

#[tokio::test]
async fn cross_host_redirect_of_an_api_call_is_not_followed_and_names_the_host() {
    for status in [301u16, 302, 307, 308] {
        let other = Hostile::other_host().await;
        let evil = Hostile::start(redirect_to(&other, status)).await;
        // The library's own client (no `.client(...)`): the redirect must not be followed.
        let p = azure_at(&evil).build().unwrap();
        let err = p.generate(&gen(), &ctx()).await.unwrap_err();
        assert!(
            other.requests().is_empty(),
            "{status}: the other host got {:?}",
            other.requests()
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1:{}", other.port)),
            "{status}: {text}"
        );
        assert!(!text.contains("secret-query"), "{status}: {text}");
        assert!(!text.contains(&key()), "{status}: {text}");
        let why = err.explain();
        assert!(why.cause.contains("redirected"), "{why}");
        assert!(why.action.contains("base_url"), "{why}");
    }
}

#[tokio::test]
async fn an_application_client_that_follows_redirects_still_gets_no_image_from_another_host() {
    let other = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            ok_images(json!([{"b64_json": b64(&png_bytes())}])),
        )
    })
    .await;
    let evil = Hostile::start(redirect_to(&other, 307)).await;
    // reqwest::Client::new() follows up to 10 redirects to any host.
    let p = openai(&evil);
    let err = p.generate(&gen(), &ctx()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", other.port)),
        "{err}"
    );
    // The bearer key is stripped by reqwest on a cross-host redirect; what arrived there
    // carries no key.
    for seen in other.requests() {
        assert!(!seen.head.contains(&key()), "{}", seen.head);
    }
}

#[tokio::test]
async fn same_origin_redirect_is_still_followed() {
    let h = Hostile::start(|seen, port| {
        if seen.path.starts_with("/v1/images/generations") {
            let to = format!("http://127.0.0.1:{port}/moved");
            Reply::Raw(raw(307, &[("location", to.as_str())], b""))
        } else {
            json_reply(
                200,
                &[],
                ok_images(json!([{"b64_json": b64(&png_bytes())}])),
            )
        }
    })
    .await;
    let p = OpenAi::builder()
        .base_url(h.base())
        .api_key(key())
        .build()
        .unwrap();
    let res = p.generate(&gen(), &ctx()).await.unwrap();
    assert_eq!(res.images.len(), 1);
    assert_eq!(h.requests().len(), 2);
}

// ---------------------------------------------------------------------------------------
// 2. A key echoed anywhere in an answer leaves no trace.
// ---------------------------------------------------------------------------------------

/// Captures tracing output for the current thread only (the tests share one process).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn subscriber(out: Captured) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || out.clone())
        .finish()
}

#[tokio::test]
async fn a_key_echoed_in_headers_and_body_reaches_no_error_text_status_or_log() {
    let k = key();
    let echo = k.clone();
    let evil = Hostile::start(move |_, _| {
        let id = format!("req-{echo}");
        json_reply(
            400,
            &[
                ("x-request-id", id.as_str()),
                ("x-ratelimit-reset-requests", echo.as_str()),
            ],
            json!({"error": {
                "message": format!("Incorrect API key provided: {echo}"),
                "type": format!("type-{echo}"),
                "param": format!("param-{echo}"),
                "code": format!("code-{echo}"),
            }}),
        )
    })
    .await;
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(subscriber(logs.clone()));
    let router = Router::builder()
        .provider(
            Compatible::builder()
                .name("evil")
                .base_url(evil.base())
                .api_key(k.clone())
                .client(reqwest::Client::new())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    let cause = err.cause().expect("a provider error").clone();
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        err.explain().to_string(),
        cause.to_string(),
        format!("{cause:?}"),
        cause.explain().to_string(),
        serde_json::to_string(&cause).unwrap(),
        serde_json::to_string(&router.status()).unwrap(),
        logs.text(),
    ];
    for (i, t) in texts.iter().enumerate() {
        assert!(!t.contains(&k), "text {i} leaks the key: {t}");
    }
    assert!(
        cause
            .request_id
            .as_deref()
            .is_some_and(|id| id.contains("[redacted]")),
        "{cause:?}"
    );
    assert!(cause.message.contains("[redacted]"), "{cause:?}");
}

#[tokio::test]
async fn a_key_echoed_in_a_successful_answer_is_scrubbed_too() {
    let k = key();
    let echo = k.clone();
    let evil = Hostile::start(move |seen, port| {
        if seen.path.starts_with("/img") {
            return Reply::Raw(raw(200, &[("content-type", "image/png")], &png_bytes()));
        }
        let id = format!("req-{echo}");
        json_reply(
            200,
            &[("x-request-id", id.as_str())],
            ok_images(json!([{
                "url": format!("http://127.0.0.1:{port}/img?k={echo}"),
                "revised_prompt": format!("prompt {echo}"),
            }])),
        )
    })
    .await;
    let res = openai(&evil).generate(&gen(), &ctx()).await.unwrap();
    let text = format!("{res:?}");
    assert!(!text.contains(&k), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

// ---------------------------------------------------------------------------------------
// 4. Memory: every body is read with a limit.
// ---------------------------------------------------------------------------------------

/// Far above any limit the library derives for one low 1024×1024 image, far below what an
/// unbounded read would reach before the safety cap.
const READ_BOUND: u64 = 96 * 1024 * 1024;

#[tokio::test]
async fn an_endless_success_body_fails_the_attempt_at_the_limit() {
    let evil = Hostile::start(|_, _| {
        endless(
            200,
            "application/json",
            r#"{"created":1,"data":[{"b64_json":""#,
        )
    })
    .await;
    let started = Instant::now();
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
    assert!(evil.sent() < READ_BOUND, "read {} bytes", evil.sent());
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(err.explain().action.contains("max_response_bytes"));
}

#[tokio::test]
async fn an_endless_error_body_is_cut_short_and_still_classified() {
    let evil = Hostile::start(|_, _| endless(500, "text/html", "<html>")).await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Server, "{err}");
    assert!(evil.sent() < 16 * 1024 * 1024, "read {} bytes", evil.sent());
    assert!(err.message.len() < 8 * 1024);
}

#[tokio::test]
async fn a_declared_huge_content_length_is_refused_before_reading() {
    let evil = Hostile::start(|_, _| {
        let mut head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000000000\r\n\r\n".to_vec();
        head.extend_from_slice(&[b' '; 1024]);
        Reply::Raw(head)
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
}

#[tokio::test]
async fn a_huge_json_body_is_not_an_image() {
    // 12 MB of base64 for one low 1024×1024 image: more than any real image of that size.
    let big = b64(&vec![0u8; 9 * 1024 * 1024]);
    let body = ok_images(json!([{"b64_json": big}]))
        .to_string()
        .into_bytes();
    let evil = Hostile::start(move |_, _| {
        Reply::Raw(raw(200, &[("content-type", "application/json")], &body))
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
}

#[tokio::test]
async fn the_response_limit_is_configurable() {
    let body = ok_images(json!([{"b64_json": b64(&png_bytes())}]))
        .to_string()
        .into_bytes();
    let evil = Hostile::start(move |_, _| {
        Reply::Raw(raw(200, &[("content-type", "application/json")], &body))
    })
    .await;
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .max_response_bytes(16)
        .build()
        .unwrap();
    let err = p.generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("16 bytes"), "{err}");
    assert!(openai(&evil).generate(&gen(), &ctx()).await.is_ok());
}

#[tokio::test]
async fn a_huge_error_message_is_truncated_with_a_marker() {
    let message = "x".repeat(40 * 1024);
    let evil = Hostile::start(move |_, _| {
        json_reply(
            400,
            &[],
            json!({"error": {"message": message, "code": "bad"}}),
        )
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert!(err.message.len() <= 8 * 1024, "{}", err.message.len());
    assert!(
        err.message.contains("truncated"),
        "{}",
        &err.message[err.message.len() - 60..]
    );
}

#[tokio::test]
async fn an_endless_image_download_fails_at_the_limit() {
    let evil = Hostile::start(|seen, port| {
        if seen.path.starts_with("/img") {
            endless(200, "image/png", "\u{89}PNG")
        } else {
            json_reply(
                200,
                &[],
                ok_images(json!([{"url": format!("http://127.0.0.1:{port}/img.png")}])),
            )
        }
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
    assert!(evil.sent() < READ_BOUND, "read {} bytes", evil.sent());
}

// ---------------------------------------------------------------------------------------
// 5. Downloads: public hosts only, no cross-host redirect, never more than `n`.
// ---------------------------------------------------------------------------------------

async fn download_refused(url: String, proxy: &Hostile) -> image_router::ProviderError {
    let evil =
        Hostile::start(move |_, _| json_reply(200, &[], ok_images(json!([{"url": url.clone()}]))))
            .await;
    // Every request of this client to a host other than the provider's goes through `proxy`,
    // a loopback listener: if the check ever regressed, the download would reach that
    // listener (and be counted there), never the network.
    let via: url::Url = proxy.url("/").parse().unwrap();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::custom(move |u| {
            (u.host_str() != Some("127.0.0.1")).then(|| via.clone())
        }))
        .build()
        .unwrap();
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(client)
        .build()
        .unwrap();
    p.generate(&gen(), &ctx()).await.unwrap_err()
}

#[tokio::test]
async fn downloads_from_private_loopback_and_metadata_addresses_are_refused() {
    let other = Hostile::other_host().await;
    let started = Instant::now();
    for url in [
        "http://169.254.169.254/latest/meta-data/iam".to_string(),
        "http://10.0.0.1/x.png".to_string(),
        "http://192.168.1.1/x.png".to_string(),
        "http://[fe80::1]/x.png".to_string(),
        "http://[::ffff:169.254.169.254]/x.png".to_string(),
        format!("http://localhost:{}/x.png", other.port),
        format!("http://[::1]:{}/x.png", other.port),
        "file:///etc/passwd".to_string(),
        "ftp://example.com/x.png".to_string(),
    ] {
        let err = download_refused(url.clone(), &other).await;
        assert_eq!(err.kind, ErrorKind::Decode, "{url}: {err}");
        assert!(err.message.contains("not allowed"), "{url}: {err}");
        assert!(
            err.explain().action.contains("allow_download_hosts"),
            "{url}: {}",
            err.explain()
        );
    }
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    // Refused before any connection: no timeout was waited out.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn an_allow_list_permits_a_private_download_host() {
    let img =
        Hostile::start(|_, _| Reply::Raw(raw(200, &[("content-type", "image/png")], &png_bytes())))
            .await;
    let url = format!("http://localhost:{}/x.png", img.port);
    let evil =
        Hostile::start(move |_, _| json_reply(200, &[], ok_images(json!([{"url": url.clone()}]))))
            .await;
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .allow_download_hosts(["localhost"])
        .build()
        .unwrap();
    let res = p.generate(&gen(), &ctx()).await.unwrap();
    assert_eq!(res.images.len(), 1);
    assert_eq!(img.requests().len(), 1);
}

#[tokio::test]
async fn a_download_redirected_to_another_host_is_not_followed() {
    let other = Hostile::other_host().await;
    let to = other.url("/stolen.png");
    let evil = Hostile::start(move |seen, port| {
        if seen.path.starts_with("/img") {
            Reply::Raw(raw(302, &[("location", to.as_str())], b""))
        } else {
            json_reply(
                200,
                &[],
                ok_images(json!([{"url": format!("http://127.0.0.1:{port}/img.png")}])),
            )
        }
    })
    .await;
    for p in [
        openai(&evil),
        OpenAi::builder()
            .base_url(evil.base())
            .api_key(key())
            .build()
            .unwrap(),
    ] {
        let err = p.generate(&gen(), &ctx()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    }
    // The library's own download client does not follow; an application client that does
    // still gets an error (checked above), and no key travels with a download.
    for seen in other.requests() {
        assert!(!seen.head.to_ascii_lowercase().contains("authorization"));
    }
}

#[tokio::test]
async fn five_thousand_urls_for_one_image_download_one() {
    let downloads = Arc::new(AtomicUsize::new(0));
    let count = downloads.clone();
    let evil = Hostile::start(move |seen, port| {
        if seen.path.starts_with("/img") {
            count.fetch_add(1, Ordering::Relaxed);
            return Reply::Raw(raw(200, &[("content-type", "image/png")], &png_bytes()));
        }
        let text: String = (0..5000)
            .map(|i| format!("![x](http://127.0.0.1:{port}/img{i}.png)\n"))
            .collect();
        if seen.path.contains("chat") {
            json_reply(
                200,
                &[],
                json!({"choices": [{"message": {"role": "assistant", "content": text}}]}),
            )
        } else {
            let data: Vec<_> = (0..5000)
                .map(|i| json!({"url": format!("http://127.0.0.1:{port}/img{i}.png")}))
                .collect();
            json_reply(200, &[], ok_images(json!(data)))
        }
    })
    .await;
    for mode in [CompatibleMode::Chat, CompatibleMode::Images] {
        downloads.store(0, Ordering::Relaxed);
        let res = compatible(&evil, mode)
            .generate(&gen(), &ctx())
            .await
            .unwrap();
        assert_eq!(res.images.len(), 1, "{mode:?}");
        assert_eq!(downloads.load(Ordering::Relaxed), 1, "{mode:?}");
    }
    let res = compatible(&evil, CompatibleMode::Images)
        .generate(&gen().n(2), &ctx())
        .await
        .unwrap();
    assert_eq!(res.images.len(), 2);
}

// ---------------------------------------------------------------------------------------
// 7. Retry hints are capped.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn absurd_retry_hints_are_capped() {
    let ten_minutes = Duration::from_secs(600);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("retry-after-ms", "999999999999")], "slow down"),
        (
            vec![("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
            "slow down",
        ),
        (vec![], "Please try again after 999999999 hours."),
        (
            vec![
                ("retry-after", "60"),
                ("x-ratelimit-reset-requests", "2777777h"),
            ],
            "slow down",
        ),
    ];
    for (headers, message) in cases {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let msg = message.to_string();
        let evil = Hostile::start(move |_, _| {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            json_reply(
                429,
                &h,
                json!({"error": {"message": msg, "code": "rate_limit_exceeded"}}),
            )
        })
        .await;
        let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
        assert!(err.is_rate_limited(), "{err}");
        let hint = err.retry_after.expect("a hint");
        assert!(hint <= ten_minutes, "{message}: {hint:?}");
        if let Some(rl) = &err.rate_limits {
            for d in [rl.reset_requests, rl.reset_tokens, rl.retry_after]
                .into_iter()
                .flatten()
            {
                assert!(d <= ten_minutes, "{d:?}");
            }
        }
    }
}

#[tokio::test]
async fn the_hint_cap_is_configurable_and_named_in_the_message() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            429,
            &[("retry-after", "86400")],
            json!({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}),
        )
    })
    .await;
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .max_retry_hint(Duration::from_secs(30))
        .build()
        .unwrap();
    let logs = Captured::default();
    let guard = tracing::subscriber::set_default(subscriber(logs.clone()));
    let err = p.generate(&gen(), &ctx()).await.unwrap_err();
    drop(guard);
    assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
    assert!(err.message.contains("capped"), "{err}");
    let text = logs.text();
    assert!(
        text.contains("retry hint capped") && text.contains("hint_secs=86400"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// 8. Usage is clamped; arithmetic saturates.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn absurd_usage_is_clamped_to_what_the_request_can_produce() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            json!({"created": 1, "data": [{"b64_json": b64(&png_bytes())}],
                "usage": {"input_tokens": u64::MAX, "output_tokens": u64::MAX,
                          "total_tokens": u64::MAX,
                          "input_tokens_details": {"text_tokens": u64::MAX, "image_tokens": 1},
                          "output_tokens_details": {"image_tokens": u64::MAX, "text_tokens": 0}}}),
        )
    })
    .await;
    let logs = Captured::default();
    let guard = tracing::subscriber::set_default(subscriber(logs.clone()));
    let res = openai(&evil).generate(&gen(), &ctx()).await.unwrap();
    drop(guard);
    // Flagged as suspicious by a warning (and the `image_router_suspicious_usage_total`
    // counter).
    assert!(logs.text().contains("clamped"), "{}", logs.text());
    let u = res.usage.expect("usage kept");
    // One low 1024×1024 image: 272 output tokens by the table; the clamp leaves headroom but
    // nothing near u64::MAX.
    assert!(u.total_tokens < 1_000_000, "{u:?}");
    assert!(u.output_tokens < 1_000_000, "{u:?}");
    assert!(u.input_tokens < 1_000_000, "{u:?}");
    assert!(u.total_tokens >= u.output_tokens, "{u:?}");

    // Through a router with a budget: the month is not exhausted by one answer.
    let router = Router::builder().provider(openai(&evil)).build().unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert!(res.cost_usd.unwrap_or(0.0) < 100.0, "{:?}", res.cost_usd);
}

#[tokio::test]
async fn chat_usage_of_u64_max_does_not_overflow() {
    let evil = Hostile::start(|_, _| {
        let content = format!("data:image/png;base64,{}", b64(&png_bytes()));
        json_reply(
            200,
            &[],
            json!({"choices": [{"message": {"content": content}}],
                   "usage": {"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX}}),
        )
    })
    .await;
    let res = compatible(&evil, CompatibleMode::Chat)
        .generate(&gen(), &ctx())
        .await
        .unwrap();
    let u = res.usage.expect("usage");
    assert!(u.total_tokens < 1_000_000, "{u:?}");
}

// ---------------------------------------------------------------------------------------
// 11. A decodable non-image is not an image; the format must match.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn base64_that_is_not_an_image_is_a_decode_error() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            ok_images(json!([{"b64_json": b64(br#"{"this is":"json, not an image"}"#)}])),
        )
    })
    .await;
    let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
}

#[tokio::test]
async fn an_image_of_another_format_than_requested_is_kept_with_its_actual_format() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            json!({"created": 1, "output_format": "png",
                   "data": [{"b64_json": b64(&jpeg_bytes())}]}),
        )
    })
    .await;
    // The answer's own `output_format` echo is not believed: the bytes decide.
    let res = openai(&evil)
        .generate(&gen().output_format(OutputFormat::Png), &ctx())
        .await
        .unwrap();
    assert_eq!(res.images[0].format, OutputFormat::Jpeg);
    let res = openai(&evil).generate(&gen(), &ctx()).await.unwrap();
    assert_eq!(res.images[0].format, OutputFormat::Jpeg);
}

// ---------------------------------------------------------------------------------------
// Probes and edits go through the same send path.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_endless_probe_answer_is_cut_at_the_probe_limit() {
    let evil = Hostile::start(|_, _| endless(200, "application/json", r#"{"id":""#)).await;
    let err = openai(&evil)
        .probe("gpt-image-1", &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Decode, "{err}");
    assert!(err.message.contains("limit"), "{err}");
    assert!(evil.sent() < READ_BOUND, "read {} bytes", evil.sent());
}

#[tokio::test]
async fn a_probe_redirected_to_another_host_sends_it_nothing() {
    let other = Hostile::other_host().await;
    let evil = Hostile::start(redirect_to(&other, 302)).await;
    let err = azure_at(&evil)
        .build()
        .unwrap()
        .probe("gpt-image-1", &ctx())
        .await
        .unwrap_err();
    assert!(other.requests().is_empty(), "{:?}", other.requests());
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", other.port)),
        "{err}"
    );
}

#[tokio::test]
async fn an_edit_redirected_with_307_does_not_resend_the_upload_elsewhere() {
    let other = Hostile::other_host().await;
    let evil = Hostile::start(redirect_to(&other, 307)).await;
    let req = image_router::EditRequest::new(
        "add a hat",
        vec![image_router::InputImage::new(png_bytes(), "cat.png")],
    )
    .model("gpt-image-1");
    let err = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .build()
        .unwrap()
        .edit(&req, &ctx())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = azure_at(&evil)
        .build()
        .unwrap()
        .edit(&req, &ctx())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(other.requests().is_empty(), "{:?}", other.requests());
}

// ---------------------------------------------------------------------------------------
// The limiter's token arithmetic saturates on provider numbers.
// ---------------------------------------------------------------------------------------

#[test]
fn the_limiter_survives_u64_max_usage_and_headers() {
    use image_router::clock::ManualClock;
    use image_router::quota::limiter::RateLimiter;
    use image_router::quota::limits::Limits;

    let clock = ManualClock::new();
    let lim = RateLimiter::new(Limits::new(None, None).unwrap(), Arc::new(clock.clone())).unwrap();
    // Unlimited: two u64::MAX reconciliations in one window must neither panic nor wrap.
    lim.try_acquire(1000).unwrap().reconcile(u64::MAX);
    lim.try_acquire(1000).unwrap().reconcile(u64::MAX);
    let p = lim.try_acquire(u64::MAX).unwrap();
    p.reconcile_usage(&image_router::Usage::new(u64::MAX, u64::MAX));
    clock.advance(Duration::from_secs(61));
    assert!(lim.try_acquire(1).is_ok());

    let limited = RateLimiter::new(
        Limits::new(Some(5), Some(10_000)).unwrap(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    limited.try_acquire(100).unwrap().reconcile(u64::MAX);
    // The window is full now (saturated, not wrapped to a small number).
    assert!(limited.try_acquire(100).is_err());
    clock.advance(Duration::from_secs(61));
    assert!(limited.try_acquire(100).is_ok());
}
