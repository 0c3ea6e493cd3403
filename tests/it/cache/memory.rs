//! The memory tier: its byte bound holds with thousands of distinct large entries, and its
//! time to live follows the router's injected clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use image_router::cache::CacheConfig;
use image_router::clock::{ManualClock, SharedClock};
use image_router::{
    CallContext, Capabilities, EditRequest, ErrorKind, GenerateRequest, Image, OutputFormat,
    Provider, ProviderError, ProviderResponse, Router,
};

use super::req;
use crate::support::{shared, Fake};

/// Answers every generation with one image of `size` bytes (a PNG signature, then filler).
#[derive(Debug)]
struct Big {
    size: usize,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl Provider for Big {
    fn name(&self) -> &str {
        "big"
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        Some(Capabilities::permissive(model))
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
        data.resize(self.size, 7);
        let model = req.model.clone().unwrap_or_default();
        Ok(ProviderResponse::new(
            vec![Image::new(Bytes::from(data), OutputFormat::Png)],
            model,
        ))
    }
    async fn edit(
        &self,
        _req: &EditRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        Err(ProviderError::new(
            "big",
            ErrorKind::InvalidRequest,
            "no edits",
        ))
    }
}

#[tokio::test]
async fn memory_stays_under_the_bound_with_thousands_of_large_entries() {
    const IMAGE: usize = 64 * 1024;
    const BOUND: u64 = 4 << 20; // room for about 60 of them
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::builder()
        .provider(Big {
            size: IMAGE,
            calls: calls.clone(),
        })
        .cache(CacheConfig::new().max_bytes(BOUND))
        .build()
        .unwrap();
    let mut peak = 0;
    for i in 0..2000 {
        let res = router
            .generate(GenerateRequest::new(format!("tile {i}")).model("gpt-image-1"))
            .await
            .unwrap();
        assert!(!res.cached);
        if i % 250 == 249 {
            let stats = router.cache_stats().await.unwrap();
            assert!(stats.bytes <= BOUND, "{} bytes held at {i}", stats.bytes);
            peak = peak.max(stats.entries);
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2000);
    let stats = router.cache_stats().await.unwrap();
    assert!(stats.bytes <= BOUND && stats.bytes > BOUND / 2, "{stats:?}");
    assert!(stats.entries <= BOUND / IMAGE as u64);
    assert!(peak > 10, "the cache held entries at all: {peak}");
    assert_eq!(stats.max_bytes, BOUND);
}

#[tokio::test(start_paused = true)]
async fn an_entry_expires_after_its_time_to_live_on_the_routers_clock() {
    // moka's own clock cannot be injected; the tier checks each entry's age on the router's
    // clock, so a manual clock drives expiry here.
    let clock = ManualClock::new();
    let (p, fake) = shared(Fake::new("openai"));
    let router = Router::builder()
        .provider(p)
        .clock(Arc::new(clock.clone()) as SharedClock)
        .cache(CacheConfig::new().ttl(Duration::from_secs(600)))
        .build()
        .unwrap();
    assert!(!router.generate(req()).await.unwrap().cached);
    clock.advance(Duration::from_secs(599));
    assert!(router.generate(req()).await.unwrap().cached);
    assert_eq!(fake.calls(), 1);
    clock.advance(Duration::from_secs(1));
    assert!(!router.generate(req()).await.unwrap().cached, "expired");
    assert_eq!(fake.calls(), 2);
    assert!(router.generate(req()).await.unwrap().cached, "stored again");
}

#[tokio::test(start_paused = true)]
async fn an_entry_larger_than_the_bound_is_served_but_not_kept() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::builder()
        .provider(Big {
            size: 200_000,
            calls: calls.clone(),
        })
        .cache(CacheConfig::new().max_bytes(100_000))
        .build()
        .unwrap();
    for _ in 0..2 {
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.images[0].bytes.len(), 200_000);
        assert!(!res.cached);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = router.cache_stats().await.unwrap();
    assert_eq!((stats.entries, stats.bytes), (0, 0));
}

#[tokio::test]
async fn bad_settings_are_errors_naming_the_field() {
    let build = |c: CacheConfig| {
        Router::builder()
            .provider(Fake::new("openai"))
            .cache(c)
            .build()
            .unwrap_err()
    };
    assert_eq!(
        build(CacheConfig::new().max_bytes(0)).field,
        "cache.max_bytes"
    );
    assert_eq!(
        build(CacheConfig::new().ttl(Duration::ZERO)).field,
        "cache.ttl"
    );
    assert_eq!(
        build(CacheConfig::new().ttl(Duration::from_secs(400 * 86_400))).field,
        "cache.ttl"
    );
}
