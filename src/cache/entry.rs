//! What the cache holds for one key: the image bytes and where they came from, and how a
//! cached answer is turned back into an [`ImageResponse`].
//!
//! Only bytes are kept. An image that came as a URL was downloaded by the provider layer, so
//! its bytes are here; the URL itself is dropped (OpenAI's image URLs expire after an hour,
//! so a cached URL would soon point nowhere). An answer with an image without bytes is not
//! stored at all.

use std::time::Duration;

use crate::quota::headers::RateLimitHeaders;
use crate::response::{Image, ImageResponse};

/// One cached answer.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub images: Vec<Image>,
    /// The provider and model that made the images.
    pub provider: String,
    pub model: String,
    /// `created` from the provider.
    pub created: i64,
    /// The router clock's time when stored (expiry runs on the injected clock).
    pub stored_at: Duration,
}

/// Bytes counted per entry besides the image data (names, bookkeeping), so even tiny images
/// weigh something.
const OVERHEAD: u64 = 256;

impl Entry {
    /// The entry for `resp`, stored at `now` (shared with the waiters of a flight in any
    /// case; stored only when [`storable`](Self::storable)).
    pub(crate) fn of(resp: &ImageResponse, now: Duration) -> Self {
        let images = resp
            .images
            .iter()
            .map(|i| {
                let mut img = i.clone();
                img.url = None;
                img
            })
            .collect();
        Self {
            images,
            provider: resp.provider.clone(),
            model: resp.model.clone(),
            created: resp.created,
            stored_at: now,
        }
    }

    /// Whether the entry may be stored: at least one image, and bytes for every image.
    pub(crate) fn storable(&self) -> bool {
        !self.images.is_empty() && self.images.iter().all(|i| !i.bytes.is_empty())
    }

    /// What the entry weighs against the byte bound: its image data, revised prompts and a
    /// fixed overhead.
    pub(crate) fn weight(&self) -> u64 {
        let data: u64 = self
            .images
            .iter()
            .map(|i| i.bytes.len() as u64 + i.revised_prompt.as_ref().map_or(0, |p| p.len() as u64))
            .sum();
        data + OVERHEAD
    }

    /// The answer from the cache: the same images, cost 0, no attempts (see
    /// [`ImageResponse::cached`]).
    pub(crate) fn response(&self, elapsed: Duration) -> ImageResponse {
        ImageResponse {
            images: self.images.clone(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            usage: None,
            cost_usd: Some(0.0),
            created: self.created,
            request_id: None,
            rate_limits: RateLimitHeaders::default(),
            attempts: Vec::new(),
            skipped: Vec::new(),
            elapsed,
            score: None,
            cached: true,
            // The router labels a cached answer with what it changed for this request.
            preview: None,
            fallback: None,
        }
    }
}
