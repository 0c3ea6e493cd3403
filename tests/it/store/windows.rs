//! One window per account and model across instances: concurrent admissions never pass any
//! limit in any 60-second window, accounts are shared by name, and time is the router's
//! clock or the server's.

use std::time::Duration;

use futures_util::future::join_all;
use image_router::quota::limiter::{Denied, LimitKind};
use image_router::store::{Refusal, StateStore};
use proptest::prelude::*;

use super::*;
use crate::support::redis::Server;

/// Admits `count` demands at once, spread over `stores` (each admitted one answered at
/// once); returns how many were admitted.
async fn burst(stores: &[RedisStore], count: usize, images: u32, tokens: u64) -> usize {
    let calls = (0..count).map(|i| {
        let s = &stores[i % stores.len()];
        async move { answered(s, images, tokens).await.is_ok() }
    });
    join_all(calls).await.into_iter().filter(|ok| *ok).count()
}

async fn concurrent_admissions_over_four_instances_never_pass_rpm(server: Server) {
    let Some(b) = Bench::on(server, "store_rpm") else {
        return;
    };
    let stores: Vec<_> = (0..4)
        .map(|i| b.store(&format!("p{i}"), "acct", limits(Some(10), None, None), &[]))
        .collect();
    assert_eq!(
        burst(&stores, 100, 1, 100).await,
        10,
        "exactly the RPM at once"
    );
    b.clock.advance(Duration::from_secs(59));
    assert_eq!(
        burst(&stores, 40, 1, 100).await,
        0,
        "nothing left within the minute"
    );
    b.clock.advance(Duration::from_secs(1));
    assert_eq!(
        burst(&stores, 40, 1, 100).await,
        10,
        "the whole RPM back after 60 s"
    );
    // The refusal says when the room comes back: 60 s after the second burst.
    b.clock.advance(Duration::from_secs(15));
    match admit(&stores[3], 1, 100).await {
        Err(Refusal::RateLimit(Denied::NoRoom {
            limit: LimitKind::Requests,
            limit_value: 10,
            retry_in,
        })) => assert_eq!(retry_in, Duration::from_secs(45)),
        other => panic!("expected no room on requests, got {other:?}"),
    }
}

async fn concurrent_admissions_never_pass_ipm_or_tpm(server: Server) {
    let Some(b) = Bench::on(server, "store_ipm_tpm") else {
        return;
    };
    let stores: Vec<_> = (0..4)
        .map(|i| {
            b.store(
                &format!("p{i}"),
                "acct",
                limits(None, Some(7), Some(10_000)),
                &[],
            )
        })
        .collect();
    // Two images each: 3 requests fit in 7 images.
    assert_eq!(burst(&stores, 50, 2, 10).await, 3);
    b.clock.advance(Duration::from_secs(60));
    // 3000 tokens each: 3 fit in 10 000 tokens.
    assert_eq!(burst(&stores, 50, 1, 3_000).await, 3);
    match admit(&stores[0], 8, 10).await {
        Err(Refusal::RateLimit(Denied::NeverFitsImages {
            images: 8,
            effective_ipm: 7,
        })) => {}
        other => panic!("expected never-fits on images, got {other:?}"),
    }
    match admit(&stores[1], 1, 10_001).await {
        Err(Refusal::RateLimit(Denied::NeverFits {
            tokens: 10_001,
            effective_tpm: 10_000,
        })) => {}
        other => panic!("expected never-fits on tokens, got {other:?}"),
    }
}

async fn same_account_shares_one_window_and_other_accounts_do_not(server: Server) {
    let Some(b) = Bench::on(server, "store_accounts") else {
        return;
    };
    let l = || limits(Some(3), None, None);
    let a1 = b.store("openai-a", "org-1", l(), &[]);
    let a2 = b.store("openai-b", "org-1", l(), &[]);
    let other = b.store("openai-c", "org-2", l(), &[]);
    for _ in 0..2 {
        admit(&a1, 1, 1).await.unwrap();
    }
    admit(&a2, 1, 1).await.unwrap();
    assert!(
        admit(&a2, 1, 1).await.is_err(),
        "org-1's 3 RPM are used by both providers"
    );
    assert!(admit(&a1, 1, 1).await.is_err());
    for _ in 0..3 {
        admit(&other, 1, 1).await.unwrap();
    }
    // Each model has its own window on the account.
    let img_mini = Demand::new("gpt-image-1-mini", 1, 1);
    a1.admit(img_mini, cost(0.0)).await.unwrap();
}

async fn server_clock_decides_without_a_manual_clock(server: Server) {
    let Some(b) = Bench::on(server, "store_server_clock") else {
        return;
    };
    // The server's clock: no `router_clock()`.
    let factory = b.factory();
    let s1 = b.store_with(
        &factory,
        "p1",
        "acct",
        limits(Some(2), None, None),
        &[],
        &[],
    );
    let s2 = b.store_with(
        &factory,
        "p2",
        "acct",
        limits(Some(2), None, None),
        &[],
        &[],
    );
    admit(&s1, 1, 1).await.unwrap();
    admit(&s2, 1, 1).await.unwrap();
    match admit(&s1, 1, 1).await {
        Err(Refusal::RateLimit(Denied::NoRoom { retry_in, .. })) => {
            assert!(
                retry_in <= Duration::from_secs(60) && retry_in > Duration::from_secs(50),
                "{retry_in:?}"
            );
        }
        other => panic!("expected no room, got {other:?}"),
    }
    // The ranking read shows the shared window from the answers' cache.
    let h = s1.headroom(MODEL);
    assert_eq!(h.requests, Some(0));
    assert_eq!(h.effective_rpm, Some(2));
}

async fn keys_live_under_the_account_tag_and_hold_no_secret_or_prompt(server: Server) {
    let Some(b) = Bench::on(server, "store_keys") else {
        return;
    };
    let budgets = [Budget::new(5.0, image_router::budget::BudgetPeriod::Day).unwrap()];
    let router_budgets = [Budget::new(50.0, image_router::budget::BudgetPeriod::Month).unwrap()];
    let s = b.store_with(
        &b.factory,
        "openai",
        "org-1",
        limits(Some(5), None, None),
        &budgets,
        &router_budgets,
    );
    let a = s
        .admit(Demand::new(MODEL, 1, 272), cost(0.011))
        .await
        .unwrap();
    s.deny(
        image_router::breaker::DenyReason::Authentication,
        "Incorrect API key provided: sk-proj-fake-key-00000000",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    s.release(a);
    s.flush().await;
    let keys = b.keys().await;
    assert!(!keys.is_empty());
    let account_tag = format!("{{{}:org-1}}:", b.prefix);
    let router_tag = format!("{{{}:router}}:", b.prefix);
    for k in &keys {
        assert!(
            k.starts_with(&account_tag) || k.starts_with(&router_tag),
            "{k}"
        );
    }
    // Every stored value: no key, no prompt.
    let mut c = b.conn().await;
    for k in &keys {
        let kind: String = redis::cmd("TYPE").arg(k).query_async(&mut c).await.unwrap();
        let dump: Vec<String> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL")
                .arg(k)
                .query_async(&mut c)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(k)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut c)
                .await
                .unwrap(),
            other => panic!("unexpected key type {other} for {k}"),
        };
        for v in dump {
            assert!(!v.contains("sk-proj-fake-key"), "{k}: {v}");
            assert!(!v.contains("lighthouse"), "{k}: {v}");
        }
    }
}

/// One random demand: which instance, how long after the previous one, images, tokens.
fn demand() -> impl Strategy<Value = (usize, u64, u32, u64)> {
    (0usize..3, 0u64..9_000, 1u32..4, 1u64..4_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn no_sixty_second_window_ever_passes_a_limit(seq in proptest::collection::vec(demand(), 20..80)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let Some(b) = Bench::new("store_proptest") else { return };
            let (rpm, ipm, tpm) = (6u64, 9u64, 9_000u64);
            let stores: Vec<_> = (0..3)
                .map(|i| b.store(&format!("p{i}"), "acct", limits(Some(rpm as u32), Some(ipm as u32), Some(tpm)), &[]))
                .collect();
            let mut admitted: Vec<(Duration, u64, u64)> = Vec::new();
            for (who, gap_ms, images, tokens) in seq {
                b.clock.advance(Duration::from_millis(gap_ms));
                if admit(&stores[who], images, tokens).await.is_ok() {
                    admitted.push((image_router::clock::Clock::now(&b.clock), u64::from(images), tokens));
                }
            }
            for (i, &(t, _, _)) in admitted.iter().enumerate() {
                let window: Vec<_> = admitted[..=i]
                    .iter()
                    .filter(|(s, _, _)| *s + Duration::from_secs(60) > t)
                    .collect();
                assert!(window.len() as u64 <= rpm);
                assert!(window.iter().map(|w| w.1).sum::<u64>() <= ipm);
                assert!(window.iter().map(|w| w.2).sum::<u64>() <= tpm);
            }
        });
    }
}

#[tokio::test]
async fn ranking_reads_answer_from_a_cache_that_refreshes_in_the_background() {
    let Some(b) = Bench::new("store_cache") else {
        return;
    };
    let reader = b.store("p1", "acct", limits(Some(3), None, None), &[]);
    let writer = b.store("p2", "acct", limits(Some(3), None, None), &[]);
    answered(&reader, 1, 1).await.unwrap();
    assert_eq!(
        reader.headroom(MODEL).requests,
        Some(2),
        "from its own answer"
    );
    answered(&writer, 1, 1).await.unwrap();
    answered(&writer, 1, 1).await.unwrap();
    // A ranking read makes no call: it answers from the cache (the background task's
    // periodic refresh may already have updated it, on real time, so not asserted here).
    // Past a second the read asks the background task for a fresh look.
    b.clock.advance(Duration::from_secs(1));
    let _ = reader.headroom(MODEL);
    reader.flush().await;
    let h = reader.headroom(MODEL);
    assert_eq!(h.requests, Some(0), "the other instance's admissions show");
    assert_eq!(h.fraction, 0.0);
    match reader.rate_limit_check(Demand::new(MODEL, 1, 1)) {
        Err(Denied::NoRoom {
            limit: LimitKind::Requests,
            retry_in,
            ..
        }) => {
            assert_eq!(retry_in, Duration::from_secs(59))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.windows().len(), 1);
}

/// A look at the window (the background refresh: the admission script with `dry` set) that
/// drops expired entries from the log also lowers the log's running sums: the window has
/// its whole room again afterwards. (Once, a look pruned the log without saving the sums,
/// so they kept counting requests that were gone and nothing was admitted again.)
#[tokio::test]
async fn a_look_that_prunes_the_log_keeps_its_sums() {
    let Some(b) = Bench::new("store_look_prunes") else {
        return;
    };
    let s = b.store("p", "acct", limits(Some(3), None, None), &[]);
    for _ in 0..3 {
        answered(&s, 1, 1).await.unwrap();
    }
    assert!(admit(&s, 1, 1).await.is_err(), "full");
    b.clock.advance(Duration::from_secs(61));
    // The read asks for a fresh look; `flush` waits for it.
    let _ = s.headroom(MODEL);
    s.flush().await;
    assert_eq!(
        s.headroom(MODEL).requests,
        Some(3),
        "the look shows it empty"
    );
    for k in 0..3 {
        answered(&s, 1, 1)
            .await
            .unwrap_or_else(|e| panic!("admission {k} after the look: {e:?}"));
    }
    assert!(admit(&s, 1, 1).await.is_err(), "full again");
}

/// A request counts in the window from its settlement, and one still in flight never
/// leaves it: the provider counted it at some time before its answer, so the store lets go
/// of it no earlier than the provider can.
async fn a_request_in_flight_holds_its_slot_until_sixty_seconds_after_its_answer(server: Server) {
    let Some(b) = Bench::on(server, "store_in_flight") else {
        return;
    };
    let s = b.store("p", "acct", limits(Some(1), None, None), &[]);
    let a = admit(&s, 1, 1).await.unwrap();
    // 90 s in flight (a slow answer): still in the window, and room no earlier than a
    // minute from now.
    b.clock.advance(Duration::from_secs(90));
    match admit(&s, 1, 1).await {
        Err(Refusal::RateLimit(Denied::NoRoom { retry_in, .. })) => {
            assert_eq!(retry_in, Duration::from_secs(60))
        }
        other => panic!("expected no room while in flight, got {other:?}"),
    }
    let settlement = image_router::store::Settlement {
        refund_rate_limit: false,
        usage: None,
        budget: image_router::store::BudgetSettlement::Commit(0.0),
        model: MODEL,
        headers: None,
        rate_limited: None,
    };
    s.settle(a, settlement).await.unwrap();
    b.clock.advance(Duration::from_secs(59));
    match admit(&s, 1, 1).await {
        Err(Refusal::RateLimit(Denied::NoRoom { retry_in, .. })) => {
            assert_eq!(retry_in, Duration::from_secs(1), "60 s after the answer")
        }
        other => panic!("expected no room until 60 s after the answer, got {other:?}"),
    }
    b.clock.advance(Duration::from_secs(1));
    answered(&s, 1, 1)
        .await
        .expect("room 60 s after the answer");
}

/// Cached headroom advances with the clock: an answer that showed the window full until T
/// reads as room once T has passed, before any refresh answers; and a cache entry older
/// than the refresh interval never refuses (`rate_limit_check` says nothing until the
/// server has been asked again). Single-threaded runtime: no refresh can land between the
/// clock moving and the reads, as nothing is awaited in between.
#[tokio::test]
async fn cached_headroom_reads_a_full_window_as_room_once_its_time_has_passed() {
    let Some(b) = Bench::new("store_cache_advances") else {
        return;
    };
    let s = b.store("p", "acct", limits(Some(2), None, None), &[]);
    answered(&s, 1, 1).await.unwrap();
    answered(&s, 1, 1).await.unwrap();
    let demand = Demand::new(MODEL, 1, 1);
    assert_eq!(s.headroom(MODEL).requests, Some(0));
    match s.rate_limit_check(demand) {
        Err(Denied::NoRoom { retry_in, .. }) => assert_eq!(retry_in, Duration::from_secs(60)),
        other => panic!("a fresh full answer refuses: {other:?}"),
    }
    // Two seconds on: the answer is older than the refresh interval, so it refuses nothing.
    b.clock.advance(Duration::from_secs(2));
    assert!(s.rate_limit_check(demand).is_ok(), "stale: no refusal");
    s.flush().await;
    match s.rate_limit_check(demand) {
        Err(Denied::NoRoom { retry_in, .. }) => assert_eq!(retry_in, Duration::from_secs(58)),
        other => panic!("refreshed, still full: {other:?}"),
    }
    // Past the time the answer said: room, before any refresh has answered.
    b.clock.advance(Duration::from_secs(58));
    let h = s.headroom(MODEL);
    assert_eq!(h.requests, Some(1), "at least one request fits again");
    assert!(h.fraction > 0.0);
    s.flush().await;
    assert_eq!(
        s.headroom(MODEL).requests,
        Some(2),
        "the refresh shows it empty"
    );
}

// Each test above that takes a `Server` runs on the single server and on the cluster.
crate::on_each_server!(
    concurrent_admissions_over_four_instances_never_pass_rpm,
    concurrent_admissions_never_pass_ipm_or_tpm,
    same_account_shares_one_window_and_other_accounts_do_not,
    server_clock_decides_without_a_manual_clock,
    keys_live_under_the_account_tag_and_hold_no_secret_or_prompt,
    a_request_in_flight_holds_its_slot_until_sixty_seconds_after_its_answer,
);
