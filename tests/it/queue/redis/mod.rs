//! The Redis backend: the backend contract against a real server, and what only a shared
//! server shows: separate connections (as on separate hosts) claiming and submitting at
//! once, the key layout under one hash tag, bounded calls to an unreachable server, and
//! backlogs larger than one script's batch; workers on the simulator, in one process and in
//! three (`processes.rs`, one killed with SIGKILL).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use image_router::budget::WallClock;
use image_router::clock::{ManualClock, SharedClock};
use image_router::queue::{
    Claim, JobState, NewJob, QueueBackend, QueueError, RedisBackend, RedisQueueOptions,
};
use image_router::store::redis::RedisConfig;
use image_router::GenerateRequest;

use super::conformance::{self, T0_MS};

mod processes;
use crate::support::redis::{self as test_redis, Server};

fn backend_with(
    url: &str,
    prefix: &str,
    clock: WallClock,
    options: RedisQueueOptions,
) -> RedisBackend {
    backend_on(Server::Single, url, prefix, clock, options)
}

/// A backend on `server` (the single server or the cluster) at `url`.
fn backend_on(
    server: Server,
    url: &str,
    prefix: &str,
    clock: WallClock,
    options: RedisQueueOptions,
) -> RedisBackend {
    let config = server.config(url).prefix(prefix);
    RedisBackend::with(config, clock, options).unwrap()
}

fn manual() -> (ManualClock, WallClock) {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let wall = WallClock::new(UNIX_EPOCH + Duration::from_millis(T0_MS), shared);
    (clock, wall)
}

fn gen(prompt: &str) -> NewJob {
    NewJob::new(GenerateRequest::new(prompt).model("gpt-image-1"))
}

async fn redis_passes_the_backend_contract(server: Server) {
    let Some(url) = server.url("redis_passes_the_backend_contract") else {
        return;
    };
    conformance::run_all(move |clock| {
        let url = url.clone();
        async move {
            let q: Arc<dyn QueueBackend> = Arc::new(backend_on(
                server,
                &url,
                &test_redis::unique_prefix("queue"),
                clock,
                RedisQueueOptions::default(),
            ));
            q
        }
    })
    .await;
}

async fn eight_workers_on_their_own_connections_never_claim_one_job_twice(server: Server) {
    let test = "eight_workers_on_their_own_connections_never_claim_one_job_twice";
    let Some(url) = server.url(test) else {
        return;
    };
    let prefix = test_redis::unique_prefix("claim8");
    let (_clock, wall) = manual();
    let submitter = backend_on(
        server,
        &url,
        &prefix,
        wall.clone(),
        RedisQueueOptions::default(),
    );
    let n = 400;
    for i in 0..n {
        // Two lanes and a spread of priorities, so claims race on several ready sets.
        let job = if i % 2 == 0 {
            gen(&format!("p{i}")).priority(i % 7)
        } else {
            gen(&format!("p{i}")).class(image_router::RequestClass::BATCH)
        };
        submitter.submit(job).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        // Each worker has its own backend and connection, as on its own host.
        let q = backend_on(
            server,
            &url,
            &prefix,
            wall.clone(),
            RedisQueueOptions::default(),
        );
        tasks.push(tokio::spawn(async move {
            let worker = format!("host{w}");
            let mut got = Vec::new();
            while let Some(j) = q
                .claim(&Claim {
                    worker: &worker,
                    lease: Duration::from_secs(60),
                    lanes: None,
                })
                .await
                .unwrap()
            {
                assert_eq!(j.lease.as_ref().unwrap().owner, worker);
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let claimed = all.len();
    all.sort();
    all.dedup();
    assert_eq!(claimed, n as usize, "every job claimed");
    assert_eq!(all.len(), n as usize, "no job claimed twice");
    let st = submitter.stats().await.unwrap();
    assert_eq!((st.queued, st.running), (0, n as u64));
}

async fn fifty_concurrent_submissions_with_one_key_make_one_job(server: Server) {
    let test = "fifty_concurrent_submissions_with_one_key_make_one_job";
    let Some(url) = server.url(test) else {
        return;
    };
    let prefix = test_redis::unique_prefix("idem50");
    let (_clock, wall) = manual();
    let backends: Vec<RedisBackend> = (0..5)
        .map(|_| {
            backend_on(
                server,
                &url,
                &prefix,
                wall.clone(),
                RedisQueueOptions::default(),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let q = backends[i % backends.len()].clone();
        tasks.push(tokio::spawn(async move {
            q.submit(gen(&format!("same {i}")).idempotency_key("order-42"))
                .await
                .unwrap()
        }));
    }
    let mut subs = Vec::new();
    for t in tasks {
        subs.push(t.await.unwrap());
    }
    assert_eq!(subs.iter().filter(|s| s.created).count(), 1);
    assert!(subs.iter().all(|s| s.id == subs[0].id));
    let q = &backends[0];
    assert_eq!(q.stats().await.unwrap().queued, 1);
    let all = q.list(None, 100).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].spec.idempotency_key.as_deref(), Some("order-42"));
}

async fn every_key_is_under_the_queue_hash_tag(server: Server) {
    let Some(url) = server.url("every_key_is_under_the_queue_hash_tag") else {
        return;
    };
    let prefix = test_redis::unique_prefix("tag");
    let (clock, wall) = manual();
    let q = backend_on(server, &url, &prefix, wall, RedisQueueOptions::default());
    assert_eq!(q.key_tag(), format!("{{{prefix}:queue}}"));
    // A job through every index: idempotency key, deadline, callback, retry, completion.
    let a = q
        .submit(
            gen("a")
                .idempotency_key("k")
                .deadline_ms(T0_MS + 60_000)
                .callback_url("http://127.0.0.1:9/cb"),
        )
        .await
        .unwrap();
    q.submit(gen("b").priority(-5).deadline_ms(T0_MS + 1))
        .await
        .unwrap();
    let claim = Claim {
        worker: "w",
        lease: Duration::from_secs(30),
        lanes: None,
    };
    let j = q.claim(&claim).await.unwrap().unwrap();
    assert_eq!(j.id, a.id);
    q.retry_later(
        &a.id,
        "w",
        T0_MS + 10,
        image_router::queue::JobError::new("x", "y", "z"),
        vec![],
    )
    .await
    .unwrap();
    clock.advance(Duration::from_millis(20));
    q.claim(&claim).await.unwrap().unwrap();
    q.fail(
        &a.id,
        "w",
        image_router::queue::JobError::new("x", "y", "z"),
        vec![],
    )
    .await
    .unwrap();
    q.reclaim_expired().await.unwrap();

    let mut conn = server.plain(&url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 5, "{keys:?}");
    let tag = q.key_tag().to_string();
    for k in &keys {
        assert!(k.starts_with(&format!("{tag}:")), "{k} is outside {tag}");
    }
    let first = hash_slot(&keys[0]);
    assert!(keys.iter().all(|k| hash_slot(k) == first), "one hash slot");
}

/// The cluster hash slot of a key (CRC16 of its hash tag, mod 16384), as Redis Cluster
/// computes it; computed here so the test does not need a cluster.
fn hash_slot(key: &str) -> i64 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|s| {
        b[s + 1..]
            .iter()
            .position(|&c| c == b'}')
            .filter(|&len| len > 0)
            .map(|len| &b[s + 1..s + 1 + len])
    });
    let bytes = tagged.unwrap_or(b);
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    i64::from(crc % 16384)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_an_error_within_the_timeout_without_the_password() {
    // Port 1 on loopback: nothing listens, the connection is refused or times out.
    let config = RedisConfig::new("redis://:hunter2secret@127.0.0.1:1/0".to_string());
    let (_clock, wall) = manual();
    let q = RedisBackend::with(
        config,
        wall,
        RedisQueueOptions {
            timeout: Duration::from_millis(300),
            ..RedisQueueOptions::default()
        },
    )
    .unwrap();
    assert!(!format!("{q:?}").contains("hunter2secret"));
    let err = q.submit(gen("a")).await.unwrap_err();
    assert!(matches!(err, QueueError::Backend(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2secret"), "{err}");
    let err = q.stats().await.unwrap_err();
    assert!(!err.to_string().contains("hunter2secret"), "{err}");
}

#[test]
fn bad_settings_name_their_field() {
    let (_clock, wall) = manual();
    let url = || RedisConfig::new("redis://127.0.0.1:1".to_string());
    let field = |r: Result<RedisBackend, QueueError>| match r {
        Err(QueueError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        field(RedisBackend::with(
            url().prefix("a{b"),
            wall.clone(),
            RedisQueueOptions::default()
        )),
        "queue.prefix"
    );
    assert_eq!(
        field(RedisBackend::with(
            RedisConfig::new("http://x".to_string()),
            wall.clone(),
            RedisQueueOptions::default()
        )),
        "queue.url"
    );
    assert_eq!(
        field(RedisBackend::with(
            url(),
            wall.clone(),
            RedisQueueOptions {
                timeout: Duration::ZERO,
                ..RedisQueueOptions::default()
            }
        )),
        "queue.timeout"
    );
    assert_eq!(
        field(RedisBackend::with(
            url(),
            wall,
            RedisQueueOptions {
                reclaim_batch: 0,
                ..RedisQueueOptions::default()
            }
        )),
        "queue.reclaim_batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlogs_larger_than_one_script_batch_are_handled_whole() {
    let test = "backlogs_larger_than_one_script_batch_are_handled_whole";
    let Some(url) = test_redis::url(test) else {
        return;
    };
    let prefix = test_redis::unique_prefix("backlog");
    let (clock, wall) = manual();
    let q = backend_with(
        &url,
        &prefix,
        wall,
        RedisQueueOptions {
            reclaim_batch: 7,
            ..RedisQueueOptions::default()
        },
    );
    // More past-deadline jobs (at a higher priority) than one claim moves aside at once:
    // a claim still never takes one of them.
    let n = 1_100;
    for i in 0..n {
        q.submit(
            gen(&format!("d{i}"))
                .priority(10)
                .deadline_ms(T0_MS + 1_000),
        )
        .await
        .unwrap();
    }
    let keep = q.submit(gen("no deadline")).await.unwrap();
    // Leased jobs whose lease runs out, more than one reclaim batch.
    let mut leased = Vec::new();
    for i in 0..20 {
        leased.push(
            q.submit(gen(&format!("l{i}")).priority(20))
                .await
                .unwrap()
                .id,
        );
    }
    for _ in 0..20 {
        let j = q
            .claim(&Claim {
                worker: "dead",
                lease: Duration::from_millis(500),
                lanes: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert!(leased.contains(&j.id));
    }
    clock.advance(Duration::from_secs(2));
    let j = q
        .claim(&Claim {
            worker: "w",
            lease: Duration::from_secs(30),
            lanes: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.id, keep.id, "past their deadline: never claimed");
    let r = q.reclaim_expired().await.unwrap();
    assert_eq!(r.expired.len(), n);
    assert_eq!(r.requeued.len(), 20);
    let st = q.stats().await.unwrap();
    assert_eq!((st.queued, st.running), (20, 1));
    assert_eq!(
        q.list(Some(JobState::Expired), 5_000).await.unwrap().len(),
        n
    );
    assert!(q.reclaim_expired().await.unwrap() == Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_their_own_connections_drain_one_redis_queue_on_the_simulator() {
    use super::worker::{req, router, sim, worker, Setup};
    use image_router::queue::JobQueue;
    use image_router::sim::{Fault, Times};

    let test = "two_workers_on_their_own_connections_drain_one_redis_queue_on_the_simulator";
    let Some(url) = test_redis::url(test) else {
        return;
    };
    let prefix = test_redis::unique_prefix("workers");
    let sim = sim(6000).await;
    sim.fail("acct", Fault::Status(500), Times::N(3));
    sim.fail("acct", Fault::Reset, Times::Once);
    sim.fail("acct", Fault::ContentPolicy, Times::Once);
    // Two hosts: each its own backend (connection) and results folder, one queue.
    let hosts: Vec<Setup> = (0..2)
        .map(|_| {
            let backend: Arc<dyn QueueBackend> =
                Arc::new(RedisBackend::new(RedisConfig::new(url.clone()).prefix(&prefix)).unwrap());
            Setup {
                dir: tempfile::tempdir().unwrap(),
                queue: JobQueue::new(backend.clone()),
                backend,
            }
        })
        .collect();
    let mut ids = Vec::new();
    for i in 0..60 {
        let s = &hosts[i % 2];
        ids.push(
            s.queue
                .submit(NewJob::new(req(&format!("p{i}"))))
                .await
                .unwrap()
                .id,
        );
    }
    let r = router(&sim, 6000);
    let workers: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(i, s)| worker(s, r.clone(), &format!("host{i}")))
        .collect();
    let runs = workers.iter().map(|w| {
        let q = hosts[0].queue.clone();
        let stop = async move {
            loop {
                let st = q.stats().await.unwrap();
                if st.queued == 0 && st.running == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        w.run(stop)
    });
    let reports = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join_all(runs),
    )
    .await
    .expect("the queue drains");
    let mut succeeded = 0;
    let mut failed = 0;
    for id in &ids {
        let j = hosts[1].queue.status(id).await.unwrap();
        match j.state {
            JobState::Succeeded => {
                succeeded += 1;
                assert_eq!(j.results.len(), 1);
                assert!(std::path::Path::new(&j.results[0].location).exists());
                assert!(j.lease.is_none());
            }
            JobState::Failed => {
                failed += 1;
                assert_eq!(j.error.as_ref().unwrap().kind, "rejected");
            }
            other => panic!("job {id} ended {other}"),
        }
    }
    let st = sim.stats("acct");
    assert_eq!(st.images, succeeded, "no job generated twice");
    assert_eq!(st.rate_limited, 0);
    assert_eq!(failed, 1, "only the content-policy refusal fails");
    assert!(
        reports.iter().all(|r| r.claimed > 0),
        "both hosts took work: {reports:?}"
    );
    assert_eq!(
        reports.iter().map(|r| r.succeeded + r.failed).sum::<u64>(),
        60
    );
}

async fn the_queue_table_opens_the_redis_backend(server: Server) {
    use image_router::config::RouterConfig;

    let Some(_url) = server.url("the_queue_table_opens_the_redis_backend") else {
        return;
    };
    let prefix = test_redis::unique_prefix("config");
    let provider = "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n";
    let (var, cluster) = match server {
        Server::Single => (test_redis::URL_VAR, false),
        Server::Cluster => (test_redis::CLUSTER_VAR, true),
    };
    let cfg: RouterConfig = format!(
        "[queue]\nkind = \"redis\"\nurl_env = \"{var}\"\nprefix = \"{prefix}\"\ncluster = {cluster}\n{provider}"
    )
    .parse()
    .unwrap();
    let settings = cfg.queue.clone().unwrap();
    let q = settings.open(None).unwrap();
    assert!(format!("{q:?}").contains(&format!("{{{prefix}:queue}}")));
    let s = q.submit(gen("from the config")).await.unwrap();
    assert_eq!(
        q.status(&s.id)
            .await
            .unwrap()
            .unwrap()
            .spec
            .request
            .prompt(),
        "from the config"
    );

    // A variable that is not set, and a bad prefix, name their key.
    let unset: RouterConfig = format!(
        "[queue]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_UNSET_QUEUE_URL\"\n{provider}"
    )
    .parse()
    .unwrap();
    let e = unset.queue.unwrap().open(None).unwrap_err();
    assert_eq!(e.field, "queue.url_env");
    assert!(
        e.message.contains("IMAGE_ROUTER_TEST_UNSET_QUEUE_URL"),
        "{e}"
    );
    match format!(
        "[queue]\nkind = \"redis\"\nurl_env = \"{}\"\nprefix = \"a{{b\"\n{provider}",
        test_redis::URL_VAR
    )
    .parse::<RouterConfig>()
    {
        Err(e) => assert_eq!(e.field, "queue.prefix"),
        Ok(cfg) => assert_eq!(
            cfg.queue.unwrap().open(None).unwrap_err().field,
            "queue.prefix"
        ),
    }
}

// The tests above that take a `Server` run on the single server and on the cluster.
crate::on_each_server!(
    (flavor = "multi_thread", worker_threads = 2);
    redis_passes_the_backend_contract,
    eight_workers_on_their_own_connections_never_claim_one_job_twice,
    fifty_concurrent_submissions_with_one_key_make_one_job,
    every_key_is_under_the_queue_hash_tag,
    the_queue_table_opens_the_redis_backend,
);
