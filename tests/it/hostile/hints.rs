//! Retry hints are capped, so a hostile `retry-after` cannot park a provider for ever.

use super::*;

#[tokio::test]
async fn absurd_retry_hints_are_capped() {
    let ten_minutes = Duration::from_secs(600);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("retry-after-ms", "999999999999")], "slow down"),
        (
            vec![("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
            "slow down",
        ),
        (vec![], "Please try again after 999999999 hours."),
        (
            vec![
                ("retry-after", "60"),
                ("x-ratelimit-reset-requests", "2777777h"),
            ],
            "slow down",
        ),
    ];
    for (headers, message) in cases {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let msg = message.to_string();
        let evil = Hostile::start(move |_, _| {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            json_reply(
                429,
                &h,
                json!({"error": {"message": msg, "code": "rate_limit_exceeded"}}),
            )
        })
        .await;
        let err = openai(&evil).generate(&gen(), &ctx()).await.unwrap_err();
        assert!(err.is_rate_limited(), "{err}");
        let hint = err.retry_after.expect("a hint");
        assert!(hint <= ten_minutes, "{message}: {hint:?}");
        if let Some(rl) = &err.rate_limits {
            for d in [rl.reset_requests, rl.reset_tokens, rl.retry_after]
                .into_iter()
                .flatten()
            {
                assert!(d <= ten_minutes, "{d:?}");
            }
        }
    }
}

#[tokio::test]
async fn the_hint_cap_is_configurable_and_named_in_the_message() {
    let evil = Hostile::start(|_, _| {
        json_reply(
            429,
            &[("retry-after", "86400")],
            json!({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}),
        )
    })
    .await;
    let p = OpenAi::builder()
        .base_url(evil.base())
        .api_key(key())
        .client(reqwest::Client::new())
        .max_retry_hint(Duration::from_secs(30))
        .build()
        .unwrap();
    let logs = Captured::default();
    let guard = tracing::subscriber::set_default(subscriber(logs.clone()));
    let err = p.generate(&gen(), &ctx()).await.unwrap_err();
    drop(guard);
    assert_eq!(err.retry_after, Some(Duration::from_secs(30)));
    assert!(err.message.contains("capped"), "{err}");
    let text = logs.text();
    assert!(
        text.contains("retry hint capped") && text.contains("hint_secs=86400"),
        "{text}"
    );
}
