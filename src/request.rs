//! Request types for `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
//! (multipart), with the exact OpenAI field names and enum values.
//!
//! Every optional field is `None` by default and is then not sent at all: the provider's own
//! default applies. The model is a plain string because image models are released and retired
//! every few months; what a known model accepts lives in the catalog (`providers/*.toml`).
//!
//! Validation happens before any network call: [`ImageRequest::validate`] checks what is wrong
//! whatever the model (empty prompt, `n` out of range, `output_compression` with png,
//! `transparent` with jpeg) and, given the model's [`Capabilities`], what that model refuses.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::capabilities::Capabilities;
use crate::error::ValidationError;

/// Most images an edit request may carry (`image[]` parts).
pub const MAX_EDIT_IMAGES: usize = 16;
/// Largest input image OpenAI accepts for edits.
pub const MAX_INPUT_IMAGE_BYTES: usize = 50 * 1024 * 1024;
/// Largest `n` any model accepts.
pub const MAX_N: u8 = 10;

/// Image size: `auto` or `WIDTHxHEIGHT`.
///
/// ```
/// use image_router::Size;
/// assert_eq!("1536x1024".parse::<Size>().unwrap(), Size::LANDSCAPE);
/// assert_eq!(Size::SQUARE.to_string(), "1024x1024");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// Let the model choose (`"auto"`).
    Auto,
    /// An explicit size.
    Dims {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl Size {
    /// `1024x1024`.
    pub const SQUARE: Size = Size::Dims {
        width: 1024,
        height: 1024,
    };
    /// `1536x1024`.
    pub const LANDSCAPE: Size = Size::Dims {
        width: 1536,
        height: 1024,
    };
    /// `1024x1536`.
    pub const PORTRAIT: Size = Size::Dims {
        width: 1024,
        height: 1536,
    };

    /// An explicit size.
    pub const fn new(width: u32, height: u32) -> Size {
        Size::Dims { width, height }
    }

    /// Width and height, `None` for `auto`.
    pub fn dims(&self) -> Option<(u32, u32)> {
        match self {
            Size::Auto => None,
            Size::Dims { width, height } => Some((*width, *height)),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Auto => f.write_str("auto"),
            Size::Dims { width, height } => write!(f, "{width}x{height}"),
        }
    }
}

/// A size string that is neither `auto` nor `WIDTHxHEIGHT`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: expected \"auto\" or WIDTHxHEIGHT such as \"1024x1024\"")]
pub struct ParseSizeError(pub String);

impl FromStr for Size {
    type Err = ParseSizeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Size::Auto);
        }
        let (w, h) = t
            .split_once(['x', 'X'])
            .ok_or_else(|| ParseSizeError(s.to_string()))?;
        let width: u32 = w
            .trim()
            .parse()
            .map_err(|_| ParseSizeError(s.to_string()))?;
        let height: u32 = h
            .trim()
            .parse()
            .map_err(|_| ParseSizeError(s.to_string()))?;
        if width == 0 || height == 0 {
            return Err(ParseSizeError(s.to_string()));
        }
        Ok(Size::Dims { width, height })
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value exactly as sent on the wire.
            pub const fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $(if t.eq_ignore_ascii_case($wire) { return Ok($name::$variant); })+
                Err(ParseEnumError {
                    kind: stringify!($name),
                    value: s.to_string(),
                    expected: &[$($wire),+],
                })
            }
        }
    };
}

/// A string that is not one of an enum's wire values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}; expected one of {expected:?}")]
pub struct ParseEnumError {
    /// The type being parsed.
    pub kind: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted values.
    pub expected: &'static [&'static str],
}

wire_enum! {
    /// `quality`: `low | medium | high | auto` for GPT image models, `standard | hd` for dall-e-3.
    Quality {
        /// `auto`: the model's default (high for gpt-image-1).
        Auto = "auto",
        /// `low`.
        Low = "low",
        /// `medium`.
        Medium = "medium",
        /// `high`.
        High = "high",
        /// `standard` (dall-e).
        Standard = "standard",
        /// `hd` (dall-e-3).
        Hd = "hd",
    }
}

wire_enum! {
    /// `output_format`.
    OutputFormat {
        /// `png` (the API's default).
        Png = "png",
        /// `jpeg`.
        Jpeg = "jpeg",
        /// `webp`.
        Webp = "webp",
    }
}

impl OutputFormat {
    /// The MIME type of images in this format.
    pub const fn mime(&self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }

    /// The usual file extension.
    pub const fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// Recognises a format from an image's first bytes.
    pub fn sniff(bytes: &[u8]) -> Option<OutputFormat> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(OutputFormat::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(OutputFormat::Jpeg)
        } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(OutputFormat::Webp)
        } else {
            None
        }
    }
}

wire_enum! {
    /// `background`: transparency of the generated image (GPT image models).
    Background {
        /// `auto`.
        Auto = "auto",
        /// `opaque`.
        Opaque = "opaque",
        /// `transparent` (needs png or webp output).
        Transparent = "transparent",
    }
}

wire_enum! {
    /// `moderation` (generations only, GPT image models).
    Moderation {
        /// `auto`: standard filtering.
        Auto = "auto",
        /// `low`: less restrictive filtering.
        Low = "low",
    }
}

wire_enum! {
    /// `input_fidelity` (edits; not on gpt-image-1-mini).
    InputFidelity {
        /// `high`: preserve faces and details of the input images.
        High = "high",
        /// `low`.
        Low = "low",
    }
}

wire_enum! {
    /// `style` (dall-e-3 only).
    Style {
        /// `vivid`.
        Vivid = "vivid",
        /// `natural`.
        Natural = "natural",
    }
}

wire_enum! {
    /// `response_format` (dall-e only; GPT image models always return base64).
    ResponseFormat {
        /// `url`: the provider returns a short-lived URL (the router downloads it).
        Url = "url",
        /// `b64_json`: the image inline as base64.
        B64Json = "b64_json",
    }
}

/// A `POST /images/generations` request body.
///
/// Serializes to exactly the JSON OpenAI expects; unset fields are omitted.
///
/// ```
/// use image_router::{GenerateRequest, Quality, Size};
/// let req = GenerateRequest::new("a lighthouse at dusk")
///     .model("gpt-image-1")
///     .size(Size::SQUARE)
///     .quality(Quality::Low);
/// let json = serde_json::to_value(&req).unwrap();
/// assert_eq!(json, serde_json::json!({
///     "prompt": "a lighthouse at dusk", "model": "gpt-image-1",
///     "size": "1024x1024", "quality": "low"
/// }));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct GenerateRequest {
    /// The text prompt (required).
    pub prompt: String,
    /// Model name; when `None` the router's default model is used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    /// Number of images, 1–10 (dall-e-3: 1).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<u8>,
    /// Image size.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<Size>,
    /// Quality.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub quality: Option<Quality>,
    /// Background transparency.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub background: Option<Background>,
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_format: Option<OutputFormat>,
    /// Compression 0–100, only with jpeg or webp.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_compression: Option<u8>,
    /// Moderation level.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub moderation: Option<Moderation>,
    /// End-user identifier for abuse monitoring.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    /// dall-e-3 style.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub style: Option<Style>,
    /// dall-e response format.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response_format: Option<ResponseFormat>,
}

macro_rules! setters {
    ($($(#[$m:meta])* $field:ident : $ty:ty),+ $(,)?) => {
        $(
            $(#[$m])*
            #[must_use]
            pub fn $field(mut self, value: impl Into<$ty>) -> Self {
                self.$field = Some(value.into());
                self
            }
        )+
    };
}

impl GenerateRequest {
    /// A request with only a prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            model: None,
            n: None,
            size: None,
            quality: None,
            background: None,
            output_format: None,
            output_compression: None,
            moderation: None,
            user: None,
            style: None,
            response_format: None,
        }
    }

    setters! {
        /// Sets `model`.
        model: String,
        /// Sets `n`.
        n: u8,
        /// Sets `size`.
        size: Size,
        /// Sets `quality`.
        quality: Quality,
        /// Sets `background`.
        background: Background,
        /// Sets `output_format`.
        output_format: OutputFormat,
        /// Sets `output_compression` (0–100, jpeg/webp only).
        output_compression: u8,
        /// Sets `moderation`.
        moderation: Moderation,
        /// Sets `user`.
        user: String,
        /// Sets `style` (dall-e-3).
        style: Style,
        /// Sets `response_format` (dall-e).
        response_format: ResponseFormat,
    }
}

/// An input image for an edit (or its mask).
#[derive(Clone, PartialEq, Eq)]
pub struct InputImage {
    /// The file's bytes.
    pub data: Bytes,
    /// File name sent in the multipart part.
    pub filename: String,
    /// MIME type sent in the multipart part (`image/png`, `image/jpeg`, `image/webp`).
    pub content_type: String,
}

impl fmt::Debug for InputImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputImage")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("len", &self.data.len())
            .finish()
    }
}

impl InputImage {
    /// An image from bytes; the MIME type is recognised from the bytes (png if unknown).
    pub fn new(data: impl Into<Bytes>, filename: impl Into<String>) -> Self {
        let data = data.into();
        let content_type = OutputFormat::sniff(&data)
            .unwrap_or(OutputFormat::Png)
            .mime()
            .to_string();
        Self {
            data,
            filename: filename.into(),
            content_type,
        }
    }

    /// Reads an image file.
    pub fn from_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref();
        let data = std::fs::read(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image.png".to_string());
        Ok(Self::new(data, name))
    }

    /// Width and height read from a PNG header, if this is a PNG.
    pub fn png_dimensions(&self) -> Option<(u32, u32)> {
        if OutputFormat::sniff(&self.data) != Some(OutputFormat::Png) {
            return None;
        }
        crate::tokens::image_dimensions(&self.data)
    }
}

/// A `POST /images/edits` request (sent as multipart/form-data).
///
/// One image is sent as the part `image`; several (up to 16) as repeated `image[]` parts.
///
/// ```
/// use image_router::{EditRequest, InputImage};
/// let png = std::fs::read("tests/data/pixel.png").unwrap_or_default();
/// let req = EditRequest::new("add a red hat", vec![InputImage::new(png, "cat.png")])
///     .model("gpt-image-1");
/// assert_eq!(req.images.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EditRequest {
    /// The text prompt (required).
    pub prompt: String,
    /// Images to edit (1–16).
    pub images: Vec<InputImage>,
    /// Optional mask (png, same size as the first image).
    pub mask: Option<InputImage>,
    /// Model name; when `None` the router's default model is used.
    pub model: Option<String>,
    /// Number of images.
    pub n: Option<u8>,
    /// Output size.
    pub size: Option<Size>,
    /// Quality.
    pub quality: Option<Quality>,
    /// Background transparency.
    pub background: Option<Background>,
    /// Output format.
    pub output_format: Option<OutputFormat>,
    /// Compression 0–100, only with jpeg or webp.
    pub output_compression: Option<u8>,
    /// Input fidelity.
    pub input_fidelity: Option<InputFidelity>,
    /// End-user identifier.
    pub user: Option<String>,
}

impl EditRequest {
    /// An edit of `images` with `prompt`.
    pub fn new(prompt: impl Into<String>, images: Vec<InputImage>) -> Self {
        Self {
            prompt: prompt.into(),
            images,
            mask: None,
            model: None,
            n: None,
            size: None,
            quality: None,
            background: None,
            output_format: None,
            output_compression: None,
            input_fidelity: None,
            user: None,
        }
    }

    setters! {
        /// Sets the mask.
        mask: InputImage,
        /// Sets `model`.
        model: String,
        /// Sets `n`.
        n: u8,
        /// Sets `size`.
        size: Size,
        /// Sets `quality`.
        quality: Quality,
        /// Sets `background`.
        background: Background,
        /// Sets `output_format`.
        output_format: OutputFormat,
        /// Sets `output_compression`.
        output_compression: u8,
        /// Sets `input_fidelity`.
        input_fidelity: InputFidelity,
        /// Sets `user`.
        user: String,
    }

    /// The non-file form fields in wire order, as `(name, value)`; unset fields are absent.
    pub fn text_fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("prompt", self.prompt.clone())];
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        push("model", self.model.clone());
        push("n", self.n.map(|v| v.to_string()));
        push("size", self.size.map(|v| v.to_string()));
        push("quality", self.quality.map(|v| v.to_string()));
        push("background", self.background.map(|v| v.to_string()));
        push("output_format", self.output_format.map(|v| v.to_string()));
        push(
            "output_compression",
            self.output_compression.map(|v| v.to_string()),
        );
        push("input_fidelity", self.input_fidelity.map(|v| v.to_string()));
        push("user", self.user.clone());
        out
    }

    /// The multipart field name for the images: `image` for one, `image[]` for several.
    pub fn image_field_name(&self) -> &'static str {
        if self.images.len() == 1 {
            "image"
        } else {
            "image[]"
        }
    }
}

/// Either kind of request, as the router and [`Provider::supports`](crate::Provider::supports)
/// see it.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageRequest {
    /// A generation.
    Generate(GenerateRequest),
    /// An edit.
    Edit(EditRequest),
}

impl From<GenerateRequest> for ImageRequest {
    fn from(r: GenerateRequest) -> Self {
        ImageRequest::Generate(r)
    }
}

impl From<EditRequest> for ImageRequest {
    fn from(r: EditRequest) -> Self {
        ImageRequest::Edit(r)
    }
}

impl ImageRequest {
    /// The prompt.
    pub fn prompt(&self) -> &str {
        match self {
            ImageRequest::Generate(r) => &r.prompt,
            ImageRequest::Edit(r) => &r.prompt,
        }
    }
    /// The model, if set.
    pub fn model(&self) -> Option<&str> {
        match self {
            ImageRequest::Generate(r) => r.model.as_deref(),
            ImageRequest::Edit(r) => r.model.as_deref(),
        }
    }
    /// Sets the model.
    pub fn set_model(&mut self, model: impl Into<String>) {
        let m = Some(model.into());
        match self {
            ImageRequest::Generate(r) => r.model = m,
            ImageRequest::Edit(r) => r.model = m,
        }
    }
    /// `n`, defaulting to 1.
    pub fn n(&self) -> u8 {
        match self {
            ImageRequest::Generate(r) => r.n,
            ImageRequest::Edit(r) => r.n,
        }
        .unwrap_or(1)
    }
    /// The requested size, if any.
    pub fn size(&self) -> Option<Size> {
        match self {
            ImageRequest::Generate(r) => r.size,
            ImageRequest::Edit(r) => r.size,
        }
    }
    /// The requested quality, if any.
    pub fn quality(&self) -> Option<Quality> {
        match self {
            ImageRequest::Generate(r) => r.quality,
            ImageRequest::Edit(r) => r.quality,
        }
    }
    /// The requested background, if any.
    pub fn background(&self) -> Option<Background> {
        match self {
            ImageRequest::Generate(r) => r.background,
            ImageRequest::Edit(r) => r.background,
        }
    }
    /// The requested output format, if any.
    pub fn output_format(&self) -> Option<OutputFormat> {
        match self {
            ImageRequest::Generate(r) => r.output_format,
            ImageRequest::Edit(r) => r.output_format,
        }
    }
    /// The requested output compression, if any.
    pub fn output_compression(&self) -> Option<u8> {
        match self {
            ImageRequest::Generate(r) => r.output_compression,
            ImageRequest::Edit(r) => r.output_compression,
        }
    }
    /// Whether this is an edit.
    pub fn is_edit(&self) -> bool {
        matches!(self, ImageRequest::Edit(_))
    }
    /// `"generations"` or `"edits"`: the endpoint's last path segment.
    pub fn endpoint(&self) -> &'static str {
        if self.is_edit() {
            "edits"
        } else {
            "generations"
        }
    }

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
