//! The routing rules (failover, retry, cool-down, skips), against scripted providers on
//! tokio's paused clock.

use crate::support;

use std::time::Duration;

use image_router::{
    AccessDenial, Error, ErrorKind, GenerateRequest, NotFoundKind, Outcome, OutputFormat, Router,
    Size, SkipReason,
};
use support::{shared, Fake, Step};

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse").model("gpt-image-1")
}

fn outcomes(attempts: &[image_router::Attempt]) -> Vec<(String, Outcome, u32)> {
    attempts
        .iter()
        .map(|a| (a.provider.clone(), a.outcome, a.retry))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn provider_that_cannot_serve_is_skipped_without_a_call() {
    let (a, a_h) = shared(Fake::new("azure").no_webp());
    let (b, b_h) = shared(Fake::new("openai"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let res = router
        .generate(req().output_format(OutputFormat::Webp))
        .await
        .unwrap();
    assert_eq!(res.provider, "openai");
    assert_eq!(a_h.calls(), 0);
    assert_eq!(b_h.calls(), 1);
    assert_eq!(res.skipped.len(), 1);
    assert_eq!(res.skipped[0].provider, "azure");
    assert!(matches!(
        res.skipped[0].reason,
        SkipReason::Unsupported { ref detail } if detail.field() == "output_format"
    ));
}

#[tokio::test(start_paused = true)]
async fn edits_skip_providers_without_edits() {
    let (a, a_h) = shared(Fake::new("chat-proxy").no_edits());
    let (b, _) = shared(Fake::new("openai"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let img = image_router::InputImage::new(support::PIXEL_PNG.to_vec(), "a.png");
    let res = router
        .edit(image_router::EditRequest::new("add a hat", vec![img]).model("gpt-image-1"))
        .await
        .unwrap();
    assert_eq!(res.provider, "openai");
    assert_eq!(a_h.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_fails_over_at_once() {
    let (a, a_h) = shared(Fake::new("a").rate_limited(Some(Duration::from_secs(30))));
    let (b, _) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let t0 = tokio::time::Instant::now();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "no wait: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        outcomes(&res.attempts),
        vec![
            ("a".into(), Outcome::RateLimited, 0),
            ("b".into(), Outcome::Success, 0)
        ]
    );
    assert_eq!(res.attempts[0].status, Some(429));
    // The next request goes to b first: a is still inside its retry-after.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(a_h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_waits_when_no_other_provider_and_deadline_allows() {
    let (a, a_h) = shared(Fake::new("a").rate_limited(Some(Duration::from_secs(2))));
    let router = Router::builder()
        .provider(a)
        .deadline(Duration::from_secs(60))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a");
    assert!(t0.elapsed() >= Duration::from_secs(2));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(a_h.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_does_not_wait_past_the_deadline() {
    let (a, a_h) = shared(Fake::new("a").rate_limited(Some(Duration::from_secs(120))));
    let router = Router::builder()
        .provider(a)
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let err = router.generate(req()).await.unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(err.is_rate_limited(), "{err}");
    assert!(!err.is_deadline_exceeded());
    assert_eq!(a_h.calls(), 1);
    assert_eq!(
        err.cause().unwrap().retry_after,
        Some(Duration::from_secs(120))
    );
}

#[tokio::test(start_paused = true)]
async fn access_denied_fails_over_and_cools_down() {
    let denied = ErrorKind::AccessDenied {
        reason: AccessDenial::OrganizationNotVerified,
    };
    let (a, a_h) = shared(Fake::new("a").fail(denied, 403));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .cooldown(Duration::from_secs(60))
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    for _ in 0..3 {
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "b");
        assert_eq!(res.attempts.len(), 1);
        assert!(matches!(
            res.skipped[0].reason,
            SkipReason::CoolingDown {
                cause: Outcome::AccessDenied,
                ..
            }
        ));
    }
    assert_eq!(
        a_h.calls(),
        1,
        "primary not called again within the cool-down"
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a", "back after the cool-down");
    assert_eq!(a_h.calls(), 2);
    assert_eq!(b_h.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn authentication_and_model_not_found_cool_down() {
    let (a, a_h) = shared(Fake::new("a").fail(ErrorKind::Authentication, 401));
    let nf = ErrorKind::NotFound {
        what: NotFoundKind::Model,
    };
    let (b, b_h) = shared(Fake::new("b").fail(nf, 404));
    let (c, _) = shared(Fake::new("c"));
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .provider(c)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "c");
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "c");
    assert_eq!((a_h.calls(), b_h.calls()), (1, 1));
    // Model not found cools down that model only: another model still goes to b.
    let res = router
        .generate(GenerateRequest::new("x").model("gpt-image-1-mini"))
        .await
        .unwrap();
    assert_eq!(res.provider, "b");
}

#[tokio::test(start_paused = true)]
async fn server_error_retries_once_then_fails_over() {
    let (a, a_h) = shared(
        Fake::new("a")
            .fail(ErrorKind::Server, 503)
            .fail(ErrorKind::Server, 503),
    );
    let (b, _) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(
        outcomes(&res.attempts),
        vec![
            ("a".into(), Outcome::Server, 0),
            ("a".into(), Outcome::Server, 1),
            ("b".into(), Outcome::Success, 0)
        ]
    );
    assert_eq!(a_h.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn transient_error_once_is_served_by_the_retry() {
    let (a, _) = shared(Fake::new("a").fail(ErrorKind::Connect, 0));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "a");
    assert_eq!(res.attempts.len(), 2);
    assert_eq!(res.attempts[1].retry, 1);
    assert_eq!(b_h.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn invalid_request_returns_at_once() {
    let (a, _) = shared(Fake::new("a").fail(ErrorKind::InvalidRequest, 400));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let err = router.generate(req()).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }));
    assert!(err.is_invalid());
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(b_h.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn content_policy_returns_by_default_and_fails_over_when_configured() {
    let cp = || ErrorKind::ContentPolicy {
        reason: Some("safety_violations=[violence]".into()),
    };
    let (a, _) = shared(Fake::new("a").fail(cp(), 400));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let err = router.generate(req()).await.unwrap_err();
    assert!(err.is_content_policy());
    assert_eq!(b_h.calls(), 0);

    let (a, _) = shared(Fake::new("a").fail(cp(), 400));
    let (b, b_h) = shared(Fake::new("b"));
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .failover_on_content_policy(true)
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(b_h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn slow_provider_times_out_then_fails_over() {
    let (a, a_h) = shared(
        Fake::new("a")
            .then(Step::Delay(Duration::from_secs(100)))
            .then(Step::Delay(Duration::from_secs(100))),
    );
    let (b, _) = shared(Fake::new("b"));
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(
        outcomes(&res.attempts),
        vec![
            ("a".into(), Outcome::Timeout, 0),
            ("b".into(), Outcome::Success, 0)
        ]
    );
    // A timeout after sending is not re-sent to the same provider (it may have billed it).
    assert_eq!(a_h.calls(), 1);
    assert!(res.attempts[0].possibly_billed);
    assert!(res.attempts[0].to_string().contains("possibly billed"));
}

#[tokio::test(start_paused = true)]
async fn no_request_waits_past_its_deadline() {
    let (a, _) = shared(Fake::new("a").then(Step::Delay(Duration::from_secs(1000))));
    let router = Router::builder()
        .provider(a)
        .attempt_timeout(Duration::from_secs(60))
        .deadline(Duration::from_secs(7))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    let err = router.generate(req()).await.unwrap_err();
    assert!(t0.elapsed() <= Duration::from_secs(7) + Duration::from_millis(5));
    assert!(err.is_deadline_exceeded(), "{err}");
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(err.attempts()[0].outcome, Outcome::Timeout);
}

#[tokio::test(start_paused = true)]
async fn all_failed_lists_every_attempt_with_the_most_telling_cause() {
    let (a, _) = shared(
        Fake::new("a")
            .fail(ErrorKind::Server, 503)
            .fail(ErrorKind::Server, 503),
    );
    let denied = ErrorKind::AccessDenied {
        reason: AccessDenial::InsufficientQuota,
    };
    let (b, _) = shared(Fake::new("b").fail(denied, 429));
    let (c, _) = shared(Fake::new("c").no_webp());
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .provider(c)
        .build()
        .unwrap();
    let err = router
        .generate(req().output_format(OutputFormat::Webp))
        .await
        .unwrap_err();
    assert_eq!(err.attempts().len(), 3);
    assert_eq!(err.skipped().len(), 1);
    assert!(err.is_access_denied(), "{err}");
    assert_eq!(err.cause().unwrap().provider, "b");
    let text = err.to_string();
    assert!(text.contains("b"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn max_attempts_bounds_the_calls() {
    let mut providers = Vec::new();
    let mut builder = Router::builder().max_attempts(3);
    for i in 0..5 {
        let (p, h) = shared(
            Fake::new(&format!("p{i}"))
                .fail(ErrorKind::Server, 500)
                .fail(ErrorKind::Server, 500),
        );
        builder = builder.provider(p);
        providers.push(h);
    }
    let router = builder.build().unwrap();
    let err = router.generate(req()).await.unwrap_err();
    assert_eq!(err.attempts().len(), 3);
    let total: usize = providers.iter().map(|p| p.calls()).sum();
    assert_eq!(total, 3);
}

#[tokio::test(start_paused = true)]
async fn empty_answer_is_an_error_not_a_success() {
    let (a, _) = shared(Fake::new("a").then(Step::Empty).then(Step::Empty));
    let (b, _) = shared(Fake::new("b"));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b");
    assert_eq!(res.attempts[0].outcome, Outcome::Decode);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_fail_before_any_call() {
    let (a, a_h) = shared(Fake::new("a"));
    let router = Router::builder().provider(a).build().unwrap();
    let cases: Vec<(GenerateRequest, &str)> = vec![
        (GenerateRequest::new("  "), "prompt"),
        (req().n(0), "n"),
        (req().n(11), "n"),
        (req().output_compression(50u8), "output_compression"),
        (
            req()
                .output_format(OutputFormat::Jpeg)
                .background(image_router::Background::Transparent),
            "background",
        ),
        (req().size(Size::new(512, 512)), "size"),
        (
            GenerateRequest::new("x".repeat(32_001)).model("gpt-image-1"),
            "prompt",
        ),
        (
            GenerateRequest::new("x".repeat(4_001)).model("dall-e-3"),
            "prompt",
        ),
        (GenerateRequest::new("x").model("dall-e-3").n(2), "n"),
    ];
    for (r, field) in cases {
        match router.generate(r).await {
            Err(Error::Invalid(v)) => assert_eq!(v.field, field, "{v}"),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert_eq!(a_h.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn default_model_is_resolved_and_reported() {
    let (a, _) = shared(Fake::new("a"));
    let router = Router::builder()
        .provider(a)
        .default_model("gpt-image-1-mini")
        .build()
        .unwrap();
    let res = router.generate(GenerateRequest::new("x")).await.unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    assert_eq!(res.attempts[0].model, "gpt-image-1-mini");
}

#[test]
fn build_reports_bad_settings_by_field() {
    let err = Router::builder().build().unwrap_err();
    assert_eq!(err.field, "providers");
    let err = Router::builder()
        .provider(Fake::new("a"))
        .provider(Fake::new("a"))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "providers[1].name");
    let err = Router::builder()
        .provider(Fake::new("a"))
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "attempt_timeout");
    let err = Router::builder()
        .provider(Fake::new("a"))
        .deadline(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "deadline");
    let err = Router::builder()
        .provider(Fake::new("a"))
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field, "max_attempts");
    let err = Router::builder()
        .provider(Fake::new(" "))
        .build()
        .unwrap_err();
    assert_eq!(err.field, "providers[0].name");
}

#[tokio::test(start_paused = true)]
async fn request_classes_reserve_and_prefer_providers() {
    use image_router::ProviderOptions;
    use image_router::{ClassPolicy, RequestClass};
    let (direct, direct_h) = shared(Fake::new("direct"));
    let (proxy, _) = shared(Fake::new("proxy"));
    let (azure, _) = shared(Fake::new("azure"));
    let router = Router::builder()
        // The high-tier direct account is kept for interactive work.
        .provider_with(
            direct,
            ProviderOptions::new().classes(ClassPolicy::reserved([RequestClass::INTERACTIVE])),
        )
        .provider(proxy)
        // Enterprise batch work prefers Azure.
        .provider_with(
            azure,
            ProviderOptions::new().classes(ClassPolicy::preferred([RequestClass::BATCH])),
        )
        .build()
        .unwrap();
    let res = router
        .send_as(req().into(), Some(&RequestClass::INTERACTIVE))
        .await
        .unwrap();
    assert_eq!(res.provider, "direct");
    let res = router
        .send_as(req().into(), Some(&RequestClass::BATCH))
        .await
        .unwrap();
    assert_eq!(res.provider, "azure", "preferred by batch, tried first");
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "direct" && matches!(s.reason, SkipReason::Reserved { .. })));
    // No class: reserved providers are not used either.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "proxy");
    assert_eq!(direct_h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn ranking_for_a_request_shows_order_scores_and_skips() {
    let (a, _) = shared(Fake::new("azure").no_webp());
    let (b, _) = shared(Fake::new("openai"));
    let (c, _) = shared(Fake::new("proxy"));
    let router = Router::builder()
        .provider(a)
        .provider(b)
        .provider(c)
        .strategy(image_router::Strategy::Scored)
        .build()
        .unwrap();
    let ranked = router
        .rank(&req().output_format(OutputFormat::Webp).into(), None)
        .unwrap();
    let names: Vec<&str> = ranked.order.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["openai", "proxy"]);
    let (_, first) = &ranked.order[0];
    assert_eq!(first.inputs.priority, 1);
    assert!(first.total > ranked.order[1].1.total);
    assert_eq!(ranked.skipped[0].provider, "azure");
    assert!(router.rank(&GenerateRequest::new("").into(), None).is_err());
}

#[tokio::test(start_paused = true)]
async fn default_strategy_keeps_the_configured_order_among_comparable_providers() {
    // The first request asks for webp, which only the fallback serves, so the fallback gets
    // measured (5 ms); after that the primary answers in 30 ms. Under the default (scored)
    // strategy that difference is noise: every later request goes to the primary, as the
    // configured order says.
    let primary = (0..10).fold(Fake::new("primary").no_webp(), |p, _| {
        p.then(Step::Delay(Duration::from_millis(30)))
    });
    let (primary, primary_h) = shared(primary);
    let (fallback, fallback_h) =
        shared(Fake::new("fallback").then(Step::Delay(Duration::from_millis(5))));
    let router = Router::builder()
        .provider(primary)
        .provider(fallback)
        .build()
        .unwrap();
    let first = router
        .generate(req().output_format(OutputFormat::Webp))
        .await
        .unwrap();
    assert_eq!(first.provider, "fallback");
    assert_eq!(fallback_h.calls(), 1);
    for _ in 0..10 {
        let res = router.generate(req()).await.unwrap();
        assert_eq!(
            res.provider,
            "primary",
            "{:?}",
            router.rank(&req().into(), None)
        );
    }
    assert_eq!(fallback_h.calls(), 1);
    assert_eq!(primary_h.calls(), 10);
}

#[tokio::test(start_paused = true)]
async fn default_strategy_moves_to_a_clearly_faster_fallback() {
    // The primary takes 4 s per image, the fallback 200 ms: the default strategy tries the
    // unmeasured fallback once and then keeps sending it the traffic.
    let (primary, _) = shared((0..20).fold(Fake::new("primary"), |p, _| {
        p.then(Step::Delay(Duration::from_secs(4)))
    }));
    let (fallback, _) = shared((0..20).fold(Fake::new("fallback"), |p, _| {
        p.then(Step::Delay(Duration::from_millis(200)))
    }));
    let router = Router::builder()
        .provider(primary)
        .provider(fallback)
        .build()
        .unwrap();
    let mut served = Vec::new();
    for _ in 0..10 {
        served.push(router.generate(req()).await.unwrap().provider);
    }
    assert_eq!(served[0], "primary", "both unmeasured: configured order");
    assert!(
        served[1..].iter().all(|p| p == "fallback"),
        "the faster fallback takes over: {served:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn default_strategy_fills_the_primarys_tier_before_overflowing() {
    // Tier 1 allows 6 images a minute, tier 2 15, tier 3 25: under the default strategy the
    // primary serves every one of them before the fallback gets any, as the configured
    // order asks; the next request overflows, and none is refused. (Safety margin 1 so the
    // limit is the tier's; the default 0.9 keeps 10 % in reserve.)
    for rpm in [6u32, 15, 25] {
        let (primary, primary_h) = shared(Fake::new("primary"));
        let (fallback, fallback_h) = shared(Fake::new("fallback"));
        let router = Router::builder()
            .provider_with(
                primary,
                image_router::ProviderOptions::new()
                    .rpm(rpm)
                    .safety_margin(1.0),
            )
            .provider(fallback)
            .build()
            .unwrap();
        for i in 0..rpm {
            let res = router.generate(req()).await.unwrap();
            assert_eq!(res.provider, "primary", "rpm {rpm}, request {i}");
        }
        let res = router.generate(req()).await.unwrap();
        assert_eq!(
            res.provider, "fallback",
            "rpm {rpm}: the next one overflows"
        );
        // The response says why the primary was passed over.
        let skip = res
            .skipped
            .iter()
            .find(|s| s.provider == "primary")
            .expect("the primary is listed as skipped");
        match &skip.reason {
            SkipReason::NoHeadroom { retry_in, .. } => {
                assert!(retry_in.is_some_and(|d| d <= Duration::from_secs(60)))
            }
            other => panic!("unexpected reason {other:?}"),
        }
        // The wait is said once, in whole milliseconds.
        let shown = skip.reason.to_string();
        assert_eq!(shown.matches("room in").count(), 1, "{shown}");
        assert!(shown.ends_with(" ms)"), "{shown}");
        assert_eq!(primary_h.calls(), rpm as usize);
        assert_eq!(fallback_h.calls(), 1);
    }
}
