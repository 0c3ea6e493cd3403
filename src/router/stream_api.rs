//! The streaming half of the [`Router`]'s public API: [`Router::generate_stream`],
//! [`Router::edit_stream`] and [`Router::send_stream`] (see [`crate::stream`] for the events
//! and the failover rule; the whole streamed request is `stream_driver.rs`, the attempt loop
//! of one model `route/stream.rs`).

use super::Router;
use crate::request::{EditRequest, GenerateRequest, ImageRequest, RequestClass};
use crate::stream::{ImageStream, StreamOptions};

impl Router {
    /// Generates with streamed partial images: a [`Stream`](futures_util::Stream) of
    /// [`StreamEvent`](crate::StreamEvent)s ending with
    /// [`Completed`](crate::StreamEvent::Completed), or an [`Error`](crate::Error) listing
    /// every attempt. Nothing is sent until the stream is polled; dropping it cancels the
    /// request (its connection is closed, its reservation held as for any request that was
    /// sent).
    ///
    /// ```no_run
    /// # async fn run(router: image_router::Router) -> Result<(), image_router::Error> {
    /// use futures_util::StreamExt;
    /// use image_router::{GenerateRequest, StreamEvent, StreamOptions};
    /// let mut events = router.generate_stream(
    ///     GenerateRequest::new("a lighthouse at dusk"),
    ///     StreamOptions::new().partial_images(2),
    /// );
    /// while let Some(event) = events.next().await {
    ///     match event? {
    ///         StreamEvent::Partial { partial, .. } => println!("partial {}", partial.index),
    ///         StreamEvent::Restarted { .. } => println!("discard the partials shown"),
    ///         StreamEvent::Completed(res) => println!("done by {}", res.provider),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn generate_stream(&self, request: GenerateRequest, options: StreamOptions) -> ImageStream {
        self.send_stream(ImageRequest::Generate(request), options, None)
    }

    /// Edits with streamed partial images (`image_edit.*` events); see
    /// [`generate_stream`](Router::generate_stream).
    pub fn edit_stream(&self, request: EditRequest, options: StreamOptions) -> ImageStream {
        self.send_stream(ImageRequest::Edit(request), options, None)
    }

    /// Streams a request of either kind, optionally of a [`RequestClass`] (as
    /// [`send_as`](Router::send_as)). The request's own `stream` / `partial_images` fields
    /// are ignored: `options` says what to ask for.
    pub fn send_stream(
        &self,
        request: ImageRequest,
        options: StreamOptions,
        class: Option<&RequestClass>,
    ) -> ImageStream {
        let snap = self.inner.snapshot.load_full();
        let router = self.clone();
        let check = snap.settings.check_on_start && !self.inner.start_check.initialized();
        let before = Box::pin(async move {
            if check {
                // As `send_as`: wait (bounded) for the check on start before sending.
                router.run_start_check().await;
            }
        });
        super::stream_driver::stream(
            snap,
            self.inner.clock.clone(),
            request,
            class.cloned(),
            options,
            before,
        )
    }
}
