//! What the answer bounds of a call (`limits.rs`) need of each catalog model: its largest
//! size in pixels and the most output tokens one image can take. Computed once per provider
//! at `build()` ([`bounds_map`]) instead of from the model's tables on every call (about 500
//! instructions a request; issue 16). Apart from `limits.rs` because the provider's common
//! settings hold the map, and the limits read those settings.

use std::collections::HashMap;

use crate::catalog::{Catalog, ModelSpec};
use crate::request::Size;

/// Output tokens per image assumed for a model the catalog does not know.
pub(super) const FALLBACK_OUTPUT_TOKENS_PER_IMAGE: u64 = 50_000;

/// What the limits need of one model's catalog entry: the largest size it lists, in
/// pixels, and the most output tokens one image can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ModelBounds {
    /// The largest size the catalog lists, in pixels (`None`: it lists none with dimensions).
    pub(super) largest_pixels: Option<u64>,
    /// The most output tokens the model's table allows for one image (any quality or size),
    /// else its fallback, else [`FALLBACK_OUTPUT_TOKENS_PER_IMAGE`].
    pub(super) tokens_per_image: u64,
}

impl ModelBounds {
    /// A model the catalog does not know.
    pub(super) const UNKNOWN: ModelBounds = ModelBounds {
        largest_pixels: None,
        tokens_per_image: FALLBACK_OUTPUT_TOKENS_PER_IMAGE,
    };

    /// The bounds of `spec`.
    pub(super) fn of(spec: &ModelSpec) -> Self {
        let table = spec.output_tokens.values().flat_map(|t| t.values()).max();
        let tokens = u64::from(table.copied().unwrap_or(0).max(spec.fallback_output_tokens));
        ModelBounds {
            largest_pixels: spec.capabilities.sizes.iter().filter_map(pixels_of).max(),
            tokens_per_image: if tokens > 0 {
                tokens
            } else {
                FALLBACK_OUTPUT_TOKENS_PER_IMAGE
            },
        }
    }
}

/// [`ModelBounds`] by model name, hashed with foldhash (as the store's model maps).
pub(super) type BoundsMap = HashMap<String, ModelBounds, foldhash::fast::RandomState>;

/// The bounds of every model of `catalog`.
pub(super) fn bounds_map(catalog: &Catalog) -> BoundsMap {
    catalog
        .models()
        .map(|m| (m.name().to_string(), ModelBounds::of(m)))
        .collect()
}

/// The pixels of a size with dimensions (`None` for `auto`).
pub(super) fn pixels_of(s: &Size) -> Option<u64> {
    s.dims()
        .map(|(w, h)| u64::from(w).saturating_mul(u64::from(h)))
}
