//! Usage is clamped and arithmetic saturates on provider numbers.

use super::*;

#[tokio::test]
async fn absurd_usage_is_clamped_to_what_the_request_can_produce() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            200,
            &[],
            json!({"created": 1, "data": [{"b64_json": b64(&png_bytes())}],
                "usage": {"input_tokens": u64::MAX, "output_tokens": u64::MAX,
                          "total_tokens": u64::MAX,
                          "input_tokens_details": {"text_tokens": u64::MAX, "image_tokens": 1},
                          "output_tokens_details": {"image_tokens": u64::MAX, "text_tokens": 0}}}),
        )
    })
    .await;
    let logs = Captured::default();
    let guard = tracing::subscriber::set_default(subscriber(logs.clone()));
    let res = openai(&evil).generate(&gen(), &ctx()).await.unwrap();
    drop(guard);
    // Flagged as suspicious by a warning (and the `image_router_suspicious_usage_total`
    // counter).
    assert!(logs.text().contains("clamped"), "{}", logs.text());
    let u = res.usage.expect("usage kept");
    // One low 1024×1024 image: 272 output tokens by the table; the clamp leaves headroom but
    // nothing near u64::MAX.
    assert!(u.total_tokens < 1_000_000, "{u:?}");
    assert!(u.output_tokens < 1_000_000, "{u:?}");
    assert!(u.input_tokens < 1_000_000, "{u:?}");
    assert!(u.total_tokens >= u.output_tokens, "{u:?}");

    // Through a router with a budget: the month is not exhausted by one answer.
    let router = Router::builder().provider(openai(&evil)).build().unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert!(res.cost_usd.unwrap_or(0.0) < 100.0, "{:?}", res.cost_usd);
}

#[tokio::test]
async fn chat_usage_of_u64_max_does_not_overflow() {
    let evil = Hostile::start(|_, _| {
        let content = format!("data:image/png;base64,{}", b64(&png_bytes()));
        json_reply(
            200,
            &[],
            json!({"choices": [{"message": {"content": content}}],
                   "usage": {"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX}}),
        )
    })
    .await;
    let res = compatible(&evil, CompatibleMode::Chat)
        .generate(&gen(), &ctx())
        .await
        .unwrap();
    let u = res.usage.expect("usage");
    assert!(u.total_tokens < 1_000_000, "{u:?}");
}
