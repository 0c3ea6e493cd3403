//! Helpers for the command-line, config and explain tests: run the built binary, three simulator
//! accounts with a config for them, keys built at run time and checks that no key leaks.
#![allow(dead_code)]

use image_router::config::RouterConfig;
use image_router::sim::{SimAccount, Simulator};
use image_router::ConfigError;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

// ---- helpers -------------------------------------------------------------------------------

/// A key-shaped secret built at run time (never a literal in this file).
/// The batch manifest's name in an output folder.
pub const MANIFEST: &str = ".image-router-batch.jsonl";

pub fn secret(tag: &str) -> String {
    format!("sk-{tag}-{}", "Q7x".repeat(9))
}

pub fn env_from(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    move |var: &str| pairs.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
}

pub fn parse_err(text: &str) -> ConfigError {
    match text.parse::<RouterConfig>() {
        Ok(_) => panic!("config should not parse:\n{text}"),
        Err(e) => e,
    }
}

/// Runs the `image-router` binary off the async runtime, with `envs` set (and the usual key
/// variables cleared so the developer's environment cannot leak in).
pub async fn cli(args: Vec<String>, envs: Vec<(String, String)>, cwd: Option<PathBuf>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = assert_cmd::Command::cargo_bin("image-router").unwrap();
        cmd.env_remove("OPENAI_API_KEY")
            .env_remove("IMAGE_ROUTER_CONFIG")
            .env_remove("AZURE_OPENAI_API_KEY")
            .env_remove("PROXY_API_KEY")
            .timeout(Duration::from_secs(60));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        cmd.args(args).output().unwrap()
    })
    .await
    .unwrap()
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

pub fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    assert!(reader.info().width > 0);
}

pub const PRIMARY_VAR: &str = "AUDIT_CLI_PRIMARY_KEY";
pub const AZURE_VAR: &str = "AUDIT_CLI_AZURE_KEY";
pub const PROXY_VAR: &str = "AUDIT_CLI_PROXY_KEY";

/// A simulator with an OpenAI-style primary, an Azure deployment and a chat proxy.
pub async fn three_accounts() -> Simulator {
    Simulator::builder()
        .account("primary", SimAccount::new().api_key(secret("primary")))
        .account(
            "azure",
            SimAccount::new()
                .api_key(secret("azure"))
                .deployment("img", "gpt-image-1"),
        )
        .account("proxy", SimAccount::new().api_key(secret("proxy")))
        .start()
        .await
        .unwrap()
}

pub fn three_config(sim: &Simulator, router_extra: &str) -> String {
    format!(
        r#"
[router]
strategy = "ordered"
timeout = "10s"
deadline = "30s"
retry_backoff = "10ms"
{router_extra}

[[provider]]
name = "openai-direct"
kind = "openai"
base_url = "{primary}"
api_key_env = "{PRIMARY_VAR}"

[[provider]]
name = "azure-east"
kind = "azure"
endpoint = "{azure}"
deployment = "img"
api_key_env = "{AZURE_VAR}"

[[provider]]
name = "proxy"
kind = "compatible"
base_url = "{proxy}"
api_key_env = "{PROXY_VAR}"
mode = "chat"
"#,
        primary = sim.openai_base_url("primary"),
        azure = sim.azure_endpoint("azure"),
        proxy = sim.openai_base_url("proxy"),
    )
}

pub fn three_env() -> Vec<(String, String)> {
    vec![
        (PRIMARY_VAR.into(), secret("primary")),
        (AZURE_VAR.into(), secret("azure")),
        (PROXY_VAR.into(), secret("proxy")),
    ]
}

pub fn assert_no_keys(out: &str) {
    for tag in ["primary", "azure", "proxy", "wrong"] {
        assert!(
            !out.contains(&secret(tag)),
            "a key leaked into the output:\n{out}"
        );
    }
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("router.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn text_of(o: &Output) -> String {
    text(o)
}

/// The fenced blocks of `lang` in a Markdown text.
pub fn blocks(md: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        let t = line.trim_start();
        match &mut cur {
            None if t.starts_with("```") && t.trim_start_matches('`').trim() == lang => {
                cur = Some(String::new())
            }
            Some(_) if t.starts_with("```") => out.push(cur.take().unwrap()),
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

pub fn module_doc(src: &str) -> String {
    src.lines()
        .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
        .map(|l| {
            l.trim_start_matches("//!")
                .strip_prefix(' ')
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}
