//! Preview mode and model fallback on the streamed path (`Router::generate_stream`): a router
//! in preview mode streams the cheapest form and says so on `completed`; a stream falls back
//! to another model under its own failover rule (only before a partial reached the caller,
//! unless it allowed a restart elsewhere).

use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{Error, Quality, Router, Size, StreamEvent, StreamOptions};

use super::*;

/// The model of each request account `a` received, in order.
fn models_sent(sim: &Simulator, account: &str) -> Vec<String> {
    sim.received(account)
        .iter()
        .map(|r| r.json().unwrap()["model"].as_str().unwrap().to_string())
        .collect()
}

fn completed(events: &[StreamEvent]) -> &image_router::ImageResponse {
    match events.last() {
        Some(StreamEvent::Completed(res)) => res,
        other => panic!("the last event is not completed: {other:?}"),
    }
}

#[tokio::test]
async fn preview_mode_streams_the_cheapest_form_and_completed_says_what_changed() {
    let sim = sim().await;
    let router = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .preview(true)
        .build()
        .unwrap();
    let asked = req().quality(Quality::High).size(Size::LANDSCAPE);
    let (events, err) =
        collect(router.generate_stream(asked, StreamOptions::new().partial_images(1))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events), ["serving", "partial", "completed"]);
    // On the wire: streamed, at the lowest quality (landscape kept: the smallest landscape
    // size gpt-image-1 takes is the one asked for).
    let body = sim.received("a")[0].json().unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["partial_images"], 1);
    assert_eq!(body["quality"], "low");
    assert_eq!(body["size"], "1536x1024");
    let res = completed(&events);
    let preview = res.preview.as_ref().expect("completed carries preview");
    let fields: Vec<_> = preview.changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["quality"], "{:?}", preview.changes);
    assert_eq!(preview.changes[0].to.as_deref(), Some("low"));
    assert!(res.fallback.is_none());
    // The partial echoes what was sent.
    let StreamEvent::Partial { partial, .. } = &events[1] else {
        panic!("{:?}", events[1])
    };
    assert_eq!(partial.echoed.quality.as_deref(), Some("low"));

    // Off: the request goes out as written, and `completed` carries no preview.
    let plain = Router::builder()
        .provider(openai(&sim, "b", KEY_B))
        .build()
        .unwrap();
    let (events, err) = collect(plain.generate_stream(
        req().quality(Quality::High),
        StreamOptions::new().partial_images(0),
    ))
    .await;
    assert!(err.is_none(), "{err:?}");
    assert!(completed(&events).preview.is_none());
    assert_eq!(sim.received("b")[0].json().unwrap()["quality"], "high");
}

/// An account serving only gpt-image-1-mini (gpt-image-1 gets 404 `model_not_found`).
async fn mini_only() -> Simulator {
    Simulator::builder()
        .account(
            "a",
            SimAccount::new()
                .api_key(KEY_A)
                .models(["gpt-image-1-mini"]),
        )
        .hang_limit(std::time::Duration::from_secs(30))
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stream_falls_back_to_another_model_before_the_first_partial() {
    let sim = mini_only().await;
    let router = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .build()
        .unwrap();
    let asked = req().fallback_models(["gpt-image-1-mini"]);
    let (events, err) =
        collect(router.generate_stream(asked, StreamOptions::new().partial_images(2))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        names(&events),
        ["serving", "partial", "partial", "completed"]
    );
    match &events[0] {
        StreamEvent::Serving {
            model, streaming, ..
        } => assert_eq!((model.as_str(), *streaming), ("gpt-image-1-mini", true)),
        other => panic!("{other:?}"),
    }
    let res = completed(&events);
    assert_eq!(res.model, "gpt-image-1-mini");
    let fb = res.fallback.as_ref().expect("completed carries fallback");
    assert_eq!(fb.requested_model, "gpt-image-1");
    assert_eq!(fb.model, "gpt-image-1-mini");
    let marks: Vec<_> = res.attempts.iter().map(|a| a.fallback.as_deref()).collect();
    assert_eq!(marks, [None, Some("gpt-image-1-mini")]);
    assert_eq!(models_sent(&sim, "a"), ["gpt-image-1", "gpt-image-1-mini"]);
    // Both went out streamed.
    assert!(sim
        .received("a")
        .iter()
        .all(|r| r.json().unwrap()["stream"] == true));
}

#[tokio::test]
async fn after_a_partial_a_stream_does_not_fall_back_to_another_model() {
    let sim = sim().await;
    let router = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .build()
        .unwrap();
    sim.fail("a", Fault::StreamCut, Times::Once);
    let asked = req().fallback_models(["gpt-image-1-mini"]);
    let (events, err) =
        collect(router.generate_stream(asked, StreamOptions::new().partial_images(2))).await;
    assert_eq!(names(&events), ["serving", "partial"]);
    let err = err.expect("the cut ends the stream");
    match &err {
        Error::StreamInterrupted {
            partials_delivered, ..
        } => assert_eq!(*partials_delivered, 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        models_sent(&sim, "a"),
        ["gpt-image-1"],
        "no other model tried"
    );
}

#[tokio::test]
async fn with_restart_elsewhere_a_stream_may_fall_back_after_discarding_its_partials() {
    let sim = sim().await;
    let router = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .build()
        .unwrap();
    // A cut attempt was possibly billed and is not retried on the same provider, so
    // gpt-image-1 has no provider left: the fallback model serves, after `restarted`.
    sim.fail("a", Fault::StreamCut, Times::Once);
    let asked = req().fallback_models(["gpt-image-1-mini"]);
    let options = StreamOptions::new()
        .partial_images(1)
        .restart_elsewhere(true);
    let (events, err) = collect(router.generate_stream(asked, options)).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        names(&events),
        [
            "serving",
            "partial",
            "restarted",
            "serving",
            "partial",
            "completed"
        ]
    );
    let res = completed(&events);
    assert_eq!(res.model, "gpt-image-1-mini");
    assert!(res.fallback.is_some());
    assert_eq!(models_sent(&sim, "a"), ["gpt-image-1", "gpt-image-1-mini"]);
}
