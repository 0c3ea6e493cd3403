//! The router's overhead over a direct call, side by side in one run (issue 16): one loopback
//! server answering every request at once with a fixed body (`support/loopback.rs`), a tiny
//! (about 1 KB) and a realistic (1024×1024 PNG of about 1.5 MB, about 2 MB of base64) image,
//! sent by a direct reqwest call (POST, typed JSON parse, base64 decode of `data[0]`) and
//! through a `Router` with one OpenAI provider and default settings, at concurrency 1 and 64.
//!
//! A third side, `bounded`, is the direct call under a tokio timeout, the one bound the
//! router's providers give a call: not the issue's reference (a new user's call
//! has no timeout) but the cheapest call that keeps the rule the router must keep, that every
//! await is bounded; the difference between it and `direct` is that rule's cost.
//!
//! At concurrency 64 one iteration is 64 requests (64 tasks, each sending its share one after
//! the other), so the time per iteration is the inverse of the throughput; criterion also
//! prints it as requests per second.
//!
//! `failover_429`: the cost of failing over after a 429. A router whose first provider answers
//! 429 and whose second serves, against a router with only the second provider; both built
//! afresh for every request (untimed) so the first provider is tried every time (a 429 blocks
//! it for its `retry-after` afterwards). The providers use the library's shared client, so the
//! pooled connections stay open across the routers and neither side pays for a new connection.
//!
//! The README's "Benchmarks" section reports the figures.
//!
//! ```sh
//! cargo bench --bench router_overhead -- --warm-up-time 1 --measurement-time 5
//! ```

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::time::Instant;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{Answer, Payload};

/// In-flight requests of the concurrent case.
const CONCURRENCY: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    for payload in [Payload::Tiny, Payload::Realistic] {
        let (router, url) = rt.block_on(async {
            let base = loopback::serve(Answer::ok(payload)).await.expect("server");
            let router = loopback::router(&base).expect("router");
            (router, format!("{base}/images/generations"))
        });
        let client = reqwest::Client::new();
        let request = loopback::request();

        let mut group = c.benchmark_group(format!("overhead/{}", payload.name()));
        if payload == Payload::Realistic {
            group.sample_size(10);
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("direct", "c1"), |b| {
            b.to_async(&rt).iter(|| async {
                loopback::direct(&client, &url, &request)
                    .await
                    .expect("direct")
            })
        });
        group.bench_function(BenchmarkId::new("bounded", "c1"), |b| {
            b.to_async(&rt).iter(|| async {
                loopback::direct_bounded(&client, &url, &request)
                    .await
                    .expect("bounded")
            })
        });
        group.bench_function(BenchmarkId::new("router", "c1"), |b| {
            b.to_async(&rt)
                .iter(|| async { router.generate(request.clone()).await.expect("router") })
        });

        group.throughput(Throughput::Elements(CONCURRENCY));
        group.bench_function(BenchmarkId::new("direct", "c64"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (client, url, request) = (client.clone(), url.clone(), request.clone());
                concurrently(iters, move || {
                    let (client, url, request) = (client.clone(), url.clone(), request.clone());
                    async move {
                        loopback::direct(&client, &url, &request)
                            .await
                            .expect("direct");
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("bounded", "c64"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (client, url, request) = (client.clone(), url.clone(), request.clone());
                concurrently(iters, move || {
                    let (client, url, request) = (client.clone(), url.clone(), request.clone());
                    async move {
                        loopback::direct_bounded(&client, &url, &request)
                            .await
                            .expect("bounded");
                    }
                })
            })
        });
        group.bench_function(BenchmarkId::new("router", "c64"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (router, request) = (router.clone(), request.clone());
                concurrently(iters, move || {
                    let (router, request) = (router.clone(), request.clone());
                    async move {
                        router.generate(request).await.expect("router");
                    }
                })
            })
        });
        group.finish();
    }
}

/// `CONCURRENCY` tasks each doing `iters` requests of `one`; the time they all take.
async fn concurrently<F, Fut>(iters: u64, one: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                for _ in 0..iters {
                    one().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

fn failover(c: &mut Criterion) {
    let rt = runtime();
    let (limited, serving) = rt.block_on(async {
        (
            loopback::serve(Answer::rate_limited())
                .await
                .expect("server"),
            loopback::serve(Answer::ok(Payload::Tiny))
                .await
                .expect("server"),
        )
    });
    let request = loopback::request();
    let build = |bases: &[&str]| {
        let mut builder = image_router::Router::builder();
        for (i, base) in bases.iter().enumerate() {
            builder = builder.provider(
                image_router::providers::OpenAi::builder()
                    .name(format!("p{i}"))
                    .base_url(*base)
                    .api_key("sk-bench")
                    .build()
                    .expect("provider"),
            );
        }
        builder
            .strategy(image_router::Strategy::Ordered)
            .build()
            .expect("router")
    };
    let mut group = c.benchmark_group("failover_429");
    for (name, bases) in [
        ("second_provider_alone", vec![serving.as_str()]),
        ("429_then_second", vec![limited.as_str(), serving.as_str()]),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (bases, request) = (bases.clone(), request.clone());
                let bases: Vec<String> = bases.iter().map(|s| s.to_string()).collect();
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let refs: Vec<&str> = bases.iter().map(String::as_str).collect();
                        let router = build(&refs);
                        let start = Instant::now();
                        let res = router.generate(request.clone()).await.expect("served");
                        total += start.elapsed();
                        assert_eq!(res.attempts.len(), refs.len(), "one attempt per provider");
                        drop(router);
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, overhead, failover);
criterion_main!(benches);
