//! The cost of sharing state through Redis: one admission (the atomic check-and-reserve of
//! every rate-limit dimension and budget) through the Redis store on loopback against the
//! in-process store, and the whole router request (the loopback simulator, one provider)
//! with each store. The README reports both.
//!
//! The Redis half needs a server: `IMAGE_ROUTER_TEST_REDIS_URL=redis://127.0.0.1:PORT/`
//! (the variable the tests read); without it only the in-process figures are measured, and
//! the bench says so. With `IMAGE_ROUTER_TEST_REDIS_CLUSTER_URLS` (the cluster tests' node
//! URLs, comma-separated) the Redis store on a loopback Redis Cluster is measured too. Keys go
//! under a prefix of their own (`bench-store-<pid>`).
//!
//! How the store is reached: a [`StoreFactory`] that wraps the real one and keeps the store
//! it makes for the router's one provider, so the bench calls exactly what a request calls
//! (`admit`, then `release`: the request was never sent, everything is given back).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use image_router::providers::OpenAi;
use image_router::quota::cost::{Cost, CostBasis};
use image_router::sim::{SimAccount, Simulator};
use image_router::store::redis::{RedisConfig, RedisStoreFactory};
use image_router::store::{Demand, InProcessFactory, StateStore, StoreContext, StoreFactory};
use image_router::ConfigError;
use image_router::{GenerateRequest, ProviderOptions, Quality, Router, Size};

/// Makes stores with `inner` and keeps the last one.
#[derive(Debug)]
struct Keep {
    inner: Arc<dyn StoreFactory>,
    made: Mutex<Option<Arc<dyn StateStore>>>,
}

impl StoreFactory for Keep {
    fn make(&self, ctx: StoreContext<'_>) -> Result<Arc<dyn StateStore>, ConfigError> {
        let store = self.inner.make(ctx)?;
        *self.made.lock().expect("lock") = Some(store.clone());
        Ok(store)
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// A router on the simulator's account with the store `inner` makes, and that store.
fn router(sim: &Simulator, inner: Arc<dyn StoreFactory>) -> (Router, Arc<dyn StateStore>) {
    let keep = Arc::new(Keep {
        inner,
        made: Mutex::new(None),
    });
    let router = Router::builder()
        .provider_with(
            OpenAi::builder()
                .base_url(sim.openai_base_url("openai"))
                .api_key("sk-bench")
                .build()
                .expect("provider"),
            // Limits far above what the bench can use: every admission succeeds.
            ProviderOptions::new()
                .rpm(100_000_000)
                .tpm(u64::MAX / 4)
                .account("bench"),
        )
        .store(keep.clone())
        .build()
        .expect("router");
    let store = keep.made.lock().expect("lock").clone().expect("a store");
    (router, store)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = rt.block_on(async {
        Simulator::builder()
            .account("openai", SimAccount::new())
            .start()
            .await
            .expect("simulator")
    });
    let mut stores: Vec<(&str, Arc<dyn StoreFactory>)> =
        vec![("in_process", Arc::new(InProcessFactory))];
    match std::env::var("IMAGE_ROUTER_TEST_REDIS_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let config = RedisConfig::new(url.trim().to_string())
                .prefix(format!("bench-store-{}", std::process::id()))
                .timeout(Duration::from_millis(500));
            stores.push((
                "redis_loopback",
                Arc::new(RedisStoreFactory::new(config).expect("redis config")),
            ));
        }
        _ => eprintln!(
            "\n*** benches/store: IMAGE_ROUTER_TEST_REDIS_URL is not set: measuring the \
             in-process store only ***\n"
        ),
    }
    if let Ok(urls) = std::env::var("IMAGE_ROUTER_TEST_REDIS_CLUSTER_URLS") {
        if !urls.trim().is_empty() {
            let config = RedisConfig::new(urls.trim().to_string())
                .cluster(true)
                .prefix(format!("bench-store-{}", std::process::id()))
                .timeout(Duration::from_millis(500));
            stores.push((
                "redis_cluster_loopback",
                Arc::new(RedisStoreFactory::new(config).expect("redis cluster config")),
            ));
        }
    }
    let built: Vec<(&str, Router, Arc<dyn StateStore>)> = stores
        .into_iter()
        .map(|(name, f)| {
            let (r, s) = router(&sim, f);
            (name, r, s)
        })
        .collect();
    let cost = Cost {
        usd: 0.011,
        basis: CostBasis::Estimate,
    };

    let mut group = c.benchmark_group("store_admission");
    group.measurement_time(Duration::from_secs(5));
    for (name, _, store) in &built {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| async {
                let a = store
                    .admit(Demand::new("gpt-image-1", 1, 300), Ok(cost))
                    .await
                    .expect("admitted");
                store.release(a);
            })
        });
    }
    group.finish();

    let request = GenerateRequest::new("a small test image")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE);
    let mut group = c.benchmark_group("store_router_request");
    group.measurement_time(Duration::from_secs(5));
    for (name, router, _) in &built {
        group.bench_function(*name, |b| {
            b.to_async(&rt)
                .iter(|| async { router.generate(request.clone()).await.expect("router") })
        });
    }
    group.finish();
    drop(built);
    drop(sim);
}

criterion_group!(benches, bench);
criterion_main!(benches);
