//! Single-flight through the router, against the scripted fake on tokio's paused clock (the
//! fake's latency keeps the first call in flight while the others arrive).

use std::time::Duration;

use image_router::{ErrorKind, ImageResponse};

use super::{req, router};
use crate::support::{shared, Fake, Step};

/// Sends `n` identical requests at once and collects the answers.
async fn concurrently(
    router: &image_router::Router,
    n: usize,
) -> Vec<Result<ImageResponse, image_router::Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let r = router.clone();
            tokio::spawn(async move { r.generate(req()).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_hundred_identical_requests_make_one_upstream_call() {
    let (p, fake) = shared(Fake::new("openai"));
    fake.set_latency(Duration::from_secs(2));
    let router = router(p);
    let answers = concurrently(&router, 100).await;
    assert_eq!(fake.calls(), 1);
    let answers: Vec<ImageResponse> = answers.into_iter().map(Result::unwrap).collect();
    let paid: Vec<&ImageResponse> = answers.iter().filter(|a| !a.cached).collect();
    assert_eq!(paid.len(), 1, "one leader paid");
    assert_eq!(paid[0].attempts.len(), 1);
    for a in answers.iter().filter(|a| a.cached) {
        assert_eq!(a.images, paid[0].images);
        assert_eq!(a.cost_usd, Some(0.0));
        assert!(a.attempts.is_empty());
        assert_eq!(
            (a.provider.as_str(), a.model.as_str()),
            ("openai", "gpt-image-1")
        );
    }
    let stats = router.cache_stats().await.unwrap();
    assert_eq!((stats.hits, stats.misses, stats.entries), (99, 1, 1));
    // Later, from memory: still one call.
    assert!(router.generate(req()).await.unwrap().cached);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_leader_hands_over_to_a_waiter() {
    let (p, fake) = shared(Fake::new("openai"));
    fake.set_latency(Duration::from_secs(10));
    let router = router(p);
    let r = router.clone();
    let leader = tokio::spawn(async move { r.generate(req()).await });
    while fake.calls() == 0 {
        tokio::task::yield_now().await;
    }
    let r = router.clone();
    let waiter = tokio::spawn(async move { r.generate(req()).await });
    let r = router.clone();
    let dropped_waiter = tokio::spawn(async move { r.generate(req()).await });
    // Virtual time: both waiters are parked on the flight by now, the leader mid-call.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.calls(), 1);
    dropped_waiter.abort();
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert!(dropped_waiter.await.unwrap_err().is_cancelled());
    let res = waiter.await.unwrap().unwrap();
    assert!(!res.cached, "the waiter led the second call itself");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_does_not_cancel_the_others() {
    let (p, fake) = shared(Fake::new("openai"));
    fake.set_latency(Duration::from_secs(10));
    let router = router(p);
    let spawn = |router: &image_router::Router| {
        let r = router.clone();
        tokio::spawn(async move { r.generate(req()).await })
    };
    let leader = spawn(&router);
    while fake.calls() == 0 {
        tokio::task::yield_now().await;
    }
    let (a, b) = (spawn(&router), spawn(&router));
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.abort();
    assert!(!leader.await.unwrap().unwrap().cached);
    assert!(b.await.unwrap().unwrap().cached);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_every_waiters_answer_after_one_call() {
    let (p, fake) =
        shared(Fake::new("openai").then(Step::Fail(ErrorKind::InvalidRequest, Some(400), None)));
    fake.set_latency(Duration::from_secs(2));
    let router = router(p);
    let answers = concurrently(&router, 20).await;
    assert_eq!(fake.calls(), 1, "nobody called again");
    for a in &answers {
        let e = a.as_ref().unwrap_err();
        assert!(e.is_invalid(), "{e}");
    }
    // The error is not cached: the next request calls again (and the script now says yes).
    assert!(!router.generate(req()).await.unwrap().cached);
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_hands_the_call_to_one_waiter() {
    let (p, fake) =
        shared(Fake::new("openai").then(Step::Fail(ErrorKind::Server, Some(500), None)));
    fake.set_latency(Duration::from_secs(2));
    let router = router(p);
    let answers = concurrently(&router, 20).await;
    assert_eq!(fake.calls(), 2, "the failed call and one take-over");
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "only the first leader saw the 500");
    assert!(failed[0].cause().unwrap().is_transient());
    let ok: Vec<_> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(ok.len(), 19);
    assert_eq!(ok.iter().filter(|r| !r.cached).count(), 1, "one new leader");
}

#[tokio::test(start_paused = true)]
async fn waiters_give_up_at_the_deadline() {
    let (p, fake) = shared(Fake::new("openai").default_step(Step::Hang));
    let router = image_router::Router::builder()
        .provider(p)
        .max_attempts(1)
        .attempt_timeout(Duration::from_secs(300))
        .deadline(Duration::from_secs(30))
        .cache(image_router::cache::CacheConfig::new())
        .build()
        .unwrap();
    let answers = concurrently(&router, 5).await;
    assert_eq!(fake.calls(), 1);
    for a in answers {
        assert!(a.unwrap_err().is_deadline_exceeded());
    }
}
