//! A model's entry as the catalog serves it: capabilities, the output-token table and the
//! prices. Apart from the loading code so what callers read is documented in one place.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ModelTierLimits;
use crate::request::Capabilities;
use crate::request::{Quality, Size};

/// One model: capabilities, output-token table, prices.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelSpec {
    /// What the model accepts.
    pub capabilities: Capabilities,
    /// Output image tokens per image, by quality then size (empty: not published).
    pub output_tokens: BTreeMap<Quality, BTreeMap<Size, u32>>,
    /// Prices, when known.
    pub price: Option<Price>,
    /// Estimate per image when the table has no entry.
    pub fallback_output_tokens: u32,
    /// Published rate limits by usage tier name (`"tier-1"`); empty when none are known.
    pub limits: BTreeMap<String, ModelTierLimits>,
    /// A cheaper model of the same family that preview mode may use instead (`preview_model`
    /// in the catalog; see [`PreviewConfig`](crate::PreviewConfig)), when the catalog names one.
    pub preview_model: Option<String>,
}

impl ModelSpec {
    /// The model name.
    pub fn name(&self) -> &str {
        &self.capabilities.model
    }

    /// Output image tokens for one image of `quality` and `size`; `None` / `auto` resolve to
    /// the model's defaults. Uses the table, else the configured per-image estimate.
    pub fn output_image_tokens(&self, quality: Option<Quality>, size: Option<Size>) -> u32 {
        let q = self.resolve_quality(quality);
        let s = self.resolve_size(size);
        self.output_tokens
            .get(&q)
            .and_then(|t| t.get(&s))
            .copied()
            .unwrap_or(self.fallback_output_tokens)
    }

    /// `quality` with `None` / `auto` resolved to the model's default.
    pub fn resolve_quality(&self, quality: Option<Quality>) -> Quality {
        match quality {
            None | Some(Quality::Auto) => self.capabilities.default_quality,
            Some(q) => q,
        }
    }

    /// `size` with `None` / `auto` resolved to the model's default.
    pub fn resolve_size(&self, size: Option<Size>) -> Size {
        match size {
            None | Some(Size::Auto) => self.capabilities.default_size,
            Some(s) => s,
        }
    }
}

/// A model's prices.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Price {
    /// USD per 1M tokens (GPT image models).
    UsdPer1mTokens {
        /// Text input.
        text_input: f64,
        /// Cached text input.
        cached_text_input: Option<f64>,
        /// Image input.
        image_input: f64,
        /// Cached image input.
        cached_image_input: Option<f64>,
        /// Image output.
        image_output: f64,
    },
    /// USD per image by quality then size (dall-e).
    UsdPerImage {
        /// The table.
        table: BTreeMap<Quality, BTreeMap<Size, f64>>,
    },
}
