//! Scripted faults: real error bodies, counts, transport faults and latency.

use super::*;

#[tokio::test]
async fn scripted_error_faults_have_real_bodies() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    let body = json!({"model": "gpt-image-1", "prompt": "x", "quality": "low"});
    struct Case {
        fault: Fault,
        status: u16,
        code: Value,
        kind: Value,
        message_has: &'static str,
        retry_after: Option<&'static str>,
    }
    let cases = vec![
        Case {
            fault: Fault::RateLimited { retry_after: Some(Duration::from_millis(2_500)), scope: RateLimitScope::Requests },
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: json!("requests"),
            message_has: "Please try again in 2.5s.",
            retry_after: Some("3"),
        },
        Case {
            fault: Fault::RateLimited { retry_after: None, scope: RateLimitScope::Tokens },
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: json!("tokens"),
            message_has: "on tokens per min (TPM)",
            retry_after: None,
        },
        Case {
            fault: Fault::RateLimited { retry_after: Some(Duration::from_millis(51_840)), scope: RateLimitScope::Unknown },
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: Value::Null,
            message_has: "You've exceeded the rate limit, please slow down and try again after 51.84 seconds.",
            retry_after: Some("52"),
        },
        Case {
            fault: Fault::TierDenied,
            status: 429,
            code: json!("rate_limit_exceeded"),
            kind: json!("requests"),
            message_has: "try again after 0.0 seconds.",
            retry_after: None,
        },
        Case {
            fault: Fault::InsufficientQuota,
            status: 429,
            code: json!("insufficient_quota"),
            kind: json!("insufficient_quota"),
            message_has: "You exceeded your current quota, please check your plan and billing details.",
            retry_after: None,
        },
        Case {
            fault: Fault::BillingHardLimit,
            status: 400,
            code: json!("billing_hard_limit_reached"),
            kind: json!("invalid_request_error"),
            message_has: "Billing hard limit has been reached",
            retry_after: None,
        },
        Case {
            fault: Fault::OrgNotVerified,
            status: 403,
            code: Value::Null,
            kind: json!("invalid_request_error"),
            message_has: "Your organization must be verified to use the model `gpt-image-1`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.",
            retry_after: None,
        },
        Case {
            fault: Fault::RegionNotSupported,
            status: 403,
            code: json!("unsupported_country_region_territory"),
            kind: json!("request_forbidden"),
            message_has: "Country, region, or territory not supported",
            retry_after: None,
        },
        Case {
            fault: Fault::InvalidApiKey,
            status: 401,
            code: Value::Null,
            kind: json!("invalid_request_error"),
            message_has: "You didn't provide an API key",
            retry_after: None,
        },
        Case {
            fault: Fault::ModelNotFound,
            status: 404,
            code: json!("model_not_found"),
            kind: json!("invalid_request_error"),
            message_has: "The model `gpt-image-1` does not exist",
            retry_after: None,
        },
        Case {
            fault: Fault::Status(503),
            status: 503,
            code: Value::Null,
            kind: json!("server_error"),
            message_has: "overloaded",
            retry_after: None,
        },
        Case {
            fault: Fault::Status(500),
            status: 500,
            code: Value::Null,
            kind: json!("server_error"),
            message_has: "The server had an error",
            retry_after: None,
        },
        Case {
            fault: Fault::ContentPolicy,
            status: 400,
            code: json!("moderation_blocked"),
            kind: json!("image_generation_user_error"),
            message_has: "Your request was rejected by the safety system.",
            retry_after: None,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        assert!(sim.fail("openai", c.fault.clone(), Times::Once));
        let a = post(&url, None, body.clone()).await;
        let e = error_of(&a);
        assert_eq!(a.status, c.status, "{:?}: {}", c.fault, a.body);
        assert_eq!(e["code"], c.code, "{:?}", c.fault);
        assert_eq!(e["type"], c.kind, "{:?}", c.fault);
        assert!(e.get("param").is_some(), "OpenAI bodies always carry param");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains(c.message_has), "{:?}: {msg}", c.fault);
        assert_eq!(a.h("retry-after"), c.retry_after, "{:?}", c.fault);
        assert!(a.h("x-request-id").is_some());
        assert_eq!(sim.stats("openai").faults_served, i as u64 + 1);
    }
    // Queue is empty again: normal answer.
    assert_eq!(post(&url, None, body).await.status, 200);
    let s = sim.stats("openai");
    assert_eq!((s.succeeded, s.rate_limited), (1, 0));
}

#[tokio::test]
async fn fault_counts_and_clear() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    sim.fail("openai", Fault::Status(502), Times::N(2));
    sim.fail("openai", Fault::Status(504), Times::Once);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(post(&url, None, low()).await.status);
    }
    assert_eq!(got, [502, 502, 504, 200]);
    sim.fail("openai", Fault::Status(500), Times::Always);
    for _ in 0..3 {
        assert_eq!(post(&url, None, low()).await.status, 500);
    }
    assert!(sim.clear_faults("openai"));
    assert_eq!(post(&url, None, low()).await.status, 200);
    // Faults are per account.
    sim.fail("openai", Fault::Status(500), Times::Always);
    let az = format!(
        "{}/openai/deployments/gpt-image-1/images/generations?api-version=2025-04-01-preview",
        sim.azure_endpoint("azure")
    );
    assert_eq!(post(&az, None, low()).await.status, 200);
    assert!(!sim.fail("nobody", Fault::Reset, Times::Once));
}

#[tokio::test]
async fn transport_faults() {
    let sim = Simulator::builder()
        .account("o", SimAccount::new())
        .hang_limit(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let url = gen_url(&sim, "o");

    sim.fail("o", Fault::Reset, Times::Once);
    let err = client().post(&url).json(&low()).send().await.unwrap_err();
    assert!(!err.is_timeout() && !err.is_status(), "{err:?}");

    sim.fail("o", Fault::Hang, Times::Once);
    let err = client()
        .post(&url)
        .json(&low())
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // The hanging request ends on the server once the client is gone.
    let mut waited = 0;
    while sim.stats("o").in_flight > 0 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(sim.stats("o").in_flight, 0, "hang outlived its client");

    sim.fail("o", Fault::TruncatedJson, Times::Once);
    let resp = client().post(&url).json(&low()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("{\"created\":"));
    assert!(serde_json::from_str::<Value>(&text).is_err());

    sim.fail("o", Fault::EmptyData, Times::Once);
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["data"], json!([]));
    assert!(a.body["created"].is_i64());

    sim.fail("o", Fault::Slow(Duration::from_millis(200)), Times::Once);
    let started = std::time::Instant::now();
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The server survives all of it.
    assert_eq!(post(&url, None, low()).await.status, 200);
    assert_eq!(sim.stats("o").faults_served, 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_answers() {
    let sim = Simulator::builder()
        .account("o", SimAccount::new().latency(Duration::from_millis(150)))
        .start()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(post(&gen_url(&sim, "o"), None, low()).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}
