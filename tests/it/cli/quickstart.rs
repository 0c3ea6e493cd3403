//! The quickstart and the command line's remaining paths (out folders, JSON errors, budgets, doctor
//! bounds, catalog overrides): the first things a new user runs.

use crate::support::cli::*;
use image_router::config::{build_provider, RouterConfig};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::GenerateRequest;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn quickstart_binary() -> PathBuf {
    // tests run from target/<profile>/deps; examples live in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir
        .join("examples")
        .join(format!("quickstart{}", std::env::consts::EXE_SUFFIX));
    // `cargo test` does not build examples: build it (a no-op when fresh).
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
