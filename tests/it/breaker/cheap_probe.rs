//! The optional cheap half-open probe (`RouterBuilder::cheap_probe`): after a breaker's
//! cool-down the provider is checked with a call that generates no image, and a failed check
//! costs no image request.

use crate::support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use image_router::breaker::BreakerConfig;
use image_router::{
    CallContext, Capabilities, EditRequest, ErrorKind, GenerateRequest, Image, OutputFormat,
    ProbeReport, Provider, ProviderError, ProviderResponse, Router, SkipReason,
};
use support::{shared, Fake, PIXEL_PNG};

/// A provider whose image endpoint and cheap check can each be up or down.
#[derive(Debug, Default)]
struct Flaky {
    images_down: AtomicBool,
    probe_down: AtomicBool,
    image_calls: AtomicUsize,
    probe_calls: AtomicUsize,
}

#[async_trait]
impl Provider for Flaky {
    fn name(&self) -> &str {
        "primary"
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        Some(Capabilities::permissive(model))
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.image_calls.fetch_add(1, Ordering::SeqCst);
        if self.images_down.load(Ordering::SeqCst) {
            return Err(
                ProviderError::new("primary", ErrorKind::Server, "overloaded").with_status(503),
            );
        }
        Ok(ProviderResponse::new(
            vec![Image::new(Bytes::from_static(PIXEL_PNG), OutputFormat::Png)],
            req.model.clone().unwrap_or_default(),
        ))
    }
    async fn edit(
        &self,
        _req: &EditRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        Err(ProviderError::new(
            "primary",
            ErrorKind::InvalidRequest,
            "no edits",
        ))
    }
    async fn probe(&self, model: &str, _ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        self.probe_calls.fetch_add(1, Ordering::SeqCst);
        if self.probe_down.load(Ordering::SeqCst) {
            return Err(
                ProviderError::new("primary", ErrorKind::Server, "bad gateway").with_status(502),
            );
        }
        Ok(ProbeReport::ok(model, 200))
    }
}

#[derive(Debug, Clone)]
struct Handle(Arc<Flaky>);

#[async_trait]
impl Provider for Handle {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self, model: &str) -> Option<Capabilities> {
        self.0.capabilities(model)
    }
    async fn generate(
        &self,
        req: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.0.generate(req, ctx).await
    }
    async fn edit(
        &self,
        req: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError> {
        self.0.edit(req, ctx).await
    }
    async fn probe(&self, model: &str, ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        self.0.probe(model, ctx).await
    }
}

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse").model("gpt-image-1")
}

fn breaker() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 2,
        cool_down: Duration::from_secs(10),
        // Room for the cool-down to double after a failed probe.
        max_cool_down: Duration::from_secs(300),
        // Close straight after a good probe, so the test can see the request follow it.
        ramp: Duration::ZERO,
        ..BreakerConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_cheap_probe_spends_no_image_request_and_a_good_one_brings_traffic_back() {
    let flaky = Arc::new(Flaky::default());
    flaky.images_down.store(true, Ordering::SeqCst);
    flaky.probe_down.store(true, Ordering::SeqCst);
    let (fallback, fallback_h) = shared(Fake::new("fallback"));
    let router = Router::builder()
        .provider(Handle(flaky.clone()))
        .provider(fallback)
        .breaker(breaker())
        .cheap_probe(true)
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();

    // 503 and its retry: two consecutive faults open the breaker; the fallback serves.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(flaky.image_calls.load(Ordering::SeqCst), 2);

    // Inside the cool-down the primary gets nothing.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(flaky.image_calls.load(Ordering::SeqCst), 2);
    assert_eq!(flaky.probe_calls.load(Ordering::SeqCst), 0);

    // After it, one cheap probe, which fails: still no image request, and the skip says why.
    tokio::time::advance(Duration::from_secs(11)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(flaky.probe_calls.load(Ordering::SeqCst), 1);
    assert_eq!(flaky.image_calls.load(Ordering::SeqCst), 2);
    let skip = res
        .skipped
        .iter()
        .find(|s| s.provider == "primary")
        .expect("the primary is listed as skipped");
    match &skip.reason {
        SkipReason::CircuitOpen { message } => {
            assert!(message.contains("probe"), "{message}");
            assert!(message.contains("bad gateway"), "{message}");
        }
        other => panic!("unexpected skip reason {other:?}"),
    }
    assert_eq!(router.status().providers[0].breaker.state.as_str(), "open");

    // The failed probe doubled the cool-down: 11 s later it is still closed to traffic.
    tokio::time::advance(Duration::from_secs(11)).await;
    router.generate(req()).await.unwrap();
    assert_eq!(flaky.probe_calls.load(Ordering::SeqCst), 1);

    // The provider recovers; after the longer cool-down the probe passes and the same
    // request is served by the primary.
    flaky.images_down.store(false, Ordering::SeqCst);
    flaky.probe_down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(10)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
    assert_eq!(flaky.probe_calls.load(Ordering::SeqCst), 2);
    assert_eq!(flaky.image_calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        router.status().providers[0].breaker.state.as_str(),
        "closed"
    );
    assert_eq!(fallback_h.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn without_a_cheap_check_the_real_request_is_the_probe() {
    // The scripted provider has no cheap check (the trait's default probe).
    let (primary, primary_h) = shared(
        Fake::new("primary")
            .fail(ErrorKind::Server, 503)
            .fail(ErrorKind::Server, 503),
    );
    let (fallback, _) = shared(Fake::new("fallback"));
    let router = Router::builder()
        .provider(primary)
        .provider(fallback)
        .breaker(breaker())
        .cheap_probe(true)
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    assert_eq!(router.generate(req()).await.unwrap().provider, "fallback");
    assert_eq!(primary_h.calls(), 2);
    tokio::time::advance(Duration::from_secs(11)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
    assert_eq!(primary_h.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn by_default_the_real_request_is_the_probe_even_when_a_cheap_check_exists() {
    let flaky = Arc::new(Flaky::default());
    flaky.images_down.store(true, Ordering::SeqCst);
    let (fallback, _) = shared(Fake::new("fallback"));
    let router = Router::builder()
        .provider(Handle(flaky.clone()))
        .provider(fallback)
        .breaker(breaker())
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    router.generate(req()).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    flaky.images_down.store(false, Ordering::SeqCst);
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
    assert_eq!(flaky.probe_calls.load(Ordering::SeqCst), 0);
    assert_eq!(flaky.image_calls.load(Ordering::SeqCst), 3);
}
