//! The router core: the policy table against the README, timeouts after sending (never
//! re-sent, budget held) and cancelled requests on the simulator, retries that never starve
//! an untried provider, one record for a denial, reload applying every setting, and the
//! score carried by responses.

use crate::support;

use std::time::Duration;

use image_router::breaker::{BreakerConfig, BreakerState, DenyReason, OpenReason};
use image_router::budget::{Budget, BudgetPeriod};
use image_router::health::HealthConfig;
use image_router::policy;
use image_router::policy::TimeoutPolicy;
use image_router::providers::OpenAi;
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{
    AccessDenial, Error, ErrorKind, GenerateRequest, Outcome, ProviderOptions, Quality, Router,
    RouterBuilder, Size, SkipReason,
};
use support::{shared, Fake, Step};

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .size(Size::SQUARE)
        .quality(Quality::Low)
}

/// The README's "Routing rules" table, as written.
fn readme_table() -> String {
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let section = readme
        .split("## Routing rules")
        .nth(1)
        .expect("README has a Routing rules section");
    let section = section.split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_readme_routing_table_is_the_policy_table() {
    let table = policy::markdown_table();
    if readme_table() != table {
        // The table to paste into the README.
        let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/routing-table.md");
        let _ = std::fs::write(out, &table);
    }
    assert_eq!(
        readme_table(),
        table,
        "README table differs (new one in {})",
        "target/routing-table.md"
    );
    // One row per class the policy knows.
    assert_eq!(
        policy::markdown_table().lines().count(),
        policy::classes().len() + 2
    );
}

const KEY_A: &str = "key-a";
const KEY_B: &str = "key-b";

async fn sim_pair() -> Simulator {
    Simulator::builder()
        .account("a", SimAccount::new().api_key(KEY_A))
        .account("b", SimAccount::new().api_key(KEY_B))
        .start()
        .await
        .unwrap()
}

fn openai(sim: &Simulator, name: &str, key: &str) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .base_url(sim.openai_base_url(name))
        .api_key(key)
        .build()
        .unwrap()
}

fn day(usd: f64) -> Budget {
    Budget::new(usd, BudgetPeriod::Day).unwrap()
}

fn pair_router(sim: &Simulator, configure: impl FnOnce(RouterBuilder) -> RouterBuilder) -> Router {
    configure(
        Router::builder()
            .provider_with(
                openai(sim, "a", KEY_A),
                ProviderOptions::new().budget(day(1.0)),
            )
            .provider(openai(sim, "b", KEY_B))
            .budget(day(5.0))
            .attempt_timeout(Duration::from_millis(300)),
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_timeout_after_sending_fails_over_without_a_retry_and_holds_the_budget() {
    let sim = sim_pair().await;
    sim.fail("a", Fault::Slow(Duration::from_secs(3)), Times::Always);
    let router = pair_router(&sim, |b| b);
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    let outcomes: Vec<(&str, Outcome, bool)> = res
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome, a.possibly_billed))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("a", Outcome::Timeout, true),
            ("b", Outcome::Success, false)
        ]
    );
    assert_eq!(sim.stats("a").requests, 1, "not sent twice");
    let spend = router.spend();
    let (router_ledger, a_ledger) = (&spend[0], &spend[1]);
    let held = a_ledger.budgets[0].held_usd;
    assert!(held > 0.0, "{a_ledger:?}");
    assert_eq!(a_ledger.reserved_usd, 0.0);
    assert_eq!(
        a_ledger.lifetime_spent_usd, 0.0,
        "unknown cost is not spend"
    );
    // The router's budget holds it too, beside what b really cost.
    assert!((router_ledger.budgets[0].held_usd - held).abs() < 1e-9);
    let b_cost = res.cost_usd.unwrap();
    assert!((router_ledger.budgets[0].spent_usd - b_cost).abs() < 1e-9);
    assert!(
        (router_ledger.budgets[0].remaining_usd - (5.0 - b_cost - held)).abs() < 1e-9,
        "{router_ledger:?}"
    );
}

#[tokio::test]
async fn a_timeout_after_sending_can_fail_instead_of_failing_over() {
    let sim = sim_pair().await;
    sim.fail("a", Fault::Slow(Duration::from_secs(3)), Times::Always);
    let router = pair_router(&sim, |b| b.on_timeout_after_send(TimeoutPolicy::Fail));
    let err = router.generate(req()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    assert_eq!(
        err.cause().map(|c| c.kind.clone()),
        Some(ErrorKind::Timeout { sent: true })
    );
    assert_eq!(err.attempts().len(), 1);
    assert!(err.attempts()[0].possibly_billed);
    assert_eq!(sim.stats("b").requests, 0, "never paid twice");
    assert!(router.spend()[1].budgets[0].held_usd > 0.0);
}

#[tokio::test]
async fn a_request_cancelled_after_sending_keeps_its_budget_until_the_period_ends() {
    let sim = sim_pair().await;
    sim.fail("a", Fault::Hang, Times::Always);
    let router = Router::builder()
        .provider_with(
            openai(&sim, "a", KEY_A),
            ProviderOptions::new().rpm(10).budget(day(1.0)),
        )
        .build()
        .unwrap();
    let r = router.clone();
    let task = tokio::spawn(async move { r.generate(req()).await });
    // Wait (bounded) until the simulator holds the request: it was sent.
    for _ in 0..500 {
        if sim.stats("a").in_flight == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.stats("a").in_flight, 1);
    let reserved = router.spend()[1].reserved_usd;
    assert!(reserved > 0.0);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let ledger = &router.spend()[1];
    assert_eq!(ledger.reserved_usd, 0.0);
    assert!(
        (ledger.budgets[0].held_usd - reserved).abs() < 1e-9,
        "{ledger:?}"
    );
    // The rate-limit room stays used too (10 effective: the whole limit; 1 used).
    assert_eq!(router.headroom()[0].1.requests, Some(9));
    // With the held money, a budget of 1.5 requests has room for no second request: spend
    // can never pass the budget through cancelled requests.
    router
        .reload(Router::builder().provider_with(
            openai(&sim, "a", KEY_A),
            ProviderOptions::new().rpm(10).budget(day(reserved * 1.5)),
        ))
        .unwrap();
    sim.clear_faults("a");
    let err = router.generate(req()).await.unwrap_err();
    assert!(
        matches!(err.skipped()[0].reason, SkipReason::Budget { .. }),
        "{err:?}"
    );
    assert_eq!(sim.stats("a").requests, 1);
}

#[tokio::test(start_paused = true)]
async fn retries_never_starve_an_untried_provider() {
    let fail = || Step::Fail(ErrorKind::Server, Some(503), None);
    let (a, a_h) = shared(Fake::new("a").then(fail()).then(fail()));
    let (b, b_h) = shared(Fake::new("b").then(fail()).then(fail()));
    let (c, c_h) = shared(Fake::new("c"));
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .provider(c)
        .max_attempts(4)
        .strategy(image_router::Strategy::Ordered)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "c");
    let trace: Vec<(&str, u32)> = res
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.retry))
        .collect();
    // a is retried (attempts enough for b and c after it); b is not (c would starve).
    assert_eq!(trace, [("a", 0), ("a", 1), ("b", 0), ("c", 0)]);
    assert_eq!((a_h.calls(), b_h.calls(), c_h.calls()), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_denial_is_one_record_with_one_duration() {
    let denied = ErrorKind::AccessDenied {
        reason: AccessDenial::InsufficientQuota,
    };
    let (a, a_h) = shared(Fake::new("a").fail(denied, 429));
    let (b, _) = shared(Fake::new("b"));
    // A breaker table is given (its own long cool-down would be 600 s): the router's one
    // cool-down setting decides.
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .breaker(BreakerConfig {
            consecutive_failures: 3,
            ..BreakerConfig::default()
        })
        .cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(router.generate(req()).await.unwrap().provider, "b");
    let status = router.status();
    let a_status = &status.providers[0];
    assert_eq!(a_status.breaker.state, BreakerState::Open);
    assert_eq!(
        a_status.breaker.reason,
        Some(OpenReason::Denied(DenyReason::AccessDenied(
            AccessDenial::InsufficientQuota
        )))
    );
    assert_eq!(a_status.breaker.retry_in, Some(Duration::from_secs(60)));
    let cooldown = a_status.cooldown.as_ref().unwrap();
    assert_eq!(cooldown.cause, Outcome::AccessDenied);
    assert_eq!(cooldown.remaining_ms, 60_000);
    let res = router.generate(req()).await.unwrap();
    assert!(matches!(
        res.skipped[0].reason,
        SkipReason::CoolingDown {
            cause: Outcome::AccessDenied,
            ..
        }
    ));
    // After the one duration the provider is tried again (the breaker's probe), not held
    // for a second, longer period.
    tokio::time::advance(Duration::from_secs(61)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a");
    assert!(res.skipped.is_empty(), "{:?}", res.skipped);
    assert_eq!(a_h.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn reload_applies_every_setting_and_keeps_the_state() {
    let (a, _) = shared(Fake::new("a"));
    let (a2, _) = shared(Fake::new("a"));
    let router = Router::builder()
        .provider_with(a, ProviderOptions::new().rpm(100))
        .breaker(BreakerConfig {
            cool_down: Duration::from_secs(10),
            ..BreakerConfig::default()
        })
        .health(HealthConfig {
            window: Duration::from_secs(60),
            ..HealthConfig::default()
        })
        .build()
        .unwrap();
    router.generate(req()).await.unwrap();
    // The default: the whole limit.
    let h = &router.headroom()[0].1;
    assert_eq!(h.effective_rpm, Some(100));
    assert_eq!(h.requests, Some(99));
    router
        .reload(
            Router::builder()
                .provider_with(a2, ProviderOptions::new().rpm(100).safety_margin(0.5))
                .breaker(BreakerConfig {
                    cool_down: Duration::from_secs(20),
                    ..BreakerConfig::default()
                })
                .health(HealthConfig {
                    window: Duration::from_secs(30),
                    ..HealthConfig::default()
                }),
        )
        .unwrap();
    let h = &router.headroom()[0].1;
    assert_eq!(h.effective_rpm, Some(50), "the new margin applies");
    assert_eq!(h.requests, Some(49), "the limiter log is kept");
    let status = router.status();
    let p = &status.providers[0];
    assert_eq!(p.breaker.cool_down, Duration::from_secs(20));
    assert_eq!(p.health.window_ms, 30_000);
    assert_eq!(p.health.successes, 0, "a new window length starts empty");
    assert!(
        p.health.latency_ms.is_some(),
        "the latency estimate is kept"
    );
}

#[tokio::test(start_paused = true)]
async fn the_response_and_its_attempts_carry_the_score() {
    let (a, _) = shared(Fake::new("a").fail(ErrorKind::InvalidRequest, 400));
    let (a_ok, _) = shared(Fake::new("a"));
    let (b, _) = shared(Fake::new("b"));
    let router = Router::builder()
        .provider(a_ok)
        .provider(b)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    let score = res.score.expect("the serving provider was ranked");
    assert!(score.total > 0.0);
    assert_eq!(res.attempts[0].score, Some(score));
    assert_eq!(score.inputs.priority, 0);
    // A failed attempt carries its score too.
    let router = Router::builder().provider(a).build().unwrap();
    let err = router.generate(req()).await.unwrap_err();
    assert!(err.attempts()[0].score.is_some());
    assert!(err.attempts()[0].to_string().contains("score"));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_before_sending_is_retried_and_refunded() {
    let before_send = Step::Fail(ErrorKind::Timeout { sent: false }, None, None);
    let (a, a_h) = shared(Fake::new("a").then(before_send));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder()
        .provider_with(a, ProviderOptions::new().rpm(10).budget(day(1.0)))
        .provider(b)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a");
    let trace: Vec<(&str, u32, bool)> = res
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.retry, a.possibly_billed))
        .collect();
    assert_eq!(trace, [("a", 0, false), ("a", 1, false)]);
    assert_eq!((a_h.calls(), b_h.calls()), (2, 0));
    // The request that never left gave its room and money back: one request counted (of
    // 10: the whole limit).
    assert_eq!(router.headroom()[0].1.requests, Some(9));
    let ledger = &router.spend()[1];
    assert_eq!(ledger.budgets[0].held_usd, 0.0);
    assert_eq!(ledger.committed, 1);
}

/// Collects what a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn each_request_logs_its_ranking_at_debug_level() {
    use tracing_subscriber::util::SubscriberInitExt;
    let log = Log::default();
    let writer = log.clone();
    let _guard = tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .set_default();
    let (a, _) = shared(Fake::new("a"));
    let (b, _) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    router.generate(req()).await.unwrap();
    let text = String::from_utf8(log.0.lock().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("ranked providers"))
        .unwrap_or_else(|| panic!("no ranking logged: {text}"));
    assert!(line.contains("DEBUG"), "{line}");
    assert!(line.contains("a total="), "{line}");
    assert!(line.contains("b total="), "{line}");
    assert!(line.contains("availability="), "{line}");
}
