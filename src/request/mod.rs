//! The request: what an application asks for, checked before any network call.
//!
//! - `params`: the parameter enums (`Size`, `Quality`, `OutputFormat`, ...), shared by the
//!   request types and by capabilities, so neither depends on the other for them.
//! - `types`: `GenerateRequest`, `EditRequest`, `ImageRequest`, `InputImage`.
//! - `capabilities`: what a model on a provider accepts, and why a request does not fit.
//! - `validate`: the checks before any call, each failure a `ValidationError` naming the field.
//! - `class`: request classes (interactive, batch, ...) and the per-provider class policy.
//! - `cache_policy`: what a request asks of the response cache.
//! - `translate`: a request mapped onto another model (fallback, preview) and what changed.
//!
//! Everything public here is re-exported at the crate root, except `CachePolicy`, whose one
//! public path is `image_router::cache`.

pub(crate) mod cache_policy;
pub(crate) mod capabilities;
pub(crate) mod class;
pub(crate) mod params;
pub(crate) mod translate;
pub(crate) mod types;
pub(crate) mod validate;

pub use cache_policy::CachePolicy;
pub use capabilities::{Capabilities, Unsupported};
pub use class::{apply_classes, ClassFit, ClassPolicy, RequestClass};
pub use params::*;
pub use translate::{describe_changes, translate, Change};
pub use types::*;
pub use validate::ValidationError;
