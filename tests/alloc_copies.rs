//! Copies on the router's path, counted (issue 16): the bytes allocated by one request through
//! a `Router` against those of the direct call (POST, typed JSON parse, base64 decode of
//! `data[0]`) to the same loopback server, with the realistic image (a 1024×1024 PNG of about
//! 1.5 MB, about 2 MB of base64 in the body).
//!
//! A counting global allocator adds up the bytes of every allocation (a `realloc` counts its
//! new size: growing a buffer copies it) made on the test's thread while counting is on. The
//! client side (reqwest, the router, the decoder) runs on a current-thread runtime on that
//! thread; the server runs on a runtime of its own, whose threads are not counted. Every copy
//! of the body (about 2 MB) or the image (about 1.5 MB) is an allocation of its size, so "the
//! router allocates less than a quarter of the image more than the direct call" means: no copy
//! of the body or the image beyond the direct call's own (the body read into one buffer, the
//! base64 text, the decoded image). Each side's figure is the least of five runs: how many times
//! a receive buffer grows depends on how the body's chunks arrive, which varies with the
//! machine's load, while a copy on the router's path is in every run.
//!
//! Its own test binary because a `#[global_allocator]` is per binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

#[path = "../benches/support/loopback.rs"]
mod loopback;
use loopback::{Answer, Payload};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count(size: usize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to `System` unchanged; the counting touches only atomics and
// a const-initialised thread-local without destructor (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes and allocations of `f` on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let (b0, a0) = (
        BYTES.load(Ordering::Relaxed),
        ALLOCATIONS.load(Ordering::Relaxed),
    );
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (
        out,
        BYTES.load(Ordering::Relaxed) - b0,
        ALLOCATIONS.load(Ordering::Relaxed) - a0,
    )
}

#[test]
fn the_router_copies_the_body_and_the_image_no_more_than_a_direct_call() {
    let png = Payload::Realistic.png();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let answer = Answer::ok(Payload::Realistic);
    let body_len = answer.body.len() as u64;
    let base = server.block_on(loopback::serve(answer)).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{base}/images/generations");
    let request = loopback::request();
    let router = loopback::router(&base).unwrap();
    // Warm up both: pooled connections, lazy statics, first-use buffers.
    for _ in 0..2 {
        let direct = rt
            .block_on(loopback::direct(&client, &url, &request))
            .unwrap();
        assert_eq!(direct, png);
        let routed = rt.block_on(router.generate(request.clone())).unwrap();
        assert_eq!(&routed.images[0].bytes[..], &png[..]);
    }

    // The least of several runs: how hyper hands over the body's chunks varies with the
    // machine's load (a buffer may grow once more), while a copy on the router's path would
    // show in every run.
    const RUNS: u64 = 5;
    let (mut direct_bytes, mut direct_allocs, mut router_bytes, mut router_allocs) =
        (u64::MAX, u64::MAX, u64::MAX, u64::MAX);
    for _ in 0..RUNS {
        let (image, bytes, allocs) = counted(|| {
            rt.block_on(loopback::direct(&client, &url, &request))
                .unwrap()
        });
        assert_eq!(image.len(), png.len());
        drop(image);
        direct_bytes = direct_bytes.min(bytes);
        direct_allocs = direct_allocs.min(allocs);
        let (resp, bytes, allocs) =
            counted(|| rt.block_on(router.generate(request.clone())).unwrap());
        assert_eq!(&resp.images[0].bytes[..], &png[..]);
        drop(resp);
        router_bytes = router_bytes.min(bytes);
        router_allocs = router_allocs.min(allocs);
    }
    let image = png.len() as u64;
    eprintln!(
        "body {body_len} B, image {image} B; per request: direct {direct_bytes} B in \
         {direct_allocs} allocations, router {router_bytes} B in {router_allocs} allocations"
    );
    // The direct call holds the body, the base64 text and the image at least once each.
    assert!(
        direct_bytes >= body_len + image,
        "the count misses the direct call's copies: {direct_bytes}"
    );
    assert!(
        router_bytes < direct_bytes + image / 4,
        "the router allocates {} bytes more than the direct call (image {image} B, body \
         {body_len} B): an extra copy",
        router_bytes.saturating_sub(direct_bytes)
    );
}
