//! The Redis rows of `benches/queue.rs`: submit and claim throughput and latency of the
//! Redis job queue on loopback.
//!
//! * `queue_redis/submit` and `queue_redis/claim_mark_sent_complete` — the SQLite group's
//!   two figures on Redis, measured the same way, side by side.
//! * `queue_redis_submit/one` — one generation job submitted (one script call): latency;
//!   its inverse is one client's throughput.
//! * `queue_redis_submit/8_concurrent` — eight tasks submitting at once on one backend
//!   (one multiplexed connection): time per job, so 1 / time is the throughput.
//! * `queue_redis_claim/one` and `…/8_concurrent` — the same for claims (lease taken, job
//!   record read back), from a queue filled beforehand (the filling is not timed); each
//!   claim takes the highest-priority, oldest job of two lanes.
//!
//! Needs a server: `IMAGE_ROUTER_TEST_REDIS_URL=redis://127.0.0.1:PORT/` (the variable the
//! tests read); without it the bench says so and measures nothing. Keys go under a prefix
//! of their own (`bench-queue-<pid>`), deleted at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use image_router::queue::{Claim, NewJob, QueueBackend, RedisBackend};
use image_router::store::redis::RedisConfig;
use image_router::{GenerateRequest, Quality, RequestClass, Size};

const CONCURRENCY: u64 = 8;

fn job(i: u64) -> NewJob {
    let req = GenerateRequest::new(format!("a small test image number {i}"))
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE);
    let j = NewJob::new(req);
    if i.is_multiple_of(2) {
        j.class(RequestClass::BATCH)
    } else {
        j
    }
}

fn claim(worker: &str) -> Claim<'_> {
    Claim {
        worker,
        lease: Duration::from_secs(600),
        lanes: None,
    }
}

/// Submits `n` jobs on `q` with `tasks` concurrent submitters.
async fn submit_many(q: &Arc<RedisBackend>, n: u64, tasks: u64) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let q = q.clone();
        set.spawn(async move {
            let mut i = t;
            while i < n {
                q.submit(job(i)).await.expect("submit");
                i += tasks;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Claims `n` jobs with `tasks` concurrent claimers.
async fn claim_many(q: &Arc<RedisBackend>, n: u64, tasks: u64) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let q = q.clone();
        set.spawn(async move {
            let worker = format!("bench-{t}");
            let mut i = t;
            while i < n {
                q.claim(&claim(&worker))
                    .await
                    .expect("claim")
                    .expect("a job");
                i += tasks;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// The Redis rows (nothing without a server).
pub fn bench(c: &mut Criterion) {
    let url = match std::env::var("IMAGE_ROUTER_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
        _ => {
            eprintln!(
                "\n*** benches/queue_redis: IMAGE_ROUTER_TEST_REDIS_URL is not set: nothing measured ***\n"
            );
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let prefix = format!("bench-queue-{}", std::process::id());
    let q = Arc::new(
        RedisBackend::new(RedisConfig::new(url.clone()).prefix(&prefix)).expect("redis config"),
    );

    // The SQLite group's two figures, measured the same way.
    super::side_by_side(c, &rt, "queue_redis", q.clone(), job);

    let mut group = c.benchmark_group("queue_redis_submit");
    group.bench_function("one", |b| {
        let mut i = 0u64;
        b.to_async(&rt).iter(|| {
            i += 1;
            let q = q.clone();
            async move { q.submit(job(i)).await.expect("submit") }
        })
    });
    group.bench_function("8_concurrent", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let q = q.clone();
            async move {
                let start = Instant::now();
                submit_many(&q, iters, CONCURRENCY).await;
                start.elapsed()
            }
        })
    });
    group.finish();

    // Claims: a fresh queue per measurement, filled (untimed) with as many jobs as claimed.
    let mut group = c.benchmark_group("queue_redis_claim");
    let mut round = 0u32;
    for (name, tasks) in [("one", 1u64), ("8_concurrent", CONCURRENCY)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                round += 1;
                let config = RedisConfig::new(url.clone()).prefix(format!("{prefix}-c{round}"));
                async move {
                    let q = Arc::new(RedisBackend::new(config).expect("redis config"));
                    submit_many(&q, iters, CONCURRENCY).await;
                    let start = Instant::now();
                    claim_many(&q, iters, tasks).await;
                    start.elapsed()
                }
            })
        });
    }
    group.finish();

    // Clean up every key of the bench.
    rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for chunk in keys.chunks(1000) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
        }
    });
}
