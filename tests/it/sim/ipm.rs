//! Images per minute on the simulator: a request weighs its `n`, per account and per model,
//! answered with the IPM 429's body and headers.

use super::*;
use image_router::catalog::ModelTierLimits;
use image_router::providers::classify::classify;
use image_router::ErrorKind;

fn n_images(model: &str, n: u8) -> Value {
    if model.starts_with("dall-e") {
        return json!({"model": model, "prompt": "abcd", "n": n, "size": "256x256"});
    }
    json!({"model": model, "prompt": "abcd", "quality": "low", "n": n})
}

async fn sim_with(acct: SimAccount) -> (Simulator, ManualClock) {
    let clock = ManualClock::new();
    clock.set(Duration::from_secs(1000));
    let sim = Simulator::builder()
        .account("o", acct)
        .clock(Arc::new(clock.clone()) as Arc<dyn Clock>)
        .start()
        .await
        .unwrap();
    (sim, clock)
}

#[tokio::test]
async fn n_weighs_n_images_and_the_429_names_images_per_minute() {
    let (sim, clock) = sim_with(SimAccount::new().ipm(5)).await;
    let url = gen_url(&sim, "o");
    let a = post(&url, None, n_images("gpt-image-1", 4)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"].as_array().unwrap().len(), 4);
    // No images header is invented; an IPM-only account sends no x-ratelimit-* at all.
    assert!(
        a.headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-ratelimit-")),
        "{:?}",
        a.headers
    );
    clock.advance(Duration::from_secs(10));
    // 4 of 5 used: a request for 2 images is refused until the first 4 leave (t0 + 60 s).
    let a = post(&url, None, n_images("gpt-image-1", 2)).await;
    assert_eq!(a.status, 429);
    let retry = Duration::from_secs(50);
    assert_eq!(
        error_of(&a),
        &json!({
            "message": format!(
                "Rate limit reached for gpt-image-1 in organization org-sim on images per min (IPM): Limit 5, Used 4, Requested 2. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                format_go_duration(retry)
            ),
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded"
        })
    );
    assert_eq!(a.h("retry-after"), Some("50"));
    assert_eq!(a.h("retry-after-ms"), Some("50000"));
    // A refused request does not count: one image still fits, then none.
    assert_eq!(
        post(&url, None, n_images("gpt-image-1", 1)).await.status,
        200
    );
    assert_eq!(
        post(&url, None, n_images("gpt-image-1", 1)).await.status,
        429
    );
    let st = sim.stats("o");
    assert_eq!((st.images, st.rate_limited), (5, 2));
    assert_eq!(sim.window("o").unwrap().images, 5);
    // After the minute the first four have left.
    clock.advance(Duration::from_secs(50));
    assert_eq!(
        post(&url, None, n_images("gpt-image-1", 4)).await.status,
        200
    );
    // More images than the limit can never fit: no retry headers.
    let a = post(&url, None, n_images("gpt-image-1", 6)).await;
    assert_eq!(a.status, 429);
    assert!(a.h("retry-after").is_none());
    let msg = error_of(&a)["message"].as_str().unwrap();
    assert!(
        msg.contains("images per min (IPM): Limit 5, Requested 6"),
        "{msg}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_routers_classifier_reads_the_simulators_ipm_429_as_an_image_limit() {
    let (sim, _clock) = sim_with(SimAccount::new().ipm(1)).await;
    let url = gen_url(&sim, "o");
    assert_eq!(post(&url, None, low()).await.status, 200);
    let a = post(&url, None, low()).await;
    let e = classify("o", a.status, &a.headers, a.body.to_string().as_bytes());
    assert_eq!(
        e.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Images
        }
    );
    assert_eq!(e.retry_after, Some(Duration::from_secs(60)));
    let x = e.explain();
    assert!(x.cause.contains("images-per-minute limit"), "{}", x.cause);
    sim.shutdown().await;
}

#[tokio::test]
async fn per_model_windows_are_separate_and_a_usage_tier_sets_the_published_figures() {
    let (sim, _clock) = sim_with(SimAccount::new().tier("tier-1")).await;
    let url = gen_url(&sim, "o");
    // gpt-image-1 at tier 1: 5 images and 100k tokens a minute, its own window.
    let a = post(&url, None, n_images("gpt-image-1", 5)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("100000"));
    assert_eq!(
        a.h("x-ratelimit-limit-requests"),
        None,
        "no RPM is published"
    );
    let a = post(&url, None, n_images("gpt-image-1", 1)).await;
    assert_eq!(a.status, 429);
    let msg = error_of(&a)["message"].as_str().unwrap();
    assert!(
        msg.contains("on images per min (IPM): Limit 5, Used 5, Requested 1"),
        "{msg}"
    );
    // dall-e-2 has its own window (500 images a minute at tier 1) and is not touched.
    let a = post(&url, None, n_images("dall-e-2", 10)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // gpt-image-1-mini inherits gpt-image-1's figures but counts in its own window.
    assert_eq!(
        post(&url, None, n_images("gpt-image-1-mini", 5))
            .await
            .status,
        200
    );
    assert_eq!(
        post(&url, None, n_images("gpt-image-1-mini", 1))
            .await
            .status,
        429
    );

    // Explicit per-model limits, and a chat-mode call counts one image.
    let (sim, _clock) = sim_with(
        SimAccount::new().model_limits("gpt-image-1", ModelTierLimits::new(None, None, Some(2))),
    )
    .await;
    let chat = format!("{}/chat/completions", sim.openai_base_url("o"));
    let body = json!({"model": "gpt-image-1", "messages": [{"role": "user", "content": "a fox"}]});
    assert_eq!(post(&chat, None, body.clone()).await.status, 200);
    assert_eq!(post(&chat, None, body.clone()).await.status, 200);
    assert_eq!(post(&chat, None, body).await.status, 429);
    // Another model has no limit here.
    assert_eq!(
        post(&gen_url(&sim, "o"), None, n_images("dall-e-2", 10))
            .await
            .status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn scripted_ipm_fault_uses_the_accounts_limit() {
    let (sim, _clock) = sim_with(SimAccount::new().ipm(7)).await;
    sim.fail(
        "o",
        Fault::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            scope: RateLimitScope::Images,
        },
        Times::Once,
    );
    let a = post(&gen_url(&sim, "o"), None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("3"));
    let err = error_of(&a);
    assert_eq!(err["type"], "requests");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("images per min (IPM): Limit 7, Used 7, Requested 1"),
        "{msg}"
    );
    sim.shutdown().await;
}
