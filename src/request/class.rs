//! Request classes: reserve or prefer providers for kinds of work.
//!
//! A request may carry a [`RequestClass`] (a short name such as `"interactive"` or `"batch"`).
//! Each provider has a [`ClassPolicy`]:
//!
//! * `reserved_for` — if not empty, **only** requests of these classes may use the provider;
//!   for everybody else (including requests without a class) it is not a candidate at all.
//! * `preferred_by` — requests of these classes rank the provider before the others; the
//!   strategy still orders providers inside each group (see [`crate::strategy`]). A preference
//!   never excludes anything, so preferred providers being down just means failover to the rest.
//!
//! # Why two lists
//!
//! Reservation protects capacity (a high-tier account kept free for user-facing work);
//! preference steers traffic without giving up failover. Most deployments need both.
//!
//! # Deployment pattern
//!
//! Priority work to a direct high-tier account, overflow to proxies, enterprise workloads to
//! Azure:
//!
//! ```
//! use image_router::{ClassFit, ClassPolicy, RequestClass};
//!
//! let interactive = RequestClass::INTERACTIVE;
//! let batch = RequestClass::BATCH;
//! let enterprise = RequestClass::new("enterprise");
//!
//! // 0: direct OpenAI, high tier: kept for interactive traffic only.
//! let openai = ClassPolicy::reserved([interactive.clone()]);
//! // 1: Azure deployment: enterprise data stays there; others may overflow to it.
//! let azure = ClassPolicy::preferred([enterprise.clone()]);
//! // 2: proxies: open to all, the natural home of batch work.
//! let proxy = ClassPolicy::preferred([batch.clone()]);
//!
//! assert_eq!(openai.fit(Some(&interactive)), ClassFit::Admitted);
//! assert_eq!(openai.fit(Some(&batch)), ClassFit::Excluded);
//! assert_eq!(openai.fit(None), ClassFit::Excluded);
//! assert_eq!(azure.fit(Some(&enterprise)), ClassFit::Preferred);
//! assert_eq!(proxy.fit(Some(&batch)), ClassFit::Preferred);
//! assert_eq!(proxy.fit(Some(&interactive)), ClassFit::Admitted); // overflow
//! ```
//!
//! To keep enterprise work *only* on Azure, give those requests their own class and reserve
//! Azure for it; use `reserved_for` plus `preferred_by` with the same class to make a provider
//! both exclusive and first.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::strategy::Candidate;

/// A request class name. Compared exactly (case-sensitive); cheap to clone for the built-ins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestClass(Cow<'static, str>);

impl RequestClass {
    /// User-facing work that someone waits for.
    pub const INTERACTIVE: RequestClass = RequestClass(Cow::Borrowed("interactive"));
    /// Background work that can wait.
    pub const BATCH: RequestClass = RequestClass(Cow::Borrowed("batch"));

    /// A class with this name.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self(name.into())
    }

    /// A class from a static name (usable in consts).
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&'static str> for RequestClass {
    fn from(s: &'static str) -> Self {
        Self::from_static(s)
    }
}

impl From<String> for RequestClass {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// How a request's class relates to a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClassFit {
    /// Reserved for other classes: not a candidate.
    Excluded,
    /// A candidate like any other.
    Admitted,
    /// A candidate ranked before the non-preferred ones.
    Preferred,
}

/// A provider's class policy. The default is open to all, preferred by none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassPolicy {
    /// Only these classes may use the provider (empty = open to all).
    pub reserved_for: Vec<RequestClass>,
    /// These classes rank the provider first.
    pub preferred_by: Vec<RequestClass>,
}

impl ClassPolicy {
    /// Open to all, no preference.
    pub fn open() -> Self {
        Self::default()
    }

    /// Reserved for `classes` (and preferred by none).
    pub fn reserved(classes: impl IntoIterator<Item = RequestClass>) -> Self {
        Self {
            reserved_for: classes.into_iter().collect(),
            preferred_by: Vec::new(),
        }
    }

    /// Open to all, preferred by `classes`.
    pub fn preferred(classes: impl IntoIterator<Item = RequestClass>) -> Self {
        Self {
            reserved_for: Vec::new(),
            preferred_by: classes.into_iter().collect(),
        }
    }

    /// Whether a request of `class` (or without one) may use the provider.
    pub fn admits(&self, class: Option<&RequestClass>) -> bool {
        self.reserved_for.is_empty() || class.is_some_and(|c| self.reserved_for.contains(c))
    }

    /// Whether a request of `class` prefers the provider.
    pub fn prefers(&self, class: Option<&RequestClass>) -> bool {
        class.is_some_and(|c| self.preferred_by.contains(c))
    }

    /// Excluded, admitted or preferred.
    pub fn fit(&self, class: Option<&RequestClass>) -> ClassFit {
        if !self.admits(class) {
            ClassFit::Excluded
        } else if self.prefers(class) {
            ClassFit::Preferred
        } else {
            ClassFit::Admitted
        }
    }
}

/// Applies class policies to a candidate list: drops excluded candidates and sets
/// `preferred` on the others. `policy_of` maps a candidate's provider index to its policy
/// (`None` = open to all).
///
/// ```
/// use image_router::{apply_classes, ClassPolicy, RequestClass};
/// use image_router::score::ScoreInputs;
/// use image_router::Candidate;
///
/// let policies = [ClassPolicy::reserved([RequestClass::INTERACTIVE]), ClassPolicy::open()];
/// let mut candidates = vec![
///     Candidate::new(0, ScoreInputs::default()),
///     Candidate::new(1, ScoreInputs::default()),
/// ];
/// apply_classes(&mut candidates, Some(&RequestClass::BATCH), |i| policies.get(i));
/// assert_eq!(candidates.len(), 1);
/// assert_eq!(candidates[0].index, 1);
/// ```
pub fn apply_classes<'p>(
    candidates: &mut Vec<Candidate>,
    class: Option<&RequestClass>,
    policy_of: impl Fn(usize) -> Option<&'p ClassPolicy>,
) {
    candidates.retain_mut(|c| match policy_of(c.index).map(|p| p.fit(class)) {
        Some(ClassFit::Excluded) => false,
        Some(ClassFit::Preferred) => {
            c.preferred = true;
            true
        }
        Some(ClassFit::Admitted) | None => true,
    });
}
