//! Validation of a request before any network call: what is wrong whatever the model (empty
//! prompt, `n` out of range, `output_compression` with png, `transparent` with jpeg) and, given
//! the model's [`Capabilities`], what that model refuses. Each failure is a
//! [`ValidationError`] naming the field.

use super::capabilities::Capabilities;
use super::params::{Background, OutputFormat};
use super::types::{
    ImageRequest, InputImage, MAX_EDIT_IMAGES, MAX_INPUT_IMAGE_BYTES, MAX_N, MAX_PARTIAL_IMAGES,
};
use serde::Serialize;

use super::capabilities::Unsupported;

impl ImageRequest {
    /// Checks the request before any network call.
    ///
    /// Without `caps`, only what is wrong for every model is checked; with the model's
    /// [`Capabilities`], also the prompt length, `n`, size, quality, format, background and
    /// edit-specific limits of that model. Each failure names the offending field.
    pub fn validate(&self, caps: Option<&Capabilities>) -> Result<(), ValidationError> {
        let prompt = self.prompt();
        if prompt.trim().is_empty() {
            return Err(ValidationError::new("prompt", "the prompt is empty"));
        }
        if let Some(m) = self.model() {
            if m.trim().is_empty() {
                return Err(ValidationError::new("model", "the model name is empty"));
            }
        }
        let n = self.n();
        if n == 0 || n > MAX_N {
            return Err(ValidationError::new(
                "n",
                format!("n must be between 1 and {MAX_N}, got {n}"),
            ));
        }
        if let Some(p) = self.partial_images() {
            if p > MAX_PARTIAL_IMAGES {
                return Err(ValidationError::new(
                    "partial_images",
                    format!("partial_images must be between 0 and {MAX_PARTIAL_IMAGES}, got {p}"),
                ));
            }
            if !self.stream() {
                return Err(ValidationError::new(
                    "partial_images",
                    "partial_images applies only to a streamed request (stream: true)",
                ));
            }
        }
        let format = self.output_format().unwrap_or(OutputFormat::Png);
        if let Some(c) = self.output_compression() {
            if c > 100 {
                return Err(ValidationError::new(
                    "output_compression",
                    format!("output_compression must be 0-100, got {c}"),
                ));
            }
            if format == OutputFormat::Png {
                return Err(ValidationError::new(
                    "output_compression",
                    "output_compression applies only to jpeg or webp output, not png",
                ));
            }
        }
        if self.background() == Some(Background::Transparent) && format == OutputFormat::Jpeg {
            return Err(ValidationError::new(
                "background",
                "a transparent background needs png or webp output, not jpeg",
            ));
        }
        if let ImageRequest::Edit(e) = self {
            if e.images.is_empty() {
                return Err(ValidationError::new(
                    "image",
                    "an edit needs at least one image",
                ));
            }
            if e.images.len() > MAX_EDIT_IMAGES {
                return Err(ValidationError::new(
                    "image",
                    format!(
                        "at most {MAX_EDIT_IMAGES} images per edit, got {}",
                        e.images.len()
                    ),
                ));
            }
            for (i, img) in e.images.iter().enumerate() {
                if img.data.is_empty() {
                    return Err(ValidationError::new(
                        "image",
                        format!("image {i} ({}) is empty", img.filename),
                    ));
                }
                if img.data.len() > MAX_INPUT_IMAGE_BYTES {
                    return Err(ValidationError::new(
                        "image",
                        format!("image {i} ({}) is larger than 50 MB", img.filename),
                    ));
                }
            }
            if let Some(mask) = &e.mask {
                if mask.data.is_empty() {
                    return Err(ValidationError::new("mask", "the mask is empty"));
                }
                if OutputFormat::sniff(&mask.data).is_some_and(|f| f != OutputFormat::Png) {
                    return Err(ValidationError::new("mask", "the mask must be a png"));
                }
                // The API wants the mask the same size as the first image; when both are PNGs
                // (sizes readable from the header) a mismatch is caught before sending.
                if let (Some(m), Some(first)) = (
                    mask.png_dimensions(),
                    e.images.first().and_then(InputImage::png_dimensions),
                ) {
                    if m != first {
                        return Err(ValidationError::new(
                            "mask",
                            format!(
                                "the mask is {}x{} but the first image is {}x{}: they must be \
                                 the same size",
                                m.0, m.1, first.0, first.1
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(caps) = caps {
            caps.check(self).map_err(ValidationError::from)?;
        }
        Ok(())
    }
}

/// A request that is wrong before any provider sees it. Names the offending field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("invalid request: `{field}`: {message}")]
pub struct ValidationError {
    /// The request field at fault (wire name, e.g. `"output_compression"`).
    pub field: &'static str,
    /// What is wrong, in plain words.
    pub message: String,
}

impl ValidationError {
    /// A validation error for `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl From<Unsupported> for ValidationError {
    fn from(u: Unsupported) -> Self {
        ValidationError::new(u.field(), u.to_string())
    }
}
