#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod attempt;
pub mod breaker;
pub mod budget;
pub mod capabilities;
pub mod catalog;
pub mod class;
pub mod clock;
pub mod config;
pub mod cost;
pub mod doctor;
pub mod error;
pub mod explain;
#[cfg(test)]
mod fuzz;
pub mod headers;
pub mod health;
pub mod limiter;
pub mod limits;
pub mod metrics;
pub mod provider;
pub mod providers;
mod redact;
pub mod request;
pub mod response;
pub mod router;
pub mod score;
mod serde_ms;
pub mod strategy;
pub mod tokens;

#[cfg(feature = "sim")]
pub mod sim;

pub use attempt::{Attempt, Skip, SkipReason};
pub use breaker::{
    BreakerConfig, BreakerPass, BreakerSnapshot, BreakerState, CircuitBreaker, DenyReason,
    OpenReason, Rejection, Transition,
};
pub use budget::{
    Budget, BudgetError, BudgetExhausted, BudgetLedger, BudgetPeriod, BudgetReservation, WallClock,
};
pub use capabilities::{Capabilities, Unsupported};
pub use catalog::Catalog;
pub use class::{ClassFit, ClassPolicy, RequestClass};
pub use cost::{Cost, CostEstimator, PriceUnknown};
pub use error::{
    AccessDenial, ConfigError, Error, ErrorKind, NotFoundKind, Outcome, ProviderError,
    RateLimitScope, ValidationError,
};
pub use explain::Explanation;
pub use headers::RateLimitHeaders;
pub use health::{Health, HealthConfig, HealthSnapshot, InFlight};
pub use limiter::{Denied, Headroom, LimiterConfig, Permit, RateLimiter};
pub use limits::Limits;
pub use provider::{CallContext, ProbeReport, Provider, ProviderKind};
pub use providers::{
    Azure, AzureAuth, AzureBuilder, Compatible, CompatibleBuilder, CompatibleMode, OpenAi,
    OpenAiBuilder,
};
pub use request::{
    Background, EditRequest, GenerateRequest, ImageRequest, InputFidelity, InputImage, Moderation,
    OutputFormat, Quality, ResponseFormat, Size, Style,
};
pub use response::{
    Image, ImageData, ImageResponse, ImagesResponse, ProviderResponse, TokenDetails, Usage,
};
pub use router::{ProviderOptions, Ranked, Router, RouterBuilder, RouterStatus};
pub use score::{DefaultScorer, ScoreBreakdown, ScoreInputs, ScoreWeights, Scorer};
pub use strategy::{Candidate, Ranking, Strategy};
