#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod attempt;
pub mod breaker;
pub mod capabilities;
pub mod catalog;
pub mod class;
pub mod clock;
pub mod error;
pub mod headers;
pub mod health;
pub mod provider;
pub mod request;
pub mod response;
pub mod score;
pub mod strategy;
pub mod tokens;

#[cfg(feature = "sim")]
pub mod sim;

pub use attempt::{Attempt, Skip, SkipReason};
pub use breaker::{
    BreakerConfig, BreakerPass, BreakerSnapshot, BreakerState, CircuitBreaker, DenyReason,
    OpenReason, Rejection, Transition,
};
pub use capabilities::{Capabilities, Unsupported};
pub use catalog::Catalog;
pub use class::{ClassFit, ClassPolicy, RequestClass};
pub use error::{
    AccessDenial, ConfigError, Error, ErrorKind, NotFoundKind, Outcome, ProviderError,
    RateLimitScope, ValidationError,
};
pub use headers::RateLimitHeaders;
pub use health::{Health, HealthConfig, HealthSnapshot, InFlight};
pub use provider::{CallContext, Provider, ProviderKind};
pub use request::{
    Background, EditRequest, GenerateRequest, ImageRequest, InputFidelity, InputImage, Moderation,
    OutputFormat, Quality, ResponseFormat, Size, Style,
};
pub use response::{
    Image, ImageData, ImageResponse, ImagesResponse, ProviderResponse, TokenDetails, Usage,
};
pub use score::{DefaultScorer, ScoreBreakdown, ScoreInputs, ScoreWeights, Scorer};
pub use strategy::{Candidate, Ranking, Strategy};
