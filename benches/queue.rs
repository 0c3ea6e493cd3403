//! The durable job queue's own cost: one submission, and one claim-to-completion cycle
//! (claim, mark sent, complete: the three transactions a job takes in a worker, without the
//! provider call), on the SQLite backend in a temporary file. The README reports both.
//! The Redis rows (`support/queue_redis.rs`) run when `IMAGE_ROUTER_TEST_REDIS_URL` is set.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

#[path = "support/queue_redis.rs"]
mod queue_redis;
use image_router::queue::{Claim, JobSuccess, NewJob, QueueBackend, SqliteBackend};
use image_router::GenerateRequest;

fn job(i: u64) -> NewJob {
    NewJob::new(GenerateRequest::new(format!("a lighthouse {i}")).model("gpt-image-1"))
}

pub(crate) fn success() -> JobSuccess {
    JobSuccess {
        provider: "p".into(),
        model: "gpt-image-1".into(),
        usage: None,
        cost_usd: Some(0.011),
        results: Vec::new(),
        attempts: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let q: Arc<dyn QueueBackend> =
        Arc::new(SqliteBackend::open(dir.path().join("bench.db")).expect("open"));
    side_by_side(c, &rt, "queue_sqlite", q, job);
}

/// The two figures every backend reports, measured the same way: one submission, and one
/// claim → mark sent → complete cycle (with its submission) with jobs queued behind (the
/// submissions of the first figure). `job(n)` makes the n-th job.
pub(crate) fn side_by_side(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    q: Arc<dyn QueueBackend>,
    job: fn(u64) -> NewJob,
) {
    let mut g = c.benchmark_group(group);
    let mut n = 0u64;
    g.bench_function("submit", |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let q = q.clone();
            let j = job(n);
            async move { q.submit(j).await.expect("submit") }
        })
    });
    g.bench_function("claim_mark_sent_complete", |b| {
        b.to_async(rt).iter(|| {
            let q = q.clone();
            async move {
                q.submit(job(0)).await.expect("submit");
                let claim = Claim {
                    worker: "bench",
                    lease: Duration::from_secs(60),
                    lanes: None,
                };
                let j = q.claim(&claim).await.expect("claim").expect("a job");
                q.mark_sent(&j.id, "bench").await.expect("sent");
                q.complete(&j.id, "bench", success())
                    .await
                    .expect("complete");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench, queue_redis::bench);
criterion_main!(benches);
