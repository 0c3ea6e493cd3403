//! What a request costs in USD, before it is sent (from its token estimate, to reserve budget)
//! and after (from the response's `usage`, to charge it).
//!
//! # Formula
//!
//! Per-token models (`unit = "usd_per_1m_tokens"` in `providers/models.toml`):
//!
//! ```text
//! usd = (text_input_tokens × text_input + image_input_tokens × image_input
//!        + output_tokens × image_output) / 1,000,000
//! ```
//!
//! From `usage`, the input split comes from `input_tokens_details`; input tokens the details do
//! not account for are charged at the image-input rate for edits and the text-input rate for
//! generations. All output tokens are charged at the image-output rate (the API reports output
//! text tokens inside the same total and publishes no separate price; this errs high). Tokens
//! that `total_tokens` counts beyond input + output (a proxy that reports only the total) are
//! charged as output too. `usage` carries no cached-token fields today, so cached rates are not
//! used. Without `usage`, or with a usage of all zeros, the estimate is charged.
//!
//! Per-image models (`unit = "usd_per_image"`, dall-e): `table[quality][size] × n`, with
//! quality and size resolved to the model's defaults.
//!
//! A model without a price (or a per-image table without the requested cell) has no cost:
//! [`estimate_usd`] / [`usage_usd`] return `None`. So that budgets still hold, a
//! [`CostEstimator`] can be given `fallback_usd_per_image`, charged per image; without a
//! fallback it reports [`PriceUnknown`], and a ledger with budgets refuses such a request with
//! an error that says the price is unknown (see [`crate::budget`]).

use serde::Serialize;

use crate::catalog::{ModelSpec, Price};
use crate::config_error::ConfigError;
use crate::quota::tokens::TokenEstimate;
use crate::quota::usage::Usage;
use crate::request::ImageRequest;

/// How a cost was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CostBasis {
    /// Per-token prices applied to the response's `usage`.
    Usage,
    /// Per-token prices applied to the token estimate (before sending, or without `usage`).
    Estimate,
    /// The model's per-image price table.
    PerImage,
    /// The configured `fallback_usd_per_image` (the model's price is unknown).
    Fallback,
}

/// A cost in USD and how it was computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Cost {
    /// US dollars.
    pub usd: f64,
    /// How it was computed.
    pub basis: CostBasis,
}

/// The model's price is unknown and no fallback is configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("the price of model `{model}` is unknown (add it to the catalog or set `fallback_usd_per_image`)")]
pub struct PriceUnknown {
    /// The model.
    pub model: String,
}

/// USD for the given token counts at a per-token price; `None` for a per-image price.
///
/// ```
/// use image_router::{catalog::Catalog, quota::cost::tokens_usd};
/// let price = Catalog::builtin().model("gpt-image-1").unwrap().price.clone().unwrap();
/// // One high-quality 1024x1024 image (4160 output tokens) and a 50-token prompt.
/// let usd = tokens_usd(&price, 50, 0, 4160).unwrap();
/// assert!((usd - 0.16665).abs() < 1e-9);
/// ```
pub fn tokens_usd(price: &Price, text_input: u64, image_input: u64, output: u64) -> Option<f64> {
    match price {
        Price::UsdPer1mTokens {
            text_input: p_text,
            image_input: p_img,
            image_output: p_out,
            ..
        } => Some(
            (text_input as f64 * p_text + image_input as f64 * p_img + output as f64 * p_out)
                / 1_000_000.0,
        ),
        Price::UsdPerImage { .. } => None,
    }
}

fn per_image_usd(model: &ModelSpec, req: &ImageRequest) -> Option<f64> {
    let Some(Price::UsdPerImage { table }) = &model.price else {
        return None;
    };
    let q = model.resolve_quality(req.quality());
    let s = model.resolve_size(req.size());
    table
        .get(&q)
        .and_then(|row| row.get(&s))
        .map(|p| p * f64::from(req.n()))
}

/// The estimated cost of `req` on `model` from its token estimate (per-token models) or the
/// per-image table; `None` when the model's price is unknown.
pub fn estimate_usd(model: &ModelSpec, req: &ImageRequest, est: &TokenEstimate) -> Option<f64> {
    match &model.price {
        Some(p @ Price::UsdPer1mTokens { .. }) => {
            tokens_usd(p, est.text_input, est.image_input, est.image_output)
        }
        Some(Price::UsdPerImage { .. }) => per_image_usd(model, req),
        None => None,
    }
}

/// The actual cost of `req` on `model` from the response's `usage` (per-token models; without
/// usage the estimate is charged) or the per-image table; `None` when the price is unknown.
pub fn usage_usd(
    model: &ModelSpec,
    req: &ImageRequest,
    usage: Option<&Usage>,
    est: &TokenEstimate,
) -> Option<f64> {
    match (&model.price, usage.filter(|u| reports_tokens(u))) {
        (Some(p @ Price::UsdPer1mTokens { .. }), Some(u)) => {
            let (text, image) = split_input(req, u);
            // Tokens the total counts beyond input + output (a usage that reports only
            // `total_tokens`) are charged as output: the highest rate, so the charge errs high.
            let unsplit = u
                .total_tokens
                .saturating_sub(u.input_tokens.saturating_add(u.output_tokens));
            tokens_usd(p, text, image, u.output_tokens.saturating_add(unsplit))
        }
        _ => estimate_usd(model, req, est),
    }
}

/// Whether a usage reports any tokens at all. A usage of all zeros (some proxies send one) is
/// no evidence that the request was free: the estimate is charged instead.
fn reports_tokens(u: &Usage) -> bool {
    u.input_tokens > 0 || u.output_tokens > 0 || u.total_tokens > 0
}

fn split_input(req: &ImageRequest, u: &Usage) -> (u64, u64) {
    let d = u.input_tokens_details;
    let rest = u
        .input_tokens
        .saturating_sub(d.text_tokens.saturating_add(d.image_tokens));
    match req {
        ImageRequest::Edit(_) => (d.text_tokens, d.image_tokens + rest),
        ImageRequest::Generate(_) => (d.text_tokens + rest, d.image_tokens),
    }
}

/// Prices requests, with an optional per-image fallback for models without a known price.
///
/// ```
/// use image_router::{catalog::Catalog, quota::cost::{CostEstimator, CostBasis}, quota::tokens, GenerateRequest, ImageRequest, Quality, Size};
/// let cat = Catalog::builtin();
/// let req: ImageRequest = GenerateRequest::new("a cat").model("gpt-image-1")
///     .quality(Quality::High).size(Size::SQUARE).into();
/// let model = cat.model("gpt-image-1");
/// let est = tokens::estimate(&req, model, cat.default_output_tokens_per_image());
/// let cost = CostEstimator::new().estimate("gpt-image-1", model, &req, &est).unwrap();
/// assert_eq!(cost.basis, CostBasis::Estimate);
/// assert!((cost.usd - 0.167).abs() < 0.001);
/// // A model without a price in the catalog (`like` never copies prices):
/// let cat2 = cat.with_overrides("[models.unpriced]\nlike = \"gpt-image-1\"", "x.toml").unwrap();
/// let m2 = cat2.model("unpriced");
/// assert!(CostEstimator::new().estimate("unpriced", m2, &req, &est).is_err());
/// let fb = CostEstimator::new().with_fallback_usd_per_image(0.25).unwrap();
/// assert_eq!(fb.estimate("unpriced", m2, &req, &est).unwrap().usd, 0.25);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CostEstimator {
    fallback_usd_per_image: Option<f64>,
}

impl CostEstimator {
    /// No fallback: unknown prices are [`PriceUnknown`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Charges `usd` per image for models whose price is unknown. Negative, NaN or infinite is
    /// a [`ConfigError`] naming `fallback_usd_per_image`.
    pub fn with_fallback_usd_per_image(mut self, usd: f64) -> Result<Self, ConfigError> {
        if !usd.is_finite() || usd < 0.0 {
            return Err(ConfigError::new(
                "fallback_usd_per_image",
                format!("must be a finite, non-negative USD amount, got {usd}"),
            ));
        }
        self.fallback_usd_per_image = Some(usd);
        Ok(self)
    }

    /// The configured fallback.
    pub fn fallback_usd_per_image(&self) -> Option<f64> {
        self.fallback_usd_per_image
    }

    fn fallback(&self, model_name: &str, req: &ImageRequest) -> Result<Cost, PriceUnknown> {
        match self.fallback_usd_per_image {
            Some(p) => Ok(Cost {
                usd: p * f64::from(req.n()),
                basis: CostBasis::Fallback,
            }),
            None => Err(PriceUnknown {
                model: model_name.to_string(),
            }),
        }
    }

    /// The cost to reserve before sending `req` to `model_name` (`model`: its catalog entry).
    pub fn estimate(
        &self,
        model_name: &str,
        model: Option<&ModelSpec>,
        req: &ImageRequest,
        est: &TokenEstimate,
    ) -> Result<Cost, PriceUnknown> {
        let Some(m) = model else {
            return self.fallback(model_name, req);
        };
        let basis = match &m.price {
            Some(Price::UsdPerImage { .. }) => CostBasis::PerImage,
            _ => CostBasis::Estimate,
        };
        match estimate_usd(m, req, est) {
            Some(usd) => Ok(Cost { usd, basis }),
            None => self.fallback(model_name, req),
        }
    }

    /// The cost to charge after the response (`usage` from it, when present).
    pub fn actual(
        &self,
        model_name: &str,
        model: Option<&ModelSpec>,
        req: &ImageRequest,
        usage: Option<&Usage>,
        est: &TokenEstimate,
    ) -> Result<Cost, PriceUnknown> {
        let Some(m) = model else {
            return self.fallback(model_name, req);
        };
        let basis = match (&m.price, usage.filter(|u| reports_tokens(u))) {
            (Some(Price::UsdPerImage { .. }), _) => CostBasis::PerImage,
            (_, Some(_)) => CostBasis::Usage,
            _ => CostBasis::Estimate,
        };
        match usage_usd(m, req, usage, est) {
            Some(usd) => Ok(Cost { usd, basis }),
            None => self.fallback(model_name, req),
        }
    }
}
