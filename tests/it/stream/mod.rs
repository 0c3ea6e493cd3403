//! Streamed partial images (issue 15): the event parser on exact bodies, the providers on the
//! wire (wiremock), and `Router::generate_stream` / `edit_stream` on the simulator for each
//! failover rule, stalls, cuts, broken events, cancellation and many concurrent streams.

mod cli;
mod health;
mod models;
mod router;
mod wire;

use futures_util::StreamExt;
use image_router::providers::{Compatible, OpenAi};
use image_router::sim::{SimAccount, Simulator};
use image_router::stream::ImageStream;
use image_router::{Error, GenerateRequest, Quality, Size, StreamEvent};

pub(crate) const KEY_A: &str = "sk-fake-stream-key-a";
pub(crate) const KEY_B: &str = "sk-fake-stream-key-b";

/// A simulator with accounts `a` and `b` (keys above).
pub(crate) async fn sim() -> Simulator {
    Simulator::builder()
        .account("a", SimAccount::new().api_key(KEY_A))
        .account("b", SimAccount::new().api_key(KEY_B))
        .hang_limit(std::time::Duration::from_secs(30))
        .start()
        .await
        .unwrap()
}

pub(crate) fn openai(sim: &Simulator, account: &str, key: &str) -> OpenAi {
    OpenAi::builder()
        .name(account)
        .api_key(key.to_string())
        .base_url(sim.openai_base_url(account))
        .build()
        .unwrap()
}

/// An images-mode proxy that does not stream (the catalog default).
pub(crate) fn proxy(sim: &Simulator, account: &str, key: &str) -> Compatible {
    Compatible::builder()
        .name(account)
        .api_key(key.to_string())
        .base_url(sim.openai_base_url(account))
        .build()
        .unwrap()
}

pub(crate) fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse at dusk")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

/// Every item of `stream`, events and a final error if any.
pub(crate) async fn collect(mut stream: ImageStream) -> (Vec<StreamEvent>, Option<Error>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                assert!(stream.next().await.is_none(), "nothing after the error");
                return (events, Some(e));
            }
        }
    }
    (events, None)
}

/// The events' names in order.
pub(crate) fn names(events: &[StreamEvent]) -> Vec<&'static str> {
    events.iter().map(StreamEvent::name).collect()
}
