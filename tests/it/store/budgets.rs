//! Budgets reserved and settled on the server: no interleaving of instances spends past a
//! budget; release frees, hold keeps until the period ends; a reservation nobody ends is
//! held after its time-to-live; the router-wide budget is shared by every account.

use std::time::Duration;

use futures_util::future::join_all;
use image_router::budget::{BudgetError, BudgetExhausted, BudgetPeriod};
use image_router::store::{BudgetSettlement, Refusal, Settlement, StateStore};

use super::*;
use crate::support::redis::Server;

const COST: f64 = 0.013;

fn commit(usd: f64) -> Settlement<'static> {
    Settlement {
        refund_rate_limit: false,
        usage: None,
        budget: BudgetSettlement::Commit(usd),
        model: MODEL,
        headers: None,
        rate_limited: None,
    }
}

/// The budget's figures, read by an admission that cannot fit ($1000).
async fn figures(s: &RedisStore) -> BudgetExhausted {
    match s.admit(Demand::new(MODEL, 1, 1), cost(1000.0)).await {
        Err(Refusal::Budget(BudgetError::Exhausted(e))) => e,
        other => panic!("expected a budget refusal, got {other:?}"),
    }
}

async fn a_thousand_concurrent_admissions_over_four_instances_never_reserve_past_the_budget(
    server: Server,
) {
    let Some(b) = Bench::on(server, "store_budget") else {
        return;
    };
    let budget = [Budget::new(1.00, BudgetPeriod::Day).unwrap()];
    let stores: Vec<_> = (0..4)
        .map(|i| b.store(&format!("p{i}"), "acct", limits(None, None, None), &budget))
        .collect();
    let calls = (0..1000).map(|i| {
        let s = &stores[i % 4];
        async move { s.admit(Demand::new(MODEL, 1, 1), cost(COST)).await }
    });
    let mut admitted = Vec::new();
    for (i, r) in join_all(calls).await.into_iter().enumerate() {
        match r {
            Ok(a) => admitted.push((i % 4, a)),
            Err(Refusal::Budget(BudgetError::Exhausted(e))) => {
                assert!(e.spent_usd + e.reserved_usd <= 1.0 + 1e-9, "{e:?}")
            }
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    let most = (1.0 / COST).floor() as usize;
    assert_eq!(admitted.len(), most, "exactly what $1.00 covers");
    let e = figures(&stores[2]).await;
    assert!(e.reserved_usd <= 1.0 + 1e-9);
    println!(
        "1000 concurrent admissions at ${COST} over 4 instances on $1.00: {} admitted, ${:.3} reserved",
        admitted.len(),
        e.reserved_usd
    );
    // Every other one cancelled (released), the rest committed at the estimate.
    let mut committed = 0;
    for (n, (who, a)) in admitted.into_iter().enumerate() {
        if n % 2 == 0 {
            stores[who].release(a);
        } else {
            committed += 1;
            stores[who].settle(a, commit(COST)).await.unwrap();
        }
    }
    stores[0].flush().await;
    let e = figures(&stores[1]).await;
    assert!(
        (e.spent_usd - committed as f64 * COST).abs() < 1e-6,
        "{e:?}"
    );
    assert!(
        e.reserved_usd.abs() < 1e-9,
        "released reservations are free again: {e:?}"
    );
    assert!((stores[1].spent_usd() - committed as f64 * COST).abs() < 1e-6);
}

async fn release_frees_and_hold_keeps_until_the_period_ends(server: Server) {
    let Some(b) = Bench::on(server, "store_hold") else {
        return;
    };
    let hour = BudgetPeriod::Custom(Duration::from_secs(3600));
    let budget = [Budget::new(1.00, hour).unwrap()];
    let one = b.store("p1", "acct", limits(None, None, None), &budget);
    let two = b.store("p2", "acct", limits(None, None, None), &budget);
    let a = one
        .admit(Demand::new(MODEL, 1, 1), cost(0.6))
        .await
        .unwrap();
    assert!(two
        .admit(Demand::new(MODEL, 1, 1), cost(0.6))
        .await
        .is_err());
    one.release(a);
    one.flush().await;
    let a = two
        .admit(Demand::new(MODEL, 1, 1), cost(0.6))
        .await
        .expect("released");
    two.hold(a);
    two.flush().await;
    let e = figures(&one).await;
    assert!((e.reserved_usd - 0.6).abs() < 1e-9, "held counts: {e:?}");
    assert!(one
        .admit(Demand::new(MODEL, 1, 1), cost(0.6))
        .await
        .is_err());
    assert!((one.budget_left().unwrap() - 0.4).abs() < 1e-9);
    // The next period starts free.
    b.clock.advance(Duration::from_secs(3600));
    one.admit(Demand::new(MODEL, 1, 1), cost(0.6))
        .await
        .expect("a new period");
}

/// A request that costs nothing (a price of zero) on an account and router with budgets:
/// its reservation of zero ends like any other. (Lua sent the negated zero as "-0", which
/// `HINCRBY` refused, so such a settlement failed until the scripts wrote `0 - amount`.)
async fn a_zero_cost_reservation_on_budgets_ends_cleanly(server: Server) {
    let Some(b) = Bench::on(server, "store_zero_cost") else {
        return;
    };
    let day = [Budget::new(1.00, BudgetPeriod::Day).unwrap()];
    let s = b.store_with(
        &b.factory,
        "p1",
        "acct",
        limits(None, None, None),
        &day,
        &day,
    );
    answered(&s, 1, 1).await.expect("committed at zero cost");
    let a = admit(&s, 1, 1).await.unwrap();
    s.release(a);
    s.flush().await;
    let a = admit(&s, 1, 1).await.unwrap();
    s.hold(a);
    s.flush().await;
    assert!(s.spent_usd().abs() < 1e-12);
    assert!((s.budget_left().unwrap() - 1.0).abs() < 1e-9);
}

async fn a_reservation_nobody_ends_is_held_after_its_time_to_live(server: Server) {
    let Some(b) = Bench::on(server, "store_ttl") else {
        return;
    };
    let factory = b
        .factory()
        .router_clock()
        .reservation_ttl(Duration::from_secs(120));
    let budget = [Budget::new(1.00, BudgetPeriod::Day).unwrap()];
    let crashed = b.store_with(
        &factory,
        "p1",
        "acct",
        limits(None, None, None),
        &budget,
        &[],
    );
    let alive = b.store_with(
        &factory,
        "p2",
        "acct",
        limits(None, None, None),
        &budget,
        &[],
    );
    // An instance admits, then "crashes": the admission is never ended.
    let lost = crashed
        .admit(Demand::new(MODEL, 1, 1), cost(0.3))
        .await
        .unwrap();
    std::mem::forget(lost);
    let mut c = b.conn().await;
    let records = format!("{{{}:acct}}:rd", b.prefix);
    let n: usize = redis::cmd("HLEN")
        .arg(&records)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 1);
    b.clock.advance(Duration::from_secs(121));
    // The next admission on the account ends it: held (it may have been billed).
    let e = figures(&alive).await;
    assert!((e.reserved_usd - 0.3).abs() < 1e-9, "{e:?}");
    let n: usize = redis::cmd("HLEN")
        .arg(&records)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 0, "the expired reservation is gone");
    let budget_key = format!("{{{}:acct}}:b:day:", b.prefix);
    let keys = b.keys().await;
    let key = keys.iter().find(|k| k.starts_with(&budget_key)).unwrap();
    let (reserved, held): (i64, i64) = redis::cmd("HMGET")
        .arg(key)
        .arg("reserved")
        .arg("held")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((reserved, held), (0, 300_000_000));
}

async fn the_router_wide_budget_is_shared_by_every_account_and_compensated_on_refusal(
    server: Server,
) {
    let Some(b) = Bench::on(server, "store_router_budget") else {
        return;
    };
    let router = [Budget::new(1.00, BudgetPeriod::Month).unwrap()];
    let small = [Budget::new(0.5, BudgetPeriod::Day).unwrap()];
    let x = b.store_with(
        &b.factory,
        "x",
        "org-x",
        limits(None, None, None),
        &small,
        &router,
    );
    let y = b.store_with(
        &b.factory,
        "y",
        "org-y",
        limits(None, None, None),
        &[],
        &router,
    );
    let ax = x.admit(Demand::new(MODEL, 1, 1), cost(0.4)).await.unwrap();
    // org-x's own budget refuses: the router-wide reservation is given back.
    assert!(matches!(
        x.admit(Demand::new(MODEL, 1, 1), cost(0.4)).await,
        Err(Refusal::Budget(BudgetError::Exhausted(ref e))) if e.ledger == "x"
    ));
    let ay = y
        .admit(Demand::new(MODEL, 1, 1), cost(0.6))
        .await
        .expect("0.4 + 0.6 fit in $1");
    match y.admit(Demand::new(MODEL, 1, 1), cost(0.01)).await {
        Err(Refusal::Budget(BudgetError::Exhausted(e))) => assert_eq!(e.ledger, "router"),
        other => panic!("expected the router-wide budget, got {other:?}"),
    }
    x.settle(ax, commit(0.1)).await.unwrap();
    y.release(ay);
    y.flush().await;
    y.admit(Demand::new(MODEL, 1, 1), cost(0.9))
        .await
        .expect("0.1 spent, 0.9 free");
}

// Each test above that takes a `Server` runs on the single server and on the cluster.
crate::on_each_server!(
    a_zero_cost_reservation_on_budgets_ends_cleanly,
    a_thousand_concurrent_admissions_over_four_instances_never_reserve_past_the_budget,
    release_frees_and_hold_keeps_until_the_period_ends,
    a_reservation_nobody_ends_is_held_after_its_time_to_live,
    the_router_wide_budget_is_shared_by_every_account_and_compensated_on_refusal,
);
