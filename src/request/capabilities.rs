//! What a model, on a given provider, accepts.
//!
//! The catalog (`providers/models.toml`) describes each known model; a provider narrows that
//! to what it serves (Azure has no webp output, a chat-mode proxy does no edits, a deployment
//! map limits the models). The router asks [`Provider::supports`](crate::Provider::supports)
//! before every attempt, so a provider that cannot answer is never sent a request.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::request::{Background, ImageRequest, OutputFormat, Quality, Size};

/// What one model accepts (on one provider).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Model name.
    pub model: String,
    /// Longest prompt in characters.
    pub max_prompt_chars: usize,
    /// Largest `n`.
    pub max_n: u8,
    /// Accepted sizes (`auto` included when accepted); empty means any size.
    pub sizes: Vec<Size>,
    /// Accepted qualities.
    pub qualities: Vec<Quality>,
    /// Qualities accepted on edits, when they differ (empty: same as `qualities`).
    #[serde(default)]
    pub edit_qualities: Vec<Quality>,
    /// Quality used for `auto` or when none is given.
    pub default_quality: Quality,
    /// Size used for `auto` or when none is given (for token estimates).
    pub default_size: Size,
    /// Accepted output formats (empty: the field is not accepted at all).
    pub output_formats: Vec<OutputFormat>,
    /// Accepted backgrounds (empty: the field is not accepted).
    pub backgrounds: Vec<Background>,
    /// Whether `/images/edits` is served.
    pub edits: bool,
    /// Most input images per edit.
    pub max_edit_images: usize,
    /// Whether `input_fidelity` is accepted.
    pub input_fidelity: bool,
    /// Whether `moderation` is accepted.
    pub moderation: bool,
    /// Whether `style` is accepted (dall-e-3).
    pub style: bool,
    /// Whether `response_format` is accepted (dall-e).
    pub response_format: bool,
    /// Whether answers can be streamed (`stream: true`, `partial_images`; see
    /// [`crate::stream`]).
    #[serde(default)]
    pub streaming: bool,
}

impl Capabilities {
    /// Permissive capabilities for a model the catalog does not know (used by custom providers
    /// and when a provider is told to accept unknown models).
    pub fn permissive(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            max_prompt_chars: 32_000,
            max_n: 10,
            sizes: Vec::new(),
            qualities: Vec::new(),
            edit_qualities: Vec::new(),
            default_quality: Quality::Auto,
            default_size: Size::Auto,
            output_formats: Vec::new(),
            backgrounds: Vec::new(),
            edits: true,
            max_edit_images: 16,
            input_fidelity: true,
            moderation: true,
            style: true,
            response_format: true,
            streaming: true,
        }
        .open()
    }

    fn open(mut self) -> Self {
        self.sizes = Vec::new();
        self.qualities = Quality::ALL.to_vec();
        self.output_formats = OutputFormat::ALL.to_vec();
        self.backgrounds = Background::ALL.to_vec();
        self
    }

    /// Whether `size` is accepted.
    fn accepts_size(&self, size: Size) -> bool {
        self.sizes.is_empty() || self.sizes.contains(&size)
    }

    /// Removes an output format (e.g. webp on Azure).
    pub fn without_output_format(mut self, f: OutputFormat) -> Self {
        self.output_formats.retain(|x| *x != f);
        self
    }

    /// Checks `req` against these capabilities.
    pub fn check(&self, req: &ImageRequest) -> Result<(), Unsupported> {
        let unsupported =
            |field: &'static str, message: String| Err(Unsupported::Parameter { field, message });
        if req.is_edit() && !self.edits {
            return Err(Unsupported::Operation {
                operation: "edits",
                message: format!("{} does not serve image edits here", self.model),
            });
        }
        if req.stream() && !self.streaming {
            return unsupported(
                "stream",
                format!("{} does not stream its answers here", self.model),
            );
        }
        // A prompt has at most as many characters as bytes: only a prompt longer in bytes
        // than the limit needs counting (issue 16).
        let prompt = req.prompt();
        if prompt.len() > self.max_prompt_chars {
            let chars = prompt.chars().count();
            if chars > self.max_prompt_chars {
                return unsupported(
                    "prompt",
                    format!(
                        "the prompt has {chars} characters; {} takes at most {}",
                        self.model, self.max_prompt_chars
                    ),
                );
            }
        }
        let n = req.n();
        if n > self.max_n {
            return unsupported(
                "n",
                format!(
                    "{} generates at most {} image(s) per request, got n={n}",
                    self.model, self.max_n
                ),
            );
        }
        if let Some(size) = req.size() {
            if !self.accepts_size(size) {
                return unsupported(
                    "size",
                    format!(
                        "{} does not take size {size}; it takes {}",
                        self.model,
                        join(&self.sizes)
                    ),
                );
            }
        }
        if let Some(q) = req.quality() {
            let accepted = if req.is_edit() && !self.edit_qualities.is_empty() {
                &self.edit_qualities
            } else {
                &self.qualities
            };
            if !accepted.contains(&q) {
                return unsupported(
                    "quality",
                    format!(
                        "{} does not take quality {q}; it takes {}",
                        self.model,
                        join(accepted)
                    ),
                );
            }
        }
        if let Some(f) = req.output_format() {
            if !self.output_formats.contains(&f) {
                return unsupported(
                    "output_format",
                    format!(
                        "{} does not produce {f} here; it produces {}",
                        self.model,
                        if self.output_formats.is_empty() {
                            "only its default format".to_string()
                        } else {
                            join(&self.output_formats)
                        }
                    ),
                );
            }
        }
        if req.output_compression().is_some() && self.output_formats.is_empty() {
            return unsupported(
                "output_compression",
                format!("{} does not take output_compression", self.model),
            );
        }
        if let Some(b) = req.background() {
            if !self.backgrounds.contains(&b) {
                return unsupported(
                    "background",
                    format!("{} does not take background {b}", self.model),
                );
            }
        }
        match req {
            ImageRequest::Generate(g) => {
                if g.moderation.is_some() && !self.moderation {
                    return unsupported(
                        "moderation",
                        format!("{} does not take moderation", self.model),
                    );
                }
                if g.style.is_some() && !self.style {
                    return unsupported(
                        "style",
                        format!("{} does not take style (dall-e-3 only)", self.model),
                    );
                }
                if g.response_format.is_some() && !self.response_format {
                    return unsupported(
                        "response_format",
                        format!("{} does not take response_format; GPT image models always return base64", self.model),
                    );
                }
            }
            ImageRequest::Edit(e) => {
                if e.images.len() > self.max_edit_images {
                    return unsupported(
                        "image",
                        format!(
                            "{} takes at most {} input image(s), got {}",
                            self.model,
                            self.max_edit_images,
                            e.images.len()
                        ),
                    );
                }
                if e.input_fidelity.is_some() && !self.input_fidelity {
                    return unsupported(
                        "input_fidelity",
                        format!("{} does not take input_fidelity", self.model),
                    );
                }
            }
        }
        Ok(())
    }
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a provider cannot serve a request (it is skipped without a network call).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Unsupported {
    /// The provider does not serve this model.
    Model {
        /// The model asked for.
        model: String,
    },
    /// The provider does not do this operation (e.g. edits on a chat-mode proxy).
    Operation {
        /// `"edits"` or `"generations"`.
        operation: &'static str,
        /// Plain-words reason.
        message: String,
    },
    /// A field or value this provider/model does not take.
    Parameter {
        /// The request field.
        field: &'static str,
        /// Plain-words reason.
        message: String,
    },
}

impl Unsupported {
    /// The request field at fault (`"model"` for an unknown model).
    pub fn field(&self) -> &'static str {
        match self {
            Unsupported::Model { .. } => "model",
            Unsupported::Operation { .. } => "operation",
            Unsupported::Parameter { field, .. } => field,
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Model { model } => write!(f, "model {model} is not served here"),
            Unsupported::Operation { message, .. } | Unsupported::Parameter { message, .. } => {
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for Unsupported {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::GenerateRequest;

    #[test]
    fn the_prompt_limit_counts_characters_not_bytes() {
        let caps = Capabilities::permissive("m");
        // 32,000 two-byte characters: 64,000 bytes, past the limit in bytes, within it in
        // characters (the count the limit is in).
        let at_limit = ImageRequest::Generate(GenerateRequest::new("é".repeat(32_000)));
        assert!(caps.check(&at_limit).is_ok());
        let over = ImageRequest::Generate(GenerateRequest::new("é".repeat(32_001)));
        match caps.check(&over) {
            Err(Unsupported::Parameter { field, message }) => {
                assert_eq!(field, "prompt");
                assert!(message.contains("32001 characters"), "{message}");
            }
            other => panic!("expected the prompt refused, got {other:?}"),
        }
        // Short in bytes: never counted, never refused.
        let short = ImageRequest::Generate(GenerateRequest::new("a fox"));
        assert!(caps.check(&short).is_ok());
    }
}
