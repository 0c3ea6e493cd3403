//! Per-provider state the router remembers between requests: cool-downs after access,
//! authentication and not-found failures (provider-wide or for one model), and the time until
//! which a provider said it is rate limited.
//!
//! Why: a denial (quota, tier, verification, bad key, missing deployment) does not go away in
//! seconds; paying the same failed attempt on every request wastes latency and quota. The state
//! survives hot reloads for providers that stay (it is keyed by the provider, not the snapshot).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::error::{Outcome, ProviderError};

/// Why a provider is being left alone.
#[derive(Clone, Debug)]
pub(crate) struct Cooldown {
    pub until: Duration,
    pub cause: Outcome,
    pub message: String,
}

#[derive(Debug, Default)]
struct Inner {
    provider: Option<Cooldown>,
    models: HashMap<String, Cooldown>,
    rate_limited_until: Option<Duration>,
}

/// State kept per provider across requests.
#[derive(Debug, Default)]
pub(crate) struct ProviderState {
    inner: Mutex<Inner>,
}

impl ProviderState {
    /// The cool-down that applies to `model` at `now`, if any.
    pub fn cooldown(&self, model: &str, now: Duration) -> Option<Cooldown> {
        let mut g = self.inner.lock();
        if g.provider.as_ref().is_some_and(|c| c.until <= now) {
            g.provider = None;
        }
        if let Some(c) = &g.provider {
            return Some(c.clone());
        }
        match g.models.get(model) {
            Some(c) if c.until > now => Some(c.clone()),
            Some(_) => {
                g.models.remove(model);
                None
            }
            None => None,
        }
    }

    /// Cools the provider down (all models) until `now + for_`.
    pub fn cool_provider(&self, err: &ProviderError, now: Duration, for_: Duration) {
        self.inner.lock().provider = Some(Cooldown {
            until: now + for_,
            cause: err.outcome(),
            message: err.message.clone(),
        });
    }

    /// Cools the provider down for `model` only.
    pub fn cool_model(&self, model: &str, err: &ProviderError, now: Duration, for_: Duration) {
        self.inner.lock().models.insert(
            model.to_string(),
            Cooldown {
                until: now + for_,
                cause: err.outcome(),
                message: err.message.clone(),
            },
        );
    }

    /// Records a 429 that asked to wait until `until`.
    pub fn rate_limited(&self, until: Duration) {
        let mut g = self.inner.lock();
        g.rate_limited_until = Some(g.rate_limited_until.map_or(until, |u| u.max(until)));
    }

    /// Until when the provider said it is rate limited, if that is still ahead of `now`.
    pub fn rate_limited_until(&self, now: Duration) -> Option<Duration> {
        let mut g = self.inner.lock();
        match g.rate_limited_until {
            Some(u) if u > now => Some(u),
            Some(_) => {
                g.rate_limited_until = None;
                None
            }
            None => None,
        }
    }
}
