//! Four `Router`s, each with its own Redis store factory (four instances, as four processes
//! would be), saturate one simulated account on the injected clock; the server is killed with
//! SIGKILL in the middle of the run and restarted a simulated minute later. Nothing panics,
//! every request ends as images or as "no room now" (none is lost, none fails upstream), the
//! simulator answers zero 429s (while degraded each instance keeps to its share of the limit,
//! its own admissions of the minute counted), the instances re-join the restarted server, and
//! the shared window holds the account's traffic again, so the run goes on at the full limit.

use std::sync::Arc;
use std::time::Duration;

use image_router::clock::{ManualClock, SharedClock};
use image_router::sim::{SimAccount, Simulator};
use image_router::store::redis::{RedisConfig, RedisStoreFactory};
use image_router::{ProviderOptions, Router};

use super::outage::{redis_server, Server};
use crate::shared::{no_room, openai, req, KEY};
use crate::support::redis::{unique_prefix, url};

/// The account's requests per minute.
const RPM: u32 = 12;
/// Simulated seconds: killed at `KILL`, restarted at `RESTART`, the run ends at `END`.
const KILL: u64 = 90;
const RESTART: u64 = 130;
const END: u64 = 270;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_run_loses_no_request_and_causes_no_429() {
    let test = "a_server_killed_mid_run_loses_no_request_and_causes_no_429";
    if url(test).is_none() {
        return;
    }
    let Some(bin) = redis_server(test) else {
        return;
    };
    let _serial = super::SERVER.lock().await;
    let mut server = Server::start(&bin);
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account(
            "acct",
            SimAccount::new().rpm(RPM).tpm(10_000_000).api_key(KEY),
        )
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    let prefix = unique_prefix("saturating");
    // One factory per router: each is an instance with its own heartbeat. Beats tick in real
    // time while members live three intervals on the router's clock, which runs much faster
    // here: so the test waits, with the clock held, until every instance counts four right
    // before the kill (the count an instance keeps while the server is gone).
    let config = RedisConfig::new(Server::url())
        .prefix(&prefix)
        .timeout(Duration::from_millis(300))
        .heartbeat(Duration::from_secs(1));
    let routers: Vec<Router> = (0..4)
        .map(|_| {
            let factory = RedisStoreFactory::new(config.clone())
                .unwrap()
                .router_clock();
            Router::builder()
                .provider_with(
                    openai("openai", sim.openai_base_url("acct")),
                    ProviderOptions::new()
                        .rpm(RPM)
                        .tpm(10_000_000)
                        .account("acct"),
                )
                .clock(shared_clock.clone())
                .max_wait(Duration::ZERO)
                .store(Arc::new(factory))
                .build()
                .unwrap()
        })
        .collect();

    let (mut images, mut failed, mut refused) = (0u64, 0u64, 0u64);
    let mut per_minute = vec![0u64; END.div_ceil(60) as usize];
    let mut degraded_seen = false;
    for second in 0..END {
        if second == 5 || second == KILL {
            // Every instance has announced itself: the share while degraded is a quarter.
            tokio::time::timeout(Duration::from_secs(20), async {
                while routers
                    .iter()
                    .any(|r| r.status().store.instances != Some(4))
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("four instances announced");
        }
        if second == KILL {
            server.kill();
        }
        if second == RESTART {
            server.restart();
        }
        let mut progress = true;
        let mut round = 0usize;
        while progress {
            progress = false;
            for k in 0..4 {
                let i = (second as usize + k + round) % 4;
                match routers[i].generate(req()).await {
                    Ok(r) => {
                        images += r.images.len() as u64;
                        per_minute[(second / 60) as usize] += r.images.len() as u64;
                        progress = true;
                    }
                    Err(e) if no_room(&e) => refused += 1,
                    Err(e) => {
                        eprintln!("[store_degraded::saturating] second {second}: {e}");
                        failed += 1;
                    }
                }
                if routers[i].status().store.degraded.is_some() {
                    degraded_seen = true;
                }
            }
            round += 1;
            assert!(round < 1_000, "an instance never stops getting room");
        }
        if second >= RESTART {
            // Reconnecting to the restarted server takes real time (the connection's own
            // back-off); the simulated seconds after the restart get some.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clock.advance(Duration::from_secs(1));
    }
    let s = sim.stats("acct");
    let limit_per_minute = u64::from(RPM);
    println!(
        "[store_degraded::saturating] 4 instances, {RPM} RPM, {END} simulated s, Redis killed at \
         {KILL} s and restarted at {RESTART} s: {images} images, per minute {per_minute:?}, \
         upstream 429s {}, failed {failed}, refused for no room {refused}",
        s.rate_limited
    );
    assert!(degraded_seen, "the instances noticed the outage");
    assert_eq!(s.rate_limited, 0, "no upstream 429, even while degraded");
    assert_eq!(failed, 0, "every request ended as images or 'no room now'");
    assert_eq!(
        images, s.images,
        "every image the account made reached a caller"
    );
    // Never above the limit in any minute of the run.
    assert!(
        per_minute.iter().all(|&n| n <= limit_per_minute),
        "{per_minute:?}"
    );
    // Re-joined: nobody is degraded at the end, and the last full minute (after the restart
    // and the re-join) used the whole limit again.
    for r in &routers {
        assert_eq!(r.status().store.degraded, None, "re-joined");
    }
    assert_eq!(per_minute[3], limit_per_minute, "{per_minute:?}");
    sim.shutdown().await;
}
