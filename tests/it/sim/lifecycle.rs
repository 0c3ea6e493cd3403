//! The simulator itself: received log, stats, shutdown, Go durations, Send/Sync, Debug without
//! keys and retry-after waits that always suffice.

use super::*;

#[tokio::test]
async fn received_log_and_stats() {
    let clock = ManualClock::new();
    let sim = Simulator::builder()
        .account("o", SimAccount::new())
        .clock(Arc::new(clock.clone()))
        .start()
        .await
        .unwrap();
    clock.advance(Duration::from_secs(7));
    let resp = client()
        .post(format!("{}?x=1", gen_url(&sim, "o")))
        .header("OpenAI-Organization", "org-abc")
        .json(&low())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = sim.received("o");
    assert_eq!(rec.len(), 1);
    let r = &rec[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/o/v1/images/generations");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(r.header("openai-organization"), Some("org-abc"));
    assert_eq!(r.json().unwrap(), low());
    assert_eq!(r.at, Duration::from_secs(7));
    assert_eq!(sim.stats("nobody"), Default::default());
    assert!(sim.received("nobody").is_empty());
    assert!(sim.reset_stats("o"));
    assert_eq!(sim.stats("o").requests, 0);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = plain().await;
    let url = gen_url(&sim, "openai");
    assert_eq!(post(&url, None, low()).await.status, 200);
    sim.fail("openai", Fault::Hang, Times::Once);
    let hanging = tokio::spawn({
        let url = url.clone();
        async move { client().post(&url).json(&low()).send().await }
    });
    // Let the hanging request reach the server.
    while sim.stats("openai").faults_served == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.shutdown().await;
    // The hanging request ends (with an error) instead of waiting for its timeout.
    assert!(hanging.await.unwrap().is_err());
    assert!(client().post(&url).json(&low()).send().await.is_err());
}

#[test]
fn go_durations_in_headers_round_trip() {
    for d in [
        Duration::from_secs(60),
        Duration::from_millis(500),
        Duration::from_millis(39_500),
    ] {
        assert_eq!(parse_go_duration(&format_go_duration(d)), Some(d));
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Simulator>();
    check::<SimAccount>();
    check::<Fault>();
    check::<image_router::sim::SimStats>();
    check::<image_router::sim::ReceivedRequest>();
    check::<image_router::sim::RateWindow>();
}

#[test]
fn account_debug_hides_the_key() {
    let acct = SimAccount::new().api_key(format!("sk-{}", "very-secret-key-123456"));
    assert!(!format!("{acct:?}").contains("very-secret"));
}

/// A client that waits exactly `retry-after-ms` after each 429 always gets in next time, and
/// over ten simulated minutes uses the whole allowance of the binding limit.
#[tokio::test]
async fn waiting_retry_after_ms_always_suffices() {
    // medium 1024x1024 = 1056 + 1 tokens: TPM 20_000 binds (18 per minute) before RPM 25.
    let (sim, clock) = limited(Some(25), Some(20_000)).await;
    let url = gen_url(&sim, "o");
    let body = json!({"prompt": "abcd", "quality": "medium"});
    let start = clock.now();
    let mut ok = 0u32;
    let mut after_wait = false;
    while clock.now() < start + Duration::from_secs(600) {
        let a = post(&url, None, body.clone()).await;
        match a.status {
            200 => {
                ok += 1;
                after_wait = false;
            }
            429 => {
                assert!(!after_wait, "refused again after waiting retry-after-ms");
                assert_eq!(error_of(&a)["type"], "tokens");
                let ms: u64 = a.h("retry-after-ms").unwrap().parse().unwrap();
                assert!(ms > 0);
                clock.advance(Duration::from_millis(ms));
                after_wait = true;
            }
            s => panic!("unexpected {s}"),
        }
    }
    // 18 per 60 s window: ten windows plus the first burst.
    assert!((180..=18 * 11).contains(&ok), "{ok}");
    assert_eq!(sim.stats("o").tokens, u64::from(ok) * 1057);
}
