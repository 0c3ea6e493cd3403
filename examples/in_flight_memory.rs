//! Memory per request in flight (issue 16): N requests (default 10,000) sent at once through a
//! `Router` with one OpenAI provider (default settings), or by direct reqwest calls, to a
//! loopback server that holds every request until all N have arrived; the heap then in use,
//! minus the heap before, divided by N, is the cost of one request in flight. The server then
//! answers every request (a tiny image) and the run checks that all N were served.
//!
//! ```sh
//! cargo run --release --example in_flight_memory -- router 10000
//! cargo run --release --example in_flight_memory -- direct 10000
//! ```
//!
//! Why the server is another process: 10,000 connections are 10,000 sockets on each side, and
//! both sides in one process would pass the usual limit of 20,000 open files; apart, the
//! server's memory is not counted either. The example runs itself as the server (`serve N`).
//!
//! Heap in use is counted by a global allocator (bytes allocated minus bytes freed, all
//! threads); the resident set size (`VmRSS` of `/proc/self/status`, Linux) is printed beside it
//! and includes what the allocator keeps and the threads' stacks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../benches/support/loopback.rs"]
mod loopback;
use loopback::{BoxError, Payload};

struct Counting;
static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is passed on to `System` unchanged; the counting touches one atomic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "router".into());
    let n: usize = match args.next() {
        Some(s) => s.parse()?,
        None => 10_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match mode.as_str() {
        "serve" => rt.block_on(serve(n)),
        "router" | "direct" => client(&rt, &mode, n),
        other => Err(format!("unknown mode {other:?}: router | direct | serve").into()),
    }
}

/// Resident set size in bytes (Linux), `None` elsewhere.
fn rss() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn client(rt: &tokio::runtime::Runtime, mode: &str, n: usize) -> Result<(), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["serve", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let addr = lines.next().ok_or("server ended")??;
    let base = format!("http://{addr}/v1");
    let url = format!("{base}/images/generations");
    let request = loopback::request();
    let router = loopback::router(&base)?;
    let direct = reqwest::Client::new();

    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss());
    let served = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (router, direct, url, request) =
                (router.clone(), direct.clone(), url.clone(), request.clone());
            let served = Arc::clone(&served);
            let routed = mode == "router";
            rt.spawn(async move {
                let ok = if routed {
                    router.generate(request).await.map(|r| r.images.len()).ok()
                } else {
                    loopback::direct(&direct, &url, &request)
                        .await
                        .map(|i| i.len())
                        .ok()
                };
                if ok.is_some_and(|n| n > 0) {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The server says when it holds all n requests.
    let held = lines.next().ok_or("server ended")??;
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss());
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    writeln!(stdin, "release")?;
    rt.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let served = served.load(Ordering::Relaxed);
    drop(stdin);
    // The server runs until it is ended.
    let _ = child.kill();
    let _ = child.wait();
    let per = (heap1 - heap0) / n as i64;
    println!("{mode}: {held}; {served} of {n} served");
    println!(
        "{mode}: heap in use {:.1} MB more with {n} in flight: {per} bytes ({:.1} KB) per request",
        (heap1 - heap0) as f64 / 1e6,
        per as f64 / 1024.0
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        println!(
            "{mode}: resident set {:.1} MB more: {:.1} KB per request",
            (b - a) as f64 / 1e6,
            (b - a) as f64 / n as f64 / 1024.0
        );
    }
    if served != n {
        return Err(format!("only {served} of {n} requests served").into());
    }
    Ok(())
}

/// The holding server: prints its address, reads each request whole, prints `held N` when it
/// holds `n`, waits for a line on stdin, then answers every request with a tiny image.
async fn serve(n: usize) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let body = loopback::ok_body(&Payload::Tiny.png());
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer: Arc<Vec<u8>> = Arc::new([head.as_bytes(), &body[..]].concat());
    let (release_tx, release) = tokio::sync::watch::channel(false);
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = release_tx.send(true);
    });
    let held = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut stream, _) = listener.accept().await?;
        let (answer, held, mut release) = (answer.clone(), held.clone(), release.clone());
        tokio::spawn(async move {
            loop {
                if read_request(&mut stream).await.is_none() {
                    return;
                }
                if held.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    println!("held {n} requests at once");
                    let _ = std::io::stdout().flush();
                }
                let _ = release.wait_for(|r| *r).await;
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Reads one HTTP/1.1 request (head and `content-length` body); `None` at the end.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let k = stream.read(&mut chunk).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let k = stream.read(&mut chunk).await.ok()?;
        if k == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..k]);
    }
    Some(())
}
