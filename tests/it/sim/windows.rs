//! Rate-limit windows: RPM and TPM on the simulator's clock, changed at run time.

use super::*;

#[tokio::test]
async fn rpm_window_admits_exactly_rpm_and_slides() {
    let (sim, clock) = limited(Some(5), None).await;
    let url = gen_url(&sim, "o");
    // Requests at t = 0, 10, 20, 30, 40 s.
    for i in 0..5u64 {
        let a = post(&url, None, low()).await;
        assert_eq!(a.status, 200, "request {i}");
        assert_eq!(a.h("x-ratelimit-limit-requests"), Some("5"));
        assert_eq!(
            a.h("x-ratelimit-remaining-requests"),
            Some(&*(4 - i).to_string())
        );
        // The oldest request (t = 0) leaves at t = 60.
        let reset = parse_go_duration(a.h("x-ratelimit-reset-requests").unwrap()).unwrap();
        assert_eq!(reset, Duration::from_secs(60 - 10 * i));
        assert!(a.h("x-ratelimit-limit-tokens").is_none());
        clock.advance(Duration::from_secs(10));
    }
    // t = 50: full; room again at t = 60.
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("10"));
    assert_eq!(a.h("retry-after-ms"), Some("10000"));
    assert_eq!(a.h("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(
        error_of(&a),
        &json!({
            "message": "Rate limit reached for gpt-image-1 in organization org-sim on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 10s. Visit https://platform.openai.com/account/rate-limits to learn more.",
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded"
        })
    );
    // 9.5 s later: still 500 ms to go; the refused request did not count.
    clock.advance(Duration::from_millis(9_500));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("1"));
    assert_eq!(a.h("retry-after-ms"), Some("500"));
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("Please try again in 500ms."));
    clock.advance(Duration::from_millis(500));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-remaining-requests"), Some("0"));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    let s = sim.stats("o");
    assert_eq!((s.requests, s.succeeded, s.rate_limited), (9, 6, 3));
}

#[tokio::test]
async fn rpm_window_never_exceeded_over_ten_simulated_minutes() {
    let (sim, clock) = limited(Some(6), None).await;
    let url = gen_url(&sim, "o");
    let mut admitted: Vec<Duration> = Vec::new();
    // One attempt every 3.7 s for 10 minutes.
    for _ in 0..162 {
        let a = post(&url, None, low()).await;
        if a.status == 200 {
            admitted.push(clock.now());
        } else {
            assert_eq!(a.status, 429);
        }
        clock.advance(Duration::from_millis(3_700));
    }
    for (i, &t) in admitted.iter().enumerate() {
        let in_window = admitted[..=i]
            .iter()
            .filter(|&&s| s + Duration::from_secs(60) > t)
            .count();
        assert!(in_window <= 6);
    }
    // Capacity is used: at most 6 per minute, 10 minutes -> close to 60.
    assert!(admitted.len() >= 55, "{}", admitted.len());
    assert_eq!(sim.stats("o").succeeded as usize, admitted.len());
}

#[tokio::test]
async fn tpm_window_counts_tokens() {
    // Each high 1024x1024 request is 4160 + 1 tokens.
    let (sim, clock) = limited(None, Some(10_000)).await;
    let url = gen_url(&sim, "o");
    let high = json!({"prompt": "abcd", "quality": "high"});
    let a = post(&url, None, high.clone()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("10000"));
    assert_eq!(a.h("x-ratelimit-remaining-tokens"), Some("5839"));
    assert_eq!(a.h("x-ratelimit-reset-tokens"), Some("1m0s"));
    assert!(a.h("x-ratelimit-limit-requests").is_none());
    clock.advance(Duration::from_secs(20));
    assert_eq!(post(&url, None, high.clone()).await.status, 200);
    clock.advance(Duration::from_secs(1));
    let a = post(&url, None, high.clone()).await;
    assert_eq!(a.status, 429);
    assert_eq!(error_of(&a)["type"], "tokens");
    assert_eq!(error_of(&a)["code"], "rate_limit_exceeded");
    assert!(error_of(&a)["message"].as_str().unwrap().contains(
        "on tokens per min (TPM): Limit 10000, Used 8322, Requested 4161. Please try again in 39s."
    ));
    assert_eq!(a.h("retry-after"), Some("39"));
    // A small request still fits.
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.h("x-ratelimit-remaining-tokens"),
        Some(&*(10_000 - 8322 - 273).to_string())
    );
    // Larger than the limit: never fits, no retry headers.
    let a = post(
        &url,
        None,
        json!({"prompt": "x", "quality": "high", "n": 3}),
    )
    .await;
    assert_eq!(a.status, 429);
    assert!(a.h("retry-after").is_none());
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .starts_with("Request too large for gpt-image-1 in organization org-sim on tokens per min (TPM): Limit 10000, Requested 12481."));
    assert_eq!(sim.stats("o").tokens, 2 * 4161 + 273);
}

#[tokio::test]
async fn limits_change_at_runtime_and_tiers() {
    let (sim, clock) = limited(None, None).await;
    let url = gen_url(&sim, "o");
    assert!(post(&url, None, low())
        .await
        .h("x-ratelimit-limit-requests")
        .is_none());
    assert!(sim.set_limits("o", Some(1), Some(1_000_000)));
    // The request admitted before the change is still in the window.
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.h("retry-after"), Some("60"));
    assert_eq!(sim.window("o").unwrap().requests, 1);
    clock.advance(Duration::from_secs(60));
    let a = post(&url, None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("1000000"));
    assert_eq!(post(&url, None, low()).await.status, 429);
    assert!(!sim.set_limits("nobody", None, None));

    // Tier presets come from the catalog.
    let sim = Simulator::builder()
        .account("t2", SimAccount::new().tier("guide-tier-2"))
        .account("u2", SimAccount::new().tier("tier-2"))
        .account("free", SimAccount::new().tier("free"))
        .start()
        .await
        .unwrap();
    let a = post(&gen_url(&sim, "t2"), None, low()).await;
    assert_eq!(a.h("x-ratelimit-limit-requests"), Some("15"));
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("500000"));
    // A usage tier: the model's published figures (gpt-image-1 at tier 2: 250k TPM, 20 IPM,
    // no RPM), so its headers say tokens and nothing about requests.
    let a = post(&gen_url(&sim, "u2"), None, low()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("x-ratelimit-limit-tokens"), Some("250000"));
    assert_eq!(a.h("x-ratelimit-limit-requests"), None);
    let a = post(&gen_url(&sim, "free"), None, low()).await;
    assert_eq!(a.status, 429);
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .ends_with("try again after 0.0 seconds."));
    let err = Simulator::builder()
        .account("x", SimAccount::new().tier("tier-9"))
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("tier-9"));
}
