//! Provider-wide state every instance learns at once: a denial, a model cool-down, a 429's
//! block and the rate-limit headers' corrections, recorded by one instance and found by the
//! admission of another (which then sends nothing).

use std::time::Duration;

use image_router::breaker::DenyReason;
use image_router::quota::headers::RateLimitHeaders;
use image_router::quota::limiter::{BlockReason, Denied};
use image_router::store::{BudgetSettlement, Refusal, Settlement, StateStore};
use image_router::AccessDenial;
use image_router::Outcome;

use super::*;
use crate::support::redis::Server;

fn settlement<'a>(
    headers: Option<&'a RateLimitHeaders>,
    rate_limited: Option<Duration>,
) -> Settlement<'a> {
    Settlement {
        refund_rate_limit: false,
        usage: None,
        budget: BudgetSettlement::Release,
        model: MODEL,
        headers,
        rate_limited,
    }
}

async fn a_denial_on_one_instance_refuses_admission_on_another(server: Server) {
    let Some(b) = Bench::on(server, "store_deny") else {
        return;
    };
    let one = b.store("p1", "acct", limits(Some(100), None, None), &[]);
    let two = b.store("p2", "acct", limits(Some(100), None, None), &[]);
    admit(&two, 1, 1).await.unwrap();
    one.deny(
        DenyReason::AccessDenied(AccessDenial::TierAccess),
        "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    b.clock.advance(Duration::from_secs(100));
    match admit(&two, 1, 1).await {
        Err(Refusal::Unavailable(u)) => {
            assert_eq!(u.cause, Outcome::AccessDenied);
            assert!(!u.model_only);
            assert_eq!(u.remaining, Duration::from_secs(200));
            assert!(u.message.contains("try again after 0.0 seconds"));
        }
        other => panic!("expected the shared denial, got {other:?}"),
    }
    // The other instance now knows without asking: ranking reads and its breaker.
    let u = two
        .unavailable(MODEL, image_router::clock::Clock::now(&b.clock))
        .expect("cached denial");
    assert_eq!(u.cause, Outcome::AccessDenied);
    assert!(
        two.breaker().is_blocking(),
        "the shared denial opens the local breaker too"
    );
    b.clock.advance(Duration::from_secs(200));
    admit(&two, 1, 1).await.unwrap();
}

async fn a_model_cool_down_is_shared_and_per_model(server: Server) {
    let Some(b) = Bench::on(server, "store_cool") else {
        return;
    };
    let one = b.store("p1", "acct", limits(Some(100), None, None), &[]);
    let two = b.store("p2", "acct", limits(Some(100), None, None), &[]);
    let until = image_router::clock::Clock::now(&b.clock) + Duration::from_secs(60);
    one.cool_model(
        MODEL,
        Outcome::NotFound,
        "The model `gpt-image-1` does not exist",
        until,
    )
    .await
    .unwrap();
    match admit(&two, 1, 1).await {
        Err(Refusal::Unavailable(u)) => {
            assert!(u.model_only);
            assert_eq!(u.cause, Outcome::NotFound);
            assert_eq!(u.remaining, Duration::from_secs(60));
        }
        other => panic!("expected the model cool-down, got {other:?}"),
    }
    two.admit(Demand::new("gpt-image-1-mini", 1, 1), cost(0.0))
        .await
        .expect("another model is served");
    b.clock.advance(Duration::from_secs(60));
    admit(&two, 1, 1).await.unwrap();
}

async fn a_429_block_is_shared(server: Server) {
    let Some(b) = Bench::on(server, "store_429") else {
        return;
    };
    let one = b.store("p1", "acct", limits(Some(100), None, None), &[]);
    let two = b.store("p2", "acct", limits(Some(100), None, None), &[]);
    let a = admit(&one, 1, 1).await.unwrap();
    one.settle(a, settlement(None, Some(Duration::from_secs(20))))
        .await
        .unwrap();
    match admit(&two, 1, 1).await {
        Err(Refusal::RateLimit(Denied::Blocked {
            reason: BlockReason::RateLimited,
            retry_in,
            ..
        })) => assert_eq!(retry_in, Duration::from_secs(20)),
        other => panic!("expected the shared block, got {other:?}"),
    }
    b.clock.advance(Duration::from_secs(20));
    admit(&two, 1, 1).await.unwrap();
    // The back-off is shared too: half the rate now.
    assert!(two.headroom(MODEL).backoff_factor < 1.0);
}

async fn header_corrections_are_shared(server: Server) {
    let Some(b) = Bench::on(server, "store_headers") else {
        return;
    };
    let one = b.store("p1", "acct", limits(Some(10), None, None), &[]);
    let two = b.store("p2", "acct", limits(Some(10), None, None), &[]);
    let a = admit(&one, 1, 1).await.unwrap();
    // The provider counts 6 used (ours: 1): 5 used by someone else are held.
    let h = RateLimitHeaders {
        limit_requests: Some(10),
        remaining_requests: Some(4),
        reset_requests: Some(Duration::from_secs(30)),
        ..RateLimitHeaders::default()
    };
    one.settle(a, settlement(Some(&h), None)).await.unwrap();
    let mut admitted = 0;
    while admit(&two, 1, 1).await.is_ok() {
        admitted += 1;
    }
    assert_eq!(admitted, 4, "10 - 1 ours - 5 held");
    // A zero remaining blocks every instance until its reset.
    b.clock.advance(Duration::from_secs(60));
    let zero = RateLimitHeaders {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(7)),
        ..RateLimitHeaders::default()
    };
    two.observe(MODEL, &zero).await.unwrap();
    match admit(&one, 1, 1).await {
        Err(Refusal::RateLimit(Denied::Blocked {
            reason: BlockReason::RemainingRequestsZero,
            retry_in,
            ..
        })) => assert_eq!(retry_in, Duration::from_secs(7)),
        other => panic!("expected the header block, got {other:?}"),
    }
}

// Each test above that takes a `Server` runs on the single server and on the cluster.
crate::on_each_server!(
    a_denial_on_one_instance_refuses_admission_on_another,
    a_model_cool_down_is_shared_and_per_model,
    a_429_block_is_shared,
    header_corrections_are_shared,
);
