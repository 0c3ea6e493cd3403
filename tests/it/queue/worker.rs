//! Workers on the simulator: drain, faults (retryable, permanent, possibly billed), priority,
//! cancellation, graceful shutdown, restart of the SQLite file, and the admission probe.

use std::sync::Arc;
use std::time::Duration;

use image_router::queue::{
    FolderStore, JobId, JobQueue, JobState, NewJob, QueueBackend, SqliteBackend, Worker,
    WorkerBuilder,
};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{
    Admission, GenerateRequest, ProviderOptions, Quality, RequestClass, Router, Size,
};

use crate::shared::{openai, KEY};

pub(crate) fn req(prompt: &str) -> GenerateRequest {
    GenerateRequest::new(prompt)
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

pub(crate) async fn sim(rpm: u32) -> Simulator {
    Simulator::builder()
        .account(
            "acct",
            SimAccount::new().rpm(rpm).tpm(100_000_000).api_key(KEY),
        )
        .start()
        .await
        .unwrap()
}

pub(crate) fn router(sim: &Simulator, rpm: u32) -> Router {
    Router::builder()
        .provider_with(
            openai("openai", sim.openai_base_url("acct")),
            ProviderOptions::new().rpm(rpm).tpm(100_000_000),
        )
        .attempt_timeout(Duration::from_secs(2))
        .max_attempts(1)
        .build()
        .unwrap()
}

pub(crate) struct Setup {
    pub dir: tempfile::TempDir,
    pub backend: Arc<dyn QueueBackend>,
    pub queue: JobQueue,
}

pub(crate) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn QueueBackend> =
        Arc::new(SqliteBackend::open(dir.path().join("jobs.db")).unwrap());
    let queue = JobQueue::new(backend.clone());
    Setup {
        dir,
        backend,
        queue,
    }
}

/// A worker builder on `s`'s queue with `router`, results under `s.dir/out` and a 20 ms
/// poll interval (what every test here sets); the test adds the rest.
pub(crate) fn builder(s: &Setup, router: Router) -> WorkerBuilder {
    Worker::builder()
        .router(router)
        .backend(s.backend.clone())
        .results(Arc::new(FolderStore::new(s.dir.path().join("out"))))
        .poll_interval(Duration::from_millis(20))
}

/// Submits `n` generation jobs with prompts `p0`, `p1`, …; their ids in order.
pub(crate) async fn submit_prompts(q: &JobQueue, n: usize) -> Vec<JobId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            q.submit(NewJob::new(req(&format!("p{i}"))))
                .await
                .unwrap()
                .id,
        );
    }
    ids
}

pub(crate) fn worker(s: &Setup, router: Router, id: &str) -> Worker {
    builder(s, router)
        .concurrency(4)
        .lease(Duration::from_secs(10))
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .grace(Duration::from_secs(5))
        .id(id)
        .build()
        .unwrap()
}

/// Runs `w` until every job has ended (queued and running both zero), then shuts it down.
pub(crate) async fn drain(q: &JobQueue, w: &Worker) -> image_router::queue::WorkerReport {
    let q2 = q.clone();
    let stop = async move {
        loop {
            let st = q2.stats().await.unwrap();
            if st.queued == 0 && st.running == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), w.run(stop))
        .await
        .expect("the queue drains")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_drains_with_faults_every_job_ends_none_generated_twice() {
    let sim = sim(6000).await;
    let s = setup();
    // Faults: one content-policy refusal (fails at once), transient 5xx and resets (retried).
    // The refusal is served first, so it reaches a job on its first run: served after the
    // 5xx it could reach a job already retried once, and `retries == 0` below would depend
    // on the order the jobs came back in (seen under load).
    sim.fail("acct", Fault::ContentPolicy, Times::Once);
    sim.fail("acct", Fault::Status(500), Times::N(3));
    sim.fail("acct", Fault::Reset, Times::Once);
    sim.fail("acct", Fault::Status(503), Times::N(2));
    let ids = submit_prompts(&s.queue, 60).await;
    let w = worker(&s, router(&sim, 6000), "w1");
    let report = drain(&s.queue, &w).await;
    let mut succeeded = 0;
    let mut failed = Vec::new();
    for id in &ids {
        let j = s.queue.status(id).await.unwrap();
        match j.state {
            JobState::Succeeded => {
                succeeded += 1;
                assert_eq!(j.results.len(), 1);
                let loc = &j.results[0].location;
                assert!(std::path::Path::new(loc).exists(), "{loc}");
                assert_eq!(j.provider.as_deref(), Some("openai"));
                assert!(j.started_ms.is_some() && j.ended_ms.is_some());
                assert!(!j.attempts.is_empty());
            }
            JobState::Failed => failed.push(j),
            other => panic!("job {id} ended {other}"),
        }
    }
    let st = sim.stats("acct");
    assert_eq!(
        st.images, succeeded,
        "every generated image belongs to one succeeded job"
    );
    assert_eq!(st.rate_limited, 0);
    assert_eq!(
        failed.len(),
        1,
        "only the content-policy refusal fails: {failed:#?}"
    );
    let e = failed[0].error.as_ref().unwrap();
    assert_eq!(e.kind, "rejected");
    assert!(!e.explanation.is_empty());
    assert_eq!(failed[0].retries, 0, "a refusal is not retried");
    assert!(report.retried >= 4, "{report:?}");
    assert_eq!(report.succeeded + report.failed, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_stop_at_the_retry_limit() {
    let sim = sim(6000).await;
    let s = setup();
    sim.fail("acct", Fault::Status(500), Times::Always);
    let id = s
        .queue
        .submit(NewJob::new(req("x")).max_retries(2))
        .await
        .unwrap()
        .id;
    let w = worker(&s, router(&sim, 6000), "w1");
    drain(&s.queue, &w).await;
    let j = s.queue.status(&id).await.unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.retries, 2);
    assert_eq!(j.attempts.len(), 3, "three runs, one attempt each");
    assert_eq!(
        j.attempts.iter().map(|a| a.run).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(j.error.unwrap().message.contains("after 2 retries"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_possibly_billed_attempt_is_not_sent_again() {
    let sim = sim(6000).await;
    let s = setup();
    sim.fail("acct", Fault::Hang, Times::N(2));
    let no_rerun = s.queue.submit(NewJob::new(req("a"))).await.unwrap().id;
    let w = builder(&s, router(&sim, 6000))
        .concurrency(1)
        .retry_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .unwrap();
    drain(&s.queue, &w).await;
    let j = s.queue.status(&no_rerun).await.unwrap();
    assert_eq!(j.state, JobState::Failed);
    let e = j.error.unwrap();
    assert_eq!(e.kind, "possibly_billed");
    assert!(e.message.contains("may have been generated and billed"));
    assert_eq!(sim.stats("acct").requests, 1, "sent once, never again");

    // With allow_rerun it is retried and served.
    let rerun = s
        .queue
        .submit(NewJob::new(req("b")).allow_rerun(true))
        .await
        .unwrap()
        .id;
    drain(&s.queue, &w).await;
    let j = s.queue.status(&rerun).await.unwrap();
    assert_eq!(j.state, JobState::Succeeded, "{j:#?}");
    assert_eq!(j.retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_jobs_run_before_bulk_ones() {
    let sim = sim(6000).await;
    let s = setup();
    let mut bulk = Vec::new();
    for i in 0..10 {
        let job = NewJob::new(req(&format!("b{i}"))).class(RequestClass::BATCH);
        bulk.push(s.queue.submit(job).await.unwrap().id);
    }
    let mut inter = Vec::new();
    for i in 0..3 {
        let job = NewJob::new(req(&format!("i{i}"))).class(RequestClass::INTERACTIVE);
        inter.push(s.queue.submit(job).await.unwrap().id);
    }
    let w = builder(&s, router(&sim, 6000))
        .concurrency(1)
        .build()
        .unwrap();
    drain(&s.queue, &w).await;
    let started = |id| {
        let q = s.queue.clone();
        async move { q.status(id).await.unwrap().started_ms.unwrap() }
    };
    let last_inter = {
        let mut m = 0;
        for id in &inter {
            m = m.max(started(id).await);
        }
        m
    };
    for id in &bulk {
        assert!(started(id).await >= last_inter, "bulk after interactive");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_in_the_queue_while_the_router_has_no_room() {
    // 5 requests a minute: the worker claims 5, then nothing until the window moves.
    let sim = Arc::new(sim(5).await);
    let s = setup();
    submit_prompts(&s.queue, 12).await;
    // One job in hand at a time: each claim follows the previous job's admission, so the
    // probe sees the room as it is (with several in hand, two probes can both see the last
    // slot; the second job then waits inside the router, see the worker's module docs).
    let w = builder(&s, router(&sim, 5))
        .concurrency(1)
        .grace(Duration::from_secs(5))
        .build()
        .unwrap();
    let w2 = w.clone();
    // Stop once the five allowed requests were served and the worker had time (twenty poll
    // intervals) to claim more if it wrongly would.
    let stop = {
        let sim = sim.clone();
        let sim_stats = move || sim.stats("acct");
        async move {
            while sim_stats().images < 5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            sim_stats()
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(async move {
        w2.run(async move {
            let _ = rx.await;
        })
        .await
    });
    let stats = stop.await;
    let _ = tx.send(());
    let report = run.await.unwrap();
    let st = s.queue.stats().await.unwrap();
    assert_eq!(stats.images, 5);
    assert_eq!(stats.rate_limited, 0);
    let others: Vec<_> = s
        .queue
        .list(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.state != JobState::Succeeded && j.state != JobState::Queued)
        .map(|j| (j.state, j.error, j.attempts))
        .collect();
    assert_eq!(
        st.queued, 7,
        "the rest wait in the store: {others:?} {report:?}"
    );
    assert_eq!(st.running, 0);
    assert_eq!(report.succeeded, 5);
    assert!(
        report.claimed <= 5 + report.released,
        "claims only with room: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_probe_answers_now_at_and_never() {
    let sim = sim(2).await;
    let r = router(&sim, 2);
    let probe = req("x").into();
    assert!(matches!(r.admission(&probe, None), Admission::Now { .. }));
    r.generate(req("a")).await.unwrap();
    r.generate(req("b")).await.unwrap();
    match r.admission(&probe, None) {
        Admission::At(d) => assert!(d > Duration::ZERO && d <= Duration::from_secs(60)),
        other => panic!("expected At, got {other:?}"),
    }
    // Nothing was reserved by the probes: the simulator saw exactly two requests.
    assert_eq!(sim.stats("acct").requests, 2);
    let bad: image_router::ImageRequest =
        GenerateRequest::new("x").model("gpt-image-1").n(50).into();
    assert!(matches!(r.admission(&bad, None), Admission::Never(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_sending_and_idempotent_submission() {
    let s = setup();
    let a = s
        .queue
        .submit(NewJob::new(req("a")).idempotency_key("order-1"))
        .await
        .unwrap();
    let b = s
        .queue
        .submit(NewJob::new(req("a")).idempotency_key("order-1"))
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert!(!b.created);
    assert_eq!(s.queue.list(None, 10).await.unwrap().len(), 1);
    let j = s.queue.cancel(&a.id).await.unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    let waited = s.queue.wait(&a.id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(waited.state, JobState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_everything_loses_no_queued_job() {
    let sim = sim(6000).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    let mut ids = Vec::new();
    {
        let backend: Arc<dyn QueueBackend> = Arc::new(SqliteBackend::open(&path).unwrap());
        let q = JobQueue::new(backend);
        ids.extend(submit_prompts(&q, 25).await);
        // Everything dropped here: the process holding the file "restarts".
    }
    let backend: Arc<dyn QueueBackend> = Arc::new(SqliteBackend::open(&path).unwrap());
    let q = JobQueue::new(backend.clone());
    assert_eq!(q.stats().await.unwrap().queued, 25);
    let s = Setup {
        dir,
        backend,
        queue: q,
    };
    let w = worker(&s, router(&sim, 6000), "w-after-restart");
    drain(&s.queue, &w).await;
    for id in &ids {
        assert_eq!(s.queue.status(id).await.unwrap().state, JobState::Succeeded);
    }
    assert_eq!(sim.stats("acct").images, 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_back_what_it_cannot_finish() {
    let sim = sim(6000).await;
    sim.set_latency("acct", Duration::from_millis(300));
    let s = setup();
    submit_prompts(&s.queue, 20).await;
    let w = builder(&s, router(&sim, 6000))
        .concurrency(4)
        .grace(Duration::from_secs(5))
        .build()
        .unwrap();
    let report = w.run(tokio::time::sleep(Duration::from_millis(400))).await;
    let st = s.queue.stats().await.unwrap();
    assert_eq!(st.running, 0, "nothing left leased after a graceful stop");
    assert_eq!(
        report.succeeded + st.queued,
        20,
        "finished within the grace period or still queued: {report:?} {st:?}"
    );
    assert!(st.queued > 0, "it stopped claiming");
    assert_eq!(sim.stats("acct").images, report.succeeded);
}

/// At the end of the grace period, a job whose request was sent and is still waiting for its
/// answer is ended at once, as the stored record says, not left to its lease (60 s here, so
/// a job left to it would still be `running` when `run` returns): it fails as possibly billed,
/// or, when it allows a re-run, is queued again as a re-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_end_ends_sent_jobs_at_once_not_at_lease_expiry() {
    let sim = Arc::new(sim(6000).await);
    // Answers take far longer than the grace period and the attempt timeout allows.
    sim.set_latency("acct", Duration::from_secs(20));
    let s = setup();
    let plain = s.queue.submit(NewJob::new(req("plain"))).await.unwrap().id;
    let rerun = s
        .queue
        .submit(NewJob::new(req("rerun")).allow_rerun(true))
        .await
        .unwrap()
        .id;
    let router = Router::builder()
        .provider_with(
            openai("openai", sim.openai_base_url("acct")),
            ProviderOptions::new().rpm(6000).tpm(100_000_000),
        )
        .attempt_timeout(Duration::from_secs(60))
        .max_attempts(1)
        .build()
        .unwrap();
    let w = builder(&s, router)
        .concurrency(2)
        .lease(Duration::from_secs(60))
        .grace(Duration::from_millis(300))
        .build()
        .unwrap();
    // Shut down once both requests reached the simulator (so both are marked sent).
    let stop = {
        let sim = sim.clone();
        async move {
            while sim.stats("acct").requests < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let report = tokio::time::timeout(Duration::from_secs(30), w.run(stop))
        .await
        .expect("the worker stops after its grace period");
    let st = s.queue.stats().await.unwrap();
    assert_eq!(st.running, 0, "nothing left leased: {st:?}");
    assert_eq!((report.failed, report.retried), (1, 1), "{report:?}");

    let p = s.queue.status(&plain).await.unwrap();
    assert_eq!(p.state, JobState::Failed);
    let e = p.error.expect("a failed job says why");
    assert_eq!(e.kind, "possibly_billed");
    assert!(e.message.contains("shut down"), "{}", e.message);
    assert!(p.ended_ms.is_some());

    let r = s.queue.status(&rerun).await.unwrap();
    assert_eq!(r.state, JobState::Queued, "re-run as the job allows");
    assert_eq!(r.retries, 1);
    assert_eq!(r.error.map(|e| e.kind).as_deref(), Some("shutdown"));
    assert_eq!(sim.stats("acct").images, 0, "nothing was answered");
}
