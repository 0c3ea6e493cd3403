//! Per-provider state the router remembers between requests: cool-downs after access,
//! authentication and not-found failures (provider-wide or for one model). Rate limits live in
//! the provider's [`RateLimiter`](crate::limiter::RateLimiter).
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
    last_error: Option<(ProviderError, std::time::SystemTime)>,
    provider: Option<Cooldown>,
    models: HashMap<String, Cooldown>,
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

    /// Remembers the provider's latest failure (for status pages).
    pub fn set_last_error(&self, err: &ProviderError, at: std::time::SystemTime) {
        self.inner.lock().last_error = Some((err.clone(), at));
    }

    /// The provider's latest failure and when it happened.
    pub fn last_error(&self) -> Option<(ProviderError, std::time::SystemTime)> {
        self.inner.lock().last_error.clone()
    }

    /// The provider-wide cool-down in force at `now`, if any.
    pub fn provider_cooldown(&self, now: Duration) -> Option<Cooldown> {
        self.inner
            .lock()
            .provider
            .as_ref()
            .filter(|c| c.until > now)
            .cloned()
    }
}
