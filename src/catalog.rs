//! The provider catalog: models, their capabilities, output-token tables and prices, the
//! OpenAI usage tiers, and each provider kind's defaults (base URL, Azure `api-version`).
//!
//! The data lives in `providers/*.toml`, embedded at compile time ([`Catalog::builtin`]), and
//! can be overridden or extended at runtime from a user's TOML file with the same schema
//! ([`Catalog::with_overrides`], [`Catalog::with_override_file`]): a new model, a new price or
//! a new tier is data, not code. Later sources override earlier ones field by field; a model
//! entry may say `like = "gpt-image-1"` to start from another entry.
//!
//! Every error names the entry and, when it came from a file, the line.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config_error::ConfigError;
use crate::request::Capabilities;
use crate::request::{Background, OutputFormat, Quality, Size};

/// The embedded catalog sources, in merge order.
const BUILTIN_SOURCES: &[(&str, &str)] = &[
    (
        "providers/models.toml",
        include_str!("../providers/models.toml"),
    ),
    (
        "providers/openai.toml",
        include_str!("../providers/openai.toml"),
    ),
    (
        "providers/azure.toml",
        include_str!("../providers/azure.toml"),
    ),
    (
        "providers/compatible.toml",
        include_str!("../providers/compatible.toml"),
    ),
];

/// The catalog: everything the router knows about models, prices, tiers and provider kinds.
///
/// ```
/// use image_router::{catalog::Catalog, Quality, Size};
/// let cat = Catalog::builtin();
/// let m = cat.model("gpt-image-1").unwrap();
/// assert_eq!(m.output_image_tokens(Some(Quality::High), Some(Size::SQUARE)), 4160);
/// assert_eq!(cat.tier("tier-2").unwrap().rpm, 15);
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

/// One model: capabilities, output-token table, prices.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ModelSpec {
    /// What the model accepts.
    pub capabilities: Capabilities,
    /// Output image tokens per image, by quality then size (empty: not published).
    pub output_tokens: BTreeMap<Quality, BTreeMap<Size, u32>>,
    /// Prices, when known.
    pub price: Option<Price>,
    /// Estimate per image when the table has no entry.
    pub fallback_output_tokens: u32,
}

impl ModelSpec {
    /// The model name.
    pub fn name(&self) -> &str {
        &self.capabilities.model
    }

    /// Output image tokens for one image of `quality` and `size`; `None` / `auto` resolve to
    /// the model's defaults. Uses the table, else the configured per-image estimate.
    pub fn output_image_tokens(&self, quality: Option<Quality>, size: Option<Size>) -> u32 {
        let q = self.resolve_quality(quality);
        let s = self.resolve_size(size);
        self.output_tokens
            .get(&q)
            .and_then(|t| t.get(&s))
            .copied()
            .unwrap_or(self.fallback_output_tokens)
    }

    /// `quality` with `None` / `auto` resolved to the model's default.
    pub fn resolve_quality(&self, quality: Option<Quality>) -> Quality {
        match quality {
            None | Some(Quality::Auto) => self.capabilities.default_quality,
            Some(q) => q,
        }
    }

    /// `size` with `None` / `auto` resolved to the model's default.
    pub fn resolve_size(&self, size: Option<Size>) -> Size {
        match size {
            None | Some(Size::Auto) => self.capabilities.default_size,
            Some(s) => s,
        }
    }
}

/// A model's prices.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "unit", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Price {
    /// USD per 1M tokens (GPT image models).
    UsdPer1mTokens {
        /// Text input.
        text_input: f64,
        /// Cached text input.
        cached_text_input: Option<f64>,
        /// Image input.
        image_input: f64,
        /// Cached image input.
        cached_image_input: Option<f64>,
        /// Image output.
        image_output: f64,
    },
    /// USD per image by quality then size (dall-e).
    UsdPerImage {
        /// The table.
        table: BTreeMap<Quality, BTreeMap<Size, f64>>,
    },
}

/// An OpenAI usage tier.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Tier {
    /// Tier name (`"tier-2"`).
    pub name: String,
    /// Requests per minute (0: no access).
    pub rpm: u32,
    /// Tokens per minute.
    pub tpm: u64,
    /// Lifetime spend needed, USD.
    pub min_spend_usd: Option<f64>,
    /// Account age needed, days.
    pub min_account_age_days: Option<u32>,
    /// What the tier needs, in plain words.
    pub requirement: String,
}

impl Tier {
    /// Whether the tier gives any access.
    pub fn has_access(&self) -> bool {
        self.rpm > 0 && self.tpm > 0
    }
}

/// Defaults per provider kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct KindDefaults {
    /// Direct OpenAI base URL.
    pub openai_base_url: String,
    /// Azure `api-version`.
    pub azure_api_version: String,
    /// Output formats Azure produces.
    pub azure_output_formats: Vec<OutputFormat>,
    /// Whether chat-mode proxies do edits.
    pub chat_edits: bool,
    /// Most images per chat-mode call.
    pub chat_max_n: u8,
}

// ---- raw (file) schema -------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default_model: Option<String>,
    default_output_tokens_per_image: Option<Spanned<i64>>,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    kinds: RawKinds,
    #[serde(skip)]
    source: String,
    #[serde(skip)]
    text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    like: Option<String>,
    max_prompt_chars: Option<usize>,
    max_n: Option<u8>,
    sizes: Option<Vec<Size>>,
    qualities: Option<Vec<Quality>>,
    edit_qualities: Option<Vec<Quality>>,
    default_quality: Option<Quality>,
    default_size: Option<Size>,
    output_formats: Option<Vec<OutputFormat>>,
    backgrounds: Option<Vec<Background>>,
    edits: Option<bool>,
    max_edit_images: Option<usize>,
    input_fidelity: Option<bool>,
    moderation: Option<bool>,
    style: Option<bool>,
    response_format: Option<bool>,
    output_tokens: Option<BTreeMap<Quality, BTreeMap<Size, u32>>>,
    default_output_tokens_per_image: Option<u32>,
    price: Option<Spanned<RawPrice>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct RawPrice {
    unit: Option<String>,
    text_input: Option<f64>,
    cached_text_input: Option<f64>,
    image_input: Option<f64>,
    cached_image_input: Option<f64>,
    image_output: Option<f64>,
    #[serde(flatten)]
    per_image: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    rpm: Option<Spanned<i64>>,
    tpm: Option<Spanned<i64>>,
    min_spend_usd: Option<f64>,
    min_account_age_days: Option<u32>,
    requirement: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKinds {
    openai: Option<RawOpenAiKind>,
    azure: Option<RawAzureKind>,
    compatible: Option<RawCompatibleKind>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenAiKind {
    base_url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAzureKind {
    api_version: Option<String>,
    output_formats: Option<Vec<OutputFormat>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompatibleKind {
    chat_edits: Option<bool>,
    chat_max_n: Option<u8>,
}

macro_rules! overlay {
    ($base:expr, $over:expr; $($f:ident),+ $(,)?) => {
        $( if $over.$f.is_some() { $base.$f = $over.$f.clone(); } )+
    };
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Token-price keys of a `price` table; any other key is a per-image row (a table).
const PRICE_KEYS: [&str; 6] = [
    "unit",
    "text_input",
    "cached_text_input",
    "image_input",
    "cached_image_input",
    "image_output",
];

/// Names a misspelt price key (`text_inptu = 5.0`) instead of the typed parser's "expected a
/// map": a price table's unknown keys are read as per-image rows, so a scalar there is a typo.
fn check_price_keys(source: &str, text: &str) -> Result<(), ConfigError> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Ok(()); // the typed parse reports syntax errors with their line
    };
    let Some(models) = doc.get("models").and_then(toml::Value::as_table) else {
        return Ok(());
    };
    for (name, m) in models {
        let Some(price) = m.get("price").and_then(toml::Value::as_table) else {
            continue;
        };
        for (key, v) in price {
            if PRICE_KEYS.contains(&key.as_str()) || v.is_table() {
                continue;
            }
            let err = ConfigError::new(
                format!("models.{name}.price.{key}"),
                format!(
                    "unknown price field `{key}`; token prices take {} (USD per 1M tokens), \
                     per-image prices are tables such as standard = {{ \"1024x1024\" = 0.04 }}",
                    PRICE_KEYS[1..].join(", ")
                ),
            );
            return Err(locate_in_source(err, source, text));
        }
    }
    Ok(())
}

fn parse_source(source: &str, text: &str) -> Result<RawFile, ConfigError> {
    check_price_keys(source, text)?;
    let mut raw: RawFile = toml::from_str(text).map_err(|e| {
        let mut err = ConfigError::new(source.to_string(), e.message().to_string());
        if let Some(span) = e.span() {
            err = err.at_line(line_of(text, span.start));
        }
        err
    })?;
    raw.source = source.to_string();
    raw.text = text.to_string();
    // Checks that need the file's own text for a line number.
    for (name, m) in &raw.models {
        if let Some(p) = &m.price {
            let line = line_of(text, p.span().start);
            let field = format!("{source}: models.{name}.price");
            match p.get_ref().unit.as_deref() {
                None => {
                    return Err(ConfigError::new(
                        field,
                        "a price needs a `unit`: \"usd_per_1m_tokens\" or \"usd_per_image\"",
                    )
                    .at_line(line))
                }
                Some("usd_per_1m_tokens") | Some("usd_per_image") => {}
                Some(other) => {
                    return Err(ConfigError::new(
                        field,
                        format!("unknown price unit {other:?}; expected \"usd_per_1m_tokens\" or \"usd_per_image\""),
                    )
                    .at_line(line))
                }
            }
        }
    }
    for (name, t) in &raw.tiers {
        for (key, v) in [("rpm", &t.rpm), ("tpm", &t.tpm)] {
            if let Some(v) = v {
                if *v.get_ref() < 0 {
                    return Err(ConfigError::new(
                        format!("{source}: tiers.{name}.{key}"),
                        format!("must not be negative, got {}", v.get_ref()),
                    )
                    .at_line(line_of(text, v.span().start)));
                }
            }
        }
    }
    if let Some(v) = &raw.default_output_tokens_per_image {
        if *v.get_ref() <= 0 {
            return Err(ConfigError::new(
                format!("{source}: default_output_tokens_per_image"),
                "must be a positive number of tokens",
            )
            .at_line(line_of(text, v.span().start)));
        }
    }
    Ok(raw)
}

/// A table header's path without brackets, quotes and spaces (`[models."x".price]` →
/// `models.x.price`); `None` for other lines.
fn header_path(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    let inner = inner[..end].trim_start_matches('[').trim_end_matches(']');
    Some(
        inner
            .chars()
            .filter(|c| !matches!(c, '"' | '\'' | ' ' | '\t'))
            .collect(),
    )
}

/// Whether `line` assigns `key` (`key = …`, `"key" = …`).
fn assigns(line: &str, key: &str) -> bool {
    let t = line.trim_start();
    let t = t
        .strip_prefix('"')
        .or_else(|| t.strip_prefix('\''))
        .unwrap_or(t);
    t.strip_prefix(key).is_some_and(|rest| {
        rest.trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with('=')
    })
}

/// Gives an error found while building the merged catalog the override file's name and the
/// line of the entry at fault, when that entry is in the file (a missing field points at its
/// table, a bad value at its line). Errors about entries the file does not mention are kept as
/// they are.
fn locate_in_source(mut err: ConfigError, source: &str, text: &str) -> ConfigError {
    if err.line.is_some() {
        return err;
    }
    let field = err.field.clone();
    let lines: Vec<&str> = text.lines().collect();
    // The deepest table whose path is a prefix of the field.
    let mut best: Option<(usize, usize)> = None; // (index, path length)
    for (i, line) in lines.iter().enumerate() {
        let Some(path) = header_path(line) else {
            continue;
        };
        let prefix = field == path
            || (field.starts_with(&path) && field.as_bytes().get(path.len()) == Some(&b'.'));
        if prefix && best.is_none_or(|(_, len)| path.len() > len) {
            best = Some((i, path.len()));
        }
    }
    let Some((header, len)) = best else {
        // A top-level key (`default_model = ""`): its line before the first table.
        if let Some(i) = lines
            .iter()
            .take_while(|l| header_path(l).is_none())
            .position(|l| assigns(l, &field))
        {
            err.field = format!("{source}: {field}");
            return err.at_line(i + 1);
        }
        return err;
    };
    let mut line = header;
    if let Some(rest) = field.get(len + 1..).filter(|r| !r.is_empty()) {
        let key = rest.split('.').next().unwrap_or(rest);
        if let Some(off) = lines[header + 1..]
            .iter()
            .take_while(|l| header_path(l).is_none())
            .position(|l| assigns(l, key))
        {
            line = header + 1 + off;
        }
    }
    err.field = format!("{source}: {field}");
    err.at_line(line + 1)
}

impl RawFile {
    fn merge(&mut self, over: &RawFile) {
        overlay!(self, over; default_model, default_output_tokens_per_image);
        for (name, m) in &over.models {
            let base = self.models.entry(name.clone()).or_default();
            overlay!(base, m; like, max_prompt_chars, max_n, sizes, qualities, edit_qualities,
                default_quality, default_size, output_formats, backgrounds, edits, max_edit_images,
                input_fidelity, moderation, style, response_format, output_tokens,
                default_output_tokens_per_image);
            if let Some(p) = &m.price {
                // A price table in a later source replaces the earlier one field by field only
                // when the unit matches; a different unit replaces it whole.
                match &mut base.price {
                    Some(bp) if bp.get_ref().unit == p.get_ref().unit => {
                        let (b, o) = (bp.get_mut(), p.get_ref());
                        overlay!(b, o; text_input, cached_text_input, image_input, cached_image_input, image_output);
                        for (k, v) in &o.per_image {
                            b.per_image.entry(k.clone()).or_default().extend(v.clone());
                        }
                    }
                    _ => base.price = Some(p.clone()),
                }
            }
        }
        for (name, t) in &over.tiers {
            let base = self.tiers.entry(name.clone()).or_default();
            overlay!(base, t; rpm, tpm, min_spend_usd, min_account_age_days, requirement);
        }
        if let Some(o) = &over.kinds.openai {
            let b = self.kinds.openai.get_or_insert_with(Default::default);
            overlay!(b, o; base_url);
        }
        if let Some(o) = &over.kinds.azure {
            let b = self.kinds.azure.get_or_insert_with(Default::default);
            overlay!(b, o; api_version, output_formats);
        }
        if let Some(o) = &over.kinds.compatible {
            let b = self.kinds.compatible.get_or_insert_with(Default::default);
            overlay!(b, o; chat_edits, chat_max_n);
        }
    }
}

fn resolve_model(raw: &RawFile, name: &str, depth: usize) -> Result<RawModel, ConfigError> {
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
    let mut tmp = RawFile::default();
    tmp.models.insert(name.to_string(), base);
    let mut over = RawFile::default();
    over.models.insert(name.to_string(), own);
    tmp.merge(&over);
    Ok(tmp.models.remove(name).unwrap_or_default())
}

fn required<T: Clone>(v: &Option<T>, model: &str, field: &str) -> Result<T, ConfigError> {
    v.clone().ok_or_else(|| {
        ConfigError::new(
            format!("models.{model}.{field}"),
            "missing (give it, or `like = \"<another model>\"` to copy it)",
        )
    })
}

fn build_model(name: &str, m: &RawModel, default_tokens: u32) -> Result<ModelSpec, ConfigError> {
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
    Ok(ModelSpec {
        capabilities: caps,
        output_tokens: m.output_tokens.clone().unwrap_or_default(),
        price,
        fallback_output_tokens: m.default_output_tokens_per_image.unwrap_or(default_tokens),
    })
}

fn build_price(name: &str, p: &RawPrice) -> Result<Price, ConfigError> {
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

fn build(raw: RawFile) -> Result<Catalog, ConfigError> {
    let default_tokens = match &raw.default_output_tokens_per_image {
        Some(v) => u32::try_from(*v.get_ref())
            .map_err(|_| ConfigError::new("default_output_tokens_per_image", "out of range"))?,
        None => 4160,
    };
    let mut models = BTreeMap::new();
    for name in raw.models.keys() {
        let m = resolve_model(&raw, name, 0)?;
        models.insert(name.clone(), build_model(name, &m, default_tokens)?);
    }
    let mut tiers = BTreeMap::new();
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
                rpm: u32::try_from(rpm)
                    .map_err(|_| ConfigError::new(format!("tiers.{name}.rpm"), "out of range"))?,
                tpm: u64::try_from(tpm)
                    .map_err(|_| ConfigError::new(format!("tiers.{name}.tpm"), "out of range"))?,
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
    ///     [tiers."tier-2"]
    ///     rpm = 20
    /// "#, "override.toml").unwrap();
    /// assert_eq!(cat.model("my-model").unwrap().capabilities.max_n, 4);
    /// assert_eq!(cat.tier("tier-2").unwrap().rpm, 20);
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

    /// All tiers, ordered by RPM then name.
    pub fn tiers(&self) -> Vec<&Tier> {
        let mut v: Vec<&Tier> = self.tiers.values().collect();
        v.sort_by(|a, b| (a.rpm, a.tpm, &a.name).cmp(&(b.rpm, b.tpm, &b.name)));
        v
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
        assert!(c.model("gpt-image-2").unwrap().price.is_none());
        assert!(!c.tier("free").unwrap().has_access());
        assert_eq!(c.tier("tier-3").unwrap().tpm, 1_000_000);
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
