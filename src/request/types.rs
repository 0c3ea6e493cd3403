//! Request types for `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
//! (multipart), with the exact OpenAI field names.
//!
//! Every optional field is `None` by default and is then not sent at all: the provider's own
//! default applies. The model is a plain string because image models are released and retired
//! every few months; what a known model accepts lives in the catalog (`providers/*.toml`).
//! Validation is in [`super::validate`].

use std::fmt;
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::cache_policy::CachePolicy;
use super::params::{
    Background, InputFidelity, Moderation, OutputFormat, Quality, ResponseFormat, Size, Style,
};

/// Most images an edit request may carry (`image[]` parts).
pub const MAX_EDIT_IMAGES: usize = 16;
/// Largest input image OpenAI accepts for edits.
pub const MAX_INPUT_IMAGE_BYTES: usize = 50 * 1024 * 1024;
/// Largest `n` any model accepts.
pub const MAX_N: u8 = 10;
/// Most partial images a streamed request may ask for (`partial_images`, 0–3).
pub const MAX_PARTIAL_IMAGES: u8 = 3;

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
    /// What this request asks of the router's response cache (default
    /// [`CachePolicy::Use`]); never sent to the provider.
    #[serde(skip)]
    pub cache: CachePolicy,
    /// Models to route in order when no provider can serve `model` (never sent: the router's
    /// own setting). `None`: the router's `fallback_models`; `Some(empty)`: no fallback for
    /// this request. See [`GenerateRequest::fallback_models`].
    #[serde(skip)]
    pub fallback_models: Option<Vec<String>>,
    /// `stream: true` asks for server-sent events (GPT image models). Set by
    /// [`Router::generate_stream`](crate::Router::generate_stream); the plain
    /// [`Router::generate`](crate::Router::generate) refuses it (see [`crate::stream`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub stream: Option<bool>,
    /// How many partial images to stream before the final one, 0–3 (only with `stream`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partial_images: Option<u8>,
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
            cache: CachePolicy::Use,
            fallback_models: None,
            stream: None,
            partial_images: None,
        }
    }

    /// Sets what this request asks of the router's response cache.
    #[must_use]
    pub fn cache(mut self, policy: CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    /// Models the router may route, in order, when no provider can serve this request's
    /// model (all denied, limited past the deadline or `max_wait`, or none offering it). Each
    /// gets the request translated to what it takes, and the response lists what changed.
    /// Overrides the router's list; an empty list turns fallback off for this request.
    ///
    /// ```
    /// use image_router::GenerateRequest;
    /// let req = GenerateRequest::new("a fox").model("gpt-image-1")
    ///     .fallback_models(["gpt-image-1-mini", "dall-e-3"]);
    /// assert_eq!(req.fallback_models.as_deref().unwrap().len(), 2);
    /// // Never on the wire.
    /// assert!(serde_json::to_value(&req).unwrap().get("fallback_models").is_none());
    /// ```
    #[must_use]
    pub fn fallback_models<I, M>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        self.fallback_models = Some(models.into_iter().map(Into::into).collect());
        self
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
        /// Sets `stream` (see [`crate::stream`]).
        stream: bool,
        /// Sets `partial_images` (0–3, with `stream`).
        partial_images: u8,
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
        image_dimensions(&self.data)
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
    /// What this request asks of the router's response cache (default
    /// [`CachePolicy::Use`]); never sent to the provider.
    pub cache: CachePolicy,
    /// Models to route in order when no provider can serve `model`; only models that serve
    /// edits are tried (see [`GenerateRequest::fallback_models`]).
    pub fallback_models: Option<Vec<String>>,
    /// `stream: true`: server-sent events (sent as the form field `stream`; see
    /// [`crate::stream`]).
    pub stream: Option<bool>,
    /// Partial images to stream, 0–3 (the form field `partial_images`, only with `stream`).
    pub partial_images: Option<u8>,
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
            cache: CachePolicy::Use,
            fallback_models: None,
            stream: None,
            partial_images: None,
        }
    }

    /// Sets what this request asks of the router's response cache.
    #[must_use]
    pub fn cache(mut self, policy: CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    /// Models the router may route, in order, when no provider can serve this edit's model;
    /// only models that serve edits are tried. See [`GenerateRequest::fallback_models`].
    #[must_use]
    pub fn fallback_models<I, M>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Into<String>,
    {
        self.fallback_models = Some(models.into_iter().map(Into::into).collect());
        self
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
        /// Sets `stream` (see [`crate::stream`]).
        stream: bool,
        /// Sets `partial_images` (0–3, with `stream`).
        partial_images: u8,
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
        push("stream", self.stream.map(|v| v.to_string()));
        push("partial_images", self.partial_images.map(|v| v.to_string()));
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
    /// Sets the fallback models (the router's resolved list, so the cache key covers it).
    pub(crate) fn set_fallback_models(&mut self, models: Vec<String>) {
        match self {
            ImageRequest::Generate(r) => r.fallback_models = Some(models),
            ImageRequest::Edit(r) => r.fallback_models = Some(models),
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
    /// What the request asks of the response cache.
    pub fn cache_policy(&self) -> CachePolicy {
        match self {
            ImageRequest::Generate(r) => r.cache,
            ImageRequest::Edit(r) => r.cache,
        }
    }
    /// The request's own fallback models, if it names any (see
    /// [`GenerateRequest::fallback_models`]).
    pub fn fallback_models(&self) -> Option<&[String]> {
        match self {
            ImageRequest::Generate(r) => r.fallback_models.as_deref(),
            ImageRequest::Edit(r) => r.fallback_models.as_deref(),
        }
    }
    /// Whether `stream: true` is set.
    pub fn stream(&self) -> bool {
        match self {
            ImageRequest::Generate(r) => r.stream,
            ImageRequest::Edit(r) => r.stream,
        }
        .unwrap_or(false)
    }
    /// The requested number of partial images, if any.
    pub fn partial_images(&self) -> Option<u8> {
        match self {
            ImageRequest::Generate(r) => r.partial_images,
            ImageRequest::Edit(r) => r.partial_images,
        }
    }
    /// Sets `stream` (and `partial_images` when given): how the router marks a streamed
    /// request, and clears them again for a non-streaming fallback.
    pub fn set_stream(&mut self, stream: Option<bool>, partial_images: Option<u8>) {
        match self {
            ImageRequest::Generate(r) => {
                r.stream = stream;
                r.partial_images = partial_images;
            }
            ImageRequest::Edit(r) => {
                r.stream = stream;
                r.partial_images = partial_images;
            }
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
}

/// Width and height of a PNG, JPEG or WebP image from its header; `None` for anything else or
/// a truncated header. Reads only the header bytes, never decodes (the `imagesize` crate: one
/// maintained reader for the token estimate and the edit mask check).
///
/// ```
/// let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
/// png.extend_from_slice(&640u32.to_be_bytes());
/// png.extend_from_slice(&480u32.to_be_bytes());
/// assert_eq!(image_router::quota::tokens::image_dimensions(&png), Some((640, 480)));
/// assert_eq!(image_router::quota::tokens::image_dimensions(b"GIF89a"), None);
/// ```
pub fn image_dimensions(data: &[u8]) -> Option<(u32, u32)> {
    // Only the three formats the API takes: `imagesize` knows many more, which the API does
    // not accept as input images.
    OutputFormat::sniff(data)?;
    let size = imagesize::blob_size(data).ok()?;
    Some((
        u32::try_from(size.width).ok()?,
        u32::try_from(size.height).ok()?,
    ))
}
