//! The command line for daily use (issue 17), through the binary on the simulator: zero
//! configuration from the environment (and the config file search), `config init`, `edit`,
//! batch lines with input images, `-v` / `-vv` / `RUST_LOG` with no key in any output,
//! `--quiet`, `--prompt -`, shell completions and the man page.
//!
//! Every run clears the whole environment and sets only what the test gives it, with `HOME`
//! and `XDG_CONFIG_HOME` inside the test's folder: the developer's keys and config files can
//! neither help nor break a test.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::cli::{assert_png, json_lines, secret, MANIFEST};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use serde_json::Value;

/// Runs the binary in `cwd` with only `env` set (plus `HOME` / `XDG_CONFIG_HOME` under
/// `cwd`, unless `env` sets them), feeding `stdin` when given.
async fn run(args: &[&str], env: &[(&str, String)], cwd: &Path, stdin: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let cwd = cwd.to_path_buf();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut c = assert_cmd::Command::cargo_bin("image-router").unwrap();
        c.env_clear()
            .env("HOME", cwd.join("home"))
            .env("XDG_CONFIG_HOME", cwd.join("xdg"))
            .current_dir(&cwd)
            .timeout(Duration::from_secs(60));
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        c.args(args).output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails when any of `secrets` appears in the output, or any `sk-` key at all.
fn assert_clean(o: &Output, secrets: &[String]) {
    let all = format!("{}{}", stdout(o), stderr(o));
    for s in secrets {
        assert!(!all.contains(s.as_str()), "a key leaked:\n{all}");
    }
    // The sim's 401 quotes a masked key (`sk-abc*****xyz`); never a whole one.
    for w in all.split(|c: char| c.is_whitespace() || c == '"' || c == ':' || c == ',') {
        if let Some(rest) = w.strip_prefix("sk-") {
            assert!(
                rest.contains('*') || rest.len() < 8,
                "key-like word {w:?} in:\n{all}"
            );
        }
    }
}

/// A small RGBA PNG.
fn png_file(path: &Path, w: u32, h: u32) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer
        .write_image_data(&vec![128u8; (w * h * 4) as usize])
        .unwrap();
}

/// The provider names `status --json` lists, in order.
fn provider_names(status_json: &Value) -> Vec<String> {
    status_json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// A simulator with one OpenAI-style account (`primary`) whose key is `secret(tag)`, a
/// working directory, and the SDK variables that point the command line at it (no config
/// file anywhere).
async fn env_only(
    tag: &str,
) -> (
    String,
    Simulator,
    tempfile::TempDir,
    Vec<(&'static str, String)>,
) {
    let key = secret(tag);
    let sim = Simulator::builder()
        .account("primary", SimAccount::new().api_key(key.clone()))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("OPENAI_API_KEY", key.clone()),
        ("OPENAI_BASE_URL", sim.openai_base_url("primary")),
    ];
    (key, sim, dir, env)
}

fn openai_toml(name: &str, base: &str, var: &str) -> String {
    format!("[[provider]]\nname = \"{name}\"\nkind = \"openai\"\nbase_url = \"{base}\"\napi_key_env = \"{var}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_routes_with_only_environment_variables() {
    let openai_key = secret("zero-openai");
    let azure_key = "0123456789abcdef0123456789abcdef".to_string();
    let sim = Simulator::builder()
        .account("primary", SimAccount::new().api_key(openai_key.clone()))
        .account(
            "azure",
            SimAccount::new()
                .api_key(azure_key.clone())
                .deployment("img", "gpt-image-1"),
        )
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("OPENAI_API_KEY", openai_key.clone()),
        ("OPENAI_BASE_URL", sim.openai_base_url("primary")),
        ("OPENAI_ORG_ID", "org-zero".to_string()),
        ("OPENAI_PROJECT_ID", "proj_zero".to_string()),
        ("AZURE_OPENAI_ENDPOINT", sim.azure_endpoint("azure")),
        ("AZURE_OPENAI_API_KEY", azure_key.clone()),
        ("AZURE_OPENAI_DEPLOYMENT", "img".to_string()),
        ("OPENAI_API_VERSION", "2025-04-01-preview".to_string()),
    ];
    let out = dir.path().join("fox.png");
    let o = run(
        &[
            "generate",
            "--json",
            "--prompt",
            "a fox",
            "--quality",
            "low",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(&o, &[openai_key.clone(), azure_key.clone()]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["provider"], "openai");
    assert_png(&out);
    // Said on stderr: which providers, from which variables (names only).
    let err = stderr(&o);
    for name in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_DEPLOYMENT",
        "OPENAI_API_VERSION",
    ] {
        assert!(err.contains(name), "{name} not named:\n{err}");
    }
    assert!(
        !err.contains("org-zero") && !err.contains("127.0.0.1"),
        "{err}"
    );
    // The organization and project reach OpenAI as its headers.
    let req = sim.received("primary").pop().unwrap();
    assert_eq!(req.header("openai-organization"), Some("org-zero"));
    assert_eq!(req.header("openai-project"), Some("proj_zero"));

    // The Azure provider was made too: with OpenAI out of quota it serves, on the API
    // version the variable names.
    sim.fail("primary", Fault::InsufficientQuota, Times::Always);
    let o = run(
        &[
            "generate",
            "--json",
            "--prompt",
            "a fox",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["provider"], "azure");
    let req = sim.received("azure").pop().unwrap();
    assert!(
        req.path.contains("/openai/deployments/img/"),
        "{}",
        req.path
    );
    assert!(req
        .query
        .unwrap_or_default()
        .contains("api-version=2025-04-01-preview"));

    // status and doctor work the same way.
    let o = run(&["status", "--json"], &env, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(provider_names(&v), ["openai", "azure"]);
    assert_eq!(v["providers"][0]["key_set"], true);
    assert_clean(&o, &[openai_key.clone(), azure_key.clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_with_nothing_set_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["generate", "--prompt", "x"], &[], dir.path(), None).await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for w in [
        "OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "image-router.toml",
        "config init",
    ] {
        assert!(err.contains(w), "{w}:\n{err}");
    }
    // Half an Azure setup: the missing variable is named.
    let o = run(
        &["status", "--json"],
        &[
            (
                "AZURE_OPENAI_ENDPOINT",
                "https://res.openai.azure.com".to_string(),
            ),
            (
                "AZURE_OPENAI_API_KEY",
                "0123456789abcdef0123456789abcdef".to_string(),
            ),
        ],
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["error"]["kind"], "config");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AZURE_OPENAI_DEPLOYMENT"),
        "{v}"
    );
    // A bad URL in a variable names the variable.
    let o = run(
        &["status"],
        &[
            ("OPENAI_API_KEY", secret("x")),
            ("OPENAI_BASE_URL", "ftp://127.0.0.1/v1".to_string()),
        ],
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("OPENAI_BASE_URL"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_search_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = "http://127.0.0.1:9/v1";
    let env = vec![("OPENAI_API_KEY", secret("search")), ("K", secret("k"))];
    let xdg = dir.path().join("xdg").join("image-router");
    std::fs::create_dir_all(&xdg).unwrap();
    let explicit = dir.path().join("explicit.toml");
    std::fs::write(&explicit, openai_toml("from-flag", base, "K")).unwrap();
    let names = |o: &Output| -> Vec<String> {
        assert!(o.status.success(), "{}", stderr(o));
        provider_names(&serde_json::from_str(stdout(o).trim()).unwrap())
    };
    // Nothing on disk: the environment.
    let o = run(&["status", "--json"], &env, dir.path(), None).await;
    assert_eq!(names(&o), ["openai"]);
    // The user's config directory.
    std::fs::write(
        xdg.join("image-router.toml"),
        openai_toml("from-xdg", base, "K"),
    )
    .unwrap();
    let o = run(&["status", "--json"], &env, dir.path(), None).await;
    assert_eq!(names(&o), ["from-xdg"]);
    assert!(stderr(&o).contains("image-router.toml"), "{}", stderr(&o));
    // Without XDG_CONFIG_HOME: ~/.config/image-router/.
    let home_cfg = dir.path().join("home").join(".config").join("image-router");
    std::fs::create_dir_all(&home_cfg).unwrap();
    std::fs::write(
        home_cfg.join("image-router.toml"),
        openai_toml("from-home", base, "K"),
    )
    .unwrap();
    let mut no_xdg = env.clone();
    no_xdg.push(("XDG_CONFIG_HOME", String::new()));
    let o = run(&["status", "--json"], &no_xdg, dir.path(), None).await;
    assert_eq!(names(&o), ["from-home"]);
    // The working directory beats the user's directory.
    std::fs::write(
        dir.path().join("image-router.toml"),
        openai_toml("from-cwd", base, "K"),
    )
    .unwrap();
    let o = run(&["status", "--json"], &env, dir.path(), None).await;
    assert_eq!(names(&o), ["from-cwd"]);
    // IMAGE_ROUTER_CONFIG and --config beat both.
    let mut with_var = env.clone();
    with_var.push((
        "IMAGE_ROUTER_CONFIG",
        explicit.to_string_lossy().into_owned(),
    ));
    let o = run(&["status", "--json"], &with_var, dir.path(), None).await;
    assert_eq!(names(&o), ["from-flag"]);
    let o = run(
        &["status", "--json", "--config", explicit.to_str().unwrap()],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert_eq!(names(&o), ["from-flag"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_init_writes_variable_names_and_refuses_to_overwrite() {
    let key = secret("init");
    let azure_key = "fedcba9876543210fedcba9876543210".to_string();
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("OPENAI_API_KEY", key.clone()),
        ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1".to_string()),
        ("OPENAI_PROJECT_ID", "proj_init".to_string()),
        (
            "AZURE_OPENAI_ENDPOINT",
            "https://res.openai.azure.com".to_string(),
        ),
        ("AZURE_OPENAI_API_KEY", azure_key.clone()),
        ("AZURE_OPENAI_DEPLOYMENT", "img".to_string()),
    ];
    let o = run(&["config", "init"], &env, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(&o, &[key.clone(), azure_key.clone()]);
    let path = dir.path().join("image-router.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&key) && !text.contains(&azure_key), "{text}");
    for w in [
        "api_key_env = \"OPENAI_API_KEY\"",
        "api_key_env = \"AZURE_OPENAI_API_KEY\"",
        "base_url = \"http://127.0.0.1:9/v1\"",
        "project = \"proj_init\"",
        "deployment = \"img\"",
        "# ",
    ] {
        assert!(text.contains(w), "{w} missing:\n{text}");
    }
    // The file written is one the commands load (found in the working directory).
    let o = run(&["status", "--json"], &env, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(provider_names(&v), ["openai", "azure"]);
    // Not overwritten without --force.
    std::fs::write(&path, "# mine\n").unwrap();
    let o = run(&["config", "init"], &env, dir.path(), None).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "# mine\n");
    let o = run(&["config", "init", "--force"], &env, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // --user writes where the commands look; --out - prints.
    let o = run(&["config", "init", "--user"], &env, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir
        .path()
        .join("xdg/image-router/image-router.toml")
        .is_file());
    let o = run(&["config", "init", "--out", "-"], &env, dir.path(), None).await;
    assert_eq!(stdout(&o), text);
    // Nothing in the environment: a starting file naming OPENAI_API_KEY.
    let empty = tempfile::tempdir().unwrap();
    let o = run(&["config", "init"], &[], empty.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(empty.path().join("image-router.toml")).unwrap();
    assert!(text.contains("api_key_env = \"OPENAI_API_KEY\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_sends_images_and_mask_with_generates_naming_json_and_exit_codes() {
    let (key, sim, dir, env) = env_only("edit").await;
    let (a, b, m, small) = (
        dir.path().join("a.png"),
        dir.path().join("b.png"),
        dir.path().join("m.png"),
        dir.path().join("small.png"),
    );
    png_file(&a, 16, 16);
    png_file(&b, 16, 16);
    png_file(&m, 16, 16);
    png_file(&small, 8, 8);
    let out = dir.path().join("edited.png");
    let o = run(
        &[
            "edit",
            "--image",
            "a.png",
            "--image",
            "b.png",
            "--mask",
            "m.png",
            "--prompt",
            "add a hat",
            "-n",
            "2",
            "--input-fidelity",
            "high",
            "--out",
            "edited.png",
            "--json",
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(&o, std::slice::from_ref(&key));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["provider"], "openai");
    assert_eq!(
        v["images"],
        serde_json::json!(["edited-1.png", "edited-2.png"])
    );
    assert_eq!(v["attempts"][0]["outcome"], "success");
    assert!(v["cost_usd"].as_f64().unwrap() > 0.0, "{v}");
    assert_png(&dir.path().join("edited-1.png"));
    assert_png(&dir.path().join("edited-2.png"));
    assert!(!out.exists());
    let req = sim.received("primary").pop().unwrap();
    assert!(req.path.ends_with("/v1/images/edits"), "{}", req.path);
    let body = String::from_utf8_lossy(&req.body);
    assert_eq!(
        body.matches("name=\"image[]\"").count(),
        2,
        "{}",
        &body[..body.len().min(2000)]
    );
    assert!(body.contains("name=\"mask\""));
    assert!(body.contains("add a hat"));
    assert!(body.contains("name=\"input_fidelity\""));

    // Text mode: the path on stdout, as generate.
    let o = run(
        &[
            "edit",
            "-i",
            "a.png",
            "--prompt",
            "add a hat",
            "--out",
            "one.png",
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "one.png");
    assert_png(&dir.path().join("one.png"));

    // A missing input, and a mask of another size: usage errors (2), nothing sent.
    let before = sim.stats("primary").requests;
    let o = run(
        &["edit", "--image", "nope.png", "--prompt", "x", "--json"],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("nope.png"),
        "{v}"
    );
    let o = run(
        &[
            "edit",
            "--image",
            "a.png",
            "--mask",
            "small.png",
            "--prompt",
            "x",
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("mask"), "{}", stderr(&o));
    assert_eq!(sim.stats("primary").requests, before);

    // A provider failure: exit 1 with the plain-words explanation, as generate.
    sim.fail("primary", Fault::InsufficientQuota, Times::Always);
    let o = run(
        &["edit", "--image", "a.png", "--prompt", "x"],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("billing"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_lines_may_name_input_images() {
    let (_key, sim, dir, env) = env_only("batch-edit").await;
    let inputs = dir.path().join("prompts");
    std::fs::create_dir_all(&inputs).unwrap();
    png_file(&inputs.join("cat.png"), 16, 16);
    png_file(&inputs.join("mask.png"), 16, 16);
    std::fs::write(
        inputs.join("p.jsonl"),
        concat!(
            "a plain prompt\n",
            "{\"prompt\": \"give the cat a hat\", \"images\": [\"cat.png\"], \"mask\": \"mask.png\", \"name\": \"cat-hat\"}\n",
            "{\"prompt\": \"lost\", \"images\": [\"missing.png\"], \"name\": \"lost\"}\n",
        ),
    )
    .unwrap();
    let o = run(
        &[
            "batch",
            "--json",
            "--prompts",
            "prompts/p.jsonl",
            "--out-dir",
            "out",
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines = json_lines(&o);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["generated"], 2, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    let lost = lines.iter().find(|l| l["line"] == 3).unwrap();
    assert_eq!(lost["status"], "failed");
    assert!(
        lost["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing.png"),
        "{lost}"
    );
    assert_png(&dir.path().join("out/0001.png"));
    assert_png(&dir.path().join("out/cat-hat.png"));
    assert!(dir.path().join("out").join(MANIFEST).is_file());
    let paths: Vec<String> = sim
        .received("primary")
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.ends_with("/images/edits"))
            .count(),
        1,
        "{paths:?}"
    );
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.ends_with("/images/generations"))
            .count(),
        1,
        "{paths:?}"
    );
    // Standard input works as the prompts file (edit paths then relative to the working folder).
    let o = run(
        &["batch", "--json", "--prompts", "-", "--out-dir", "out2"],
        &env,
        dir.path(),
        Some("{\"prompt\": \"a hat\", \"images\": [\"prompts/cat.png\"]}\nplain\n"),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json_lines(&o).last().unwrap()["summary"]["generated"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_shows_the_routers_spans_and_never_a_key() {
    let good = secret("vv-good");
    let wrong = secret("vv-wrong");
    let sim = Simulator::builder()
        .account("primary", SimAccount::new().api_key(secret("vv-expected")))
        .account("backup", SimAccount::new().api_key(good.clone()))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The primary rejects its key (a 401 quoting it, masked), the backup serves.
    let cfg = format!(
        "[router]\nstrategy = \"ordered\"\n{}{}",
        openai_toml("primary", &sim.openai_base_url("primary"), "WRONG_KEY"),
        openai_toml("backup", &sim.openai_base_url("backup"), "GOOD_KEY"),
    );
    std::fs::write(dir.path().join("r.toml"), cfg).unwrap();
    let env = vec![("WRONG_KEY", wrong.clone()), ("GOOD_KEY", good.clone())];
    let gen = [
        "generate", "-c", "r.toml", "--prompt", "a fox", "--out", "f.png",
    ];

    let mut args = gen.to_vec();
    args.push("-vv");
    let o = run(&args, &env, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(&o, &[good.clone(), wrong.clone()]);
    let err = stderr(&o);
    for w in [
        "image_router.request",
        "image_router.attempt",
        "primary",
        "backup",
        "ranked providers",
    ] {
        assert!(err.contains(w), "{w} missing at -vv:\n{err}");
    }
    // -v: the spans, not the debug events.
    let mut args = gen.to_vec();
    args.push("-v");
    let o = run(&args, &env, dir.path(), None).await;
    assert_clean(&o, &[good.clone(), wrong.clone()]);
    let err = stderr(&o);
    assert!(err.contains("image_router.attempt"), "{err}");
    assert!(!err.contains("ranked providers"), "{err}");
    // Nothing asked: no tracing output.
    let o = run(&gen, &env, dir.path(), None).await;
    assert!(
        !stderr(&o).contains("image_router.attempt"),
        "{}",
        stderr(&o)
    );
    // RUST_LOG alone turns it on, everything included.
    let mut env_log = env.clone();
    env_log.push(("RUST_LOG", "trace".to_string()));
    let o = run(&gen, &env_log, dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ranked providers"), "{}", stderr(&o));
    assert_clean(&o, &[good, wrong]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_prints_only_paths() {
    let (_key, _sim, dir, env) = env_only("quiet").await;
    let o = run(
        &[
            "generate",
            "--quiet",
            "--prompt",
            "two foxes",
            "-n",
            "2",
            "--out",
            "fox.png",
        ],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "fox-1.png\nfox-2.png\n");
    assert_eq!(stderr(&o), "", "zero-config note and summary are left out");
    // Without --quiet the same command says more.
    let o = run(
        &["generate", "--prompt", "fox", "--out", "f.png"],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(!stderr(&o).is_empty());
    // Batch: the paths of the images, nothing else.
    std::fs::write(dir.path().join("p.txt"), "one\ntwo\n").unwrap();
    let o = run(
        &["batch", "--quiet", "--prompts", "p.txt", "--out-dir", "out"],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut lines: Vec<&str> = std::str::from_utf8(&o.stdout).unwrap().lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["out/0001.png", "out/0002.png"]);
    assert_eq!(stderr(&o), "");
    // --quiet and -v contradict each other.
    let o = run(
        &["generate", "--quiet", "-v", "--prompt", "x"],
        &env,
        dir.path(),
        None,
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_from_standard_input() {
    let (_key, sim, dir, env) = env_only("stdin").await;
    let o = run(
        &["generate", "--prompt", "-", "--out", "f.png"],
        &env,
        dir.path(),
        Some("a fox\nin two lines\n"),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let body = sim.received("primary").pop().unwrap().json().unwrap();
    assert_eq!(body["prompt"], "a fox\nin two lines");
    // Edit reads it the same way.
    png_file(&dir.path().join("a.png"), 8, 8);
    let o = run(
        &[
            "edit", "--image", "a.png", "--prompt", "-", "--out", "e.png",
        ],
        &env,
        dir.path(),
        Some("make it blue"),
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let body = sim.received("primary").pop().unwrap().body;
    assert!(String::from_utf8_lossy(&body).contains("make it blue"));
    // An empty standard input is a usage error; nothing is sent.
    let before = sim.stats("primary").requests;
    let o = run(&["generate", "--prompt", "-"], &env, dir.path(), Some("\n")).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("empty"), "{}", stderr(&o));
    assert_eq!(sim.stats("primary").requests, before);
    // More than 1 MiB is not a prompt: refused without reading on, nothing is sent.
    let flood = "a".repeat((1 << 20) + 10);
    let o = run(
        &["generate", "--prompt", "-"],
        &env,
        dir.path(),
        Some(&flood),
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("more than 1 MiB"), "{}", stderr(&o));
    assert_eq!(sim.stats("primary").requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_man_pages_come_from_the_same_definitions() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c image-router"),
    ] {
        let o = run(&["completions", shell], &[], dir.path(), None).await;
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let s = stdout(&o);
        assert!(s.contains(marker), "{shell}:\n{s}");
        for sub in ["generate", "edit", "batch", "doctor", "status", "config"] {
            assert!(s.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(
            s.contains("--input-fidelity") || s.contains("input-fidelity"),
            "{shell}"
        );
    }
    let o = run(&["completions", "tcsh"], &[], dir.path(), None).await;
    assert_eq!(o.status.code(), Some(2));

    let o = run(&["man"], &[], dir.path(), None).await;
    assert!(o.status.success());
    let page = stdout(&o);
    assert!(page.contains(".TH image-router 1"), "{page}");
    assert!(page.contains("generate") && page.contains("edit"), "{page}");
    let o = run(&["man", "--out-dir", "man1"], &[], dir.path(), None).await;
    assert!(o.status.success(), "{}", stderr(&o));
    for page in [
        "image-router.1",
        "image-router-generate.1",
        "image-router-edit.1",
        "image-router-config-init.1",
    ] {
        let p: PathBuf = dir.path().join("man1").join(page);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
    let edit = std::fs::read_to_string(dir.path().join("man1/image-router-edit.1")).unwrap();
    assert!(edit.contains("mask"), "{edit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_help_shows_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for sub in [
        vec!["generate"],
        vec!["edit"],
        vec!["batch"],
        vec!["doctor"],
        vec!["status"],
        vec!["plan"],
        vec!["config"],
        vec!["config", "init"],
        vec!["completions"],
        vec!["man"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let o = run(&args, &[], dir.path(), None).await;
        assert!(o.status.success(), "{sub:?}");
        let s = stdout(&o);
        assert!(s.contains("Examples:"), "{sub:?} --help:\n{s}");
        assert!(
            s.contains(&format!("image-router {}", sub.join(" "))),
            "{sub:?} --help:\n{s}"
        );
    }
}
