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

use crate::capabilities::Capabilities;
use crate::catalog::Catalog;
use crate::error::{ConfigError, ProviderError};
use crate::provider::CallContext;
use crate::request::{EditRequest, OutputFormat};

mod azure;
pub mod classify;
mod compatible;
mod decode;
mod http;
mod openai;
mod probe;

pub use azure::{Azure, AzureAuth, AzureBuilder};
pub use compatible::{Compatible, CompatibleBuilder, CompatibleMode};
pub use http::shared_client;
pub use openai::{OpenAi, OpenAiBuilder};

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
}

/// The validated form of [`CommonOptions`].
#[derive(Clone)]
struct Common {
    name: String,
    client: reqwest::Client,
    catalog: Arc<Catalog>,
    models: Option<BTreeSet<String>>,
    allow_unknown: bool,
    timeout: Option<Duration>,
}

impl CommonOptions {
    fn build(self, default_name: &str, default_allow_unknown: bool) -> Result<Common, ConfigError> {
        let name = self.name.unwrap_or_else(|| default_name.to_string());
        if name.trim().is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
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
        let client = match self.client {
            Some(c) => c,
            None => shared_client()?,
        };
        Ok(Common {
            name,
            client,
            catalog: self.catalog.unwrap_or_else(builtin_catalog),
            models,
            allow_unknown: self.allow_unknown.unwrap_or(default_allow_unknown),
            timeout: self.timeout,
        })
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

    fn debug_fields(&self, d: &mut std::fmt::DebugStruct<'_, '_>) {
        d.field("name", &self.name)
            .field("models", &self.models)
            .field("allow_unknown_models", &self.allow_unknown)
            .field("timeout", &self.timeout);
    }
}

macro_rules! common_builder_methods {
    () => {
        /// Provider name (unique within a router).
        pub fn name(mut self, name: impl Into<String>) -> Self {
            self.common.name = Some(name.into());
            self
        }
        /// HTTP client (default: the shared client).
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.common.client = Some(client);
            self
        }
        /// Model catalog (default: [`Catalog::builtin`](crate::Catalog::builtin)).
        pub fn catalog(mut self, catalog: std::sync::Arc<crate::Catalog>) -> Self {
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

/// Removes `secret` from every text field of a provider error.
///
/// Why: a misconfigured proxy or gateway may echo the credential it received in its error
/// message ("Incorrect API key provided: <the whole key>"), and that message becomes the
/// [`ProviderError`]'s message, its `Display`, the router's `Error` and `explain()`. The
/// provider is the only place that knows the key, so it scrubs its own errors before they
/// leave it.
fn scrub(mut err: ProviderError, secret: &SecretString) -> ProviderError {
    let s = secret.expose_secret();
    if s.len() < MIN_SCRUB_LEN {
        return err;
    }
    let clean = |t: &mut String| {
        if t.contains(s) {
            *t = t.replace(s, "[redacted]");
        }
    };
    clean(&mut err.message);
    for field in [&mut err.code, &mut err.error_type, &mut err.param] {
        if let Some(t) = field.as_mut() {
            clean(t);
        }
    }
    if let crate::ErrorKind::ContentPolicy { reason: Some(r) } = &mut err.kind {
        clean(r);
    }
    err
}

/// [`scrub`] on the error side of a result.
fn scrubbed<T>(r: Result<T, ProviderError>, secret: &SecretString) -> Result<T, ProviderError> {
    r.map_err(|e| scrub(e, secret))
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

fn file_part(image: &crate::request::InputImage) -> reqwest::multipart::Part {
    let part =
        reqwest::multipart::Part::bytes(image.data.to_vec()).file_name(image.filename.clone());
    // An unparsable content type falls back to a generic one rather than failing the call.
    match part.mime_str(&image.content_type) {
        Ok(p) => p,
        Err(_) => reqwest::multipart::Part::bytes(image.data.to_vec())
            .file_name(image.filename.clone())
            .mime_str("application/octet-stream")
            .unwrap_or_else(|_| reqwest::multipart::Part::bytes(image.data.to_vec())),
    }
}

/// The format to assume when the bytes are not recognisable.
fn fallback_format(f: Option<OutputFormat>) -> OutputFormat {
    f.unwrap_or(OutputFormat::Png)
}

/// Sends an images-endpoint request and decodes the answer.
async fn send_images(
    common: &Common,
    request: reqwest::RequestBuilder,
    model: &str,
    format: Option<OutputFormat>,
    ctx: &CallContext,
) -> Result<crate::ProviderResponse, ProviderError> {
    let (timeout, deadline) = common.deadline(ctx);
    let received = http::execute(&common.name, request, deadline, timeout).await?;
    decode::decode_images(
        &common.name,
        &common.client,
        received,
        model,
        fallback_format(format),
        deadline,
        timeout,
    )
    .await
}

/// The JSON body of a generation with `model` replaced (or removed with `None`).
fn generate_body(
    req: &crate::GenerateRequest,
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
