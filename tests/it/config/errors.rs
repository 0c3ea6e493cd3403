//! Config errors name the key and the line, and bad text never panics: the user must be able to fix
//! the file from the message alone.

use crate::support::cli::*;
use image_router::config::{build_provider, RouterConfig};

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
