//! The response cache (`image_router::cache`): single-flight, the memory tier's bound and
//! time to live, the key, the per-request policy, and the Redis second tier.

mod flight; // identical requests in flight: one call, hand-over, errors
mod key; // the key property: every output field counts, nothing else
mod memory; // byte bound, time to live on the injected clock
mod policy; // Use / Refresh / Bypass, cached responses leave spend and limits alone
mod shared; // the Redis second tier across routers, and a failing one skipped

use std::time::Duration;

use image_router::cache::CacheConfig;
use image_router::{GenerateRequest, Router};

use crate::support::Shared;

/// The request the cache tests send.
pub fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse at dusk").model("gpt-image-1")
}

/// A router on `provider` with the cache on (default settings) and one attempt per request,
/// so a provider's failure is the request's failure.
pub fn router(provider: Shared) -> Router {
    Router::builder()
        .provider(provider)
        .max_attempts(1)
        .deadline(Duration::from_secs(600))
        .cache(CacheConfig::new())
        .build()
        .unwrap()
}
