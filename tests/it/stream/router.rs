//! `Router::generate_stream` / `edit_stream` on the simulator: the events, each failover
//! rule, stalls, cuts, broken events, cancellation and 200 concurrent streams.

use std::time::Duration;

use image_router::budget::{Budget, BudgetPeriod};
use image_router::sim::{Fault, Times};
use image_router::{ErrorKind, ProviderOptions, Router, StreamEvent, StreamOptions};

use super::*;

fn two(sim: &Simulator) -> Router {
    Router::builder()
        .provider(openai(sim, "a", KEY_A))
        .provider(openai(sim, "b", KEY_B))
        .strategy(image_router::Strategy::Ordered)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_stream_serves_partials_then_the_final_image_with_usage_and_cost() {
    let sim = sim().await;
    let router = two(&sim);
    let (events, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(3))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        names(&events),
        ["serving", "partial", "partial", "partial", "completed"]
    );
    match &events[0] {
        StreamEvent::Serving {
            provider,
            model,
            streaming,
        } => {
            assert_eq!(
                (provider.as_str(), model.as_str(), *streaming),
                ("a", "gpt-image-1", true)
            );
        }
        other => panic!("{other:?}"),
    }
    for (i, e) in events[1..4].iter().enumerate() {
        let StreamEvent::Partial { provider, partial } = e else {
            panic!("{e:?}")
        };
        assert_eq!(provider, "a");
        assert_eq!(partial.index, i as u32);
        assert!(partial.image.bytes.starts_with(b"\x89PNG"));
        assert_eq!(partial.echoed.size.as_deref(), Some("1024x1024"));
        assert_eq!(partial.echoed.quality.as_deref(), Some("low"));
    }
    let StreamEvent::Completed(res) = &events[4] else {
        panic!()
    };
    assert_eq!(res.provider, "a");
    assert_eq!(res.images.len(), 1);
    assert_eq!(res.usage.as_ref().unwrap().output_tokens, 272);
    assert!(res.cost_usd.unwrap() > 0.0);
    assert_eq!(res.attempts.len(), 1);
    // What went over the wire: stream and partial_images in the JSON body.
    let sent = sim.received("a");
    let body = sent[0].json().unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["partial_images"], 3);
}

#[tokio::test]
async fn zero_partials_is_one_completed_event() {
    let sim = sim().await;
    let router = two(&sim);
    let (events, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(0))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events), ["serving", "completed"]);
}

#[tokio::test]
async fn partial_images_out_of_range_is_a_typed_error_naming_the_field() {
    let sim = sim().await;
    let router = two(&sim);
    let (events, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(4))).await;
    assert!(events.is_empty());
    match err.unwrap() {
        Error::Invalid(v) => assert_eq!(v.field, "partial_images"),
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats("a").requests, 0, "nothing sent");
    // One image per stream: n > 1 is refused, naming `n`.
    let (_, err) = collect(router.generate_stream(req().n(2), StreamOptions::new())).await;
    assert!(matches!(err.unwrap(), Error::Invalid(v) if v.field == "n"));
    assert_eq!(sim.stats("a").requests, 0, "nothing sent");
    // The plain path refuses a streamed request instead of misreading its events.
    let e = router.generate(req().stream(true)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(v) if v.field == "stream"),
        "{e:?}"
    );
}

#[tokio::test]
async fn before_the_first_event_a_stream_fails_over_like_any_request() {
    let sim = sim().await;
    sim.fail("a", Fault::Status(503), Times::Always);
    let router = two(&sim);
    let (events, err) = collect(router.generate_stream(req(), StreamOptions::new())).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        names(&events),
        ["serving", "partial", "partial", "completed"]
    );
    let StreamEvent::Serving { provider, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(provider, "b", "the 503s were never announced");
    let StreamEvent::Completed(res) = events.last().unwrap() else {
        panic!()
    };
    assert_eq!(res.provider, "b");
    assert!(res.attempts.len() >= 2);
    assert_eq!(res.attempts[0].provider, "a");
}

#[tokio::test]
async fn after_a_partial_a_cut_ends_the_stream_with_what_was_delivered() {
    let sim = sim().await;
    sim.fail("a", Fault::StreamCut, Times::Once);
    let router = two(&sim);
    let (events, err) = collect(router.generate_stream(req(), StreamOptions::new())).await;
    assert_eq!(names(&events), ["serving", "partial"]);
    match err.unwrap() {
        Error::StreamInterrupted {
            error,
            partials_delivered,
            attempts,
            ..
        } => {
            assert_eq!(partials_delivered, 1);
            assert_eq!(error.kind, ErrorKind::Decode);
            assert_eq!(attempts.len(), 1);
            assert!(attempts[0].possibly_billed);
            let shown = format!(
                "{}",
                Error::StreamInterrupted {
                    error: error.clone(),
                    partials_delivered,
                    attempts: attempts.clone(),
                    skipped: vec![]
                }
            );
            assert!(shown.contains("after 1 partial image"), "{shown}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats("b").requests, 0, "no silent restart elsewhere");
}

#[tokio::test]
async fn with_restart_elsewhere_a_restarted_event_says_discard_then_the_next_provider_serves() {
    let sim = sim().await;
    sim.fail("a", Fault::StreamCut, Times::Once);
    let router = two(&sim);
    let options = StreamOptions::new().restart_elsewhere(true);
    let (events, err) = collect(router.generate_stream(req(), options)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        names(&events),
        [
            "serving",
            "partial",
            "restarted",
            "serving",
            "partial",
            "partial",
            "completed"
        ]
    );
    let StreamEvent::Restarted {
        provider,
        discarded,
        error,
    } = &events[2]
    else {
        panic!()
    };
    assert_eq!((provider.as_str(), *discarded), ("a", 1));
    assert_eq!(error.kind, ErrorKind::Decode);
    let StreamEvent::Completed(res) = events.last().unwrap() else {
        panic!()
    };
    assert_eq!(res.provider, "b");
    assert!(res.attempts[0].possibly_billed);
}

#[tokio::test]
async fn bad_json_and_bad_base64_in_an_event_are_errors_never_success() {
    for fault in [Fault::StreamBadEvent, Fault::StreamBadBase64] {
        let sim = sim().await;
        sim.fail("a", fault.clone(), Times::Once);
        let router = two(&sim);
        let (events, err) = collect(router.generate_stream(req(), StreamOptions::new())).await;
        assert!(!names(&events).contains(&"completed"), "{fault:?}");
        match err.unwrap() {
            Error::StreamInterrupted { error, .. } => {
                assert_eq!(error.kind, ErrorKind::Decode, "{fault:?}");
                let want = if fault == Fault::StreamBadEvent {
                    "JSON"
                } else {
                    "base64"
                };
                assert!(error.message.contains(want), "{fault:?}: {}", error.message);
            }
            other => panic!("{fault:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stall_is_a_timeout_and_the_budget_is_held() {
    let sim = sim().await;
    sim.fail("a", Fault::StreamStall, Times::Once);
    let router = Router::builder()
        .provider_with(
            openai(&sim, "a", KEY_A),
            ProviderOptions::new().budget(Budget::new(10.0, BudgetPeriod::Day).unwrap()),
        )
        .build()
        .unwrap();
    let options = StreamOptions::new().stall_timeout(Duration::from_millis(300));
    let (events, err) = collect(router.generate_stream(req(), options)).await;
    assert_eq!(names(&events), ["serving", "partial"]);
    let Error::StreamInterrupted {
        error, attempts, ..
    } = err.unwrap()
    else {
        panic!()
    };
    assert_eq!(error.kind, ErrorKind::Timeout { sent: true });
    assert!(error.message.contains("stalled"), "{}", error.message);
    assert!(attempts[0].possibly_billed);
    let spend = &router.spend()[1];
    assert!(spend.budgets[0].held_usd > 0.0, "held: {spend:?}");
    assert_eq!(spend.lifetime_spent_usd, 0.0);
}

#[tokio::test]
async fn the_completed_usage_reconciles_the_budget() {
    let sim = sim().await;
    let router = Router::builder()
        .provider_with(
            openai(&sim, "a", KEY_A),
            ProviderOptions::new().budget(Budget::new(10.0, BudgetPeriod::Day).unwrap()),
        )
        .build()
        .unwrap();
    let (events, _) = collect(router.generate_stream(req(), StreamOptions::new())).await;
    let StreamEvent::Completed(res) = events.last().unwrap() else {
        panic!()
    };
    let spend = &router.spend()[1];
    assert!((spend.lifetime_spent_usd - res.cost_usd.unwrap()).abs() < 1e-9);
    assert_eq!(spend.reserved_usd, 0.0);
    assert_eq!(spend.budgets[0].held_usd, 0.0);
}

#[tokio::test]
async fn dropping_the_stream_mid_way_closes_the_connection_and_holds_the_reservation() {
    let sim = sim().await;
    sim.fail("a", Fault::StreamStall, Times::Once);
    let router = Router::builder()
        .provider_with(
            openai(&sim, "a", KEY_A),
            ProviderOptions::new().budget(Budget::new(10.0, BudgetPeriod::Day).unwrap()),
        )
        .build()
        .unwrap();
    let mut stream = router.generate_stream(req(), StreamOptions::new());
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.name(), "serving");
    let second = stream.next().await.unwrap().unwrap();
    assert_eq!(second.name(), "partial");
    assert_eq!(sim.stats("a").in_flight, 1, "the stalled answer is open");
    assert!(router.spend()[1].reserved_usd > 0.0);
    drop(stream);
    // The server notices the closed connection: its request ends.
    for _ in 0..500 {
        if sim.stats("a").in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.stats("a").in_flight, 0, "connection closed");
    let spend = &router.spend()[1];
    assert_eq!(spend.reserved_usd, 0.0);
    assert!(spend.budgets[0].held_usd > 0.0, "sent, so held: {spend:?}");
}

#[tokio::test]
async fn dropping_the_stream_before_it_is_polled_sends_nothing_and_keeps_nothing() {
    let sim = sim().await;
    let router = Router::builder()
        .provider_with(
            openai(&sim, "a", KEY_A),
            ProviderOptions::new().budget(Budget::new(10.0, BudgetPeriod::Day).unwrap()),
        )
        .build()
        .unwrap();
    drop(router.generate_stream(req(), StreamOptions::new()));
    assert_eq!(sim.stats("a").requests, 0);
    let spend = &router.spend()[1];
    assert_eq!((spend.reserved_usd, spend.budgets[0].held_usd), (0.0, 0.0));
}

#[tokio::test]
async fn a_provider_that_cannot_stream_is_skipped_or_serves_the_final_image_when_allowed() {
    let sim = sim().await;
    let router = Router::builder()
        .provider(proxy(&sim, "a", KEY_A))
        .build()
        .unwrap();
    let (events, err) = collect(router.generate_stream(req(), StreamOptions::new())).await;
    assert!(events.is_empty());
    let err = err.unwrap();
    assert_eq!(err.skipped().len(), 1, "{err:?}");
    assert!(
        err.skipped()[0].to_string().contains("cannot stream"),
        "{}",
        err.skipped()[0]
    );
    assert_eq!(sim.stats("a").requests, 0, "skipped without a call");

    let options = StreamOptions::new().allow_non_streaming(true);
    let (events, err) = collect(router.generate_stream(req(), options)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events), ["serving", "completed"]);
    let StreamEvent::Serving { streaming, .. } = &events[0] else {
        panic!()
    };
    assert!(!streaming);
    let body = sim.received("a")[0].json().unwrap();
    assert!(
        body.get("stream").is_none(),
        "sent as a plain request: {body}"
    );
}

#[tokio::test]
async fn an_images_proxy_declared_streaming_streams() {
    let sim = sim().await;
    let p = Compatible::builder()
        .name("a")
        .api_key(KEY_A.to_string())
        .base_url(sim.openai_base_url("a"))
        .streaming(true)
        .build()
        .unwrap();
    let router = Router::builder().provider(p).build().unwrap();
    let (events, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(1))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events), ["serving", "partial", "completed"]);
}

#[tokio::test]
async fn an_edit_streams_image_edit_events() {
    let sim = sim().await;
    let router = two(&sim);
    let png = crate::support::wire::png_bytes();
    let edit = image_router::EditRequest::new(
        "add a hat",
        vec![image_router::InputImage::new(png, "cat.png")],
    )
    .model("gpt-image-1")
    .quality(Quality::Low)
    .size(Size::SQUARE);
    let (events, err) =
        collect(router.edit_stream(edit, StreamOptions::new().partial_images(1))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events), ["serving", "partial", "completed"]);
    let sent = &sim.received("a")[0];
    let body = String::from_utf8_lossy(&sent.body);
    assert!(
        body.contains("name=\"stream\"\r\n\r\ntrue"),
        "multipart stream field"
    );
    assert!(
        body.contains("name=\"partial_images\"\r\n\r\n1"),
        "multipart partial_images field"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_streams_all_complete() {
    let sim = sim().await;
    let router = two(&sim);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            collect(router.generate_stream(req(), StreamOptions::new().partial_images(1))).await
        }));
    }
    let mut served = 0;
    for t in tasks {
        let (events, err) = t.await.unwrap();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(names(&events), ["serving", "partial", "completed"]);
        served += 1;
    }
    assert_eq!(served, 200);
    assert_eq!(sim.stats("a").succeeded + sim.stats("b").succeeded, 200);
    assert_eq!(sim.stats("a").in_flight + sim.stats("b").in_flight, 0);
}

#[tokio::test]
async fn the_config_key_streaming_makes_a_proxy_stream_and_is_refused_elsewhere() {
    let sim = Simulator::builder()
        .account("open", image_router::sim::SimAccount::new())
        .start()
        .await
        .unwrap();
    let text = format!(
        "[[provider]]\nname = \"proxy\"\nkind = \"compatible\"\nbase_url = \"{}\"\nstreaming = true\n",
        sim.openai_base_url("open")
    );
    let router = Router::from_config_str(&text).unwrap();
    let (events, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(1))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events), ["serving", "partial", "completed"]);
    let bad = "[[provider]]\nname = \"o\"\nkind = \"openai\"\napi_key_env = \"X_KEY\"\nstreaming = true\n";
    let e = bad
        .parse::<image_router::config::RouterConfig>()
        .unwrap_err();
    assert!(e.to_string().contains("streaming"), "{e}");
}
