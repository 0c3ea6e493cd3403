//! One rule per setting, the same through `RouterBuilder::build` and the configuration file:
//! each settings type has one `validate()` both call. Each case is refused by both, with the
//! field named the builder's way (`breaker.cool_down_multiplier`) and the file's way
//! (`router.breaker.cool_down_multiplier`, plus the line), and the boundary value next to it
//! is accepted by both.

use std::time::Duration;

use image_router::config::RouterConfig;
use image_router::providers::OpenAi;
use image_router::{
    breaker::BreakerConfig, health::HealthConfig, ConfigError, ProviderOptions, Router,
};

fn openai() -> OpenAi {
    OpenAi::builder().api_key("k").build().unwrap()
}

const PROVIDER: &str = "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n";

/// `[router]` + `table` (its own header included) + one provider with `provider_keys`.
fn file(router_keys: &str, table: &str, provider_keys: &str) -> Result<RouterConfig, ConfigError> {
    format!("[router]\n{router_keys}\n{table}\n{PROVIDER}{provider_keys}").parse()
}

fn line_of(text_before: &str) -> usize {
    text_before.lines().count() + 1
}

#[test]
fn breaker_rules_agree() {
    // (key, bad file value, bad config, good file value, good config)
    type Case = (
        &'static str,
        &'static str,
        BreakerConfig,
        &'static str,
        BreakerConfig,
    );
    let d = BreakerConfig::default;
    let cases: Vec<Case> = vec![
        (
            "cool_down_multiplier",
            "0.5",
            BreakerConfig {
                cool_down_multiplier: 0.5,
                ..d()
            },
            "1.0",
            BreakerConfig {
                cool_down_multiplier: 1.0,
                ..d()
            },
        ),
        (
            "max_cool_down",
            "\"0s\"",
            BreakerConfig {
                max_cool_down: Duration::ZERO,
                ..d()
            },
            "\"1s\"",
            BreakerConfig {
                max_cool_down: Duration::from_secs(1),
                ..d()
            },
        ),
        (
            "failure_ratio",
            "0.0",
            BreakerConfig {
                failure_ratio: 0.0,
                ..d()
            },
            "0.01",
            BreakerConfig {
                failure_ratio: 0.01,
                ..d()
            },
        ),
        (
            "ramp_start",
            "1.5",
            BreakerConfig {
                ramp_start: 1.5,
                ..d()
            },
            "1.0",
            BreakerConfig {
                ramp_start: 1.0,
                ..d()
            },
        ),
    ];
    for (key, bad_v, bad_c, good_v, good_c) in cases {
        let e = Router::builder()
            .provider(openai())
            .breaker(bad_c)
            .build()
            .unwrap_err();
        assert_eq!(e.field, format!("breaker.{key}"), "{e:?}");
        let e = file("", &format!("[router.breaker]\n{key} = {bad_v}"), "").unwrap_err();
        assert_eq!(e.field, format!("router.breaker.{key}"), "{e:?}");
        assert_eq!(
            e.line,
            Some(line_of("[router]\n\n[router.breaker]\n")),
            "{e:?}"
        );
        assert!(
            Router::builder()
                .provider(openai())
                .breaker(good_c)
                .build()
                .is_ok(),
            "{key}"
        );
        let cfg = file("", &format!("[router.breaker]\n{key} = {good_v}"), "");
        assert!(cfg.is_ok(), "{key}: {cfg:?}");
    }
}

#[test]
fn health_rules_agree() {
    type Case = (&'static str, &'static str, HealthConfig);
    let d = HealthConfig::default;
    let bad: Vec<Case> = vec![
        ("buckets", "0", HealthConfig { buckets: 0, ..d() }),
        (
            "buckets",
            "2000",
            HealthConfig {
                buckets: 2000,
                ..d()
            },
        ),
        (
            "latency_decay",
            "\"0s\"",
            HealthConfig {
                latency_decay: Duration::ZERO,
                ..d()
            },
        ),
        (
            "idle_decay",
            "\"0s\"",
            HealthConfig {
                idle_decay: Some(Duration::ZERO),
                ..d()
            },
        ),
        (
            "window",
            "\"0s\"",
            HealthConfig {
                window: Duration::ZERO,
                ..d()
            },
        ),
    ];
    for (key, v, c) in bad {
        let e = Router::builder()
            .provider(openai())
            .health(c)
            .build()
            .unwrap_err();
        assert_eq!(e.field, format!("health.{key}"), "{e:?}");
        let e = file("", &format!("[router.health]\n{key} = {v}"), "").unwrap_err();
        assert_eq!(e.field, format!("router.health.{key}"), "{e:?}");
        assert_eq!(e.line, Some(4), "{e:?}");
    }
    // Zero default latency is the documented optimistic default: both accept it.
    let zero = HealthConfig {
        default_latency: Duration::ZERO,
        ..d()
    };
    assert!(Router::builder()
        .provider(openai())
        .health(zero)
        .build()
        .is_ok());
    let cfg = file(
        "",
        "[router.health]\ndefault_latency = \"0s\"\nbuckets = 1024",
        "",
    )
    .unwrap();
    let h = cfg.router.health.unwrap();
    assert_eq!(h.default_latency, Duration::ZERO);
    assert_eq!(h.buckets, 1024);
}

#[test]
fn request_settings_rules_agree() {
    let b = || Router::builder().provider(openai());
    let cases: Vec<(Result<Router, ConfigError>, &str, &str, &str)> = vec![
        (
            b().max_attempts(101).build(),
            "max_attempts",
            "max_attempts = 101",
            "router.max_attempts",
        ),
        (
            b().max_attempts(0).build(),
            "max_attempts",
            "max_attempts = 0",
            "router.max_attempts",
        ),
        (
            b().cooldown(Duration::ZERO).build(),
            "cooldown",
            "cooldown = \"0s\"",
            "router.cooldown",
        ),
        (
            b().retry_backoff(Duration::ZERO).build(),
            "retry_backoff",
            "retry_backoff = \"0s\"",
            "router.retry_backoff",
        ),
        (
            b().rate_limit_wait(Duration::ZERO).build(),
            "rate_limit_wait",
            "rate_limit_wait = \"0s\"",
            "router.rate_limit_wait",
        ),
        (
            b().attempt_timeout(Duration::ZERO).build(),
            "attempt_timeout",
            "timeout = \"0s\"",
            "router.timeout",
        ),
        (
            b().fallback_usd_per_image(0.0).build(),
            "fallback_usd_per_image",
            "fallback_usd_per_image = 0.0",
            "router.fallback_usd_per_image",
        ),
        (
            b().default_model(" ").build(),
            "default_model",
            "default_model = \" \"",
            "router.default_model",
        ),
    ];
    for (built, builder_field, toml, file_field) in cases {
        let e = built.unwrap_err();
        assert_eq!(e.field, builder_field, "{e:?}");
        let e = file(toml, "", "").unwrap_err();
        assert_eq!(e.field, file_field, "{toml}: {e:?}");
        assert_eq!(e.line, Some(2), "{toml}: {e:?}");
    }
    assert!(b().max_attempts(100).build().is_ok());
    assert_eq!(
        file("max_attempts = 100", "", "")
            .unwrap()
            .router
            .max_attempts,
        Some(100)
    );
    // `max_wait = 0` is documented (never wait): both accept it.
    assert!(b().max_wait(Duration::ZERO).build().is_ok());
    assert!(file("max_wait = \"0s\"", "", "").is_ok());
}

#[test]
fn provider_limit_rules_agree() {
    let cases: Vec<(ProviderOptions, &str, &str)> = vec![
        (ProviderOptions::new().rpm(0), "rpm", "rpm = 0"),
        (ProviderOptions::new().tpm(0), "tpm", "tpm = 0"),
        (ProviderOptions::new().ipm(0), "ipm", "ipm = 0"),
        (
            ProviderOptions::new().safety_margin(1.5),
            "safety_margin",
            "safety_margin = 1.5",
        ),
        (
            ProviderOptions::new().safety_margin(0.0),
            "safety_margin",
            "safety_margin = 0.0",
        ),
        (ProviderOptions::new().weight(0.0), "weight", "weight = 0.0"),
        (
            ProviderOptions::new().weight(f64::INFINITY),
            "weight",
            "weight = inf",
        ),
    ];
    for (o, key, toml) in cases {
        let e = Router::builder()
            .provider_with(openai(), o)
            .build()
            .unwrap_err();
        assert_eq!(e.field, format!("providers[0].{key}"), "{e:?}");
        let e = file("", "", toml).unwrap_err();
        assert_eq!(e.field, format!("provider[0].{key}"), "{toml}: {e:?}");
        assert_eq!(e.line, Some(8), "{toml}: {e:?}");
    }
    let ok = ProviderOptions::new()
        .rpm(1)
        .tpm(1)
        .safety_margin(1.0)
        .weight(0.5);
    assert!(Router::builder()
        .provider_with(openai(), ok)
        .build()
        .is_ok());
    assert!(file(
        "",
        "",
        "rpm = 1\ntpm = 1\nsafety_margin = 1.0\nweight = 0.5"
    )
    .is_ok());
}

#[test]
fn score_rules_in_the_file() {
    // The builder takes an opaque `Scorer`; the file's `[router.score]` is checked by
    // `ScoreWeights::validate`. A zero latency slack is documented (raw latencies).
    let cfg = file(
        "",
        "[router.score]\nlatency_slack = \"0s\"\nheadroom_knee = 1.0",
        "",
    )
    .unwrap();
    assert_eq!(cfg.router.score.unwrap().latency_slack_ms, 0.0);
    let e = file("", "[router.score]\nlatency = inf", "").unwrap_err();
    assert_eq!(e.field, "router.score.latency");
    assert_eq!(e.line, Some(4));
}
