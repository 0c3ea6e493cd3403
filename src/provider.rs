//! The [`Provider`] trait, what a call gets ([`CallContext`]) and what a probe reports
//! ([`ProbeReport`]). The trait's own docs say how to implement it: this module is private
//! and its items are re-exported at the crate root.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::ProviderError;
use crate::quota::headers::RateLimitHeaders;
use crate::request::{Capabilities, Unsupported};
use crate::request::{EditRequest, GenerateRequest, ImageRequest};
use crate::response::ProviderResponse;
use crate::stream::ProviderStream;

/// The future of one provider call, as [`Provider::send`] returns it (the boxed future an
/// `#[async_trait]` `generate` or `edit` returns).
pub type BoxedCall<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ProviderResponse, ProviderError>> + Send + 'a>,
>;

/// Which built-in implementation a provider is (for limits, explanations and status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Direct OpenAI (`"openai"`, as in the config file and [`ProviderKind::as_str`]).
    #[serde(rename = "openai")]
    OpenAi,
    /// Azure OpenAI.
    Azure,
    /// An OpenAI-compatible proxy.
    Compatible,
    /// A user implementation.
    Custom,
}

impl ProviderKind {
    /// `"openai"`, `"azure"`, `"compatible"` or `"custom"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::Compatible => "compatible",
            ProviderKind::Custom => "custom",
        }
    }
}

/// Per-call settings the router passes to a provider.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CallContext {
    /// The call must finish (or fail with a timeout) within this time.
    pub timeout: Duration,
    /// 0 for the first call to this provider within the request, 1 for a retry.
    pub retry: u32,
}

impl CallContext {
    /// A context with `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, retry: 0 }
    }
}

/// What a provider said when checked without generating an image (see [`Provider::probe`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProbeReport {
    /// Whether the provider could be checked at all (`false`: it has no cheap check; the
    /// default implementation of [`Provider::probe`]).
    pub probed: bool,
    /// The model as named on the wire (an Azure deployment, a proxy's renamed model).
    pub model: String,
    /// What was requested (`GET https://…/models/gpt-image-1`), without any key.
    pub checked: Option<String>,
    /// HTTP status of the check.
    pub status: Option<u16>,
    /// Rate-limit headers on the answer, if any.
    pub rate_limits: RateLimitHeaders,
    /// `x-request-id` / `apim-request-id`.
    pub request_id: Option<String>,
    /// Anything else worth showing (e.g. "model listed", "deployment succeeded").
    pub detail: Option<String>,
}

impl ProbeReport {
    /// A report for a provider that cannot be checked without generating.
    pub fn not_probed(model: impl Into<String>) -> Self {
        Self {
            probed: false,
            model: model.into(),
            ..Self::default()
        }
    }

    /// A successful check of `model` with `status`.
    pub fn ok(model: impl Into<String>, status: u16) -> Self {
        Self {
            probed: true,
            model: model.into(),
            status: Some(status),
            ..Self::default()
        }
    }
}

/// An image-generation backend the router can send requests to.
///
/// The trait is object safe (the router holds `Arc<dyn Provider>`) and async through
/// `async-trait`. The three built-in implementations are [`OpenAi`](crate::providers::OpenAi),
/// [`Azure`](crate::providers::Azure) and [`Compatible`](crate::providers::Compatible).
///
/// # Implementing it for your own backend
///
/// A provider must:
/// 1. give a stable [`name`](Provider::name) (unique within a router);
/// 2. say in [`supports`](Provider::supports) whether it can serve a request *without* a network
///    call (the default asks [`capabilities`](Provider::capabilities) for the model);
/// 3. in [`generate`](Provider::generate) / [`edit`](Provider::edit), finish within
///    [`CallContext::timeout`] and classify every failure into a
///    [`ProviderError`] with the right [`ErrorKind`](crate::ErrorKind): the router's
///    decisions (fail over, retry, wait, give up) follow from the kind alone.
///    A success must carry at least one image.
///
/// ```
/// use async_trait::async_trait;
/// use bytes::Bytes;
/// use image_router::{
///     CallContext, Capabilities, EditRequest, ErrorKind, GenerateRequest, Image,
///     OutputFormat, Provider, ProviderError, ProviderResponse,
/// };
///
/// #[derive(Debug)]
/// struct Solid;
///
/// #[async_trait]
/// impl Provider for Solid {
///     fn name(&self) -> &str { "solid" }
///     fn capabilities(&self, model: &str) -> Option<Capabilities> {
///         Some(Capabilities::permissive(model))
///     }
///     async fn generate(&self, req: &GenerateRequest, _ctx: &CallContext)
///         -> Result<ProviderResponse, ProviderError> {
///         let png = Bytes::from_static(b"\x89PNG\r\n\x1a\n");
///         let model = req.model.clone().unwrap_or_default();
///         Ok(ProviderResponse::new(vec![Image::new(png, OutputFormat::Png)], model))
///     }
///     async fn edit(&self, _req: &EditRequest, _ctx: &CallContext)
///         -> Result<ProviderResponse, ProviderError> {
///         Err(ProviderError::new("solid", ErrorKind::InvalidRequest, "no edits"))
///     }
/// }
/// ```
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// Unique name within a router (used in traces, errors, metrics).
    fn name(&self) -> &str;

    /// Which kind of provider this is.
    fn kind(&self) -> ProviderKind {
        ProviderKind::Custom
    }

    /// What this provider accepts for `model` (`None`: it does not serve that model).
    fn capabilities(&self, model: &str) -> Option<Capabilities>;

    /// The name `model` goes by at this provider: a proxy's renamed model, an Azure
    /// deployment. The router records it in every attempt of the trace, failed or not, so
    /// a trace shows what was actually asked of whom. Default: `model` unchanged.
    fn wire_model(&self, model: &str) -> String {
        model.to_string()
    }

    /// The models this provider was configured to serve (an allow-list, an Azure
    /// deployment's models), which [`Router::check`](crate::Router::check) looks up. Empty
    /// (the default): no list, so the check looks up the router's default model.
    fn configured_models(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether this provider can serve `request` (whose model the router has already
    /// resolved). `Err` means skip it without a network call.
    fn supports(&self, request: &ImageRequest) -> Result<(), Unsupported> {
        let model = request.model().unwrap_or_default();
        match self.capabilities(model) {
            Some(caps) => caps.check(request),
            None => Err(Unsupported::Model {
                model: model.to_string(),
            }),
        }
    }

    /// `POST /images/generations`.
    async fn generate(
        &self,
        request: &GenerateRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError>;

    /// `POST /images/edits`.
    async fn edit(
        &self,
        request: &EditRequest,
        ctx: &CallContext,
    ) -> Result<ProviderResponse, ProviderError>;

    /// Checks, without generating an image (and so without cost), that this provider can be
    /// reached, accepts its credentials and serves `model`: OpenAI and proxies
    /// `GET {base}/models/{model}`, Azure the deployment. Failures are classified like a
    /// generation's ([`ErrorKind`](crate::ErrorKind)), so `image-router doctor` can explain
    /// them. Must finish within [`CallContext::timeout`].
    ///
    /// The default answers [`ProbeReport::not_probed`]: a custom provider without a cheap
    /// check is reported as "not checked", never as broken.
    async fn probe(&self, model: &str, _ctx: &CallContext) -> Result<ProbeReport, ProviderError> {
        Ok(ProbeReport::not_probed(model))
    }

    /// Whether every call of this provider ends within [`CallContext::timeout`] by itself,
    /// with a [`Timeout`](crate::ErrorKind::Timeout) error when it runs out (the built-in
    /// providers do: one deadline bounds connecting, sending, reading the answer and
    /// downloading its images). The router then sets no timer of its own around the call
    /// (issue 16). Default `false`: the router bounds the call, whatever the provider does.
    fn bounds_its_calls(&self) -> bool {
        false
    }

    /// Whether this provider can stream `model`'s answers as server-sent events (see
    /// [`crate::stream`]). The router sends a streamed request only to providers that say
    /// so (others are skipped without a call, or serve it whole when the caller allows a
    /// non-streaming fallback). Default `false`: a provider that does not implement
    /// [`send_stream`](Provider::send_stream) is never asked to.
    fn streams(&self, _model: &str) -> bool {
        false
    }

    /// Sends `request` (with `stream: true` set by the router) and returns its events once
    /// the provider accepted it (a 2xx with an event stream); a refusal before that is an
    /// `Err` classified like any other. The stream must end with one
    /// [`ProviderEvent::Completed`](crate::stream::ProviderEvent::Completed) or an error.
    /// The router bounds the whole stream by [`CallContext::timeout`] and each gap between
    /// events by its stall timeout, and dropping the stream must close the connection.
    ///
    /// The default refuses with [`ErrorKind::InvalidRequest`](crate::ErrorKind::InvalidRequest)
    /// (never reached through the router, which asks [`streams`](Provider::streams) first).
    async fn send_stream(
        &self,
        _request: &ImageRequest,
        _ctx: &CallContext,
    ) -> Result<ProviderStream, ProviderError> {
        Err(ProviderError::new(
            self.name(),
            crate::ErrorKind::InvalidRequest,
            "this provider cannot stream",
        ))
    }

    /// Dispatches to [`generate`](Provider::generate) or [`edit`](Provider::edit): their
    /// future itself, not one more boxed future awaiting it (the router calls this once per
    /// attempt; issue 16). Implement `generate` and `edit`; this is not meant to be
    /// overridden.
    fn send<'a>(&'a self, request: &'a ImageRequest, ctx: &'a CallContext) -> BoxedCall<'a>
    where
        Self: 'a,
    {
        match request {
            ImageRequest::Generate(r) => self.generate(r, ctx),
            ImageRequest::Edit(r) => self.edit(r, ctx),
        }
    }
}
