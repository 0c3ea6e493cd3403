//! The `[store]` table and the providers' `account`: parsed with errors naming key and line,
//! the URL only ever from an environment variable, the store reaching the router (its kind in
//! `status()`), and a changed `[store]` on reload reported as needing a restart.

use crate::support::cli::*;
use crate::support::redis::{self as test_redis, Server};
use image_router::config::{build_provider, RouterConfig, StoreKind};
use image_router::GenerateRequest;
use std::time::Duration;

fn one_provider(store: &str, provider_extra: &str) -> String {
    format!(
        "{store}\n[[provider]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = \"{PRIMARY_VAR}\"\n{provider_extra}\n"
    )
}

#[test]
fn no_store_table_is_the_in_process_store() {
    let cfg: RouterConfig = one_provider("", "").parse().unwrap();
    assert_eq!(cfg.store.kind, StoreKind::InProcess);
    assert_eq!(cfg.store.url_env, None);
    let cfg: RouterConfig = one_provider("[store]\nkind = \"in-process\"", "")
        .parse()
        .unwrap();
    assert_eq!(cfg.store.kind, StoreKind::InProcess);
}

#[test]
fn a_redis_table_parses_with_its_settings() {
    let cfg: RouterConfig = one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"REDIS_URL\"\nprefix = \"shop\"\ntimeout = \"80ms\"\nheartbeat = \"1s\"",
        "",
    )
    .parse()
    .unwrap();
    assert_eq!(cfg.store.kind, StoreKind::Redis);
    assert_eq!(cfg.store.url_env.as_deref(), Some("REDIS_URL"));
    assert_eq!(cfg.store.prefix.as_deref(), Some("shop"));
    assert_eq!(cfg.store.timeout, Some(Duration::from_millis(80)));
    assert_eq!(cfg.store.heartbeat, Some(Duration::from_secs(1)));
}

#[test]
fn a_url_in_the_file_is_refused_without_echoing_it() {
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nurl = \"redis://:hunter2pass@127.0.0.1:6379/0\"",
        "",
    ));
    assert_eq!(e.field, "store.url");
    assert_eq!(e.line, Some(3));
    assert!(e.message.contains("url_env"), "{e}");
    assert!(!e.to_string().contains("hunter2pass"), "{e}");
}

#[test]
fn redis_without_url_env_and_other_mistakes_name_key_and_line() {
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nprefix = \"p\"",
        "",
    ));
    assert_eq!(e.field, "store.url_env");
    assert_eq!(e.line, Some(2));
    let e = parse_err(&one_provider("[store]\nkind = \"memcached\"", ""));
    assert_eq!(e.field, "store.kind");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("memcached"), "{e}");
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"REDIS_URL\"\ntimeout = \"soon\"",
        "",
    ));
    assert_eq!((e.field.as_str(), e.line), ("store.timeout", Some(4)));
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"REDIS_URL\"\n\nprefix = \"a{b}\"",
        "",
    ));
    assert_eq!((e.field.as_str(), e.line), ("store.prefix", Some(5)));
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"REDIS_URL\"\nheartbeat = \"0s\"",
        "",
    ));
    assert_eq!((e.field.as_str(), e.line), ("store.heartbeat", Some(4)));
    // A key pasted where the variable's name belongs is refused and not echoed.
    let pasted = secret("redis");
    let e = parse_err(&one_provider(
        &format!("[store]\nkind = \"redis\"\nurl_env = \"{pasted}\""),
        "",
    ));
    assert_eq!((e.field.as_str(), e.line), ("store.url_env", Some(3)));
    assert!(!e.to_string().contains(&pasted), "{e}");
    // Redis settings on the in-process store mean nothing: refused, not ignored.
    let e = parse_err(&one_provider("[store]\nurl_env = \"REDIS_URL\"", ""));
    assert_eq!((e.field.as_str(), e.line), ("store.url_env", Some(2)));
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"R\"\nttl = 3",
        "",
    ));
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("ttl"), "{e}");
}

#[test]
fn account_reaches_the_provider_options_and_is_checked() {
    let cfg: RouterConfig = one_provider("", "account = \"org-main\"").parse().unwrap();
    assert_eq!(cfg.providers[0].account.as_deref(), Some("org-main"));
    assert_eq!(
        cfg.providers[0].options().account.as_deref(),
        Some("org-main")
    );
    let e = parse_err(&one_provider("", "account = \"org{1}\""));
    assert_eq!((e.field.as_str(), e.line), ("provider[0].account", Some(6)));
    let e = parse_err(&one_provider("", "account = \"  \""));
    assert_eq!(e.field, "provider[0].account");
    // Several keys are several accounts: one name for all of them would merge their limits.
    let text = format!(
        "[[provider]]\nname = \"openai\"\nkind = \"openai\"\napi_key_env = [\"{PRIMARY_VAR}\", \"{AZURE_VAR}\"]\naccount = \"one\"\n"
    );
    let e = parse_err(&text);
    assert_eq!((e.field.as_str(), e.line), ("provider[0].account", Some(5)));
}

#[test]
fn building_redis_without_its_variable_names_the_variable() {
    let cfg: RouterConfig = one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_UNSET_REDIS_URL\"",
        "",
    )
    .parse()
    .unwrap();
    let env = env_from(&[(PRIMARY_VAR, secret("primary"))]);
    let e = cfg.build_with(&env, build_provider).unwrap_err();
    assert_eq!(e.field, "store.url_env");
    assert_eq!(e.line, Some(2));
    assert!(
        e.message.contains("IMAGE_ROUTER_TEST_UNSET_REDIS_URL"),
        "{e}"
    );
    // A URL of the wrong scheme: the variable is named, its value (with a password) is not.
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (
            "IMAGE_ROUTER_TEST_UNSET_REDIS_URL",
            "http://:hunter2pass@127.0.0.1:1/".to_string(),
        ),
    ]);
    let e = cfg.build_with(&env, build_provider).unwrap_err();
    assert_eq!(e.field, "store.url_env");
    assert!(
        e.message.contains("IMAGE_ROUTER_TEST_UNSET_REDIS_URL"),
        "{e}"
    );
    assert!(!e.to_string().contains("hunter2pass"), "{e}");
}

#[tokio::test]
async fn status_reports_the_in_process_store() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    let router = three_config(&sim, "")
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    let st = router.status().store;
    assert_eq!(st.kind, "in-process");
    assert!(!st.shared);
    assert_eq!(st.degraded, None);
    assert_eq!(st.instances, None);
    let names: Vec<&str> = st.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["openai-direct", "azure-east", "proxy"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_changed_store_table_on_reload_needs_a_restart_and_keeps_the_running_store() {
    let sim = three_accounts().await;
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
    ]);
    let running: RouterConfig = three_config(&sim, "").parse().unwrap();
    let router = running.build_with(&env, build_provider).unwrap();
    router
        .generate(GenerateRequest::new("a fox").quality(image_router::Quality::Low))
        .await
        .unwrap();
    let spent_before = router.spend()[1].lifetime_spent_usd;
    assert!(spent_before > 0.0);
    // Same providers, a Redis store now, and one more setting that does apply.
    let next: RouterConfig = format!(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_UNSET_REDIS_URL\"\n{}",
        three_config(&sim, "max_attempts = 2")
    )
    .parse()
    .unwrap();
    let notes = next
        .reload_with(&router, &running, &env, build_provider)
        .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("restart"), "{notes:?}");
    assert!(notes[0].contains("[store]"), "{notes:?}");
    // The running (in-process) store is kept, with what it knew; the rest was applied.
    assert_eq!(router.status().store.kind, "in-process");
    assert_eq!(router.spend()[1].lifetime_spent_usd, spent_before);
    // The same table again: nothing to report.
    let notes = running
        .reload_with(&router, &running, &env, build_provider)
        .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    sim.shutdown().await;
}

/// With a Redis server: a `[store] kind = "redis"` file builds a router whose providers
/// report the shared store and their accounts.
async fn a_redis_store_table_reaches_the_router(server: Server) {
    let Some(url) = server.url("a_redis_store_table_reaches_the_router") else {
        return;
    };
    let sim = three_accounts().await;
    let prefix = test_redis::unique_prefix("config");
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (AZURE_VAR, secret("azure")),
        (PROXY_VAR, secret("proxy")),
        ("IMAGE_ROUTER_TEST_CONFIG_REDIS_URL", url),
    ]);
    let text = format!(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_CONFIG_REDIS_URL\"\nprefix = \"{prefix}\"\ntimeout = \"500ms\"\ncluster = {}\n{}",
        server.is_cluster(),
        three_config(&sim, "")
    )
    .replace(
        "name = \"azure-east\"",
        "name = \"azure-east\"\naccount = \"azure-resource\"",
    );
    let router = text
        .parse::<RouterConfig>()
        .unwrap()
        .build_with(&env, build_provider)
        .unwrap();
    router
        .generate(GenerateRequest::new("a fox").quality(image_router::Quality::Low))
        .await
        .unwrap();
    let st = router.status().store;
    assert_eq!(st.kind, "redis");
    assert!(st.shared);
    let accounts: Vec<Option<&str>> = st.providers.iter().map(|p| p.account.as_deref()).collect();
    assert_eq!(
        accounts,
        [Some("openai-direct"), Some("azure-resource"), Some("proxy")]
    );
    sim.shutdown().await;
}

/// The README's `[store]` example parses as written.
#[test]
fn the_readme_store_example_parses() {
    let readme = include_str!("../../../README.md");
    let blocks = blocks(readme, "toml store");
    assert_eq!(blocks.len(), 1, "one [store] example in the README");
    let cfg: RouterConfig = blocks[0].parse().unwrap();
    assert_eq!(cfg.store.kind, StoreKind::Redis);
    assert_eq!(cfg.store.url_env.as_deref(), Some("REDIS_URL"));
    assert_eq!(cfg.store.timeout, Some(Duration::from_millis(50)));
    assert_eq!(cfg.providers[0].account.as_deref(), Some("org-main"));
}

/// `doctor` checks the configured store: PING and the server's version when it answers, a
/// clear finding (never a panic, never the URL's password) when it does not.
#[tokio::test]
async fn doctor_checks_that_the_store_answers() {
    use image_router::doctor;
    let text = one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_DOCTOR_REDIS_URL\"",
        "",
    );
    let cfg: RouterConfig = text.parse().unwrap();
    // Nothing listens on port 1: a finding, with the password kept out of it.
    let env = env_from(&[(
        "IMAGE_ROUTER_TEST_DOCTOR_REDIS_URL",
        "redis://:hunter2pass@127.0.0.1:1/".to_string(),
    )]);
    let st = doctor::check_store(&cfg, &env, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!st.ok);
    assert_eq!(st.server_version, None);
    let x = st.explanation.clone().unwrap();
    assert!(x.cause.contains("Redis store"), "{x:?}");
    assert!(!format!("{st:?}").contains("hunter2pass"), "{st:?}");
    // No variable: the finding names it.
    let st = doctor::check_store(&cfg, &env_from(&[]), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!st.ok);
    assert!(st
        .explanation
        .unwrap()
        .cause
        .contains("IMAGE_ROUTER_TEST_DOCTOR_REDIS_URL"));
    // The in-process store has nothing to check.
    let plain: RouterConfig = one_provider("", "").parse().unwrap();
    assert!(doctor::check_store(&plain, &env, Duration::from_secs(1))
        .await
        .is_none());
    // A real server answers with its version.
    let Some(url) = test_redis::url("doctor_checks_that_the_store_answers") else {
        return;
    };
    let env = env_from(&[("IMAGE_ROUTER_TEST_DOCTOR_REDIS_URL", url)]);
    let st = doctor::check_store(&cfg, &env, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(st.ok, "{st:?}");
    let version = st.server_version.unwrap();
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()) || version.starts_with("valkey"),
        "{version}"
    );
    println!("[config::store] doctor: the test server is version {version}");
}

/// `cluster = true`: the variable holds one or several comma-separated node URLs; without it
/// a list is refused on `store.url_env`, naming the variable and never its value; `cluster`
/// means nothing for the in-process store.
#[test]
fn a_cluster_store_table_takes_several_node_urls() {
    let cfg: RouterConfig = one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_CLUSTER_NODES\"\ncluster = true",
        "",
    )
    .parse()
    .unwrap();
    assert_eq!(cfg.store.cluster, Some(true));
    let nodes = "redis://:hunter2pass@127.0.0.1:1,redis://:hunter2pass@127.0.0.1:2";
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        ("IMAGE_ROUTER_TEST_CLUSTER_NODES", nodes.to_string()),
    ]);
    // Building connects to nothing: a list of unreachable nodes still builds.
    let router = cfg.build_with(&env, build_provider).unwrap();
    assert_eq!(router.status().store.kind, "redis");

    let single: RouterConfig = one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_CLUSTER_NODES\"",
        "",
    )
    .parse()
    .unwrap();
    let e = single.build_with(&env, build_provider).unwrap_err();
    assert_eq!(e.field, "store.url_env");
    assert!(e.message.contains("IMAGE_ROUTER_TEST_CLUSTER_NODES"), "{e}");
    assert!(e.message.contains("cluster = true"), "{e}");
    assert!(!e.to_string().contains("hunter2pass"), "{e}");

    let e = parse_err(&one_provider("[store]\ncluster = true", ""));
    assert_eq!(e.field, "store.cluster");
    assert_eq!(e.line, Some(2));
    let e = parse_err(&one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"X\"\ncluster = \"yes\"",
        "",
    ));
    assert_eq!(e.field, "store.cluster", "{e}");
}

/// The README's Redis Cluster example parses, and with a provider added builds from a list of
/// node URLs (no connection is made while building).
#[test]
fn the_readme_cluster_example_parses_and_builds() {
    let readme = include_str!("../../../README.md");
    let blocks = blocks(readme, "toml cluster");
    assert_eq!(blocks.len(), 1, "one Redis Cluster example in the README");
    let cfg: RouterConfig = one_provider(&blocks[0], "").parse().unwrap();
    assert_eq!(cfg.store.kind, StoreKind::Redis);
    assert_eq!(cfg.store.cluster, Some(true));
    assert_eq!(cfg.queue.as_ref().unwrap().cluster, Some(true));
    assert_eq!(
        cfg.cache.as_ref().unwrap().redis.as_ref().unwrap().cluster,
        Some(true)
    );
    let env = env_from(&[
        (PRIMARY_VAR, secret("primary")),
        (
            "REDIS_CLUSTER_URLS",
            "redis://127.0.0.1:1,redis://127.0.0.1:2".to_string(),
        ),
    ]);
    cfg.build_with(&env, build_provider).unwrap();
    let queue = cfg.queue.as_ref().unwrap();
    assert_eq!(queue.kind, image_router::config::QueueKind::Redis);
}

/// `doctor` on a cluster: PING reaches every node and the version is read.
#[tokio::test]
async fn doctor_checks_a_cluster_store() {
    use image_router::doctor;
    let Some(urls) = test_redis::cluster_urls("doctor_checks_a_cluster_store") else {
        return;
    };
    let cfg: RouterConfig = one_provider(
        "[store]\nkind = \"redis\"\nurl_env = \"IMAGE_ROUTER_TEST_DOCTOR_CLUSTER_URLS\"\ncluster = true",
        "",
    )
    .parse()
    .unwrap();
    let env = env_from(&[("IMAGE_ROUTER_TEST_DOCTOR_CLUSTER_URLS", urls)]);
    let st = doctor::check_store(&cfg, &env, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(st.ok, "{st:?}");
    let version = st.server_version.unwrap();
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()) || version.starts_with("valkey"),
        "{version}"
    );
}

crate::on_each_server!(
    (flavor = "multi_thread", worker_threads = 2);
    a_redis_store_table_reaches_the_router,
);
