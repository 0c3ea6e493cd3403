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
//! * Builders validate everything up front (`build()` returns a [`ConfigError`](crate::config_error::ConfigError) naming the
//!   field) so a running router never fails on configuration.
//! * Keys are [`secrecy::SecretString`]s and every `Debug` impl here redacts them.
//! * Each provider builds its URLs and its auth headers in one place (`url` / `headers`),
//!   used by generations, edits and probes alike.
//!
//! # What a provider's answer is trusted with
//!
//! Nothing it says is trusted blindly (see the README's "Security" section): bodies are read
//! against limits the request implies (`CommonOptions`' `max_response_bytes`, in `common.rs`), redirects to
//! another origin are refused, downloads go only to public hosts (or the provider's own, or
//! an allow-list), at most `n` images are kept and each must be a real image of the requested
//! format, retry hints are capped (`max_retry_hint`), reported usage is clamped to what the
//! request can produce, and every string from the answer (message, code, type, param, request
//! id, URLs, revised prompt) is scrubbed of the key and truncated before it leaves the
//! provider (`Sanitize`, in `sanitize.rs`).
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

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::error::ProviderError;
use crate::provider::CallContext;
use crate::request::GenerateRequest;
use crate::response::ProviderResponse;

mod azure;
pub mod classify;
mod compatible;
mod decode;
mod http;
mod image;
mod openai;
mod probe;
mod streaming;

pub use azure::{Azure, AzureAuth, AzureBuilder};
pub use compatible::{Compatible, CompatibleBuilder, CompatibleMode};
pub use http::{client_builder, redirect_policy, shared_client};
pub use key_set::ProviderKeys;
pub use openai::{OpenAi, OpenAiBuilder};
mod base_url;
mod bounds;
mod builder;
mod common;
mod form;
mod key_set;
mod keys;
mod limits;
mod sanitize;

use base_url::{join, parse_api_base_url, parse_base_url};
pub(crate) use builder::common_builder_methods;
use common::{Common, CommonOptions};
use form::edit_form;
use keys::{check_header_safe, check_key, secret_header};
use limits::{Limits, Shape};
use sanitize::{check_usage, sanitized, Sanitize};

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

    /// Sends `request`, reading at most the call's body limit (`origin`: the URL the request
    /// was built with, when the caller keeps it; see `http::execute`).
    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        origin: Option<&url::Url>,
    ) -> Result<http::Received, ProviderError> {
        http::execute(
            &self.common.name,
            request,
            origin,
            self.deadline,
            self.limits.body,
        )
        .await
    }
}

/// Sends an images-endpoint request and decodes the answer (`origin`: the URL the request
/// was built with, when the caller keeps it; `model`: the name reported on the response).
///
/// The request is handed to reqwest when this is called (`http::send`), not when the future
/// is first polled (every caller awaits it at once): the future then holds the pending call,
/// not the request builder, and a provider call's future, allocated for every call, stays
/// within the allocator's small-size cache (issue 16). A failure to send is boxed for the same
/// reason: the future would otherwise carry room for a whole error.
fn send_images<'b>(
    call: &'b Call<'_>,
    request: reqwest::RequestBuilder,
    origin: Option<&'b url::Url>,
    model: &'b str,
) -> impl std::future::Future<Output = Result<ProviderResponse, ProviderError>> + Send + 'b {
    let sent = http::send(&call.common.name, request, origin, call.deadline).map_err(Box::new);
    async move {
        let sent = sent.map_err(|e| *e)?;
        let received = http::finish(&call.common.name, sent, call.limits.body).await?;
        let mut resp = decode::decode_images(call, received, model).await?;
        check_usage(&mut resp, &call.limits, &call.common.name);
        Ok(resp)
    }
}

/// The request of a streamed call for `request` on an images endpoint: the builder from
/// `post(path)`, the body (JSON for generations, multipart for edits, with `stream` and
/// `partial_images` as the router set them; `body_model` replaces or removes the `model`
/// field), and the call's shape for its limits.
async fn stream_images(
    common: &Common,
    ctx: &CallContext,
    request: &crate::request::ImageRequest,
    post: impl FnOnce(&str) -> Result<reqwest::RequestBuilder, ProviderError>,
    body_model: impl FnOnce(&str) -> Option<String>,
    secret: Option<&secrecy::SecretString>,
) -> Result<crate::stream::ProviderStream, ProviderError> {
    use crate::request::ImageRequest;
    match request {
        ImageRequest::Generate(req) => {
            let model = common.model_or_default(req.model.as_deref());
            let shape = Shape::generate(req, model);
            let wire = body_model(model);
            let body = generate_body(req, wire.as_deref(), &common.name)?;
            let rb = post("generations")?.json(&body);
            streaming::send_stream(common, ctx, &shape, rb, model, secret).await
        }
        ImageRequest::Edit(req) => {
            let model = common.model_or_default(req.model.as_deref());
            let shape = Shape::edit(req, model);
            let wire = body_model(model);
            let rb = post("edits")?.multipart(edit_form(req, wire.as_deref()));
            streaming::send_stream(common, ctx, &shape, rb, model, secret).await
        }
    }
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

/// The JSON body of a generation with `model` (as [`generate_body`]), serialized. When the
/// request already names `model` (always the case through the router, which resolves the
/// model first) it is serialized straight from the request, as a direct call would, instead of
/// through an intermediate `serde_json::Value` tree (one allocation per field; issue 16).
/// The same JSON object either way (the key order may differ; JSON objects are unordered).
fn generate_json(
    req: &GenerateRequest,
    model: Option<&str>,
    provider: &str,
) -> Result<Vec<u8>, ProviderError> {
    let encoded = if req.model.as_deref() == model {
        serde_json::to_vec(req)
    } else {
        serde_json::to_vec(&generate_body(req, model, provider)?)
    };
    encoded.map_err(|e| {
        ProviderError::new(
            provider,
            crate::ErrorKind::InvalidRequest,
            format!("cannot encode request: {e}"),
        )
    })
}

/// `request` with a JSON `body` (what `RequestBuilder::json` does with a value already
/// serialized).
fn json_body(request: reqwest::RequestBuilder, body: Vec<u8>) -> reqwest::RequestBuilder {
    request
        .header(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        )
        .body(body)
}

#[cfg(test)]
mod tests;
