//! The whole request: validate, preview, route the requested model, then each fallback model
//! in order while none has served it.
//!
//! Fallback is off unless asked for: per request ([`GenerateRequest::fallback_models`],
//! the same on `EditRequest`) or per router ([`RouterBuilder::fallback_models`], config
//! `[router] fallback_models`); the request's list, even empty, overrides the router's.
//!
//! When routing the requested model ends with no provider having served it ([`Error::Exhausted`]:
//! every provider denied, limited past the deadline or `max_wait`, failing, or not offering the
//! model), the first fallback model is routed the same way (`route.rs`), with the request
//! translated to what that model takes (`crate::request::translate`: sizes, qualities, `n`,
//! fields it does not take dropped). A refusal of the request itself ([`Error::Rejected`]: an
//! invalid request, content policy) or an invalid request never falls back: another model
//! would not make it valid. Neither does a request whose deadline has passed.
//!
//! One request, one trace and one deadline: each model's routing continues the trace of the
//! one before (its attempts and skips marked with the fallback model they were for), counts
//! against the same `max_attempts`, and ends at the same deadline. A fallback model the
//! request cannot be translated to (an edit to a model without edits, a prompt longer than it
//! takes) is not routed: every provider is listed as skipped for it, with the reason. The
//! final error, when every model fails, lists every attempt of every model.
//!
//! The response names the model that served it (`ImageResponse::model`), what was asked and
//! what changed (`ImageResponse::fallback`), and its cost uses the served model's prices
//! (the cost is computed per model in `route.rs`).
//!
//! Streamed requests (`Router::send_stream`) go through the same [`prepare`] and the same
//! model loop ([`serve_models`]) with the streamed attempt loop in place of `route`: a router
//! in preview mode streams the cheapest form too, and a stream falls back to another model
//! under its own failover rule (only before the first partial image reached the caller,
//! unless it allowed a restart elsewhere). Its `completed` response carries `preview` and
//! `fallback` as a plain response does.
//!
//! [`GenerateRequest::fallback_models`]: crate::GenerateRequest::fallback_models
//! [`RouterBuilder::fallback_models`]: super::RouterBuilder::fallback_models

use std::future::Future;

use tokio::time::Instant;

use super::plan::resolve_model;
use super::preview;
use super::route::{later, route, Leg, Routed};
use super::snapshot::Snapshot;
use crate::clock::SharedClock;
use crate::error::{Error, Skip, SkipReason};
use crate::request::translate::squash;
use crate::request::{translate, Capabilities, Change, ImageRequest, RequestClass, Unsupported};
use crate::response::{FallbackUsed, ImageResponse, Preview};

/// A request validated and in the form it is routed in: the model resolved, preview mode
/// applied, and the fallback models it may use (its own list, else the router's).
pub(crate) struct Prepared {
    /// The request as routed for its own model (preview applied); its `fallback_models` is
    /// the resolved list, so the response cache's key covers it.
    pub req: ImageRequest,
    /// What preview mode changed, when on.
    pub preview: Option<Preview>,
    /// The model asked for (after preview mode).
    pub requested: String,
}

/// Validates `req` as written (preview mode must not hide a mistake), then applies preview
/// mode and resolves the fallback list.
pub(crate) fn prepare(
    snap: &Snapshot,
    mut req: ImageRequest,
) -> Result<Prepared, crate::request::ValidationError> {
    let settings = &snap.settings;
    // A request that names its model keeps it as it is (no copy); one that does not takes
    // the router's default.
    if req.model().is_none() {
        req.set_model(resolve_model(snap, &req));
    }
    let model = req.model().unwrap_or_default();
    req.validate(snap.catalog.model(model).map(|s| &s.capabilities))?;
    let fallbacks: Vec<String> = match req.fallback_models() {
        Some(own) => own.to_vec(),
        None => settings.fallback_models.clone(),
    };
    req.set_fallback_models(fallbacks);

    // Preview: the cheapest faithful form.
    let mut preview = None;
    if settings.preview.enabled {
        let (cheap, changes) = preview::apply(&snap.catalog, settings.preview, &req);
        req = cheap;
        preview = Some(Preview { changes });
    }
    // `set_model` above made the model present; preview mode keeps one.
    let requested = req.model().unwrap_or_default().to_string();
    Ok(Prepared {
        req,
        preview,
        requested,
    })
}

impl Prepared {
    /// A response from the response cache for this request, labelled as a fresh one would
    /// be: what preview mode changed, and when a fallback model made the cached images, what
    /// the translation to it changed (the same translation as when they were made).
    pub(crate) fn label_cached(&self, snap: &Snapshot, mut resp: ImageResponse) -> ImageResponse {
        resp.preview.clone_from(&self.preview);
        if resp.model != self.requested {
            let changes = for_model(snap, &self.req, &resp.model)
                .map(|(_, changes)| changes)
                .unwrap_or_default();
            resp.fallback = Some(FallbackUsed {
                requested_model: self.requested.clone(),
                model: resp.model.clone(),
                changes,
            });
        }
        resp
    }
}

/// Routes one request (see the module docs).
pub(crate) async fn serve(
    snap: &Snapshot,
    clock: &SharedClock,
    req: ImageRequest,
    class: Option<&RequestClass>,
) -> Routed {
    let p = prepare(snap, req)?;
    serve_prepared(snap, clock, p.req, p.preview, p.requested, class).await
}

/// Routes a [`prepare`]d request: its model, then each fallback model in order.
pub(crate) async fn serve_prepared(
    snap: &Snapshot,
    clock: &SharedClock,
    req: ImageRequest,
    preview: Option<Preview>,
    requested: String,
    class: Option<&RequestClass>,
) -> Routed {
    let started = Instant::now();
    serve_models(snap, req, preview, requested, started, move |req, leg| {
        route(snap, clock, req, class, leg)
    })
    .await
}

/// The model loop of a [`prepare`]d request started at `started`: `route_model` routes the
/// requested model, then each fallback model (translated) while none has served it; the
/// response is labelled with `preview` and the fallback used. `route_model` is [`route`] for
/// a plain request and the streamed attempt loop (`route/stream.rs`) for a streamed one, so
/// both follow the same fallback rules. A streamed request reaches a fallback model only
/// through [`Error::Exhausted`], which its loop returns only while no partial image has
/// reached the caller, or after it was told to discard them (`restarted`): the failover
/// rule of a stream holds across models too.
pub(crate) async fn serve_models<F, Fut>(
    snap: &Snapshot,
    req: ImageRequest,
    preview: Option<Preview>,
    requested: String,
    started: Instant,
    mut route_model: F,
) -> Routed
where
    F: FnMut(ImageRequest, Leg) -> Fut,
    Fut: Future<Output = Routed>,
{
    let settings = &snap.settings;
    let fallbacks: Vec<String> = req
        .fallback_models()
        .map(<[String]>::to_vec)
        .unwrap_or_default();

    // The requested model, then each fallback while none has served it. The request is
    // kept for translating to a fallback model only when there is one: without fallback
    // models it is moved, not cloned (its prompt and lists: issue 16).
    let (first, kept) = if fallbacks.is_empty() {
        (req, None)
    } else {
        (req.clone(), Some(req))
    };
    // Without preview mode the request is routed as `prepare` validated it.
    let validated = preview.is_none();
    let mut err = match route_model(first, Leg::first(started, validated)).await {
        Ok(resp) => return Ok(finish(resp, preview, None)),
        Err(e) => e,
    };
    for fallback in fallbacks.into_iter().filter(|m| *m != requested) {
        // `kept` is `Some` whenever there is a fallback model to loop over.
        let Some(req) = kept.as_ref() else {
            break;
        };
        let (attempts, skipped) = match err {
            Error::Exhausted {
                attempts,
                skipped,
                deadline_exceeded: false,
            } => (attempts, skipped),
            other => return Err(other),
        };
        if Instant::now() >= later(started, settings.deadline) {
            // No time left for another model: the deadline ended the request.
            return Err(Error::Exhausted {
                attempts,
                skipped,
                deadline_exceeded: true,
            });
        }
        let mut leg = Leg {
            started,
            attempts,
            skipped,
            fallback: Some(fallback.clone()),
            validated: false,
        };
        tracing::debug!(from = %requested, to = %fallback, "falling back to another model");
        let (translated, changes) = match for_model(snap, req, &fallback) {
            Ok(t) => t,
            Err(detail) => {
                skip_all(snap, &mut leg, detail);
                err = Error::Exhausted {
                    attempts: leg.attempts,
                    skipped: leg.skipped,
                    deadline_exceeded: false,
                };
                continue;
            }
        };
        err = match route_model(translated, leg).await {
            Ok(resp) => {
                let used = FallbackUsed {
                    requested_model: requested,
                    model: fallback,
                    changes,
                };
                return Ok(finish(resp, preview, Some(used)));
            }
            Err(e) => e,
        };
    }
    Err(err)
}

/// `req` translated for `model`, in its cheapest form when preview mode is on, checked.
fn for_model(
    snap: &Snapshot,
    req: &ImageRequest,
    model: &str,
) -> Result<(ImageRequest, Vec<Change>), Unsupported> {
    // A model the catalog does not know takes the request as it is (as the requested model
    // would): only its name changes.
    let known = snap.catalog.model(model).map(|s| &s.capabilities);
    let caps = known
        .cloned()
        .unwrap_or_else(|| Capabilities::permissive(model));
    let (mut out, mut changes) = translate(req, &caps)?;
    // Its cheapest form is known only from the catalog (as for the requested model).
    if let (true, Some(caps)) = (snap.settings.preview.enabled, known) {
        preview::cheapest(&mut out, caps, &mut changes);
    }
    out.validate(known).map_err(|e| Unsupported::Parameter {
        field: e.field,
        message: e.message,
    })?;
    Ok((out, squash(changes)))
}

/// Every provider skipped for the fallback model of `leg`, for `detail`.
fn skip_all(snap: &Snapshot, leg: &mut Leg, detail: Unsupported) {
    for slot in &snap.providers {
        let mut skip = Skip::new(
            slot.name(),
            SkipReason::Unsupported {
                detail: detail.clone(),
            },
        );
        skip.fallback.clone_from(&leg.fallback);
        leg.skipped.push(skip);
    }
}

fn finish(
    mut resp: Box<ImageResponse>,
    preview: Option<Preview>,
    fallback: Option<FallbackUsed>,
) -> Box<ImageResponse> {
    resp.preview = preview;
    resp.fallback = fallback;
    resp
}
