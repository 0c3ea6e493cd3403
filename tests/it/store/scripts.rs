//! Edge cases of the store's Lua scripts, through the store: refunds, usage reconciliation,
//! held capacity in the retry time, a settlement of an unknown admission, reload.

use std::time::Duration;

use image_router::quota::headers::RateLimitHeaders;
use image_router::quota::limiter::Denied;
use image_router::store::{BudgetSettlement, Refusal, Settlement, StateStore};
use image_router::Usage;

use super::*;
use crate::support::redis::Server;

fn settlement<'a>(
    refund: bool,
    usage: Option<&'a Usage>,
    headers: Option<&'a RateLimitHeaders>,
) -> Settlement<'a> {
    Settlement {
        refund_rate_limit: refund,
        usage,
        budget: BudgetSettlement::Release,
        model: MODEL,
        headers,
        rate_limited: None,
    }
}

async fn a_refund_gives_the_room_back_and_usage_replaces_the_estimate(server: Server) {
    let Some(b) = Bench::on(server, "lua_refund") else {
        return;
    };
    let s = b.store("p", "acct", limits(Some(2), None, Some(10_000)), &[]);
    let a = admit(&s, 1, 6_000).await.unwrap();
    assert!(admit(&s, 1, 6_000).await.is_err(), "tokens full");
    let mut usage = Usage::default();
    usage.total_tokens = 1_000;
    s.settle(a, settlement(false, Some(&usage), None))
        .await
        .unwrap();
    let a = admit(&s, 1, 9_000)
        .await
        .expect("1000 + 9000 fit after reconciliation");
    assert!(admit(&s, 1, 1).await.is_err(), "two requests: RPM full");
    s.settle(a, settlement(true, None, None)).await.unwrap();
    admit(&s, 1, 9_000)
        .await
        .expect("the refunded request left the window");
}

async fn held_capacity_counts_in_the_retry_time(server: Server) {
    let Some(b) = Bench::on(server, "lua_held") else {
        return;
    };
    let s = b.store("p", "acct", limits(Some(3), None, None), &[]);
    let a = admit(&s, 1, 1).await.unwrap();
    // Others use 2 until the reset in 20 s.
    let h = RateLimitHeaders {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(20)),
        ..RateLimitHeaders::default()
    };
    s.settle(a, settlement(false, None, Some(&h)))
        .await
        .unwrap();
    b.clock.advance(Duration::from_secs(20));
    // The zero-remaining block and the held 2 have ended: 2 more fit (ours is still in).
    admit(&s, 1, 1).await.unwrap();
    admit(&s, 1, 1).await.unwrap();
    match admit(&s, 1, 1).await {
        Err(Refusal::RateLimit(Denied::NoRoom { retry_in, .. })) => {
            assert_eq!(
                retry_in,
                Duration::from_secs(40),
                "the first entry leaves at 60 s"
            )
        }
        other => panic!("{other:?}"),
    }
}

async fn settling_an_admission_the_store_does_not_know_only_applies_the_headers(server: Server) {
    let Some(b) = Bench::on(server, "lua_unknown") else {
        return;
    };
    let s = b.store("p", "acct", limits(Some(5), None, None), &[]);
    let other = b.store("q", "acct", limits(Some(5), None, None), &[]);
    let a = admit(&other, 1, 1).await.unwrap();
    let h = RateLimitHeaders {
        remaining_requests: Some(0),
        reset_requests: Some(Duration::from_secs(3)),
        ..RateLimitHeaders::default()
    };
    // Settled on a store that did not admit it: no budget or window change, headers apply.
    s.settle(a, settlement(true, None, Some(&h))).await.unwrap();
    assert!(matches!(
        admit(&other, 1, 1).await,
        Err(Refusal::RateLimit(Denied::Blocked { .. }))
    ));
    b.clock.advance(Duration::from_secs(3));
    for _ in 0..4 {
        admit(&other, 1, 1).await.unwrap();
    }
    assert!(
        admit(&other, 1, 1).await.is_err(),
        "the first admission still counts: 5 in the window"
    );
}

#[tokio::test]
async fn a_store_without_a_server_fails_fast_with_a_store_error() {
    let factory = RedisStoreFactory::new(
        RedisConfig::new("redis://:secret-pw@127.0.0.1:1/".to_string())
            .timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock);
    let wall = WallClock::new(SystemTime::now(), shared.clone());
    let ledger = BudgetLedger::new("router", vec![], wall.clone()).unwrap();
    let s = factory
        .make_store(StoreContext::new(
            "p",
            "acct",
            limits(Some(5), None, None),
            &[],
            &[],
            &ledger,
            &wall,
            &shared,
            CircuitBreaker::new(BreakerConfig::default(), shared.clone()),
        ))
        .unwrap();
    match admit(&s, 1, 1).await {
        Err(Refusal::Store(e)) => assert!(!e.to_string().contains("secret-pw"), "{e}"),
        other => panic!("expected a store error, got {other:?}"),
    }
    // Ranking reads answer from the configured limits, with no call.
    assert_eq!(s.headroom(MODEL).requests, Some(5));
}

// Each test above that takes a `Server` runs on the single server and on the cluster.
crate::on_each_server!(
    a_refund_gives_the_room_back_and_usage_replaces_the_estimate,
    held_capacity_counts_in_the_retry_time,
    settling_an_admission_the_store_does_not_know_only_applies_the_headers,
);
