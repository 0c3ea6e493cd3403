//! The admission probe: "could this request be admitted now, and when if not", without
//! reserving anything ([`Router::admission`]).
//!
//! Why: a queue worker must claim a job only when some provider has room for it, so jobs wait
//! in the durable queue rather than as sleeping tasks in worker memory, and a burst of
//! submissions never turns into upstream 429s. The probe runs the same plan as a request
//! (capability, request class, denials and cool-downs, the breaker) and then asks each planned
//! provider's store whether its rate limits would admit the request's demand (the same
//! read-only check the router uses to explain a skip). It is a *read*: with a shared store the
//! answer may be slightly stale and another instance may take the room first; the request's
//! own admission stays authoritative, so the worst case is a short wait inside the router,
//! never a request over the limit.

use std::time::Duration;

use super::plan::{plan, resolve_model};
use super::store::Demand;
use super::Router;
use crate::error::SkipReason;
use crate::quota::tokens;
use crate::request::{ImageRequest, RequestClass};

/// When no provider reports when it will have room (a cool-down or an open breaker without
/// a known end), the probe suggests asking again after this long.
pub const ADMISSION_RECHECK: Duration = Duration::from_secs(1);

/// A refusal whose room comes back within this long counts as room now.
const ROOM_DUE: Duration = Duration::from_millis(1);

/// The answer of [`Router::admission`].
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Some provider has room now: the first one in the plan that has.
    Now {
        /// Its name.
        provider: String,
    },
    /// No room now; the earliest a provider of the plan will have room, from now.
    At(Duration),
    /// It can never be admitted as it is (invalid for the model, no provider can serve it,
    /// or it can never fit in a provider's limits), in plain words.
    Never(String),
}

impl Router {
    /// Whether `request` (of `class`) could be admitted now, and when if not, without
    /// reserving anything. See [`Admission`] and the module docs of `admission.rs`.
    ///
    /// ```
    /// use image_router::{providers::OpenAi, Admission, GenerateRequest, ProviderOptions, Router};
    /// let router = Router::builder()
    ///     .provider_with(OpenAi::builder().api_key("k").build().unwrap(), ProviderOptions::new().rpm(5))
    ///     .build()
    ///     .unwrap();
    /// let req = GenerateRequest::new("a fox").model("gpt-image-1").into();
    /// assert!(matches!(router.admission(&req, None), Admission::Now { .. }));
    /// ```
    pub fn admission(&self, request: &ImageRequest, class: Option<&RequestClass>) -> Admission {
        let snap = self.inner.snapshot.load();
        let mut req = request.clone();
        let model = resolve_model(&snap, &req);
        req.set_model(model.clone());
        let spec = snap.catalog.model(&model);
        if let Err(e) = req.validate(spec.map(|s| &s.capabilities)) {
            return Admission::Never(e.to_string());
        }
        let estimate = tokens::estimate(&req, spec, snap.catalog.default_output_tokens_per_image());
        let demand = Demand::new(&model, u32::from(req.n()), estimate.total());
        let now = self.inner.clock.now();
        let plan = plan(&snap, &req, &model, class, now);

        let mut earliest: Option<Duration> = None;
        let mut wait = |d: Duration| {
            earliest = Some(earliest.map_or(d, |e| e.min(d)));
        };
        let mut never = Vec::new();
        for &i in &plan.order {
            let slot = &snap.providers[i];
            if slot.store.breaker().is_blocking() {
                wait(ADMISSION_RECHECK);
                continue;
            }
            match slot.store.rate_limit_check(demand) {
                Ok(()) => {
                    return Admission::Now {
                        provider: slot.name().to_string(),
                    }
                }
                Err(denied) => match denied.retry_in() {
                    // The room is due back now: a shared store's cached view of the window
                    // is refreshed only by admissions, so after a full window it says "no
                    // room, back in 0 ms" until someone asks; the request's own admission
                    // (authoritative) asks.
                    Some(d) if d <= ROOM_DUE => {
                        return Admission::Now {
                            provider: slot.name().to_string(),
                        }
                    }
                    Some(d) => wait(d),
                    None => never.push(format!("{}: {}", slot.name(), denied)),
                },
            }
        }
        for skip in &plan.skipped {
            match &skip.reason {
                SkipReason::CoolingDown { remaining, .. } => wait(*remaining),
                SkipReason::CircuitOpen { .. }
                | SkipReason::NoHeadroom { .. }
                | SkipReason::Budget { .. } => wait(ADMISSION_RECHECK),
                other => never.push(format!("{}: {other}", skip.provider)),
            }
        }
        match earliest {
            Some(d) => Admission::At(d),
            None if never.is_empty() => Admission::Never("no provider is configured".into()),
            None => Admission::Never(format!(
                "no provider can ever admit this request: {}",
                never.join("; ")
            )),
        }
    }
}
