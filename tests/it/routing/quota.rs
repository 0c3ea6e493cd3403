//! Quota end to end: the router's limiters, live headers, tiers and budgets against the
//! simulator (real HTTP on loopback) and wiremock, with an injected clock.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use image_router::budget::{Budget, BudgetPeriod};
use image_router::clock::{ManualClock, SharedClock};
use image_router::providers::OpenAi;
use image_router::sim::{SimAccount, Simulator};
use image_router::ProviderOptions;
use image_router::{GenerateRequest, Quality, Router, Size, SkipReason};
use support::{shared, Fake};

fn openai(name: &str, base: String) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .base_url(base)
        .api_key("sk-test")
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

fn req(q: Quality) -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(q)
        .size(Size::SQUARE)
}

/// Saturating load for `minutes` simulated minutes: every simulated second, requests are sent
/// until the router refuses for lack of headroom (it never waits: `max_wait(0)`).
async fn saturate(router: &Router, clock: &ManualClock, minutes: u64, q: Quality) -> u64 {
    let mut served = 0;
    for _ in 0..minutes * 60 {
        loop {
            match router.generate(req(q)).await {
                Ok(_) => served += 1,
                Err(e) => {
                    assert!(e.attempts().is_empty(), "an upstream call failed: {e}");
                    assert!(
                        e.skipped()
                            .iter()
                            .all(|s| matches!(s.reason, SkipReason::NoHeadroom { .. })),
                        "{e}"
                    );
                    break;
                }
            }
        }
        clock.advance(Duration::from_secs(1));
    }
    served
}

#[tokio::test]
async fn ten_simulated_minutes_at_the_rpm_limit_see_zero_429s() {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account("openai", SimAccount::new().rpm(6).tpm(250_000))
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider_with(
            openai("openai", sim.openai_base_url("openai")),
            ProviderOptions::new()
                .tier("guide-tier-1")
                .safety_margin(1.0),
        )
        .clock(shared_clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let served = saturate(&router, &clock, 10, Quality::Low).await;
    let stats = sim.stats("openai");
    assert_eq!(stats.rate_limited, 0, "no upstream 429");
    // The simulator's window allows 6 per minute: 60 in ten minutes.
    assert!(served as f64 >= 0.97 * 60.0, "served {served}");
    assert!(served <= 61, "served {served}");
    assert_eq!(stats.succeeded, served);
}

#[tokio::test]
async fn ten_simulated_minutes_at_the_tpm_limit_see_zero_429s() {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    // High quality 1024x1024 is 4160 output tokens + 3 prompt tokens = 4163: a TPM of 5 × 4163
    // admits exactly 5 a minute, so full use of the tokens is reachable.
    let sim = Simulator::builder()
        .account("openai", SimAccount::new().rpm(100).tpm(20_815))
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider_with(
            openai("openai", sim.openai_base_url("openai")),
            ProviderOptions::new()
                .rpm(100)
                .tpm(20_815)
                .safety_margin(1.0),
        )
        .clock(shared_clock)
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let served = saturate(&router, &clock, 10, Quality::High).await;
    let stats = sim.stats("openai");
    assert_eq!(stats.rate_limited, 0);
    let per_request = 4160 + 3;
    let allowed_tokens = 20_815 * 10;
    let used = served * per_request;
    assert!(
        used as f64 >= 0.97 * allowed_tokens as f64,
        "used {used} of {allowed_tokens} tokens"
    );
}

#[tokio::test]
async fn overflow_goes_to_the_second_provider_instead_of_waiting() {
    let clock = ManualClock::new();
    let shared_clock: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .account("primary", SimAccount::new().rpm(3))
        .account("overflow", SimAccount::new())
        .clock(shared_clock.clone())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider_with(
            openai("primary", sim.openai_base_url("primary")),
            ProviderOptions::new()
                .rpm(3)
                .tpm(1_000_000)
                .safety_margin(1.0),
        )
        .provider(openai("overflow", sim.openai_base_url("overflow")))
        .clock(shared_clock)
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    let mut by = std::collections::HashMap::<String, u32>::new();
    for _ in 0..10 {
        let res = router.generate(req(Quality::Low)).await.unwrap();
        assert_eq!(res.attempts.len(), 1, "no failed attempt");
        *by.entry(res.provider).or_default() += 1;
    }
    assert_eq!(by["primary"], 3);
    assert_eq!(by["overflow"], 7);
    assert_eq!(sim.stats("primary").rate_limited, 0);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "nothing waited a minute"
    );
}

#[tokio::test]
async fn remaining_zero_with_reset_keeps_the_provider_off_for_that_long() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let png = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        support::PIXEL_PNG,
    );
    let body = serde_json::json!({"created": 1, "data": [{"b64_json": png}]});
    let a = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(body.clone())
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "5s"),
        )
        .mount(&a)
        .await;
    let b = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&b)
        .await;
    let clock = ManualClock::new();
    let router = Router::builder()
        .provider(openai("a", format!("{}/v1", a.uri())))
        .provider(openai("b", format!("{}/v1", b.uri())))
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert_eq!(
        router.generate(req(Quality::Low)).await.unwrap().provider,
        "a"
    );
    for _ in 0..3 {
        assert_eq!(
            router.generate(req(Quality::Low)).await.unwrap().provider,
            "b"
        );
        clock.advance(Duration::from_millis(1500));
    }
    // 4.5 s have passed: still blocked.
    assert_eq!(
        router.generate(req(Quality::Low)).await.unwrap().provider,
        "b"
    );
    clock.advance(Duration::from_millis(600));
    assert_eq!(
        router.generate(req(Quality::Low)).await.unwrap().provider,
        "a"
    );
    assert_eq!(a.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_free_tier_provider_is_never_sent_a_request_and_the_error_says_why() {
    let sim = Simulator::builder()
        .account("openai", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider_with(
            openai("openai", sim.openai_base_url("openai")),
            ProviderOptions::new().tier("free"),
        )
        .build()
        .unwrap();
    let err = router.generate(req(Quality::Low)).await.unwrap_err();
    assert!(err.is_no_provider(), "{err}");
    let SkipReason::Tier { message } = &err.skipped()[0].reason else {
        panic!("{err:?}")
    };
    assert!(message.contains("tier-1"), "{message}");
    assert!(message.contains("$5"), "{message}");
    assert_eq!(sim.stats("openai").requests, 0);
}

#[test]
fn bad_limits_and_tiers_are_build_errors_naming_the_provider() {
    let err = Router::builder()
        .provider_with(Fake::new("a"), ProviderOptions::new().tier("tier-9"))
        .build()
        .unwrap_err();
    assert!(err.field.starts_with("providers[0]"), "{err}");
    assert!(
        err.message.contains("tier-2"),
        "lists the known tiers: {err}"
    );
    let err = Router::builder()
        .provider_with(Fake::new("a"), ProviderOptions::new().rpm(0))
        .build()
        .unwrap_err();
    assert!(err.field.starts_with("providers[0]"), "{err}");
    let err = Router::builder()
        .provider_with(Fake::new("a"), ProviderOptions::new().safety_margin(1.5))
        .build()
        .unwrap_err();
    assert!(err.field.starts_with("providers[0]"), "{err}");
    let err = Router::builder()
        .provider_with(Fake::new("a"), ProviderOptions::new().weight(-1.0))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "providers[0].weight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_never_exceed_the_budget() {
    let (a, _) = shared(Fake::new("a"));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder()
        .provider_with(
            a,
            ProviderOptions::new().budget(Budget::new(0.5, BudgetPeriod::Day).unwrap()),
        )
        .provider(b)
        .budget(Budget::new(1.0, BudgetPeriod::Month).unwrap())
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let r = router.clone();
        tasks.push(tokio::spawn(
            async move { r.generate(req(Quality::Low)).await },
        ));
    }
    let mut total = 0.0;
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(res) => {
                ok += 1;
                total += res.cost_usd.expect("priced model");
            }
            Err(e) => {
                refused += 1;
                assert!(e.is_no_provider(), "{e}");
                assert!(
                    e.skipped()
                        .iter()
                        .any(|s| matches!(&s.reason, SkipReason::Budget { message } if message.contains("router") && message.contains("resets"))),
                    "{e}"
                );
            }
        }
    }
    let spend = router.spend();
    let router_total = spend[0].lifetime_spent_usd;
    assert!(router_total <= 1.0 + 1e-9, "spent {router_total}");
    assert!(
        (router_total - total).abs() < 1e-6,
        "{router_total} vs {total}"
    );
    assert!(spend[1].lifetime_spent_usd <= 0.5 + 1e-9);
    assert!(ok > 50 && refused > 500, "ok {ok} refused {refused}");
    assert!(b_h.calls() > 0, "overflow past a's budget went to b");
}

#[tokio::test]
async fn each_response_reports_its_cost_from_usage() {
    let sim = Simulator::builder()
        .account("openai", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .provider(openai("openai", sim.openai_base_url("openai")))
        .build()
        .unwrap();
    let res = router.generate(req(Quality::High)).await.unwrap();
    let usage = res.usage.unwrap();
    assert_eq!(usage.output_tokens, 4160);
    let expected = 4160.0 * 40.0 / 1e6 + usage.input_tokens as f64 * 5.0 / 1e6;
    assert!((res.cost_usd.unwrap() - expected).abs() < 1e-9);
    assert!((router.spend()[0].lifetime_spent_usd - expected).abs() < 1e-9);
}
