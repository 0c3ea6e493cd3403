//! The whole streamed request: the [`ImageStream`] a caller polls ([`Driven`]) and what it
//! drives ([`drive`]): the request validated as written, preview mode applied and the
//! fallback models resolved as [`Router::send`](crate::Router::send) does
//! (`fallback::prepare`), then the requested model and each fallback model in turn
//! (`fallback::serve_models`), each routed by the streamed attempt loop
//! (`route/stream.rs`, `route_model`). A router in preview mode streams the cheapest form; a
//! fallback model is reached only through [`Error::Exhausted`], which the attempt loop
//! returns only while no partial has reached the caller (or after `restarted` told it to
//! discard them): the same failover rule across models as across providers. `completed`
//! carries `preview` and `fallback`.
//!
//! Its own module, not part of `route/stream.rs`, because it sits above both `fallback` and
//! `route` (`fallback` already uses `route`).
//!
//! Why no spawned task: [`drive`] is polled by the returned stream itself, so dropping the
//! stream drops the attempt in progress — the provider's response (closing the connection),
//! the health guard, and the admission guard, which holds the reservation of a request that
//! was sent and releases one that was not. The stream also measures the caller's time
//! holding events ([`CallerTime`]), which the attempt loop keeps out of the provider's
//! latency.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::fallback;
use super::route::stream::{route_model, CallerTime, Item};
use super::snapshot::Snapshot;
use crate::clock::SharedClock;
use crate::error::Error;
use crate::metrics as m;
use crate::request::{ImageRequest, RequestClass, ValidationError, MAX_PARTIAL_IMAGES};
use crate::stream::{ImageStream, StreamEvent, StreamOptions};

/// The stream a caller polls: it drives [`drive`] and hands out what it sends.
struct Driven {
    driver: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    rx: mpsc::Receiver<Item>,
    /// When the last item was handed to the caller (its time until the next poll is the
    /// caller's, added to `caller`).
    handed_at: Option<Instant>,
    caller: CallerTime,
}

impl Driven {
    /// Hands `item` to the caller, noting when.
    fn hand(&mut self, item: Option<Item>) -> Poll<Option<Item>> {
        if item.is_some() {
            self.handed_at = Some(Instant::now());
        }
        Poll::Ready(item)
    }
}

impl Stream for Driven {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if let Some(at) = self.handed_at.take() {
            self.caller.add(at.elapsed());
        }
        loop {
            if let Poll::Ready(item) = self.rx.poll_recv(cx) {
                return self.hand(item);
            }
            match self.driver.as_mut() {
                // The driver ended (its sender is dropped): what it sent is drained above.
                None => return Poll::Ready(None),
                Some(driver) => match driver.as_mut().poll(cx) {
                    Poll::Ready(()) => self.driver = None,
                    // The driver waits (on the provider, or on the caller taking the event it
                    // sent: a channel of one is the back-pressure); both wake this task.
                    Poll::Pending => {
                        if let Poll::Ready(item) = self.rx.poll_recv(cx) {
                            return self.hand(item);
                        }
                        return Poll::Pending;
                    }
                },
            }
        }
    }
}

/// The routed stream of `req` on `snap` (see the module docs). `before` runs first (the
/// router's check on start, when it has not finished).
pub(crate) fn stream(
    snap: Arc<Snapshot>,
    clock: SharedClock,
    req: ImageRequest,
    class: Option<RequestClass>,
    options: StreamOptions,
    before: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> ImageStream {
    let (tx, rx) = mpsc::channel(1);
    let caller = CallerTime::default();
    let held = caller.clone();
    let driver = async move {
        before.await;
        let span = tracing::info_span!(
            "image_router.request",
            op = req.endpoint(),
            stream = true,
            model = tracing::field::Empty,
            provider = tracing::field::Empty,
        );
        let started = Instant::now();
        let result = drive(&snap, &clock, req, class.as_ref(), &options, &tx, &held)
            .instrument(span)
            .await;
        m::request_finished(m::request_outcome(&result), || started.elapsed());
        if let Err(e) = result {
            // The caller may be gone: nothing to tell then.
            let _ = tx.send(Err(e)).await;
        }
    };
    Box::pin(Driven {
        driver: Some(Box::pin(driver)),
        rx,
        handed_at: None,
        caller,
    })
}

/// Routes one streamed request, sending its events; `Err` is the request's error.
///
/// As [`Router::send`](crate::Router::send): validated as written, preview mode applied and
/// the fallback models resolved (`fallback::prepare`), then the requested model and each
/// fallback model in turn (`fallback::serve_models`), each routed by [`route_model`]. The
/// `completed` event carries the response labelled with `preview` and `fallback`.
async fn drive(
    snap: &Snapshot,
    clock: &SharedClock,
    mut req: ImageRequest,
    class: Option<&RequestClass>,
    options: &StreamOptions,
    tx: &mpsc::Sender<Item>,
    caller: &CallerTime,
) -> Result<(), Error> {
    let started = Instant::now();
    // The streamed request's own checks: `partial_images` is its field, and a stream ends
    // at its one `completed` event: one image. Refused rather than answered with fewer
    // images than asked for.
    if let Some(p) = options.partial_images.filter(|p| *p > MAX_PARTIAL_IMAGES) {
        return Err(ValidationError::new(
            "partial_images",
            format!("partial_images must be between 0 and {MAX_PARTIAL_IMAGES}, got {p}"),
        )
        .into());
    }
    if req.n() > 1 {
        return Err(ValidationError::new(
            "n",
            format!("a streamed request makes one image; got n={}", req.n()),
        )
        .into());
    }
    // Validated as a plain request (a non-streaming fallback sends it so); `options` says
    // what is streamed.
    req.set_stream(None, None);
    let p = fallback::prepare(snap, req)?;
    super::route::record_on_request_span("model", &p.requested);
    let served = fallback::serve_models(snap, p.req, p.preview, p.requested, started, {
        move |req, leg| route_model(snap, clock, req, class, options, tx, caller, leg)
    })
    .await?;
    let _ = tx.send(Ok(StreamEvent::Completed(served))).await;
    Ok(())
}
