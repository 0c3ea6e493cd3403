//! The Redis state store (feature `redis`) against a real server: several stores on one
//! account behave as one window and one budget, provider-wide marks reach every instance,
//! and nothing but counts, ids, times, costs, model names and messages is written.
//!
//! Each `RedisStore` made here stands for one router instance. Tests decide time on a
//! shared `ManualClock` (`RedisStoreFactory::router_clock`) unless they test the server's
//! clock; each writes under its own key prefix (`support::redis::unique_prefix`).

// Admissions left open on purpose keep their room used (a request in flight).
#![allow(unused_must_use)]

mod budgets;
mod cluster;
mod marks;
mod router;
mod scripts;
mod windows;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use image_router::breaker::{BreakerConfig, CircuitBreaker};
use image_router::budget::{Budget, BudgetLedger, WallClock};
use image_router::clock::{ManualClock, SharedClock};
use image_router::quota::cost::{Cost, CostBasis};
use image_router::store::redis::{RedisConfig, RedisStore, RedisStoreFactory};
use image_router::store::{Admission, Demand, LimitSettings, Refusal, StateStore, StoreContext};

use crate::support::redis::{unique_prefix, Plain, Server};

pub(crate) const MODEL: &str = "gpt-image-1";

/// One test's server, prefix and clock; makes stores standing for router instances.
pub(crate) struct Bench {
    pub server: Server,
    pub url: String,
    pub prefix: String,
    pub clock: ManualClock,
    pub shared: SharedClock,
    pub wall: WallClock,
    pub factory: RedisStoreFactory,
}

impl Bench {
    /// On the single server; `None` (after a loud note) without a server outside CI.
    pub fn new(test: &str) -> Option<Self> {
        Self::on(Server::Single, test)
    }

    /// On `server` (the single server or the cluster); `None` (after a loud note) without
    /// it outside CI.
    pub fn on(server: Server, test: &str) -> Option<Self> {
        let url = server.url(test)?;
        let prefix = unique_prefix(test);
        let clock = ManualClock::new();
        let shared: SharedClock = Arc::new(clock.clone());
        let wall = WallClock::new(SystemTime::now(), shared.clone());
        let factory = Self::factory_on(server, &url, &prefix).router_clock();
        Some(Self {
            server,
            url,
            prefix,
            clock,
            shared,
            wall,
            factory,
        })
    }

    /// A factory on `server` at `url`; a generous time-out, as the test machine is shared.
    pub fn factory_on(server: Server, url: &str, prefix: &str) -> RedisStoreFactory {
        RedisStoreFactory::new(
            server
                .config(url)
                .prefix(prefix)
                .timeout(Duration::from_secs(10)),
        )
        .unwrap()
    }

    /// Another factory (another instance) on this test's server and prefix.
    pub fn factory(&self) -> RedisStoreFactory {
        Self::factory_on(self.server, &self.url, &self.prefix)
    }

    /// A store (an instance) of `provider` on `account`.
    pub fn store(
        &self,
        provider: &str,
        account: &str,
        limits: LimitSettings,
        budgets: &[Budget],
    ) -> RedisStore {
        self.store_with(&self.factory, provider, account, limits, budgets, &[])
    }

    pub fn store_with(
        &self,
        factory: &RedisStoreFactory,
        provider: &str,
        account: &str,
        limits: LimitSettings,
        budgets: &[Budget],
        router_budgets: &[Budget],
    ) -> RedisStore {
        let ledger =
            BudgetLedger::new("router", router_budgets.to_vec(), self.wall.clone()).unwrap();
        let breaker = CircuitBreaker::new(BreakerConfig::default(), self.shared.clone());
        factory
            .make_store(StoreContext::new(
                provider,
                account,
                limits,
                budgets,
                router_budgets,
                &ledger,
                &self.wall,
                &self.shared,
                breaker,
            ))
            .unwrap()
    }

    /// A plain connection for looking at the keys (on the cluster: routed by key, `KEYS`
    /// asks every primary).
    pub async fn conn(&self) -> Plain {
        self.server.plain(&self.url).await
    }

    /// Every key under this test's prefix (on every node of the cluster).
    pub async fn keys(&self) -> Vec<String> {
        let mut c = self.conn().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}:*", self.prefix))
            .query_async(&mut c)
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

/// Limits of `rpm` requests, `ipm` images and `tpm` tokens a minute on every model.
pub(crate) fn limits(rpm: Option<u32>, ipm: Option<u32>, tpm: Option<u64>) -> LimitSettings {
    let mut l = LimitSettings::new(None, rpm, tpm);
    l.ipm = ipm;
    l
}

pub(crate) fn cost(usd: f64) -> Result<Cost, image_router::quota::cost::PriceUnknown> {
    Ok(Cost {
        usd,
        basis: CostBasis::Fallback,
    })
}

pub(crate) async fn admit(
    store: &RedisStore,
    images: u32,
    tokens: u64,
) -> Result<Admission, Refusal> {
    store
        .admit(Demand::new(MODEL, images, tokens), cost(0.0))
        .await
}

/// A request admitted, sent and answered at once (settled as used, at no cost): its entry
/// counts in the window from now for 60 s. An admission left open instead is a request
/// still in flight, which stays in the window until it is settled.
pub(crate) async fn answered(store: &RedisStore, images: u32, tokens: u64) -> Result<(), Refusal> {
    let a = admit(store, images, tokens).await?;
    let settlement = image_router::store::Settlement {
        refund_rate_limit: false,
        usage: None,
        budget: image_router::store::BudgetSettlement::Commit(0.0),
        model: MODEL,
        headers: None,
        rate_limited: None,
    };
    store.settle(a, settlement).await.map_err(Refusal::Store)
}
