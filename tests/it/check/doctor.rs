//! doctor reads the router's check: on a router an application built (`doctor::check_router`,
//! which leaves the router marked as its own check would) and from the command line (text and
//! `--json`), with what the router set aside, and no key in any output.

use super::*;
use crate::support::cli::{args, assert_no_keys, cli, secret, text, write_config};
use image_router::doctor::{self, Health, Problem};
use image_router::sim::SimAccount;
use image_router::Outcome;
use serde_json::Value;

#[tokio::test]
async fn doctor_on_a_built_router_runs_the_routers_check() {
    let sim = Simulator::builder()
        .account("bad", SimAccount::new().api_key(secret("good")))
        .account("good", SimAccount::new().api_key(secret("good")))
        .start()
        .await
        .unwrap();
    let router = ordered()
        .provider(openai(&sim, "bad", &secret("wrong")).build().unwrap())
        .provider(openai(&sim, "good", &secret("good")).build().unwrap())
        .build()
        .unwrap();
    let report = doctor::check_router(&router, None, Duration::from_secs(5)).await;
    assert_eq!(report.providers.len(), 2);
    let bad = &report.providers[0];
    assert_eq!(bad.problem, Some(Problem::InvalidKey));
    assert_eq!(bad.health, Health::Unusable);
    let marked = bad.marked.as_ref().unwrap();
    assert_eq!(
        (marked.cause, marked.model.as_deref()),
        (Outcome::Authentication, None)
    );
    assert_eq!(report.providers[1].health, Health::Ok);
    assert!(report.providers[1].marked.is_none());
    // The router itself is marked: the check was its own.
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!((res.provider.as_str(), res.attempts.len()), ("good", 1));
    assert_eq!(image_calls(&sim, "bad"), 0);
    assert_no_keys(&serde_json::to_string(&report).unwrap());
    assert_no_keys(&format!("{report:?} {router:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_on_the_command_line_shows_the_checks_marks_and_no_key() {
    let sim = Simulator::builder()
        .account("bad", SimAccount::new().api_key(secret("primary")))
        .account(
            "azure",
            SimAccount::new()
                .api_key(secret("azure"))
                .deployment("img", "gpt-image-1"),
        )
        .account("good", SimAccount::new().api_key(secret("proxy")))
        .start()
        .await
        .unwrap();
    let toml = format!(
        r#"
[router]
check_on_start = true

[[provider]]
name = "bad"
kind = "openai"
base_url = "{bad}"
api_key_env = "IR_WRONG"

[[provider]]
name = "azure"
kind = "azure"
endpoint = "{azure}"
deployments = {{ "gpt-image-1" = "img", "gpt-image-1-mini" = "deleted" }}
api_key_env = "IR_AZURE"

[[provider]]
name = "good"
kind = "openai"
base_url = "{good}"
api_key_env = "IR_GOOD"
"#,
        bad = sim.openai_base_url("bad"),
        azure = sim.azure_endpoint("azure"),
        good = sim.openai_base_url("good"),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &toml);
    let cfg = cfg.to_str().unwrap();
    let envs = vec![
        ("IR_WRONG".to_string(), secret("wrong")),
        ("IR_AZURE".to_string(), secret("azure")),
        ("IR_GOOD".to_string(), secret("proxy")),
    ];

    let out = cli(
        args(&["doctor", "--json", "--timeout", "5s", "-c", cfg]),
        envs.clone(),
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_no_keys(&text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = v["providers"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["model"].as_str().unwrap(),
                p["health"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("bad", "gpt-image-1", "unusable"),
            ("azure", "gpt-image-1", "ok"),
            ("azure", "gpt-image-1-mini", "unusable"),
            ("good", "gpt-image-1", "ok"),
        ],
        "one entry per provider and configured model, in config order"
    );
    assert_eq!(entries[0]["problem"], "invalid_key");
    assert_eq!(entries[0]["marked"]["cause"], "authentication");
    assert_eq!(entries[0]["marked"]["model"], Value::Null);
    assert_eq!(entries[2]["problem"], "deployment_not_found");
    assert_eq!(entries[2]["marked"]["model"], "gpt-image-1-mini");
    assert_eq!(entries[1]["marked"], Value::Null);
    assert_eq!(image_calls(&sim, "bad") + image_calls(&sim, "azure"), 0);

    let out = cli(args(&["doctor", "--timeout", "5s", "-c", cfg]), envs, None).await;
    let t = text(&out);
    assert_no_keys(&t);
    assert!(t.contains("router: provider set aside for 300 s"), "{t}");
    assert!(
        t.contains("router: gpt-image-1-mini cooled down on this provider"),
        "{t}"
    );
    assert!(t.contains("rejected the API key"), "{t}");
}

/// The limits doctor and the check show are each model's window: at a usage tier, the
/// published figures of that model (gpt-image-1 and dall-e-3 differ), images per minute
/// included.
#[tokio::test]
async fn each_checked_model_shows_its_own_published_limits() {
    let sim = Simulator::builder()
        .account("tiered", SimAccount::new().api_key(secret("good")))
        .start()
        .await
        .unwrap();
    let router = ordered()
        .provider_with(
            openai(&sim, "tiered", &secret("good"))
                .models(["gpt-image-1", "dall-e-3"])
                .build()
                .unwrap(),
            image_router::ProviderOptions::new().tier("tier-1"),
        )
        .build()
        .unwrap();
    let report = router.check().await;
    let p = &report.providers[0];
    let mut limits: Vec<(String, Option<u32>, Option<u64>)> = p
        .models
        .iter()
        .map(|m| {
            let l = m.limits.as_ref().unwrap();
            (m.model.clone(), l.ipm, l.tpm)
        })
        .collect();
    // The provider's own figures are those of the first model looked up.
    assert_eq!((p.rpm, p.ipm, p.tpm), (None, limits[0].1, limits[0].2));
    limits.sort();
    assert_eq!(
        limits,
        vec![
            ("dall-e-3".to_string(), Some(500), None),
            ("gpt-image-1".to_string(), Some(5), Some(100_000)),
        ]
    );
    let report = doctor::check_router(&router, None, Duration::from_secs(5)).await;
    let mut shown: Vec<(String, Option<u32>, Option<u64>)> = report
        .providers
        .iter()
        .map(|c| (c.model.clone(), c.ipm, c.tpm))
        .collect();
    shown.sort();
    assert_eq!(shown, limits);
}
