//! Time to first partial as a health signal on the simulator: streams that ask for partials
//! are ranked on it, plain requests on the image latency; the caller's time holding events
//! is not counted as the provider's.

use std::time::Duration;

use image_router::sim::{Fault, Times};
use image_router::{Router, StreamOptions};

use super::*;

fn provider_health(router: &Router, name: &str) -> image_router::health::HealthSnapshot {
    router
        .status()
        .providers
        .into_iter()
        .find(|p| p.name == name)
        .unwrap()
        .health
}

fn served_by(events: &[StreamEvent]) -> String {
    match events.last() {
        Some(StreamEvent::Completed(res)) => res.provider.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_rank_on_time_to_first_partial_and_plain_requests_on_image_latency() {
    let sim = sim().await;
    // `b` first in the configured order; `Scored` (the default strategy).
    let router = Router::builder()
        .provider(openai(&sim, "b", KEY_B))
        .provider(openai(&sim, "a", KEY_A))
        .build()
        .unwrap();
    // `b` answers after 500 ms, partials and final image together. `a` sends each partial
    // at once and pauses 500 ms after each: quick to the first partial, slow to finish.
    sim.set_latency("b", Duration::from_millis(500));
    sim.fail(
        "a",
        Fault::StreamSlow(Duration::from_millis(500)),
        Times::Always,
    );
    let opts = || StreamOptions::new().partial_images(3);

    // Nothing measured: the configured order.
    let (events, err) = collect(router.generate_stream(req(), opts())).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served_by(&events), "b");
    // `a` has no first-partial measurement yet: unmeasured is tried once.
    let (events, err) = collect(router.generate_stream(req(), opts())).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served_by(&events), "a");
    let (a, b) = (provider_health(&router, "a"), provider_health(&router, "b"));
    let (a_fp, b_fp) = (a.first_partial_ms.unwrap(), b.first_partial_ms.unwrap());
    let (a_img, b_img) = (a.latency_ms.unwrap(), b.latency_ms.unwrap());
    assert!(
        a_fp < b_fp,
        "a is quicker to its first partial: {a_fp} vs {b_fp}"
    );
    assert!(a_img > b_img, "a is slower to finish: {a_img} vs {b_img}");

    // Streams with partials go where the first partial comes sooner ...
    let (events, err) = collect(router.generate_stream(req(), opts())).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served_by(&events), "a", "ranked on time to first partial");
    // ... plain requests where the image comes sooner: the first partial did not move them.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.provider, "b", "ranked on image latency");
    // A stream without partials has only the final image to wait for: image latency.
    let (events, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(0))).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(served_by(&events), "b");
    // A plain request records no first partial (a fresh router: only plain requests).
    sim.clear_faults("a");
    let plain = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .build()
        .unwrap();
    plain.generate(req()).await.unwrap();
    let h = provider_health(&plain, "a");
    assert!(h.latency_ms.is_some());
    assert_eq!(h.first_partial_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_timed_out_before_any_partial_counts_as_a_slow_first_partial() {
    let sim = sim().await;
    let router = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .attempt_timeout(Duration::from_millis(300))
        .max_attempts(1)
        .build()
        .unwrap();
    sim.fail("a", Fault::Hang, Times::Once);
    let (_, err) =
        collect(router.generate_stream(req(), StreamOptions::new().partial_images(1))).await;
    assert!(err.expect("timed out").attempts()[0]
        .error
        .as_ref()
        .unwrap()
        .is_timeout());
    let h = provider_health(&router, "a");
    // The wait is a lower bound of the time to the first partial.
    let fp = h
        .first_partial_ms
        .expect("a timeout before any partial is an observation");
    assert!(fp >= 250.0, "{fp}");
    // Without partials asked for, nothing is recorded as a first partial.
    let other = Router::builder()
        .provider(openai(&sim, "b", KEY_B))
        .attempt_timeout(Duration::from_millis(300))
        .max_attempts(1)
        .build()
        .unwrap();
    sim.fail("b", Fault::Hang, Times::Once);
    let (_, err) =
        collect(other.generate_stream(req(), StreamOptions::new().partial_images(0))).await;
    assert!(err.is_some());
    assert_eq!(provider_health(&other, "b").first_partial_ms, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_time_holding_events_is_not_the_providers_latency() {
    let sim = sim().await;
    let router = Router::builder()
        .provider(openai(&sim, "a", KEY_A))
        .build()
        .unwrap();
    let mut events = router.generate_stream(req(), StreamOptions::new().partial_images(3));
    let mut held = Duration::ZERO;
    while let Some(item) = events.next().await {
        item.unwrap();
        // A slow consumer: 300 ms per event (serving, three partials, completed).
        tokio::time::sleep(Duration::from_millis(300)).await;
        held += Duration::from_millis(300);
    }
    let h = provider_health(&router, "a");
    let latency = h.latency_ms.unwrap();
    // Four of the five holds happened while the call was open (the last after completed);
    // none of them is the provider's.
    assert!(
        latency < 900.0,
        "the caller's {held:?} counted as the provider's latency: {latency} ms"
    );
}
