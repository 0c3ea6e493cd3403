//! Routers built with `RouterBuilder::store(RedisStoreFactory)` on the simulator: several
//! routers (instances) on one account share its limit end to end with no upstream 429, and
//! a denial met by one makes the others send that provider nothing.

use std::sync::Arc;
use std::time::Duration;

use image_router::providers::OpenAi;
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{GenerateRequest, ProviderOptions, Quality, Router, Size, SkipReason};

use super::*;
use crate::support::redis::Server;

const KEY: &str = "sk-fake-redis-store-key";

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse at dusk")
        .model(MODEL)
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

fn router(b: &Bench, sim: &Simulator, factory: &RedisStoreFactory, name: &str) -> Router {
    let openai = OpenAi::builder()
        .name(name)
        .base_url(sim.openai_base_url("org"))
        .api_key(KEY)
        .client(reqwest::Client::new())
        .build()
        .unwrap();
    Router::builder()
        .provider_with(
            openai,
            ProviderOptions::new().rpm(6).tpm(250_000).account("org"),
        )
        .clock(b.shared.clone())
        .max_wait(Duration::ZERO)
        .store(Arc::new(factory.clone()))
        .build()
        .unwrap()
}

async fn sim(b: &Bench) -> Simulator {
    Simulator::builder()
        .account("org", SimAccount::new().rpm(6).tpm(250_000).api_key(KEY))
        .clock(b.shared.clone())
        .start()
        .await
        .unwrap()
}

async fn three_routers_on_one_account_use_its_whole_limit_with_no_429(server: Server) {
    let Some(b) = Bench::on(server, "store_router_e2e") else {
        return;
    };
    let sim = sim(&b).await;
    let routers: Vec<Router> = (0..3)
        .map(|i| router(&b, &sim, &b.factory, &format!("openai-{i}")))
        .collect();
    let mut per_minute = [0u32; 5];
    for second in 0..300usize {
        for r in &routers {
            while r.generate(req()).await.is_ok() {
                per_minute[second / 60] += 1;
            }
        }
        b.clock.advance(Duration::from_secs(1));
    }
    let stats = sim.stats("org");
    println!("3 routers, one 6-RPM account, 5 simulated minutes: {per_minute:?} images a minute, {} upstream 429s", stats.rate_limited);
    assert_eq!(per_minute, [6; 5], "the account's 6 a minute, not 3 × 6");
    assert_eq!(stats.rate_limited, 0, "no upstream 429");
    assert_eq!(stats.succeeded, 30);
    sim.shutdown().await;
}

#[tokio::test]
async fn three_routers_without_the_store_overshoot() {
    // The control: the same load with in-process stores gets 429s, so the test above
    // proves the store.
    let Some(b) = Bench::new("store_router_control") else {
        return;
    };
    let sim = sim(&b).await;
    let routers: Vec<Router> = (0..3)
        .map(|i| {
            let openai = OpenAi::builder()
                .name(format!("openai-{i}"))
                .base_url(sim.openai_base_url("org"))
                .api_key(KEY)
                .client(reqwest::Client::new())
                .build()
                .unwrap();
            Router::builder()
                .provider_with(openai, ProviderOptions::new().rpm(6).tpm(250_000))
                .clock(b.shared.clone())
                .max_wait(Duration::ZERO)
                .build()
                .unwrap()
        })
        .collect();
    for _ in 0..60 {
        for r in &routers {
            while r.generate(req()).await.is_ok() {}
        }
        b.clock.advance(Duration::from_secs(1));
    }
    assert!(
        sim.stats("org").rate_limited > 0,
        "without the store the instances overshoot"
    );
    sim.shutdown().await;
}

async fn a_tier_denial_met_by_one_router_makes_the_others_send_nothing(server: Server) {
    let Some(b) = Bench::on(server, "store_router_deny") else {
        return;
    };
    let sim = sim(&b).await;
    let first = router(&b, &sim, &b.factory, "openai-a");
    let second = router(&b, &sim, &b.factory, "openai-b");
    sim.fail("org", Fault::TierDenied, Times::Always);
    assert!(first.generate(req()).await.is_err());
    let sent = sim.stats("org").requests;
    assert_eq!(sent, 1);
    for _ in 0..5 {
        let e = second.generate(req()).await.unwrap_err();
        assert!(e.attempts().is_empty(), "no call: {e}");
        assert!(
            e.skipped()
                .iter()
                .all(|s| matches!(s.reason, SkipReason::CoolingDown { .. })),
            "{e}"
        );
        b.clock.advance(Duration::from_secs(10));
    }
    assert_eq!(
        sim.stats("org").requests,
        sent,
        "zero calls from the second router"
    );
    sim.shutdown().await;
}

// Each test above that takes a `Server` runs on the single server and on the cluster.
crate::on_each_server!(
    three_routers_on_one_account_use_its_whole_limit_with_no_429,
    a_tier_denial_met_by_one_router_makes_the_others_send_nothing,
);
