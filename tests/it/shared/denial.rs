//! A tier denial seen by one instance is every instance's: the one that got the "retry after
//! 0.0 seconds" 429 records the denial in the shared store, and the three others send that
//! provider zero requests until the cool-down ends (counted at the simulator), then use it
//! again. On the injected clock (the factory's router-clock mode), so the cool-down passes
//! in simulated time.

use std::sync::Arc;
use std::time::Duration;

use super::{openai, redis_factory, req, KEY};
use crate::support::redis as test_redis;
use image_router::clock::{ManualClock, SharedClock};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{ProviderOptions, Router, SkipReason};

const COOLDOWN: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_denial_seen_by_one_instance_keeps_all_away_for_the_cooldown() {
    let test = "a_tier_denial_seen_by_one_instance_keeps_all_away_for_the_cooldown";
    let Some(url) = test_redis::url(test) else {
        return;
    };
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account("acct", SimAccount::new().api_key(KEY))
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    let factory = redis_factory(&url, &test_redis::unique_prefix("denial"), true);
    let routers: Vec<Router> = (0..4)
        .map(|_| {
            Router::builder()
                .provider_with(
                    openai("openai", sim.openai_base_url("acct")),
                    ProviderOptions::new().account("acct"),
                )
                .clock(shared_clock.clone())
                .cooldown(COOLDOWN)
                .max_wait(Duration::ZERO)
                .store(factory.clone())
                .build()
                .unwrap()
        })
        .collect();
    // Every instance works.
    for r in &routers {
        r.generate(req()).await.unwrap();
    }
    assert_eq!(sim.stats("acct").requests, 4);

    // Instance 0 meets the tier denial and pays the one failed call.
    sim.fail("acct", Fault::TierDenied, Times::Always);
    let e = routers[0].generate(req()).await.unwrap_err();
    assert_eq!(e.attempts().len(), 1, "{e}");
    let after_denial = sim.stats("acct").requests;
    assert_eq!(after_denial, 5);

    // The others, through the cool-down: refused without a call, the denial named.
    let mut refused = 0;
    for step in 0..29u32 {
        clock.advance(Duration::from_secs(10));
        for (i, r) in routers.iter().enumerate().skip(1) {
            let e = r.generate(req()).await.unwrap_err();
            assert!(
                e.attempts().is_empty(),
                "instance {i} at +{}0 s called: {e}",
                step + 1
            );
            assert!(
                e.skipped()
                    .iter()
                    .any(|s| !matches!(s.reason, SkipReason::NoHeadroom { .. })),
                "{e}"
            );
            refused += 1;
        }
    }
    let during = sim.stats("acct").requests - after_denial;
    println!(
        "[shared::denial] tier denial on instance 0: the 3 other instances made {refused} \
         requests over the {} s cool-down and sent the provider {during}",
        COOLDOWN.as_secs()
    );
    assert_eq!(during, 0, "zero requests reach the denied provider");
    // Still denied for instance 0 too (the same record).
    assert!(routers[0]
        .generate(req())
        .await
        .unwrap_err()
        .attempts()
        .is_empty());

    // After the cool-down, with access granted now, the provider is used again.
    sim.clear_faults("acct");
    clock.advance(COOLDOWN);
    let ok = routers[2].generate(req()).await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    assert!(sim.stats("acct").requests > after_denial);
    sim.shutdown().await;
}
