//! Heartbeats against the test server: instances announce themselves per account, the count
//! follows them, and a silent instance expires after three intervals.

use std::sync::Arc;
use std::time::Duration;

use image_router::clock::{ManualClock, SharedClock};
use image_router::store::redis::{Heartbeat, HeartbeatClock, RedisConfig};

use crate::support::redis::{unique_prefix, Server};

fn config_on(server: Server, url: &str, prefix: &str, every: Duration) -> RedisConfig {
    server
        .config(url)
        .prefix(prefix)
        .heartbeat(every)
        .timeout(Duration::from_secs(2))
}

async fn three_instances_count_three_and_a_silent_one_expires(server: Server) {
    let Some(url) = server.url("three_instances_count_three_and_a_silent_one_expires") else {
        return;
    };
    let prefix = unique_prefix("heartbeat");
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let every = Duration::from_secs(1);
    let beats: Vec<Arc<Heartbeat>> = (0..3)
        .map(|_| {
            Heartbeat::new(
                &config_on(server, &url, &prefix, every),
                HeartbeatClock::Router(shared.clone()),
            )
            .unwrap()
        })
        .collect();
    let counts: Vec<_> = beats.iter().map(|b| b.join("acct")).collect();
    for (i, b) in beats.iter().enumerate() {
        let read = b.beat().await.unwrap();
        assert_eq!(
            read["acct"],
            i as u32 + 1,
            "each beat sees the ones before it"
        );
    }
    for b in &beats {
        b.beat().await.unwrap();
    }
    assert!(counts.iter().all(|c| c.get() == 3));

    // The key is in the account's hash slot and expires on its own.
    let key = beats[0].key("acct");
    assert_eq!(key, format!("{{{prefix}:acct}}:instances"));
    let mut conn = server.plain(&url).await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(&key)
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(members.len(), 3);
    for b in &beats {
        assert!(members.contains(&b.id().to_string()));
        assert_eq!(b.id().len(), 32, "128 random bits in hex");
    }
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 3_000, "{pttl}");

    // The third instance stops beating; two intervals later it still counts.
    clock.advance(Duration::from_secs(2));
    beats[0].beat().await.unwrap();
    beats[1].beat().await.unwrap();
    assert_eq!(counts[0].get(), 3);
    // Past three intervals since its last beat it is gone.
    clock.advance(Duration::from_millis(1_500));
    beats[0].beat().await.unwrap();
    let read = beats[1].beat().await.unwrap();
    assert_eq!(read["acct"], 2);
    assert_eq!(counts[0].get(), 2);
    assert_eq!(counts[1].get(), 2);
    // The silent one keeps its last known count.
    assert_eq!(counts[2].get(), 3);
}

async fn accounts_are_counted_apart(server: Server) {
    let Some(url) = server.url("accounts_are_counted_apart") else {
        return;
    };
    let prefix = unique_prefix("heartbeat-accounts");
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let make = || {
        Heartbeat::new(
            &config_on(server, &url, &prefix, Duration::from_secs(1)),
            HeartbeatClock::Router(shared.clone()),
        )
        .unwrap()
    };
    let (a, b) = (make(), make());
    let a_one = a.join("one");
    let a_two = a.join("two");
    let b_one = b.join("one");
    a.beat().await.unwrap();
    b.beat().await.unwrap();
    a.beat().await.unwrap();
    assert_eq!(a_one.get(), 2);
    assert_eq!(b_one.get(), 2);
    assert_eq!(a_two.get(), 1);
}

/// The background task on the server's clock: two started heartbeats see each other; one
/// dropped leaves at once (its member removed) and its task ends with it.
async fn started_heartbeats_see_each_other_and_a_dropped_one_leaves(server: Server) {
    let Some(url) = server.url("started_heartbeats_see_each_other_and_a_dropped_one_leaves") else {
        return;
    };
    let prefix = unique_prefix("heartbeat-task");
    let every = Duration::from_millis(50);
    let a = Heartbeat::new(
        &config_on(server, &url, &prefix, every),
        HeartbeatClock::Server,
    )
    .unwrap();
    let b = Heartbeat::new(
        &config_on(server, &url, &prefix, every),
        HeartbeatClock::Server,
    )
    .unwrap();
    let count = a.join("acct");
    let _ = b.join("acct");
    a.start();
    b.start();
    a.start(); // a second start does nothing
               // Real but short waits, bounded: the task beats every 50 ms.
    let wait_for = |n: u32| {
        let count = count.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while count.get() != n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("count never reached {n}: {}", count.get()));
        }
    };
    wait_for(2).await;
    let key = a.key("acct");
    let weak = Arc::downgrade(&b);
    drop(b);
    assert!(
        weak.upgrade().is_none(),
        "the task holds no strong reference"
    );
    wait_for(1).await;
    let mut conn = server.plain(&url).await;
    let n: u32 = redis::cmd("ZCARD")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

// The tests above that take a `Server` run on the single server and on the cluster.
crate::on_each_server!(
    three_instances_count_three_and_a_silent_one_expires,
    accounts_are_counted_apart,
    started_heartbeats_see_each_other_and_a_dropped_one_leaves,
);
