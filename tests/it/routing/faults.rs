//! Black-box tests of faults and rate-limit windows on real time: hangs past the per-attempt
//! timeout, the overall deadline, connection refused, max attempts, RPM windows and
//! `retry-after`. Only generous upper bounds on time ("returned before deadline + slack").

use std::time::{Duration, Instant};

use base64::Engine;
use image_router::providers::OpenAi;
use image_router::ProviderOptions;
use image_router::Strategy;
use image_router::{
    AccessDenial, Error, ErrorKind, GenerateRequest, Outcome, Quality, RateLimitScope, Router,
    Size, SkipReason,
};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn key() -> String {
    format!("sk-{}", "y".repeat(30))
}

fn png(tag: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, tag]);
    v
}

fn ok(tag: u8) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "created": 1,
        "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(png(tag))}],
        "usage": {"input_tokens": 10, "output_tokens": 272, "total_tokens": 282,
                  "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}
    }))
}

fn openai_at(base: String, name: &str) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .api_key(key())
        .base_url(base)
        .build()
        .unwrap()
}

fn openai(server: &MockServer, name: &str) -> OpenAi {
    openai_at(format!("{}/v1", server.uri()), name)
}

fn gen() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

async fn count(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

/// An address where nothing listens (a port bound and released).
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}/v1")
}

#[tokio::test]
async fn hang_past_attempt_timeout_times_out_then_fails_over_without_a_retry() {
    let hang = MockServer::start().await;
    let good = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(1).set_delay(Duration::from_secs(30)))
        .mount(&hang)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&good)
        .await;
    let router = Router::builder()
        .provider(openai(&hang, "hang"))
        .provider(openai(&good, "good"))
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t = Instant::now();
    let res = router.generate(gen()).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(res.provider, "good");
    assert_eq!(&res.images[0].bytes[..], &png(2)[..]);
    let outcomes: Vec<(String, Outcome)> = res
        .attempts
        .iter()
        .map(|a| (a.provider.clone(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("hang".to_string(), Outcome::Timeout),
            ("good".to_string(), Outcome::Success)
        ]
    );
    // Sent, then no answer: the provider may have billed it, so it is not sent again.
    assert!(res.attempts[0].possibly_billed);
    assert!(!res.attempts[1].possibly_billed);
    let e = res.attempts[0].error.as_ref().unwrap();
    assert_eq!(e.kind, ErrorKind::Timeout { sent: true });
    let ex = e.explain();
    assert!(ex.cause.contains("did not answer in time"), "{}", ex.cause);
}

#[tokio::test]
async fn overall_deadline_is_honoured_and_lists_attempts() {
    let a = MockServer::start().await;
    let b = MockServer::start().await;
    for s in [&a, &b] {
        Mock::given(method("POST"))
            .respond_with(ok(1).set_delay(Duration::from_secs(30)))
            .mount(s)
            .await;
    }
    let router = Router::builder()
        .provider(openai(&a, "a"))
        .provider(openai(&b, "b"))
        .attempt_timeout(Duration::from_secs(20))
        .deadline(Duration::from_millis(800))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = router.generate(gen()).await.unwrap_err();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(4), "returned after {took:?}");
    assert!(
        took >= Duration::from_millis(700),
        "returned early: {took:?}"
    );
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(!err.attempts().is_empty());
    assert_eq!(err.attempts()[0].provider, "a");
    assert!(err.attempts().iter().all(|a| a.outcome == Outcome::Timeout));
    let ex = err.explain();
    assert!(ex.cause.contains("deadline"), "{}", ex.cause);
    assert!(err.to_string().contains("deadline"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_connect_and_fails_over() {
    let good = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&good)
        .await;
    let router = Router::builder()
        .provider(openai_at(closed_port_url(), "down"))
        .provider(openai(&good, "good"))
        .build()
        .unwrap();
    let t = Instant::now();
    let res = router.generate(gen()).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(res.provider, "good");
    assert_eq!(res.attempts[0].provider, "down");
    assert_eq!(res.attempts[0].outcome, Outcome::Connect);
    assert!(res.attempts[0].status.is_none());
    // At most one retry on the dead provider.
    assert!(res.attempts.len() <= 3, "{:?}", res.attempts);
    let ex = res.attempts[0].error.as_ref().unwrap().explain();
    assert!(ex.cause.contains("connect"), "{}", ex.cause);
}

#[tokio::test]
async fn everything_down_fails_with_every_attempt() {
    let router = Router::builder()
        .provider(openai_at(closed_port_url(), "a"))
        .provider(openai_at(closed_port_url(), "b"))
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }), "{err:?}");
    let names: Vec<&str> = err.attempts().iter().map(|a| a.provider.as_str()).collect();
    assert_eq!(names, ["a", "a", "b", "b"]);
    assert!(err.cause().unwrap().kind == ErrorKind::Connect);
}

#[tokio::test]
async fn max_attempts_caps_provider_calls() {
    let servers = [
        MockServer::start().await,
        MockServer::start().await,
        MockServer::start().await,
    ];
    for s in &servers {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
                "message": "Incorrect API key provided.", "type": "invalid_request_error",
                "param": null, "code": "invalid_api_key"}})))
            .mount(s)
            .await;
    }
    let router = Router::builder()
        .provider(openai(&servers[0], "a"))
        .provider(openai(&servers[1], "b"))
        .provider(openai(&servers[2], "c"))
        .max_attempts(2)
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    assert_eq!(err.attempts().len(), 2, "{err:?}");
    assert_eq!(count(&servers[2]).await, 0);
    assert!(err.is_authentication());
}

#[tokio::test]
async fn rpm_window_overflows_to_second_provider() {
    let limited = MockServer::start().await;
    let spare = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(1))
        .expect(1..=3)
        .mount(&limited)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&spare)
        .await;
    let router = Router::builder()
        .provider_with(openai(&limited, "limited"), ProviderOptions::new().rpm(3))
        .provider(openai(&spare, "spare"))
        .build()
        .unwrap();
    let mut served = Vec::new();
    for _ in 0..8 {
        let res = router.generate(gen()).await.unwrap();
        // No request is sent to the limited provider once it is out of room: it is skipped.
        assert_eq!(res.attempts.len(), 1, "{:?}", res.attempts);
        served.push(res.provider);
    }
    let on_limited = served.iter().filter(|p| *p == "limited").count();
    assert!((1..=3).contains(&on_limited), "{served:?}");
    assert_eq!(count(&limited).await, on_limited);
    assert_eq!(count(&spare).await, 8 - on_limited);
    // The limited provider is used first while it has room.
    assert_eq!(served[0], "limited");
    // Concurrent burst: the limit holds too.
    let burst = futures_burst(&router, 10).await;
    assert_eq!(burst, 10);
    assert!(count(&limited).await <= 3);
    limited.verify().await;
}

async fn futures_burst(router: &Router, n: usize) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let r = router.clone();
        set.spawn(async move { r.generate(gen()).await.is_ok() });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        if r.unwrap() {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn retry_after_keeps_provider_out_for_that_long() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {
                    "message": "Rate limit reached for gpt-image-1 in organization org-x on requests per min (RPM): Limit 5, Used 5, Requested 1. Please try again in 1s.",
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        )
        .up_to_n_times(1)
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(1))
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&secondary)
        .await;
    // Strict order: the test ends by checking the primary is first again after retry-after.
    let router = Router::builder()
        .provider(openai(&primary, "primary"))
        .provider(openai(&secondary, "secondary"))
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    assert_eq!(
        res.attempts[0].error.as_ref().unwrap().kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Requests
        }
    );
    // Within the retry-after, the primary is not called.
    for _ in 0..3 {
        let res = router.generate(gen()).await.unwrap();
        assert_eq!(res.provider, "secondary");
        assert_eq!(res.attempts.len(), 1, "{:?}", res.attempts);
    }
    assert_eq!(count(&primary).await, 1);
    // After it, the primary serves again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "primary", "{:?}", res.attempts);
}

#[tokio::test]
async fn lone_provider_429_waits_out_retry_after_within_deadline() {
    let only = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after-ms", "400")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached. Please try again in 400ms.",
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
                ),
        )
        .up_to_n_times(1)
        .mount(&only)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(1))
        .mount(&only)
        .await;
    let router = Router::builder()
        .provider(openai(&only, "only"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "only");
    assert_eq!(res.attempts.len(), 2);
    assert_eq!(res.attempts[0].outcome, Outcome::RateLimited);
}

#[tokio::test]
async fn lone_provider_429_past_deadline_fails_fast() {
    let only = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "60")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached. Please try again in 60s.",
                    "type": "tokens", "param": null, "code": "rate_limit_exceeded"}}),
                ),
        )
        .mount(&only)
        .await;
    let router = Router::builder()
        .provider(openai(&only, "only"))
        .deadline(Duration::from_secs(2))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = router.generate(gen()).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(count(&only).await, 1);
    assert!(err.is_rate_limited(), "{err:?}");
    let cause = err.cause().unwrap();
    assert_eq!(cause.retry_after, Some(Duration::from_secs(60)));
    assert_eq!(
        cause.kind,
        ErrorKind::RateLimited {
            scope: RateLimitScope::Tokens
        }
    );
}

#[tokio::test]
async fn retry_after_http_date_is_understood() {
    let only = MockServer::start().await;
    let at = std::time::SystemTime::now() + Duration::from_secs(30);
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", httpdate::fmt_http_date(at).as_str())
                .set_body_json(json!({"error": {"message": "Too many requests",
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
        )
        .mount(&only)
        .await;
    let router = Router::builder()
        .provider(openai(&only, "only"))
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    let ra = err.cause().unwrap().retry_after.unwrap();
    assert!(
        ra > Duration::from_secs(25) && ra <= Duration::from_secs(31),
        "{ra:?}"
    );
}

#[tokio::test]
async fn success_headers_with_zero_remaining_keep_provider_out() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ok(1)
                .insert_header("x-ratelimit-limit-requests", "5")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "1s")
                .insert_header("x-ratelimit-limit-tokens", "250000")
                .insert_header("x-ratelimit-remaining-tokens", "249000")
                .insert_header("x-ratelimit-reset-tokens", "1m30.5s"),
        )
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&secondary)
        .await;
    // Strict order: the test ends by checking the primary is first again after the reset.
    let router = Router::builder()
        .provider(openai(&primary, "primary"))
        .provider(openai(&secondary, "secondary"))
        .strategy(Strategy::Ordered)
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "primary");
    assert_eq!(res.rate_limits.remaining_requests, Some(0));
    assert_eq!(res.rate_limits.reset_requests, Some(Duration::from_secs(1)));
    assert_eq!(
        res.rate_limits.reset_tokens,
        Some(Duration::from_millis(90_500))
    );
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "secondary");
    assert_eq!(res.attempts.len(), 1, "{:?}", res.attempts);
    assert_eq!(count(&primary).await, 1);
    // After the reset, the primary serves again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "primary", "{:?}", res.attempts);
}

#[tokio::test]
async fn tier_denial_then_cooldown_skips_without_a_call() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "message": "You've exceeded the rate limit, please slow down and try again after 0.0 seconds.",
            "type": "requests", "param": null, "code": "rate_limit_exceeded"}})))
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&secondary)
        .await;
    let router = Router::builder()
        .provider(openai(&primary, "primary"))
        .provider(openai(&secondary, "secondary"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(
        res.attempts[0].error.as_ref().unwrap().kind,
        ErrorKind::AccessDenied {
            reason: AccessDenial::TierAccess
        }
    );
    for _ in 0..3 {
        let res = router.generate(gen()).await.unwrap();
        assert_eq!(res.provider, "secondary");
        assert_eq!(res.attempts.len(), 1);
        let skip = res
            .skipped
            .iter()
            .find(|s| s.provider == "primary")
            .unwrap();
        let ex = skip.explain();
        assert!(ex.cause.contains("primary"), "{}", ex.cause);
    }
    assert_eq!(count(&primary).await, 1);
}

#[tokio::test]
async fn free_tier_is_never_called() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(1))
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&secondary)
        .await;
    let router = Router::builder()
        .provider_with(
            openai(&primary, "free"),
            ProviderOptions::new().tier("free"),
        )
        .provider(openai(&secondary, "paid"))
        .build()
        .unwrap();
    let res = router.generate(gen()).await.unwrap();
    assert_eq!(res.provider, "paid");
    assert_eq!(count(&primary).await, 0);
    // Alone, the free provider gives an error that says why and what the next tier needs.
    let router = Router::builder()
        .provider_with(
            openai(&primary, "free"),
            ProviderOptions::new().tier("free"),
        )
        .build()
        .unwrap();
    let err = router.generate(gen()).await.unwrap_err();
    assert_eq!(count(&primary).await, 0);
    assert!(err.is_no_provider(), "{err:?}");
    let skip = err.skipped().iter().find(|s| s.provider == "free").unwrap();
    assert!(matches!(skip.reason, SkipReason::Tier { .. }), "{skip:?}");
    let ex = err.explain();
    assert!(ex.action.contains("tier-1"), "{}", ex.action);
    assert!(err.to_string().contains("free"), "{err}");
}

#[tokio::test]
async fn retry_after_zero_does_not_hammer_a_lone_provider() {
    let only = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "0")
                .set_body_json(
                    json!({"error": {"message": "Rate limit reached for requests.",
                    "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
                ),
        )
        .mount(&only)
        .await;
    let router = Router::builder()
        .provider(openai(&only, "only"))
        .deadline(Duration::from_millis(2500))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = router.generate(gen()).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(err.is_rate_limited(), "{err:?}");
    // `retry-after: 0` is no reason to retry in a tight loop: the router's own wait applies.
    let n = count(&only).await;
    assert!((1..=4).contains(&n), "{n} requests in {:?}", t.elapsed());
    assert_eq!(err.attempts().len(), n);
}

/// A raw HTTP server on 127.0.0.1 that answers every connection with `reply` (then closes).
async fn raw_server(reply: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                // Read the request head (and whatever body arrives quickly), then answer.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_millis(200), sock.read(&mut buf)).await;
                let _ = sock.write_all(reply).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn reset_and_truncated_answers_are_errors_that_fail_over() {
    let good = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok(2))
        .mount(&good)
        .await;
    let cases: [(&str, &'static [u8]); 3] = [
        ("closed without answer", b""),
        (
            "truncated body",
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"created\":1,\"data\":[{\"b64_json\":\"iVBOR",
        ),
        ("garbage", b"this is not http\r\n\r\n"),
    ];
    for (name, reply) in cases {
        let base = raw_server(reply).await;
        let router = Router::builder()
            .provider(openai_at(base, "flaky"))
            .provider(openai(&good, "good"))
            .build()
            .unwrap();
        let res = router
            .generate(gen())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(res.provider, "good", "{name}");
        let first = &res.attempts[0];
        assert_eq!(first.provider, "flaky", "{name}");
        assert!(
            matches!(first.outcome, Outcome::Connect | Outcome::Decode),
            "{name}: {first:?}"
        );
        assert!(res.attempts.len() <= 3, "{name}: {:?}", res.attempts);
    }
}

fn rate_limited(retry_after: &str) -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("retry-after", retry_after)
        .set_body_json(json!({"error": {
            "message": "Rate limit reached for gpt-image-1 in organization org-x on requests per min (RPM): Limit 5, Used 5, Requested 1.",
            "type": "requests", "param": null, "code": "rate_limit_exceeded"}}))
}

#[tokio::test]
async fn all_rate_limited_waits_for_the_first_free_provider_within_the_deadline() {
    let primary = MockServer::start().await;
    let secondary = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(rate_limited("1"))
        .up_to_n_times(1)
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(ok(1))
        .mount(&primary)
        .await;
    Mock::given(method("POST"))
        .respond_with(rate_limited("30"))
        .mount(&secondary)
        .await;
    let router = Router::builder()
        .provider(openai(&primary, "primary"))
        .provider(openai(&secondary, "secondary"))
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap();
    let t = Instant::now();
    let res = router.generate(gen()).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let trace: Vec<(&str, Outcome)> = res
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome))
        .collect();
    assert_eq!(
        trace,
        [
            ("primary", Outcome::RateLimited),
            ("secondary", Outcome::RateLimited),
            ("primary", Outcome::Success)
        ]
    );
    assert_eq!(count(&secondary).await, 1);
}

#[tokio::test]
async fn all_rate_limited_past_the_deadline_fails_fast_with_both_attempts() {
    let a = MockServer::start().await;
    let b = MockServer::start().await;
    for s in [&a, &b] {
        Mock::given(method("POST"))
            .respond_with(rate_limited("60"))
            .mount(s)
            .await;
    }
    let router = Router::builder()
        .provider(openai(&a, "a"))
        .provider(openai(&b, "b"))
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = router.generate(gen()).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(err.attempts().len(), 2, "{err:?}");
    assert!(err.is_rate_limited());
    let ex = err.explain();
    assert!(ex.cause.contains("rate limited"), "{}", ex.cause);
    assert!(ex.cause.contains("60"), "{}", ex.cause);
}
