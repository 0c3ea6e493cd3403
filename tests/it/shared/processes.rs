//! Four router instances in four OS processes saturate one simulated account for two minutes,
//! with answers that take three seconds as real image calls do: the rate-limit headers of an
//! answer cannot coordinate the requests sent before it arrives, so only the shared store can
//! keep the instances under the account's limit.
//!
//! How the processes are made: the parent test starts the simulator (on 127.0.0.1) and
//! re-runs this test binary four times per store (`std::env::current_exe()` with `--exact
//! shared::processes::child_instance --ignored --nocapture`), passing the simulator's URL, the
//! Redis URL, the key prefix, the store and the duration in `IMAGE_ROUTER_SHARED_CHILD_*`
//! variables. The child test is `#[ignore]`d and returns at once when its variable is unset,
//! so a normal run never executes it by itself. Each child prints one `CHILD-RESULT {json}`
//! line with its counts; the simulator, which enforces the account's sliding window, counts
//! the upstream 429s.
//!
//! Both runs happen at once, on two accounts of one simulator: four instances with the Redis
//! store on `shared`, four with in-process stores on `local`. The first must see zero 429s and
//! at least 97 % of the limit turned into images; the second must be turned away by the
//! simulator (429s), or the test would not prove anything about the store.
//!
//! Real time is the point of this test (windows on the Redis server's clock, as in
//! production); it takes `IMAGE_ROUTER_SHARED_SECONDS` (default 120) plus the answers' latency.
//! No assertion is about time: the figures are counts.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{no_room, openai, pct, redis_factory, req, KEY};
use crate::support::redis as test_redis;
use image_router::sim::{SimAccount, Simulator};
use image_router::{ProviderOptions, Router};

/// The account's requests per minute.
const RPM: u32 = 30;
/// Requests each child keeps in flight.
const WORKERS: usize = 4;
/// The answers' latency.
const LATENCY: Duration = Duration::from_secs(3);

const CHILD: &str = "IMAGE_ROUTER_SHARED_CHILD";
const CHILD_SIM: &str = "IMAGE_ROUTER_SHARED_CHILD_SIM";
const CHILD_REDIS: &str = "IMAGE_ROUTER_SHARED_CHILD_REDIS";
const CHILD_PREFIX: &str = "IMAGE_ROUTER_SHARED_CHILD_PREFIX";
const CHILD_SECONDS: &str = "IMAGE_ROUTER_SHARED_CHILD_SECONDS";

/// One child's counts.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ChildResult {
    images: u64,
    no_room: u64,
    failed_upstream: u64,
}

fn seconds() -> u64 {
    std::env::var("IMAGE_ROUTER_SHARED_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120)
}

/// The child: one router instance (Redis store when a Redis URL is given, else in-process)
/// saturating the account for the given seconds with `WORKERS` requests in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of four_processes_share_one_account_with_zero_429s"]
async fn child_instance() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let sim = std::env::var(CHILD_SIM).unwrap();
    let secs: u64 = std::env::var(CHILD_SECONDS).unwrap().parse().unwrap();
    let mut b = Router::builder()
        .provider_with(
            openai("openai", sim),
            ProviderOptions::new()
                .rpm(RPM)
                .tpm(10_000_000)
                .account("one-account"),
        )
        // Wait for room (at most 2 s at a time): a worker holds its place instead of
        // spinning on refusals.
        .max_wait(Duration::from_secs(2))
        .attempt_timeout(Duration::from_secs(30))
        .max_attempts(1);
    if let Ok(url) = std::env::var(CHILD_REDIS) {
        let prefix = std::env::var(CHILD_PREFIX).unwrap();
        // Production mode: windows on the Redis server's clock.
        b = b.store(redis_factory(&url, &prefix, false));
    }
    let router = b.build().unwrap();
    let end = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let mut r = ChildResult::default();
                while Instant::now() < end {
                    match router.generate(req()).await {
                        Ok(resp) => r.images += resp.images.len() as u64,
                        Err(e) if no_room(&e) => {
                            r.no_room += 1;
                            // Pacing, not waiting for an event: past `max_wait` the router
                            // answers "no room" at once, so the worker comes back shortly
                            // before the room does and lets the router wait the rest.
                            tokio::time::sleep(pause(&e)).await;
                        }
                        Err(_) => r.failed_upstream += 1,
                    }
                }
                r
            })
        })
        .collect();
    let mut total = ChildResult::default();
    for w in workers {
        let r = w.await.unwrap();
        total.images += r.images;
        total.no_room += r.no_room;
        total.failed_upstream += r.failed_upstream;
    }
    println!("CHILD-RESULT {}", serde_json::to_string(&total).unwrap());
}

/// How long a worker pauses after "no room": until 1.5 s before the room is back (the
/// router's `max_wait` covers the rest), between 50 ms and 5 s.
fn pause(e: &image_router::Error) -> Duration {
    let retry_in = e
        .skipped()
        .iter()
        .filter_map(|s| match &s.reason {
            image_router::SkipReason::NoHeadroom { retry_in, .. } => *retry_in,
            _ => None,
        })
        .min()
        .unwrap_or(Duration::from_millis(100));
    retry_in
        .saturating_sub(Duration::from_millis(1500))
        .clamp(Duration::from_millis(50), Duration::from_secs(5))
}

/// Starts one child and returns it (stdout piped).
fn spawn_child(sim_url: &str, redis: Option<(&str, &str)>, secs: u64) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "shared::processes::child_instance",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(CHILD, "1")
    .env(CHILD_SIM, sim_url)
    .env(CHILD_SECONDS, secs.to_string())
    .env_remove(CHILD_REDIS)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some((url, prefix)) = redis {
        cmd.env(CHILD_REDIS, url).env(CHILD_PREFIX, prefix);
    }
    cmd.spawn().unwrap()
}

/// Waits for a child and reads its result line.
fn result_of(child: std::process::Child) -> ChildResult {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a child failed: {text}");
    let line = text
        .lines()
        .find_map(|l| l.split_once("CHILD-RESULT ").map(|(_, r)| r.trim()))
        .unwrap_or_else(|| panic!("no result line from a child (did the test run?):\n{text}"));
    serde_json::from_str(line).unwrap()
}

fn sum(rs: &[ChildResult]) -> ChildResult {
    let mut t = ChildResult::default();
    for r in rs {
        t.images += r.images;
        t.no_room += r.no_room;
        t.failed_upstream += r.failed_upstream;
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_one_account_with_zero_429s() {
    let test = "four_processes_share_one_account_with_zero_429s";
    let Some(url) = test_redis::url(test) else {
        return;
    };
    let account = || {
        SimAccount::new()
            .rpm(RPM)
            .tpm(10_000_000)
            .api_key(KEY)
            .latency(LATENCY)
    };
    let sim = Simulator::builder()
        .account("shared", account())
        .account("local", account())
        .start()
        .await
        .unwrap();
    let secs = seconds();
    let prefix = test_redis::unique_prefix("processes");
    let shared_url = sim.openai_base_url("shared");
    let local_url = sim.openai_base_url("local");
    let (shared, local) = tokio::task::spawn_blocking(move || {
        let shared: Vec<_> = (0..4)
            .map(|_| spawn_child(&shared_url, Some((&url, &prefix)), secs))
            .collect();
        let local: Vec<_> = (0..4)
            .map(|_| spawn_child(&local_url, None, secs))
            .collect();
        let shared: Vec<ChildResult> = shared.into_iter().map(result_of).collect();
        let local: Vec<ChildResult> = local.into_iter().map(result_of).collect();
        (shared, local)
    })
    .await
    .unwrap();

    // The limit over the run: RPM for each started minute of it.
    let limit = u64::from(RPM) * secs.div_ceil(60);
    let s = sim.stats("shared");
    let shared_total = sum(&shared);
    println!(
        "[shared::processes] Redis store, 4 processes, {RPM} RPM, {secs} s, answers in {} s: \
         {} images of {limit} allowed ({} %), upstream 429s {}, per process {:?}",
        LATENCY.as_secs(),
        s.images,
        pct(s.images, limit),
        s.rate_limited,
        shared.iter().map(|r| r.images).collect::<Vec<_>>()
    );
    let l = sim.stats("local");
    let local_total = sum(&local);
    println!(
        "[shared::processes] in-process stores, same run: {} images, {} requests sent for \
         {limit} allowed, upstream 429s {}",
        l.images, l.requests, l.rate_limited
    );
    assert_eq!(s.rate_limited, 0, "no upstream 429 with the shared store");
    assert_eq!(shared_total.failed_upstream, 0, "{shared:?}");
    assert_eq!(shared_total.images, s.images);
    assert!(
        s.images * 100 >= limit * 97,
        "at least 97 % of the limit: {} of {limit}",
        s.images
    );
    assert!(
        shared.iter().filter(|r| r.images > 0).count() >= 2,
        "the instances shared the room: {shared:?}"
    );
    // Without the store the four instances each take the whole limit: the simulator turns
    // the excess away.
    assert!(
        l.rate_limited > 0,
        "without the shared store the account is overshot: {l:?}"
    );
    assert!(local_total.failed_upstream > 0, "{local:?}");
    sim.shutdown().await;
}
