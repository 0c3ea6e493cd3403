//! The forecast against a real run: 200 mixed requests through a `Router` on the embedded
//! simulator, two providers with different limits and a budget that binds, on a manual
//! clock. The run's drain time and cost must be within 10 % of the forecast.

use std::sync::Arc;
use std::time::Duration;

use image_router::budget::{Budget, BudgetPeriod};
use image_router::clock::{ManualClock, SharedClock};
use image_router::forecast::{Constraint, WorkItem, Workload};
use image_router::providers::OpenAi;
use image_router::sim::{SimAccount, Simulator};
use image_router::{Error, GenerateRequest, ProviderOptions, Quality, Router, Size, SkipReason};

const PROMPT: &str = "a lighthouse at dusk, watercolor, soft light";

/// The workload, request by request: sizes, qualities and `n` cycle at different periods so
/// every combination occurs.
fn items() -> Vec<WorkItem> {
    let sizes = [Size::SQUARE, Size::PORTRAIT, Size::LANDSCAPE];
    let qualities = [Quality::Low, Quality::Medium, Quality::High, Quality::Low];
    (0..200usize)
        .map(|i| {
            WorkItem::new(1)
                .model("gpt-image-1")
                .size(sizes[i % 3])
                .quality(qualities[i % 4])
                .n(if i % 5 == 0 { 2 } else { 1 })
                .prompt_chars(PROMPT.chars().count())
        })
        .collect()
}

fn request(item: &WorkItem) -> GenerateRequest {
    let mut r = GenerateRequest::new(PROMPT).model("gpt-image-1").n(item.n);
    r.size = item.size;
    r.quality = item.quality;
    r
}

fn openai(sim: &Simulator, account: &str) -> OpenAi {
    OpenAi::builder()
        .name(account)
        .api_key(format!("{}-{account}", "sk-forecast"))
        .base_url(sim.openai_base_url(account))
        .build()
        .unwrap()
}

#[tokio::test]
async fn forecast_matches_a_simulated_run_within_ten_percent() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    // The accounts enforce the same limits the router is configured with.
    let sim = Simulator::builder()
        .clock(shared.clone())
        .account("primary", SimAccount::new().rpm(12).tpm(40_000))
        .account("backup", SimAccount::new().rpm(8).tpm(60_000))
        .start()
        .await
        .unwrap();
    // A budget period that starts with the ledger, so no UTC midnight falls into the run.
    let day = Budget::new(4.0, BudgetPeriod::Custom(Duration::from_secs(86_400))).unwrap();
    let router = Router::builder()
        .clock(shared.clone())
        .provider_with(
            openai(&sim, "primary"),
            ProviderOptions::new().rpm(12).tpm(40_000).budget(day),
        )
        .provider_with(
            openai(&sim, "backup"),
            ProviderOptions::new().rpm(8).tpm(60_000),
        )
        // Never sleep on tokio's clock for room: the test moves the manual clock instead.
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();

    let items = items();
    let workload = items
        .iter()
        .cloned()
        .fold(Workload::new(), |w, i| w.with(i));
    assert_eq!(workload.requests(), 200);
    let forecast = router.forecast(&workload).unwrap();
    println!("{forecast}");

    // The run: each request in order, sent again one simulated second later while every
    // provider is out of room; a request no budget can pay is not served (as forecast).
    let step = Duration::from_secs(1);
    let (mut cost, mut served, mut unserved) = (0.0f64, 0u64, 0u64);
    let mut last_served = Duration::ZERO;
    let mut by_provider = std::collections::HashMap::<String, u64>::new();
    for item in &items {
        loop {
            match router.generate(request(item)).await {
                Ok(res) => {
                    cost += res.cost_usd.expect("gpt-image-1 has a price");
                    served += 1;
                    last_served = shared.now();
                    *by_provider.entry(res.provider.clone()).or_default() += 1;
                    break;
                }
                Err(Error::Exhausted {
                    attempts, skipped, ..
                }) => {
                    assert!(attempts.is_empty(), "no call may fail: {attempts:?}");
                    let waiting = skipped
                        .iter()
                        .any(|s| matches!(s.reason, SkipReason::NoHeadroom { .. }));
                    if waiting {
                        clock.advance(step);
                    } else {
                        assert!(
                            skipped
                                .iter()
                                .all(|s| matches!(s.reason, SkipReason::Budget { .. })),
                            "{skipped:?}"
                        );
                        unserved += 1;
                        break;
                    }
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
            assert!(
                shared.now() < Duration::from_secs(3 * 3600),
                "the run does not end"
            );
        }
    }
    let measured = last_served.as_secs_f64();
    let predicted = forecast.drain_secs.expect("something is served");
    println!(
        "measured: {measured} s, ${cost:.4}, {served} served, {unserved} not served, {by_provider:?}"
    );
    // Both providers' limits and the budget matter: the run takes several windows.
    assert!(measured > 600.0, "{measured}");
    assert!(
        (measured - predicted).abs() <= 0.10 * measured,
        "drain time: forecast {predicted} s, measured {measured} s"
    );
    assert!(
        (cost - forecast.cost_usd).abs() <= 0.10 * cost,
        "cost: forecast ${}, measured ${cost}",
        forecast.cost_usd
    );
    assert_eq!(forecast.served_requests, served);
    assert_eq!(forecast.requests - forecast.served_requests, unserved);
    // The primary's budget is spent to within one request's cost.
    let spent = router.spend()[1].budgets[0].spent_usd;
    assert!(spent <= 4.0 && spent > 3.5, "{spent}");
    let primary_share = forecast.providers[0].requests as f64;
    let primary_real = by_provider.get("primary").copied().unwrap_or(0) as f64;
    assert!(
        (primary_share - primary_real).abs() <= 0.10 * served as f64,
        "primary: forecast {primary_share} requests, measured {primary_real}"
    );
    // What binds: the primary's budget, after which the backup takes the rest.
    let budget = forecast
        .constraints
        .iter()
        .find(|c| matches!(c, Constraint::Budget { .. }))
        .expect("the budget binds");
    match budget {
        Constraint::Budget { ledger, then, .. } => {
            assert_eq!(ledger, "primary");
            assert_eq!(then, &vec!["backup".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn capacity_used_now_delays_the_forecast() {
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .clock(shared.clone())
        .account("primary", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .clock(shared.clone())
        .provider_with(openai(&sim, "primary"), ProviderOptions::new().rpm(10))
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let nine = Workload::new().with(WorkItem::new(9).quality(Quality::Low));
    // Fresh: 9 requests a minute (10 × 0.9) go at once.
    assert_eq!(router.forecast(&nine).unwrap().drain_secs, Some(0.0));
    for _ in 0..9 {
        router
            .generate(GenerateRequest::new("a fox").quality(Quality::Low))
            .await
            .unwrap();
    }
    // The window is full now: the next nine wait for it to pass.
    let f = router.forecast(&nine).unwrap();
    assert_eq!(f.drain_secs, Some(60.0), "{f}");
    assert!(
        matches!(f.binding(), Some(Constraint::RateLimit { provider, waited_secs, .. }) if provider == "primary" && *waited_secs == 60.0),
        "{f}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_provider_denied_now_takes_none_of_the_forecast() {
    use image_router::sim::{Fault, Times};
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let sim = Simulator::builder()
        .clock(shared.clone())
        .account("primary", SimAccount::new())
        .account("backup", SimAccount::new())
        .start()
        .await
        .unwrap();
    let router = Router::builder()
        .clock(shared.clone())
        .provider_with(openai(&sim, "primary"), ProviderOptions::new().rpm(60))
        .provider_with(openai(&sim, "backup"), ProviderOptions::new().rpm(10))
        .max_wait(Duration::ZERO)
        .build()
        .unwrap();
    let work = Workload::new().with(WorkItem::new(30).quality(Quality::Low));
    let before = router.forecast(&work).unwrap();
    assert_eq!(before.providers[0].requests, 30, "{before}");
    assert_eq!(before.drain_secs, Some(0.0));
    // The primary answers `insufficient_quota`: the request fails over, the primary is
    // denied for the cool-down, and the forecast sends everything to the backup.
    sim.fail("primary", Fault::InsufficientQuota, Times::Once);
    let res = router
        .generate(GenerateRequest::new("a fox").quality(Quality::Low))
        .await
        .unwrap();
    assert_eq!(res.provider, "backup");
    let after = router.forecast(&work).unwrap();
    assert_eq!(
        (after.providers[0].requests, after.providers[1].requests),
        (0, 30),
        "{after}"
    );
    assert!(
        after.providers[0].not_serving[0].contains("unavailable now"),
        "{:?}",
        after.providers[0].not_serving
    );
    // The backup has 9 a minute after the margin, one already used: 30 requests end in the
    // fourth window.
    assert_eq!(after.drain_secs, Some(180.0), "{after}");
    sim.shutdown().await;
}
