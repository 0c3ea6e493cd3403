//! Token estimates made before a request is sent, so limiters and budgets can reserve what a
//! request will use. The response's `usage` later reconciles the estimate.
//!
//! - Output: the model's table (`providers/models.toml`, tokens per image by quality and size,
//!   `auto` resolved to the model's default) times `n`; a model without a table uses the
//!   catalog's configurable per-image estimate.
//! - Text input: about one token per four characters of prompt (OpenAI's rule of thumb; a real
//!   tokenizer would add a large dependency for a number that `usage` corrects anyway).
//! - Image input (edits): 65 + 129 tokens per 512-pixel tile after the image is scaled to fit
//!   2048×2048 and its short side to at most 768 pixels. Dimensions come from the PNG, JPEG or
//!   WebP header (read by the `imagesize` crate); an image whose size cannot be read is counted at the most an image can cost
//!   ([`MAX_INPUT_IMAGE_TOKENS`]), so limiters and budgets never reserve too little.

use serde::Serialize;

use crate::catalog::ModelSpec;
pub use crate::request::image_dimensions;
use crate::request::ImageRequest;

/// Tokens a request is expected to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenEstimate {
    /// Prompt tokens.
    pub text_input: u64,
    /// Input image tokens (edits).
    pub image_input: u64,
    /// Output image tokens (all `n` images).
    pub image_output: u64,
}

impl TokenEstimate {
    /// Input + output.
    pub fn total(&self) -> u64 {
        self.text_input
            .saturating_add(self.image_input)
            .saturating_add(self.image_output)
    }
}

/// Estimated text tokens of `text` (at least 1 for a non-empty text).
///
/// ```
/// assert_eq!(image_router::quota::tokens::text_tokens("a red fox"), 3);
/// ```
pub fn text_tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    chars.div_ceil(4)
}

/// Estimated input tokens of one input image of `width`×`height` pixels.
///
/// ```
/// // 1024×1024 → scaled to 768×768 → 4 tiles.
/// assert_eq!(image_router::quota::tokens::input_image_tokens(1024, 1024), 65 + 4 * 129);
/// ```
pub fn input_image_tokens(width: u32, height: u32) -> u64 {
    let (mut w, mut h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let fit = (2048.0 / w.max(h)).min(1.0);
    w *= fit;
    h *= fit;
    let short = (768.0 / w.min(h)).min(1.0);
    w *= short;
    h *= short;
    let tiles = ((w / 512.0).ceil() as u64) * ((h / 512.0).ceil() as u64);
    65 + 129 * tiles
}

/// The most tokens one input image can cost: 768×2048 after scaling, 2×4 tiles. Used for an
/// image whose dimensions cannot be read, so the estimate stays an upper bound.
pub const MAX_INPUT_IMAGE_TOKENS: u64 = 65 + 129 * 8;

/// Estimates the tokens `req` will use on `model` (`None`: an unknown model, estimated with
/// `fallback_output_tokens` per image).
pub fn estimate(
    req: &ImageRequest,
    model: Option<&ModelSpec>,
    fallback_output_tokens: u32,
) -> TokenEstimate {
    let n = u64::from(req.n());
    let per_image = match model {
        Some(m) => m.output_image_tokens(req.quality(), req.size()),
        None => fallback_output_tokens,
    };
    let image_input = match req {
        ImageRequest::Generate(_) => 0,
        ImageRequest::Edit(e) => e
            .images
            .iter()
            .map(|img| match image_dimensions(&img.data) {
                Some((w, h)) => input_image_tokens(w, h),
                None => MAX_INPUT_IMAGE_TOKENS,
            })
            .sum(),
    };
    TokenEstimate {
        text_input: text_tokens(req.prompt()),
        image_input,
        image_output: u64::from(per_image) * n,
    }
}
