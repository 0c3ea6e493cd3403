//! The attempt loop of one model of a streamed request ([`crate::stream`]): the same plan →
//! admit → call → settle → decide as [`super::route`], with the call replaced by an event
//! stream and one more rule in *decide*: before the first event reaches the caller the policy
//! table decides as for any request; after a partial image was delivered, a failure ends the
//! stream with [`Error::StreamInterrupted`] unless the caller allowed a restart elsewhere
//! ([`StreamOptions::restart_elsewhere`]), which sends [`StreamEvent::Restarted`] first. The
//! whole request (the stream the caller polls, preview mode, the fallback models) is
//! `router/stream_driver.rs`, which calls [`route_model`] once per model.
//!
//! A child of `route` so it shares the request bookkeeping ([`Run`]) and the slot's
//! admit / settle, and a streamed request counts in limits, budgets, health, breaker and
//! metrics exactly like any other: one admission per attempt, settled once with the
//! `completed` event's usage (which reconciles the reservation) or with the failure's policy
//! row. A stalled or cut stream is a `Timeout { sent: true }` or `Decode` failure, both rows
//! that mark the attempt possibly billed and hold its budget. Streams that ask for partial
//! images are ranked on the providers' time to first partial (`crate::health`), which each
//! attempt records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::{call, later, Leg, Outcome, Run};
use crate::clock::SharedClock;
use crate::error::{Error, ErrorKind, ProviderError, Skip, SkipReason};
use crate::metrics as m;
use crate::provider::CallContext;
use crate::quota::tokens;
use crate::request::{ImageRequest, RequestClass, Unsupported};
use crate::response::ProviderResponse;
use crate::router::plan::{plan, resolve_model, Latency};
use crate::router::slot::Slot;
use crate::router::snapshot::Snapshot;
use crate::router::store::Demand;
use crate::stream::{ProviderEvent, StreamEvent, StreamOptions};

/// What the caller's stream yields.
pub(crate) type Item = Result<StreamEvent, Error>;

/// The time the caller held the stream between taking an event and asking for the next:
/// while it does, the driver is not polled and does not read the provider, so that time is
/// subtracted from the provider's measured latency (see `crate::health`).
#[derive(Clone, Default)]
pub(crate) struct CallerTime(Arc<AtomicU64>);

impl CallerTime {
    pub(crate) fn add(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn total(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

/// How one provider serves this request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Whole,
}
/// Routes one model of a streamed request (`leg`: the request's start and trace so far, as
/// `route` takes it): plan, then admit → stream → settle → decide per attempt. `Ok` is the
/// served response (not yet sent as `completed`: the caller labels it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn route_model(
    snap: &Snapshot,
    clock: &SharedClock,
    mut req: ImageRequest,
    class: Option<&RequestClass>,
    options: &StreamOptions,
    tx: &mpsc::Sender<Item>,
    caller: &CallerTime,
    leg: Leg,
) -> super::Routed {
    let settings = &snap.settings;
    let model = resolve_model(snap, &req);
    req.set_model(model.clone());
    let spec = snap.catalog.model(&model);
    req.validate(spec.map(|s| &s.capabilities))?;
    let mut streamed = req.clone();
    streamed.set_stream(Some(true), options.partial_images);
    let estimate = tokens::estimate(&req, spec, snap.catalog.default_output_tokens_per_image());
    let est_cost = snap.costs.estimate(&model, spec, &req, &estimate);
    let demand = Demand::new(&model, u32::from(req.n()), estimate.total());

    // Plan on the plain request, then keep the providers that stream (first, in their
    // order) and, when allowed, those that do not (after them).
    // Streams that ask for partial images are ranked on the time to the first one.
    let latency = if options.partial_images.unwrap_or(0) > 0 {
        Latency::FirstPartial
    } else {
        Latency::Image
    };
    let mut plan = plan(snap, &req, &model, class, clock.now(), latency);
    let mut modes = vec![None; snap.providers.len()];
    let (mut first, mut then) = (Vec::new(), Vec::new());
    for &idx in &plan.order {
        let slot = &snap.providers[idx];
        let streams = slot.provider.streams(&model) && slot.provider.supports(&streamed).is_ok();
        if streams {
            modes[idx] = Some(Mode::Stream);
            first.push(idx);
        } else if options.allow_non_streaming {
            modes[idx] = Some(Mode::Whole);
            then.push(idx);
        } else {
            let detail = Unsupported::Parameter {
                field: "stream",
                message: format!("{} cannot stream {model}", slot.name()),
            };
            plan.skipped
                .push(Skip::new(slot.name(), SkipReason::Unsupported { detail }));
        }
    }
    first.extend(then);
    plan.order = first;
    plan.log(snap);
    let mut run = Run::new(settings, plan, leg);

    while let Some(idx) = run.next().await {
        let slot = &snap.providers[idx];
        let Some(mode) = modes.get(idx).copied().flatten() else {
            continue;
        };
        let Some((mut admitted, pass)) = run.admit(snap, idx, demand, &est_cost, &model).await
        else {
            continue;
        };

        let (mut a, in_flight) = run.begin(snap, idx, &model, &mut admitted);
        let timeout = run.attempt_timeout();
        let held_before = caller.total();
        let (result, took, partials) = match mode {
            Mode::Stream => {
                let t0 = Instant::now();
                let (result, partials) = attempt(
                    slot, &streamed, &a.model, timeout, a.retry, options, tx, caller,
                )
                .await;
                (result, t0.elapsed(), partials)
            }
            Mode::Whole => {
                let (result, took) = call(slot, &req, timeout, a.retry).await;
                if result.is_ok() {
                    let serving = StreamEvent::Serving {
                        provider: slot.name().to_string(),
                        model: a.model.clone(),
                        streaming: false,
                    };
                    let _ = tx.send(Ok(serving)).await;
                }
                (result, took, 0)
            }
        };

        // Settle exactly as a plain request: usage from `completed` reconciles the
        // reservation; a failure applies its policy row.
        let outcome = Outcome::of(snap, &result, &model, spec, &req, &estimate);
        let best_latency = || crate::router::plan::latency_floor(snap.providers.iter());
        // The caller's time holding events is not the provider's latency.
        let excluded = caller.total().saturating_sub(held_before);
        let args = outcome.settle_args(snap, &model, clock, &best_latency, excluded);
        if let Some(rest) = slot.settle(admitted, pass, in_flight, &result, args) {
            rest.await;
        }
        crate::router::publish_gauges(snap, slot, &model);

        a.took = took;
        match result {
            Ok(resp) => {
                let cost_usd = outcome.cost_usd;
                let (images, tokens) = (demand.images, demand.tokens);
                return Ok(run.served(snap, slot, resp, model, cost_usd, a, images, tokens));
            }
            Err(err) => {
                let rule = outcome.rule_of(&err, settings);
                if partials > 0 {
                    if !options.restart_elsewhere {
                        // Partials were shown: no silent restart elsewhere.
                        m::attempt(&err.provider, err.outcome().as_str(), a.took);
                        m::possibly_billed(&err.provider);
                        run.push_failure(&err, &rule, &a);
                        if let Some(last) = run.attempts.last_mut() {
                            // The request was accepted and partly generated.
                            last.possibly_billed = true;
                        }
                        return Err(Error::StreamInterrupted {
                            error: err,
                            partials_delivered: partials,
                            attempts: std::mem::take(&mut run.attempts),
                            skipped: std::mem::take(&mut run.skipped),
                        });
                    }
                    let restarted = StreamEvent::Restarted {
                        provider: slot.name().to_string(),
                        discarded: partials,
                        error: err.clone(),
                    };
                    let _ = tx.send(Ok(restarted)).await;
                }
                run.failed(idx, err, rule, a, outcome.wait).await?;
            }
        }
    }
    Err(run.exhausted(snap))
}

/// One streamed attempt: open the provider's stream (bounded by `timeout`), announce the
/// provider, forward each partial, and return the `completed` answer or the failure, with
/// the number of partials delivered. The provider's stream is dropped (its connection
/// closed) before this returns. The time to the first partial (less the caller's time) is
/// recorded in the provider's health; so is the wait of a stream that asked for partials
/// and stalled or timed out before any (a lower bound).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    slot: &Slot,
    req: &ImageRequest,
    wire_model: &str,
    timeout: Duration,
    retry: u32,
    options: &StreamOptions,
    tx: &mpsc::Sender<Item>,
    caller: &CallerTime,
) -> (Result<ProviderResponse, ProviderError>, u32) {
    let held_before = caller.total();
    let asked_partials = req.partial_images().unwrap_or(0) > 0;
    // The provider's time since `started`: the caller's holding time taken off.
    let provider_time = |started: Instant| {
        started
            .elapsed()
            .saturating_sub(caller.total().saturating_sub(held_before))
    };
    let mut ctx = CallContext::new(timeout);
    ctx.retry = retry;
    let span = tracing::info_span!(
        "image_router.attempt",
        provider = slot.name(),
        retry,
        stream = true
    );
    let started = Instant::now();
    let deadline = later(started, timeout);
    let timed_out =
        |what: String| ProviderError::new(slot.name(), ErrorKind::Timeout { sent: true }, what);
    let opened = tokio::time::timeout_at(deadline, slot.provider.send_stream(req, &ctx))
        .instrument(span.clone())
        .await;
    let mut events = match opened {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            if asked_partials && e.is_timeout() {
                // No partial within the wait: a lower bound of the time to the first.
                slot.health.record_first_partial(provider_time(started));
            }
            return (Err(e.with_masked_urls()), 0);
        }
        Err(_) => {
            if asked_partials {
                slot.health.record_first_partial(provider_time(started));
            }
            return (
                Err(timed_out(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                ))),
                0,
            );
        }
    };
    let serving = StreamEvent::Serving {
        provider: slot.name().to_string(),
        model: wire_model.to_string(),
        streaming: true,
    };
    let _ = tx.send(Ok(serving)).await;
    let mut partials = 0u32;
    loop {
        let stall_at = later(Instant::now(), options.stall_timeout).min(deadline);
        let next = tokio::time::timeout_at(stall_at, events.next())
            .instrument(span.clone())
            .await;
        match next {
            Ok(Some(Ok(ProviderEvent::Partial(partial)))) => {
                if partials == 0 {
                    let took = provider_time(started);
                    m::stream_first_partial(&slot.metric_keys, took);
                    slot.health.record_first_partial(took);
                }
                partials = partials.saturating_add(1);
                let event = StreamEvent::Partial {
                    provider: slot.name().to_string(),
                    partial,
                };
                let _ = tx.send(Ok(event)).await;
            }
            Ok(Some(Ok(ProviderEvent::Completed(resp)))) => {
                if resp.images.is_empty() {
                    let e = ProviderError::new(
                        slot.name(),
                        ErrorKind::Decode,
                        "the completed event carried no image",
                    )
                    .with_status(resp.status);
                    return (Err(e), partials);
                }
                return (Ok(resp), partials);
            }
            Ok(Some(Err(e))) => return (Err(e.with_masked_urls()), partials),
            Ok(None) => {
                let e = ProviderError::new(
                    slot.name(),
                    ErrorKind::Decode,
                    "the stream ended before its completed event",
                );
                return (Err(e), partials);
            }
            Err(_) if Instant::now() >= deadline => {
                if partials == 0 && asked_partials {
                    slot.health.record_first_partial(provider_time(started));
                }
                let msg = format!("no completed event within {} ms", timeout.as_millis());
                return (Err(timed_out(msg)), partials);
            }
            Err(_) => {
                if partials == 0 && asked_partials {
                    slot.health.record_first_partial(provider_time(started));
                }
                let msg = format!(
                    "the stream stalled: no event within {} ms",
                    options.stall_timeout.as_millis()
                );
                return (Err(timed_out(msg)), partials);
            }
        }
    }
}
