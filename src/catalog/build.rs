//! Turning the merged raw sources into the served [`Catalog`]: resolving `like` chains,
//! checking that every required field is present and every number is in range, and building
//! prices and tiers. Apart from parsing because it runs once on the merged result.

use std::collections::BTreeMap;

use crate::config_error::ConfigError;
use crate::request::Capabilities;
use crate::request::{OutputFormat, Quality, Size};

use super::raw::{RawFile, RawModel, RawModelLimits, RawPrice};
use super::{Catalog, KindDefaults, ModelSpec, ModelTierLimits, Price, Tier, TierKind};

pub(super) fn resolve_model(
    raw: &RawFile,
    name: &str,
    depth: usize,
) -> Result<RawModel, ConfigError> {
    let m = raw
        .models
        .get(name)
        .ok_or_else(|| ConfigError::new(format!("models.{name}"), "no such model"))?;
    let Some(parent) = &m.like else {
        return Ok(m.clone());
    };
    if depth > 8 || parent == name {
        return Err(ConfigError::new(
            format!("models.{name}.like"),
            "`like` forms a cycle",
        ));
    }
    if !raw.models.contains_key(parent) {
        return Err(ConfigError::new(
            format!("models.{name}.like"),
            format!("refers to unknown model {parent:?}"),
        ));
    }
    let mut base = resolve_model(raw, parent, depth + 1)?;
    let mut own = m.clone();
    own.like = None;
    // Prices are never inherited: a successor model's price must be stated, or it is unknown.
    base.price = None;
    // Nor is the preview model: gpt-image-1-mini is gpt-image-1's cheaper sibling, not its own
    // nor a successor's.
    base.preview_model = None;
    let mut tmp = RawFile::default();
    tmp.models.insert(name.to_string(), base);
    let mut over = RawFile::default();
    over.models.insert(name.to_string(), own);
    tmp.merge(&over);
    Ok(tmp.models.remove(name).unwrap_or_default())
}

pub(super) fn required<T: Clone>(
    v: &Option<T>,
    model: &str,
    field: &str,
) -> Result<T, ConfigError> {
    v.clone().ok_or_else(|| {
        ConfigError::new(
            format!("models.{model}.{field}"),
            "missing (give it, or `like = \"<another model>\"` to copy it)",
        )
    })
}

pub(super) fn build_model(
    name: &str,
    m: &RawModel,
    default_tokens: u32,
) -> Result<ModelSpec, ConfigError> {
    let caps = Capabilities {
        model: name.to_string(),
        max_prompt_chars: required(&m.max_prompt_chars, name, "max_prompt_chars")?,
        max_n: required(&m.max_n, name, "max_n")?,
        sizes: required(&m.sizes, name, "sizes")?,
        qualities: required(&m.qualities, name, "qualities")?,
        edit_qualities: m.edit_qualities.clone().unwrap_or_default(),
        default_quality: required(&m.default_quality, name, "default_quality")?,
        default_size: required(&m.default_size, name, "default_size")?,
        output_formats: m.output_formats.clone().unwrap_or_default(),
        backgrounds: m.backgrounds.clone().unwrap_or_default(),
        edits: m.edits.unwrap_or(false),
        max_edit_images: m
            .max_edit_images
            .unwrap_or(if m.edits == Some(true) { 1 } else { 0 }),
        input_fidelity: m.input_fidelity.unwrap_or(false),
        moderation: m.moderation.unwrap_or(false),
        style: m.style.unwrap_or(false),
        response_format: m.response_format.unwrap_or(false),
        streaming: m.streaming.unwrap_or(false),
    };
    if caps.max_n == 0 {
        return Err(ConfigError::new(
            format!("models.{name}.max_n"),
            "must be at least 1",
        ));
    }
    if caps.max_prompt_chars == 0 {
        return Err(ConfigError::new(
            format!("models.{name}.max_prompt_chars"),
            "must be at least 1",
        ));
    }
    let price = match &m.price {
        None => None,
        Some(p) => Some(build_price(name, p.get_ref())?),
    };
    let mut limits = BTreeMap::new();
    for (tier, l) in m.limits.iter().flatten() {
        limits.insert(tier.clone(), build_limits(name, tier, l)?);
    }
    Ok(ModelSpec {
        capabilities: caps,
        output_tokens: m.output_tokens.clone().unwrap_or_default(),
        price,
        fallback_output_tokens: m.default_output_tokens_per_image.unwrap_or(default_tokens),
        limits,
        preview_model: m.preview_model.clone(),
    })
}

/// One model's figures at one tier: each at least 1 (a tier without access is the tier's
/// business, `access = false`, not a zero limit) and in range.
fn build_limits(
    name: &str,
    tier: &str,
    l: &RawModelLimits,
) -> Result<ModelTierLimits, ConfigError> {
    let field = |f: &str| format!("models.{name}.limits.{tier}.{f}");
    let positive = |f: &str, v: &Option<toml::Spanned<i64>>| -> Result<Option<u64>, ConfigError> {
        match v.as_ref().map(|v| *v.get_ref()) {
            None => Ok(None),
            Some(x) if x <= 0 => Err(ConfigError::new(
                field(f),
                format!("must be at least 1, got {x} (leave it out when no figure is published)"),
            )),
            Some(x) => Ok(Some(x.unsigned_abs())),
        }
    };
    let small = |f: &str, v: Option<u64>| -> Result<Option<u32>, ConfigError> {
        v.map(|x| u32::try_from(x).map_err(|_| ConfigError::new(field(f), "out of range")))
            .transpose()
    };
    let l = ModelTierLimits::new(
        small("rpm", positive("rpm", &l.rpm)?)?,
        positive("tpm", &l.tpm)?,
        small("ipm", positive("ipm", &l.ipm)?)?,
    );
    if l == ModelTierLimits::default() {
        return Err(ConfigError::new(
            field("ipm"),
            "no figure given: a tier's limits need at least one of ipm, tpm, rpm",
        ));
    }
    Ok(l)
}

pub(super) fn build_price(name: &str, p: &RawPrice) -> Result<Price, ConfigError> {
    let field = |f: &str| format!("models.{name}.price.{f}");
    let non_neg = |f: &str, v: Option<f64>| -> Result<Option<f64>, ConfigError> {
        match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(ConfigError::new(
                field(f),
                format!("must be a non-negative number, got {x}"),
            )),
            other => Ok(other),
        }
    };
    match p.unit.as_deref() {
        Some("usd_per_1m_tokens") => {
            if let Some(k) = p.per_image.keys().next() {
                return Err(ConfigError::new(
                    field(k),
                    "per-image prices need unit = \"usd_per_image\"",
                ));
            }
            let need = |f: &str, v: Option<f64>| {
                non_neg(f, v)?.ok_or_else(|| ConfigError::new(field(f), "missing"))
            };
            Ok(Price::UsdPer1mTokens {
                text_input: need("text_input", p.text_input)?,
                cached_text_input: non_neg("cached_text_input", p.cached_text_input)?,
                image_input: need("image_input", p.image_input)?,
                cached_image_input: non_neg("cached_image_input", p.cached_image_input)?,
                image_output: need("image_output", p.image_output)?,
            })
        }
        Some("usd_per_image") => {
            let mut table = BTreeMap::new();
            for (q, sizes) in &p.per_image {
                let quality: Quality = q.parse().map_err(|e: crate::request::ParseEnumError| {
                    ConfigError::new(field(q), e.to_string())
                })?;
                let mut row = BTreeMap::new();
                for (s, v) in sizes {
                    let size: Size = s.parse().map_err(|e: crate::request::ParseSizeError| {
                        ConfigError::new(field(&format!("{q}.{s}")), e.to_string())
                    })?;
                    non_neg(&format!("{q}.{s}"), Some(*v))?;
                    row.insert(size, *v);
                }
                table.insert(quality, row);
            }
            if table.is_empty() {
                return Err(ConfigError::new(
                    field("unit"),
                    "usd_per_image needs a table such as standard = { \"1024x1024\" = 0.04 }",
                ));
            }
            Ok(Price::UsdPerImage { table })
        }
        _ => Err(ConfigError::new(field("unit"), "missing or unknown unit")),
    }
}

pub(super) fn build(raw: RawFile) -> Result<Catalog, ConfigError> {
    let default_tokens = match &raw.default_output_tokens_per_image {
        Some(v) => u32::try_from(*v.get_ref())
            .map_err(|_| ConfigError::new("default_output_tokens_per_image", "out of range"))?,
        None => 4160,
    };
    let mut models = BTreeMap::new();
    for name in raw.models.keys() {
        let m = resolve_model(&raw, name, 0)?;
        // Per-model limits are only for OpenAI's usage tiers: a preset's figures are the same
        // for every model, and a misspelt tier name would silently never apply.
        for tier in m.limits.iter().flat_map(|l| l.keys()) {
            if !raw.usage_tiers.contains_key(tier) {
                let known: Vec<&str> = raw.usage_tiers.keys().map(String::as_str).collect();
                return Err(ConfigError::new(
                    format!("models.{name}.limits.{tier}"),
                    format!(
                        "unknown usage tier {tier:?}; usage tiers: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        models.insert(name.clone(), build_model(name, &m, default_tokens)?);
    }
    check_preview_models(&models)?;
    let mut tiers = BTreeMap::new();
    for (name, t) in &raw.usage_tiers {
        if raw.tiers.contains_key(name) {
            return Err(ConfigError::new(
                format!("tiers.{name}"),
                format!(
                    "`{name}` is already a usage tier (`usage_tiers.{name}`, limits per model); \
                     give a preset another name, or change the models' `limits.{name}`"
                ),
            ));
        }
        let level = t.level.ok_or_else(|| {
            ConfigError::new(
                format!("usage_tiers.{name}.level"),
                "missing (the tier's order: free = 0, tier-1 = 1, …)",
            )
        })?;
        tiers.insert(
            name.clone(),
            Tier {
                name: name.clone(),
                kind: TierKind::Usage,
                level: Some(level),
                rpm: None,
                tpm: None,
                access: t.access.unwrap_or(true),
                min_spend_usd: t.min_spend_usd,
                min_account_age_days: t.min_account_age_days,
                requirement: t.requirement.clone().unwrap_or_default(),
            },
        );
    }
    for (name, t) in &raw.tiers {
        let rpm = t
            .rpm
            .as_ref()
            .map(|v| *v.get_ref())
            .ok_or_else(|| ConfigError::new(format!("tiers.{name}.rpm"), "missing"))?;
        let tpm = t
            .tpm
            .as_ref()
            .map(|v| *v.get_ref())
            .ok_or_else(|| ConfigError::new(format!("tiers.{name}.tpm"), "missing"))?;
        tiers.insert(
            name.clone(),
            Tier {
                name: name.clone(),
                kind: TierKind::Preset,
                level: None,
                rpm: Some(
                    u32::try_from(rpm).map_err(|_| {
                        ConfigError::new(format!("tiers.{name}.rpm"), "out of range")
                    })?,
                ),
                tpm: Some(
                    u64::try_from(tpm).map_err(|_| {
                        ConfigError::new(format!("tiers.{name}.tpm"), "out of range")
                    })?,
                ),
                access: true,
                min_spend_usd: t.min_spend_usd,
                min_account_age_days: t.min_account_age_days,
                requirement: t.requirement.clone().unwrap_or_default(),
            },
        );
    }
    let openai = raw.kinds.openai.clone().unwrap_or_default();
    let azure = raw.kinds.azure.clone().unwrap_or_default();
    let compat = raw.kinds.compatible.clone().unwrap_or_default();
    let kinds = KindDefaults {
        openai_base_url: openai
            .base_url
            .unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
        azure_api_version: azure
            .api_version
            .unwrap_or_else(|| "2025-04-01-preview".to_string()),
        azure_output_formats: azure
            .output_formats
            .unwrap_or_else(|| vec![OutputFormat::Png, OutputFormat::Jpeg]),
        chat_edits: compat.chat_edits.unwrap_or(false),
        chat_max_n: compat.chat_max_n.unwrap_or(1).max(1),
        azure_stream_api_version: azure.stream_api_version,
        compatible_images_streaming: compat.images_streaming.unwrap_or(false),
    };
    let default_model = raw
        .default_model
        .clone()
        .unwrap_or_else(|| "gpt-image-1".to_string());
    if default_model.trim().is_empty() {
        return Err(ConfigError::new("default_model", "must not be empty"));
    }
    Ok(Catalog {
        default_model,
        default_output_tokens_per_image: default_tokens,
        models,
        tiers,
        kinds,
        raw,
    })
}

/// A `preview_model` must name another model of the catalog that takes everything a preview
/// could send it: a typo would otherwise only show when preview mode is on.
fn check_preview_models(models: &BTreeMap<String, ModelSpec>) -> Result<(), ConfigError> {
    for (name, m) in models {
        let Some(p) = &m.preview_model else { continue };
        let field = || format!("models.{name}.preview_model");
        if p == name {
            return Err(ConfigError::new(field(), "names the model itself"));
        }
        if !models.contains_key(p) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(ConfigError::new(
                field(),
                format!(
                    "unknown model {p:?}; the catalog knows {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
