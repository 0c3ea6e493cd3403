//! Images per minute and per-model windows through the router and the config file: `ipm` and
//! `shared` from the file and the builder, hot reload, one window per model, and an answer's
//! headers landing in its own model's window.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{shared, Fake};
use image_router::clock::{ManualClock, SharedClock};
use image_router::config::RouterConfig;
use image_router::quota::headers::RateLimitHeaders;
use image_router::{GenerateRequest, ProviderOptions, Quality, Router, SkipReason};

fn req(model: &str, n: u8) -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model(model)
        .quality(Quality::Low)
        .n(n)
}

fn router_with(fake: crate::support::Shared, o: ProviderOptions, clock: &ManualClock) -> Router {
    let shared_clock: SharedClock = Arc::new(clock.clone());
    Router::builder()
        .provider_with(fake, o)
        .clock(shared_clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap()
}

const CONFIG: &str = r#"
[[provider]]
name = "team"
kind = "openai"
api_key_env = "IMAGE_ROUTER_TEST_KEY"
rpm = 10
ipm = 5
shared = true
"#;

#[test]
fn ipm_and_shared_come_from_the_file() {
    let cfg = CONFIG.parse::<RouterConfig>().unwrap();
    let p = &cfg.providers[0];
    assert_eq!((p.ipm, p.shared), (Some(5), Some(true)));
    let o = p.options();
    assert_eq!((o.ipm, o.shared), (Some(5), true));
    // A negative or zero ipm names the field and its line.
    let bad = CONFIG.replace("ipm = 5", "ipm = -2");
    let e = bad.parse::<RouterConfig>().unwrap_err();
    assert_eq!(e.field, "provider[0].ipm", "{e:?}");
    assert_eq!(e.line, Some(7), "{e:?}");
    assert!(e.message.contains("images per minute"), "{e}");
    let bad = CONFIG.replace("ipm = 5", "ipm = 0");
    let e = bad.parse::<RouterConfig>().unwrap_err();
    assert_eq!(e.field, "provider[0].ipm", "{e:?}");
    assert_eq!(e.line, Some(7), "{e:?}");
}

#[tokio::test]
async fn a_shared_key_without_headers_keeps_its_margin_and_reload_applies_ipm() {
    let clock = ManualClock::new();
    let (a, _) = shared(Fake::new("a"));
    let router = router_with(a, ProviderOptions::new().ipm(10).shared(true), &clock);
    let h = &router.headroom()[0].1;
    // floor(10 × 0.9): the fake sends no remaining-* figures.
    assert_eq!((h.effective_ipm, h.margin), (Some(9), 0.9));
    router.generate(req("gpt-image-1", 4)).await.unwrap();
    assert_eq!(router.headroom()[0].1.images, Some(5));
    // Reload: a new ipm, not shared any more: the whole new limit, the log kept.
    let (a2, _) = shared(Fake::new("a"));
    router
        .reload(Router::builder().provider_with(a2, ProviderOptions::new().ipm(8)))
        .unwrap();
    let h = &router.headroom()[0].1;
    assert_eq!(
        (h.effective_ipm, h.images, h.margin),
        (Some(8), Some(4), 1.0)
    );
    // An invalid ipm in a reload is refused, naming it, and changes nothing.
    let (a3, _) = shared(Fake::new("a"));
    let e = router
        .reload(Router::builder().provider_with(a3, ProviderOptions::new().ipm(0)))
        .unwrap_err();
    assert_eq!(e.field, "providers[0].ipm");
    assert_eq!(router.headroom()[0].1.effective_ipm, Some(8));
}

#[tokio::test]
async fn each_model_has_its_own_window_through_the_router() {
    let clock = ManualClock::new();
    let (a, handle) = shared(Fake::new("a"));
    let router = router_with(a, ProviderOptions::new().ipm(2), &clock);
    router.generate(req("gpt-image-1", 2)).await.unwrap();
    // gpt-image-1's window is full; the request is refused without a call.
    let e = router.generate(req("gpt-image-1", 1)).await.unwrap_err();
    assert!(e.attempts().is_empty());
    assert!(
        matches!(e.skipped()[0].reason, SkipReason::NoHeadroom { .. }),
        "{e}"
    );
    // gpt-image-1-mini has a window of its own.
    router.generate(req("gpt-image-1-mini", 2)).await.unwrap();
    assert_eq!(handle.calls(), 2);
    assert_eq!(router.headroom_for("gpt-image-1-mini")[0].1.images, Some(0));
    let status = router.status();
    let windows: Vec<(&str, Option<u64>)> = status.providers[0]
        .windows
        .iter()
        .map(|w| (w.model.as_str(), w.headroom.images))
        .collect();
    assert_eq!(
        windows,
        [("gpt-image-1", Some(0)), ("gpt-image-1-mini", Some(0))]
    );
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        json["providers"][0]["windows"][1]["model"],
        "gpt-image-1-mini"
    );
    assert_eq!(
        json["providers"][0]["windows"][1]["headroom"]["effective_ipm"],
        2
    );
    // A minute later both are free again.
    clock.advance(Duration::from_secs(60));
    router.generate(req("gpt-image-1", 2)).await.unwrap();
}

#[tokio::test]
async fn an_answers_headers_land_in_its_models_window() {
    let clock = ManualClock::new();
    let (a, handle) = shared(Fake::new("a"));
    // The provider counts 7 requests of 10 after our one: 6 are someone else's.
    handle.set_headers(RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(3),
        ..Default::default()
    });
    let router = router_with(a, ProviderOptions::new().rpm(10), &clock);
    router.generate(req("gpt-image-1-mini", 1)).await.unwrap();
    assert_eq!(
        router.headroom_for("gpt-image-1-mini")[0].1.requests,
        Some(3)
    );
    assert_eq!(router.headroom_for("gpt-image-1")[0].1.requests, Some(10));
}
