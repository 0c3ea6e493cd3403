//! Provider limits: requests, tokens and images per minute, from a tier in the catalog
//! (`providers/openai.toml`, `providers/models.toml`) and/or explicit numbers.
//!
//! Why tiers *and* explicit numbers: the published figures are a good starting point, but an
//! account's real limits are whatever its dashboard (or the live `x-ratelimit-*` headers) say,
//! and Azure quota is per deployment. So a tier sets the numbers, an explicit `rpm` / `tpm` /
//! `ipm` overrides the tier's, and the limiter later lowers them further when the server
//! reports less (see [`crate::quota::limiter`]).
//!
//! Two kinds of tier (see [`crate::catalog`]): OpenAI's usage tiers (`tier-1` … `tier-5`)
//! publish limits *per model*, so [`Limits::resolve_for_model`] reads the model's figures
//! ([`Catalog::model_limits`]); a model without figures at that tier gets the catalog's
//! default model's (gpt-image-1's), the model whose figures are known best, and
//! [`Limits::from_tier`] / [`Limits::resolve`], which know no model, give the default
//! model's too. A preset (`guide-tier-2`: a third-party guide's table) is one RPM / TPM pair
//! for every model.
//!
//! A tier without access (`free`: rpm 0) does not become "a limit of zero" (which would be a
//! configuration error); it becomes [`Limits::no_access`], so the limiter refuses every request
//! with an explanation of what the next tier needs, and the router never sends the provider
//! anything.

use serde::Serialize;

use crate::catalog::{Catalog, ModelTierLimits, TierKind};
use crate::config_error::ConfigError;

/// Requests-, tokens- and images-per-minute limits of one provider (`None`: unlimited).
///
/// ```
/// use image_router::{catalog::Catalog, quota::limits::Limits};
/// let cat = Catalog::builtin();
/// // OpenAI's usage tier 2, as published for gpt-image-1: 20 images, 250k tokens a minute.
/// let l = Limits::resolve_for_model(cat, Some("tier-2"), "gpt-image-1", None, None, None).unwrap();
/// assert_eq!((l.rpm, l.tpm, l.ipm), (None, Some(250_000), Some(20)));
/// // A third-party guide's preset: 15 requests, 500k tokens a minute.
/// let l = Limits::from_tier(cat, "guide-tier-2").unwrap();
/// assert_eq!((l.rpm, l.tpm), (Some(15), Some(500_000)));
/// // Explicit numbers override the tier's.
/// let l = l.with_rpm(20).unwrap();
/// assert_eq!((l.rpm, l.tpm), (Some(20), Some(500_000)));
/// assert!(Limits::from_tier(cat, "tier-9").is_err());
/// assert!(Limits::from_tier(cat, "free").unwrap().no_access.is_some());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Limits {
    /// Requests per minute (`None`: unlimited).
    pub rpm: Option<u32>,
    /// Tokens per minute (`None`: unlimited).
    pub tpm: Option<u64>,
    /// Images per minute (`None`: unlimited); a request weighs its `n`.
    pub ipm: Option<u32>,
    /// Set when the configured tier gives no access at all: every request is refused.
    pub no_access: Option<NoAccess>,
}

/// Why a provider's tier gives no access, and what the next tier needs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoAccess {
    /// The tier without access (e.g. `"free"`).
    pub tier: String,
    /// The tier's own description (e.g. "the free tier has no access to image models").
    pub reason: String,
    /// The lowest tier that gives access, if the catalog knows one.
    pub next_tier: Option<NextTier>,
}

/// The requirements of the next tier up, and what it gives.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NextTier {
    /// Its name (e.g. `"tier-1"`).
    pub name: String,
    /// What it needs, in plain words.
    pub requirement: String,
    /// Lifetime spend needed, USD.
    pub min_spend_usd: Option<f64>,
    /// Account age needed, days.
    pub min_account_age_days: Option<u32>,
    /// The model its figures are for (usage tiers publish limits per model); `None` for a
    /// preset, whose figures hold for every model.
    pub model: Option<String>,
    /// Its requests per minute, when stated.
    pub rpm: Option<u32>,
    /// Its tokens per minute, when stated.
    pub tpm: Option<u64>,
    /// Its images per minute, when stated.
    pub ipm: Option<u32>,
}

impl NextTier {
    /// The next tier after `tier` ([`Catalog::next_tier`]) with its figures for `model`.
    pub fn of(catalog: &Catalog, tier: Option<&str>, model: &str) -> Option<NextTier> {
        let t = catalog.next_tier(tier)?;
        let (model, figures) = match t.kind {
            TierKind::Usage => {
                let (m, f) = figures_for(catalog, &t.name, model);
                (Some(m), f)
            }
            _ => (None, ModelTierLimits::new(t.rpm, t.tpm, None)),
        };
        Some(NextTier {
            name: t.name.clone(),
            requirement: t.requirement.clone(),
            min_spend_usd: t.min_spend_usd,
            min_account_age_days: t.min_account_age_days,
            model,
            rpm: figures.rpm,
            tpm: figures.tpm,
            ipm: figures.ipm,
        })
    }

    /// What it gives, in words: `gpt-image-1: 5 images per minute (IPM), 100000 tokens per
    /// minute (TPM)` or `6 RPM / 250000 TPM`.
    pub fn gives(&self) -> String {
        match &self.model {
            Some(m) => format!(
                "{m}: {}",
                ModelTierLimits::new(self.rpm, self.tpm, self.ipm)
            ),
            None => format!(
                "{} RPM / {} TPM",
                self.rpm.map_or("?".to_string(), |r| r.to_string()),
                self.tpm.map_or("?".to_string(), |t| t.to_string())
            ),
        }
    }
}

/// `model`'s figures at usage tier `tier`, or the default model's when it has none there;
/// with the name of the model they are for.
fn figures_for(catalog: &Catalog, tier: &str, model: &str) -> (String, ModelTierLimits) {
    match catalog.model_limits(tier, model) {
        Some(l) => (model.to_string(), l),
        None => {
            let d = catalog.default_model();
            (
                d.to_string(),
                catalog.model_limits(tier, d).unwrap_or_default(),
            )
        }
    }
}

impl std::fmt::Display for NoAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tier `{}` has no access", self.tier)?;
        if !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        match &self.next_tier {
            Some(n) => {
                write!(f, "; the next tier `{}` needs {}", n.name, n.requirement)?;
                let mut parts = Vec::new();
                if let Some(s) = n.min_spend_usd {
                    parts.push(format!("lifetime spend ≥ ${s}"));
                }
                if let Some(d) = n.min_account_age_days.filter(|d| *d > 0) {
                    parts.push(format!("account age ≥ {d} days"));
                }
                if !parts.is_empty() {
                    write!(f, " ({})", parts.join(", "))?;
                }
                write!(f, " and gives {}", n.gives())
            }
            None => write!(f, "; the catalog knows no tier with access"),
        }
    }
}

impl Limits {
    /// No limits at all.
    pub const UNLIMITED: Limits = Limits {
        rpm: None,
        tpm: None,
        ipm: None,
        no_access: None,
    };

    /// Explicit limits; zero is a [`ConfigError`] naming `rpm` / `tpm` (use `None` for
    /// unlimited, or a tier without access for "never send").
    pub fn new(rpm: Option<u32>, tpm: Option<u64>) -> Result<Limits, ConfigError> {
        let mut l = Limits::UNLIMITED;
        if let Some(r) = rpm {
            l = l.with_rpm(i64::from(r))?;
        }
        if let Some(t) = tpm {
            if t == 0 {
                return Limits::UNLIMITED.with_tpm(0);
            }
            l.tpm = Some(t);
        }
        Ok(l)
    }

    /// The limits of catalog tier `tier`: a preset's RPM / TPM, or for a usage tier the
    /// catalog's default model's published figures (use [`Limits::resolve_for_model`] for
    /// another model's). An unknown tier is a [`ConfigError`] naming it and listing the known
    /// ones; a tier without access gives [`Limits::no_access`].
    pub fn from_tier(catalog: &Catalog, tier: &str) -> Result<Limits, ConfigError> {
        Self::from_tier_for(catalog, tier, catalog.default_model())
    }

    /// [`Limits::from_tier`] for `model`.
    fn from_tier_for(catalog: &Catalog, tier: &str, model: &str) -> Result<Limits, ConfigError> {
        let Some(t) = catalog.tier(tier) else {
            let known: Vec<String> = catalog.tiers().iter().map(|t| t.name.clone()).collect();
            return Err(ConfigError::new(
                "tier",
                format!(
                    "unknown tier {tier:?}; known tiers: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if !t.has_access() {
            return Ok(Limits {
                rpm: None,
                tpm: None,
                ipm: None,
                no_access: Some(NoAccess {
                    tier: t.name.clone(),
                    reason: t.requirement.clone(),
                    next_tier: NextTier::of(catalog, Some(tier), model),
                }),
            });
        }
        let (rpm, tpm, ipm) = match t.kind {
            TierKind::Usage => {
                let (_, f) = figures_for(catalog, tier, model);
                (f.rpm, f.tpm, f.ipm)
            }
            _ => (t.rpm, t.tpm, None),
        };
        Ok(Limits {
            rpm,
            tpm,
            ipm,
            no_access: None,
        })
    }

    /// Resolves a provider's limit settings as a builder receives them: an optional tier plus
    /// optional explicit numbers (which override the tier's). Zero or negative numbers are
    /// [`ConfigError`]s naming `rpm` / `tpm`.
    ///
    /// A tier without access stays without access unless *both* `rpm` and `tpm` are given
    /// explicitly (then the caller knows the account's real limits better than the preset).
    pub fn resolve(
        catalog: &Catalog,
        tier: Option<&str>,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<Limits, ConfigError> {
        let mut l = match tier {
            Some(t) => Limits::from_tier(catalog, t)?,
            None => Limits::UNLIMITED,
        };
        if let Some(r) = rpm {
            l = l.with_rpm(r)?;
        }
        if let Some(t) = tpm {
            l = l.with_tpm(t)?;
        }
        if rpm.is_some() && tpm.is_some() {
            l.no_access = None;
        }
        Ok(l)
    }

    /// These limits with an explicit requests-per-minute limit (must be ≥ 1).
    pub fn with_rpm(mut self, rpm: i64) -> Result<Limits, ConfigError> {
        if rpm <= 0 {
            return Err(ConfigError::new(
                "rpm",
                format!("must be at least 1 request per minute, got {rpm} (leave it unset for no limit)"),
            ));
        }
        let r = u32::try_from(rpm)
            .map_err(|_| ConfigError::new("rpm", format!("{rpm} is out of range")))?;
        self.rpm = Some(r);
        Ok(self)
    }

    /// Resolves the limits of one `model` on a provider: at a usage tier, the catalog's
    /// published figures for that model ([`Catalog::model_limits`]), or the default model's
    /// when the model has none at that tier; at a preset, the preset's RPM / TPM; explicit
    /// `rpm` / `tpm` / `ipm` override either. A tier without access names the next tier with
    /// its figures for this model. Zero or negative explicit numbers are [`ConfigError`]s
    /// naming the field.
    ///
    /// ```
    /// use image_router::{catalog::Catalog, quota::limits::Limits};
    /// let cat = Catalog::builtin();
    /// let l = Limits::resolve_for_model(cat, Some("tier-1"), "dall-e-3", None, None, None).unwrap();
    /// assert_eq!((l.ipm, l.tpm), (Some(500), None));
    /// // gpt-image-1-mini has no published figures: it inherits gpt-image-1's (`like`).
    /// let l = Limits::resolve_for_model(cat, Some("tier-1"), "gpt-image-1-mini", None, None, Some(8)).unwrap();
    /// assert_eq!((l.ipm, l.tpm), (Some(8), Some(100_000)));
    /// ```
    ///
    /// A tier without access stays without access unless `tpm` and a count (`rpm` or `ipm`)
    /// are given explicitly.
    ///
    /// ```
    /// # use image_router::{catalog::Catalog, quota::limits::Limits};
    /// # let cat = Catalog::builtin();
    /// let free = Limits::resolve_for_model(cat, Some("free"), "gpt-image-1", None, None, Some(5)).unwrap();
    /// assert!(free.no_access.is_some());
    /// let mine = Limits::resolve_for_model(cat, Some("free"), "gpt-image-1", None, Some(100_000), Some(5)).unwrap();
    /// assert!(mine.no_access.is_none());
    /// ```
    pub fn resolve_for_model(
        catalog: &Catalog,
        tier: Option<&str>,
        model: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
        ipm: Option<i64>,
    ) -> Result<Limits, ConfigError> {
        let mut l = match tier {
            Some(t) => Limits::from_tier_for(catalog, t, model)?,
            None => Limits::UNLIMITED,
        };
        if let Some(r) = rpm {
            l = l.with_rpm(r)?;
        }
        if let Some(t) = tpm {
            l = l.with_tpm(t)?;
        }
        if let Some(i) = ipm {
            l = l.with_ipm(i)?;
        }
        // Explicit figures for a whole account (a count — requests or images — and tokens)
        // say the caller knows its real limits better than the tier's preset.
        if (rpm.is_some() || ipm.is_some()) && tpm.is_some() {
            l.no_access = None;
        }
        Ok(l)
    }

    /// These limits with an explicit images-per-minute limit (must be ≥ 1).
    pub fn with_ipm(mut self, ipm: i64) -> Result<Limits, ConfigError> {
        if ipm <= 0 {
            return Err(ConfigError::new(
                "ipm",
                format!(
                    "must be at least 1 image per minute, got {ipm} (leave it unset for no limit)"
                ),
            ));
        }
        let i = u32::try_from(ipm)
            .map_err(|_| ConfigError::new("ipm", format!("{ipm} is out of range")))?;
        self.ipm = Some(i);
        Ok(self)
    }

    /// These limits with an explicit tokens-per-minute limit (must be ≥ 1).
    pub fn with_tpm(mut self, tpm: i64) -> Result<Limits, ConfigError> {
        if tpm <= 0 {
            return Err(ConfigError::new(
                "tpm",
                format!(
                    "must be at least 1 token per minute, got {tpm} (leave it unset for no limit)"
                ),
            ));
        }
        self.tpm = Some(tpm.unsigned_abs());
        Ok(self)
    }

    /// Whether every limit is unset and access is not denied.
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.ipm.is_none() && self.no_access.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_negative_are_errors_naming_the_field() {
        assert_eq!(Limits::new(Some(0), None).unwrap_err().field, "rpm");
        assert_eq!(Limits::new(None, Some(0)).unwrap_err().field, "tpm");
        assert_eq!(Limits::UNLIMITED.with_tpm(-5).unwrap_err().field, "tpm");
        let e = Limits::from_tier(Catalog::builtin(), "gold").unwrap_err();
        assert!(
            e.message.contains("gold") && e.message.contains("tier-2"),
            "{e}"
        );
    }

    #[test]
    fn usage_tiers_resolve_per_model_and_presets_for_every_model() {
        let cat = Catalog::builtin();
        let l = Limits::from_tier(cat, "tier-4").unwrap();
        assert_eq!((l.rpm, l.tpm, l.ipm), (None, Some(3_000_000), Some(150)));
        let l =
            Limits::resolve_for_model(cat, Some("tier-4"), "dall-e-2", None, None, None).unwrap();
        assert_eq!((l.rpm, l.tpm, l.ipm), (None, None, Some(7500)));
        // A model the catalog has no figures for: the default model's apply.
        let l = Limits::resolve_for_model(cat, Some("tier-4"), "house-model", None, None, None)
            .unwrap();
        assert_eq!((l.tpm, l.ipm), (Some(3_000_000), Some(150)));
        // A preset gives its pair whatever the model.
        let l = Limits::resolve_for_model(cat, Some("guide-tier-3"), "dall-e-3", None, None, None)
            .unwrap();
        assert_eq!((l.rpm, l.tpm, l.ipm), (Some(25), Some(1_000_000), None));
    }

    #[test]
    fn free_names_next_tier() {
        let l = Limits::from_tier(Catalog::builtin(), "free").unwrap();
        let na = l.no_access.unwrap();
        assert_eq!(na.next_tier.as_ref().unwrap().name, "tier-1");
        let s = na.to_string();
        assert!(s.contains("tier-1") && s.contains("$5"), "{s}");
        // The next tier's figures are the model's, images per minute included.
        assert!(s.contains("gpt-image-1: 5 images per minute (IPM)"), "{s}");
        let l = Limits::resolve_for_model(
            Catalog::builtin(),
            Some("free"),
            "dall-e-3",
            None,
            None,
            None,
        )
        .unwrap();
        let s = l.no_access.unwrap().to_string();
        assert!(s.contains("dall-e-3: 500 images per minute"), "{s}");
        let l = Limits::resolve(Catalog::builtin(), Some("free"), Some(3), Some(1000)).unwrap();
        assert!(l.no_access.is_none());
        assert_eq!((l.rpm, l.tpm), (Some(3), Some(1000)));
    }
}
