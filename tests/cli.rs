//! The `image-router` binary, end to end.

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
        "[router]\ntimeout = \"30s\"\n[[provider]]\nname = \"direct\"\nkind = \"openai\"\napi_key_env = \"IR_TEST_KEY_SET\"\ntier = \"tier-2\"\n[[provider]]\nname = \"proxy\"\nkind = \"compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"IR_TEST_KEY_UNSET\"\nrpm = 3\n",
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
        "tier-2's RPM from the catalog"
    );
    assert_eq!(v["providers"][0]["key_set"], true);
    assert_eq!(v["providers"][1]["rpm"], 3);
    assert_eq!(v["providers"][1]["key_set"], false);
    assert_eq!(v["providers"][1]["state"], "no key");

    bin()
        .args(["status", "--config"])
        .arg(&cfg)
        .env_remove("IR_TEST_KEY_UNSET")
        .assert()
        .success()
        .stdout(predicate::str::contains("direct"))
        .stdout(predicate::str::contains("IR_TEST_KEY_UNSET (MISSING)"));
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
