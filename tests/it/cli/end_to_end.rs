//! The `image-router` command line end to end on the simulator: help, generate, batch, doctor and
//! status as a user runs them, with every output checked for keys.

use crate::support::cli::*;
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_is_complete_with_examples() {
    let o = cli(args(&["--help"]), vec![], None).await;
    assert!(o.status.success());
    let t = text(&o);
    for w in ["generate", "batch", "doctor", "status", "Examples"] {
        assert!(t.contains(w), "--help lacks {w}:\n{t}");
    }
    for sub in ["generate", "batch", "doctor", "status"] {
        let o = cli(args(&[sub, "--help"]), vec![], None).await;
        assert!(o.status.success(), "{sub} --help");
        let t = text(&o);
        assert!(t.contains("Examples"), "{sub} --help has no example:\n{t}");
        assert!(t.contains("--config"), "{sub} --help:\n{t}");
    }
    // No arguments: help, non-zero.
    let o = cli(vec![], vec![], None).await;
    assert!(!o.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_writes_pngs_and_json_lists_attempts() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    // The primary is down: the JSON shows its failed attempts and the Azure success.
    sim.fail("primary", Fault::Status(503), Times::Always);
    let out = dir.path().join("fox.png");
    let o = cli(
        args(&[
            "generate",
            "--config",
            &cfg,
            "--prompt",
            "a watercolor fox",
            "--out",
            out.to_str().unwrap(),
            "--quality",
            "low",
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert_no_keys(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1, "one JSON object on stdout");
    let j = &lines[0];
    assert_eq!(j["provider"], "azure-east");
    assert_eq!(j["model"], "gpt-image-1");
    assert_eq!(j["images"].as_array().unwrap().len(), 1);
    assert_eq!(j["images"][0].as_str().unwrap(), out.to_str().unwrap());
    assert!(j["usage"]["output_tokens"].as_u64().unwrap() > 0, "{j}");
    assert!(j["cost_usd"].as_f64().unwrap() > 0.0, "{j}");
    let attempts = j["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{j}");
    for a in attempts {
        for k in ["provider", "outcome", "status", "ms"] {
            assert!(a.get(k).is_some(), "attempt lacks {k}: {a}");
        }
    }
    assert_eq!(attempts[0]["provider"], "openai-direct");
    assert_eq!(attempts[0]["status"], 503);
    assert_eq!(attempts.last().unwrap()["provider"], "azure-east");
    assert_eq!(attempts.last().unwrap()["outcome"], "success");
    assert_png(&out);

    // n = 3 without --json: numbered files, paths on stdout.
    sim.clear_faults("primary");
    let out = dir.path().join("sub").join("foxes.png");
    let o = cli(
        args(&[
            "generate",
            "-c",
            &cfg,
            "-p",
            "three foxes",
            "-n",
            "3",
            "-q",
            "low",
            "-o",
            out.to_str().unwrap(),
        ]),
        three_env(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_no_keys(&text(&o));
    for k in 1..=3 {
        let p = dir.path().join("sub").join(format!("foxes-{k}.png"));
        assert_png(&p);
        assert!(String::from_utf8_lossy(&o.stdout).contains(p.to_str().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_failure_json_and_exit_codes() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    for a in ["primary", "azure", "proxy"] {
        sim.fail(a, Fault::InsufficientQuota, Times::Always);
    }
    let out = dir.path().join("x.png");
    let o = cli(
        args(&[
            "generate",
            "-c",
            &cfg,
            "-p",
            "a fox",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_no_keys(&text(&o));
    let j = &json_lines(&o)[0];
    assert!(j["error"]["kind"].is_string(), "{j}");
    assert!(j["error"]["message"].is_string());
    assert!(
        j["error"]["explanation"]["cause"]
            .as_str()
            .unwrap()
            .contains("quota"),
        "{j}"
    );
    assert!(j["error"]["explanation"]["action"].is_string());
    assert_eq!(j["attempts"].as_array().unwrap().len(), 3, "{j}");
    assert!(!out.exists());

    // Text mode: the explanation on stderr, exit 1.
    let o = cli(
        args(&[
            "generate",
            "-c",
            &cfg,
            "-p",
            "a fox",
            "-o",
            out.to_str().unwrap(),
        ]),
        three_env(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("What to do"), "{}", text(&o));

    // Invalid request (n out of range for the model is caught by clap; size by validation).
    let o = cli(
        args(&["generate", "-c", &cfg, "-p", "a fox", "-n", "11"]),
        three_env(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let o = cli(
        args(&[
            "generate", "-c", &cfg, "-p", "a fox", "--size", "256x256", "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert!(!o.status.success());
    let j = &json_lines(&o)[0];
    assert_eq!(j["error"]["kind"], "invalid_request", "{j}");

    // Missing key: config error, exit 2, names the variable and line, no key leaks.
    let o = cli(
        args(&["generate", "-c", &cfg, "-p", "a fox", "--json"]),
        vec![(PRIMARY_VAR.into(), secret("primary"))],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let j = &json_lines(&o)[0];
    assert_eq!(j["error"]["kind"], "config");
    assert_eq!(j["error"]["field"], "provider[1].api_key_env");
    assert!(j["error"]["line"].as_u64().is_some());
    assert!(j["error"]["message"].as_str().unwrap().contains(AZURE_VAR));
    assert_no_keys(&text(&o));

    // Invalid config file: exit 2, line named.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[router]\ntimeout = 5\n").unwrap();
    let o = cli(
        args(&["generate", "-c", bad.to_str().unwrap(), "-p", "a fox"]),
        vec![],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("line 2"), "{}", text(&o));
    // A config file that does not exist.
    let o = cli(
        args(&["generate", "-c", "/nonexistent/router.toml", "-p", "a fox"]),
        vec![],
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_fifty_with_failing_primary_then_resume() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    sim.fail("primary", Fault::Status(500), Times::Always);
    let prompts = dir.path().join("prompts.txt");
    let body: String = (1..=50).map(|i| format!("prompt number {i}\n")).collect();
    std::fs::write(&prompts, body).unwrap();
    let out = dir.path().join("out");
    let o = cli(
        args(&[
            "batch",
            "-c",
            &cfg,
            "--prompts",
            prompts.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--concurrency",
            "8",
            "--quality",
            "low",
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    assert_no_keys(&text(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 51, "50 prompt lines and a summary");
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["total"], 50);
    assert_eq!(summary["generated"], 50);
    assert_eq!(summary["failed"], 0);
    assert!(
        summary["providers"]["openai-direct"]["failed_attempts"]
            .as_u64()
            .unwrap()
            > 0
    );
    let served: u64 = summary["providers"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["served"].as_u64().unwrap())
        .sum();
    assert_eq!(served, 50);
    for l in &lines[..50] {
        assert_eq!(l["status"], "ok", "{l}");
    }
    // The folder holds the images and the batch manifest (one record per saved prompt).
    let mut pngs: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.ends_with(MANIFEST))
        .collect();
    pngs.sort();
    assert_eq!(pngs.len(), 50, "{pngs:?}");
    let records = std::fs::read_to_string(out.join(MANIFEST)).unwrap();
    assert_eq!(records.lines().count(), 50, "{records}");
    for p in &pngs {
        assert_png(p);
    }
    // Second run: all skipped, nothing sent.
    let before: u64 = ["primary", "azure", "proxy"]
        .iter()
        .map(|a| sim.stats(a).requests)
        .sum();
    let o = cli(
        args(&[
            "batch",
            "-c",
            &cfg,
            "--prompts",
            prompts.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let lines = json_lines(&o);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["skipped"], 50, "{summary}");
    assert_eq!(summary["generated"], 0);
    let after: u64 = ["primary", "azure", "proxy"]
        .iter()
        .map(|a| sim.stats(a).requests)
        .sum();
    assert_eq!(
        before, after,
        "a resumed batch sends nothing for done prompts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_failing_lines_do_not_lose_the_others() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    let prompts = dir.path().join("prompts.jsonl");
    // Line 2 is invalid for the model (n = 20), line 4 is not valid JSON, line 5 has a
    // per-prompt name and size; the rest are plain.
    std::fs::write(
        &prompts,
        "a fox\n{\"prompt\": \"too many\", \"n\": 20}\n# a comment\n{\"prompt\": \"broken\"\n\
         {\"prompt\": \"a lighthouse\", \"size\": \"1536x1024\", \"name\": \"lighthouse\"}\n\
         a cat\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = || {
        cli(
            args(&[
                "batch",
                "-c",
                &cfg,
                "--prompts",
                prompts.to_str().unwrap(),
                "--out-dir",
                out.to_str().unwrap(),
                "--quality",
                "low",
                "--json",
            ]),
            three_env(),
            None,
        )
    };
    let o = run().await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed prompt makes exit 1: {}",
        text(&o)
    );
    let lines = json_lines(&o);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["total"], 5, "{summary}");
    assert_eq!(summary["generated"], 3, "{summary}");
    assert_eq!(summary["failed"], 2, "{summary}");
    let failed: Vec<&Value> = lines.iter().filter(|l| l["status"] == "failed").collect();
    let failed_lines: Vec<u64> = failed.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert!(
        failed_lines.contains(&2) && failed_lines.contains(&4),
        "{failed:?}"
    );
    for f in &failed {
        assert!(f["error"]["message"].is_string(), "{f}");
    }
    assert_png(&out.join("lighthouse.png"));
    assert_eq!(
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != MANIFEST)
            .count(),
        3,
        "three images, no temporary files left"
    );
    assert!(out.join(MANIFEST).is_file());
    // Text mode lists the failures and the summary; a re-run retries only the failed ones.
    let before = sim.stats("primary").requests;
    let o = cli(
        args(&[
            "batch",
            "-c",
            &cfg,
            "--prompts",
            prompts.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--quality",
            "low",
        ]),
        three_env(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("line 2") && t.contains("line 4"), "{t}");
    assert!(t.contains("3 skipped"), "{t}");
    assert_eq!(
        sim.stats("primary").requests,
        before,
        "invalid prompts are not sent; done prompts are skipped"
    );
}

/// The doctor finds every access problem the issue lists, with the right explanation and exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_explains_each_access_problem() {
    let sim = Simulator::builder()
        .account("ok", SimAccount::new().api_key(secret("primary")).rpm(5))
        .account("bad", SimAccount::new().api_key(secret("primary")))
        .account(
            "az",
            SimAccount::new()
                .api_key(secret("azure"))
                .deployment("img", "gpt-image-1"),
        )
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |text: String, env: Vec<(String, String)>| {
        let cfg = write_config(dir.path(), &text);
        let cfg = cfg.to_str().unwrap().to_string();
        async move {
            let o = cli(
                args(&["doctor", "-c", &cfg, "--timeout", "5s", "--json"]),
                env,
                None,
            )
            .await;
            assert_no_keys(&text_of(&o));
            o
        }
    };
    let openai = |account: &str, var: &str, extra: &str| {
        format!(
            "[[provider]]\nname = \"{account}\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"{var}\"\n{extra}\n",
            sim.openai_base_url(account)
        )
    };
    let env = vec![(PRIMARY_VAR.to_string(), secret("primary"))];

    // All fine: exit 0; live limits that differ from the configured tier are noted.
    let o = run(
        openai("ok", PRIMARY_VAR, "tier = \"guide-tier-2\""),
        env.clone(),
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = &json_lines(&o)[0];
    assert_eq!(j["ok"], true);
    assert_eq!(j["providers"][0]["health"], "ok");
    // Kinds read as in the config file.
    assert_eq!(j["providers"][0]["kind"], "openai", "{j}");

    // (fault, problem, words in the explanation)
    let cases: Vec<(Fault, &str, &[&str])> = vec![
        (Fault::InvalidApiKey, "invalid_key", &["key"]),
        (Fault::TierDenied, "tier_access", &["tier", "0.0 seconds"]),
        (
            Fault::InsufficientQuota,
            "insufficient_quota",
            &["quota", "billing"],
        ),
        (
            Fault::OrgNotVerified,
            "org_not_verified",
            &["https://platform.openai.com/settings/organization/general"],
        ),
        (
            Fault::RegionNotSupported,
            "region_not_supported",
            &["region"],
        ),
        (Fault::ModelNotFound, "model_not_found", &["model"]),
    ];
    for (fault, problem, words) in cases {
        sim.clear_faults("bad");
        sim.fail("bad", fault.clone(), Times::Always);
        let o = run(openai("bad", PRIMARY_VAR, ""), env.clone()).await;
        assert_eq!(o.status.code(), Some(1), "{fault:?}: {}", text(&o));
        let j = &json_lines(&o)[0];
        assert_eq!(j["ok"], false);
        let p = &j["providers"][0];
        assert_eq!(p["problem"], problem, "{fault:?}: {p}");
        assert_eq!(p["health"], "unusable");
        let x = format!(
            "{} {}",
            p["explanation"]["cause"], p["explanation"]["action"]
        );
        for w in words {
            assert!(x.contains(w), "{fault:?}: explanation lacks {w:?}: {x}");
        }
    }
    sim.clear_faults("bad");

    // No key: unusable, names the variable; nothing is sent.
    let before = sim.stats("ok").requests;
    let o = run(openai("ok", "AUDIT_CLI_SURELY_UNSET", ""), vec![]).await;
    assert_eq!(o.status.code(), Some(1));
    let p = &json_lines(&o)[0]["providers"][0];
    assert_eq!(p["problem"], "no_key");
    assert!(p["explanation"]["cause"]
        .as_str()
        .unwrap()
        .contains("AUDIT_CLI_SURELY_UNSET"));
    assert_eq!(sim.stats("ok").requests, before);

    // Deployment not found (Azure) and an unreachable endpoint, in one run with a good one:
    // one report per provider, exit 1.
    let text3 = format!(
        "{}\n[[provider]]\nname = \"az\"\nkind = \"azure\"\nendpoint = \"{}\"\ndeployment = \"no-such-deployment\"\napi_key_env = \"{AZURE_VAR}\"\n\n[[provider]]\nname = \"down\"\nkind = \"compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
        openai("ok", PRIMARY_VAR, ""),
        sim.azure_endpoint("az")
    );
    let mut env3 = env.clone();
    env3.push((AZURE_VAR.into(), secret("azure")));
    let o = run(text3, env3.clone()).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = &json_lines(&o)[0];
    let ps = j["providers"].as_array().unwrap();
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0]["health"], "ok");
    assert_eq!(ps[1]["problem"], "deployment_not_found", "{}", ps[1]);
    assert!(ps[1]["explanation"]["action"]
        .as_str()
        .unwrap()
        .contains("deployment"));
    assert_eq!(ps[2]["problem"], "endpoint_unreachable", "{}", ps[2]);

    // Text mode prints cause and what to do for each problem.
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[provider]]\nname = \"az\"\nkind = \"azure\"\nendpoint = \"{}\"\ndeployment = \"no-such-deployment\"\napi_key_env = \"{AZURE_VAR}\"\n",
            sim.azure_endpoint("az")
        ),
    );
    let o = cli(args(&["doctor", "-c", cfg.to_str().unwrap()]), env3, None).await;
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(t.contains("what to do"), "{t}");
    assert!(t.contains("UNUSABLE"), "{t}");
    assert_no_keys(&t);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_table_and_json_without_keys() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    // One key missing: status still shows every provider, says which key is missing.
    let env = vec![
        (PRIMARY_VAR.to_string(), secret("primary")),
        (AZURE_VAR.to_string(), secret("azure")),
    ];
    let o = cli(args(&["status", "-c", &cfg]), env.clone(), None).await;
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert_no_keys(&t);
    for w in ["openai-direct", "azure-east", "proxy", "MISSING", PROXY_VAR] {
        assert!(t.contains(w), "status lacks {w}:\n{t}");
    }
    let o = cli(args(&["status", "-c", &cfg, "--json"]), env, None).await;
    assert!(o.status.success());
    assert_no_keys(&text(&o));
    let j = &json_lines(&o)[0];
    let ps = j["providers"].as_array().unwrap();
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0]["key_set"], true);
    assert_eq!(ps[2]["key_set"], false);
    assert_eq!(j["router"]["strategy"], "ordered");
    assert!(j["status"]["providers"].is_array());
    // No request was sent by status.
    assert_eq!(sim.stats("primary").requests, 0);
}

/// The README's command-line block, run as written against a config on the simulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_commands_run_as_written() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &three_config(&sim, ""));
    std::fs::write(
        dir.path().join("prompts.txt"),
        "a watercolor fox\na red barn\n",
    )
    .unwrap();
    let readme = include_str!("../../../README.md");
    let mut ran = 0;
    for block in blocks(readme, "sh") {
        for line in block.lines() {
            let line = line.split('#').next().unwrap().trim();
            let Some(rest) = line.strip_prefix("image-router ") else {
                continue;
            };
            // `[--json]` marks an optional flag in the README.
            let rest = rest.replace("[--json]", "");
            let mut words = Vec::new();
            let mut cur = String::new();
            let mut quoted = false;
            for c in rest.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ' ' if !quoted => {
                        if !cur.is_empty() {
                            words.push(std::mem::take(&mut cur));
                        }
                    }
                    c => cur.push(c),
                }
            }
            if !cur.is_empty() {
                words.push(cur);
            }
            // As a new user runs them: `OPENAI_API_KEY` (and here `OPENAI_BASE_URL`, the
            // simulator) exported for the commands without `--config`, and no config file
            // of the developer's in reach.
            let mut env = three_env();
            env.extend([
                ("OPENAI_API_KEY".to_string(), secret("primary")),
                (
                    "OPENAI_BASE_URL".to_string(),
                    sim.openai_base_url("primary"),
                ),
                (
                    "HOME".to_string(),
                    dir.path().join("home").display().to_string(),
                ),
                (
                    "XDG_CONFIG_HOME".to_string(),
                    dir.path().join("xdg").display().to_string(),
                ),
            ]);
            let o = cli(words.clone(), env, Some(dir.path().to_path_buf())).await;
            assert!(
                o.status.success(),
                "README command `{line}` failed: {}",
                text(&o)
            );
            assert_no_keys(&text(&o));
            ran += 1;
        }
    }
    assert!(ran >= 6, "the README shows the six commands");
    assert_png(&dir.path().join("fox.png"));
    assert_png(&dir.path().join("scarf.png"));
    assert!(
        dir.path().join("image-router.toml").is_file(),
        "config init wrote the file"
    );
    assert_png(&dir.path().join("out").join("0001.png"));
}
