//! Unit tests of the crate-internal parts the degraded mode uses (`replay`, `connection`),
//! against the test server when `IMAGE_ROUTER_TEST_REDIS_URL` is set (skipped loudly
//! otherwise; the integration tests in `tests/it/store/` fail in CI without it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::store::ReplayEntry;
use super::{RedisConfig, RedisStoreFactory};
use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::clock::{ManualClock, SharedClock};
use crate::quota::budget::{BudgetLedger, WallClock};
use crate::quota::cost::{Cost, CostBasis};
use crate::router::store::{Demand, LimitSettings, StateStore, StoreContext};

fn server() -> Option<String> {
    match std::env::var("IMAGE_ROUTER_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u.trim().to_string()),
        _ => {
            eprintln!(
                "*** SKIPPED redis store unit test: IMAGE_ROUTER_TEST_REDIS_URL is not set ***"
            );
            None
        }
    }
}

#[tokio::test]
async fn replayed_admissions_fill_the_shared_window_at_their_times() {
    let Some(url) = server() else { return };
    let prefix = format!(
        "unit-replay-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let factory = RedisStoreFactory::new(
        RedisConfig::new(url)
            .prefix(prefix)
            .timeout(Duration::from_secs(10)),
    )
    .unwrap()
    .router_clock();
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(600));
    let shared: SharedClock = Arc::new(clock.clone());
    let wall = WallClock::new(SystemTime::now(), shared.clone());
    let ledger = BudgetLedger::new("router", vec![], wall.clone()).unwrap();
    let store = factory
        .make_store(StoreContext::new(
            "p",
            "acct",
            LimitSettings::new(None, Some(5), None),
            &[],
            &[],
            &ledger,
            &wall,
            &shared,
            CircuitBreaker::new(BreakerConfig::default(), shared.clone()),
        ))
        .unwrap();
    store
        .connection()
        .await
        .expect("a connection for heartbeats");
    let entry = |age_s: u64| ReplayEntry {
        age: Duration::from_secs(age_s),
        images: 1,
        tokens: 10,
    };
    // Three local admissions 50 s, 10 s and 0 s ago, and one too old to count.
    store
        .replay("gpt-image-1", &[entry(50), entry(10), entry(0), entry(61)])
        .await
        .unwrap();
    let cost = || {
        Ok(Cost {
            usd: 0.0,
            basis: CostBasis::Fallback,
        })
    };
    let demand = Demand::new("gpt-image-1", 1, 10);
    let mut admitted = 0;
    while store.admit(demand, cost()).await.is_ok() {
        admitted += 1;
    }
    assert_eq!(admitted, 2, "5 RPM minus the 3 replayed in the window");
    // The one from 50 s ago leaves 10 s from now.
    clock.advance(Duration::from_secs(10));
    assert!(store.admit(demand, cost()).await.is_ok());
    assert!(store.admit(demand, cost()).await.is_err());
}
