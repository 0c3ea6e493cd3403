//! Response types: the wire `ImagesResponse` (tolerant of every optional field being absent),
//! the decoded [`Image`], and the router's [`ImageResponse`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Attempt, Skip};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::usage::Usage;
use crate::request::{Change, OutputFormat};

/// `ImagesResponse` exactly as OpenAI and Azure send it. Only `created` is required by the
/// schema; everything else may be absent (and `created` defaults to 0 when a proxy omits it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImagesResponse {
    /// Unix time of creation.
    #[serde(default)]
    pub created: i64,
    /// The images.
    #[serde(default)]
    pub data: Vec<ImageData>,
    /// Echo of `background`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// Echo of `output_format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// Echo of `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Echo of `quality`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Token usage (GPT image models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One element of `data`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ImageData {
    /// Base64 image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64_json: Option<String>,
    /// URL of the image (dall-e `response_format=url`, some proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The prompt the model actually used (dall-e-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

/// A generated image, decoded to bytes.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Image {
    /// The image file's bytes (base64 decoded, or downloaded).
    #[serde(skip)]
    pub bytes: Bytes,
    /// Format, from the bytes themselves when recognisable, else from the request.
    pub format: OutputFormat,
    /// The revised prompt, when the provider returned one.
    pub revised_prompt: Option<String>,
    /// The URL it was downloaded from, if it came as a URL.
    pub url: Option<String>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .field("revised_prompt", &self.revised_prompt)
            .field("url", &self.url)
            .finish()
    }
}

impl Image {
    /// An image from its bytes; `fallback` is used when the bytes' format is not recognised.
    pub fn new(bytes: Bytes, fallback: OutputFormat) -> Self {
        let format = OutputFormat::sniff(&bytes).unwrap_or(fallback);
        Self {
            bytes,
            format,
            revised_prompt: None,
            url: None,
        }
    }

    /// Writes the image to `path` (creating parent folders). If `path` has no extension, the
    /// format's extension is added. Returns the path written.
    pub fn save(&self, path: impl AsRef<Path>) -> std::io::Result<PathBuf> {
        let mut path = path.as_ref().to_path_buf();
        if path.extension().is_none() {
            path.set_extension(self.format.extension());
        }
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        std::fs::write(&path, &self.bytes)?;
        Ok(path)
    }
}

/// What a provider returns for a successful call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProviderResponse {
    /// The images (never empty: an empty answer is a [`Decode`](crate::ErrorKind::Decode) error).
    pub images: Vec<Image>,
    /// Usage, when reported.
    pub usage: Option<Usage>,
    /// Rate-limit headers seen on the response.
    pub rate_limits: RateLimitHeaders,
    /// Time from sending to the full body.
    pub latency: Duration,
    /// HTTP status (200).
    pub status: u16,
    /// `x-request-id` / `apim-request-id`.
    pub request_id: Option<String>,
    /// The model as the provider was asked for it.
    pub model: String,
    /// `created` from the body.
    pub created: i64,
}

impl ProviderResponse {
    /// A response with `images`; other fields empty.
    pub fn new(images: Vec<Image>, model: impl Into<String>) -> Self {
        Self {
            images,
            usage: None,
            rate_limits: RateLimitHeaders::default(),
            latency: Duration::ZERO,
            status: 200,
            request_id: None,
            model: model.into(),
            created: 0,
        }
    }
}

/// The router's answer: the images and where they came from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImageResponse {
    /// The images.
    pub images: Vec<Image>,
    /// Provider that served the request.
    pub provider: String,
    /// Model that served it (as the router resolved it, before provider renaming).
    pub model: String,
    /// Usage, when reported.
    pub usage: Option<Usage>,
    /// What the request cost in USD (from `usage` and the catalog's prices; `None` when the
    /// model's price is unknown and no fallback price is configured).
    pub cost_usd: Option<f64>,
    /// `created` from the provider.
    pub created: i64,
    /// Provider request id.
    pub request_id: Option<String>,
    /// Rate-limit headers on the successful response.
    pub rate_limits: RateLimitHeaders,
    /// Every attempt, the successful one last.
    pub attempts: Vec<Attempt>,
    /// Providers skipped without a call.
    pub skipped: Vec<Skip>,
    /// Total time in the router.
    pub elapsed: Duration,
    /// The serving provider's score when it was chosen, every component, so an application
    /// can log why it was chosen without ranking again (`None` if it was not ranked).
    pub score: Option<crate::score::ScoreBreakdown>,
    /// Whether the images came from the router's response cache (see `image_router::cache`)
    /// rather than from a provider call for this request: a cache hit, or the answer to an
    /// identical request in flight at the same time (single-flight). A cached response has
    /// `cost_usd == Some(0.0)`, no attempts, no usage, request id or rate-limit headers, and
    /// names the provider and model that first made the images; it touched no spend, limit
    /// or health figure of the router.
    pub cached: bool,
    /// `Some` when the router's preview mode turned the request into its cheapest faithful
    /// form ([`PreviewConfig`](crate::PreviewConfig)): what it changed.
    pub preview: Option<Preview>,
    /// `Some` when a fallback model served the request (see
    /// [`GenerateRequest::fallback_models`](crate::GenerateRequest::fallback_models)): the
    /// model asked for and what the translation changed. [`model`](Self::model) names the
    /// model that served it, and `cost_usd` uses its prices.
    pub fallback: Option<FallbackUsed>,
}

/// What preview mode changed in a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Preview {
    /// Every field sent other than as written (empty: the request was already its cheapest
    /// form).
    pub changes: Vec<Change>,
}

/// A request served by a fallback model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FallbackUsed {
    /// The model the request asked for (after preview mode, when on).
    pub requested_model: String,
    /// The fallback model that served it.
    pub model: String,
    /// Every field sent other than the request had it, the model first.
    pub changes: Vec<Change>,
}

impl ImageResponse {
    /// Saves every image as `{stem}.{ext}` (one image) or `{stem}-{i}.{ext}` (several) in
    /// `dir`. Returns the paths written.
    pub fn save_all(&self, dir: impl AsRef<Path>, stem: &str) -> std::io::Result<Vec<PathBuf>> {
        let dir = dir.as_ref();
        let many = self.images.len() > 1;
        self.images
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let name = if many {
                    format!("{stem}-{}.{}", i + 1, img.format.extension())
                } else {
                    format!("{stem}.{}", img.format.extension())
                };
                img.save(dir.join(name))
            })
            .collect()
    }
}
