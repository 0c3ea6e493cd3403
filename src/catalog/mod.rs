//! The provider catalog: models, their capabilities, output-token tables, prices and
//! published rate limits per usage tier, the OpenAI usage tiers (and RPM / TPM presets), and
//! each provider kind's defaults (base URL, Azure `api-version`).
//!
//! Tiers: `tier-1` … `tier-5` are OpenAI's usage tiers (`[usage_tiers.*]` in
//! `providers/openai.toml`, with what each needs); their limits are per model
//! (`[models."gpt-image-1".limits."tier-1"] ipm = 5, tpm = 100000`, read with
//! [`Catalog::model_limits`]), as OpenAI publishes them on its model pages. `free` is a usage
//! tier without access. `guide-tier-1` … `guide-tier-3` and `guide-enterprise` are presets
//! (`[tiers.*]`: one RPM / TPM pair for any model) holding a third-party guide's table (May
//! 2025). Each figure in the data files cites its source.
//!
//! The data lives in `providers/*.toml`, embedded at compile time ([`Catalog::builtin`]), and
//! can be overridden or extended at runtime from a user's TOML file with the same schema
//! ([`Catalog::with_overrides`], [`Catalog::with_override_file`]): a new model, a new price or
//! a new tier is data, not code. Later sources override earlier ones field by field; a model
//! entry may say `like = "gpt-image-1"` to start from another entry.
//!
//! Every error names the entry and, when it came from a file, the line.

mod build;
mod model;
mod parse;
mod raw;
mod tier;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::Serialize;

use crate::config_error::ConfigError;

pub use model::{ModelSpec, Price};
pub use tier::{KindDefaults, ModelTierLimits, Tier, TierKind};

use build::build;
use parse::{locate_in_source, parse_source};
use raw::RawFile;

/// The embedded catalog sources, in merge order.
const BUILTIN_SOURCES: &[(&str, &str)] = &[
    (
        "providers/models.toml",
        include_str!("../../providers/models.toml"),
    ),
    (
        "providers/openai.toml",
        include_str!("../../providers/openai.toml"),
    ),
    (
        "providers/azure.toml",
        include_str!("../../providers/azure.toml"),
    ),
    (
        "providers/compatible.toml",
        include_str!("../../providers/compatible.toml"),
    ),
];

/// The catalog: everything the router knows about models, prices, tiers and provider kinds.
///
/// ```
/// use image_router::{catalog::Catalog, Quality, Size};
/// let cat = Catalog::builtin();
/// let m = cat.model("gpt-image-1").unwrap();
/// assert_eq!(m.output_image_tokens(Some(Quality::High), Some(Size::SQUARE)), 4160);
/// // OpenAI's usage tiers: limits per model, as published.
/// let l = cat.model_limits("tier-2", "gpt-image-1").unwrap();
/// assert_eq!((l.ipm, l.tpm), (Some(20), Some(250_000)));
/// // The third-party guide's table, under its own name.
/// assert_eq!(cat.tier("guide-tier-2").unwrap().rpm, Some(15));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Catalog {
    default_model: String,
    default_output_tokens_per_image: u32,
    models: BTreeMap<String, ModelSpec>,
    tiers: BTreeMap<String, Tier>,
    kinds: KindDefaults,
    #[serde(skip)]
    raw: RawFile,
}

impl Catalog {
    /// The catalog embedded from `providers/*.toml` at compile time.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // Proven invariant: the embedded files are checked by the unit test
            // `builtin_catalog_loads`, so this cannot fail in a released build.
            #[allow(clippy::expect_used)]
            Self::from_sources(BUILTIN_SOURCES).expect("embedded catalog is valid")
        })
    }

    fn from_sources(sources: &[(&str, &str)]) -> Result<Catalog, ConfigError> {
        let mut merged = RawFile::default();
        for (name, text) in sources {
            merged.merge(&parse_source(name, text)?);
        }
        build(merged)
    }

    /// This catalog with `text` (TOML, same schema as `providers/*.toml`) laid over it.
    /// `source` names the text in errors (e.g. the file name).
    ///
    /// ```
    /// use image_router::catalog::Catalog;
    /// let cat = Catalog::builtin().with_overrides(r#"
    ///     [models."my-model"]
    ///     like = "gpt-image-1"
    ///     max_n = 4
    ///     [models."gpt-image-1".limits."tier-2"]
    ///     ipm = 30
    ///     [tiers."guide-tier-2"]
    ///     rpm = 20
    /// "#, "override.toml").unwrap();
    /// assert_eq!(cat.model("my-model").unwrap().capabilities.max_n, 4);
    /// // A field overrides one figure; the others stay as published.
    /// let l = cat.model_limits("tier-2", "gpt-image-1").unwrap();
    /// assert_eq!((l.ipm, l.tpm), (Some(30), Some(250_000)));
    /// // `like` carries limits: my-model has gpt-image-1's (overridden) figures.
    /// assert_eq!(cat.model_limits("tier-2", "my-model").unwrap().ipm, Some(30));
    /// assert_eq!(cat.tier("guide-tier-2").unwrap().rpm, Some(20));
    /// ```
    pub fn with_overrides(&self, text: &str, source: &str) -> Result<Catalog, ConfigError> {
        let mut merged = self.raw.clone();
        merged.merge(&parse_source(source, text)?);
        build(merged).map_err(|e| locate_in_source(e, source, text))
    }

    /// This catalog with a TOML file laid over it.
    pub fn with_override_file(&self, path: impl AsRef<Path>) -> Result<Catalog, ConfigError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text =
            read_limited(path, MAX_FILE_BYTES).map_err(|m| ConfigError::new(name.clone(), m))?;
        self.with_overrides(&text, &name)
    }

    /// The model used when a request names none.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// A model's entry.
    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models.get(name)
    }

    /// All models.
    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }

    /// A tier by name.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.get(name)
    }

    /// All tiers: the usage tiers by level, then the presets by RPM, TPM and name.
    pub fn tiers(&self) -> Vec<&Tier> {
        let mut v: Vec<&Tier> = self.tiers.values().collect();
        v.sort_by(|a, b| {
            let key = |t: &Tier| (t.kind != TierKind::Usage, t.level, t.rpm, t.tpm);
            key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
        });
        v
    }

    /// The tier an account moves to next, for explanations: after a usage tier, the next
    /// usage tier (by level) with access; after a preset, the preset with access and the
    /// next higher RPM; with no tier (or an unknown one), the lowest usage tier with access
    /// (or, in a catalog without usage tiers, the lowest preset with access).
    ///
    /// ```
    /// use image_router::catalog::Catalog;
    /// let cat = Catalog::builtin();
    /// assert_eq!(cat.next_tier(Some("free")).unwrap().name, "tier-1");
    /// assert_eq!(cat.next_tier(Some("tier-4")).unwrap().name, "tier-5");
    /// assert!(cat.next_tier(Some("tier-5")).is_none());
    /// assert_eq!(cat.next_tier(Some("guide-tier-1")).unwrap().name, "guide-tier-2");
    /// ```
    pub fn next_tier(&self, tier: Option<&str>) -> Option<&Tier> {
        let all = self.tiers();
        let lowest = |kind: TierKind| {
            all.iter()
                .copied()
                .find(|t| t.kind == kind && t.has_access())
        };
        match tier.and_then(|t| self.tier(t)) {
            Some(cur) if cur.kind == TierKind::Usage => all
                .iter()
                .copied()
                .find(|t| t.kind == TierKind::Usage && t.has_access() && t.level > cur.level),
            Some(cur) => all.iter().copied().find(|t| {
                t.kind == TierKind::Preset
                    && t.has_access()
                    && t.name != cur.name
                    && t.rpm > cur.rpm
            }),
            None => lowest(TierKind::Usage).or_else(|| lowest(TierKind::Preset)),
        }
    }

    /// The published limits of `model` at usage tier `tier`, when the catalog has figures for
    /// that pair (through `like`, a successor model carries its parent's). `None` for a
    /// preset (its own RPM / TPM apply to every model: [`Catalog::tier`]), a tier without
    /// access, or a model without figures at that tier: [`Limits::resolve_for_model`] then
    /// uses the catalog's default model's figures at that tier.
    ///
    /// [`Limits::resolve_for_model`]: crate::quota::limits::Limits::resolve_for_model
    pub fn model_limits(&self, tier: &str, model: &str) -> Option<ModelTierLimits> {
        self.models.get(model)?.limits.get(tier).copied()
    }

    /// Provider-kind defaults.
    pub fn kinds(&self) -> &KindDefaults {
        &self.kinds
    }

    /// Output tokens per image for a model without a table.
    pub fn default_output_tokens_per_image(&self) -> u32 {
        self.default_output_tokens_per_image
    }
}

/// Largest catalog override or configuration file read: 1 MiB. Real ones are a few KiB; the
/// bound keeps a wrong path (`/dev/zero`, a log file) from filling memory.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads a UTF-8 text file of at most `limit` bytes. The error message names the file and,
/// for a file over the limit, the limit; reading stops one byte past it (`take`), so a file
/// that never ends is not read to its end.
pub(crate) fn read_limited(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{shown} is larger than {} KiB, the limit for this file; is it the right file?",
            limit / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("{shown} is not UTF-8 text: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{OutputFormat, Quality, Size};

    #[test]
    fn builtin_catalog_loads() {
        let c = Catalog::from_sources(BUILTIN_SOURCES).unwrap();
        assert_eq!(c.default_model(), "gpt-image-1");
        let m = c.model("gpt-image-1").unwrap();
        assert_eq!(
            m.output_image_tokens(Some(Quality::Low), Some(Size::PORTRAIT)),
            408
        );
        assert_eq!(
            m.output_image_tokens(Some(Quality::Medium), Some(Size::LANDSCAPE)),
            1568
        );
        assert_eq!(m.output_image_tokens(None, None), 4160);
        let mini = c.model("gpt-image-1-mini").unwrap();
        assert!(!mini.capabilities.input_fidelity);
        assert!(
            matches!(mini.price, Some(Price::UsdPer1mTokens { image_output, .. }) if image_output == 8.0)
        );
        // Successors carry their own prices (never gpt-image-1's through `like`).
        assert!(
            matches!(c.model("gpt-image-2").unwrap().price, Some(Price::UsdPer1mTokens { image_output, .. }) if image_output == 30.0)
        );
        // A model without a stated price has none.
        let unpriced = Catalog::builtin()
            .with_overrides("[models.u]\nlike = \"gpt-image-1\"\n", "x.toml")
            .unwrap();
        assert!(unpriced.model("u").unwrap().price.is_none());
        // The preview model is named where the catalog says, and never inherited.
        assert_eq!(
            c.model("gpt-image-1").unwrap().preview_model.as_deref(),
            Some("gpt-image-1-mini")
        );
        assert_eq!(c.model("gpt-image-1-mini").unwrap().preview_model, None);
        assert!(!c.tier("free").unwrap().has_access());
        assert_eq!(c.tier("guide-tier-3").unwrap().tpm, Some(1_000_000));
        // The usage tiers are OpenAI's, with the rate-limits guide's requirements.
        let t3 = c.tier("tier-3").unwrap();
        assert_eq!(t3.kind, TierKind::Usage);
        assert_eq!(
            (t3.min_spend_usd, t3.min_account_age_days),
            (Some(100.0), Some(7))
        );
        assert_eq!(t3.rpm, None, "a usage tier's limits are per model");
        assert_eq!(c.kinds().azure_api_version, "2025-04-01-preview");
        assert!(!c.kinds().azure_output_formats.contains(&OutputFormat::Webp));
    }

    #[test]
    fn price_without_unit_names_entry_and_line() {
        let err = Catalog::builtin()
            .with_overrides(
                "\n[models.\"gpt-image-1\".price]\nimage_output = 1.0\n",
                "x.toml",
            )
            .unwrap_err();
        assert!(err.field.contains("models.gpt-image-1.price"), "{err}");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn negative_tier_limit_and_unknown_key_are_errors_with_lines() {
        let err = Catalog::builtin()
            .with_overrides("[tiers.x]\nrpm = -1\ntpm = 5\n", "x.toml")
            .unwrap_err();
        assert!(err.field.contains("tiers.x.rpm"), "{err}");
        assert_eq!(err.line, Some(2));
        let err = Catalog::builtin()
            .with_overrides("[models.\"gpt-image-1\"]\nmax_nn = 3\n", "y.toml")
            .unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("max_nn"), "{err}");
        let err = Catalog::builtin()
            .with_overrides("[models.foo\n", "z.toml")
            .unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
    }

    #[test]
    fn new_model_needs_fields_or_like() {
        let err = Catalog::builtin()
            .with_overrides("[models.foo]\nmax_n = 1\n", "x.toml")
            .unwrap_err();
        // The field names the file and the entry; the line points at the entry's table.
        assert!(err.field.starts_with("x.toml: models.foo."), "{err}");
        assert_eq!(err.line, Some(1), "{err}");
        let err = Catalog::builtin()
            .with_overrides("[models.foo]\nlike = \"nope\"\n", "x.toml")
            .unwrap_err();
        assert_eq!(err.field, "x.toml: models.foo.like");
        assert_eq!(err.line, Some(2), "{err}");
    }
}
