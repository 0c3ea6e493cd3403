//! Streaming partial images: [`Router::generate_stream`](crate::Router::generate_stream) /
//! [`Router::edit_stream`](crate::Router::edit_stream) return a [`Stream`] of
//! [`StreamEvent`]s — which provider and model serve the request, each partial image
//! (decoded bytes and index), and the final image with usage and cost — or an
//! [`Error`] listing every attempt.
//!
//! # On the wire
//!
//! With `stream: true` and `partial_images` (0–3) on `/images/generations` (JSON) or
//! `/images/edits` (multipart fields `stream` and `partial_images`), GPT image models answer
//! with server-sent events: `image_generation.partial_image` (`image_edit.partial_image`)
//! events with `b64_json`, `partial_image_index` and the echoed `size`, `quality`,
//! `background`, `output_format` and `created_at`, then one `image_generation.completed`
//! (`image_edit.completed`) event with the final image and `usage`. The names and fields were
//! checked with the docs search against the OpenAI SDKs' generated reference types
//! (`ImageGenPartialImageEvent`, `ImageEditCompletedEvent`, the `partial_images` parameter:
//! "Value must be between 0 and 3. When set to 0, the response will be a single image sent in
//! one streaming event"; "the final image may be sent before the full number of partial
//! images"). The catalog's `[kinds.azure] stream_api_version` (`2025-04-01-preview`) is the
//! latest dated preview, whose Azure reference documents `stream` / `partial_images` (sources
//! in `providers/azure.toml`; whether earlier previews take them is not documented). Unsure:
//! the shape of an in-stream error (no images-API reference lists one; see `wire.rs`).
//!
//! # The failover rule
//!
//! Before the first event arrives, a streamed request fails over exactly like any other (rate
//! limits, denials, 5xx, connect errors: the policy table). Once a partial image has reached
//! the caller, a failure does **not** silently restart elsewhere: the stream ends with
//! [`Error::StreamInterrupted`], which says how many partials
//! were delivered and lists every attempt, unless the caller opted in with
//! [`StreamOptions::restart_elsewhere`], in which case a [`StreamEvent::Restarted`] tells it to
//! discard the partials shown so far and the request continues on the next provider.
//!
//! The request itself is prepared as [`Router::send`](crate::Router::send) prepares it:
//! preview mode sends its cheapest form, and the fallback models are routed in turn under the
//! same rule (a fallback model is reached only while no partial was shown, or after
//! `Restarted`); [`StreamEvent::Completed`]'s response carries `preview` and `fallback`.
//! Time to the first partial image is a metric and a health signal: streams that ask for
//! partials are ranked on it (see `crate::health`).
//!
//! A stream that stalls (no event within [`StreamOptions::stall_timeout`]) is a timeout; a
//! stream cut before `completed` (connection closed, a truncated event, bad base64, invalid
//! JSON) is an error, never a success; either way the request was sent, so the attempt is
//! marked possibly billed and its budget reservation held, as for a timeout after sending.
//!
//! Why the router drives the stream itself (no spawned task): dropping the returned stream
//! drops the attempt in progress, which closes the connection and lets the admission guard
//! hold (sent) or release (not yet sent) the reservation — the same guarantee a dropped
//! `generate` future has.

pub mod sse;
pub(crate) mod wire;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::Serialize;

use crate::error::{Error, ProviderError};
use crate::response::{Image, ImageResponse, ProviderResponse};

pub use wire::Echoed;

/// The default stall timeout: no event for this long ends the attempt as a timeout.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One partial image.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PartialImage {
    /// `partial_image_index` (0-based).
    pub index: u32,
    /// The decoded image.
    pub image: Image,
    /// The echoed request fields of the event.
    pub echoed: Echoed,
}

/// What a provider's stream yields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ProviderEvent {
    /// A partial image.
    Partial(PartialImage),
    /// The final answer (image, usage, headers): the last event of a stream.
    Completed(ProviderResponse),
}

/// A provider's event stream (see [`Provider::send_stream`](crate::Provider::send_stream)).
/// It must end with exactly one [`ProviderEvent::Completed`] or an error; ending without
/// either is a cut stream, which the router reports as a
/// [`Decode`](crate::ErrorKind::Decode) error.
pub type ProviderStream =
    Pin<Box<dyn Stream<Item = Result<ProviderEvent, ProviderError>> + Send + 'static>>;

/// What a streamed request yields, in order: [`Serving`](StreamEvent::Serving) once per
/// attempt that got an answer, any [`Partial`](StreamEvent::Partial)s,
/// possibly [`Restarted`](StreamEvent::Restarted) (then `Serving` again), and one
/// [`Completed`](StreamEvent::Completed).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StreamEvent {
    /// A provider accepted the request and is answering.
    Serving {
        /// The provider's name.
        provider: String,
        /// The model as named on the wire (an Azure deployment, a proxy's renamed model).
        model: String,
        /// `false` when the caller allowed a non-streaming fallback and this provider
        /// answers with the final image only.
        streaming: bool,
    },
    /// A partial image.
    Partial {
        /// The provider that sent it.
        provider: String,
        /// The image and its index.
        partial: PartialImage,
    },
    /// The provider failed after partials were shown and the caller allowed a restart
    /// elsewhere: discard the partials shown so far; the request continues on the next
    /// provider.
    Restarted {
        /// The provider that failed.
        provider: String,
        /// How many partial images it had delivered.
        discarded: u32,
        /// Why it failed.
        error: ProviderError,
    },
    /// The final image, with usage, cost and the attempt trace (the last event).
    Completed(Box<ImageResponse>),
}

impl StreamEvent {
    /// The event's name in JSON lines and logs: `serving`, `partial`, `restarted`,
    /// `completed`.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Serving { .. } => "serving",
            StreamEvent::Partial { .. } => "partial",
            StreamEvent::Restarted { .. } => "restarted",
            StreamEvent::Completed(_) => "completed",
        }
    }
}

/// The routed stream.
pub type ImageStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, Error>> + Send + 'static>>;

/// How a streamed request behaves (see the module docs).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StreamOptions {
    /// Partial images to ask for, 0–3 (default 2; `None` sends no `partial_images`, the
    /// provider's default).
    pub partial_images: Option<u8>,
    /// After partials were shown, a failure restarts on another provider with a
    /// [`StreamEvent::Restarted`] instead of ending the stream (default `false`).
    pub restart_elsewhere: bool,
    /// Providers that cannot stream may serve the request, delivering the final image as
    /// the one event (default `false`: they are skipped without a call).
    pub allow_non_streaming: bool,
    /// No event for this long ends the attempt as a timeout (default
    /// [`DEFAULT_STALL_TIMEOUT`]). The attempt timeout still bounds the whole attempt.
    pub stall_timeout: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            partial_images: Some(2),
            restart_elsewhere: false,
            allow_non_streaming: false,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

impl StreamOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `partial_images` (0–3; checked when the request is sent, as a
    /// [`ValidationError`](crate::ValidationError) naming `partial_images`).
    #[must_use]
    pub fn partial_images(mut self, n: u8) -> Self {
        self.partial_images = Some(n);
        self
    }
    /// Allows a restart on another provider after partials were shown.
    #[must_use]
    pub fn restart_elsewhere(mut self, yes: bool) -> Self {
        self.restart_elsewhere = yes;
        self
    }
    /// Allows providers that cannot stream (final image as the one event).
    #[must_use]
    pub fn allow_non_streaming(mut self, yes: bool) -> Self {
        self.allow_non_streaming = yes;
        self
    }
    /// Sets the stall timeout.
    #[must_use]
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }
}
