//! The optional cheap half-open probe (`RouterBuilder::cheap_probe`): after a breaker's
//! cool-down the provider is checked with a call that generates no image, and a failed check
//! costs no image request.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use image_router::breaker::BreakerConfig;
use image_router::{ErrorKind, GenerateRequest, ProviderError, Router, SkipReason};
use support::{shared, Fake, Probe, Shared, Step};

/// The primary's image endpoint when it is down.
fn images_down() -> Step {
    Step::Error(ProviderError::new("primary", ErrorKind::Server, "overloaded").with_status(503))
}

/// The primary's cheap check when it is down.
fn probe_down() -> Probe {
    Probe::Fail(ProviderError::new("primary", ErrorKind::Server, "bad gateway").with_status(502))
}

/// A primary whose image endpoint and cheap check are both up, and the test's handle on it.
fn primary() -> (Shared, Arc<Fake>) {
    shared(Fake::new("primary").probe_answers(Probe::Ok))
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
    let (primary, flaky) = primary();
    flaky.set_default(images_down());
    flaky.set_probe(probe_down());
    let (fallback, fallback_h) = shared(Fake::new("fallback"));
    let router = Router::builder()
        .provider(primary)
        .provider(fallback)
        .breaker(breaker())
        .cheap_probe(true)
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();

    // 503 and its retry: two consecutive faults open the breaker; the fallback serves.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(flaky.calls(), 2);

    // Inside the cool-down the primary gets nothing.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(flaky.calls(), 2);
    assert_eq!(flaky.probe_calls(), 0);

    // After it, one cheap probe, which fails: still no image request, and the skip says why.
    tokio::time::advance(Duration::from_secs(11)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "fallback");
    assert_eq!(flaky.probe_calls(), 1);
    assert_eq!(flaky.calls(), 2);
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
    assert_eq!(flaky.probe_calls(), 1);

    // The provider recovers; after the longer cool-down the probe passes and the same
    // request is served by the primary.
    flaky.set_default(Step::Ok);
    flaky.set_probe(Probe::Ok);
    tokio::time::advance(Duration::from_secs(10)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
    assert_eq!(flaky.probe_calls(), 2);
    assert_eq!(flaky.calls(), 3);
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
    let (primary, flaky) = primary();
    flaky.set_default(images_down());
    let (fallback, _) = shared(Fake::new("fallback"));
    let router = Router::builder()
        .provider(primary)
        .provider(fallback)
        .breaker(breaker())
        .retry_backoff(Duration::from_millis(1))
        .build()
        .unwrap();
    router.generate(req()).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    flaky.set_default(Step::Ok);
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "primary");
    assert_eq!(flaky.probe_calls(), 0);
    assert_eq!(flaky.calls(), 3);
}
