//! Quota: everything that decides whether a provider may be sent a request *now* and whether
//! the money is there.
//!
//! - [`limits`]: the numbers a tier allows (RPM and TPM from a tier preset and/or explicit
//!   numbers). Data only: it says how much, never when.
//! - [`limiter`]: the mechanism that enforces those numbers over time (a sliding-window log per
//!   provider, fed by the live [`headers`]).
//! - [`headers`]: the `x-ratelimit-*` and retry headers a provider answers with.
//! - [`tokens`]: a request's token estimate, which weighs it in the limiter and prices it.
//! - [`cost`]: what a request costs in USD, estimated and actual.
//! - budgets ([`crate::budget`]): spend limits that reserve a request's estimated cost and
//!   settle its actual cost.
//!
//! They sit together because the router admits a request through all of them at once, and
//! apart from the router because each is usable (and tested) alone.

pub(crate) mod budget;
pub mod cost;
pub mod headers;
pub mod limiter;
pub mod limits;
pub mod tokens;
pub(crate) mod usage;
