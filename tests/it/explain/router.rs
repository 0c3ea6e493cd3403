//! `explain()` on every error type: the cause and the action in plain words.

use std::time::Duration;

use image_router::catalog::Catalog;
use image_router::{
    AccessDenial, Attempt, ConfigError, Error, ErrorKind, NotFoundKind, Outcome, ProviderError,
    RateLimitScope, Skip, SkipReason, ValidationError,
};

fn pe(kind: ErrorKind, status: u16, msg: &str) -> ProviderError {
    ProviderError::new("openai", kind, msg).with_status(status)
}

#[test]
fn tier_access_names_the_next_tier_from_the_catalog() {
    let e = pe(
        ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess,
        },
        429,
        "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
    );
    let x = e.explain_with(Catalog::builtin(), Some("tier-2"));
    assert!(x.cause.contains("not a real rate limit"), "{}", x.cause);
    assert!(x.action.contains("tier-3"), "{}", x.action);
    assert!(x.action.contains("$100 paid"), "{}", x.action);
    assert!(x.action.contains("7 or more days"), "{}", x.action);
    // And what it gives: the model's images per minute.
    assert!(
        x.action.contains("50 images per minute (IPM)"),
        "{}",
        x.action
    );
    // The guide's presets: the next preset, with the guide's requirement.
    let x = e.explain_with(Catalog::builtin(), Some("guide-tier-2"));
    assert!(x.action.contains("guide-tier-3"), "{}", x.action);
    assert!(x.action.contains("$500"), "{}", x.action);
    assert!(x.action.contains("30 days"), "{}", x.action);
    // Without a configured tier: the first tier with access.
    let x = e.explain();
    assert!(
        x.action.contains("tier-1") && x.action.contains("$5"),
        "{}",
        x.action
    );
    // The tier text follows the catalog data.
    let cat = Catalog::builtin()
        .with_overrides(
            "[usage_tiers.\"tier-1\"]\nrequirement = \"a signed form\"\n",
            "o.toml",
        )
        .unwrap();
    assert!(e.explain_with(&cat, None).action.contains("a signed form"));
}

#[test]
fn verification_gives_the_settings_page_and_propagation_delay() {
    let x = pe(
        ErrorKind::AccessDenied {
            reason: AccessDenial::OrganizationNotVerified,
        },
        403,
        "Your organization must be verified to use the model `gpt-image-1`.",
    )
    .explain();
    assert!(x
        .action
        .contains("https://platform.openai.com/settings/organization/general"));
    assert!(x.action.contains("15 minutes"));
}

#[test]
fn each_kind_has_its_own_cause_and_action() {
    let cases = [
        (
            pe(
                ErrorKind::AccessDenied {
                    reason: AccessDenial::InsufficientQuota,
                },
                429,
                "You exceeded your current quota",
            ),
            "quota",
            "credit",
        ),
        (
            pe(
                ErrorKind::AccessDenied {
                    reason: AccessDenial::BillingHardLimit,
                },
                400,
                "Billing hard limit has been reached",
            ),
            "hard limit",
            "hard limit",
        ),
        (
            pe(
                ErrorKind::AccessDenied {
                    reason: AccessDenial::RegionNotSupported,
                },
                403,
                "Country, region, or territory not supported",
            ),
            "region",
            "region",
        ),
        (
            pe(ErrorKind::Authentication, 401, "Incorrect API key provided"),
            "api key",
            "api_key_env",
        ),
        (
            pe(
                ErrorKind::NotFound {
                    what: NotFoundKind::Deployment,
                },
                404,
                "DeploymentNotFound",
            ),
            "deployment",
            "deployment",
        ),
        (
            pe(
                ErrorKind::NotFound {
                    what: NotFoundKind::Model,
                },
                404,
                "model_not_found",
            ),
            "model",
            "models",
        ),
        (
            pe(ErrorKind::Server, 503, "overloaded"),
            "internal error",
            "retry",
        ),
        (
            ProviderError::new(
                "openai",
                ErrorKind::Timeout { sent: true },
                "no answer within 30000 ms",
            ),
            "may still have generated",
            "timeout",
        ),
        (
            ProviderError::new(
                "openai",
                ErrorKind::Timeout { sent: false },
                "connect timeout",
            ),
            "nothing was sent",
            "timeout",
        ),
        (
            ProviderError::new("openai", ErrorKind::Connect, "connection refused"),
            "could not connect",
            "base_url",
        ),
        (
            pe(ErrorKind::InvalidRequest, 400, "bad size").with_param("size"),
            "request itself",
            "`size`",
        ),
    ];
    for (e, cause, action) in cases {
        let x = e.explain();
        assert!(x.cause.to_lowercase().contains(cause), "{e}: {}", x.cause);
        assert!(
            x.action.to_lowercase().contains(&action.to_lowercase()),
            "{e}: {}",
            x.action
        );
        // The provider's own words are quoted when there was a response.
        if e.status.is_some() {
            assert!(x.cause.contains(&e.message), "{}", x.cause);
        }
    }
}

#[test]
fn rate_limit_mentions_retry_after() {
    let x = pe(
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests,
        },
        429,
        "Rate limit reached",
    )
    .with_retry_after(Some(Duration::from_secs(12)))
    .explain();
    assert!(x.cause.contains("12.0 s"), "{}", x.cause);
    assert!(x.cause.contains("RPM"), "{}", x.cause);
    assert!(x.action.contains("rpm"), "{}", x.action);
}

#[test]
fn content_policy_quotes_the_reason() {
    let x = pe(
        ErrorKind::ContentPolicy {
            reason: Some("safety_violations=[violence]".into()),
        },
        400,
        "Your request was rejected by the safety system.",
    )
    .explain();
    assert!(
        x.cause.contains("safety_violations=[violence]"),
        "{}",
        x.cause
    );
    assert!(x.action.contains("failover_on_content_policy"));
}

#[test]
fn config_and_validation_errors_name_field_and_line() {
    let x = ConfigError::new("provider[1].endpoint", "missing")
        .at_line(12)
        .explain();
    assert!(x.cause.contains("provider[1].endpoint") && x.cause.contains("line 12"));
    let x = ConfigError::new(
        "provider[0].api_key_env",
        "environment variable K is not set",
    )
    .explain();
    assert!(x.action.contains("export"), "{}", x.action);
    let x = Error::from(ValidationError::new(
        "output_compression",
        "needs jpeg or webp",
    ))
    .explain();
    assert!(x.cause.contains("output_compression"));
    assert!(x.action.contains("nothing was sent"));
}

#[test]
fn router_error_explains_the_most_telling_attempt() {
    let attempts = vec![
        Attempt::failure(
            "gpt-image-1",
            pe(ErrorKind::Server, 503, "busy"),
            Duration::from_millis(5),
            0,
        ),
        Attempt::failure(
            "gpt-image-1",
            pe(
                ErrorKind::AccessDenied {
                    reason: AccessDenial::InsufficientQuota,
                },
                429,
                "You exceeded your current quota",
            ),
            Duration::from_millis(5),
            0,
        ),
    ];
    let e = Error::Exhausted {
        attempts,
        skipped: vec![],
        deadline_exceeded: false,
    };
    let x = e.explain();
    assert!(
        x.cause.starts_with("All providers failed (2 attempt(s))"),
        "{}",
        x.cause
    );
    assert!(x.cause.contains("quota"), "{}", x.cause);

    let skipped = vec![Skip::new(
        "azure",
        SkipReason::CoolingDown {
            cause: Outcome::Authentication,
            message: "bad key".into(),
            remaining: Duration::from_secs(60),
        },
    )];
    let e = Error::Exhausted {
        attempts: vec![],
        skipped,
        deadline_exceeded: false,
    };
    let x = e.explain();
    assert!(x.cause.contains("No provider could serve"), "{}", x.cause);
    assert!(x.cause.contains("bad key"));
    assert!(x.action.contains("key"));
}
