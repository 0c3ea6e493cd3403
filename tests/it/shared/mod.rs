//! Several router instances, one provider account, state shared through Redis: the proofs
//! of issue 12, against a real `redis-server` (`support::redis`: a loud skip without one on a
//! developer's machine, a failure in CI) and the embedded simulator, which counts every
//! upstream 429 as the referee.
//!
//! * `processes`: four router instances in separate OS processes saturating one simulated
//!   account for two minutes with answers that take seconds (and the same run without the
//!   store, which must overshoot: the test proves the store);
//! * `simulated`: four `Router`s in one process on an injected `ManualClock` over ten
//!   simulated minutes (the factory's router-clock mode), and the same without the store;
//! * `budget`: 1,000 concurrent requests over four instances against $1.00 budgets, with
//!   cancelled requests;
//! * `denial`: a tier denial seen by one instance keeps the others away for the cool-down;
//! * `outage`: Redis killed with SIGKILL in the middle of a saturating run, and restarted.
//!
//! Every figure is printed (`--nocapture` shows them) and copied into the README.

mod budget;
mod denial;
mod processes;
mod simulated;

use std::sync::Arc;
use std::time::Duration;

use image_router::providers::OpenAi;
use image_router::store::redis::{RedisConfig, RedisStoreFactory};
use image_router::store::StoreFactory;
use image_router::{Error, GenerateRequest, Quality, Size, SkipReason};

/// The simulated accounts' key.
pub(crate) const KEY: &str = "sk-shared-test";

/// An OpenAI provider named `name` on the simulator's account at `base`.
pub(crate) fn openai(name: &str, base: String) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .base_url(base)
        .api_key(KEY)
        .client(reqwest::Client::new())
        .build()
        .unwrap()
}

/// One cheap image (gpt-image-1, low quality, square).
pub(crate) fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
        .size(Size::SQUARE)
}

/// A Redis store factory on `url` under `prefix`. `router_clock`: windows on the router's
/// injected clock (simulated-time tests) instead of the server's `TIME`. The call time-out
/// is generous (2 s): the tests share two cores with the server, the simulator and
/// sometimes the compiler, and a burst of a thousand requests queues on the connection.
pub(crate) fn redis_factory(url: &str, prefix: &str, router_clock: bool) -> Arc<dyn StoreFactory> {
    let config = RedisConfig::new(url.to_string())
        .prefix(prefix)
        .timeout(Duration::from_secs(2));
    let f = RedisStoreFactory::new(config).unwrap();
    Arc::new(if router_clock { f.router_clock() } else { f })
}

/// Whether `e` only says "no room now" (no upstream call failed).
pub(crate) fn no_room(e: &Error) -> bool {
    e.attempts().is_empty()
        && e.skipped()
            .iter()
            .all(|s| matches!(s.reason, SkipReason::NoHeadroom { .. }))
}

/// A percentage with one decimal.
pub(crate) fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}
