//! Four `Router`s in one process, one simulated account, ten simulated minutes on an injected
//! `ManualClock` (the Redis factory in router-clock mode, so the windows are on the same
//! clock as the simulator's): with the shared store, zero upstream 429s and at least 97 % of
//! the account's limit turned into images; with four in-process stores, the account is
//! overshot and the simulator answers 429s. Deterministic: nothing waits on the real clock.

use std::sync::Arc;
use std::time::Duration;

use super::{no_room, openai, pct, redis_factory, req, KEY};
use crate::support::redis as test_redis;
use image_router::clock::{ManualClock, SharedClock};
use image_router::sim::{SimAccount, Simulator};
use image_router::store::StoreFactory;
use image_router::{ProviderOptions, Router};

/// The account's requests per minute.
const RPM: u32 = 12;
/// Simulated minutes.
const MINUTES: u64 = 10;

/// What a run did.
#[derive(Debug, Default)]
struct Run {
    images: u64,
    /// Requests that failed upstream (a 429 or anything else).
    failed_upstream: u64,
    per_router: [u64; 4],
    per_minute: Vec<u64>,
}

async fn run(
    sim: &Simulator,
    account: &str,
    clock: &ManualClock,
    store: Option<Arc<dyn StoreFactory>>,
) -> Run {
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let routers: Vec<Router> = (0..4)
        .map(|_| {
            let mut b = Router::builder()
                .provider_with(
                    openai("openai", sim.openai_base_url(account)),
                    ProviderOptions::new()
                        .rpm(RPM)
                        .tpm(10_000_000)
                        .account(account),
                )
                .clock(shared_clock.clone())
                .max_wait(Duration::ZERO);
            if let Some(f) = &store {
                b = b.store(f.clone());
            }
            b.build().unwrap()
        })
        .collect();
    let mut out = Run {
        per_minute: vec![0; MINUTES as usize],
        ..Run::default()
    };
    for second in 0..MINUTES * 60 {
        // Every instance asks for as much as it can get, in turns starting at a different
        // instance each second, until none gets anything more.
        let mut progress = true;
        let mut round = 0usize;
        while progress {
            progress = false;
            for k in 0..4 {
                let i = (second as usize + k + round) % 4;
                match routers[i].generate(req()).await {
                    Ok(r) => {
                        out.images += r.images.len() as u64;
                        out.per_router[i] += r.images.len() as u64;
                        out.per_minute[(second / 60) as usize] += r.images.len() as u64;
                        progress = true;
                    }
                    Err(e) if no_room(&e) => {
                        if second % 60 == 1 && round == 0 && k == 0 {
                            eprintln!("[shared::simulated] second {second}: {e}");
                        }
                    }
                    Err(_) => out.failed_upstream += 1,
                }
            }
            round += 1;
            assert!(round < 1_000, "an instance never stops getting room");
        }
        clock.advance(Duration::from_secs(1));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_routers_on_the_injected_clock_share_one_account_exactly() {
    let test = "four_routers_on_the_injected_clock_share_one_account_exactly";
    let Some(url) = test_redis::url(test) else {
        return;
    };
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let account = || SimAccount::new().rpm(RPM).tpm(10_000_000).api_key(KEY);
    let sim = Simulator::builder()
        .account("shared", account())
        .account("local", account())
        .clock(shared_clock)
        .start()
        .await
        .unwrap();
    let prefix = test_redis::unique_prefix("simulated");
    let shared = run(
        &sim,
        "shared",
        &clock,
        Some(redis_factory(&url, &prefix, true)),
    )
    .await;
    let limit = u64::from(RPM) * MINUTES;
    let s = sim.stats("shared");
    println!(
        "[shared::simulated] Redis store, 4 routers, {RPM} RPM, {MINUTES} simulated minutes: \
         {} images of {limit} allowed ({} %), upstream 429s {}, per router {:?}, per minute {:?}",
        shared.images,
        pct(shared.images, limit),
        s.rate_limited,
        shared.per_router,
        shared.per_minute
    );
    assert_eq!(s.rate_limited, 0, "no upstream 429 with the shared store");
    assert_eq!(shared.failed_upstream, 0);
    assert_eq!(shared.images, s.images);
    assert!(
        shared.images * 100 >= limit * 97,
        "at least 97 % of the limit: {} of {limit}",
        shared.images
    );
    assert!(shared.images <= limit, "never more than the limit");
    // Every instance took part (the turns rotate), so the room really was shared.
    assert!(shared.per_router.iter().all(|&n| n > 0), "{shared:?}");

    // The same run with four in-process stores: each instance believes it has the whole
    // account, and the simulator turns the excess away.
    let local = run(&sim, "local", &clock, None).await;
    let l = sim.stats("local");
    println!(
        "[shared::simulated] in-process stores, same run: {} images, {} requests sent for \
         {limit} allowed, upstream 429s {}",
        local.images, l.requests, l.rate_limited
    );
    assert!(
        l.rate_limited > 0,
        "without the shared store the account is overshot"
    );
    assert!(l.requests > limit, "{l:?}");
    sim.shutdown().await;
}
