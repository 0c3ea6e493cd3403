//! `api_key_env` as a list in the config file, the single string still working, and the
//! errors of a bad list naming `api_key_env` and the element.

use super::*;
use image_router::config::{build_provider, RouterConfig};
use image_router::providers::OpenAi;
use image_router::{ConfigError, ProviderOptions, Router};

fn table(api_key_env: &str) -> String {
    format!(
        r#"
[[provider]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = {api_key_env}
rpm = 6
"#
    )
}

fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn build(text: &str, vars: &[(&str, String)]) -> Result<Router, ConfigError> {
    let cfg: RouterConfig = text.parse()?;
    cfg.build_with(&env(vars), build_provider)
}

#[test]
fn a_list_gives_one_provider_per_key_labelled_by_its_variable() {
    let text = table(r#"["OPENAI_KEY_A", "OPENAI_KEY_B"]"#);
    let cfg: RouterConfig = text.parse().unwrap();
    assert_eq!(cfg.providers[0].api_key_envs, vec![LABEL_A, LABEL_B]);
    assert_eq!(cfg.providers[0].api_key_env.as_deref(), Some(LABEL_A));
    let router = build(&text, &[(LABEL_A, key("a")), (LABEL_B, key("b"))]).unwrap();
    assert_eq!(
        router.provider_names(),
        vec![member(LABEL_A), member(LABEL_B)]
    );
    let status = router.status();
    assert_eq!(status.key_groups.len(), 1);
    let labels: Vec<&str> = status.key_groups[0]
        .keys
        .iter()
        .map(|k| k.label.as_str())
        .collect();
    assert_eq!(labels, vec![LABEL_A, LABEL_B]);
    // Each key has the configured limit.
    for (_, h) in router.headroom() {
        assert_eq!(
            h.effective_rpm,
            Some(6),
            "the whole limit (default margin 1)"
        );
    }
}

#[test]
fn a_single_string_and_a_one_element_list_keep_one_provider() {
    for form in [r#""OPENAI_KEY_A""#, r#"["OPENAI_KEY_A"]"#] {
        let router = build(&table(form), &[(LABEL_A, key("a"))]).unwrap();
        assert_eq!(router.provider_names(), vec!["openai"], "{form}");
        assert!(router.status().key_groups.is_empty());
        assert!(router.status().providers[0].key.is_none());
    }
}

#[test]
fn a_bad_list_is_an_error_naming_api_key_env_and_the_element() {
    let cases = [
        ("[]", "provider[0].api_key_env", "empty"),
        (
            r#"["OPENAI_KEY_A", "OPENAI_KEY_A"]"#,
            "provider[0].api_key_env[1]",
            "twice",
        ),
        (
            r#"["OPENAI_KEY_A", "not a name"]"#,
            "provider[0].api_key_env[1]",
            "NAME of an environment variable",
        ),
        ("[1, 2]", "provider[0].api_key_env", ""),
    ];
    for (form, field, words) in cases {
        let e = match table(form).parse::<RouterConfig>() {
            Ok(_) => panic!("{form} should not parse"),
            Err(e) => e,
        };
        assert!(
            e.field == field || e.to_string().contains(field),
            "{form}: {e} (field {})",
            e.field
        );
        assert!(e.to_string().contains(words), "{form}: {e}");
        assert!(e.line.is_some(), "{form}: {e}");
    }
}

#[test]
fn a_key_pasted_into_the_list_is_refused_without_being_printed() {
    let pasted = key("a");
    let e = match table(&format!(r#"["OPENAI_KEY_A", "{pasted}"]"#)).parse::<RouterConfig>() {
        Ok(_) => panic!("should not parse"),
        Err(e) => e,
    };
    assert_eq!(e.field, "provider[0].api_key_env[1]");
    assert_no_key(&format!("{e} {e:?}"));
}

#[test]
fn an_unset_variable_in_the_list_is_an_error_naming_the_element() {
    let text = table(r#"["OPENAI_KEY_A", "OPENAI_KEY_B"]"#);
    let e = build(&text, &[(LABEL_A, key("a"))]).unwrap_err();
    assert_eq!(e.field, "provider[0].api_key_env[1]");
    assert!(e.to_string().contains("OPENAI_KEY_B"), "{e}");
    assert!(e.to_string().contains("not set"), "{e}");
    assert_no_key(&format!("{e} {e:?}"));
}

#[test]
fn azure_and_compatible_take_a_list_too() {
    let text = r#"
[[provider]]
name = "azure"
kind = "azure"
endpoint = "http://127.0.0.1:9"
deployment = "img"
api_key_env = ["AZ_KEY_A", "AZ_KEY_B"]

[[provider]]
name = "proxy"
kind = "compatible"
base_url = "http://127.0.0.1:9/v1"
api_key_env = ["PROXY_KEY_A", "PROXY_KEY_B"]
"#;
    let vars = [
        ("AZ_KEY_A", key("a")),
        ("AZ_KEY_B", key("b")),
        ("PROXY_KEY_A", key("a")),
        ("PROXY_KEY_B", key("b")),
    ];
    let router = build(text, &vars).unwrap();
    assert_eq!(
        router.provider_names(),
        vec![
            "azure/AZ_KEY_A",
            "azure/AZ_KEY_B",
            "proxy/PROXY_KEY_A",
            "proxy/PROXY_KEY_B"
        ]
    );
    assert_eq!(router.status().key_groups.len(), 2);
}

/// The builder's checks: no key, a duplicate label, a label that is (the start of) a key or
/// shaped like one are errors naming `keys[i]`, without printing the key.
#[test]
fn the_builder_refuses_bad_key_sets_naming_the_key() {
    let b = || OpenAi::builder().name("openai");
    let empty: [(&str, String); 0] = [];
    assert_eq!(b().build_keys(empty).unwrap_err().field, "keys");
    let e = Router::builder()
        .provider_keys(
            image_router::providers::ProviderKeys::new("openai"),
            ProviderOptions::new(),
        )
        .build()
        .unwrap_err();
    assert_eq!(e.field, "providers[0].keys");

    let e = b()
        .build_keys([(LABEL_A, key("a")), (LABEL_A, key("b"))])
        .unwrap_err();
    assert_eq!(e.field, "keys[1]");
    assert!(e.to_string().contains("duplicate"), "{e}");

    let k = key("a");
    let e = b().build_keys([(k.clone(), k.clone())]).unwrap_err();
    assert_eq!(e.field, "keys[0]");
    assert_no_key(&format!("{e} {e:?}"));
    let e = b()
        .build_keys([("PROJ", "PROJ_0123456789abcdef".to_string())])
        .unwrap_err();
    assert_eq!(e.field, "keys[0]");
    assert!(!e.to_string().contains("PROJ_0123456789abcdef"));

    // A hand-built set is checked by the router builder.
    let p = b().api_key(key("a")).build().unwrap();
    let e = Router::builder()
        .provider(b().name("other").api_key(key("b")).build().unwrap())
        .provider_keys(
            image_router::providers::ProviderKeys::new("openai")
                .key(LABEL_A, p.clone())
                .key(LABEL_A, p),
            ProviderOptions::new(),
        )
        .build()
        .unwrap_err();
    assert_eq!(e.field, "providers[1].keys[1]");
}
