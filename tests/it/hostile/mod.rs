//! Hostile providers: a raw-TCP HTTP server on loopback that answers with what a compromised,
//! buggy or malicious endpoint (or a proxy in the middle) could send, and a second loopback
//! listener as "the other host". Each test asserts the bound the library must keep: no request
//! (and no key) reaches the other host, bytes read stay bounded, time stays bounded, the key
//! appears in no error text, explanation, status JSON or tracing output, hints are capped,
//! usage is clamped, and non-images are not images.

mod downloads;
mod echoed_keys;
mod hints;
mod limiter_numbers;
mod memory;
mod not_images;
mod redirects;
mod send_path;
mod stalls;
mod usage;

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

use crate::support::wire::{b64, jpeg_bytes, png_bytes};

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
    /// `head` (possibly empty, or a head and part of a body), then nothing more, with the
    /// connection held open until the client hangs up (or [`STALL_CAP`] passes).
    Stall { head: Vec<u8> },
}

/// Safety cap on how long a stalled answer holds its connection: far above every call
/// timeout used with it, so a missing bound still fails the test and the test still ends.
const STALL_CAP: Duration = Duration::from_secs(30);

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
            Reply::Stall { head } => {
                if sock.write_all(&head).await.is_err() {
                    return;
                }
                self.sent.fetch_add(head.len() as u64, Ordering::Relaxed);
                // Wait for the client to hang up (a read of 0 bytes or an error).
                let _ = tokio::time::timeout(STALL_CAP, async {
                    while matches!(sock.read(&mut tmp).await, Ok(n) if n > 0) {}
                })
                .await;
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

/// Far above any limit the library derives for one low 1024×1024 image, far below what an
/// unbounded read would reach before the safety cap.
const READ_BOUND: u64 = 96 * 1024 * 1024;

fn redirect_to(other: &Hostile, status: u16) -> impl Fn(&Seen, u16) -> Reply + Send + Sync {
    let target = other.url("/v1/images/generations?sig=secret-query");
    move |_, _| Reply::Raw(raw(status, &[("location", target.as_str())], b"moved"))
}
