//! `image-router plan` through the binary: text, `--json`, and a prompts file with a bad line.

use crate::support::cli::{args, cli, text};

fn config() -> String {
    r#"
[[provider]]
name = "primary"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "AUDIT_PLAN_KEY_UNSET"
tier = "tier-1"
budgets = [{ usd = 0.2, per = "day" }]

[[provider]]
name = "backup"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "AUDIT_PLAN_KEY_UNSET"
rpm = 3
"#
    .to_string()
}

fn files(prompts: &str) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("router.toml");
    std::fs::write(&cfg, config()).unwrap();
    let p = dir.path().join("prompts.txt");
    std::fs::write(&p, prompts).unwrap();
    (dir, cfg.display().to_string(), p.display().to_string())
}

#[tokio::test]
async fn plan_prints_the_forecast_as_json_and_as_text() {
    let prompts: String = (0..30).map(|i| format!("a fox number {i}\n")).collect();
    let (_dir, cfg, p) = files(&format!("# thirty foxes\n{prompts}"));
    let base = [
        "plan",
        "--config",
        &cfg,
        "--prompts",
        &p,
        "--quality",
        "low",
        "--size",
        "1024x1024",
    ];
    let mut a = args(&base);
    a.push("--json".into());
    let out = cli(a, vec![], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["forecast"];
    assert_eq!(f["requests"], 30);
    assert_eq!(f["served_requests"], 30);
    // primary: tier-1 (gpt-image-1's 5 images a minute, the whole limit) until its $0.20
    // budget is spent (about 17 low squares); backup: 3 requests a minute.
    let primary = &f["providers"][0];
    assert_eq!(primary["name"], "primary");
    assert_eq!(primary["limits"][0]["ipm"], 5);
    assert_eq!(f["providers"][1]["limits"][0]["rpm"], 3);
    let served_by_primary = primary["requests"].as_u64().unwrap();
    assert!(
        (15..=18).contains(&served_by_primary),
        "{served_by_primary}"
    );
    assert!(f["cost_usd"].as_f64().unwrap() > 0.3, "{f}");
    // 8 a minute together (5 + 3): windows at 0, 60, 120 and 180 s.
    assert_eq!(f["drain_secs"].as_f64().unwrap(), 180.0, "{f}");
    let budget = f["constraints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "budget")
        .expect("the budget binds");
    assert_eq!(budget["ledger"], "primary");
    assert_eq!(budget["then"][0], "backup");
    assert_eq!(
        f["alternatives"].as_array().unwrap().len(),
        0,
        "low is the lowest"
    );

    let out = cli(args(&base), vec![], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("Forecast: 30 request(s), 30 image(s)")
            && t.contains("binds first: images per minute of gpt-image-1 on `primary` at tier-1")
            && t.contains("`primary`'s budget of $0.20/day is exhausted"),
        "{t}"
    );
    assert!(!t.contains("placeholder"), "{t}");
}

#[tokio::test]
async fn a_bad_prompt_line_is_named_and_nothing_is_planned() {
    let (_dir, cfg, p) = files("a fox\n\n{\"prompt\": \"a cat\", \"n\": \"two\"}\n");
    let out = cli(
        args(&["plan", "--config", &cfg, "--prompts", &p, "--json"]),
        vec![],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "prompts");
    assert_eq!(v["error"]["line"], 3);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 3: not a valid JSON prompt"),
        "{v}"
    );
    // A workload some of which cannot be served exits 1 and says why.
    let (_dir, cfg, p) = files("{\"prompt\": \"a fox\", \"model\": \"dall-e-3\", \"n\": 2}\n");
    let out = cli(
        args(&["plan", "--config", &cfg, "--prompts", &p]),
        vec![],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out)
            .contains("not served: 1 request(s) (2 image(s)) of dall-e-3: invalid request: `n`"),
        "{}",
        text(&out)
    );
}
