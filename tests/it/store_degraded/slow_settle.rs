//! A settlement that the server does not answer in time (a pause of the server, as under
//! load) is not lost: the store ends the request again from the background, so its window
//! entry counts from about the answer, not as a request in flight until the reservation's
//! time-to-live (which would hold the slot for minutes: the stall the queue's crash test
//! found with three worker processes starting at once).

use std::time::Duration;

use image_router::clock::Clock;
use image_router::store::redis::{RedisConfig, RedisStoreFactory};
use image_router::store::{BudgetSettlement, Refusal, Settlement, StateStore};

use super::outage::{redis_server, Server};
use crate::store::{admit, limits, Bench, MODEL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_that_times_out_is_ended_again_from_the_background() {
    let test = "a_settlement_that_times_out_is_ended_again_from_the_background";
    let Some(b) = Bench::new(test) else {
        return;
    };
    let Some(bin) = redis_server(test) else {
        return;
    };
    let _serial = super::SERVER.lock().await;
    let _server = Server::start(&bin);
    let factory = RedisStoreFactory::new(
        RedisConfig::new(Server::url())
            .prefix(&b.prefix)
            .timeout(Duration::from_millis(100)),
    )
    .unwrap()
    .router_clock();
    let s = b.store_with(&factory, "p", "acct", limits(Some(1), None, None), &[], &[]);
    let a = admit(&s, 1, 1).await.unwrap();

    // The server stops answering for 600 ms: the settlement times out.
    let mut admin = redis::Client::open(Server::url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(600)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let settled = s
        .settle(
            a,
            Settlement {
                refund_rate_limit: false,
                usage: None,
                budget: BudgetSettlement::Commit(0.0),
                model: MODEL,
                headers: None,
                rate_limited: None,
            },
        )
        .await;
    assert!(settled.is_err(), "the paused server did not answer in time");

    // Once it answers again, the background retries end the request (bounded wait).
    let key = format!("{{{}:acct}}:w:{MODEL}", b.prefix);
    let now_us = b.clock.now().as_micros() as f64;
    let settled_in_time = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            // The first entry of the window with its time; an error while the server is
            // still paused (the connection's own response time-out) is asked again.
            let first: Option<Vec<(String, f64)>> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES")
                .query_async(&mut admin)
                .await
                .ok();
            let score = first.and_then(|v| v.first().map(|(_, sc)| *sc));
            // Settled: the entry's time is now (in flight, it would be now + the TTL).
            if score.is_some_and(|sc| sc <= now_us) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        settled_in_time.is_ok(),
        "the entry still counts as in flight: the settlement was lost"
    );
    // So the slot is free a minute later, not after the reservation's time-to-live.
    b.clock.advance(Duration::from_secs(61));
    match admit(&s, 1, 1).await {
        Ok(_) => {}
        Err(Refusal::RateLimit(d)) => panic!("the slot is still held: {d:?}"),
        Err(other) => panic!("{other:?}"),
    }
}
