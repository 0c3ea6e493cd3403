//! The breaker's pass for one call, and the optional cheap probe after a cool-down.
//!
//! With [`RouterBuilder::cheap_probe`](crate::RouterBuilder::cheap_probe), a half-open probe
//! pass is first spent on [`Provider::probe`](crate::Provider::probe) (no image generated): a
//! failed check re-opens the breaker; a good one starts the recovery ramp, which then decides
//! whether the request may follow.

use std::time::Duration;

use tracing::Instrument;

use super::policy;
use super::slot::Slot;
use super::snapshot::Snapshot;
use crate::breaker::{BreakerEffect, BreakerPass};
use crate::error::{ErrorKind, ProviderError};
use crate::metrics as m;
use crate::provider::CallContext;

/// A pass from the provider's breaker, or why there is none (the skip message).
pub(crate) async fn breaker_pass(
    snap: &Snapshot,
    slot: &Slot,
    model: &str,
    deadline: tokio::time::Instant,
) -> Result<BreakerPass, String> {
    let breaker = slot.store.breaker();
    let pass = breaker.acquire().map_err(|r| r.to_string())?;
    if !(pass.is_probe() && snap.settings.cheap_probe) {
        return Ok(pass);
    }
    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
    // Boxed (probes are rare): unboxed, the probe's future would enlarge every request's
    // routing future, which is copied as it is first polled (issue 16).
    let probe = Box::pin(cheap_probe(
        slot,
        model,
        snap.settings.attempt_timeout.min(remaining),
    ));
    match probe.await {
        ProbeVerdict::Unsupported => Ok(pass),
        ProbeVerdict::Healthy => {
            slot.record_breaker(pass, BreakerEffect::Success);
            breaker
                .acquire()
                .map_err(|r| format!("probe succeeded, traffic ramping back: {r}"))
        }
        ProbeVerdict::Failed(err) => {
            let rule = policy::rule(&err.kind, snap.settings.policy());
            Box::pin(slot.apply_breaker_rule(pass, rule.breaker, &err, snap.settings.cooldown))
                .await;
            slot.set_last_error(&err);
            super::publish_gauges(snap, slot, model);
            Err(format!("probe after the cool-down failed: {}", err.message))
        }
    }
}

/// What a cheap half-open probe found.
enum ProbeVerdict {
    /// The provider has no cheap check: the real request is the probe.
    Unsupported,
    /// The check answered.
    Healthy,
    /// The check failed (boxed: errors are large and probes rare).
    Failed(Box<ProviderError>),
}

/// Checks a provider with [`Provider::probe`](crate::Provider::probe), bounded by `timeout`.
async fn cheap_probe(slot: &Slot, model: &str, timeout: Duration) -> ProbeVerdict {
    let ctx = CallContext::new(timeout);
    let span = tracing::info_span!("image_router.probe", provider = slot.name());
    let verdict = match tokio::time::timeout(timeout, slot.provider.probe(model, &ctx))
        .instrument(span)
        .await
    {
        Ok(Ok(report)) if !report.probed => ProbeVerdict::Unsupported,
        Ok(Ok(report)) => {
            if let Err(e) = slot.store.observe(model, &report.rate_limits).await {
                tracing::warn!(provider = slot.name(), error = %e, "probe headers not stored");
            }
            ProbeVerdict::Healthy
        }
        Ok(Err(e)) => ProbeVerdict::Failed(Box::new(e.with_masked_urls())),
        Err(_) => ProbeVerdict::Failed(Box::new(ProviderError::new(
            slot.name(),
            ErrorKind::Timeout { sent: true },
            format!("the probe got no answer within {} ms", timeout.as_millis()),
        ))),
    };
    let label = match &verdict {
        ProbeVerdict::Unsupported => "unsupported",
        ProbeVerdict::Healthy => "healthy",
        ProbeVerdict::Failed(_) => "failed",
    };
    m::probe(slot.name(), label);
    verdict
}
