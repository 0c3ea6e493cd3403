//! The configuration as untrusted input: a key pasted where a variable name belongs is never
//! echoed (status, errors, doctor), URL credentials are masked wherever a URL is printed,
//! files are read with a size bound, and loading is linear in the number of providers.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use image_router::catalog::Catalog;
use image_router::config::{build_provider, RouterConfig};

/// A 32-hex-digit value shaped like an Azure key (assembled so no key-shaped literal is
/// tracked).
fn azure_like_key() -> String {
    ["0a1b2c3d", "4e5f6a7b", "8c9d0e1f", "2a3b4c5d"].concat()
}

fn password() -> String {
    ["pass", "word", "-", "7731"].concat()
}

fn provider(key_env: &str) -> String {
    format!("[[provider]]\nname = \"az\"\nkind = \"azure\"\nendpoint = \"https://r.openai.azure.com\"\ndeployment = \"d\"\napi_key_env = \"{key_env}\"\n")
}

fn cli(args: &[&str]) -> Output {
    let mut cmd = assert_cmd::Command::cargo_bin("image-router").unwrap();
    cmd.env_remove("IMAGE_ROUTER_CONFIG")
        .timeout(Duration::from_secs(60))
        .args(args)
        .output()
        .unwrap()
}

fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_key_pasted_into_api_key_env_is_refused_without_echo() {
    let key = azure_like_key();
    let e = provider(&key).parse::<RouterConfig>().unwrap_err();
    assert_eq!(e.field, "provider[0].api_key_env");
    assert_eq!(e.line, Some(6));
    assert!(e.message.contains("looks like a key"), "{e:?}");
    assert!(!format!("{e} {e:?} {}", e.explain()).contains(&key));
    // Other shapes of pasted secrets: with `-`, `.`, `=`, or long.
    for v in ["abc-def-ghi", "a.b", "dG9rZW4=", "K".repeat(80).as_str()] {
        let e = provider(v).parse::<RouterConfig>().unwrap_err();
        assert_eq!(e.field, "provider[0].api_key_env", "{v}");
        assert!(!e.message.contains(v), "{v}: {e:?}");
    }
    // Real variable names still load.
    for v in ["AZURE_OPENAI_API_KEY", "KEY2", "_K"] {
        assert!(provider(v).parse::<RouterConfig>().is_ok(), "{v}");
    }
    // `status` (text and JSON) refuses it the same way and never prints it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, "r.toml", &provider(&key));
    for json in [false, true] {
        let mut args = vec!["status", "-c", cfg.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let o = cli(&args);
        assert_eq!(o.status.code(), Some(2), "{}", all_text(&o));
        assert!(!all_text(&o).contains(&key), "{}", all_text(&o));
    }
}

#[tokio::test]
async fn a_key_set_as_the_variable_name_is_not_echoed_when_reading_the_environment() {
    let key = azure_like_key();
    let mut cfg = provider("AZURE_OPENAI_API_KEY")
        .parse::<RouterConfig>()
        .unwrap();
    // The fields are public: a program can put anything there.
    cfg.providers[0].api_key_env = Some(key.clone());
    let env = |_: &str| None;
    let e = cfg.build_with(&env, build_provider).unwrap_err();
    assert_eq!(e.field, "provider[0].api_key_env");
    assert!(!format!("{e} {e:?}").contains(&key), "{e:?}");
    let report = image_router::doctor::check_config_with(
        &cfg,
        None,
        Duration::from_secs(5),
        &env,
        build_provider,
    )
    .await;
    let shown = serde_json::to_string(&report.providers).unwrap();
    assert!(!shown.contains(&key), "{shown}");
    assert!(!report.all_usable());
}

#[test]
fn url_credentials_are_masked_in_status_doctor_and_errors() {
    let pw = password();
    let refused = crate::support::wire::refused_url(); // http://127.0.0.1:PORT/v1, nothing listens
    let with_user = refused.replacen("http://", &format!("http://user:{pw}@"), 1);
    let text = format!(
        "[[provider]]\nname = \"proxy\"\nkind = \"compatible\"\nbase_url = \"{with_user}\"\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(&dir, "r.toml", &text);
    let path = cfg.to_str().unwrap();
    for args in [
        vec!["status", "-c", path],
        vec!["status", "-c", path, "--json"],
        vec!["doctor", "-c", path, "--timeout", "5s"],
        vec!["doctor", "-c", path, "--timeout", "5s", "--json"],
    ] {
        let o = cli(&args);
        let t = all_text(&o);
        assert!(!t.contains(&pw), "{args:?}: {t}");
        assert!(
            t.contains("127.0.0.1"),
            "{args:?}: the URL is still shown: {t}"
        );
    }
    // A URL that does not parse is quoted in the error without its password.
    let bad = format!(
        "[[provider]]\nname = \"proxy\"\nkind = \"compatible\"\nbase_url = \"http://user:{pw}@[::1\"\n"
    );
    let e = bad.parse::<RouterConfig>().unwrap_err();
    assert_eq!(e.field, "provider[0].base_url");
    assert!(!e.message.contains(&pw), "{e:?}");
}

#[test]
fn files_are_read_with_a_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB of comments: valid TOML, but no configuration is that big.
    let big = "# padding padding padding padding padding padding padding padding\n".repeat(32_000);
    let cfg = write(&dir, "big.toml", &format!("{big}{}", provider("K")));
    let e = RouterConfig::from_file(&cfg).unwrap_err();
    assert!(e.message.contains("big.toml"), "{e:?}");
    assert!(e.message.contains("1024 KiB"), "{e:?}");
    let e = Catalog::builtin().with_override_file(&cfg).unwrap_err();
    assert!(e.message.contains("1024 KiB"), "{e:?}");
    // A file that never ends is not read to its end.
    let started = Instant::now();
    assert!(RouterConfig::from_file("/dev/zero").is_err());
    assert!(Catalog::builtin().with_override_file("/dev/zero").is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    // The CLI says the same and exits 2.
    let o = cli(&["status", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(all_text(&o).contains("1024 KiB"), "{}", all_text(&o));
}

#[test]
fn loading_is_linear_in_the_number_of_providers() {
    let n = 8_000;
    let mut text = String::from("[router]\ntimeout = \"30s\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[provider]]\nname = \"p{i}\"\nkind = \"openai\"\napi_key_env = \"K\"\nrpm = 5\n"
        ));
    }
    let started = Instant::now();
    let cfg: RouterConfig = text.parse().unwrap();
    let took = started.elapsed();
    assert_eq!(cfg.providers.len(), n);
    assert_eq!(cfg.providers[n - 1].line, 3 + 5 * (n - 1));
    assert_eq!(cfg.providers[n - 1].line_of("rpm"), 3 + 5 * (n - 1) + 4);
    // Quadratic loading took 18 s here; linear takes a fraction of a second.
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A duplicate name at the end is still found, with both lines.
    text.push_str("[[provider]]\nname = \"p0\"\nkind = \"openai\"\napi_key_env = \"K\"\n");
    let e = text.parse::<RouterConfig>().unwrap_err();
    assert_eq!(e.field, format!("provider[{n}].name"));
    assert!(e.message.contains("line 3"), "{e:?}");
}
