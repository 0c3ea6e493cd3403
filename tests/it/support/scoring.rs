//! Helpers for the health, breaker, score, strategy and status tests: requests, routers over
//! fakes, common error kinds and a manual clock.
#![allow(dead_code)]

use image_router::clock::{ManualClock, SharedClock};
use image_router::{
    AccessDenial, ErrorKind, GenerateRequest, Provider, ProviderOptions, RateLimitScope, Router,
};
use std::sync::Arc;

use crate::support::Fake;

pub fn req() -> GenerateRequest {
    GenerateRequest::new("a watercolor fox")
}

pub fn builder_with(mocks: &[&Arc<Fake>]) -> image_router::RouterBuilder {
    let mut b = Router::builder();
    for m in mocks {
        b = b.provider_arc(Arc::clone(m) as Arc<dyn Provider>, ProviderOptions::new());
    }
    b
}

pub fn rate_limited() -> ErrorKind {
    ErrorKind::RateLimited {
        scope: RateLimitScope::Requests,
    }
}

pub fn tier_denied() -> ErrorKind {
    ErrorKind::AccessDenied {
        reason: AccessDenial::TierAccess,
    }
}

pub fn manual() -> (ManualClock, SharedClock) {
    let c = ManualClock::new();
    (c.clone(), Arc::new(c) as SharedClock)
}
