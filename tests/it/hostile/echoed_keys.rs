//! A key echoed anywhere in an answer leaves no trace: not in errors, explanations, status
//! JSON or tracing output.

use super::*;

#[tokio::test]
async fn a_key_echoed_in_headers_and_body_reaches_no_error_text_status_or_log() {
    let k = key();
    let echo = k.clone();
    let evil = Hostile::start(move |_, _| {
        let id = format!("req-{echo}");
        json_reply(
            400,
            &[
                ("x-request-id", id.as_str()),
                ("x-ratelimit-reset-requests", echo.as_str()),
            ],
            json!({"error": {
                "message": format!("Incorrect API key provided: {echo}"),
                "type": format!("type-{echo}"),
                "param": format!("param-{echo}"),
                "code": format!("code-{echo}"),
            }}),
        )
    })
    .await;
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(subscriber(logs.clone()));
    let router = Router::builder()
        .provider(
            Compatible::builder()
                .name("evil")
                .base_url(evil.base())
                .api_key(k.clone())
                .client(reqwest::Client::new())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    let cause = err.cause().expect("a provider error").clone();
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        err.explain().to_string(),
        cause.to_string(),
        format!("{cause:?}"),
        cause.explain().to_string(),
        serde_json::to_string(&cause).unwrap(),
        serde_json::to_string(&router.status()).unwrap(),
        logs.text(),
    ];
    for (i, t) in texts.iter().enumerate() {
        assert!(!t.contains(&k), "text {i} leaks the key: {t}");
    }
    assert!(
        cause
            .request_id
            .as_deref()
            .is_some_and(|id| id.contains("[redacted]")),
        "{cause:?}"
    );
    assert!(cause.message.contains("[redacted]"), "{cause:?}");
}

#[tokio::test]
async fn a_key_echoed_in_a_successful_answer_is_scrubbed_too() {
    let k = key();
    let echo = k.clone();
    let evil = Hostile::start(move |seen, port| {
        if seen.path.starts_with("/img") {
            return Reply::Raw(raw(200, &[("content-type", "image/png")], &png_bytes()));
        }
        let id = format!("req-{echo}");
        json_reply(
            200,
            &[("x-request-id", id.as_str())],
            ok_images(json!([{
                "url": format!("http://127.0.0.1:{port}/img?k={echo}"),
                "revised_prompt": format!("prompt {echo}"),
            }])),
        )
    })
    .await;
    let res = openai(&evil).generate(&gen(), &ctx()).await.unwrap();
    let text = format!("{res:?}");
    assert!(!text.contains(&k), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
}

/// The command line is an output surface too: `generate` (text and `--json`) and `status`
/// against a provider that echoes the key in a header and in its error body print no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_by_the_provider_reaches_no_cli_output() {
    let k = key();
    let echo = k.clone();
    let evil = Hostile::start(move |_, _| {
        let id = format!("req-{echo}");
        json_reply(
            502,
            &[("x-request-id", id.as_str())],
            json!({"error": {
                "message": format!("upstream said: Incorrect API key provided: {echo}"),
                "type": "server_error", "param": null, "code": null,
            }}),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(
        &cfg,
        format!(
            "[router]\nretry_backoff = \"10ms\"\n[[provider]]\nname = \"evil\"\n\
             kind = \"compatible\"\nbase_url = \"{}\"\napi_key_env = \"IR_HOSTILE_KEY\"\n",
            evil.base()
        ),
    )
    .unwrap();
    let out_png = dir.path().join("x.png");
    let runs: Vec<Vec<String>> = vec![
        vec!["generate".into(), "--prompt".into(), "a fox".into()],
        vec![
            "generate".into(),
            "--json".into(),
            "--prompt".into(),
            "a fox".into(),
        ],
        vec!["status".into()],
        vec!["status".into(), "--json".into()],
    ];
    for mut args in runs {
        let generate = args[0] == "generate";
        args.extend(["--config".into(), cfg.display().to_string()]);
        if generate {
            args.extend(["--out".into(), out_png.display().to_string()]);
        }
        let key = k.clone();
        let shown = args.join(" ");
        let out = tokio::task::spawn_blocking(move || {
            assert_cmd::Command::cargo_bin("image-router")
                .unwrap()
                .env_remove("IMAGE_ROUTER_CONFIG")
                .env("IR_HOSTILE_KEY", key)
                .args(&args)
                .timeout(std::time::Duration::from_secs(60))
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if generate {
            assert_eq!(out.status.code(), Some(1), "{shown}: {text}");
            assert!(text.contains("evil"), "{shown}: {text}");
            // The provider's message does reach the output, scrubbed.
            assert!(text.contains("upstream said"), "{shown}: {text}");
        }
        assert!(!text.contains(&k), "{shown} leaks the key: {text}");
    }
}
