//! The built-in providers' streamed answers: send the request (`http::open`, which classifies
//! a refusal exactly as a plain call), then read the body as server-sent events
//! ([`crate::stream::sse`]) into [`ProviderEvent`]s.
//!
//! Everything after the status line was sent and possibly billed, so every way a stream can
//! break — the connection closed or reset before `completed`, a truncated event, an event
//! that is not JSON, base64 that does not decode, bytes that are not an image, a line or
//! event past the limits — is an [`ErrorKind::Decode`] error with the answer's status (the
//! policy row of a broken 200: fail over, possibly billed, budget held). An error object sent
//! inside the stream is classified like an error body. Every string taken from the answer is
//! scrubbed of the credential (`Sanitize`), as for a plain call.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::stream;
use secrecy::{ExposeSecret, SecretString};

use super::common::Common;
use super::decode::decode_base64;
use super::http::{self, Opened};
use super::image::check_format;
use super::limits::{Limits, Shape};
use super::sanitize::{check_usage, Sanitize};
use crate::error::{ErrorKind, ProviderError};
use crate::provider::CallContext;
use crate::response::{Image, ProviderResponse};
use crate::stream::sse::{SseEvent, SseLimits, SseParser};
use crate::stream::wire::{self, WireEvent};
use crate::stream::{PartialImage, ProviderEvent, ProviderStream};

/// Sends `request` and returns its event stream (`model`: the name reported on the answer).
pub(super) async fn send_stream(
    common: &Common,
    ctx: &CallContext,
    shape: &Shape<'_>,
    request: reqwest::RequestBuilder,
    model: &str,
    secret: Option<&SecretString>,
) -> Result<ProviderStream, ProviderError> {
    let expose = secret.map(|s| s.expose_secret());
    let (timeout, deadline) = common.deadline(ctx);
    let limits = common.limits(shape);
    let opened = http::open(&common.name, request, deadline, timeout)
        .await
        .map_err(|mut e| {
            e.sanitize(expose, common);
            e
        })?;
    if !opened.content_type.starts_with("text/event-stream") {
        let shown = if opened.content_type.is_empty() {
            "no content type".to_string()
        } else {
            opened.content_type.clone()
        };
        let mut e = ProviderError::new(
            &common.name,
            ErrorKind::Decode,
            format!(
                "asked to stream (stream: true) but answered with {shown}, not an event stream"
            ),
        )
        .with_status(opened.status);
        e.sanitize(expose, common);
        return Err(e);
    }
    // One event carries one base64 image: its limit is the image limit in base64, plus room
    // for the JSON around it.
    let per_event = limits
        .image
        .saturating_mul(4)
        .checked_div(3)
        .unwrap_or(u64::MAX)
        .saturating_add(64 * 1024);
    let per_event = usize::try_from(per_event).unwrap_or(usize::MAX);
    let reader = Reader {
        parser: SseParser::with_limits(SseLimits {
            max_line: per_event,
            max_event: per_event,
        }),
        opened,
        queue: VecDeque::new(),
        done: false,
        common: common.clone(),
        secret: secret.cloned(),
        limits,
        model: model.to_string(),
    };
    Ok(Box::pin(stream::unfold(reader, |mut r| async move {
        let item = r.next().await?;
        Some((item, r))
    })))
}

/// The state of one streamed answer.
struct Reader {
    opened: Opened,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    done: bool,
    common: Common,
    secret: Option<SecretString>,
    limits: Limits,
    model: String,
}

impl Reader {
    /// The next event, an error (after which the stream ends), or `None` at the end.
    async fn next(&mut self) -> Option<Result<ProviderEvent, ProviderError>> {
        if self.done {
            return None;
        }
        let item = self.step().await;
        if !matches!(item, Ok(ProviderEvent::Partial(_))) {
            self.done = true;
        }
        Some(item.map_err(|mut e| {
            e.sanitize(
                self.secret.as_ref().map(|s| s.expose_secret()),
                &self.common,
            );
            e
        }))
    }

    async fn step(&mut self) -> Result<ProviderEvent, ProviderError> {
        loop {
            while let Some(event) = self.queue.pop_front() {
                match wire::decode(&event).map_err(|m| self.broken(m))? {
                    WireEvent::Partial { index, b64, echoed } => {
                        let image = self.image(&b64, &format!("partial image {index}"))?;
                        return Ok(ProviderEvent::Partial(PartialImage {
                            index,
                            image,
                            echoed,
                        }));
                    }
                    WireEvent::Completed { b64, usage, echoed } => {
                        let image = self.image(&b64, "the final image")?;
                        let mut resp = ProviderResponse::new(vec![image], self.model.clone());
                        resp.usage = usage;
                        resp.status = self.opened.status;
                        resp.request_id = self.opened.request_id.clone();
                        resp.rate_limits = self.opened.rate_limits;
                        resp.created = echoed.created_at.unwrap_or(0);
                        check_usage(&mut resp, &self.limits, &self.common.name);
                        resp.sanitize(
                            self.secret.as_ref().map(|s| s.expose_secret()),
                            &self.common,
                        );
                        return Ok(ProviderEvent::Completed(resp));
                    }
                    WireEvent::Error(body) => return Err(self.in_stream_error(&body)),
                    WireEvent::Other(kind) => {
                        tracing::debug!(provider = %self.common.name, kind, "stream event ignored");
                    }
                }
            }
            match self.opened.response.chunk().await {
                Ok(Some(chunk)) => self.push(&chunk)?,
                Ok(None) => {
                    let what = if self.parser.has_partial_event() {
                        "the stream ended in the middle of an event, before its completed event"
                    } else {
                        "the stream ended before its completed event"
                    };
                    return Err(self.broken(what.to_string()));
                }
                Err(e) => {
                    return Err(self.broken(format!(
                        "the connection failed before the completed event: {}",
                        transport_reason(&e)
                    )))
                }
            }
        }
    }

    fn push(&mut self, chunk: &Bytes) -> Result<(), ProviderError> {
        let mut out = Vec::new();
        let pushed = self.parser.push(chunk, &mut out);
        self.queue.extend(out);
        pushed.map_err(|e| self.broken(e.to_string()))
    }

    fn image(&self, b64: &str, what: &str) -> Result<Image, ProviderError> {
        let bytes =
            decode_base64(b64).ok_or_else(|| self.broken(format!("{what} is not valid base64")))?;
        if bytes.len() as u64 > self.limits.image {
            return Err(self.broken(format!(
                "{what} exceeds the limit of {} bytes",
                self.limits.image
            )));
        }
        let format = check_format(&bytes, self.limits.format, &self.common.name)
            .map_err(|why| self.broken(format!("{what} {why}")))?;
        Ok(Image::new(Bytes::from(bytes), format))
    }

    /// A broken stream: a `Decode` error with the answer's status and request id.
    fn broken(&self, message: String) -> ProviderError {
        let mut e = ProviderError::new(&self.common.name, ErrorKind::Decode, message)
            .with_status(self.opened.status);
        if let Some(id) = &self.opened.request_id {
            e = e.with_request_id(id.clone());
        }
        e
    }

    /// An error object inside the stream, classified like an error body: as a 400 when it
    /// names a request or safety problem, else as a 500.
    fn in_stream_error(&self, body: &serde_json::Value) -> ProviderError {
        let inner = body.get("error").unwrap_or(body);
        let field = |k: &str| inner.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let text = format!("{} {}", field("type"), field("code")).to_ascii_lowercase();
        let client_side = [
            "invalid_request",
            "user_error",
            "moderation",
            "content_policy",
        ]
        .iter()
        .any(|k| text.contains(k));
        let status = if client_side { 400 } else { 500 };
        let wrapped = serde_json::json!({ "error": inner });
        let bytes = serde_json::to_vec(&wrapped).unwrap_or_default();
        let mut e = super::classify::classify(
            &self.common.name,
            status,
            &reqwest::header::HeaderMap::new(),
            &bytes,
        );
        e.message = format!("in the stream: {}", e.message);
        e.status = Some(self.opened.status);
        e
    }
}

/// A transport error's reason without its URL (which may carry an `api-version` or a key in a
/// proxy's query).
fn transport_reason(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "[url]");
    }
    crate::error::truncate_text(&mut text, 512);
    text
}
