//! What one request asks of the response cache: use it, refresh it, or bypass it.
//!
//! The type lives with the request (a field of [`GenerateRequest`](super::GenerateRequest)
//! and [`EditRequest`](super::EditRequest)) because the cache sits above the request in the
//! module layers; its public path is `image_router::cache::CachePolicy`.

/// How one request uses the router's response cache (see `image_router::cache`). Without a
/// cache on the router every policy sends the request as usual.
///
/// ```
/// use image_router::{cache::CachePolicy, GenerateRequest};
/// let req = GenerateRequest::new("a fox").cache(CachePolicy::Bypass);
/// assert_eq!(req.cache, CachePolicy::Bypass);
/// assert_eq!(GenerateRequest::new("a fox").cache, CachePolicy::Use);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CachePolicy {
    /// The default: answer from the cache when it holds the response, else join an identical
    /// request in flight or send it, and store the answer.
    #[default]
    Use,
    /// Do not read the cache: send the request (or join an identical one already in flight,
    /// whose answer is just as fresh) and store the answer in place of the old one.
    Refresh,
    /// Leave the cache out: neither read, nor joined with identical requests, nor stored.
    Bypass,
}
