//! The whole paid limit, end to end: saturating loads at the smallest limits (6 requests per
//! minute on the simulator, 5 images per minute with mixed `n` on the fake provider and on the
//! simulator at OpenAI's published tier-1) use every
//! slot with no upstream 429, and a hidden second client on the same simulated account makes
//! the router back off to what is left, then take the whole limit back once it stops.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{shared, Fake};
use image_router::clock::{ManualClock, SharedClock};
use image_router::providers::OpenAi;
use image_router::sim::{SimAccount, Simulator};
use image_router::{Error, GenerateRequest, ProviderOptions, Quality, Router, Size, SkipReason};

const KEY: &str = "sk-test";

fn openai(base: String) -> OpenAi {
    OpenAi::builder()
        .name("openai")
        .base_url(base)
        .api_key(KEY)
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

fn req(n: u8) -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
        .n(n)
}

/// An error that only says "no room now" (the router never waits: `max_wait(0)`); anything
/// else (a failed upstream call above all) fails the test.
fn assert_no_room(e: &Error) {
    assert!(e.attempts().is_empty(), "an upstream call failed: {e}");
    assert!(
        e.skipped()
            .iter()
            .all(|s| matches!(s.reason, SkipReason::NoHeadroom { .. })),
        "{e}"
    );
}

async fn sim_at(rpm: u32) -> (Simulator, ManualClock, SharedClock) {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account(
            "openai",
            SimAccount::new().rpm(rpm).tpm(250_000).api_key(KEY),
        )
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    (sim, clock, shared_clock)
}

/// A router on the simulator's account at 6 requests per minute, with no margin configured
/// (the default uses the whole limit) and no waiting for room.
fn router_at_6(sim: &Simulator, clock: SharedClock) -> Router {
    Router::builder()
        .provider_with(
            openai(sim.openai_base_url("openai")),
            ProviderOptions::new().rpm(6).tpm(250_000),
        )
        .clock(clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap()
}

#[tokio::test]
async fn six_rpm_uses_all_six_slots_every_minute_with_zero_429s() {
    let (sim, clock, shared_clock) = sim_at(6).await;
    // No margin configured: the default uses the whole limit.
    let router = router_at_6(&sim, shared_clock);
    let mut per_minute = [0u32; 10];
    for second in 0..600usize {
        loop {
            match router.generate(req(1)).await {
                Ok(_) => per_minute[second / 60] += 1,
                Err(e) => {
                    assert_no_room(&e);
                    break;
                }
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(per_minute, [6; 10], "6 a minute, not 5");
    let stats = sim.stats("openai");
    assert_eq!(stats.rate_limited, 0, "no upstream 429");
    assert_eq!(stats.succeeded, 60);
    sim.shutdown().await;
}

#[tokio::test]
async fn five_ipm_with_mixed_n_uses_every_image_and_never_more() {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let (fake, handle) = shared(Fake::new("openai").ipm_guard(5, shared_clock.clone()));
    let router = Router::builder()
        .provider_with(fake, ProviderOptions::new().ipm(5))
        .clock(shared_clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let images_by_n = mixed_n_load(&router, &clock, 600).await;
    assert_eq!(handle.ipm_violations(), Vec::<String>::new());
    let total: u64 = images_by_n.iter().sum();
    assert_eq!(total, handle.images_requested());
    // 5 a minute for 10 minutes, every one of them used.
    assert_eq!(total, 50, "{images_by_n:?}");
    assert!(images_by_n.iter().all(|&x| x > 0), "{images_by_n:?}");
}

/// A saturating load for `seconds` simulated seconds: a queue of requests of 1, 2, 4, 1, 2,
/// 4, … images; the head goes as soon as it fits, and while it waits a smaller request takes
/// the room that is free. Returns the images served, by `n` (1, 2, 4).
async fn mixed_n_load(router: &Router, clock: &ManualClock, seconds: usize) -> [u64; 3] {
    let ns = [1u8, 2, 4];
    let mut images_by_n = [0u64; 3];
    let mut head = 0usize;
    for _second in 0..seconds {
        loop {
            let i = head % ns.len();
            if send(router, ns[i]).await {
                images_by_n[i] += u64::from(ns[i]);
                head += 1;
                continue;
            }
            let mut filled = false;
            for j in (0..i).rev() {
                if send(router, ns[j]).await {
                    images_by_n[j] += u64::from(ns[j]);
                    filled = true;
                    break;
                }
            }
            if !filled {
                break;
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    images_by_n
}

/// The same load against the simulator's account at OpenAI's published tier-1 (gpt-image-1: 5
/// images and 100,000 tokens a minute), with the router told only `tier = "tier-1"`: the
/// router's windows are the simulator's, every paid image is used and none is refused.
#[tokio::test]
async fn tier_1_on_the_simulator_uses_all_five_images_a_minute_with_zero_429s() {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account("openai", SimAccount::new().tier("tier-1").api_key(KEY))
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider_with(
            openai(sim.openai_base_url("openai")),
            ProviderOptions::new().tier("tier-1"),
        )
        .clock(shared_clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let images_by_n = mixed_n_load(&router, &clock, 600).await;
    let stats = sim.stats("openai");
    assert_eq!(stats.rate_limited, 0, "no upstream 429");
    let total: u64 = images_by_n.iter().sum();
    assert_eq!(
        stats.images, total,
        "the simulator made what the router counted"
    );
    // 5 a minute for 10 minutes, every one of them used (not 4: the whole limit).
    assert_eq!(total, 50, "{images_by_n:?}");
    assert!(images_by_n.iter().all(|&x| x > 0), "{images_by_n:?}");
    sim.shutdown().await;
}

/// One request of `n` images: whether it was served (a refusal must be "no room now").
async fn send(router: &Router, n: u8) -> bool {
    match router.generate(req(n)).await {
        Ok(r) => {
            assert_eq!(r.attempts.len(), 1);
            true
        }
        Err(e) => {
            assert_no_room(&e);
            false
        }
    }
}

#[tokio::test]
async fn a_request_of_more_images_than_the_ipm_is_refused_without_a_call() {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let (fake, handle) = shared(Fake::new("openai").ipm_guard(5, shared_clock.clone()));
    let router = Router::builder()
        .provider_with(fake, ProviderOptions::new().ipm(5))
        .clock(shared_clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let e = router.generate(req(6)).await.unwrap_err();
    assert!(e.attempts().is_empty());
    assert_eq!(handle.calls(), 0);
    assert!(e.to_string().contains("6 images can never fit"), "{e}");
}

/// Sends one request straight to the simulator with the router's key (another program on
/// the same account); returns the HTTP status.
async fn hidden_request(url: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(KEY)
        .json(&serde_json::json!({
            "model": "gpt-image-1",
            "prompt": "someone else's picture",
            "quality": "low"
        }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_hidden_client_on_the_same_key_leaves_the_router_what_is_left() {
    let (sim, clock, shared_clock) = sim_at(6).await;
    let router = router_at_6(&sim, shared_clock);
    let url = format!("{}/images/generations", sim.openai_base_url("openai"));
    let mut router_per_minute = [0u32; 10];
    let mut router_429s = 0u32;
    let mut hidden_ok = 0u32;
    for second in 0..600usize {
        // Minutes 0 to 4: the other client sends 2 requests at the start of each minute.
        if second % 60 == 0 && second < 300 {
            for _ in 0..2 {
                if hidden_request(&url).await == 200 {
                    hidden_ok += 1;
                }
            }
        }
        loop {
            match router.generate(req(1)).await {
                Ok(_) => router_per_minute[second / 60] += 1,
                Err(e) => {
                    router_429s += e
                        .attempts()
                        .iter()
                        .filter(|a| a.error.as_ref().is_some_and(|x| x.status == Some(429)))
                        .count() as u32;
                    assert!(
                        e.skipped()
                            .iter()
                            .all(|s| matches!(s.reason, SkipReason::NoHeadroom { .. })),
                        "{e}"
                    );
                    break;
                }
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(hidden_ok, 10, "the other client got its share");
    // The router learnt from the answers' remaining-requests that 2 of the 6 were taken, and
    // took the other 4 without a single 429.
    assert_eq!(router_429s, 0);
    assert_eq!(&router_per_minute[..5], &[4; 5]);
    // Once the other client stopped, the whole limit again.
    assert_eq!(&router_per_minute[5..], &[6; 5]);
    let stats = sim.stats("openai");
    assert_eq!(stats.rate_limited, 0, "nobody on the account was refused");
    assert_eq!(stats.succeeded, 10 + 20 + 30);
    sim.shutdown().await;
}

/// The worst case for a router that measures others by its answers: the other client takes
/// the last room *between* two of the router's requests, so the router's next request meets a
/// full window it could not see. Each such 429 needs a request of the other client that no
/// answer showed yet, so there are at most as many as the other client's requests that came
/// in between; after each the router backs off (and blocks for `retry-after`), and once the
/// other client stops the back-off recovers and the whole limit is used again.
#[tokio::test]
async fn a_hidden_client_that_sneaks_in_between_costs_at_most_one_429_each() {
    let (sim, clock, shared_clock) = sim_at(6).await;
    let router = router_at_6(&sim, shared_clock);
    let url = format!("{}/images/generations", sim.openai_base_url("openai"));
    let mut router_per_minute = [0u32; 10];
    let mut router_429s = 0u32;
    let mut sneaked = 0u32;
    for second in 0..600usize {
        let minute = second / 60;
        // Minutes 0 to 2: once the router has 4 of this minute, the other client sends 2.
        let mut hidden_due = second % 60 == 0 && minute < 3;
        loop {
            if hidden_due && router_per_minute[minute] == 4 {
                hidden_due = false;
                for _ in 0..2 {
                    if hidden_request(&url).await == 200 {
                        sneaked += 1;
                    }
                }
            }
            match router.generate(req(1)).await {
                Ok(_) => router_per_minute[minute] += 1,
                Err(e) => {
                    router_429s += e
                        .attempts()
                        .iter()
                        .filter(|a| a.error.as_ref().is_some_and(|x| x.status == Some(429)))
                        .count() as u32;
                    assert!(
                        e.attempts()
                            .iter()
                            .all(|a| a.error.as_ref().is_some_and(|x| x.status == Some(429))),
                        "only 429s may fail: {e}"
                    );
                    break;
                }
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    assert!(sneaked > 0, "the other client got in");
    assert!(
        router_429s >= 1,
        "the scenario does make the router meet a full window"
    );
    assert!(
        router_429s <= sneaked,
        "{router_429s} router 429s for {sneaked} requests of the other client"
    );
    // Once the other client stopped and the back-off recovered: the whole limit.
    assert_eq!(&router_per_minute[8..], &[6, 6], "{router_per_minute:?}");
    let stats = sim.stats("openai");
    assert_eq!(
        stats.succeeded,
        u64::from(router_per_minute.iter().sum::<u32>() + sneaked)
    );
    sim.shutdown().await;
}
