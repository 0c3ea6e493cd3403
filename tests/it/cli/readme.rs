//! The README's and the config module docs' examples parse, build and run as written: a user copies
//! them first, so they must not rot.

use crate::support::cli::*;
use image_router::config::{build_provider, RouterConfig};
use image_router::Strategy;
use std::time::Duration;

#[test]
fn readme_config_example_parses_and_builds() {
    let readme = include_str!("../../../README.md");
    let tomls = blocks(readme, "toml");
    assert!(!tomls.is_empty(), "the README shows a config file");
    for t in &tomls {
        let cfg: RouterConfig = t
            .parse()
            .unwrap_or_else(|e| panic!("README config does not parse: {e}\n{t}"));
        assert_eq!(cfg.providers.len(), 3);
        let env = env_from(&[
            ("OPENAI_API_KEY", secret("primary")),
            ("AZURE_OPENAI_API_KEY", secret("azure")),
            ("PROXY_API_KEY", secret("proxy")),
        ]);
        let router = cfg
            .build_with(&env, build_provider)
            .unwrap_or_else(|e| panic!("README config does not build: {e}"));
        assert_eq!(
            router.provider_names(),
            vec!["openai-direct", "azure-east", "proxy"]
        );
        let st = router.status();
        assert_eq!(st.strategy, Strategy::Scored);
        // tier-2 from the catalog on the first (OpenAI's usage tier 2: gpt-image-1's 250k
        // tokens and 20 images a minute, no request figure), explicit limits on the second.
        let h0 = &st.providers[0].headroom;
        let tpm0 = h0.effective_tpm.unwrap();
        assert!(
            (225_000..=250_000).contains(&tpm0),
            "tier-2 is 250k TPM for gpt-image-1: {tpm0}"
        );
        assert_eq!(h0.effective_rpm, None, "tier-2 publishes no RPM: {h0:?}");
        let rpm1 = st.providers[1].headroom.effective_rpm.unwrap();
        assert!((8..=9).contains(&rpm1), "rpm = 9: {rpm1}");
        // The budget of the first provider is there.
        assert_eq!(st.providers[0].spend.budgets.len(), 1);
        assert!((st.providers[0].spend.budgets[0].limit_usd - 20.0).abs() < 1e-9);
    }
}

#[test]
fn config_module_doc_and_issue_examples_parse_and_build() {
    let doc = module_doc(include_str!("../../../src/config/mod.rs"));
    let tomls = blocks(&doc, "toml");
    assert!(!tomls.is_empty());
    // The first published example of the config file, verbatim.
    let issue = r#"
[router]
strategy = "ordered"          # or "scored", "weighted"
timeout = "30s"               # per attempt
deadline = "120s"             # whole request
max_attempts = 4

[[provider]]
name = "openai-direct"
kind = "openai"               # "openai" | "azure" | "compatible"
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"  # the variable's name; keys are never written in the file
tier = "tier-2"               # optional; rpm / tpm override it
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
mode = "images"               # or "chat"
"#;
    let env = env_from(&[
        ("OPENAI_API_KEY", secret("primary")),
        ("AZURE_OPENAI_API_KEY", secret("azure")),
        ("PROXY_API_KEY", secret("proxy")),
    ]);
    for t in tomls.iter().map(String::as_str).chain([issue]) {
        let cfg: RouterConfig = t
            .parse()
            .unwrap_or_else(|e| panic!("example does not parse: {e}\n{t}"));
        let router = cfg
            .build_with(&env, build_provider)
            .unwrap_or_else(|e| panic!("example does not build: {e}\n{t}"));
        assert_eq!(router.provider_names().len(), 3);
    }
    let cfg: RouterConfig = issue.parse().unwrap();
    assert_eq!(cfg.router.strategy, Some(Strategy::Ordered));
    assert_eq!(cfg.router.timeout, Some(Duration::from_secs(30)));
    assert_eq!(cfg.router.deadline, Some(Duration::from_secs(120)));
    assert_eq!(cfg.router.max_attempts, Some(4));
    assert_eq!(cfg.providers[0].rpm, Some(15));
    assert_eq!(cfg.providers[0].tpm, Some(500_000));
    assert_eq!(
        cfg.providers[1].api_version.as_deref(),
        Some("2025-04-01-preview")
    );
}

/// Every key the `config` module documents is accepted, in one file, and builds.
#[test]
fn every_documented_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("my-catalog.toml"), "").unwrap();
    let text = r#"
[router]
strategy = "weighted"
timeout = "20s"
deadline = "60s"
max_attempts = 3
default_model = "gpt-image-1"
failover_on_content_policy = true
cooldown = "45s"
retry_backoff = "250ms"
rate_limit_wait = "2s"
max_wait = "0s"
budgets = [{ usd = 5.0, per = "day" }, { usd = 100, per = "month" }, { usd = 1.5, per = "6h" }]
fallback_usd_per_image = 0.05
catalog = "my-catalog.toml"

[router.breaker]
consecutive_failures = 2
failure_ratio = 0.75
window = "30s"
min_samples = 4
cool_down = "3s"
max_cool_down = "1m"
long_cool_down = "20m"
cool_down_multiplier = 3.0
ramp = "0s"
ramp_start = 0.25
cheap_probe = true

[router.score]
availability = 2.0
latency = 0.5
headroom = 1.0
budget = 0.0
priority = 1.0
latency_slack = "250ms"
headroom_knee = 0.2

[router.health]
window = "2m"
buckets = 24
min_samples = 3
latency_decay = "20s"
idle_decay = "off"
default_latency = "4s"

[[provider]]
name = "o"
kind = "openai"
base_url = "https://api.openai.com/v1"
organization = "org-abc"
project = "proj_abc"
api_key_env = "K1"
tier = "tier-1"
rpm = 4
tpm = 100000
safety_margin = 0.8
ipm = 3
shared = true
weight = 2.5
budgets = [{ usd = 3, per = "day" }]
models = ["gpt-image-1", "gpt-image-1-mini"]
allow_unknown_models = true
reserved_for = ["interactive"]

[[provider]]
name = "a"
kind = "azure"
endpoint = "https://example.openai.azure.com"
deployments = { "gpt-image-1" = "img1", "gpt-image-1-mini" = "mini" }
default_deployment = "img1"
api_version = "2025-04-01-preview"
v1_surface = false
bearer_token_env = "K2"
preferred_by = ["batch"]

[[provider]]
name = "c"
kind = "compatible"
base_url = "https://proxy.example/v1"
api_key_env = "K3"
mode = "images"
rename = { "gpt-image-1" = "openai/gpt-image-1" }
"#;
    let path = write_config(dir.path(), text);
    let cfg = RouterConfig::from_file(&path).unwrap();
    let r = &cfg.router;
    assert_eq!(r.strategy, Some(Strategy::Weighted));
    assert_eq!(r.max_wait, Some(Duration::ZERO));
    assert_eq!(r.budgets.len(), 3);
    let b = r.breaker.as_ref().unwrap();
    assert_eq!(b.consecutive_failures, 2);
    assert_eq!(b.min_samples, 4);
    assert_eq!(b.cool_down, Duration::from_secs(3));
    assert_eq!(b.max_cool_down, Duration::from_secs(60));
    assert_eq!(b.long_cool_down, Duration::from_secs(1200));
    assert_eq!(b.window, Duration::from_secs(30));
    assert!((b.failure_ratio - 0.75).abs() < 1e-12);
    assert_eq!(b.cool_down_multiplier, 3.0);
    assert_eq!(b.ramp, Duration::ZERO);
    assert_eq!(b.ramp_start, 0.25);
    assert_eq!(r.cheap_probe, Some(true));
    let s = r.score.unwrap();
    assert_eq!(s.availability, 2.0);
    assert_eq!(s.latency, 0.5);
    assert_eq!(s.budget, 0.0);
    assert!((s.latency_slack_ms - 250.0).abs() < 1e-9);
    assert!((s.headroom_knee - 0.2).abs() < 1e-12);
    let h = r.health.as_ref().unwrap();
    assert_eq!(h.window, Duration::from_secs(120));
    assert_eq!(h.buckets, 24);
    assert_eq!(h.min_samples, 3);
    assert_eq!(h.idle_decay, None);
    assert_eq!(h.default_latency, Duration::from_secs(4));
    let wire = |i| crate::config::file::wire_provider(&cfg, i);
    assert_eq!(wire(1).wire_model("gpt-image-1-mini"), "mini");
    assert_eq!(wire(2).wire_model("gpt-image-1"), "openai/gpt-image-1");
    let env = env_from(&[
        ("K1", secret("primary")),
        ("K2", "entra-token".into()),
        ("K3", secret("proxy")),
    ]);
    let router = cfg.build_with(&env, build_provider).unwrap();
    let st = router.status();
    assert_eq!(st.strategy, Strategy::Weighted);
    assert!(st.providers[0].headroom.effective_rpm.unwrap() <= 4);
    assert!(st.providers[0].headroom.effective_ipm.unwrap() <= 3);
    assert_eq!(cfg.providers[0].shared, Some(true));
    assert_eq!(st.providers[0].breaker.cool_down, Duration::from_secs(3));
    assert_eq!(st.spend.budgets.len(), 3);
    assert_eq!(st.providers[0].health.window_ms, 120_000);
}
