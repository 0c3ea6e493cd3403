//! The routing rules end to end: real providers over real HTTP against the embedded
//! simulator, asserting the attempt trace and what each simulated account received.

use std::time::Duration;

use image_router::providers::{Azure, Compatible, CompatibleMode, OpenAi};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{
    AccessDenial, EditRequest, Error, ErrorKind, GenerateRequest, InputImage, Outcome,
    OutputFormat, Quality, RateLimitScope, Router, SkipReason,
};

struct World {
    sim: Simulator,
    router: Router,
}

async fn world(
    configure: impl FnOnce(image_router::RouterBuilder) -> image_router::RouterBuilder,
) -> World {
    let sim = Simulator::builder()
        .account("openai", SimAccount::new().api_key("sk-sim-openai-0000"))
        .account(
            "azure",
            SimAccount::new()
                .api_key("azure-key")
                .deployment("img", "gpt-image-1"),
        )
        .account("proxy", SimAccount::new().api_key("sk-sim-proxy-0000"))
        .start()
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let builder = Router::builder()
        .provider(
            OpenAi::builder()
                .name("openai")
                .base_url(sim.openai_base_url("openai"))
                .api_key("sk-sim-openai-0000")
                .client(client.clone())
                .build()
                .unwrap(),
        )
        .provider(
            Azure::builder()
                .name("azure")
                .endpoint(sim.azure_endpoint("azure"))
                .api_key("azure-key")
                .deployment("gpt-image-1", "img")
                .client(client.clone())
                .build()
                .unwrap(),
        )
        .provider(
            Compatible::builder()
                .name("proxy")
                .base_url(sim.openai_base_url("proxy"))
                .api_key("sk-sim-proxy-0000")
                .mode(CompatibleMode::Chat)
                .client(client)
                .build()
                .unwrap(),
        )
        .retry_backoff(Duration::from_millis(5))
        .attempt_timeout(Duration::from_secs(3));
    World {
        router: configure(builder).build().unwrap(),
        sim,
    }
}

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
}

fn trace(attempts: &[image_router::Attempt]) -> Vec<(&str, Outcome, Option<u16>)> {
    attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome, a.status))
        .collect()
}

#[tokio::test]
async fn healthy_primary_serves_with_png_bytes_usage_and_trace() {
    let w = world(|b| b).await;
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "openai");
    assert_eq!(res.model, "gpt-image-1");
    assert!(res.images[0].bytes.starts_with(b"\x89PNG"));
    assert_eq!(res.usage.unwrap().output_tokens, 272);
    assert_eq!(
        trace(&res.attempts),
        vec![("openai", Outcome::Success, Some(200))]
    );
    assert_eq!(w.sim.stats("azure").requests, 0);
    let dir = tempfile::tempdir().unwrap();
    let paths = res.save_all(dir.path(), "img").unwrap();
    assert!(std::fs::read(&paths[0]).unwrap().starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn webp_never_reaches_azure() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::Status(500), Times::N(2));
    let res = w
        .router
        .generate(req().output_format(OutputFormat::Webp))
        .await
        .unwrap();
    assert_eq!(res.provider, "proxy");
    assert_eq!(
        w.sim.stats("azure").requests,
        0,
        "Azure receives zero requests"
    );
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "azure" && matches!(s.reason, SkipReason::Unsupported { .. })));
}

#[tokio::test]
async fn edits_never_reach_a_chat_mode_proxy() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::Status(500), Times::N(2));
    w.sim.fail("azure", Fault::Status(500), Times::N(2));
    let png = w.router.generate(req()).await.unwrap().images[0]
        .bytes
        .clone();
    // The generation used up those faults (served by the proxy); now both fail again.
    w.sim.fail("openai", Fault::Status(500), Times::N(2));
    w.sim.fail("azure", Fault::Status(500), Times::N(2));
    let err = w
        .router
        .edit(
            EditRequest::new("add a hat", vec![InputImage::new(png, "in.png")])
                .model("gpt-image-1"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.attempts().len(), 4);
    assert!(err
        .skipped()
        .iter()
        .any(|s| s.provider == "proxy" && matches!(s.reason, SkipReason::Unsupported { .. })));
    assert_eq!(
        w.sim
            .received("proxy")
            .iter()
            .filter(|r| r.path.contains("edits"))
            .count(),
        0
    );
}

#[tokio::test]
async fn rate_limit_429_fails_over_at_once_and_is_remembered() {
    let w = world(|b| b).await;
    w.sim.fail(
        "openai",
        Fault::RateLimited {
            retry_after: Some(Duration::from_secs(30)),
            scope: RateLimitScope::Requests,
        },
        Times::Once,
    );
    let t0 = std::time::Instant::now();
    let res = w.router.generate(req()).await.unwrap();
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(
        trace(&res.attempts),
        vec![
            ("openai", Outcome::RateLimited, Some(429)),
            ("azure", Outcome::Success, Some(200))
        ]
    );
    let e = res.attempts[0].error.as_ref().unwrap();
    assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
    // Within the retry-after the primary is not tried first.
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "azure");
    assert_eq!(w.sim.stats("openai").requests, 1);
}

#[tokio::test]
async fn tier_denial_is_access_not_rate_limit_and_cools_down() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::TierDenied, Times::Always);
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "azure");
    let e = res.attempts[0].error.as_ref().unwrap();
    assert_eq!(
        e.kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess
        }
    );
    for _ in 0..3 {
        assert_eq!(w.router.generate(req()).await.unwrap().provider, "azure");
    }
    assert_eq!(
        w.sim.stats("openai").requests,
        1,
        "not called again within the cool-down"
    );
}

#[tokio::test]
async fn org_verification_403_is_not_retried_within_the_cool_down() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::OrgNotVerified, Times::Always);
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "azure");
    assert_eq!(res.attempts[0].status, Some(403));
    let res = w.router.generate(req()).await.unwrap();
    assert!(matches!(
        res.skipped[0].reason,
        SkipReason::CoolingDown {
            cause: Outcome::AccessDenied,
            ..
        }
    ));
    assert_eq!(w.sim.stats("openai").requests, 1);
}

#[tokio::test]
async fn insufficient_quota_and_invalid_key_fail_over() {
    let w = world(|b| b).await;
    w.sim
        .fail("openai", Fault::InsufficientQuota, Times::Always);
    w.sim.fail("azure", Fault::InvalidApiKey, Times::Always);
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(
        trace(&res.attempts),
        vec![
            ("openai", Outcome::AccessDenied, Some(429)),
            ("azure", Outcome::Authentication, Some(401)),
            ("proxy", Outcome::Success, Some(200))
        ]
    );
}

#[tokio::test]
async fn server_error_once_is_retried_on_the_same_provider() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::Status(503), Times::Once);
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(
        trace(&res.attempts),
        vec![
            ("openai", Outcome::Server, Some(503)),
            ("openai", Outcome::Success, Some(200))
        ]
    );
    assert_eq!(w.sim.stats("azure").requests, 0);
}

#[tokio::test]
async fn broken_bodies_are_errors_never_successes() {
    // A broken 200 may have been billed: it is not sent to the same provider again (before,
    // both faults were served to openai in a row by a retry), the attempt is marked.
    for fault in [Fault::TruncatedJson, Fault::EmptyData] {
        let w = world(|b| b).await;
        w.sim.fail("openai", fault.clone(), Times::Once);
        let res = w.router.generate(req()).await.unwrap();
        assert_eq!(
            trace(&res.attempts),
            vec![
                ("openai", Outcome::Decode, Some(200)),
                ("azure", Outcome::Success, Some(200))
            ],
            "{fault:?}"
        );
        assert!(res.attempts[0].possibly_billed, "{fault:?}");
        assert_eq!(w.sim.stats("openai").requests, 1, "{fault:?}: not re-sent");
    }
}

#[tokio::test]
async fn hang_and_reset_time_out_or_fail_then_fail_over() {
    let w = world(|b| b.attempt_timeout(Duration::from_millis(500))).await;
    w.sim.fail("openai", Fault::Hang, Times::N(2));
    w.sim.fail("azure", Fault::Reset, Times::N(2));
    let res = w.router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "proxy");
    let outcomes: Vec<Outcome> = res.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Timeout,
            Outcome::Connect,
            Outcome::Connect,
            Outcome::Success
        ]
    );
    // The hang was sent (not retried: possibly billed); the reset never got an answer
    // either, but a connection error is retried as before.
    assert!(res.attempts[0].possibly_billed);
    assert!(!res.attempts[1].possibly_billed);
}

#[tokio::test]
async fn content_policy_returns_at_once_with_the_reason() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::ContentPolicy, Times::Once);
    let err = w.router.generate(req()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }));
    assert!(err.is_content_policy());
    let cause = err.cause().unwrap();
    assert_eq!(cause.status, Some(400));
    assert!(matches!(&cause.kind, ErrorKind::ContentPolicy { reason: Some(r) } if !r.is_empty()));
    assert_eq!(w.sim.stats("azure").requests, 0);
}

#[tokio::test]
async fn when_all_fail_the_error_lists_every_attempt() {
    let w = world(|b| b).await;
    w.sim.fail("openai", Fault::Status(500), Times::Always);
    w.sim.fail("azure", Fault::OrgNotVerified, Times::Always);
    w.sim.fail("proxy", Fault::Status(502), Times::Always);
    let err = w.router.generate(req()).await.unwrap_err();
    assert_eq!(err.attempts().len(), 5);
    assert!(err.is_access_denied(), "most telling cause first: {err}");
    assert_eq!(err.cause().unwrap().provider, "azure");
}

#[tokio::test]
async fn unknown_model_is_skipped_without_a_call() {
    let w = world(|b| b).await;
    let err = w
        .router
        .generate(GenerateRequest::new("x").model("some-future-model"))
        .await
        .unwrap_err();
    // OpenAI and Azure only serve catalog models; a proxy accepts any model name by default,
    // so it is asked, and its model_not_found is the answer.
    assert_eq!(err.skipped().len(), 2);
    for acct in ["openai", "azure"] {
        assert_eq!(w.sim.stats(acct).requests, 0);
    }
    assert!(err.is_not_found(), "{err}");
}
