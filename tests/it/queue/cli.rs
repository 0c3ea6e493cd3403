//! The command line: `jobs submit / status / list / cancel` and `worker` on a config with a
//! `[queue]` table, against the simulator.

use std::time::Duration;

use image_router::sim::{SimAccount, Simulator};

use crate::support::cli::{args, cli, secret, text};

const VAR: &str = "QUEUE_CLI_TEST_KEY";

fn config(sim: &Simulator) -> String {
    format!(
        r#"
[[provider]]
name = "sim"
kind = "openai"
base_url = "{}"
api_key_env = "{VAR}"
rpm = 600

[queue]
kind = "sqlite"
path = "jobs.db"
results_dir = "out"
poll = "50ms"
grace = "5s"
"#,
        sim.openai_base_url("acct")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submit_status_list_cancel_and_worker() {
    let sim = Simulator::builder()
        .account("acct", SimAccount::new().api_key(secret("queue")))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("router.toml");
    std::fs::write(&cfg, config(&sim)).unwrap();
    let c = cfg.display().to_string();
    let env = vec![(VAR.to_string(), secret("queue"))];

    let o = cli(
        args(&[
            "jobs",
            "submit",
            "-c",
            &c,
            "--prompt",
            "a fox",
            "--idempotency-key",
            "k1",
        ]),
        env.clone(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(id.starts_with('j'), "{id}");
    // Same key: the same job.
    let o = cli(
        args(&[
            "jobs",
            "submit",
            "-c",
            &c,
            "--prompt",
            "a fox",
            "--idempotency-key",
            "k1",
        ]),
        env.clone(),
        None,
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), id);

    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "a cat\n# comment\na dog\n").unwrap();
    let o = cli(
        args(&[
            "jobs",
            "submit",
            "-c",
            &c,
            "--prompts",
            &prompts.display().to_string(),
            "--class",
            "batch",
        ]),
        env.clone(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let more: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(more.len(), 2);

    let o = cli(
        args(&["jobs", "status", "-c", &c, &id, "--json"]),
        env.clone(),
        None,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["state"], "queued");
    assert_eq!(v["spec"]["request"]["request"]["prompt"], "a fox");

    let o = cli(
        args(&["jobs", "cancel", "-c", &c, &more[1]]),
        env.clone(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(
        args(&["jobs", "list", "-c", &c, "--state", "queued"]),
        env.clone(),
        None,
    )
    .await;
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(!listed.contains(&more[1]));

    // The worker drains the queue, then stops on SIGTERM.
    let exe = assert_cmd::cargo::cargo_bin("image-router");
    let child = std::process::Command::new(exe)
        .args(["worker", "-c", &c, "--json"])
        .env(VAR, secret("queue"))
        .env_remove("IMAGE_ROUTER_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut done = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let o = cli(
            args(&["jobs", "status", "-c", &c, &more[0], "--json"]),
            env.clone(),
            None,
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let a: serde_json::Value = {
            let o = cli(
                args(&["jobs", "status", "-c", &c, &id, "--json"]),
                env.clone(),
                None,
            )
            .await;
            serde_json::from_slice(&o.stdout).unwrap_or_default()
        };
        if v["state"] == "succeeded" && a["state"] == "succeeded" {
            done = true;
            break;
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(done, "the worker served both jobs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let last = String::from_utf8_lossy(&status.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(v["stopped"], true);
    assert_eq!(v["succeeded"], 2);
    let o = cli(args(&["jobs", "status", "-c", &c, &id]), env.clone(), None).await;
    let t = text(&o);
    assert!(t.contains("succeeded") && t.contains("image:"), "{t}");
    assert_eq!(sim.stats("acct").images, 2);
}
