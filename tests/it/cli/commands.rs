//! The `image-router` binary, end to end: help, config errors and status without a network;
//! generate, batch and doctor against the embedded simulator (configs written at test time
//! point at the simulator's URLs).

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::cargo_bin("image-router").unwrap();
    c.env_remove("IMAGE_ROUTER_CONFIG");
    c
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn help_lists_every_subcommand_with_examples() {
    bin()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("generate"))
        .stdout(predicate::str::contains("batch"))
        .stdout(predicate::str::contains("doctor"))
        .stdout(predicate::str::contains("status"))
        .stdout(predicate::str::contains("Examples:"));
    for sub in ["generate", "batch", "doctor", "status"] {
        bin()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Examples:"))
            .stdout(predicate::str::contains(format!("image-router {sub}")))
            .stdout(predicate::str::contains("--config"))
            .stdout(predicate::str::contains("--json"));
    }
}

#[test]
fn invalid_config_names_key_and_line_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[router]\ntimeout = \"30s\"\nmax_attemps = 3\n", "router.max_attemps", 3),
        ("[router]\ntimeout = 30\n", "router.timeout", 2),
        ("[[provider]]\nname = \"a\"\nkind = \"azure\"\napi_key_env = \"K\"\ndeployment = \"d\"\n", "provider[0].endpoint", 1),
        ("[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n\n[[provider]]\nname = \"b\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpm = \"many\"\n", "provider[1].rpm", 10),
    ];
    for (text, field, line) in cases {
        let cfg = write(&dir, "bad.toml", text);
        for sub in ["status", "doctor"] {
            bin()
                .args([sub, "--config"])
                .arg(&cfg)
                .assert()
                .code(2)
                .stderr(predicate::str::contains(field))
                .stderr(predicate::str::contains(format!("line {line}")));
        }
        let out = bin()
            .args(["status", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "config");
        assert_eq!(v["error"]["field"], field);
        assert_eq!(v["error"]["line"], line);
        assert!(v["error"]["explanation"]["action"].as_str().unwrap().len() > 10);
    }
}

#[test]
fn status_shows_providers_limits_and_key_presence() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "r.toml",
        "[router]\ntimeout = \"30s\"\n[[provider]]\nname = \"direct\"\nkind = \"openai\"\napi_key_env = \"IR_TEST_KEY_SET\"\ntier = \"guide-tier-2\"\n[[provider]]\nname = \"proxy\"\nkind = \"compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"IR_TEST_KEY_UNSET\"\nrpm = 3\n[[provider]]\nname = \"tiered\"\nkind = \"openai\"\napi_key_env = \"IR_TEST_KEY_SET\"\ntier = \"tier-1\"\n",
    );
    let out = bin()
        .args(["status", "--json", "--config"])
        .arg(&cfg)
        .env("IR_TEST_KEY_SET", "sk-never-printed")
        .env_remove("IR_TEST_KEY_UNSET")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("sk-never-printed"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["router"]["timeout"], "30s");
    assert_eq!(
        v["providers"][0]["rpm"], 15,
        "guide-tier-2's RPM from the catalog"
    );
    assert_eq!(v["providers"][0]["key_set"], true);
    assert_eq!(v["providers"][1]["rpm"], 3);
    assert_eq!(v["providers"][1]["key_set"], false);
    assert_eq!(v["providers"][1]["state"], "no key");
    // OpenAI's usage tier-1: the default model's published figures (5 images and 100,000
    // tokens a minute for gpt-image-1), no requests-per-minute figure.
    let tiered = &v["providers"][2];
    assert_eq!(
        (&tiered["rpm"], &tiered["ipm"], &tiered["tpm"]),
        (&Value::Null, &Value::from(5), &Value::from(100_000))
    );
    assert!(
        v["providers"][0]["headroom"]["effective_rpm"]
            .as_u64()
            .unwrap()
            <= 15
    );
    assert_eq!(v["providers"][0]["headroom"]["no_access"], false);

    bin()
        .args(["status", "--config"])
        .arg(&cfg)
        .env_remove("IR_TEST_KEY_UNSET")
        .assert()
        .success()
        .stdout(predicate::str::contains("direct"))
        .stdout(predicate::str::contains("IR_TEST_KEY_UNSET (MISSING)"))
        .stdout(predicate::str::is_match(r"tiered\s+openai\s+tier-1\s+-\s+5\s+100000").unwrap());
}

#[test]
fn doctor_reports_a_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        &dir,
        "r.toml",
        "[[provider]]\nname = \"direct\"\nkind = \"openai\"\napi_key_env = \"IR_TEST_NO_SUCH_KEY\"\n",
    );
    bin()
        .args(["doctor", "--config"])
        .arg(&cfg)
        .env_remove("IR_TEST_NO_SUCH_KEY")
        .assert()
        .code(1)
        .stdout(predicate::str::contains("UNUSABLE"))
        .stdout(predicate::str::contains("no key"))
        .stdout(predicate::str::contains("export IR_TEST_NO_SUCH_KEY="));
    let out = bin()
        .args(["doctor", "--json", "--config"])
        .arg(&cfg)
        .env_remove("IR_TEST_NO_SUCH_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["providers"][0]["problem"], "no_key");
}

/// End to end against the embedded simulator.
mod sim {
    use std::path::{Path, PathBuf};

    use assert_cmd::Command;
    use image_router::sim::{Fault, SimAccount, Simulator, Times};
    use serde_json::Value;

    fn bin() -> Command {
        let mut c = Command::cargo_bin("image-router").unwrap();
        c.env_remove("IMAGE_ROUTER_CONFIG");
        c
    }

    /// Runs the binary off the async runtime (the simulator keeps serving meanwhile).
    async fn run(cmd: Command) -> std::process::Output {
        let mut cmd = cmd;
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn openai(name: &str, base: &str, env: &str) -> String {
        format!("[[provider]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{base}\"\napi_key_env = \"{env}\"\n")
    }

    fn decode_png(path: &Path) -> (u32, u32) {
        let dec = png::Decoder::new(std::fs::File::open(path).unwrap());
        let reader = dec.read_info().unwrap();
        let info = reader.info();
        (info.width, info.height)
    }

    fn json_lines(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generate_writes_a_png_and_json_lists_attempts() {
        let sim = Simulator::builder()
            .account("primary", SimAccount::new())
            .account("backup", SimAccount::new())
            .start()
            .await
            .unwrap();
        sim.fail("primary", Fault::Status(503), Times::Always);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "r.toml",
            &format!(
                "[router]\ntimeout = \"20s\"\ndeadline = \"60s\"\nretry_backoff = \"10ms\"\n{}{}",
                openai("primary", &sim.openai_base_url("primary"), "IR_K"),
                openai("backup", &sim.openai_base_url("backup"), "IR_K")
            ),
        );
        let out_png = dir.path().join("fox.png");
        let mut c = bin();
        c.args([
            "generate",
            "--json",
            "--prompt",
            "a watercolor fox",
            "--size",
            "1024x1024",
            "--quality",
            "low",
            "--config",
        ])
        .arg(&cfg)
        .arg("--out")
        .arg(&out_png)
        .env("IR_K", "sk-test-key-123456");
        let out = run(c).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["provider"], "backup");
        assert_eq!(v["model"], "gpt-image-1");
        assert_eq!(v["images"][0], out_png.to_string_lossy().as_ref());
        let attempts = v["attempts"].as_array().unwrap();
        assert!(attempts.len() >= 2, "{attempts:?}");
        assert_eq!(attempts[0]["provider"], "primary");
        assert_eq!(attempts[0]["outcome"], "server");
        assert_eq!(attempts[0]["status"], 503);
        assert!(attempts[0]["ms"].is_u64());
        assert_eq!(attempts.last().unwrap()["outcome"], "success");
        assert!(v["cost_usd"].as_f64().unwrap() > 0.0);
        assert!(decode_png(&out_png).0 > 0);

        // n > 1: numbered files.
        let mut c = bin();
        c.args(["generate", "--prompt", "two cats", "-n", "2", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join("cats.png"))
            .env("IR_K", "sk-test-key-123456");
        let out = run(c).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        decode_png(&dir.path().join("cats-1.png"));
        decode_png(&dir.path().join("cats-2.png"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn generate_failure_is_explained_with_exit_code_1() {
        let sim = Simulator::builder()
            .account("only", SimAccount::new())
            .start()
            .await
            .unwrap();
        sim.fail("only", Fault::InsufficientQuota, Times::Always);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "r.toml",
            &openai("only", &sim.openai_base_url("only"), "IR_K"),
        );
        let mut c = bin();
        c.args(["generate", "--json", "--prompt", "x", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join("x.png"))
            .env("IR_K", "sk-test-key-123456");
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "access_denied");
        assert!(v["error"]["explanation"]["cause"]
            .as_str()
            .unwrap()
            .contains("quota"));
        assert!(v["error"]["explanation"]["action"]
            .as_str()
            .unwrap()
            .contains("billing"));
        assert_eq!(v["attempts"][0]["provider"], "only");
        assert_eq!(v["attempts"][0]["status"], 429);
        assert!(!dir.path().join("x.png").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_of_50_with_failing_primary_then_resume_skips_all() {
        let sim = Simulator::builder()
            .account("primary", SimAccount::new())
            .account("backup", SimAccount::new())
            .start()
            .await
            .unwrap();
        sim.fail("primary", Fault::InsufficientQuota, Times::Always);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "r.toml",
            &format!(
                "[router]\ntimeout = \"20s\"\ndeadline = \"120s\"\n{}{}",
                openai("primary", &sim.openai_base_url("primary"), "IR_K"),
                openai("backup", &sim.openai_base_url("backup"), "IR_K")
            ),
        );
        let mut prompts = String::new();
        for i in 0..49 {
            prompts.push_str(&format!("prompt number {i}\n"));
        }
        prompts.push_str(
            "{\"prompt\": \"a json prompt\", \"quality\": \"low\", \"name\": \"special\"}\n",
        );
        let pf = write(dir.path(), "prompts.txt", &prompts);
        let out_dir = dir.path().join("out");

        let mut c = bin();
        c.args([
            "batch",
            "--json",
            "--concurrency",
            "8",
            "--quality",
            "low",
            "--config",
        ])
        .arg(&cfg)
        .arg("--prompts")
        .arg(&pf)
        .arg("--out-dir")
        .arg(&out_dir)
        .env("IR_K", "sk-test-key-123456");
        let out = run(c).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out.stdout);
        assert_eq!(lines.len(), 51, "50 prompt lines + summary");
        let summary = &lines[50]["summary"];
        assert_eq!(summary["total"], 50);
        assert_eq!(summary["generated"], 50);
        assert_eq!(summary["failed"], 0);
        assert_eq!(summary["providers"]["backup"]["served"], 50);
        assert!(
            summary["providers"]["primary"]["failed_attempts"]
                .as_u64()
                .unwrap()
                >= 1
        );
        // The images, and the batch manifest recording them.
        let manifest = ".image-router-batch.jsonl";
        let files: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.ends_with(manifest))
            .collect();
        assert_eq!(files.len(), 50, "{files:?}");
        assert!(out_dir.join(manifest).is_file());
        for f in &files {
            decode_png(f);
        }
        assert!(out_dir.join("0001.png").exists());
        assert!(out_dir.join("special.png").exists());

        // Second run: everything exists, nothing is sent.
        let before = sim.stats("backup").requests;
        let mut c = bin();
        c.args(["batch", "--json", "--config"])
            .arg(&cfg)
            .arg("--prompts")
            .arg(&pf)
            .arg("--out-dir")
            .arg(&out_dir)
            .env("IR_K", "sk-test-key-123456");
        let out = run(c).await;
        assert!(out.status.success());
        let lines = json_lines(&out.stdout);
        assert_eq!(lines[50]["summary"]["skipped"], 50);
        assert_eq!(lines[50]["summary"]["generated"], 0);
        assert!(lines[..50].iter().all(|l| l["status"] == "skipped"));
        assert_eq!(sim.stats("backup").requests, before);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_lists_every_failed_prompt() {
        let sim = Simulator::builder()
            .account("only", SimAccount::new())
            .start()
            .await
            .unwrap();
        sim.fail("only", Fault::InsufficientQuota, Times::Always);
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "r.toml",
            &openai("only", &sim.openai_base_url("only"), "IR_K"),
        );
        let pf = write(dir.path(), "p.txt", "one\ntwo\nthree\n");
        let mut c = bin();
        c.args(["batch", "--config"])
            .arg(&cfg)
            .arg("--prompts")
            .arg(&pf)
            .arg("--out-dir")
            .arg(dir.path().join("out"))
            .env("IR_K", "sk-test-key-123456");
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("3 failed"), "{err}");
        for line in ["(line 1)", "(line 2)", "(line 3)"] {
            assert!(err.contains(line), "{err}");
        }
    }

    struct DoctorCase {
        name: &'static str,
        problem: &'static str,
        text: &'static str,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn doctor_explains_each_access_problem() {
        let sim = Simulator::builder()
            .account("good", SimAccount::new().api_key("sk-right-key-0001"))
            .account("badkey", SimAccount::new().api_key("sk-right-key-0001"))
            .account("tier", SimAccount::new())
            .account("quota", SimAccount::new())
            .account("verify", SimAccount::new())
            .account("nomodel", SimAccount::new().models(["dall-e-3"]))
            .account(
                "azure",
                SimAccount::new().deployment("img-east", "gpt-image-1"),
            )
            .start()
            .await
            .unwrap();
        sim.fail("tier", Fault::TierDenied, Times::Always);
        sim.fail("quota", Fault::InsufficientQuota, Times::Always);
        sim.fail("verify", Fault::OrgNotVerified, Times::Always);
        let dir = tempfile::tempdir().unwrap();
        let azure = |name: &str, dep: &str| {
            format!(
                "[[provider]]\nname = \"{name}\"\nkind = \"azure\"\nendpoint = \"{}\"\ndeployment = \"{dep}\"\napi_key_env = \"IR_GOOD\"\n",
                sim.azure_endpoint("azure")
            )
        };
        let cases = [
            (
                openai("good", &sim.openai_base_url("good"), "IR_GOOD"),
                DoctorCase {
                    name: "good",
                    problem: "",
                    text: "all 1 provider(s) usable",
                },
            ),
            (
                openai("nokey", &sim.openai_base_url("good"), "IR_UNSET"),
                DoctorCase {
                    name: "nokey",
                    problem: "no_key",
                    text: "export IR_UNSET=",
                },
            ),
            (
                openai("badkey", &sim.openai_base_url("badkey"), "IR_BAD"),
                DoctorCase {
                    name: "badkey",
                    problem: "invalid_key",
                    text: "rejected the API key",
                },
            ),
            (
                openai("tier", &sim.openai_base_url("tier"), "IR_GOOD"),
                DoctorCase {
                    name: "tier",
                    problem: "tier_access",
                    text: "0.0 seconds",
                },
            ),
            (
                openai("quota", &sim.openai_base_url("quota"), "IR_GOOD"),
                DoctorCase {
                    name: "quota",
                    problem: "insufficient_quota",
                    text: "billing",
                },
            ),
            (
                openai("verify", &sim.openai_base_url("verify"), "IR_GOOD"),
                DoctorCase {
                    name: "verify",
                    problem: "org_not_verified",
                    text: "https://platform.openai.com/settings/organization/general",
                },
            ),
            (
                openai("nomodel", &sim.openai_base_url("nomodel"), "IR_GOOD"),
                DoctorCase {
                    name: "nomodel",
                    problem: "model_not_found",
                    text: "does not serve this model",
                },
            ),
            (
                azure("azure-ok", "img-east"),
                DoctorCase {
                    name: "azure-ok",
                    problem: "",
                    text: "all 1 provider(s) usable",
                },
            ),
            (
                azure("azure-missing", "no-such-deployment"),
                DoctorCase {
                    name: "azure-missing",
                    problem: "deployment_not_found",
                    text: "deployment",
                },
            ),
            (
                openai("down", "http://127.0.0.1:9/v1", "IR_GOOD"),
                DoctorCase {
                    name: "down",
                    problem: "endpoint_unreachable",
                    text: "connect",
                },
            ),
        ];
        for (toml, case) in cases {
            let cfg = write(dir.path(), &format!("{}.toml", case.name), &toml);
            let ok = case.problem.is_empty();
            // Text.
            let mut c = bin();
            c.args(["doctor", "--timeout", "5s", "--config"])
                .arg(&cfg)
                .env("IR_GOOD", "sk-right-key-0001")
                .env("IR_BAD", "sk-wrong-key-0002")
                .env_remove("IR_UNSET");
            let out = run(c).await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(if ok { 0 } else { 1 }),
                "{}: {stdout}",
                case.name
            );
            assert!(stdout.contains(case.text), "{}: {stdout}", case.name);
            assert!(!stdout.contains("sk-right-key-0001") && !stdout.contains("sk-wrong-key-0002"));
            // JSON.
            let mut c = bin();
            c.args(["doctor", "--json", "--timeout", "5s", "--config"])
                .arg(&cfg)
                .env("IR_GOOD", "sk-right-key-0001")
                .env("IR_BAD", "sk-wrong-key-0002")
                .env_remove("IR_UNSET");
            let out = run(c).await;
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["ok"], ok, "{}", case.name);
            let p = &v["providers"][0];
            if ok {
                assert_eq!(p["health"], "ok", "{}: {p}", case.name);
            } else {
                assert_eq!(p["problem"], case.problem, "{}: {p}", case.name);
                assert!(p["explanation"]["action"].as_str().unwrap().len() > 20);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn class_option_reaches_reserved_providers() {
        let sim = Simulator::builder()
            .account("vip", SimAccount::new())
            .start()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "r.toml",
            &format!(
                "{}reserved_for = [\"interactive\"]\n",
                openai("vip", &sim.openai_base_url("vip"), "IR_K")
            ),
        );
        let gen = |class: Option<&str>| {
            let mut c = bin();
            c.args(["generate", "--json", "--prompt", "x", "--config"])
                .arg(&cfg)
                .arg("--out")
                .arg(dir.path().join("x.png"))
                .env("IR_K", "sk-test-key-123456");
            if let Some(cl) = class {
                c.args(["--class", cl]);
            }
            c
        };
        let out = run(gen(None)).await;
        assert_eq!(out.status.code(), Some(1));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "no_provider");
        assert_eq!(v["skipped"][0]["reason"]["kind"], "reserved");
        let out = run(gen(Some("interactive"))).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
