//! No key in any output of a router with several keys: Debug of the router, status, responses
//! and errors, `explain()`, the status JSON, and the command line's `status` and `doctor`,
//! while every output names the keys by label.

use super::*;
use crate::support::cli::{args, cli, text, write_config};
use image_router::sim::SimAccount;
use image_router::{GenerateRequest, ProviderOptions, Quality, Router, Size, Strategy};

fn low() -> GenerateRequest {
    GenerateRequest::new("a fox")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

#[tokio::test]
async fn no_key_in_debug_status_errors_or_explanations() {
    let sim = two_keys(None, SimAccount::new(), SimAccount::new()).await;
    let router = Router::builder()
        .provider_keys(provider_keys(&sim), ProviderOptions::new())
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    let mut out = String::new();
    let ok = router.generate(low()).await.unwrap();
    out.push_str(&format!("{ok:?}\n"));
    assert!(sim.revoke_key("openai", 0));
    let ok = router.generate(low()).await.unwrap();
    assert_eq!(ok.provider, member(LABEL_B));
    out.push_str(&format!("{:?}\n", ok.attempts));
    assert!(sim.revoke_key("openai", 1));
    // Key A is set aside; key B is found revoked by this request, which then fails.
    let err = router.generate(low()).await.unwrap_err();
    assert!(err.is_authentication() || err.is_no_provider(), "{err}");
    out.push_str(&format!("{err}\n{err:?}\n{:?}\n", err.explain()));
    if let Some(cause) = err.cause() {
        out.push_str(&format!("{cause}\n{:?}\n", cause.explain()));
    }
    let status = router.status();
    let json = serde_json::to_string_pretty(&status).unwrap();
    out.push_str(&format!("{router:?}\n{status:?}\n{json}\n"));
    assert_no_key(&out);
    // The keys are named by label, with their reason.
    assert!(json.contains(LABEL_A) && json.contains(LABEL_B), "{json}");
    assert!(status.key_groups[0].keys.iter().all(|k| !k.usable));
    assert!(err.to_string().contains(LABEL_B), "{err}");
    sim.shutdown().await;
}

const CLI_A: &str = "KEYS_CLI_KEY_A";
const CLI_B: &str = "KEYS_CLI_KEY_B";

#[tokio::test]
async fn the_command_line_shows_each_key_by_label_and_never_the_key() {
    let sim = two_keys(None, SimAccount::new(), SimAccount::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[router]
timeout = "10s"
deadline = "30s"

[[provider]]
name = "openai"
kind = "openai"
base_url = "{}"
api_key_env = ["{CLI_A}", "{CLI_B}"]
rpm = 6
"#,
            sim.openai_base_url("openai")
        ),
    );
    let cfg = cfg.to_string_lossy().to_string();
    let envs = vec![(CLI_A.to_string(), key("a")), (CLI_B.to_string(), key("b"))];
    assert!(sim.revoke_key("openai", 1));

    let status = cli(args(&["status", "--config", &cfg]), envs.clone(), None).await;
    let status_text = text(&status);
    assert!(status.status.success(), "{status_text}");
    assert!(status_text.contains("2 keys"), "{status_text}");
    assert!(
        status_text.contains(CLI_A) && status_text.contains(CLI_B),
        "{status_text}"
    );

    let json = cli(
        args(&["status", "--json", "--config", &cfg]),
        envs.clone(),
        None,
    )
    .await;
    let json_text = text(&json);
    assert!(json.status.success(), "{json_text}");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let keys = v["providers"][0]["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{json_text}");
    assert_eq!(keys[0]["label"], CLI_A);
    assert_eq!(keys[1]["provider"], format!("openai/{CLI_B}"));
    assert_eq!(v["status"]["key_groups"][0]["keys"][1]["label"], CLI_B);

    let doctor = cli(args(&["doctor", "--config", &cfg]), envs.clone(), None).await;
    let doctor_text = text(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{doctor_text}");
    assert!(
        doctor_text.contains(&format!("openai/{CLI_A}")),
        "{doctor_text}"
    );
    assert!(
        doctor_text.contains(&format!("openai/{CLI_B}")),
        "{doctor_text}"
    );
    let doctor_json = cli(
        args(&["doctor", "--json", "--config", &cfg]),
        envs.clone(),
        None,
    )
    .await;
    let doctor_json_text = text(&doctor_json);
    let problems: Vec<(String, serde_json::Value)> = doctor_json_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| {
            let list = v["providers"].as_array().cloned().unwrap_or_default();
            list.into_iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or("").to_string(),
                        p["problem"].clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let problem = |name: &str| {
        problems
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("{name} missing: {doctor_json_text}"))
    };
    assert_eq!(problem(&format!("openai/{CLI_A}")), serde_json::Value::Null);
    assert_eq!(problem(&format!("openai/{CLI_B}")), "invalid_key");

    for out in [&status_text, &json_text, &doctor_text, &doctor_json_text] {
        assert_no_key(out);
    }
    sim.shutdown().await;
}
