//! The crash-test harness, shared by the SQLite crash test (`queue::processes`) and the
//! Redis one (`queue::redis::processes`): 10,000 jobs submitted at once to one queue, three
//! worker processes draining it on one simulated account whose limits they share through the
//! Redis store, random faults, and one worker `kill -9`'d once a fifth of the jobs are done
//! and started again. Each test file says only what differs: how its queue is opened in the
//! parent and in a child, the variables its child reads, and its worker concurrency
//! ([`Backend`]).
//!
//! # How the processes are made
//!
//! As in `shared::processes`: the parent re-runs this test binary (`--exact
//! <module>::child_worker --ignored`) with the simulator's URL, the results folder, the Redis
//! URL and the store's prefix, and the backend's own settings (the SQLite file, or the
//! queue's Redis prefix), in variables under the backend's prefix (for example
//! `IMAGE_ROUTER_QUEUE_CHILD_SIM`); the child test is `#[ignore]`d and returns at once when its
//! variable is unset. A child runs a [`Worker`] until the queue has nothing queued or
//! running, then prints its report. The children are killed if the test fails
//! ([`Children`]): no orphan keeps draining a deleted file or prefix.
//!
//! # Figures
//!
//! Every job ends succeeded or failed with a reason; none is lost; the simulator's count of
//! generated images equals the succeeded jobs plus at most the jobs that failed as "possibly
//! billed" (requests in flight when their worker was killed, or that hung: the simulator may
//! have generated them, and they were not sent again); zero upstream 429s; and the account's
//! limit is used at 97 % or more ([`MIN_SHARE`]), and never over it, in every full minute
//! while work was queued. "Used" is measured from the simulator's record of the requests it
//! received, faults included, in each full 60-second window from the first request that ends
//! while a job was still queued, divided by the account's RPM (`queue::drain`).
//!
//! # Why this size
//!
//! The limit binds: 4,000 RPM ([`RPM`]), so 10,000 jobs ([`JOBS`]) and their retries (about
//! 11,300 requests) need a little under three minutes of the account's room, and two full
//! minutes run with work queued. The routers run at a 0.99 margin ([`MARGIN`]), so 99 % is
//! the most they can use. 5,000 RPM (two and a half minutes) was tried first: alone, or beside
//! the Redis crash test, the three debug-build SQLite workers kept up (4,950 and 4,950
//! requests in the two full minutes, 99.0 % each); in the whole test binary, sharing the 2
//! cores with every other test, they sent 4,593 and 4,723 (91.9 % and 94.5 %): bound by their
//! own throughput, not by the limit. The two crash tests hold [`ONE_CRASH_TEST_AT_A_TIME`] for
//! their whole run: six worker processes at once on 2 cores would measure the machine's
//! throughput, not the drain. Measured figures for each backend are in its test's docs.
//!
//! # Why faults per request
//!
//! Faults are drawn by the simulator for each request independently (about one in seven), not
//! queued on a timer: a timer kept queueing faults while the workers waited for room, the next
//! minute began with a run of them, a circuit breaker opens on such an "outage" as it should,
//! and the drain slowed to a trickle (see `queue::drain`).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image_router::queue::{FolderStore, JobQueue, JobState, NewJob, QueueBackend, Worker};
use image_router::sim::{SimAccount, Simulator};
use image_router::{ProviderOptions, Router};

use super::drain::{crash_test_faults, requests_per_full_minute};
use super::worker::req;
use crate::shared::{openai, pct, redis_factory, KEY};
use crate::support::redis as test_redis;

/// Jobs submitted.
pub(crate) const JOBS: usize = 10_000;
/// The account's requests per minute: binding, so the drain takes a little under three
/// minutes of room (see the module docs).
pub(crate) const RPM: u32 = 4_000;
/// The least share of the account's RPM used in each full minute while work is queued.
pub(crate) const MIN_SHARE: f64 = 0.97;
/// Share of the limit the routers use: a little below the account's, so a request admitted
/// at the very edge of the shared window (Redis server time) cannot reach the simulator while
/// its own window still holds the request it replaces.
pub(crate) const MARGIN: f64 = 0.99;

/// Held by each crash test for its whole run, so the two never overlap: each alone keeps
/// its three worker processes busy enough to use a binding limit to the full, and two at once
/// on a 2-core machine would measure the machine, not the drain.
pub(crate) static ONE_CRASH_TEST_AT_A_TIME: tokio::sync::Mutex<()> =
    tokio::sync::Mutex::const_new(());

/// The variables every child reads, after the backend's prefix ([`Backend::env`]): set to
/// run at all, the simulator's URL, the results folder, the Redis URL, the store's prefix and
/// the worker's id.
const CHILD_SIM: &str = "_SIM";
const CHILD_OUT: &str = "_OUT";
const CHILD_REDIS: &str = "_REDIS";
const CHILD_STORE: &str = "_STORE_PREFIX";
const CHILD_ID: &str = "_ID";

/// A queue opened in the parent, and the child's own settings for it: (variable after
/// [`Backend::env`], value).
pub(crate) type Opened = (Arc<dyn QueueBackend>, Vec<(&'static str, String)>);

/// The child's variables, read by their name after [`Backend::env`].
pub(crate) type ChildVar<'a> = &'a dyn Fn(&str) -> String;

/// What differs between the crash tests of two queue backends.
pub(crate) struct Backend {
    /// The parent test's name (for the skip message without a Redis server).
    pub test: &'static str,
    /// The test module's path in this binary, whose `child_worker` the parent re-runs; also
    /// the label of the printed figures.
    pub module: &'static str,
    /// The prefix of the variables the child reads; set alone, it tells the child to run.
    pub env: &'static str,
    /// What the workers drain, for the printed figures ("one SQLite queue file").
    pub queue_is: &'static str,
    /// The workers' ids before their number ("w" makes "w0", "w1", "w2").
    pub worker: &'static str,
    /// Jobs each worker runs at once.
    pub concurrency: usize,
    /// Whether the parent's stats read may fail for a moment while the workers write (a busy
    /// SQLite file): logged and polled again, instead of failing the test.
    pub stats_may_be_busy: bool,
    /// Opens the queue in the parent, given the Redis URL and a temporary folder: the backend
    /// and the child's own settings (variable after [`Backend::env`], value).
    pub open: fn(redis: &str, dir: &Path) -> Opened,
    /// Opens the same queue in a child, given the Redis URL and the child's variables (by
    /// their name after [`Backend::env`]).
    pub reopen: fn(redis: &str, var: ChildVar<'_>) -> Arc<dyn QueueBackend>,
}

impl Backend {
    fn var_name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.env)
    }
}

/// The child worker: runs only when the parent set [`Backend::env`], then drains the queue
/// with a router sharing the account's limits through Redis and prints its report.
pub(crate) async fn child_worker(b: &Backend) {
    if std::env::var_os(b.env).is_none() {
        return;
    }
    let var = |k: &str| std::env::var(b.var_name(k)).unwrap();
    let redis = var(CHILD_REDIS);
    let router = Router::builder()
        .provider_with(
            openai("openai", var(CHILD_SIM)),
            ProviderOptions::new()
                .rpm(RPM)
                .tpm(1_000_000_000)
                .safety_margin(MARGIN)
                .account("queue-account"),
        )
        .store(redis_factory(&redis, &var(CHILD_STORE), false))
        .attempt_timeout(Duration::from_secs(2))
        .max_wait(Duration::from_secs(2))
        .max_attempts(1)
        .build()
        .unwrap();
    let backend = (b.reopen)(&redis, &var);
    let queue = JobQueue::new(backend.clone());
    let worker = Worker::builder()
        .router(router)
        .backend(backend)
        .results(Arc::new(FolderStore::new(var(CHILD_OUT))))
        .concurrency(b.concurrency)
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

/// The child's variables (name, value) apart from its id.
struct ChildEnv<'a> {
    backend: &'a Backend,
    vars: Vec<(String, String)>,
}

impl ChildEnv<'_> {
    fn spawn(&self, id: &str) -> std::process::Child {
        let child_test = format!("{}::child_worker", self.backend.module);
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &child_test,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(self.backend.env, "1")
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env(self.backend.var_name(CHILD_ID), id)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }
}

/// The worker processes, killed if the test fails (no orphan keeps draining).
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The crash test on backend `b` (see the module docs); returns at once without a Redis
/// server (outside CI).
pub(crate) async fn three_workers_one_killed(b: &Backend) {
    let Some(redis) = test_redis::url(b.test) else {
        return;
    };
    let _alone = ONE_CRASH_TEST_AT_A_TIME.lock().await;
    let label = b.module;
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
    let out = dir.path().join("out");
    let (backend, own_vars) = (b.open)(&redis, dir.path());
    let queue = JobQueue::new(backend);

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

    let store_prefix = test_redis::unique_prefix("store-procs");
    let mut vars = vec![
        (b.var_name(CHILD_SIM), sim.openai_base_url("acct")),
        (b.var_name(CHILD_OUT), out.display().to_string()),
        (b.var_name(CHILD_REDIS), redis.clone()),
        (b.var_name(CHILD_STORE), store_prefix),
    ];
    vars.extend(own_vars.into_iter().map(|(k, v)| (b.var_name(k), v)));
    let env = ChildEnv { backend: b, vars };
    let name = |n: &str| format!("{}{n}", b.worker);
    let started = Instant::now();
    let mut children = Children(vec![
        env.spawn(&name("0")),
        env.spawn(&name("1")),
        env.spawn(&name("2")),
    ]);

    // Random faults while the queue drains, about one request in seven (`queue::drain`).
    assert!(sim.fail_randomly("acct", Some(crash_test_faults())));

    // Kill one worker with SIGKILL once a fifth of the jobs are done, and start it again.
    let mut killed = false;
    // The simulator's clock when a job was last seen queued.
    let mut queued_until = sim.clock().now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let st = match queue.stats().await {
            Ok(st) => st,
            // A read can meet a busy database for a moment while three writers take turns.
            Err(e) if b.stats_may_be_busy => {
                eprintln!("[{label}] stats: {e}");
                continue;
            }
            Err(e) => panic!("[{label}] stats: {e}"),
        };
        let done = JOBS as u64 - st.queued - st.running;
        if !killed && done >= JOBS as u64 / 5 {
            children.0[0].kill().unwrap(); // SIGKILL on Unix
            let _ = children.0[0].wait();
            children.0[0] = env.spawn(&name("0-restarted"));
            killed = true;
        }
        if st.queued > 0 {
            queued_until = sim.clock().now();
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
    sim.clear_faults("acct");
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
    let arrivals: Vec<Duration> = sim.received("acct").iter().map(|r| r.at).collect();
    let minutes = requests_per_full_minute(&arrivals, queued_until);
    let shares: Vec<f64> = minutes.iter().map(|&n| pct(n, u64::from(RPM))).collect();
    println!(
        "[{label}] {JOBS} jobs submitted in {submit_secs:.1} s; 3 worker processes on {} (one \
         killed with SIGKILL at 20 % and restarted), {RPM} RPM shared through Redis: drained \
         in {drain_secs:.1} s; succeeded {succeeded}, failed {failed} {reasons:?}; simulator: \
         {} requests, {} images, {} upstream 429s, {} faults served; requests in each full \
         minute while work was queued: {minutes:?} = {shares:?} % of the account's limit; \
         workers: {reports:?}",
        b.queue_is, s.requests, s.images, s.rate_limited, s.faults_served,
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
    assert!(
        !minutes.is_empty(),
        "work was queued for a full minute at least"
    );
    for (k, &n) in minutes.iter().enumerate() {
        assert!(
            n as f64 >= MIN_SHARE * f64::from(RPM),
            "minute {k} used {n} of {RPM} requests while work was queued: {minutes:?}"
        );
        assert!(
            n <= u64::from(RPM),
            "minute {k}: the simulator received {n} requests, over the account's {RPM}: {minutes:?}"
        );
    }
}
