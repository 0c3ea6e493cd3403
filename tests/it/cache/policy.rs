//! The per-request policy (Use, Refresh, Bypass), the cache being off by default, and a
//! cached answer leaving the router's spend, limits and health untouched.

use std::sync::Arc;

use image_router::cache::{CacheConfig, CachePolicy};
use image_router::clock::{ManualClock, SharedClock};
use image_router::{ProviderOptions, Router};

use super::{req, router};
use crate::support::{shared, Fake};

#[tokio::test(start_paused = true)]
async fn the_cache_is_off_unless_configured() {
    let (p, fake) = shared(Fake::new("openai"));
    let router = Router::builder().provider(p).build().unwrap();
    for _ in 0..3 {
        assert!(!router.generate(req()).await.unwrap().cached);
    }
    assert_eq!(fake.calls(), 3);
    assert!(router.cache_stats().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn bypass_neither_reads_nor_stores() {
    let (p, fake) = shared(Fake::new("openai"));
    let router = router(p);
    for _ in 0..2 {
        let res = router
            .generate(req().cache(CachePolicy::Bypass))
            .await
            .unwrap();
        assert!(!res.cached);
    }
    assert_eq!(fake.calls(), 2);
    assert_eq!(
        router.cache_stats().await.unwrap().entries,
        0,
        "nothing stored"
    );
    // With an entry present, Bypass still calls.
    router.generate(req()).await.unwrap();
    let res = router
        .generate(req().cache(CachePolicy::Bypass))
        .await
        .unwrap();
    assert!(!res.cached);
    assert_eq!(fake.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn refresh_calls_again_and_replaces_the_entry() {
    let (p, fake) = shared(Fake::new("openai"));
    let router = router(p);
    let first = router.generate(req()).await.unwrap();
    let refreshed = router
        .generate(req().cache(CachePolicy::Refresh))
        .await
        .unwrap();
    assert!(!refreshed.cached);
    assert_eq!(fake.calls(), 2);
    assert_eq!(refreshed.attempts.len(), 1);
    assert!(!first.cached);
    // The refreshed answer is what the cache holds now, and one entry only.
    let again = router.generate(req()).await.unwrap();
    assert!(again.cached);
    assert_eq!(again.images, refreshed.images);
    assert_eq!(fake.calls(), 2);
    assert_eq!(router.cache_stats().await.unwrap().entries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cached_answer_leaves_spend_limits_and_health_untouched() {
    let clock = ManualClock::new();
    let (p, fake) = shared(Fake::new("openai"));
    let router = Router::builder()
        .provider_with(p, ProviderOptions::new().rpm(5))
        .clock(Arc::new(clock.clone()) as SharedClock)
        .cache(CacheConfig::new())
        .build()
        .unwrap();
    let paid = router.generate(req()).await.unwrap();
    assert!(paid.cost_usd.unwrap() > 0.0);
    let spend = serde_json::to_string(&router.spend()).unwrap();
    let status = serde_json::to_string(&router.status()).unwrap();
    let headroom = router.headroom_for("gpt-image-1");
    for _ in 0..20 {
        // Far past the 5 requests a minute the provider allows: none of them is sent.
        let res = router.generate(req()).await.unwrap();
        assert!(res.cached);
        assert_eq!(res.cost_usd, Some(0.0));
        assert!(res.attempts.is_empty() && res.usage.is_none());
    }
    assert_eq!(fake.calls(), 1);
    assert_eq!(serde_json::to_string(&router.spend()).unwrap(), spend);
    assert_eq!(serde_json::to_string(&router.status()).unwrap(), status);
    assert_eq!(router.headroom_for("gpt-image-1"), headroom);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_request_is_refused_before_the_cache() {
    let (p, fake) = shared(Fake::new("openai"));
    let router = router(p);
    let err = router.generate(req().n(0)).await.unwrap_err();
    assert!(err.is_invalid());
    assert_eq!(fake.calls(), 0);
    assert_eq!(router.cache_stats().await.unwrap().misses, 0);
}

#[tokio::test(start_paused = true)]
async fn identical_edits_are_cached_and_another_mask_is_not() {
    use image_router::{EditRequest, InputImage};
    let (p, fake) = shared(Fake::new("openai"));
    let router = router(p);
    let img = || InputImage::new(crate::support::PIXEL_PNG.to_vec(), "a.png");
    let edit = || EditRequest::new("add a hat", vec![img()]).model("gpt-image-1");
    assert!(!router.edit(edit()).await.unwrap().cached);
    assert!(router.edit(edit()).await.unwrap().cached);
    assert_eq!(fake.calls(), 1);
    // The same prompt as a generation is another request.
    assert!(
        !router
            .generate(image_router::GenerateRequest::new("add a hat").model("gpt-image-1"))
            .await
            .unwrap()
            .cached
    );
    // So is the edit with a mask.
    assert!(!router.edit(edit().mask(img())).await.unwrap().cached);
    assert_eq!(fake.calls(), 3);
}
