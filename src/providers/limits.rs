//! The bounds one call's answer is held to (body bytes, image bytes, image count, format,
//! tokens), derived from the request and the catalog. Apart from the common settings because
//! it is arithmetic over the request's shape, with its own constants and reasons.

use super::bounds::{pixels_of, ModelBounds};
use super::common::Common;
use crate::request::{EditRequest, GenerateRequest, OutputFormat, Size};

/// What a request can produce, in bytes and tokens: the bounds one call's answer is held to.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Most bytes of a success body.
    pub(super) body: u64,
    /// Most bytes of one downloaded image.
    pub(super) image: u64,
    /// Most images kept (`n`).
    pub(super) n: usize,
    /// The format the images must have, when the request named one.
    pub(super) format: Option<OutputFormat>,
    /// Most input tokens the request can use.
    pub(super) input_tokens: u64,
    /// Most output tokens the request can produce.
    pub(super) output_tokens: u64,
}

/// Pixels assumed for one image when neither the request nor the catalog says (a 4096×4096
/// image: larger than any size an OpenAI image model offers).
pub(super) const FALLBACK_PIXELS: u64 = 4096 * 4096;
/// Bytes per pixel of the largest encoding (8-bit RGBA PNG, uncompressed), plus a fixed
/// headroom per image for chunk and filter overhead.
pub(super) const BYTES_PER_PIXEL: u64 = 4;
pub(super) const IMAGE_HEADROOM: u64 = 1024 * 1024;
/// Headroom for the JSON around the images (usage, echo fields, revised prompts).
pub(super) const BODY_HEADROOM: u64 = 1024 * 1024;
/// Input tokens assumed at most per input image (edits; high input fidelity included).
pub(super) const MAX_TOKENS_PER_INPUT_IMAGE: u64 = 20_000;
/// Headroom on token bounds (system prompts of chat proxies, rounding, partial images).
pub(super) const TOKEN_HEADROOM: u64 = 4096;

/// The request facts the limits derive from.
pub(super) struct Shape<'a> {
    pub(super) model: &'a str,
    pub(super) n: u8,
    pub(super) size: Option<Size>,
    pub(super) format: Option<OutputFormat>,
    pub(super) prompt: &'a str,
    pub(super) input_images: usize,
}

impl<'a> Shape<'a> {
    pub(super) fn generate(req: &'a GenerateRequest, model: &'a str) -> Self {
        Shape {
            model,
            n: req.n.unwrap_or(1),
            size: req.size,
            format: req.output_format,
            prompt: &req.prompt,
            input_images: 0,
        }
    }

    pub(super) fn edit(req: &'a EditRequest, model: &'a str) -> Self {
        Shape {
            model,
            n: req.n.unwrap_or(1),
            size: req.size,
            format: req.output_format,
            prompt: &req.prompt,
            input_images: req.images.len() + usize::from(req.mask.is_some()),
        }
    }
}

impl Common {
    /// The bounds of one call: the largest image the model can return for this request
    /// (its size, else the largest size the catalog lists, else [`FALLBACK_PIXELS`]) at 4
    /// bytes a pixel plus headroom, times `n`, times 4/3 for base64, plus JSON headroom; the
    /// most tokens the model's table allows per image (any quality or size, doubled) times
    /// `n`, and the prompt's bytes plus a bound per input image.
    pub(super) fn limits(&self, shape: &Shape<'_>) -> Limits {
        // Every catalog model is in the map: a model missing from it is unknown.
        let bounds = self
            .bounds
            .get(shape.model)
            .copied()
            .unwrap_or(ModelBounds::UNKNOWN);
        let pixels = shape
            .size
            .as_ref()
            .and_then(pixels_of)
            .or(bounds.largest_pixels)
            .unwrap_or(FALLBACK_PIXELS);
        let n = u64::from(shape.n.max(1));
        let per_image = pixels
            .saturating_mul(BYTES_PER_PIXEL)
            .saturating_add(IMAGE_HEADROOM);
        let derived_body =
            (per_image.saturating_mul(n).saturating_mul(4) / 3).saturating_add(BODY_HEADROOM);
        let tokens_per_image = bounds.tokens_per_image;
        let input_tokens = (shape.prompt.len() as u64)
            .saturating_add((shape.input_images as u64).saturating_mul(MAX_TOKENS_PER_INPUT_IMAGE))
            .saturating_add(TOKEN_HEADROOM);
        let output_tokens = tokens_per_image
            .saturating_mul(2)
            .saturating_mul(n)
            .saturating_add(TOKEN_HEADROOM);
        Limits {
            body: self.max_response_bytes.unwrap_or(derived_body),
            image: self.max_response_bytes.unwrap_or(per_image),
            n: usize::from(shape.n.max(1)),
            format: shape.format,
            input_tokens,
            output_tokens,
        }
    }
}
