//! `explain()` covers every error class in plain words, also on the simulator's deadline and all-
//! failed answers: the CLI shows these texts to users who do not read traces.

use crate::support::cli::*;
use image_router::config::{build_provider, RouterConfig};
use image_router::sim::{Fault, Times};
use image_router::{
    AccessDenial, Error, ErrorKind, GenerateRequest, NotFoundKind, ProviderError, RateLimitScope,
};
use std::time::Duration;

#[test]
fn explain_covers_every_error_class_in_plain_words() {
    let pe = |kind: ErrorKind, msg: &str, status: u16| {
        ProviderError::new("acct", kind, msg).with_status(status)
    };
    let cases: Vec<(ProviderError, &[&str], &[&str])> = vec![
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::TierAccess },
                "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
                429,
            ),
            &["tier", "not a real rate limit"],
            &["verif", "tier-1"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::InsufficientQuota },
                "You exceeded your current quota, please check your plan and billing details.",
                429,
            )
            .with_code("insufficient_quota"),
            &["quota"],
            &["billing", "Retrying does not help"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::BillingHardLimit },
                "Billing hard limit has been reached",
                400,
            ),
            &["hard limit"],
            &["billing"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::OrganizationNotVerified },
                "Your organization must be verified to use the model `gpt-image-1`.",
                403,
            ),
            &["verified"],
            &["https://platform.openai.com/settings/organization/general", "15 minutes"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::RegionNotSupported },
                "Country, region, or territory not supported",
                403,
            ),
            &["region"],
            &["region"],
        ),
        (
            pe(ErrorKind::Authentication, "Incorrect API key provided", 401),
            &["key"],
            &["api_key_env"],
        ),
        (
            pe(
                ErrorKind::NotFound { what: NotFoundKind::Model },
                "The model `gpt-image-9` does not exist",
                404,
            ),
            &["model"],
            &["models"],
        ),
        (
            pe(
                ErrorKind::NotFound { what: NotFoundKind::Deployment },
                "The API deployment for this resource does not exist.",
                404,
            ),
            &["deployment"],
            &["deployment"],
        ),
        (
            pe(
                ErrorKind::ContentPolicy { reason: Some("safety_violations=[violence]".into()) },
                "Your request was rejected by the safety system.",
                400,
            ),
            &["safety", "violence"],
            &["prompt"],
        ),
        (
            pe(
                ErrorKind::RateLimited { scope: RateLimitScope::Requests },
                "Rate limit reached for gpt-image-1 on requests per min (RPM): Limit 5, Used 5, Requested 1.",
                429,
            )
            .with_retry_after(Some(Duration::from_secs(12))),
            &["rate limited", "requests per minute", "12.0 s"],
            &["rpm"],
        ),
        (
            pe(ErrorKind::Server, "The server had an error", 500),
            &["internal error"],
            &["retry"],
        ),
        (
            ProviderError::new("acct", ErrorKind::Timeout { sent: true }, "no answer in 30 s"),
            &["in time"],
            &["timeout"],
        ),
        (
            ProviderError::new("acct", ErrorKind::Connect, "connection refused"),
            &["connect"],
            &["base_url"],
        ),
    ];
    for (err, cause_words, action_words) in cases {
        let x = err.explain();
        for w in cause_words {
            assert!(
                x.cause.to_lowercase().contains(&w.to_lowercase()),
                "{:?}: cause lacks {w:?}: {}",
                err.kind,
                x.cause
            );
        }
        for w in action_words {
            assert!(
                x.action.to_lowercase().contains(&w.to_lowercase()),
                "{:?}: action lacks {w:?}: {}",
                err.kind,
                x.action
            );
        }
        // The provider's own words are quoted so nothing is hidden.
        assert!(
            x.cause.contains(&err.message) || err.message.is_empty(),
            "{}",
            x.cause
        );
        // Display is "cause\nWhat to do: action".
        assert!(x.to_string().contains("What to do:"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_deadline_and_all_failed_on_the_simulator() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    // All failed: every provider refuses the key.
    for a in ["primary", "azure", "proxy"] {
        sim.fail(a, Fault::InvalidApiKey, Times::Always);
    }
    let router = three_config(&sim, "")
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let e = router
        .generate(GenerateRequest::new("a fox"))
        .await
        .unwrap_err();
    let x = e.explain();
    assert!(x.cause.starts_with("All providers failed"), "{x}");
    assert!(x.cause.contains("API key"), "{x}");
    assert_eq!(e.attempts().len(), 3);

    // Deadline: every provider hangs past a short deadline.
    for a in ["primary", "azure", "proxy"] {
        sim.clear_faults(a);
        sim.fail(a, Fault::Hang, Times::Always);
    }
    let router = three_config(&sim, "")
        .replace("deadline = \"30s\"", "deadline = \"600ms\"")
        .replace("timeout = \"10s\"", "timeout = \"300ms\"")
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        router.generate(GenerateRequest::new("a fox")),
    )
    .await
    .expect("the deadline bounds the request")
    .unwrap_err();
    assert!(e.is_deadline_exceeded() || matches!(e, Error::Exhausted { .. }));
    let x = e.explain();
    let all = format!("{x}").to_lowercase();
    assert!(
        all.contains("deadline") || all.contains("in time"),
        "a deadline failure says so: {x}"
    );
    assert!(
        x.action.contains("deadline") || x.action.contains("timeout"),
        "{x}"
    );
}
