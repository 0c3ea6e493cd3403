#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

//! # Public API: one rule
//!
//! A type is public when an application would name it: to build a router, send a request,
//! read a response or an error, implement its own [`Provider`], configure a building block
//! or test against the simulator. Everything else is `pub(crate)`. Each public type has
//! exactly one path: the types every application names are re-exported at the root; the
//! building blocks an application configures or tests live in a few public modules:
//! [`providers`], [`config`], [`budget`], [`score`], [`quota`] (limits, limiter, headers,
//! tokens, cost), [`breaker`], [`health`], [`clock`], [`catalog`], [`metrics`], [`doctor`],
//! [`policy`], [`store`], [`forecast`], [`cache`] (the response cache), `queue` (durable
//! image jobs, feature `queue`) and `sim` (feature `sim`).
//!
//! # Module layers
//!
//! Sibling modules form a DAG (a module may use its own children), checked by the unit test
//! in `layout_check.rs` (no exception). From the bottom up:
//! `clock`, `serde_ms`, `redact`, `metrics`, `config_error`, `redis_conn` (feature `redis`: the
//! one Redis connection type, single server or cluster, under the store, the cache's second
//! tier, the queue and `doctor`), `score` → `strategy` → `request`
//! → `catalog` → `quota` → `error` → `health` → `breaker`; `error` → `response` → `stream`
//! → `provider` → `providers`; `explain`; `forecast` (over `catalog`, `quota`, `request`); `cache`
//! (over `request`, `response`, `error`, `quota`, `metrics`, `clock`); then `router`,
//! `queue` (over `router`), `config` (which builds a router and opens a queue), `doctor`,
//! `sim`, and the binary's
//! `cli` (a separate crate that uses only the public API).

pub mod breaker;
pub mod cache;
pub mod catalog;
pub mod clock;
pub mod config;
mod config_error;
pub mod doctor;
mod error;
mod explain;
pub mod forecast;
#[cfg(test)]
mod fuzz;
pub mod health;
#[cfg(test)]
mod layout_check;
pub mod metrics;
mod provider;
pub mod providers;
#[cfg(feature = "queue")]
pub mod queue;
pub mod quota;
mod redact;
#[cfg(feature = "redis")]
mod redis_conn;
mod request;
mod response;
mod router;
pub mod score;
mod serde_ms;
mod strategy;
pub mod stream;

#[cfg(feature = "sim")]
pub mod sim;

pub mod budget {
    //! Spend budgets: a limit in USD over a UTC day, a UTC calendar month, or a custom window, per
    //! provider and for the whole router.
    //!
    //! # Reserve, then reconcile
    //!
    //! Each request reserves its *estimated* cost before it is sent
    //! ([`BudgetLedger::try_reserve`]) and, when the response arrives, commits the *actual* cost
    //! ([`BudgetReservation::commit`]); a failed request releases its reservation
    //! ([`BudgetReservation::release`], also what dropping it does). A reservation is admitted only
    //! if, for every budget of the ledger, `spent + reserved + held + amount ≤ limit`, checked and applied
    //! under one lock, so the budget is never exceeded, also not by a thousand concurrent requests.
    //! (A commit larger than its reservation charges the real amount: the money was spent. The
    //! catalog's token tables are upper bounds for the image output, so this is rare.)
    //!
    //! # Holding what may have been billed
    //!
    //! A request that was sent and then got no answer (a timeout after sending, or a caller that
    //! dropped the future) may have been generated and billed by the provider, and nothing will
    //! tell the router. Its reservation is *held* ([`BudgetReservation::hold`]): it stops being
    //! "in flight" but keeps counting against every budget of the ledger until that budget's
    //! period ends, so such requests can never let spend pass a budget. It is not added to the
    //! lifetime total (that counts known costs only). Releasing it instead would let a run of
    //! timeouts spend past the budget unseen.
    //!
    //! Amounts are kept in integer nano-dollars, so totals add up exactly: the ledger's total is the
    //! sum of the committed costs.
    //!
    //! # Time
    //!
    //! Day and month budgets follow UTC calendar periods, so they need wall time; a [`WallClock`]
    //! is a wall-time anchor plus the injected monotonic [`Clock`](crate::clock::Clock), so tests
    //! can run a month in milliseconds with a `ManualClock`. A custom window starts when the ledger
    //! is created and repeats back to back. At a period change the period's spending starts at
    //! zero; reservations in flight carry over (they will be spent in the new period).
    //!
    //! # Two scopes
    //!
    //! A request is paid by its provider's ledger *and* the router's: [`try_reserve_all`] reserves
    //! on several ledgers and releases what it already took if a later one refuses.
    //!
    //! The code lives in `src/quota/budget/` (budgets are admitted together with the rate
    //! limits); this module is its one public path.
    pub use crate::quota::budget::*;
}

pub use config_error::ConfigError;
pub use error::{
    truncate_text, AccessDenial, Attempt, Error, ErrorKind, NotFoundKind, Outcome, ProviderError,
    RateLimitScope, Skip, SkipReason, MAX_FIELD_BYTES, MAX_MESSAGE_BYTES,
};
pub use explain::Explanation;
pub use provider::{BoxedCall, CallContext, ProbeReport, Provider, ProviderKind};
pub use quota::usage::{TokenDetails, Usage};
pub use request::{
    apply_classes, Background, Capabilities, ClassFit, ClassPolicy, EditRequest, GenerateRequest,
    ImageRequest, InputFidelity, InputImage, Moderation, OutputFormat, ParseEnumError,
    ParseSizeError, Quality, RequestClass, ResponseFormat, Size, Style, Unsupported,
    ValidationError, MAX_EDIT_IMAGES, MAX_INPUT_IMAGE_BYTES, MAX_N, MAX_PARTIAL_IMAGES,
};
pub use response::{Image, ImageData, ImageResponse, ImagesResponse, ProviderResponse};
pub use router::{
    policy, store, CooldownStatus, KeyGroupStatus, KeyStatus, LastError, ModelWindow,
    ProviderOptions, ProviderStatus, ProviderStore, Ranked, Router, RouterBuilder, RouterStatus,
    StoreStatus, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_COOLDOWN, DEFAULT_DEADLINE, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE_LIMIT_WAIT, DEFAULT_RETRY_BACKOFF,
};
pub use router::{Admission, ADMISSION_RECHECK};
pub use router::{
    CheckOptions, CheckReport, CheckResult, CheckedProvider, Mark, ModelCheck,
    DEFAULT_CHECK_TIMEOUT,
};
pub use strategy::{Candidate, Ranking, Strategy};
// Preview mode and model fallback (issue 14).
pub use request::{describe_changes, translate, Change};
pub use response::{FallbackUsed, Preview};
pub use router::{PreviewConfig, PREVIEW_ENV};
pub use stream::{StreamEvent, StreamOptions};

// The router is shared across tasks and its errors cross task boundaries.
const _: fn() = || {
    fn assert<T: Send + Sync + 'static>() {}
    assert::<Router>();
    assert::<Error>();
    assert::<ProviderError>();
    assert::<ImageResponse>();
};
