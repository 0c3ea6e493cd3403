//! Properties of the config loader: random configs built from the real keys, and any text;
//! an error names a known key and a line and never the secret pasted into a value.

use super::*;

/// Every key the loader knows, per table, with a valid value.
const ROUTER_KEYS: [(&str, &str); 12] = [
    ("strategy", "\"scored\""),
    ("timeout", "\"30s\""),
    ("deadline", "\"120s\""),
    ("max_attempts", "4"),
    ("default_model", "\"gpt-image-1\""),
    ("failover_on_content_policy", "false"),
    ("cooldown", "\"1m\""),
    ("retry_backoff", "\"500ms\""),
    ("rate_limit_wait", "\"10s\""),
    ("max_wait", "\"30s\""),
    ("budgets", "[{ usd = 5.0, per = \"day\" }]"),
    ("fallback_usd_per_image", "0.2"),
];
const BREAKER_KEYS: [(&str, &str); 11] = [
    ("consecutive_failures", "5"),
    ("failure_ratio", "0.5"),
    ("window", "\"30s\""),
    ("min_samples", "10"),
    ("cool_down", "\"10s\""),
    ("max_cool_down", "\"5m\""),
    ("long_cool_down", "\"10m\""),
    ("cool_down_multiplier", "2.0"),
    ("ramp", "\"30s\""),
    ("ramp_start", "0.1"),
    ("cheap_probe", "true"),
];
const SCORE_KEYS: [(&str, &str); 7] = [
    ("availability", "1.0"),
    ("latency", "1.0"),
    ("headroom", "1.0"),
    ("budget", "1.0"),
    ("priority", "1.0"),
    ("latency_slack", "\"100ms\""),
    ("headroom_knee", "0.05"),
];
const HEALTH_KEYS: [(&str, &str); 6] = [
    ("window", "\"60s\""),
    ("buckets", "6"),
    ("min_samples", "5"),
    ("latency_decay", "\"10s\""),
    ("idle_decay", "\"off\""),
    ("default_latency", "\"2s\""),
];
const PROVIDER_KEYS: [(&str, &str); 28] = [
    ("name", "\"p\""),
    ("kind", "\"openai\""),
    ("base_url", "\"https://api.openai.com/v1\""),
    ("endpoint", "\"https://example.openai.azure.com\""),
    ("deployment", "\"gpt-image-1\""),
    ("deployments", "{ \"gpt-image-1\" = \"img\" }"),
    ("default_deployment", "\"img\""),
    ("api_version", "\"2025-04-01-preview\""),
    ("v1_surface", "false"),
    ("api_key_env", "\"OPENAI_API_KEY\""),
    ("bearer_token_env", "\"AZURE_TOKEN\""),
    ("tier", "\"tier-2\""),
    ("rpm", "15"),
    ("tpm", "500000"),
    ("safety_margin", "0.9"),
    ("ipm", "5"),
    ("shared", "true"),
    ("weight", "1.0"),
    ("budgets", "[{ usd = 20.0, per = \"day\" }]"),
    ("reserved_for", "[\"interactive\"]"),
    ("preferred_by", "[\"batch\"]"),
    ("organization", "\"org-1\""),
    ("project", "\"proj-1\""),
    ("models", "[\"gpt-image-1\"]"),
    ("allow_unknown_models", "false"),
    ("streaming", "true"),
    ("mode", "\"images\""),
    ("rename", "{ \"gpt-image-1\" = \"img\" }"),
];

/// A key-shaped secret pasted into a value: it must never come back in an error.
fn secret() -> String {
    ["sk", "proj", "Zq8vN3xR5tY7wB2mK4pL6sD9fG1hJ0cV"].join("-")
}

/// A TOML value of a random type (the right one sometimes), with the interesting strings.
fn toml_value() -> BoxedStrategy<String> {
    prop_oneof![
        3 => go_duration_text().prop_map(|s| toml_string(&s)),
        2 => number_text().prop_map(|n| if n.is_empty() { "\"\"".into() } else { n }),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| format!("{f:?}")),
        1 => prop::sample::select(vec!["nan", "inf", "-inf", "true", "false", "1979-05-27T07:32:00Z", "0x7f", "1_000"]).prop_map(str::to_string),
        2 => word().prop_map(|w| toml_string(&w)),
        1 => prop::sample::select(vec!["openai", "azure", "compatible", "chat", "images", "scored", "ordered", "weighted", "free", "tier-1", "enterprise", "day", "month", "gpt-image-1", "dall-e-3", "interactive"]).prop_map(toml_string),
        1 => Just(toml_string(&secret())),
        1 => Just(format!("\"not a url {}\"", secret())),
        1 => prop::collection::vec(word(), 0..3)
            .prop_map(|v| format!("[{}]", v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", "))),
        1 => (json_number(), word()).prop_map(|(n, p)| format!("[{{ usd = {}, per = {} }}]", toml_number(&n), toml_string(&p))),
        1 => (word(), word()).prop_map(|(k, v)| format!("{{ {} = {} }}", toml_string(&k), toml_string(&v))),
        1 => (1usize..300).prop_map(|d| format!("{}1{}", "[".repeat(d), "]".repeat(d))),
        1 => (1usize..300).prop_map(|d| format!("{}{}", "{ a = ".repeat(d), "1 }".repeat(d))),
    ]
    .boxed()
}

fn toml_string(s: &str) -> String {
    // serde_json's escaping is valid TOML basic-string escaping for every char it emits.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn toml_number(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => toml_string(&other.to_string()),
    }
}

/// A table of the config with its keys, some dropped, some with a random value.
fn table(
    header: &'static str,
    keys: &'static [(&'static str, &'static str)],
) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (any::<bool>(), prop::option::weighted(0.2, toml_value())),
        keys.len(),
    )
    .prop_map(move |choices| {
        let mut out = format!("{header}\n");
        for ((key, valid), (keep, random)) in keys.iter().zip(choices) {
            if !keep && random.is_none() {
                continue;
            }
            let value = random.unwrap_or_else(|| (*valid).to_string());
            out.push_str(&format!("{key} = {value}\n"));
        }
        out
    })
}

/// A provider table: a kind with the keys it needs, then random keys of all kinds.
fn provider_table() -> BoxedStrategy<String> {
    let base = prop_oneof![
        Just("name = \"openai-direct\"\nkind = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n"),
        Just("name = \"azure-east\"\nkind = \"azure\"\nendpoint = \"https://example.openai.azure.com\"\ndeployment = \"gpt-image-1\"\napi_key_env = \"AZURE_OPENAI_API_KEY\"\n"),
        Just("name = \"proxy\"\nkind = \"compatible\"\nbase_url = \"https://proxy.example/v1\"\napi_key_env = \"PROXY_API_KEY\"\nmode = \"chat\"\n"),
        Just(""),
    ];
    (
        base,
        prop::collection::vec(
            (
                0..PROVIDER_KEYS.len(),
                prop::option::weighted(0.5, toml_value()),
            ),
            0..4,
        ),
    )
        .prop_map(|(base, extra)| {
            let mut out = format!("[[provider]]\n{base}");
            for (i, value) in extra {
                let (key, valid) = PROVIDER_KEYS[i];
                out.push_str(&format!(
                    "{key} = {}\n",
                    value.unwrap_or_else(|| valid.to_string())
                ));
            }
            out
        })
        .boxed()
}

/// Whole config texts: tables in any order, and a line of junk now and then.
fn config_text() -> BoxedStrategy<String> {
    (
        prop::option::of(table("[router]", &ROUTER_KEYS)),
        prop::option::weighted(0.3, table("[router.breaker]", &BREAKER_KEYS)),
        prop::option::weighted(0.3, table("[router.score]", &SCORE_KEYS)),
        prop::option::weighted(0.3, table("[router.health]", &HEALTH_KEYS)),
        prop::collection::vec(provider_table(), 0..4),
        prop::option::weighted(
            0.1,
            prop_oneof![
                word(),
                Just("[router".to_string()),
                Just("x = ".to_string()),
                Just("[[provider]]\nname = 1\nname = 2".to_string())
            ],
        ),
        any::<bool>(),
    )
        .prop_map(
            |(router, breaker, score, health, providers, junk, providers_first)| {
                let routers: Vec<String> = [router, breaker, score, health]
                    .into_iter()
                    .flatten()
                    .collect();
                let mut parts = if providers_first {
                    [providers, routers].concat()
                } else {
                    [routers, providers].concat()
                };
                if let Some(j) = junk {
                    parts.push(j);
                }
                parts.join("\n")
            },
        )
        .boxed()
}

/// Names an error's `field` may use: the keys above, their tables, the file as a whole, or a
/// key or table written in the text (an unknown key or a broken header is named as written).
fn known_field(field: &str, text: &str) -> bool {
    let last = field.rsplit('.').next().unwrap_or(field);
    let last = last.split('[').next().unwrap_or(last);
    let keys = ROUTER_KEYS
        .iter()
        .chain(&BREAKER_KEYS)
        .chain(&SCORE_KEYS)
        .chain(&HEALTH_KEYS)
        .chain(&PROVIDER_KEYS)
        .map(|(k, _)| *k);
    let tables = [
        "config", "router", "provider", "breaker", "score", "health", "catalog", "usd", "per",
    ];
    // A key the file wrote, named as written (`.` for a line `.=`, whose last segment is
    // empty), is known too.
    keys.chain(tables).any(|k| k == last)
        || (!last.is_empty() && text.contains(last))
        || text.contains(field)
}

proptest! {
    #![proptest_config(direct())]

    /// Random configs from the real keys: no panic; an error names a known key, a line in
    /// the file, and never the secret pasted into a value.
    #[test]
    fn config_loader(text in config_text()) {
        match text.parse::<RouterConfig>() {
            Ok(cfg) => {
                let _ = format!("{cfg:?}");
            }
            Err(e) => {
                prop_assert!(!e.field.is_empty());
                prop_assert!(!e.message.trim().is_empty(), "no message for {:?}\n{text}", e.field);
                prop_assert!(known_field(&e.field, &text), "field {:?} ({})\n{text}", e.field, e.message);
                if let Some(line) = e.line {
                    prop_assert!(line >= 1 && line <= text.lines().count() + 1, "line {line}\n{text}");
                }
                prop_assert!(!e.message.contains(&secret()), "{}", e.message);
                prop_assert!(!e.to_string().contains(&secret()));
            }
        }
    }

    /// Arbitrary text is a config error or a config, never a panic.
    #[test]
    fn config_loader_any_text(text in any::<String>()) {
        if let Err(e) = text.parse::<RouterConfig>() {
            prop_assert!(!e.field.is_empty());
        }
    }
}

/// A config file that is not UTF-8 is a config error naming the file.
#[test]
fn config_file_not_utf8() {
    let mut runner = TestRunner::new(config_with((cases() / 20).max(20)));
    let result = runner.run(
        &(
            config_text(),
            prop::collection::vec(0x80u8..=0xff, 1..4),
            any::<usize>(),
        ),
        |(text, bad, at)| {
            let mut bytes = text.into_bytes();
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, bad);
            let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let path = dir.path().join("router.toml");
            std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            match RouterConfig::from_file(&path) {
                Ok(_) => prop_assert!(std::str::from_utf8(&bytes).is_ok()),
                Err(e) => prop_assert!(!e.field.is_empty()),
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
