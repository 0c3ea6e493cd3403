//! The cost of routing: the same generation request through the `Router` (validation,
//! capability filter, ranking, provider call, classification) and through a direct reqwest call
//! to the same loopback simulator, decoding the same JSON and base64 in both cases.
//! The README reports the ratio.

use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use image_router::providers::OpenAi;
use image_router::sim::{SimAccount, Simulator};
use image_router::{GenerateRequest, ImagesResponse, Quality, Router, Size};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (sim, router, base) = rt.block_on(async {
        let sim = Simulator::builder()
            .account("openai", SimAccount::new())
            .start()
            .await
            .expect("simulator");
        let base = sim.openai_base_url("openai");
        let router = Router::builder()
            .provider(
                OpenAi::builder()
                    .base_url(base.clone())
                    .api_key("sk-bench")
                    .build()
                    .expect("provider"),
            )
            .build()
            .expect("router");
        (sim, router, base)
    });
    let request = GenerateRequest::new("a small test image")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE);
    let client = reqwest::Client::new();
    let url = format!("{base}/images/generations");

    let mut group = c.benchmark_group("generate_loopback");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("direct_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let res = client
                .post(&url)
                .bearer_auth("sk-bench")
                .json(&request)
                .send()
                .await
                .expect("send");
            let body: ImagesResponse = res.json().await.expect("json");
            let b64 = body.data[0].b64_json.as_deref().expect("b64");
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        })
    });
    group.bench_function("router", |b| {
        b.to_async(&rt)
            .iter(|| async { router.generate(request.clone()).await.expect("router") })
    });
    group.finish();
    drop(sim);
}

criterion_group!(benches, bench);
criterion_main!(benches);
