//! The capability check (`Router::check`, `check_on_start`, doctor on the same check): what it
//! finds on the simulator and wiremock, what it marks, what it leaves usable, and that it is
//! bounded by its timeout.

mod bounds; // a hanging provider: bounded, unchecked, still usable (paused clock)
mod doctor; // doctor (library and CLI) reads the same check; no key in any output
mod marks; // bad key, missing model / deployment, 5xx: what is marked and where requests go
mod start; // check_on_start from the builder and the config file

use std::time::Duration;

use image_router::providers::{Azure, OpenAi};
use image_router::sim::Simulator;
use image_router::{GenerateRequest, ProviderOptions, Quality, RouterBuilder};

/// Requests the simulator's account `account` received on its image endpoints.
pub fn image_calls(sim: &Simulator, account: &str) -> usize {
    sim.received(account)
        .iter()
        .filter(|r| r.path.contains("/images/"))
        .count()
}

/// Lookups (`GET`) the account received.
pub fn lookups(sim: &Simulator, account: &str) -> usize {
    sim.received(account)
        .iter()
        .filter(|r| r.method == "GET")
        .count()
}

/// Providers get their own client: the shared one's pooled connections belong to the runtime
/// that opened them, and every test has its own runtime.
pub fn openai(sim: &Simulator, account: &str, key: &str) -> image_router::providers::OpenAiBuilder {
    OpenAi::builder()
        .client(reqwest::Client::new())
        .name(account)
        .base_url(sim.openai_base_url(account))
        .api_key(key.to_string())
}

pub fn azure(sim: &Simulator, account: &str, key: &str) -> image_router::providers::AzureBuilder {
    Azure::builder()
        .client(reqwest::Client::new())
        .name(account)
        .endpoint(sim.azure_endpoint(account))
        .api_key(key.to_string())
}

/// A strictly ordered router (the first provider is always tried first) with short timeouts.
pub fn ordered() -> RouterBuilder {
    image_router::Router::builder()
        .strategy(image_router::Strategy::Ordered)
        .attempt_timeout(Duration::from_secs(5))
        .retry_backoff(Duration::from_millis(5))
        .check_timeout(Duration::from_secs(5))
}

pub fn req(model: &str) -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model(model)
        .quality(Quality::Low)
}

pub fn opts() -> ProviderOptions {
    ProviderOptions::new()
}
