//! Config file parsing: every error names the key and its line; a valid file maps onto the
//! router's settings.

use image_router::config::RouterConfig;
use image_router::providers::CompatibleMode;
use image_router::ProviderKind;
use image_router::Strategy;
use std::time::Duration;

const EXAMPLE: &str = r#"
[router]
strategy = "ordered"          # or "scored", "weighted"
timeout = "30s"               # per attempt
deadline = "120s"             # whole request
max_attempts = 4

[[provider]]
name = "openai-direct"
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"
tier = "tier-2"
rpm = 15
tpm = 500000

[[provider]]
name = "azure-east"
kind = "azure"
endpoint = "https://example.openai.azure.com"
deployment = "gpt-image-1"
api_version = "2025-04-01-preview"
api_key_env = "AZURE_OPENAI_API_KEY"

[[provider]]
name = "proxy"
kind = "compatible"
base_url = "https://proxy.example/v1"
api_key_env = "PROXY_API_KEY"
mode = "images"
"#;

fn err(text: &str) -> image_router::ConfigError {
    text.parse::<RouterConfig>().unwrap_err()
}

#[test]
fn issue_example_parses() {
    let cfg: RouterConfig = EXAMPLE.parse().unwrap();
    assert_eq!(cfg.router.strategy, Some(Strategy::Ordered));
    assert_eq!(cfg.router.timeout, Some(Duration::from_secs(30)));
    assert_eq!(cfg.router.deadline, Some(Duration::from_secs(120)));
    assert_eq!(cfg.router.max_attempts, Some(4));
    assert_eq!(cfg.providers.len(), 3);
    let p = &cfg.providers[0];
    assert_eq!(p.kind, ProviderKind::OpenAi);
    assert_eq!(p.rpm, Some(15));
    assert_eq!(p.tpm, Some(500_000));
    assert_eq!(p.line, 8);
    assert_eq!(p.line_of("tier"), 13);
    assert_eq!(cfg.providers[1].kind, ProviderKind::Azure);
    assert_eq!(cfg.providers[1].deployment.as_deref(), Some("gpt-image-1"));
    assert_eq!(cfg.providers[2].mode, Some(CompatibleMode::Images));
    assert_eq!(cfg.providers[2].line, 25);
    cfg.catalog().unwrap();
}

#[test]
fn durations_accept_go_syntax() {
    let cfg: RouterConfig = "[router]\ntimeout = \"1500ms\"\ndeadline = \"2m\"\ncooldown = \"1m30s\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n"
        .parse()
        .unwrap();
    assert_eq!(cfg.router.timeout, Some(Duration::from_millis(1500)));
    assert_eq!(cfg.router.deadline, Some(Duration::from_secs(120)));
    assert_eq!(cfg.router.cooldown, Some(Duration::from_secs(90)));
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = EXAMPLE.replace("rpm = 15", "rpn = 15");
    let e = err(&text);
    assert_eq!(e.line, Some(14), "{e}");
    assert!(e.message.contains("rpn"), "{e}");
    assert_eq!(e.field, "provider[0].rpn");

    let e = err("[router]\nstrategy = \"ordered\"\ntimeot = \"3s\"\n");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.field, "router.timeot");
}

#[test]
fn wrong_type_names_key_and_line() {
    let text = EXAMPLE.replace("rpm = 15", "rpm = \"fifteen\"");
    let e = err(&text);
    assert_eq!(e.line, Some(14), "{e}");
    assert_eq!(e.field, "provider[0].rpm", "{e}");

    let text = EXAMPLE.replace("max_attempts = 4", "max_attempts = \"4\"");
    let e = err(&text);
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(e.field, "router.max_attempts");
}

#[test]
fn bad_values_name_key_and_line() {
    for (from, to, field, line) in [
        (
            "timeout = \"30s\"",
            "timeout = \"30 seconds\"",
            "router.timeout",
            4,
        ),
        (
            "strategy = \"ordered\"",
            "strategy = \"fastest\"",
            "router.strategy",
            3,
        ),
        (
            "max_attempts = 4",
            "max_attempts = 0",
            "router.max_attempts",
            6,
        ),
        ("kind = \"azure\"", "kind = \"aws\"", "provider[1].kind", 19),
        (
            "mode = \"images\"",
            "mode = \"video\"",
            "provider[2].mode",
            30,
        ),
        ("rpm = 15", "rpm = -1", "provider[0].rpm", 14),
        (
            "base_url = \"https://proxy.example/v1\"",
            "base_url = \"not a url\"",
            "provider[2].base_url",
            28,
        ),
        (
            "api_key_env = \"PROXY_API_KEY\"",
            "api_key_env = \"sk-abc123\"",
            "provider[2].api_key_env",
            29,
        ),
    ] {
        let text = EXAMPLE.replace(from, to);
        assert_ne!(text, EXAMPLE, "{from}");
        let e = err(&text);
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.line, Some(line), "{e}");
    }
}

#[test]
fn key_values_never_appear_in_errors() {
    let text = EXAMPLE.replace(
        "api_key_env = \"PROXY_API_KEY\"",
        "api_key_env = \"sk-secretvalue\"",
    );
    let e = err(&text);
    // The message explains what to do; it quotes nothing from the value.
    assert!(!e.to_string().contains("secretvalue"), "{e}");
}

#[test]
fn missing_required_fields_name_the_provider_line() {
    let e = err(&EXAMPLE.replace("endpoint = \"https://example.openai.azure.com\"\n", ""));
    assert_eq!(e.field, "provider[1].endpoint");
    assert_eq!(e.line, Some(17));

    let e = err(&EXAMPLE.replace("base_url = \"https://proxy.example/v1\"\n", ""));
    assert_eq!(e.field, "provider[2].base_url");
    assert_eq!(e.line, Some(25));

    let e = err(&EXAMPLE.replace("name = \"openai-direct\"\n", ""));
    assert_eq!(e.field, "provider[0].name");
    assert_eq!(e.line, Some(8));

    let e = err(&EXAMPLE.replace("deployment = \"gpt-image-1\"\n", ""));
    assert_eq!(e.field, "provider[1].deployment");

    let e = err(&EXAMPLE.replace("api_key_env = \"OPENAI_API_KEY\"\n", ""));
    assert_eq!(e.field, "provider[0].api_key_env");
    assert_eq!(e.line, Some(8));

    let e = err("[router]\ntimeout = \"3s\"\n");
    assert_eq!(e.field, "provider");
}

#[test]
fn keys_for_another_kind_are_errors() {
    let e = err(&EXAMPLE.replace(
        "tier = \"tier-2\"",
        "endpoint = \"https://x.openai.azure.com\"",
    ));
    assert_eq!(e.field, "provider[0].endpoint");
    assert_eq!(e.line, Some(13));
}

#[test]
fn duplicate_names_are_errors() {
    let e = err(&EXAMPLE.replace("name = \"proxy\"", "name = \"openai-direct\""));
    assert_eq!(e.field, "provider[2].name");
    assert_eq!(e.line, Some(26));
    assert!(e.message.contains("line 8"), "{e}");
}

#[test]
fn unknown_tier_names_line() {
    let cfg: RouterConfig = EXAMPLE.replace("tier-2", "tier-9").parse().unwrap();
    let e = cfg.catalog().unwrap_err();
    assert_eq!(e.field, "provider[0].tier");
    assert_eq!(e.line, Some(13));
    assert!(e.message.contains("tier-2"), "lists known tiers: {e}");
}

#[test]
fn missing_env_var_names_key_and_line() {
    let cfg: RouterConfig = EXAMPLE.parse().unwrap();
    let env = |v: &str| (v == "OPENAI_API_KEY").then(|| "sk-test".to_string());
    let e = cfg.providers[1].credential(1, &env).unwrap_err();
    assert_eq!(e.field, "provider[1].api_key_env");
    assert_eq!(e.line, Some(23));
    assert!(e.message.contains("AZURE_OPENAI_API_KEY"));
    let c = cfg.providers[0].credential(0, &env).unwrap().unwrap();
    assert_eq!(c.var, "OPENAI_API_KEY");
    assert!(
        !format!("{c:?}").contains("sk-test"),
        "Debug must not show the key"
    );
}

#[test]
fn catalog_override_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cat.toml"),
        "[tiers.\"guide-tier-2\"]\nrpm = 20\n[tiers.custom]\nrpm = 3\ntpm = 1000\nrequirement = \"x\"\n",
    )
    .unwrap();
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        "[router]\ncatalog = \"cat.toml\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\ntier = \"custom\"\n",
    )
    .unwrap();
    let cfg = RouterConfig::from_file(&path).unwrap();
    let cat = cfg.catalog().unwrap();
    assert_eq!(cat.tier("guide-tier-2").unwrap().rpm, Some(20));

    std::fs::write(&path, "[router]\ncatalog = \"nope.toml\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n").unwrap();
    let e = RouterConfig::from_file(&path)
        .unwrap()
        .catalog()
        .unwrap_err();
    assert_eq!(e.field, "router.catalog");
    assert_eq!(e.line, Some(2));
}

#[test]
fn azure_deployment_maps_the_default_model() {
    let cfg: RouterConfig = EXAMPLE.parse().unwrap();
    assert!(cfg.providers[0].reserved_for.is_empty());
    let az = &cfg.providers[1];
    assert_eq!(
        az.deployments.get("gpt-image-1").map(String::as_str),
        Some("gpt-image-1")
    );
    let text = EXAMPLE
        .replace(
            "max_attempts = 4",
            "max_attempts = 4\ndefault_model = \"gpt-image-1-mini\"",
        )
        .replace(
            "deployment = \"gpt-image-1\"",
            "deployment = \"mini-east\"\ndeployments = { \"gpt-image-1\" = \"big-east\" }",
        );
    let cfg: RouterConfig = text.parse().unwrap();
    // The name on the wire is the built provider's own mapping (there is one, not two).
    let az = wire_provider(&cfg, 1);
    assert_eq!(az.wire_model("gpt-image-1-mini"), "mini-east");
    assert_eq!(az.wire_model("gpt-image-1"), "big-east");
    assert_eq!(
        wire_provider(&cfg, 2).wire_model("gpt-image-1"),
        "gpt-image-1"
    );
}

/// Provider `i` of `cfg` built as `build()` builds it, with a placeholder key.
pub(crate) fn wire_provider(
    cfg: &RouterConfig,
    i: usize,
) -> std::sync::Arc<dyn image_router::Provider> {
    let p = &cfg.providers[i];
    let cred = image_router::config::Credential {
        secret: secrecy::SecretString::from("placeholder"),
        bearer: false,
        var: "K".into(),
    };
    let catalog = cfg.catalog().unwrap();
    image_router::config::build_provider(p, Some(cred), &catalog).unwrap()
}

mod built {
    use super::*;

    use image_router::{ErrorKind, GenerateRequest, Provider, ProviderError};
    use std::sync::Arc;

    use crate::support::{Fake, Step};

    /// A provider built by the factory; `fail`: it answers 401 to every image call.
    fn fake(name: &str, fail: bool) -> Arc<dyn Provider> {
        let mut f = Fake::new(name);
        if fail {
            f = f.default_step(Step::Error(
                ProviderError::new(name, ErrorKind::Authentication, "bad key").with_status(401),
            ));
        }
        f.arc()
    }

    #[tokio::test]
    async fn build_with_maps_settings_keys_and_order() {
        let cfg: RouterConfig = EXAMPLE
            .replace(
                "max_attempts = 4",
                "max_attempts = 4\ndefault_model = \"gpt-image-1-mini\"",
            )
            .parse()
            .unwrap();
        let env = |v: &str| Some(format!("value-of-{v}"));
        let mut seen = Vec::new();
        let router = cfg
            .build_with(&env, |p, cred, _| {
                let cred = cred.unwrap();
                seen.push((p.name.clone(), cred.var.clone()));
                Ok(fake(&p.name, p.name == "openai-direct"))
            })
            .unwrap();
        assert_eq!(
            router.provider_names(),
            vec!["openai-direct", "azure-east", "proxy"]
        );
        assert_eq!(
            seen[1],
            ("azure-east".to_string(), "AZURE_OPENAI_API_KEY".to_string())
        );
        let res = router
            .generate(GenerateRequest::new("a fox"))
            .await
            .unwrap();
        assert_eq!(res.provider, "azure-east", "the first provider fails over");
        assert_eq!(res.model, "gpt-image-1-mini", "default_model from [router]");
        assert_eq!(res.attempts.len(), 2);
    }

    #[tokio::test]
    async fn build_errors_are_scoped_to_the_provider_line() {
        let cfg: RouterConfig = EXAMPLE.parse().unwrap();
        let env = |v: &str| Some(format!("value-of-{v}"));
        let e = cfg
            .build_with(&env, |p, _, _| {
                if p.name == "proxy" {
                    Err(image_router::ConfigError::new("base_url", "proxy refuses"))
                } else {
                    Ok(fake(&p.name, false))
                }
            })
            .unwrap_err();
        assert_eq!(e.field, "provider[2].base_url");
        assert_eq!(e.line, Some(28));

        let env = |v: &str| (v != "PROXY_API_KEY").then(|| "k".to_string());
        let e = cfg
            .build_with(&env, |p, _, _| Ok(fake(&p.name, false)))
            .unwrap_err();
        assert_eq!(e.field, "provider[2].api_key_env");
        assert_eq!(e.line, Some(29));
        assert!(!e.to_string().contains("value-of"));
    }
}

#[test]
fn budgets_and_waits_parse_and_errors_name_the_line() {
    let text = EXAMPLE
        .replace(
            "max_attempts = 4",
            "max_attempts = 4\nmax_wait = \"0s\"\nfallback_usd_per_image = 0.05\nbudgets = [{ usd = 100, per = \"month\" }]",
        )
        .replace("tpm = 500000", "tpm = 500000\nbudgets = [{ usd = 5.0, per = \"day\" }, { usd = 1.5, per = \"6h\" }]");
    let cfg: RouterConfig = text.parse().unwrap();
    assert_eq!(cfg.router.max_wait, Some(Duration::ZERO));
    assert_eq!(cfg.router.budgets.len(), 1);
    assert_eq!(cfg.router.budgets[0].limit_usd, 100.0);
    let p = &cfg.providers[0];
    assert_eq!(p.budgets.len(), 2);
    assert_eq!(p.options().budgets.len(), 2);

    let e = err(&text.replace("usd = 5.0", "usd = -5.0"));
    assert_eq!(e.field, "provider[0].budgets[0].usd");
    assert_eq!(e.line, Some(19));
    let e = err(&text.replace("per = \"6h\"", "per = \"fortnight\""));
    assert_eq!(e.field, "provider[0].budgets[1].per");
    assert_eq!(e.line, Some(19));
    let e = err(&text.replace("usd = 100, per", "dollars = 100, per"));
    assert_eq!(e.line, Some(9), "{e}");
}

#[test]
fn classes_and_strategy_map_onto_the_router() {
    let text = EXAMPLE
        .replace("strategy = \"ordered\"", "strategy = \"weighted\"")
        .replace(
            "tier = \"tier-2\"",
            "tier = \"tier-2\"\nreserved_for = [\"interactive\"]\npreferred_by = [\"batch\"]",
        );
    let cfg: RouterConfig = text.parse().unwrap();
    assert_eq!(cfg.router.strategy, Some(Strategy::Weighted));
    let o = cfg.providers[0].options();
    assert_eq!(
        o.classes.reserved_for,
        vec![image_router::RequestClass::new("interactive")]
    );
    assert_eq!(o.classes.preferred_by.len(), 1);
    let e = err(&text.replace("[\"interactive\"]", "[\"\"]"));
    assert_eq!(e.field, "provider[0].reserved_for");
    assert_eq!(e.line, Some(14));
}

#[test]
fn breaker_table_maps_and_errors_name_the_line() {
    let text = EXAMPLE.replace(
        "max_attempts = 4\n",
        "max_attempts = 4\n[router.breaker]\nconsecutive_failures = 3\ncool_down = \"20s\"\ncheap_probe = true\n",
    );
    let cfg: RouterConfig = text.parse().unwrap();
    assert_eq!(cfg.router.cheap_probe, Some(true));
    let b = cfg.router.breaker.as_ref().unwrap();
    assert_eq!(b.consecutive_failures, 3);
    assert_eq!(b.cool_down, Duration::from_secs(20));
    let _builder = cfg.router_builder().unwrap();
    let e = err(&text.replace("cool_down = \"20s\"", "cool_down = \"soon\""));
    assert_eq!(e.field, "router.breaker.cool_down");
    assert_eq!(e.line, Some(9));
    let e = err(&text.replace("consecutive_failures = 3", "consecutive_fails = 3"));
    assert_eq!(e.line, Some(8), "{e}");
    assert_eq!(e.field, "router.breaker.consecutive_fails");
}

#[test]
fn score_and_health_tables_map_onto_the_router() {
    let text = EXAMPLE.replace(
        "max_attempts = 4\n",
        "max_attempts = 4\n[router.score]\npriority = 0\nlatency_slack = \"50ms\"\nheadroom_knee = 0.5\n\
         [router.health]\nwindow = \"30s\"\nmin_samples = 10\nidle_decay = \"off\"\ndefault_latency = \"2s\"\n",
    );
    let cfg: RouterConfig = text.parse().unwrap();
    let w = cfg.router.score.unwrap();
    assert_eq!(w.priority, 0.0);
    assert_eq!(w.latency_slack_ms, 50.0);
    assert_eq!(w.headroom_knee, 0.5);
    assert_eq!(w.availability, 2.0, "keys left out keep their defaults");
    let h = cfg.router.health.as_ref().unwrap();
    assert_eq!(h.window, Duration::from_secs(30));
    assert_eq!(h.min_samples, 10);
    assert_eq!(h.idle_decay, None);
    assert_eq!(h.default_latency, Duration::from_secs(2));

    // The weights and the health settings reach the router's scores.
    let key = format!("sk-{}", "t".repeat(8));
    let router = cfg
        .router_builder()
        .unwrap()
        .provider(
            image_router::providers::OpenAi::builder()
                .name("first")
                .api_key(key.clone())
                .build()
                .unwrap(),
        )
        .provider(
            image_router::providers::OpenAi::builder()
                .name("second")
                .api_key(key)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let ranked = router
        .rank(&image_router::GenerateRequest::new("a cat").into(), None)
        .unwrap();
    for (_, s) in &ranked.order {
        assert_eq!(s.priority, 1.0, "priority exponent 0");
        // Unmeasured: the 2 s default latency plus the 50 ms slack.
        assert!((s.latency - 1000.0 / 2050.0).abs() < 1e-9, "{s:?}");
    }

    for (bad, field, line) in [
        ("priority = 0", "priority = -1", "router.score.priority"),
        (
            "headroom_knee = 0.5",
            "headroom_knee = 0",
            "router.score.headroom_knee",
        ),
        (
            "latency_slack = \"50ms\"",
            "latency_slack = \"fast\"",
            "router.score.latency_slack",
        ),
        (
            "min_samples = 10",
            "min_samples = -2",
            "router.health.min_samples",
        ),
        (
            "window = \"30s\"",
            "window = \"0s\"",
            "router.health.window",
        ),
        (
            "idle_decay = \"off\"",
            "idle_decay = \"never\"",
            "router.health.idle_decay",
        ),
    ]
    .map(|(from, to, field)| (text.replace(from, to), field, from))
    .iter()
    .map(|(t, f, from)| {
        (
            t.clone(),
            *f,
            text.lines().position(|l| l == *from).unwrap() + 1,
        )
    }) {
        let e = err(&bad);
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.line, Some(line), "{e}");
    }
    let e = err(&text.replace("priority = 0", "priorty = 0"));
    assert_eq!(e.field, "router.score.priorty");
}

/// `max_response_bytes`, `max_retry_hint` and `allow_download_hosts` parse, name key and line
/// when wrong, and reach the built provider.
#[tokio::test]
async fn answer_limits_parse_and_reach_the_provider() {
    let text = |extra: &str, base: &str| {
        format!(
            "[[provider]]\nname = \"p\"\nkind = \"openai\"\napi_key_env = \"K\"\n\
             base_url = \"{base}\"\n{extra}\n"
        )
    };
    let cfg: RouterConfig = text(
        "max_response_bytes = 1000\nmax_retry_hint = \"2m\"\n\
         allow_download_hosts = [\"localhost\", \"10.0.0.5\"]",
        "https://api.openai.com/v1",
    )
    .parse()
    .unwrap();
    let p = &cfg.providers[0];
    assert_eq!(p.max_response_bytes, Some(1000));
    assert_eq!(p.max_retry_hint, Some(Duration::from_secs(120)));
    assert_eq!(p.allow_download_hosts, vec!["localhost", "10.0.0.5"]);
    for (bad, field) in [
        ("max_response_bytes = 0", "provider[0].max_response_bytes"),
        ("max_response_bytes = -5", "provider[0].max_response_bytes"),
        ("max_retry_hint = \"forever\"", "provider[0].max_retry_hint"),
        ("max_retry_hint = \"0s\"", "provider[0].max_retry_hint"),
        (
            "allow_download_hosts = [\"\"]",
            "provider[0].allow_download_hosts",
        ),
    ] {
        let e = err(&text(bad, "https://api.openai.com/v1"));
        assert_eq!(e.field, field, "{bad}: {e}");
        assert_eq!(e.line, Some(6), "{bad}: {e}");
    }

    // The body limit reaches the wire: a normal answer is larger than 100 bytes.
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(crate::support::wire::ok())
        .mount(&server)
        .await;
    let base = format!("{}/v1", server.uri());
    let small: RouterConfig = text("max_response_bytes = 100", &base).parse().unwrap();
    let env = |_: &str| Some("test-key".to_string());
    let router = small
        .build_with(&env, image_router::config::build_provider)
        .unwrap();
    let e = router
        .generate(image_router::GenerateRequest::new("a fox"))
        .await
        .unwrap_err();
    let cause = e.cause().expect("an attempt was made");
    assert_eq!(cause.kind, image_router::ErrorKind::Decode, "{e}");
    assert!(cause.message.contains("100"), "{e}");
    let roomy: RouterConfig = text("", &base).parse().unwrap();
    let router = roomy
        .build_with(&env, image_router::config::build_provider)
        .unwrap();
    assert_eq!(
        router
            .generate(image_router::GenerateRequest::new("a fox"))
            .await
            .unwrap()
            .images
            .len(),
        1
    );
}
