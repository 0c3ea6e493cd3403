//! `[router.breaker]`, `[router.score]` and `[router.health]` in a config file reach the router: a
//! table that parses but is ignored would be a silent misconfiguration.

use crate::support::cli::*;
use image_router::config::{build_provider, RouterConfig};
use image_router::sim::{Fault, Times};
use image_router::{breaker::BreakerState, GenerateRequest};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_score_and_health_tables_drive_the_router() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    // One failure opens the breaker (the default needs 5), for an hour.
    let text = three_config(
        &sim,
        "[router.breaker]\nconsecutive_failures = 1\ncool_down = \"1h\"\nmax_cool_down = \"2h\"\n\
         [router.health]\ndefault_latency = \"3s\"\nidle_decay = \"off\"\n",
    );
    let router = text
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    sim.fail("primary", Fault::Status(500), Times::Always);
    let res = router
        .generate(GenerateRequest::new("a fox").quality(image_router::Quality::Low))
        .await
        .unwrap();
    assert_eq!(res.provider, "azure-east");
    let st = router.status();
    let p = &st.providers[0];
    assert_eq!(p.breaker.state, BreakerState::Open, "{:?}", p.breaker);
    assert_eq!(p.breaker.cool_down, Duration::from_secs(3600));
    // The next request does not call the primary at all.
    let before = sim.stats("primary").requests;
    router
        .generate(GenerateRequest::new("a cat").quality(image_router::Quality::Low))
        .await
        .unwrap();
    assert_eq!(sim.stats("primary").requests, before);
    // The proxy has never been measured: its latency is the configured default (idle decay is
    // off, so the figure does not depend on how long the machine took to get here).
    let proxy = &st.providers[2];
    assert_eq!(proxy.health.latency_ms, None);
    assert!(
        (proxy.health.cost_ms - 3000.0).abs() < 1.0,
        "default_latency reaches the health estimate: {:?}",
        proxy.health
    );

    // [router.score]: with availability weight 0 and priority 0 the breakdown says so.
    let text = three_config(
        &sim,
        "[router.score]\navailability = 0.0\npriority = 0.0\nlatency_slack = \"1s\"\n",
    );
    let router = text
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let ranked = router
        .rank(&GenerateRequest::new("a fox").into(), None)
        .unwrap();
    for (_, s) in &ranked.order {
        assert_eq!(s.availability, 1.0);
        assert_eq!(
            s.priority, 1.0,
            "priority exponent 0 makes every rank equal"
        );
    }
}
