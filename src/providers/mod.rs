//! The built-in providers: [`OpenAi`] (direct), [`Azure`] (Azure OpenAI) and [`Compatible`]
//! (OpenAI-compatible proxies, on the images paths or through chat completions).
//!
//! # Design
//!
//! All three share one send path (`http`), one failure classifier ([`classify`]) and one
//! decoder, and differ only in how they build the URL, the auth header and the body. That
//! keeps the error behaviour identical across backends, which is what lets the router make
//! failover decisions from [`ErrorKind`](crate::ErrorKind) alone.
//!
//! * Every call is bounded by [`CallContext::timeout`](crate::CallContext::timeout) (and by the
//!   provider's own `.timeout(..)` cap, if set), including reading the body and downloading
//!   URL images.
//! * What a provider serves is data: the [`Catalog`]'s capabilities narrowed
//!   by the provider kind (Azure: no webp; chat-mode proxies: no edits, one image a call),
//!   optionally restricted by an allow-list (`.models([..])`).
//! * Builders validate everything up front (`build()` returns a [`ConfigError`] naming the
//!   field) so a running router never fails on configuration.
//! * Keys are [`secrecy::SecretString`]s and every `Debug` impl here redacts them.
//! * Each provider builds its URLs and its auth headers in one place (`url` / `headers`),
//!   used by generations, edits and probes alike.
//!
//! # What a provider's answer is trusted with
//!
//! Nothing it says is trusted blindly (see the README's "Security" section): bodies are read
//! against limits the request implies (`CommonOptions`' `max_response_bytes`), redirects to
//! another origin are refused, downloads go only to public hosts (or the provider's own, or
//! an allow-list), at most `n` images are kept and each must be a real image of the requested
//! format, retry hints are capped (`max_retry_hint`), reported usage is clamped to what the
//! request can produce, and every string from the answer (message, code, type, param, request
//! id, URLs, revised prompt) is scrubbed of the key and truncated before it leaves the
//! provider (`Sanitize`).
//!
//! ```
//! use image_router::providers::{Azure, Compatible, CompatibleMode, OpenAi};
//! use image_router::Provider;
//!
//! let openai = OpenAi::builder().api_key("sk-secret-1").build().unwrap();
//! let azure = Azure::builder()
//!     .endpoint("https://my-resource.openai.azure.com")
//!     .api_key("secret-2")
//!     .deployment("gpt-image-1", "img-prod")
//!     .build()
//!     .unwrap();
//! let proxy = Compatible::builder()
//!     .base_url("https://proxy.example.com/v1")
//!     .api_key("secret-3")
//!     .mode(CompatibleMode::Chat)
//!     .build()
//!     .unwrap();
//! assert!(openai.capabilities("gpt-image-1").is_some());
//! assert!(azure.capabilities("dall-e-3").is_none()); // no deployment for it
//! assert!(!proxy.capabilities("gpt-image-1").unwrap().edits);
//! assert!(!format!("{openai:?}{azure:?}{proxy:?}").contains("secret"));
//! ```

// `ProviderError` is the core contract's error type, returned by value by the `Provider`
// trait; boxing it only in these helpers would add allocations without shrinking the trait.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::config_error::ConfigError;
use crate::error::{redact, truncate_text, ProviderError, MAX_FIELD_BYTES, MAX_MESSAGE_BYTES};
use crate::provider::{CallContext, ProbeReport};
use crate::quota::headers::RateLimitHeaders;
use crate::quota::usage::Usage;
use crate::request::Capabilities;
use crate::request::{EditRequest, GenerateRequest, OutputFormat, Size};
use crate::response::ProviderResponse;

mod azure;
pub mod classify;
mod compatible;
mod decode;
mod http;
mod image;
mod openai;
mod probe;

pub use azure::{Azure, AzureAuth, AzureBuilder};
pub use compatible::{Compatible, CompatibleBuilder, CompatibleMode};
pub use http::{client_builder, redirect_policy, shared_client};
pub use openai::{OpenAi, OpenAiBuilder};

/// The default cap on a provider's retry hint (`retry-after`, `retry-after-ms`, a reset
/// header, "try again in …" in a message): ten minutes. A longer hint would keep a provider
/// out of rotation for as long as the provider says, and a hostile or broken one can say
/// "years".
pub const DEFAULT_MAX_RETRY_HINT: Duration = Duration::from_secs(600);

/// The built-in catalog as a shared `Arc` (cloned once).
fn builtin_catalog() -> Arc<Catalog> {
    static BUILTIN: OnceLock<Arc<Catalog>> = OnceLock::new();
    BUILTIN
        .get_or_init(|| Arc::new(Catalog::builtin().clone()))
        .clone()
}

/// Settings every built-in provider has.
#[derive(Clone, Default)]
struct CommonOptions {
    name: Option<String>,
    client: Option<reqwest::Client>,
    catalog: Option<Arc<Catalog>>,
    models: Option<Vec<String>>,
    allow_unknown: Option<bool>,
    timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
    max_retry_hint: Option<Duration>,
    download_hosts: Vec<String>,
}

/// The client image downloads use.
#[derive(Clone)]
enum Downloader {
    /// The application's client (`.client(...)`).
    App(reqwest::Client),
    /// The library's own, built on the first download: most providers never download (GPT
    /// image models answer base64), and building a TLS client costs time at every `build()`.
    Own(Arc<OnceLock<Result<reqwest::Client, ConfigError>>>),
}

impl Common {
    /// The download client (see [`Downloader`]).
    fn downloader(&self) -> Result<reqwest::Client, ProviderError> {
        match &self.download_client {
            Downloader::App(c) => Ok(c.clone()),
            Downloader::Own(cell) => cell
                .get_or_init(|| http::download_client(self.downloads.clone()))
                .clone()
                .map_err(|e| {
                    ProviderError::new(&self.name, crate::ErrorKind::Decode, e.to_string())
                }),
        }
    }
}

/// The validated form of [`CommonOptions`].
#[derive(Clone)]
struct Common {
    name: String,
    client: reqwest::Client,
    /// The client for image downloads: the library's own (same-origin redirects, a resolver
    /// that drops non-public addresses) unless the application gave its own client.
    download_client: Downloader,
    downloads: Arc<http::DownloadRules>,
    catalog: Arc<Catalog>,
    models: Option<BTreeSet<String>>,
    allow_unknown: bool,
    timeout: Option<Duration>,
    max_response_bytes: Option<u64>,
    max_retry_hint: Duration,
}

impl CommonOptions {
    /// Validates the settings; `own_host` is the provider's host (its downloads are allowed).
    fn build(
        self,
        default_name: &str,
        default_allow_unknown: bool,
        own_host: Option<&str>,
    ) -> Result<Common, ConfigError> {
        let name = self.name.unwrap_or_else(|| default_name.to_string());
        if name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        if self.max_response_bytes == Some(0) {
            return Err(ConfigError::new(
                "max_response_bytes",
                "must be greater than zero",
            ));
        }
        if self.max_retry_hint == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "max_retry_hint",
                "must be greater than zero",
            ));
        }
        let models = match self.models {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    return Err(ConfigError::new("models", "allow-list must not be empty"));
                }
                if let Some(bad) = list.iter().find(|m| m.trim().is_empty()) {
                    return Err(ConfigError::new(
                        "models",
                        format!("model names must not be empty (got {bad:?})"),
                    ));
                }
                Some(list.into_iter().collect())
            }
        };
        let mut rules = http::DownloadRules::default();
        for host in &self.download_hosts {
            let h = host.trim().trim_start_matches('[').trim_end_matches(']');
            if h.is_empty() || h.contains(['/', ' ', '?', '#']) {
                return Err(ConfigError::new(
                    "allow_download_hosts",
                    format!("not a host name or address: {host:?}"),
                ));
            }
            rules.allowed.insert(h.to_ascii_lowercase());
        }
        if let Some(h) = own_host {
            rules.allowed.insert(
                h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase(),
            );
        }
        let downloads = Arc::new(rules);
        let (client, download_client) = match self.client {
            Some(c) => (c.clone(), Downloader::App(c)),
            None => (shared_client()?, Downloader::Own(Arc::default())),
        };
        Ok(Common {
            name,
            client,
            download_client,
            downloads,
            catalog: self.catalog.unwrap_or_else(builtin_catalog),
            models,
            allow_unknown: self.allow_unknown.unwrap_or(default_allow_unknown),
            timeout: self.timeout,
            max_response_bytes: self.max_response_bytes,
            max_retry_hint: self.max_retry_hint.unwrap_or(DEFAULT_MAX_RETRY_HINT),
        })
    }
}

/// What a request can produce, in bytes and tokens: the bounds one call's answer is held to.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Most bytes of a success body.
    body: u64,
    /// Most bytes of one downloaded image.
    image: u64,
    /// Most images kept (`n`).
    n: usize,
    /// The format the images must have, when the request named one.
    format: Option<OutputFormat>,
    /// Most input tokens the request can use.
    input_tokens: u64,
    /// Most output tokens the request can produce.
    output_tokens: u64,
}

/// Pixels assumed for one image when neither the request nor the catalog says (a 4096×4096
/// image: larger than any size an OpenAI image model offers).
const FALLBACK_PIXELS: u64 = 4096 * 4096;
/// Bytes per pixel of the largest encoding (8-bit RGBA PNG, uncompressed), plus a fixed
/// headroom per image for chunk and filter overhead.
const BYTES_PER_PIXEL: u64 = 4;
const IMAGE_HEADROOM: u64 = 1024 * 1024;
/// Headroom for the JSON around the images (usage, echo fields, revised prompts).
const BODY_HEADROOM: u64 = 1024 * 1024;
/// Output tokens per image assumed for a model the catalog does not know.
const FALLBACK_OUTPUT_TOKENS_PER_IMAGE: u64 = 50_000;
/// Input tokens assumed at most per input image (edits; high input fidelity included).
const MAX_TOKENS_PER_INPUT_IMAGE: u64 = 20_000;
/// Headroom on token bounds (system prompts of chat proxies, rounding, partial images).
const TOKEN_HEADROOM: u64 = 4096;

/// The request facts the limits derive from.
struct Shape<'a> {
    model: &'a str,
    n: u8,
    size: Option<Size>,
    format: Option<OutputFormat>,
    prompt: &'a str,
    input_images: usize,
}

impl<'a> Shape<'a> {
    fn generate(req: &'a GenerateRequest, model: &'a str) -> Self {
        Shape {
            model,
            n: req.n.unwrap_or(1),
            size: req.size,
            format: req.output_format,
            prompt: &req.prompt,
            input_images: 0,
        }
    }

    fn edit(req: &'a EditRequest, model: &'a str) -> Self {
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
    /// Catalog capabilities (or permissive ones for unknown models, when allowed), `None`
    /// when `model` is not on the allow-list.
    fn base_capabilities(&self, model: &str) -> Option<Capabilities> {
        if let Some(list) = &self.models {
            if !list.contains(model) {
                return None;
            }
        }
        match self.catalog.model(model) {
            Some(spec) => Some(spec.capabilities.clone()),
            None if self.allow_unknown => Some(Capabilities::permissive(model)),
            None => None,
        }
    }

    /// The model a request resolves to (the catalog default when unset).
    fn model_or_default(&self, model: Option<&String>) -> String {
        model
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| self.catalog.default_model().to_string())
    }

    /// The effective timeout and deadline of one call.
    fn deadline(&self, ctx: &CallContext) -> (Duration, Instant) {
        let timeout = match self.timeout {
            Some(cap) => cap.min(ctx.timeout),
            None => ctx.timeout,
        };
        let now = Instant::now();
        // A huge timeout (e.g. `Duration::MAX`) must not overflow the clock: cap it at a year.
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        (timeout, deadline)
    }

    /// The bounds of one call: the largest image the model can return for this request
    /// (its size, else the largest size the catalog lists, else [`FALLBACK_PIXELS`]) at 4
    /// bytes a pixel plus headroom, times `n`, times 4/3 for base64, plus JSON headroom; the
    /// most tokens the model's table allows per image (any quality or size, doubled) times
    /// `n`, and the prompt's bytes plus a bound per input image.
    fn limits(&self, shape: &Shape<'_>) -> Limits {
        let spec = self.catalog.model(shape.model);
        let dims = |s: &Size| {
            s.dims()
                .map(|(w, h)| u64::from(w).saturating_mul(u64::from(h)))
        };
        let pixels = shape
            .size
            .as_ref()
            .and_then(dims)
            .or_else(|| spec.and_then(|m| m.capabilities.sizes.iter().filter_map(dims).max()))
            .unwrap_or(FALLBACK_PIXELS);
        let n = u64::from(shape.n.max(1));
        let per_image = pixels
            .saturating_mul(BYTES_PER_PIXEL)
            .saturating_add(IMAGE_HEADROOM);
        let derived_body =
            (per_image.saturating_mul(n).saturating_mul(4) / 3).saturating_add(BODY_HEADROOM);
        let tokens_per_image = spec
            .map(|m| {
                let table = m.output_tokens.values().flat_map(|t| t.values()).max();
                u64::from(table.copied().unwrap_or(0).max(m.fallback_output_tokens))
            })
            .filter(|t| *t > 0)
            .unwrap_or(FALLBACK_OUTPUT_TOKENS_PER_IMAGE);
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

    fn debug_fields(&self, d: &mut std::fmt::DebugStruct<'_, '_>) {
        d.field("name", &self.name)
            .field("models", &self.models)
            .field("allow_unknown_models", &self.allow_unknown)
            .field("timeout", &self.timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_retry_hint", &self.max_retry_hint)
            .field("allow_download_hosts", &self.downloads.allowed);
    }
}

macro_rules! common_builder_methods {
    () => {
        /// Provider name (unique within a router).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.common.name = Some(name.into());
            self
        }
        /// HTTP client (default: the shared client, see
        /// [`client_builder`](crate::providers::client_builder)). Its redirect policy is its
        /// own; the send path still refuses answers redirected to another origin, and image
        /// downloads through it are checked by address only (see the README's "Security").
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.common.client = Some(client);
            self
        }
        /// Model catalog (default: [`Catalog::builtin`](crate::catalog::Catalog::builtin)).
        pub fn catalog(mut self, catalog: std::sync::Arc<crate::catalog::Catalog>) -> Self {
            self.common.catalog = Some(catalog);
            self
        }
        /// Only serve these models (default: every model the catalog knows).
        pub fn models<I, S>(mut self, models: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.common.models = Some(models.into_iter().map(Into::into).collect());
            self
        }
        /// Serve models the catalog does not know, with permissive capabilities.
        pub fn allow_unknown_models(mut self, allow: bool) -> Self {
            self.common.allow_unknown = Some(allow);
            self
        }
        /// An upper bound on each call, on top of the router's per-call timeout.
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.common.timeout = Some(timeout);
            self
        }
        /// The most bytes a success answer (and each downloaded image) may have. Default:
        /// derived per request from the largest image the model can return for it, times
        /// `n`, with headroom (base64 counted at 4/3). An answer over the limit fails the
        /// attempt with a [`Decode`](crate::ErrorKind::Decode) error naming the limit.
        pub fn max_response_bytes(mut self, bytes: u64) -> Self {
            self.common.max_response_bytes = Some(bytes);
            self
        }
        /// The longest retry hint believed (`retry-after`, reset headers, "try again in …").
        /// Default [`DEFAULT_MAX_RETRY_HINT`](crate::providers::DEFAULT_MAX_RETRY_HINT), ten
        /// minutes; a longer hint is cut to this, noted in the error message and logged.
        pub fn max_retry_hint(mut self, max: std::time::Duration) -> Self {
            self.common.max_retry_hint = Some(max);
            self
        }
        /// Hosts (names or addresses) image downloads may go to even though they are
        /// private, loopback or link-local. The provider's own host is always allowed.
        pub fn allow_download_hosts<I, S>(mut self, hosts: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.common
                .download_hosts
                .extend(hosts.into_iter().map(Into::into));
            self
        }
    };
}
pub(crate) use common_builder_methods;

/// Checks a key is set and not blank.
fn check_key(key: Option<SecretString>, field: &str) -> Result<SecretString, ConfigError> {
    match key {
        None => Err(ConfigError::new(field, "is required")),
        Some(k) => {
            check_header_safe(&k, field)?;
            Ok(k)
        }
    }
}

fn check_header_safe(key: &SecretString, field: &str) -> Result<(), ConfigError> {
    let k = key.expose_secret();
    if k.trim().is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    if k.chars().any(|c| c.is_control() || !c.is_ascii()) {
        return Err(ConfigError::new(
            field,
            "contains characters not allowed in an HTTP header",
        ));
    }
    Ok(())
}

/// Shortest credential that is scrubbed from error text: shorter strings are too likely to
/// occur in ordinary words, and no real key or token is that short.
const MIN_SCRUB_LEN: usize = 8;

/// What leaves a built-in provider is made safe here, in one place: every string that came
/// from the provider (message, code, type, param, request id, content-policy reason, image
/// URLs, revised prompts, probe details) is scrubbed of the credential and truncated, and
/// every retry hint is capped.
///
/// Why: a misconfigured proxy or gateway may echo the credential it received anywhere in its
/// answer ("Incorrect API key provided: <the whole key>", a request-id header), and those
/// strings become the [`ProviderError`]'s `Display`, the router's `Error`, `explain()`, the
/// status JSON and log lines. The provider is the only place that knows the key, so it
/// sanitizes before anything leaves it; nothing in the providers logs before that.
trait Sanitize {
    /// Scrubs `secret` (when given) from every provider string, truncates them, caps hints.
    fn sanitize(&mut self, secret: Option<&str>, common: &Common);
}

/// Scrubs and truncates one string.
fn clean(text: &mut String, secret: Option<&str>, max: usize) {
    if let Some(s) = secret {
        redact(text, s);
    }
    truncate_text(text, max);
}

fn clean_opt(text: &mut Option<String>, secret: Option<&str>, max: usize) {
    if let Some(t) = text.as_mut() {
        clean(t, secret, max);
    }
}

/// Caps every hint in `h` at `max`; returns the longest hint that was cut, if any.
fn cap_rate_limits(h: &mut RateLimitHeaders, max: Duration) -> Option<Duration> {
    let mut capped = None;
    for d in [
        &mut h.reset_requests,
        &mut h.reset_tokens,
        &mut h.retry_after,
    ]
    .into_iter()
    .flatten()
    {
        if *d > max {
            capped = capped.max(Some(*d));
            *d = max;
        }
    }
    capped
}

fn warn_capped(provider: &str, hint: Duration, max: Duration) {
    tracing::warn!(
        provider,
        hint_secs = hint.as_secs(),
        cap_secs = max.as_secs(),
        "retry hint capped"
    );
}

impl Sanitize for ProviderError {
    fn sanitize(&mut self, secret: Option<&str>, common: &Common) {
        clean(&mut self.message, secret, MAX_MESSAGE_BYTES);
        for field in [
            &mut self.code,
            &mut self.error_type,
            &mut self.param,
            &mut self.request_id,
        ] {
            clean_opt(field, secret, MAX_FIELD_BYTES);
        }
        if let crate::ErrorKind::ContentPolicy { reason } = &mut self.kind {
            clean_opt(reason, secret, MAX_MESSAGE_BYTES);
        }
        let max = common.max_retry_hint;
        let mut capped = None;
        if let Some(d) = self.retry_after.filter(|d| *d > max) {
            capped = Some(d);
            self.retry_after = Some(max);
        }
        if let Some(h) = self.rate_limits.as_deref_mut() {
            capped = capped.max(cap_rate_limits(h, max));
        }
        if let Some(hint) = capped {
            self.message.push_str(&format!(
                " (retry hint of {}s capped to {}s)",
                hint.as_secs(),
                max.as_secs()
            ));
            warn_capped(&self.provider, hint, max);
        }
    }
}

impl Sanitize for ProviderResponse {
    fn sanitize(&mut self, secret: Option<&str>, common: &Common) {
        clean_opt(&mut self.request_id, secret, MAX_FIELD_BYTES);
        for image in &mut self.images {
            clean_opt(&mut image.url, secret, MAX_MESSAGE_BYTES);
            clean_opt(&mut image.revised_prompt, secret, MAX_MESSAGE_BYTES);
        }
        if let Some(hint) = cap_rate_limits(&mut self.rate_limits, common.max_retry_hint) {
            warn_capped(&common.name, hint, common.max_retry_hint);
        }
    }
}

impl Sanitize for ProbeReport {
    fn sanitize(&mut self, secret: Option<&str>, common: &Common) {
        clean_opt(&mut self.request_id, secret, MAX_FIELD_BYTES);
        clean_opt(&mut self.detail, secret, MAX_MESSAGE_BYTES);
        clean_opt(&mut self.checked, secret, MAX_MESSAGE_BYTES);
        if let Some(hint) = cap_rate_limits(&mut self.rate_limits, common.max_retry_hint) {
            warn_capped(&common.name, hint, common.max_retry_hint);
        }
    }
}

/// [`Sanitize`] on both sides of a result: the last step of every provider call.
fn sanitized<T: Sanitize>(
    r: Result<T, ProviderError>,
    secret: Option<&SecretString>,
    common: &Common,
) -> Result<T, ProviderError> {
    let secret = secret
        .map(|s| s.expose_secret())
        .filter(|s| s.len() >= MIN_SCRUB_LEN);
    match r {
        Ok(mut v) => {
            v.sanitize(secret, common);
            Ok(v)
        }
        Err(mut e) => {
            e.sanitize(secret, common);
            Err(e)
        }
    }
}

/// Clamps `usage` to what the request can produce (`limits`); returns whether it had to.
///
/// Why: usage drives cost, budgets and the token limiter, and a provider reporting
/// `u64::MAX` tokens would charge billions to the budgets (exhausting a month's budget in one
/// answer). A clamped usage is reported as suspicious by a tracing warning and the counter
/// `image_router_suspicious_usage_total{provider}`; the response keeps the clamped numbers.
fn clamp_usage(usage: &mut Usage, limits: &Limits) -> bool {
    let mut clamped = false;
    let mut clamp = |v: &mut u64, max: u64| {
        if *v > max {
            *v = max;
            clamped = true;
        }
    };
    clamp(&mut usage.input_tokens, limits.input_tokens);
    clamp(
        &mut usage.input_tokens_details.text_tokens,
        limits.input_tokens,
    );
    clamp(
        &mut usage.input_tokens_details.image_tokens,
        limits.input_tokens,
    );
    clamp(&mut usage.output_tokens, limits.output_tokens);
    if let Some(d) = usage.output_tokens_details.as_mut() {
        clamp(&mut d.text_tokens, limits.output_tokens);
        clamp(&mut d.image_tokens, limits.output_tokens);
    }
    clamp(
        &mut usage.total_tokens,
        limits.input_tokens.saturating_add(limits.output_tokens),
    );
    clamped
}

/// Applies [`clamp_usage`] to a response and reports a clamp.
fn check_usage(resp: &mut ProviderResponse, limits: &Limits, provider: &str) {
    if let Some(u) = resp.usage.as_mut() {
        if clamp_usage(u, limits) {
            tracing::warn!(
                provider,
                max_input_tokens = limits.input_tokens,
                max_output_tokens = limits.output_tokens,
                "reported usage exceeds what the request can produce; clamped"
            );
            metrics::counter!(
                "image_router_suspicious_usage_total",
                "provider" => provider.to_string()
            )
            .increment(1);
        }
    }
}

/// A sensitive header value (never printed by reqwest/http).
fn secret_header(
    value: String,
    provider: &str,
) -> Result<reqwest::header::HeaderValue, ProviderError> {
    let mut v = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
        ProviderError::new(
            provider,
            crate::ErrorKind::InvalidRequest,
            "credential is not a valid header value",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Parses and checks an http(s) base URL.
fn parse_base_url(raw: &str, field: &str) -> Result<url::Url, ConfigError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| ConfigError::new(field, format!("not a valid URL ({e}): {raw:?}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(field, "must be an http or https URL"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ConfigError::new(
            field,
            "must be an absolute URL with a host",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(field, "must not have a query or fragment"));
    }
    Ok(url)
}

/// Parses an OpenAI-style API base URL: as [`parse_base_url`]; a full endpoint URL pasted as
/// the base (`…/v1/images/generations`, `…/v1/chat/completions`) loses the endpoint part, and
/// a bare host (`https://proxy.example`, no path) gets the API version path `/v1`.
///
/// Why: OpenAI's and every OpenAI-compatible server's paths live under `/v1`, and leaving
/// `/v1` off the base URL, or pasting the whole endpoint URL, are the most common
/// configuration mistakes (every call then 404s). Any other path (`/v1`, `/openai/v1`,
/// `/api/v2`) is used exactly as given.
fn parse_api_base_url(raw: &str, field: &str) -> Result<url::Url, ConfigError> {
    let mut url = parse_base_url(raw, field)?;
    let path = url.path().trim_end_matches('/').to_string();
    for endpoint in ["/images/generations", "/images/edits", "/chat/completions"] {
        if let Some(base) = path.strip_suffix(endpoint) {
            url.set_path(base);
            break;
        }
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path("/v1");
    }
    Ok(url)
}

/// `base` with `segments` appended (a trailing slash on `base` is ignored).
fn join(base: &url::Url, segments: &[&str]) -> url::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The multipart body of an edit: text fields, images, mask. `model` replaces (or with
/// `None` removes) the request's `model` field.
fn edit_form(req: &EditRequest, model: Option<&str>) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in req.text_fields() {
        if name == "model" {
            continue;
        }
        form = form.text(name, value);
    }
    if let Some(m) = model {
        form = form.text("model", m.to_string());
    }
    let field = req.image_field_name();
    for image in &req.images {
        form = form.part(field, file_part(image));
    }
    if let Some(mask) = &req.mask {
        form = form.part("mask", file_part(mask));
    }
    form
}

/// One file part. The part shares the request's bytes (`Bytes` is reference counted): an
/// edit with sixteen 50 MB images is not copied into the form.
fn file_part(image: &crate::request::InputImage) -> reqwest::multipart::Part {
    let part = || {
        reqwest::multipart::Part::stream_with_length(
            reqwest::Body::from(image.data.clone()),
            image.data.len() as u64,
        )
        .file_name(image.filename.clone())
    };
    // An unparsable content type falls back to a generic one rather than failing the call.
    match part().mime_str(&image.content_type) {
        Ok(p) => p,
        Err(_) => part()
            .mime_str("application/octet-stream")
            .unwrap_or_else(|_| part()),
    }
}

/// One call's context: the provider's settings, the deadline and the request's bounds.
struct Call<'a> {
    common: &'a Common,
    timeout: Duration,
    deadline: Instant,
    limits: Limits,
}

impl<'a> Call<'a> {
    fn new(common: &'a Common, ctx: &CallContext, shape: &Shape<'_>) -> Self {
        let (timeout, deadline) = common.deadline(ctx);
        Call {
            common,
            timeout,
            deadline,
            limits: common.limits(shape),
        }
    }

    /// Sends `request`, reading at most the call's body limit.
    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<http::Received, ProviderError> {
        http::execute(
            &self.common.name,
            request,
            self.deadline,
            self.timeout,
            self.limits.body,
        )
        .await
    }
}

/// Sends an images-endpoint request and decodes the answer (`model`: the name reported on
/// the response).
async fn send_images(
    call: &Call<'_>,
    request: reqwest::RequestBuilder,
    model: &str,
) -> Result<ProviderResponse, ProviderError> {
    let received = call.execute(request).await?;
    let mut resp = decode::decode_images(call, received, model).await?;
    check_usage(&mut resp, &call.limits, &call.common.name);
    Ok(resp)
}

/// The JSON body of a generation with `model` replaced (or removed with `None`).
fn generate_body(
    req: &GenerateRequest,
    model: Option<&str>,
    provider: &str,
) -> Result<serde_json::Value, ProviderError> {
    let mut body = serde_json::to_value(req).map_err(|e| {
        ProviderError::new(
            provider,
            crate::ErrorKind::InvalidRequest,
            format!("cannot encode request: {e}"),
        )
    })?;
    if let Some(obj) = body.as_object_mut() {
        match model {
            Some(m) => {
                obj.insert("model".into(), serde_json::Value::String(m.to_string()));
            }
            None => {
                obj.remove("model");
            }
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::usage::TokenDetails;

    fn common(max_hint: Option<Duration>) -> Common {
        CommonOptions {
            max_retry_hint: max_hint,
            client: Some(reqwest::Client::new()),
            ..CommonOptions::default()
        }
        .build("p", false, Some("127.0.0.1"))
        .unwrap()
    }

    const KEY: &str = "abcdefgh-0123456789";

    #[test]
    fn sanitize_scrubs_every_string_field() {
        let mut e = ProviderError::new(
            "p",
            crate::ErrorKind::ContentPolicy {
                reason: Some(format!("reason {KEY}")),
            },
            format!("message {KEY}"),
        )
        .with_code(format!("code {KEY}"))
        .with_type(format!("type {KEY}"))
        .with_param(format!("param {KEY}"))
        .with_request_id(format!("id {KEY}"));
        e.sanitize(Some(KEY), &common(None));
        let text = format!("{e:?} {e} {}", serde_json::to_string(&e).unwrap());
        assert!(!text.contains(KEY), "{text}");
        assert!(text.matches("[redacted]").count() >= 6, "{text}");
    }

    #[test]
    fn sanitize_truncates_and_caps() {
        let mut e = ProviderError::new("p", crate::ErrorKind::Server, "m".repeat(100_000))
            .with_request_id("r".repeat(10_000))
            .with_retry_after(Some(Duration::from_secs(1_000_000)));
        let mut rl = RateLimitHeaders {
            reset_tokens: Some(Duration::from_secs(10_000_000)),
            ..RateLimitHeaders::default()
        };
        rl.reset_requests = Some(Duration::from_secs(5));
        e = e.with_rate_limits(rl);
        e.sanitize(None, &common(None));
        assert!(
            e.message.len() < MAX_MESSAGE_BYTES + 200,
            "{}",
            e.message.len()
        );
        assert!(e.message.contains("truncated"));
        assert!(e
            .message
            .ends_with("(retry hint of 10000000s capped to 600s)"));
        assert!(e.request_id.as_ref().unwrap().len() < MAX_FIELD_BYTES + 40);
        assert_eq!(e.retry_after, Some(DEFAULT_MAX_RETRY_HINT));
        let rl = e.rate_limits.unwrap();
        assert_eq!(rl.reset_tokens, Some(DEFAULT_MAX_RETRY_HINT));
        assert_eq!(rl.reset_requests, Some(Duration::from_secs(5)));

        let mut e = ProviderError::new("p", crate::ErrorKind::Server, "short")
            .with_retry_after(Some(Duration::from_secs(45)));
        e.sanitize(None, &common(Some(Duration::from_secs(30))));
        assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
        assert!(e.message.contains("capped to 30s"));
    }

    #[test]
    fn limits_follow_the_request() {
        let c = common(None);
        let req = GenerateRequest::new("hi").model("gpt-image-1");
        let one = c.limits(&Shape::generate(&req, "gpt-image-1"));
        let req4 = req.clone().n(4).size(Size::SQUARE);
        let four = c.limits(&Shape::generate(&req4, "gpt-image-1"));
        // 1024×1024 at 4 bytes a pixel, plus headroom, base64: about 7.7 MB for one image.
        assert_eq!(four.image, 1024 * 1024 * 4 + IMAGE_HEADROOM);
        assert_eq!(
            four.body,
            (4 * four.image * 4 / 3) + BODY_HEADROOM,
            "{four:?}"
        );
        // No size: the largest size the catalog lists for the model (larger than square).
        assert!(one.image >= four.image, "{one:?}");
        assert_eq!(four.n, 4);
        assert!(four.output_tokens > one.output_tokens);
        let unknown = c.limits(&Shape::generate(&req, "no-such-model"));
        assert_eq!(unknown.image, FALLBACK_PIXELS * 4 + IMAGE_HEADROOM);
        let fixed = CommonOptions {
            max_response_bytes: Some(123),
            client: Some(reqwest::Client::new()),
            ..CommonOptions::default()
        }
        .build("p", false, None)
        .unwrap()
        .limits(&Shape::generate(&req, "gpt-image-1"));
        assert_eq!((fixed.body, fixed.image), (123, 123));
    }

    #[test]
    fn usage_is_clamped_and_flagged() {
        let c = common(None);
        let req = GenerateRequest::new("hi").model("gpt-image-1");
        let limits = c.limits(&Shape::generate(&req, "gpt-image-1"));
        let mut fine = Usage {
            input_tokens: 10,
            output_tokens: 272,
            total_tokens: 282,
            ..Usage::default()
        };
        let before = fine;
        assert!(!clamp_usage(&mut fine, &limits));
        assert_eq!(fine, before);
        let mut absurd = Usage {
            input_tokens: u64::MAX,
            input_tokens_details: TokenDetails {
                text_tokens: u64::MAX,
                image_tokens: 0,
            },
            output_tokens: u64::MAX,
            output_tokens_details: Some(TokenDetails {
                text_tokens: 0,
                image_tokens: u64::MAX,
            }),
            total_tokens: u64::MAX,
        };
        assert!(clamp_usage(&mut absurd, &limits));
        assert_eq!(absurd.input_tokens, limits.input_tokens);
        assert_eq!(absurd.output_image_tokens(), limits.output_tokens);
        assert_eq!(
            absurd.total_tokens,
            limits.input_tokens + limits.output_tokens
        );
    }

    #[test]
    fn option_checks_name_the_field() {
        let build = |o: CommonOptions| {
            CommonOptions {
                client: Some(reqwest::Client::new()),
                ..o
            }
            .build("p", false, None)
            .err()
            .map(|e| e.field)
        };
        assert_eq!(
            build(CommonOptions {
                max_response_bytes: Some(0),
                ..CommonOptions::default()
            }),
            Some("max_response_bytes".into())
        );
        assert_eq!(
            build(CommonOptions {
                max_retry_hint: Some(Duration::ZERO),
                ..CommonOptions::default()
            }),
            Some("max_retry_hint".into())
        );
        assert_eq!(
            build(CommonOptions {
                download_hosts: vec!["http://x/".into()],
                ..CommonOptions::default()
            }),
            Some("allow_download_hosts".into())
        );
    }
}
