//! Audit of issue 5 as a new user meets it: the config file, the `image-router` command line,
//! `explain()`, `doctor`, the README's examples and the quickstart.
//!
//! Everything runs against the embedded simulator (real HTTP on 127.0.0.1) or builds configs
//! in memory. Keys are built at run time and never written as literals; every output the CLI
//! produces is checked not to contain them.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use image_router::config::{build_provider, RouterConfig};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{
    breaker::BreakerState, AccessDenial, ConfigError, Error, ErrorKind, GenerateRequest,
    NotFoundKind, ProviderError, RateLimitScope, Strategy,
};
use serde_json::Value;

// ---- helpers -------------------------------------------------------------------------------

/// A key-shaped secret built at run time (never a literal in this file).
/// The batch manifest's name in an output folder.
const MANIFEST: &str = ".image-router-batch.jsonl";

fn secret(tag: &str) -> String {
    format!("sk-{tag}-{}", "Q7x".repeat(9))
}

fn env_from(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    move |var: &str| pairs.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
}

fn parse_err(text: &str) -> ConfigError {
    match text.parse::<RouterConfig>() {
        Ok(_) => panic!("config should not parse:\n{text}"),
        Err(e) => e,
    }
}

/// Runs the `image-router` binary off the async runtime, with `envs` set (and the usual key
/// variables cleared so the developer's environment cannot leak in).
async fn cli(args: Vec<String>, envs: Vec<(String, String)>, cwd: Option<PathBuf>) -> Output {
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

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{} is not a PNG: {e}", path.display()));
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    assert!(reader.info().width > 0);
}

const PRIMARY_VAR: &str = "AUDIT_CLI_PRIMARY_KEY";
const AZURE_VAR: &str = "AUDIT_CLI_AZURE_KEY";
const PROXY_VAR: &str = "AUDIT_CLI_PROXY_KEY";

/// A simulator with an OpenAI-style primary, an Azure deployment and a chat proxy.
async fn three_accounts() -> Simulator {
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

fn three_config(sim: &Simulator, router_extra: &str) -> String {
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

fn three_env() -> Vec<(String, String)> {
    vec![
        (PRIMARY_VAR.into(), secret("primary")),
        (AZURE_VAR.into(), secret("azure")),
        (PROXY_VAR.into(), secret("proxy")),
    ]
}

fn assert_no_keys(out: &str) {
    for tag in ["primary", "azure", "proxy", "wrong"] {
        assert!(
            !out.contains(&secret(tag)),
            "a key leaked into the output:\n{out}"
        );
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("router.toml");
    std::fs::write(&p, text).unwrap();
    p
}

// ---- README and docs examples ----------------------------------------------------------------

/// The fenced blocks of `lang` in a Markdown text.
fn blocks(md: &str, lang: &str) -> Vec<String> {
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

fn module_doc(src: &str) -> String {
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

#[test]
fn readme_config_example_parses_and_builds() {
    let readme = include_str!("../../README.md");
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
        // tier-2 from the catalog on the first, explicit limits on the second.
        let rpm0 = st.providers[0].headroom.effective_rpm.unwrap();
        let rpm1 = st.providers[1].headroom.effective_rpm.unwrap();
        assert!((13..=15).contains(&rpm0), "tier-2 is 15 RPM: {rpm0}");
        assert!((8..=9).contains(&rpm1), "rpm = 9: {rpm1}");
        // The budget of the first provider is there.
        assert_eq!(st.providers[0].spend.budgets.len(), 1);
        assert!((st.providers[0].spend.budgets[0].limit_usd - 20.0).abs() < 1e-9);
    }
}

#[test]
fn config_module_doc_and_issue_examples_parse_and_build() {
    let doc = module_doc(include_str!("../../src/config/mod.rs"));
    let tomls = blocks(&doc, "toml");
    assert!(!tomls.is_empty());
    // The issue's own example, verbatim.
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
    let wire = |i| crate::config::wire_provider(&cfg, i);
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
    assert_eq!(st.providers[0].breaker.cool_down, Duration::from_secs(3));
    assert_eq!(st.spend.budgets.len(), 3);
    assert_eq!(st.providers[0].health.window_ms, 120_000);
}

// ---- [router.breaker] / [router.score] / [router.health] reach the router --------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_score_and_health_tables_drive_the_router() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    // One failure opens the breaker (the default needs 5), for an hour.
    let text = three_config(
        &sim,
        "[router.breaker]\nconsecutive_failures = 1\ncool_down = \"1h\"\nmax_cool_down = \"2h\"\n\
         [router.health]\ndefault_latency = \"3s\"\nidle_decay = \"off\"\n",
    );
    let router = text
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    sim.fail("primary", Fault::Status(500), Times::Always);
    let res = router
        .generate(GenerateRequest::new("a fox").quality(image_router::Quality::Low))
        .await
        .unwrap();
    assert_eq!(res.provider, "azure-east");
    let st = router.status();
    let p = &st.providers[0];
    assert_eq!(p.breaker.state, BreakerState::Open, "{:?}", p.breaker);
    assert_eq!(p.breaker.cool_down, Duration::from_secs(3600));
    // The next request does not call the primary at all.
    let before = sim.stats("primary").requests;
    router
        .generate(GenerateRequest::new("a cat").quality(image_router::Quality::Low))
        .await
        .unwrap();
    assert_eq!(sim.stats("primary").requests, before);
    // The proxy has never been measured: its latency is the configured default (idle decay is
    // off, so the figure does not depend on how long the machine took to get here).
    let proxy = &st.providers[2];
    assert_eq!(proxy.health.latency_ms, None);
    assert!(
        (proxy.health.cost_ms - 3000.0).abs() < 1.0,
        "default_latency reaches the health estimate: {:?}",
        proxy.health
    );

    // [router.score]: with availability weight 0 and priority 0 the breakdown says so.
    let text = three_config(
        &sim,
        "[router.score]\navailability = 0.0\npriority = 0.0\nlatency_slack = \"1s\"\n",
    );
    let router = text
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let ranked = router
        .rank(&GenerateRequest::new("a fox").into(), None)
        .unwrap();
    for (_, s) in &ranked.order {
        assert_eq!(s.availability, 1.0);
        assert_eq!(
            s.priority, 1.0,
            "priority exponent 0 makes every rank equal"
        );
    }
}

// ---- config errors name the key and the line -----------------------------------------------

#[test]
fn config_errors_name_key_and_line() {
    // (text, expected field, expected line, words the message must contain)
    let cases: &[(&str, &str, usize, &[&str])] = &[
        (
            "[router]\nmax_attempts = \"four\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.max_attempts",
            2,
            &["string"],
        ),
        (
            "[router]\ntimeout = 30\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.timeout",
            2,
            &["integer"],
        ),
        (
            "[router]\ntimeout = \"30 seconds\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.timeout",
            2,
            &["duration"],
        ),
        (
            "[router]\ndeadline = \"-5s\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.deadline",
            2,
            &["duration"],
        ),
        (
            "[router.breaker]\ncool_down = \"soon\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.breaker.cool_down",
            2,
            &["duration"],
        ),
        (
            "[router.breaker]\nconsecutive_failure = 3\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.breaker.consecutive_failure",
            2,
            &["consecutive_failure"],
        ),
        (
            "[router.breaker]\nramp_start = 2.0\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.breaker.ramp_start",
            2,
            &["0 to 1"],
        ),
        (
            "[router.score]\nlatency = \"high\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.score.latency",
            2,
            &["string"],
        ),
        (
            "[router.health]\nwindow = \"1x\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "router.health.window",
            2,
            &["duration"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n\n[[provider]]\nname = \"b\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpmm = 5\n",
            "provider[1].rpmm",
            10,
            &["rpmm"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpm = \"ten\"\n",
            "provider[0].rpm",
            5,
            &["string"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "provider[1].name",
            6,
            &["duplicate", "line 1"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n\n[[provider]]\nname = \"az\"\nkind = \"azure\"\napi_key_env = \"K\"\ndeployment = \"d\"\n",
            "provider[1].endpoint",
            6,
            &["endpoint"],
        ),
        (
            "[[provider]]\nname = \"p\"\nkind = \"compatible\"\n",
            "provider[0].base_url",
            1,
            &["base_url"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openia\"\napi_key_env = \"K\"\n",
            "provider[0].kind",
            3,
            &["openia"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nbudgets = [{ usd = -1, per = \"day\" }]\n",
            "provider[0].budgets[0].usd",
            5,
            &[],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nbudgets = [{ usd = 1, per = \"fortnight\" }]\n",
            "provider[0].budgets[0].per",
            5,
            &["fortnight"],
        ),
        (
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nmode = \"chat\"\n",
            "provider[0].mode",
            5,
            &["compatible"],
        ),
        (
            "[routr]\ntimeout = \"5s\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
            "routr",
            1,
            &["routr"],
        ),
    ];
    for (text, field, line, words) in cases {
        let e = parse_err(text);
        assert_eq!(&e.field, field, "{text}\n=> {e:?}");
        assert_eq!(e.line, Some(*line), "{text}\n=> {e:?}");
        for w in *words {
            assert!(e.message.contains(w), "{text}\n=> {e:?} lacks {w:?}");
        }
        // The explanation says where, too.
        let x = e.explain();
        assert!(x.cause.contains(&format!("line {line}")), "{x:?}");
    }
}

#[test]
fn missing_environment_variable_names_key_and_line_and_no_key_leaks() {
    let text = "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K_SET\"\n\n[[provider]]\nname = \"b\"\nkind = \"azure\"\nendpoint = \"https://x.openai.azure.com\"\ndeployment = \"d\"\napi_key_env = \"K_UNSET\"\n";
    let cfg: RouterConfig = text.parse().unwrap();
    let env = env_from(&[("K_SET", secret("primary"))]);
    let e = match cfg.build_with(&env, build_provider) {
        Ok(_) => panic!("must fail"),
        Err(e) => e,
    };
    assert_eq!(e.field, "provider[1].api_key_env");
    assert_eq!(e.line, Some(11));
    assert!(e.message.contains("K_UNSET"));
    // Empty counts as missing.
    let env = env_from(&[("K_SET", secret("primary")), ("K_UNSET", "  ".into())]);
    assert!(cfg.build_with(&env, build_provider).is_err());

    // A key written where the variable's name goes is refused without echoing it.
    let key = secret("wrong");
    let text = format!("[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"{key}\"\n");
    let e = parse_err(&text);
    assert_eq!(e.field, "provider[0].api_key_env");
    assert_eq!(e.line, Some(4));
    assert_no_keys(&format!("{e} {e:?} {}", e.explain()));
    // Written as `api_key = "..."` (an unknown key): refused, not echoed.
    let text = format!("[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key = \"{key}\"\n");
    let e = parse_err(&text);
    assert_eq!(e.line, Some(4));
    assert_no_keys(&format!("{e} {e:?} {}", e.explain()));
    // A key pasted into a field of the wrong type is not echoed either.
    let text = format!(
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpm = \"{key}\"\n"
    );
    let e = parse_err(&text);
    assert_eq!(e.field, "provider[0].rpm");
    assert_no_keys(&format!("{e} {e:?} {}", e.explain()));
}

#[test]
fn bad_config_text_never_panics() {
    let samples = [
        "",
        "[router]",
        "[[provider]]",
        "[[provider]]\nname = \"\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
        "provider = 3",
        "[router]\nmax_attempts = 0\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
        "[router]\nmax_attempts = -1\n",
        "[router]\ntimeout = \"1m\"\ndeadline = \"10s\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
        "[router.health]\nbuckets = 0\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
        "[router.score]\nheadroom_knee = 2\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpm = 0\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\ntpm = -5\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpm = 99999999999999\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nsafety_margin = 1.5\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nbase_url = \"ftp://x\"\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nbase_url = \"not a url\"\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n[provider.rename]\nx = \"y\"\n",
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\ntier = \"tier-9\"\n",
        "\u{feff}[router]\n",
        "[router]\ntimeout = \"99999999999999999999h\"\n",
    ];
    for s in samples {
        match s.parse::<RouterConfig>() {
            Err(e) => {
                assert!(!e.field.is_empty(), "{s:?}: {e:?}");
                assert!(e.line.is_some() || e.field == "provider", "{s:?}: {e:?}");
            }
            Ok(cfg) => {
                // What parses must then fail or build cleanly, never panic.
                let r = cfg.build_with(&|_: &str| Some("k".into()), build_provider);
                if let Err(e) = r {
                    assert!(e.line.is_some(), "{s:?}: {e:?}");
                }
            }
        }
    }
}

// ---- explain() -------------------------------------------------------------------------------

#[test]
fn explain_covers_every_error_class_in_plain_words() {
    let pe = |kind: ErrorKind, msg: &str, status: u16| {
        ProviderError::new("acct", kind, msg).with_status(status)
    };
    let cases: Vec<(ProviderError, &[&str], &[&str])> = vec![
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::TierAccess },
                "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
                429,
            ),
            &["tier", "not a real rate limit"],
            &["verif", "tier-1"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::InsufficientQuota },
                "You exceeded your current quota, please check your plan and billing details.",
                429,
            )
            .with_code("insufficient_quota"),
            &["quota"],
            &["billing", "Retrying does not help"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::BillingHardLimit },
                "Billing hard limit has been reached",
                400,
            ),
            &["hard limit"],
            &["billing"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::OrganizationNotVerified },
                "Your organization must be verified to use the model `gpt-image-1`.",
                403,
            ),
            &["verified"],
            &["https://platform.openai.com/settings/organization/general", "15 minutes"],
        ),
        (
            pe(
                ErrorKind::AccessDenied { reason: AccessDenial::RegionNotSupported },
                "Country, region, or territory not supported",
                403,
            ),
            &["region"],
            &["region"],
        ),
        (
            pe(ErrorKind::Authentication, "Incorrect API key provided", 401),
            &["key"],
            &["api_key_env"],
        ),
        (
            pe(
                ErrorKind::NotFound { what: NotFoundKind::Model },
                "The model `gpt-image-9` does not exist",
                404,
            ),
            &["model"],
            &["models"],
        ),
        (
            pe(
                ErrorKind::NotFound { what: NotFoundKind::Deployment },
                "The API deployment for this resource does not exist.",
                404,
            ),
            &["deployment"],
            &["deployment"],
        ),
        (
            pe(
                ErrorKind::ContentPolicy { reason: Some("safety_violations=[violence]".into()) },
                "Your request was rejected by the safety system.",
                400,
            ),
            &["safety", "violence"],
            &["prompt"],
        ),
        (
            pe(
                ErrorKind::RateLimited { scope: RateLimitScope::Requests },
                "Rate limit reached for gpt-image-1 on requests per min (RPM): Limit 5, Used 5, Requested 1.",
                429,
            )
            .with_retry_after(Some(Duration::from_secs(12))),
            &["rate limited", "requests per minute", "12.0 s"],
            &["rpm"],
        ),
        (
            pe(ErrorKind::Server, "The server had an error", 500),
            &["internal error"],
            &["retry"],
        ),
        (
            ProviderError::new("acct", ErrorKind::Timeout { sent: true }, "no answer in 30 s"),
            &["in time"],
            &["timeout"],
        ),
        (
            ProviderError::new("acct", ErrorKind::Connect, "connection refused"),
            &["connect"],
            &["base_url"],
        ),
    ];
    for (err, cause_words, action_words) in cases {
        let x = err.explain();
        for w in cause_words {
            assert!(
                x.cause.to_lowercase().contains(&w.to_lowercase()),
                "{:?}: cause lacks {w:?}: {}",
                err.kind,
                x.cause
            );
        }
        for w in action_words {
            assert!(
                x.action.to_lowercase().contains(&w.to_lowercase()),
                "{:?}: action lacks {w:?}: {}",
                err.kind,
                x.action
            );
        }
        // The provider's own words are quoted so nothing is hidden.
        assert!(
            x.cause.contains(&err.message) || err.message.is_empty(),
            "{}",
            x.cause
        );
        // Display is "cause\nWhat to do: action".
        assert!(x.to_string().contains("What to do:"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_deadline_and_all_failed_on_the_simulator() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    // All failed: every provider refuses the key.
    for a in ["primary", "azure", "proxy"] {
        sim.fail(a, Fault::InvalidApiKey, Times::Always);
    }
    let router = three_config(&sim, "")
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let e = router
        .generate(GenerateRequest::new("a fox"))
        .await
        .unwrap_err();
    let x = e.explain();
    assert!(x.cause.starts_with("All providers failed"), "{x}");
    assert!(x.cause.contains("API key"), "{x}");
    assert_eq!(e.attempts().len(), 3);

    // Deadline: every provider hangs past a short deadline.
    for a in ["primary", "azure", "proxy"] {
        sim.clear_faults(a);
        sim.fail(a, Fault::Hang, Times::Always);
    }
    let router = three_config(&sim, "")
        .replace("deadline = \"30s\"", "deadline = \"600ms\"")
        .replace("timeout = \"10s\"", "timeout = \"300ms\"")
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        router.generate(GenerateRequest::new("a fox")),
    )
    .await
    .expect("the deadline bounds the request")
    .unwrap_err();
    assert!(e.is_deadline_exceeded() || matches!(e, Error::Exhausted { .. }));
    let x = e.explain();
    let all = format!("{x}").to_lowercase();
    assert!(
        all.contains("deadline") || all.contains("in time"),
        "a deadline failure says so: {x}"
    );
    assert!(
        x.action.contains("deadline") || x.action.contains("timeout"),
        "{x}"
    );
}

// ---- the command line, end to end on the simulator -------------------------------------------

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
    let o = run(openai("ok", PRIMARY_VAR, "tier = \"tier-2\""), env.clone()).await;
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
    let readme = include_str!("../../README.md");
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
            let o = cli(words.clone(), three_env(), Some(dir.path().to_path_buf())).await;
            assert!(
                o.status.success(),
                "README command `{line}` failed: {}",
                text(&o)
            );
            assert_no_keys(&text(&o));
            ran += 1;
        }
    }
    assert!(ran >= 4, "the README shows the four subcommands");
    assert_png(&dir.path().join("fox.png"));
    assert_png(&dir.path().join("out").join("0001.png"));
}

// ---- the quickstart ----------------------------------------------------------------------------

fn quickstart_binary() -> PathBuf {
    // tests run from target/<profile>/deps; examples live in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    // `cargo test --test audit_cli` does not build examples: build it (a no-op when fresh).
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "--example", "quickstart"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "cargo build --example quickstart failed");
    assert!(bin.exists(), "{}", bin.display());
    bin
}

fn png_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_runs_without_keys_and_writes_pngs() {
    let bin = quickstart_binary();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let o = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::new(bin)
            .current_dir(cwd)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("simulator"), "{t}");
    let pngs = png_files(&dir.path().join("quickstart-out"));
    assert!(pngs.len() >= 4, "{pngs:?}\n{t}");
    for p in &pngs {
        assert_png(p);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_real_path_with_fake_key_against_the_simulator() {
    let bin = quickstart_binary();
    let key = secret("primary");
    let sim = Simulator::builder()
        .account("real", SimAccount::new().api_key(key.clone()))
        .start()
        .await
        .unwrap();
    let base = sim.openai_base_url("real");
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let k = key.clone();
    let o = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::new(bin)
            .current_dir(cwd)
            .env("OPENAI_API_KEY", k)
            .env("OPENAI_BASE_URL", base)
            .env_remove("AZURE_OPENAI_ENDPOINT")
            .env_remove("PROXY_BASE_URL")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    assert!(t.contains("real providers"), "{t}");
    assert_no_keys(&t);
    assert!(
        sim.stats("real").requests > 0,
        "the real-provider path used the base URL"
    );
    let pngs = png_files(&dir.path().join("quickstart-out"));
    assert!(!pngs.is_empty(), "{t}");
    for p in &pngs {
        assert_png(p);
    }

    // A wrong fake key: the real path fails per request with explanations, never panics.
    let bin = quickstart_binary();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().to_path_buf();
    let base = sim.openai_base_url("real");
    let o = tokio::task::spawn_blocking(move || {
        assert_cmd::Command::new(bin)
            .current_dir(cwd)
            .env("OPENAI_API_KEY", secret("wrong"))
            .env("OPENAI_BASE_URL", base)
            .env_remove("AZURE_OPENAI_ENDPOINT")
            .env_remove("PROXY_BASE_URL")
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let t = text(&o);
    assert!(!t.contains("panicked"), "{t}");
    assert_no_keys(&t);
    assert!(t.to_lowercase().contains("key"), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_out_folder_and_format_named_file() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    // `--out` an existing folder: the image goes inside it.
    let folder = dir.path().join("imgs");
    std::fs::create_dir(&folder).unwrap();
    let o = cli(
        args(&[
            "generate",
            "-c",
            &cfg,
            "-p",
            "a fox",
            "-q",
            "low",
            "-o",
            folder.to_str().unwrap(),
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let j = &json_lines(&o)[0];
    let p = PathBuf::from(j["images"][0].as_str().unwrap());
    assert_eq!(p.parent().unwrap(), folder, "{j}");
    assert_png(&p);
    // `--out x.png --output-format jpeg`: the file is named after what it holds.
    let out = dir.path().join("fox.png");
    let o = cli(
        args(&[
            "generate",
            "-c",
            &cfg,
            "-p",
            "a fox",
            "-q",
            "low",
            "--output-format",
            "jpeg",
            "-o",
            out.to_str().unwrap(),
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", text(&o));
    let j = &json_lines(&o)[0];
    let p = PathBuf::from(j["images"][0].as_str().unwrap());
    let bytes = std::fs::read(&p).unwrap();
    let is_png = bytes.starts_with(b"\x89PNG");
    let ext = p.extension().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        ext == "png",
        is_png,
        "{} holds {}",
        p.display(),
        if is_png { "PNG" } else { "not PNG" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_json_line_with_a_misspelt_field_is_a_listed_failure() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"a fox\", \"qualty\": \"high\"}\n{\"prompt\": \"a cat\", \"quality\": \"low\", \"class\": \"batch\", \"user\": null}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = cli(
        args(&[
            "batch",
            "-c",
            cfg.to_str().unwrap(),
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
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    let failed: Vec<&Value> = lines.iter().filter(|l| l["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["line"], 1);
    assert!(failed[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("qualty"));
    assert_png(&out.join("0002.png"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_refusals_are_explained() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    // A router-wide budget far below one image.
    let router = three_config(&sim, "budgets = [{ usd = 0.0001, per = \"day\" }]")
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let e = router
        .generate(GenerateRequest::new("a fox").quality(image_router::Quality::High))
        .await
        .unwrap_err();
    let x = e.explain();
    assert!(x.to_string().to_lowercase().contains("budget"), "{x}");
    assert_eq!(
        sim.stats("primary").requests,
        0,
        "nothing is sent over budget"
    );
}

/// `status --json` shows the router's live snapshot; its provider kinds read like the config
/// file (`"openai"`), as the rest of the output does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_live_kinds_match_the_config() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let o = cli(
        args(&["status", "-c", cfg.to_str().unwrap(), "--json"]),
        three_env(),
        None,
    )
    .await;
    let j = &json_lines(&o)[0];
    assert_eq!(j["providers"][0]["kind"], "openai");
    assert_eq!(
        j["status"]["providers"][0]["kind"], "openai",
        "{}",
        j["status"]
    );
}

#[test]
fn router_status_serializes_kind_as_in_the_config() {
    let v = serde_json::to_value(image_router::ProviderKind::OpenAi).unwrap();
    assert_eq!(v, "openai");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_honours_concurrency() {
    let sim = Arc::new(three_accounts().await);
    for a in ["primary", "azure", "proxy"] {
        sim.set_latency(a, Duration::from_millis(250));
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let prompts = dir.path().join("p.txt");
    std::fs::write(
        &prompts,
        (1..=9).map(|i| format!("prompt {i}\n")).collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("out");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (sim, done) = (sim.clone(), done.clone());
        tokio::spawn(async move {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let now: u64 = ["primary", "azure", "proxy"]
                    .iter()
                    .map(|a| sim.stats(a).in_flight)
                    .sum();
                peak = peak.max(now);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let o = cli(
        args(&[
            "batch",
            "-c",
            cfg.to_str().unwrap(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--concurrency",
            "3",
            "--quality",
            "low",
        ]),
        three_env(),
        None,
    )
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let peak = watcher.await.unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name() != MANIFEST)
            .count(),
        9
    );
    assert!(out.join(MANIFEST).is_file());
    assert!(peak <= 3, "never more than --concurrency in flight: {peak}");
    assert!(peak >= 2, "prompts run side by side: {peak}");
}

#[test]
fn unknown_default_model_is_reported() {
    let text = "[router]\ndefault_model = \"gpt-image-l\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n";
    let r = text
        .parse::<RouterConfig>()
        .and_then(|c| c.build_with(&|_: &str| Some("k".into()), build_provider));
    if let Err(e) = r {
        assert_eq!(e.field, "router.default_model", "{e:?}");
        assert_eq!(e.line, Some(2));
    } else {
        panic!("a default model no provider serves should be reported at load time");
    }
}

#[test]
fn misspelt_model_in_a_provider_list_is_reported_but_proxies_take_any() {
    let text = "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nmodels = [\"gpt-image-1\", \"gpt-image1\"]\n";
    let cfg: RouterConfig = text.parse().unwrap();
    let Err(e) = cfg.build_with(&|_: &str| Some("k".into()), build_provider) else {
        panic!("a model the catalog does not know");
    };
    assert_eq!(e.field, "provider[0].models");
    assert_eq!(e.line, Some(5));
    assert!(e.message.contains("gpt-image1"));
    // Allowed explicitly, or on a proxy (which serves unknown models by default): fine.
    for ok in [
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nallow_unknown_models = true\nmodels = [\"my-model\"]\n",
        "[router]\ndefault_model = \"my-model\"\n[[provider]]\nname = \"p\"\nkind = \"compatible\"\nbase_url = \"https://proxy.example/v1\"\nmodels = [\"my-model\"]\n",
    ] {
        let cfg: RouterConfig = ok.parse().unwrap();
        assert!(cfg.build_with(&|_: &str| Some("k".into()), build_provider).is_ok(), "{ok}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_json_error_kinds_for_refusals_and_denials() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    let gen = || {
        cli(
            args(&[
                "generate",
                "-c",
                &cfg,
                "-p",
                "a fox",
                "-o",
                "/dev/null/never",
                "--json",
            ]),
            three_env(),
            None,
        )
    };
    // Content policy: returned at once, the others are not tried.
    sim.fail("primary", Fault::ContentPolicy, Times::Once);
    let o = gen().await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = &json_lines(&o)[0];
    assert_eq!(j["error"]["kind"], "content_policy", "{j}");
    assert_eq!(j["error"]["provider"], "openai-direct");
    assert_eq!(j["error"]["status"], 400);
    assert_eq!(j["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(sim.stats("azure").requests, 0);
    // Tier denial everywhere: the reason says which denial.
    for a in ["primary", "azure", "proxy"] {
        sim.fail(a, Fault::TierDenied, Times::Always);
    }
    let o = gen().await;
    assert_eq!(o.status.code(), Some(1));
    let j = &json_lines(&o)[0];
    assert_eq!(j["error"]["kind"], "access_denied", "{j}");
    assert_eq!(j["error"]["reason"], "tier_access", "{j}");
    assert!(j["error"]["explanation"]["cause"]
        .as_str()
        .unwrap()
        .contains("0.0 seconds"));
    assert_no_keys(&text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_bounded_and_explains_azure_keys() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    sim.fail("primary", Fault::Hang, Times::Always);
    sim.fail("azure", Fault::InvalidApiKey, Times::Always);
    let o = cli(
        args(&[
            "doctor",
            "-c",
            cfg.to_str().unwrap(),
            "--timeout",
            "500ms",
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_no_keys(&text(&o));
    let j = &json_lines(&o)[0];
    let ps = j["providers"].as_array().unwrap();
    assert_eq!(ps[0]["problem"], "timeout", "{}", ps[0]);
    assert!(ps[0]["ms"].as_u64().unwrap() < 30_000);
    assert_eq!(ps[1]["problem"], "invalid_key", "{}", ps[1]);
    assert!(
        ps[1]["explanation"]["action"]
            .as_str()
            .unwrap()
            .contains("endpoint"),
        "an Azure key belongs to one resource: {}",
        ps[1]
    );
    assert_eq!(ps[2]["health"], "ok", "{}", ps[2]);
}

#[test]
fn durations_and_catalog_overrides_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad-catalog.toml"), "[[model]]\nname = 3\n").unwrap();
    let text = "[router]\ntimeout = \"1m30s\"\ndeadline = \"1h\"\nretry_backoff = \"1.5s\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n";
    let cfg: RouterConfig = text.parse().unwrap();
    assert_eq!(cfg.router.timeout, Some(Duration::from_secs(90)));
    assert_eq!(cfg.router.deadline, Some(Duration::from_secs(3600)));
    assert_eq!(cfg.router.retry_backoff, Some(Duration::from_millis(1500)));
    // A catalog override with a mistake: the error names the catalog file's line.
    let path = write_config(
        dir.path(),
        "[router]\ncatalog = \"bad-catalog.toml\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
    );
    let cfg = RouterConfig::from_file(&path).unwrap();
    let Err(e) = cfg.build_with(&|_: &str| Some("k".into()), build_provider) else {
        panic!("bad catalog");
    };
    assert!(e.line.is_some(), "{e:?}");
    // A catalog file that does not exist names `router.catalog` and its line.
    let path = write_config(
        dir.path(),
        "[router]\ncatalog = \"missing.toml\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n",
    );
    let cfg = RouterConfig::from_file(&path).unwrap();
    let Err(e) = cfg.build_with(&|_: &str| Some("k".into()), build_provider) else {
        panic!("missing catalog");
    };
    assert_eq!(e.field, "router.catalog");
    assert_eq!(e.line, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_tier_is_flagged_by_doctor_and_explained_by_generate() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[provider]]\nname = \"free-account\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"{PRIMARY_VAR}\"\ntier = \"free\"\n",
        sim.openai_base_url("primary")
    );
    let cfg = write_config(dir.path(), &text);
    let cfg = cfg.to_str().unwrap().to_string();
    let o = cli(args(&["doctor", "-c", &cfg, "--json"]), three_env(), None).await;
    assert_eq!(
        o.status.code(),
        Some(1),
        "a provider that can never be used: {}",
        text_of(&o)
    );
    let p = &json_lines(&o)[0]["providers"][0];
    assert_eq!(p["problem"], "tier_access", "{p}");
    assert!(
        p["explanation"]["action"]
            .as_str()
            .unwrap()
            .contains("tier-1"),
        "{p}"
    );
    let o = cli(
        args(&["generate", "-c", &cfg, "-p", "a fox", "--json"]),
        three_env(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    let j = &json_lines(&o)[0];
    let x = j["error"]["explanation"].to_string();
    assert!(x.contains("tier-1"), "{j}");
    assert_eq!(
        sim.stats("primary").requests,
        1,
        "only doctor's lookup; no generation is sent"
    );
}

fn text_of(o: &Output) -> String {
    text(o)
}

/// Provider keys of the file reach the wire: organization / project headers, the Azure
/// api-version and deployment, a proxy's model rename, a provider's model allow-list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_reach_the_wire() {
    let sim = Simulator::builder()
        .account("primary", SimAccount::new().api_key(secret("primary")))
        .account(
            "azure",
            SimAccount::new()
                .api_key(secret("azure"))
                .deployment("mini-dep", "gpt-image-1-mini"),
        )
        .account(
            "proxy",
            SimAccount::new()
                .api_key(secret("proxy"))
                .models(["vendor/gpt-image-1"]),
        )
        .start()
        .await
        .unwrap();
    let text = format!(
        r#"
[router]
strategy = "ordered"
retry_backoff = "10ms"

[[provider]]
name = "o"
kind = "openai"
base_url = "{o}"
api_key_env = "{PRIMARY_VAR}"
organization = "org-audit"
project = "proj_audit"
models = ["gpt-image-1"]

[[provider]]
name = "a"
kind = "azure"
endpoint = "{a}"
deployments = {{ "gpt-image-1-mini" = "mini-dep" }}
api_version = "2025-04-01-preview"
api_key_env = "{AZURE_VAR}"

[[provider]]
name = "p"
kind = "compatible"
base_url = "{p}"
api_key_env = "{PROXY_VAR}"
rename = {{ "gpt-image-1" = "vendor/gpt-image-1" }}
"#,
        o = sim.openai_base_url("primary"),
        a = sim.azure_endpoint("azure"),
        p = sim.openai_base_url("proxy"),
    );
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    let router = text
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let low = |m: &str| {
        GenerateRequest::new("a fox")
            .model(m)
            .quality(image_router::Quality::Low)
    };
    // gpt-image-1 goes to the OpenAI provider with its headers.
    let res = router.generate(low("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "o");
    let r = &sim.received("primary")[0];
    assert_eq!(r.header("openai-organization"), Some("org-audit"));
    assert_eq!(r.header("openai-project"), Some("proj_audit"));
    // gpt-image-1-mini is not on o's list: Azure, through the mapped deployment.
    let res = router.generate(low("gpt-image-1-mini")).await.unwrap();
    assert_eq!(res.provider, "a");
    let r = &sim.received("azure")[0];
    assert!(r.path.contains("/deployments/mini-dep/"), "{}", r.path);
    assert!(
        r.query
            .as_deref()
            .unwrap_or("")
            .contains("api-version=2025-04-01-preview"),
        "{:?}",
        r.query
    );
    // With o down, gpt-image-1 reaches the proxy under its renamed model.
    sim.fail("primary", Fault::Status(500), Times::Always);
    let res = router.generate(low("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "p", "{:?}", res.attempts);
    let body = sim.received("proxy")[0].json().unwrap();
    assert_eq!(body["model"], "vendor/gpt-image-1");
}

#[test]
fn errors_inside_multi_line_values_name_the_key() {
    let text = "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\nmodels = [\n  \"gpt-image-1\",\n  3,\n]\n";
    let e = parse_err(text);
    assert_eq!(e.line, Some(7), "{e:?}");
    assert_eq!(e.field, "provider[0].models", "{e:?}");
    let text = "[router]\nbudgets = [\n  { usd = 1.0, per = \"day\" },\n  { usd = \"lots\", per = \"month\" },\n]\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n";
    let e = parse_err(text);
    assert_eq!(e.field, "router.budgets", "{e:?}");
    assert_eq!(e.line, Some(4), "{e:?}");
}
