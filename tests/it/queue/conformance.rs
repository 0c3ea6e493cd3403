//! The backend contract, for any [`QueueBackend`]: each backend's test module calls
//! [`run_all`] with a constructor that builds a fresh, empty backend on the given wall clock
//! (a `ManualClock` the suite moves by hand, so leases and retry times run out without
//! waiting).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use image_router::budget::WallClock;
use image_router::clock::{ManualClock, SharedClock};
use image_router::queue::{
    lane_of, CallbackState, Claim, JobAttempt, JobError, JobId, JobState, JobSuccess, NewJob,
    QueueBackend, QueueError, ResultLocation,
};
use image_router::{EditRequest, GenerateRequest, InputImage, RequestClass};

/// A fresh backend and the clock it runs on.
pub struct Fixture {
    /// The backend.
    pub q: Arc<dyn QueueBackend>,
    /// Its clock.
    pub clock: ManualClock,
}

/// Wall time at the suite's clock zero: a fixed instant, so times in assertions are exact.
pub const T0_MS: u64 = 1_800_000_000_000;

async fn fixture<F, Fut>(make: &F) -> Fixture
where
    F: Fn(WallClock) -> Fut,
    Fut: Future<Output = Arc<dyn QueueBackend>>,
{
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let start = UNIX_EPOCH + Duration::from_millis(T0_MS);
    let q = make(WallClock::new(start, shared)).await;
    Fixture { q, clock }
}

fn gen(prompt: &str) -> NewJob {
    NewJob::new(GenerateRequest::new(prompt).model("gpt-image-1"))
}

fn claim<'a>(worker: &'a str, lanes: Option<&'a [String]>) -> Claim<'a> {
    Claim {
        worker,
        lease: Duration::from_secs(30),
        lanes,
    }
}

fn success() -> JobSuccess {
    JobSuccess {
        provider: "p".into(),
        model: "gpt-image-1".into(),
        usage: None,
        cost_usd: Some(0.01),
        results: vec![ResultLocation {
            location: "/r/1.png".into(),
            bytes: 3,
            content_type: "image/png".into(),
        }],
        attempts: vec![JobAttempt {
            run: 0,
            provider: "p".into(),
            model: "gpt-image-1".into(),
            outcome: "success".into(),
            status: Some(200),
            ms: 5,
            error: None,
            possibly_billed: false,
        }],
    }
}

/// Runs every contract check, each on a fresh backend from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn(WallClock) -> Fut,
    Fut: Future<Output = Arc<dyn QueueBackend>>,
{
    submit_and_status(&fixture(&make).await).await;
    idempotency_key_gives_one_job(&fixture(&make).await).await;
    invalid_jobs_are_refused(&fixture(&make).await).await;
    edit_images_round_trip(&fixture(&make).await).await;
    claim_order_priority_then_age(&fixture(&make).await).await;
    claim_respects_lanes(&fixture(&make).await).await;
    claim_is_exclusive(&fixture(&make).await).await;
    lease_ops_need_the_lease(&fixture(&make).await).await;
    expired_unsent_lease_requeues(&fixture(&make).await).await;
    expired_sent_lease_fails_possibly_billed(&fixture(&make).await).await;
    expired_sent_lease_reruns_when_allowed(&fixture(&make).await).await;
    heartbeat_keeps_the_lease(&fixture(&make).await).await;
    retry_later_waits_and_counts(&fixture(&make).await).await;
    release_hands_back_unsent(&fixture(&make).await).await;
    complete_and_fail_record_everything(&fixture(&make).await).await;
    cancel_rules(&fixture(&make).await).await;
    deadline_expires_queued(&fixture(&make).await).await;
    list_and_stats(&fixture(&make).await).await;
    callbacks_are_pending_then_held(&fixture(&make).await).await;
    concurrent_claims_never_double(&fixture(&make).await).await;
}

async fn submit_and_status(f: &Fixture) {
    let s = f.q.submit(gen("a")).await.unwrap();
    assert!(s.created);
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.enqueued_ms, T0_MS);
    assert_eq!(j.spec.request.prompt(), "a");
    assert_eq!(j.lane, lane_of(None, Some("gpt-image-1")));
    assert!(!j.sent);
    assert_eq!(j.callback, CallbackState::None);
    assert!(f.q.status(&JobId::from("nope")).await.unwrap().is_none());
}

async fn idempotency_key_gives_one_job(f: &Fixture) {
    let a = f.q.submit(gen("a").idempotency_key("k1")).await.unwrap();
    let b = f.q.submit(gen("b").idempotency_key("k1")).await.unwrap();
    assert!(a.created);
    assert!(!b.created, "same key: the existing job");
    assert_eq!(a.id, b.id);
    let c = f.q.submit(gen("c").idempotency_key("k2")).await.unwrap();
    assert_ne!(a.id, c.id);
    assert_eq!(f.q.stats().await.unwrap().queued, 2);
    // Concurrent submissions with one key: still one job.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let q = f.q.clone();
        tasks.push(tokio::spawn(async move {
            q.submit(gen(&format!("x{i}")).idempotency_key("k3"))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    assert_eq!(ids.iter().filter(|s| s.created).count(), 1);
    assert!(ids.iter().all(|s| s.id == ids[0].id));
    assert_eq!(f.q.stats().await.unwrap().queued, 3);
}

async fn invalid_jobs_are_refused(f: &Fixture) {
    for (job, field) in [
        (gen("a").idempotency_key(""), "idempotency_key"),
        (gen("a").idempotency_key("k".repeat(300)), "idempotency_key"),
        (gen("a").callback_url("ftp://x/y"), "callback_url"),
        (gen("a").callback_url("not a url"), "callback_url"),
    ] {
        match f.q.submit(job).await {
            Err(QueueError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected Invalid({field}), got {other:?}"),
        }
    }
    assert_eq!(f.q.stats().await.unwrap().queued, 0);
}

async fn edit_images_round_trip(f: &Fixture) {
    let png = crate::support::wire::png_bytes();
    let req = EditRequest::new("hat", vec![InputImage::new(png.clone(), "cat.png")])
        .mask(InputImage::new(png.clone(), "mask.png"))
        .model("gpt-image-1");
    let s = f.q.submit(NewJob::new(req.clone())).await.unwrap();
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    let back = j.spec.request.to_request().unwrap();
    assert_eq!(back, image_router::ImageRequest::Edit(req));
}

async fn claim_order_priority_then_age(f: &Fixture) {
    let a =
        f.q.submit(gen("old-batch").class(RequestClass::BATCH))
            .await
            .unwrap();
    f.clock.advance(Duration::from_millis(1));
    let b = f.q.submit(gen("plain-1")).await.unwrap();
    f.clock.advance(Duration::from_millis(1));
    let c = f.q.submit(gen("plain-2")).await.unwrap();
    f.clock.advance(Duration::from_millis(1));
    let d =
        f.q.submit(gen("interactive").class(RequestClass::INTERACTIVE))
            .await
            .unwrap();
    let e = f.q.submit(gen("explicit").priority(500)).await.unwrap();
    let mut order = Vec::new();
    while let Some(j) = f.q.claim(&claim("w", None)).await.unwrap() {
        assert_eq!(j.state, JobState::Running);
        assert_eq!(j.lease.as_ref().unwrap().owner, "w");
        order.push(j.id);
    }
    assert_eq!(order, vec![e.id, d.id, b.id, c.id, a.id]);
}

async fn claim_respects_lanes(f: &Fixture) {
    let bulk =
        f.q.submit(gen("b").class(RequestClass::BATCH))
            .await
            .unwrap();
    let inter =
        f.q.submit(gen("i").class(RequestClass::INTERACTIVE))
            .await
            .unwrap();
    let lanes = f.q.lanes().await.unwrap();
    assert_eq!(lanes.len(), 2);
    assert_eq!(
        lanes[0].lane,
        lane_of(Some("interactive"), Some("gpt-image-1"))
    );
    assert_eq!(lanes[0].due, 1);
    let only_batch = vec![lane_of(Some("batch"), Some("gpt-image-1"))];
    let j =
        f.q.claim(&claim("w", Some(&only_batch)))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(j.id, bulk.id, "only the lane with room is claimed from");
    assert!(f
        .q
        .claim(&claim("w", Some(&only_batch)))
        .await
        .unwrap()
        .is_none());
    let none: Vec<String> = Vec::new();
    assert!(f.q.claim(&claim("w", Some(&none))).await.unwrap().is_none());
    let j = f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    assert_eq!(j.id, inter.id);
    assert!(f.q.lanes().await.unwrap().is_empty());
}

async fn claim_is_exclusive(f: &Fixture) {
    f.q.submit(gen("a")).await.unwrap();
    assert!(f.q.claim(&claim("w1", None)).await.unwrap().is_some());
    assert!(f.q.claim(&claim("w2", None)).await.unwrap().is_none());
}

async fn lease_ops_need_the_lease(f: &Fixture) {
    let s = f.q.submit(gen("a")).await.unwrap();
    let j = f.q.claim(&claim("w1", None)).await.unwrap().unwrap();
    let lost = |r: Result<(), QueueError>| matches!(r, Err(QueueError::LeaseLost { .. }));
    assert!(lost(
        f.q.heartbeat(&j.id, "w2", Duration::from_secs(30)).await
    ));
    assert!(lost(f.q.mark_sent(&j.id, "w2").await));
    assert!(matches!(
        f.q.complete(&j.id, "w2", success()).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        f.q.fail(&j.id, "w2", JobError::new("x", "y", "z"), vec![])
            .await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(lost(f.q.release(&j.id, "w2", None).await));
    assert!(matches!(
        f.q.heartbeat(&JobId::from("nope"), "w1", Duration::from_secs(1))
            .await,
        Err(QueueError::LeaseLost { .. } | QueueError::NotFound(_))
    ));
    // The holder can.
    f.q.heartbeat(&s.id, "w1", Duration::from_secs(30))
        .await
        .unwrap();
    f.q.mark_sent(&s.id, "w1").await.unwrap();
    assert!(f.q.status(&s.id).await.unwrap().unwrap().sent);
}

async fn expired_unsent_lease_requeues(f: &Fixture) {
    let s = f.q.submit(gen("a")).await.unwrap();
    f.q.claim(&claim("dead", None)).await.unwrap().unwrap();
    f.clock.advance(Duration::from_secs(29));
    assert_eq!(f.q.reclaim_expired().await.unwrap().requeued.len(), 0);
    f.clock.advance(Duration::from_secs(2));
    let r = f.q.reclaim_expired().await.unwrap();
    assert_eq!(r.requeued, vec![s.id.clone()]);
    assert!(r.failed.is_empty());
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert!(j.lease.is_none());
    assert_eq!(j.retries, 0, "never sent: not a retry");
    // The dead worker's late calls are refused.
    assert!(matches!(
        f.q.mark_sent(&s.id, "dead").await,
        Err(QueueError::LeaseLost { .. })
    ));
    let again = f.q.claim(&claim("w2", None)).await.unwrap().unwrap();
    assert_eq!(again.id, s.id);
}

async fn expired_sent_lease_fails_possibly_billed(f: &Fixture) {
    let s =
        f.q.submit(gen("a").callback_url("http://127.0.0.1:9/cb"))
            .await
            .unwrap();
    f.q.claim(&claim("dead", None)).await.unwrap().unwrap();
    f.q.mark_sent(&s.id, "dead").await.unwrap();
    f.clock.advance(Duration::from_secs(31));
    let r = f.q.reclaim_expired().await.unwrap();
    assert_eq!(r.failed, vec![s.id.clone()]);
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Failed);
    let err = j.error.unwrap();
    assert_eq!(err.kind, "possibly_billed");
    assert!(err.message.contains("may have been generated and billed"));
    assert_eq!(j.ended_ms, Some(T0_MS + 31_000));
    assert!(matches!(j.callback, CallbackState::Pending { .. }));
    assert!(f.q.claim(&claim("w2", None)).await.unwrap().is_none());
}

async fn expired_sent_lease_reruns_when_allowed(f: &Fixture) {
    let s = f.q.submit(gen("a").allow_rerun(true)).await.unwrap();
    f.q.claim(&claim("dead", None)).await.unwrap().unwrap();
    f.q.mark_sent(&s.id, "dead").await.unwrap();
    f.clock.advance(Duration::from_secs(31));
    let r = f.q.reclaim_expired().await.unwrap();
    assert_eq!(r.requeued, vec![s.id.clone()]);
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert!(!j.sent);
    assert_eq!(j.retries, 1, "a re-run of a sent request counts as a retry");
}

async fn heartbeat_keeps_the_lease(f: &Fixture) {
    let s = f.q.submit(gen("a")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    for _ in 0..5 {
        f.clock.advance(Duration::from_secs(20));
        f.q.heartbeat(&s.id, "w", Duration::from_secs(30))
            .await
            .unwrap();
        let r = f.q.reclaim_expired().await.unwrap();
        assert!(r.requeued.is_empty() && r.failed.is_empty());
    }
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!(j.lease.unwrap().expires_ms, T0_MS + 100_000 + 30_000);
}

async fn retry_later_waits_and_counts(f: &Fixture) {
    let s = f.q.submit(gen("a")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    f.q.mark_sent(&s.id, "w").await.unwrap();
    let attempt = JobAttempt {
        run: 0,
        provider: "p".into(),
        model: "gpt-image-1".into(),
        outcome: "server_error".into(),
        status: Some(500),
        ms: 3,
        error: Some("boom".into()),
        possibly_billed: false,
    };
    f.q.retry_later(
        &s.id,
        "w",
        T0_MS + 5_000,
        JobError::new("exhausted", "boom", "try later"),
        vec![attempt.clone()],
    )
    .await
    .unwrap();
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.retries, 1);
    assert!(!j.sent);
    assert_eq!(j.attempts, vec![attempt]);
    assert_eq!(j.error.as_ref().unwrap().message, "boom");
    assert!(
        f.q.claim(&claim("w", None)).await.unwrap().is_none(),
        "not before its time"
    );
    assert!(f.q.lanes().await.unwrap().is_empty());
    assert_eq!(f.q.stats().await.unwrap().queued, 1);
    f.clock.advance(Duration::from_secs(5));
    let j = f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    assert_eq!(j.run(), 1);
}

async fn release_hands_back_unsent(f: &Fixture) {
    let s = f.q.submit(gen("a")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    f.q.release(&s.id, "w", Some(T0_MS + 1_000)).await.unwrap();
    let j = f.q.status(&s.id).await.unwrap().unwrap();
    assert_eq!((j.state, j.retries), (JobState::Queued, 0));
    assert!(f.q.claim(&claim("w", None)).await.unwrap().is_none());
    f.clock.advance(Duration::from_secs(1));
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    f.q.mark_sent(&s.id, "w").await.unwrap();
    assert!(matches!(
        f.q.release(&s.id, "w", None).await,
        Err(QueueError::WrongState { .. })
    ));
    // Nothing went out after all (the router refused before any call): withdrawn, handed back.
    assert!(matches!(
        f.q.unmark_sent(&s.id, "other").await,
        Err(QueueError::LeaseLost { .. })
    ));
    f.q.unmark_sent(&s.id, "w").await.unwrap();
    assert!(!f.q.status(&s.id).await.unwrap().unwrap().sent);
    f.q.release(&s.id, "w", None).await.unwrap();
    assert_eq!(
        f.q.status(&s.id).await.unwrap().unwrap().state,
        JobState::Queued
    );
}

async fn complete_and_fail_record_everything(f: &Fixture) {
    let a =
        f.q.submit(gen("a").callback_url("http://127.0.0.1:9/cb"))
            .await
            .unwrap();
    f.clock.advance(Duration::from_millis(1));
    let b = f.q.submit(gen("b")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    f.q.mark_sent(&a.id, "w").await.unwrap();
    f.clock.advance(Duration::from_millis(250));
    let done = f.q.complete(&a.id, "w", success()).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let j = f.q.status(&a.id).await.unwrap().unwrap();
    assert_eq!(j, done);
    assert_eq!(j.provider.as_deref(), Some("p"));
    assert_eq!(j.cost_usd, Some(0.01));
    assert_eq!(j.results.len(), 1);
    assert_eq!(j.attempts.len(), 1);
    assert_eq!(j.started_ms, Some(T0_MS + 1));
    assert_eq!(j.ended_ms, Some(T0_MS + 251));
    assert!(j.lease.is_none());
    assert!(matches!(
        j.callback,
        CallbackState::Pending { attempts: 0, .. }
    ));
    // Ended: no more changes.
    assert!(f.q.complete(&a.id, "w", success()).await.is_err());

    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    let failed =
        f.q.fail(
            &b.id,
            "w",
            JobError::new("rejected", "content policy", "change the prompt"),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error.unwrap().explanation, "change the prompt");
    assert_eq!(failed.callback, CallbackState::None, "no URL: no callback");
}

async fn cancel_rules(f: &Fixture) {
    let a = f.q.submit(gen("a")).await.unwrap();
    let j = f.q.cancel(&a.id).await.unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert!(f.q.claim(&claim("w", None)).await.unwrap().is_none());
    assert!(matches!(
        f.q.cancel(&a.id).await,
        Err(QueueError::WrongState { .. })
    ));
    // Running, not sent: cancelled, and its worker's lease is gone.
    let b = f.q.submit(gen("b")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    assert_eq!(f.q.cancel(&b.id).await.unwrap().state, JobState::Cancelled);
    assert!(matches!(
        f.q.mark_sent(&b.id, "w").await,
        Err(QueueError::LeaseLost { .. })
    ));
    // Running and sent: refused.
    let c = f.q.submit(gen("c")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    f.q.mark_sent(&c.id, "w").await.unwrap();
    assert!(matches!(
        f.q.cancel(&c.id).await,
        Err(QueueError::WrongState {
            state: JobState::Running,
            ..
        })
    ));
    assert!(matches!(
        f.q.cancel(&JobId::from("nope")).await,
        Err(QueueError::NotFound(_))
    ));
}

async fn deadline_expires_queued(f: &Fixture) {
    let a =
        f.q.submit(gen("a").deadline_ms(T0_MS + 1_000))
            .await
            .unwrap();
    let b = f.q.submit(gen("b")).await.unwrap();
    f.clock.advance(Duration::from_secs(2));
    let j = f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    assert_eq!(j.id, b.id, "past its deadline: never claimed");
    f.q.reclaim_expired().await.unwrap();
    let a = f.q.status(&a.id).await.unwrap().unwrap();
    assert_eq!(a.state, JobState::Expired);
    assert!(a.ended_ms.is_some());
}

async fn list_and_stats(f: &Fixture) {
    let empty = f.q.stats().await.unwrap();
    assert_eq!(
        (empty.queued, empty.running, empty.oldest_queued_ms),
        (0, 0, None)
    );
    let a = f.q.submit(gen("a")).await.unwrap();
    f.clock.advance(Duration::from_secs(1));
    let b = f.q.submit(gen("b")).await.unwrap();
    f.clock.advance(Duration::from_secs(1));
    let c = f.q.submit(gen("c")).await.unwrap();
    f.q.claim(&claim("w", None)).await.unwrap().unwrap(); // a
    let st = f.q.stats().await.unwrap();
    assert_eq!((st.queued, st.running), (2, 1));
    assert_eq!(st.oldest_queued_ms, Some(T0_MS + 1_000));
    let queued: Vec<_> =
        f.q.list(Some(JobState::Queued), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
    assert_eq!(queued, vec![b.id.clone(), c.id.clone()]);
    assert_eq!(f.q.list(None, 2).await.unwrap().len(), 2);
    assert_eq!(f.q.list(None, 10).await.unwrap()[0].id, a.id);
    assert_eq!(
        f.q.list(Some(JobState::Running), 10).await.unwrap().len(),
        1
    );
    assert!(f
        .q
        .list(Some(JobState::Failed), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn callbacks_are_pending_then_held(f: &Fixture) {
    let a =
        f.q.submit(gen("a").callback_url("http://127.0.0.1:9/cb"))
            .await
            .unwrap();
    assert!(f
        .q
        .due_callbacks(Duration::from_secs(10), 10)
        .await
        .unwrap()
        .is_empty());
    f.q.claim(&claim("w", None)).await.unwrap().unwrap();
    f.q.complete(&a.id, "w", success()).await.unwrap();
    let due =
        f.q.due_callbacks(Duration::from_secs(10), 10)
            .await
            .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, a.id);
    assert!(
        f.q.due_callbacks(Duration::from_secs(10), 10)
            .await
            .unwrap()
            .is_empty(),
        "held by the first caller"
    );
    f.clock.advance(Duration::from_secs(11));
    assert_eq!(
        f.q.due_callbacks(Duration::from_secs(10), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let delivered = CallbackState::Delivered {
        attempts: 1,
        at_ms: T0_MS + 11_000,
        status: 200,
    };
    f.q.set_callback_state(&a.id, delivered.clone())
        .await
        .unwrap();
    assert_eq!(
        f.q.status(&a.id).await.unwrap().unwrap().callback,
        delivered
    );
    f.clock.advance(Duration::from_secs(60));
    assert!(f
        .q
        .due_callbacks(Duration::from_secs(10), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_claims_never_double(f: &Fixture) {
    let n = 200;
    for i in 0..n {
        f.q.submit(gen(&format!("p{i}"))).await.unwrap();
    }
    let mut tasks = Vec::new();
    for w in 0..8 {
        let q = f.q.clone();
        tasks.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut got = Vec::new();
            while let Some(j) = q
                .claim(&Claim {
                    worker: &worker,
                    lease: Duration::from_secs(30),
                    lanes: None,
                })
                .await
                .unwrap()
            {
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let len = all.len();
    all.sort();
    all.dedup();
    assert_eq!(len, n, "every job claimed");
    assert_eq!(all.len(), n, "no job claimed twice");
}
