//! Health and scoring end to end on the simulator: breaker through an outage, latency-aware
//! scoring,
//! hot reload under load, status snapshot.

use std::sync::Arc;
use std::time::Duration;

use image_router::clock::{ManualClock, SharedClock};
use image_router::providers::OpenAi;
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{health::HealthConfig, GenerateRequest, Quality, Router};

fn openai(name: &str, base: String) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .base_url(base)
        .api_key("sk-test")
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
}

#[tokio::test]
async fn flap_primary_503_for_30s_then_recovers() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account("primary", SimAccount::new())
        .account("fallback", SimAccount::new())
        .clock(shared.clone())
        .start()
        .await
        .unwrap();
    sim.fail("primary", Fault::Status(503), Times::Always);
    let router = Router::builder()
        .provider(openai("primary", sim.openai_base_url("primary")))
        .provider(openai("fallback", sim.openai_base_url("fallback")))
        .retry_backoff(Duration::from_millis(1))
        .clock(shared)
        .build()
        .unwrap();
    let mut served_by = Vec::new();
    for t in 0..60u64 {
        if t == 30 {
            sim.clear_faults("primary");
        }
        let res = router
            .generate(req())
            .await
            .expect("every request is served");
        served_by.push((t, res.provider.clone()));
        clock.advance(Duration::from_secs(1));
    }
    // During the outage everything was served by the fallback.
    assert!(served_by[..30].iter().all(|(_, p)| p == "fallback"));
    // While open the primary saw at most one probe per cool-down: 5 failures to open (the
    // first requests retry once each), then probes after a 2 s cool-down and then every 4 s
    // (the default cap) until t = 30: seven probes.
    let during_outage = sim
        .received("primary")
        .iter()
        .filter(|r| r.at < Duration::from_secs(30))
        .count();
    assert!(
        during_outage <= 5 + 7,
        "primary got {during_outage} requests during the outage"
    );
    let status = router.status();
    assert_eq!(
        status.strategy,
        image_router::Strategy::Scored,
        "the default strategy"
    );
    assert_eq!(status.providers[0].name, "primary");
    // Traffic returns to the primary within one cool-down (at most 4 s, the default cap)
    // and the next request of recovery.
    let back = served_by
        .iter()
        .find(|(t, p)| *t >= 30 && p == "primary")
        .map(|(t, _)| *t)
        .expect("traffic returned to the primary");
    assert!(back <= 35, "primary back at t={back}");
    // And keeps returning (the ramp admits a growing share).
    let last_10 = served_by[50..]
        .iter()
        .filter(|(_, p)| p == "primary")
        .count();
    assert!(last_10 >= 5, "primary served {last_10} of the last 10");
}

/// 40 ms against 1 s (the issue says 50 vs 500 ms; the wider gap keeps the test meaningful
/// on a loaded machine, where scheduler stalls add hundreds of milliseconds to a "fast" call
/// and the peak-EWMA adopts them at once).
#[tokio::test]
async fn scored_routing_prefers_the_fast_provider_and_moves_when_speeds_swap() {
    let sim = Simulator::builder()
        .account("a", SimAccount::new().latency(Duration::from_millis(40)))
        .account("b", SimAccount::new().latency(Duration::from_millis(1000)))
        .start()
        .await
        .unwrap();
    // Simulated latencies are milliseconds, not the seconds of real image models: adapt on
    // the same scale (decay toward faster observations within a second, and let an idle
    // estimate fade within a few seconds so the other provider is re-measured). Unmeasured
    // providers are assumed fast by default, so each is tried early.
    let health = HealthConfig {
        latency_decay: Duration::from_secs(1),
        idle_decay: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let router = Router::builder()
        .health(health)
        // b first in priority: scoring must overrule the order.
        .provider(openai("b", sim.openai_base_url("b")))
        .provider(openai("a", sim.openai_base_url("a")))
        // The default strategy: scored.
        .build()
        .unwrap();
    let mut a = 0;
    for _ in 0..20 {
        if router.generate(req()).await.unwrap().provider == "a" {
            a += 1;
        }
    }
    assert!(a >= 15, "fast provider a served {a} of 20");
    sim.set_latency("a", Duration::from_millis(1000));
    sim.set_latency("b", Duration::from_millis(40));
    let mut b = 0;
    for _ in 0..25 {
        if router.generate(req()).await.unwrap().provider == "b" {
            b += 1;
        }
    }
    assert!(
        b >= 15,
        "after the swap b served {b} of 25: {}",
        serde_json::to_string(
            &router
                .status()
                .providers
                .iter()
                .map(|p| (&p.name, &p.health, &p.score))
                .collect::<Vec<_>>()
        )
        .unwrap()
    );
    let status = router.status();
    let sa = &status.providers[1];
    assert_eq!(sa.name, "a");
    assert!(sa.score.total > 0.0);
    let json = serde_json::to_value(&status).unwrap();
    assert!(
        json["providers"][0]["score"]["latency"].is_number(),
        "{json}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_loses_nothing_and_keeps_state() {
    let sim = Simulator::builder()
        .account("one", SimAccount::new().latency(Duration::from_millis(200)))
        .account("two", SimAccount::new().latency(Duration::from_millis(50)))
        .account("three", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider(openai("one", sim.openai_base_url("one")))
        .provider(openai("two", sim.openai_base_url("two")))
        .build()
        .unwrap();
    // Give "two" some state to keep: a cool-down after an access denial.
    sim.fail("one", Fault::OrgNotVerified, Times::Once);
    let first = router.generate(req()).await.unwrap();
    assert_eq!(first.provider, "two");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let r = router.clone();
        tasks.push(tokio::spawn(async move { r.generate(req()).await }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Replace the set: "one" stays (with its cool-down), "two" goes, "three" comes.
    router
        .reload(
            Router::builder()
                .provider(openai("one", sim.openai_base_url("one")))
                .provider(openai("three", sim.openai_base_url("three"))),
        )
        .unwrap();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 200, "no request lost across the reload");
    assert_eq!(router.provider_names(), vec!["one", "three"]);
    // "one" kept its cool-down: the next request goes to "three" without calling it.
    let before = sim.stats("one").requests;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "three");
    assert_eq!(sim.stats("one").requests, before);
    assert!(router.status().providers[0].cooldown.is_some());
    // A bad reload changes nothing.
    assert!(router.reload(Router::builder()).is_err());
    assert_eq!(router.provider_names(), vec!["one", "three"]);
}
