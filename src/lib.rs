#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod attempt;
pub mod capabilities;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod doctor;
pub mod error;
pub mod explain;
pub mod headers;
pub mod metrics;
pub mod provider;
pub mod request;
pub mod response;
pub mod router;
pub mod tokens;

#[cfg(feature = "sim")]
pub mod sim;

pub use attempt::{Attempt, Skip, SkipReason};
pub use capabilities::{Capabilities, Unsupported};
pub use catalog::Catalog;
pub use error::{
    AccessDenial, ConfigError, Error, ErrorKind, NotFoundKind, Outcome, ProviderError,
    RateLimitScope, ValidationError,
};
pub use explain::Explanation;
pub use headers::RateLimitHeaders;
pub use provider::{CallContext, ProbeReport, Provider, ProviderKind};
pub use request::{
    Background, EditRequest, GenerateRequest, ImageRequest, InputFidelity, InputImage, Moderation,
    OutputFormat, Quality, ResponseFormat, Size, Style,
};
pub use response::{
    Image, ImageData, ImageResponse, ImagesResponse, ProviderResponse, TokenDetails, Usage,
};
pub use router::{Router, RouterBuilder};
