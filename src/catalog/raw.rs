//! The file schema of a catalog source (`providers/*.toml` or a user's override file), read
//! with every field optional, and how a later source overlays an earlier one field by field.
//! Apart from the served types because this shape exists only while loading.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::request::{Background, OutputFormat, Quality, Size};

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) default_model: Option<String>,
    pub(super) default_output_tokens_per_image: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub(super) tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    pub(super) usage_tiers: BTreeMap<String, RawUsageTier>,
    #[serde(default)]
    pub(super) kinds: RawKinds,
    #[serde(skip)]
    pub(super) source: String,
    #[serde(skip)]
    pub(super) text: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub(super) like: Option<String>,
    pub(super) max_prompt_chars: Option<usize>,
    pub(super) max_n: Option<u8>,
    pub(super) sizes: Option<Vec<Size>>,
    pub(super) qualities: Option<Vec<Quality>>,
    pub(super) edit_qualities: Option<Vec<Quality>>,
    pub(super) default_quality: Option<Quality>,
    pub(super) default_size: Option<Size>,
    pub(super) output_formats: Option<Vec<OutputFormat>>,
    pub(super) backgrounds: Option<Vec<Background>>,
    pub(super) edits: Option<bool>,
    pub(super) max_edit_images: Option<usize>,
    pub(super) input_fidelity: Option<bool>,
    pub(super) moderation: Option<bool>,
    pub(super) style: Option<bool>,
    pub(super) response_format: Option<bool>,
    pub(super) streaming: Option<bool>,
    pub(super) output_tokens: Option<BTreeMap<Quality, BTreeMap<Size, u32>>>,
    pub(super) default_output_tokens_per_image: Option<u32>,
    pub(super) price: Option<Spanned<RawPrice>>,
    /// The cheaper model of the same family preview mode may switch to (never inherited
    /// through `like`: a successor names its own, or has none).
    pub(super) preview_model: Option<String>,
    /// Published rate limits per usage tier (`"tier-1"` → figures).
    pub(super) limits: Option<BTreeMap<String, RawModelLimits>>,
}

/// One model's published limits at one usage tier; every figure optional (unpublished).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModelLimits {
    pub(super) rpm: Option<Spanned<i64>>,
    pub(super) tpm: Option<Spanned<i64>>,
    pub(super) ipm: Option<Spanned<i64>>,
}

/// One of OpenAI's usage tiers: its order and what it needs (its limits are per model).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUsageTier {
    pub(super) level: Option<u32>,
    pub(super) access: Option<bool>,
    pub(super) min_spend_usd: Option<f64>,
    pub(super) min_account_age_days: Option<u32>,
    pub(super) requirement: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub(super) struct RawPrice {
    pub(super) unit: Option<String>,
    pub(super) text_input: Option<f64>,
    pub(super) cached_text_input: Option<f64>,
    pub(super) image_input: Option<f64>,
    pub(super) cached_image_input: Option<f64>,
    pub(super) image_output: Option<f64>,
    #[serde(flatten)]
    pub(super) per_image: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    pub(super) rpm: Option<Spanned<i64>>,
    pub(super) tpm: Option<Spanned<i64>>,
    pub(super) min_spend_usd: Option<f64>,
    pub(super) min_account_age_days: Option<u32>,
    pub(super) requirement: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKinds {
    pub(super) openai: Option<RawOpenAiKind>,
    pub(super) azure: Option<RawAzureKind>,
    pub(super) compatible: Option<RawCompatibleKind>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpenAiKind {
    pub(super) base_url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAzureKind {
    pub(super) api_version: Option<String>,
    pub(super) output_formats: Option<Vec<OutputFormat>>,
    pub(super) stream_api_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompatibleKind {
    pub(super) chat_edits: Option<bool>,
    pub(super) chat_max_n: Option<u8>,
    pub(super) images_streaming: Option<bool>,
}

macro_rules! overlay {
    ($base:expr, $over:expr; $($f:ident),+ $(,)?) => {
        $( if $over.$f.is_some() { $base.$f = $over.$f.clone(); } )+
    };
}

impl RawFile {
    pub(super) fn merge(&mut self, over: &RawFile) {
        overlay!(self, over; default_model, default_output_tokens_per_image);
        for (name, m) in &over.models {
            let base = self.models.entry(name.clone()).or_default();
            overlay!(base, m; like, max_prompt_chars, max_n, sizes, qualities, edit_qualities,
                default_quality, default_size, output_formats, backgrounds, edits, max_edit_images,
                input_fidelity, moderation, style, response_format, streaming, output_tokens,
                default_output_tokens_per_image, preview_model);
            if let Some(limits) = &m.limits {
                // Field by field per tier: an override of `ipm` keeps the published `tpm`.
                let base_limits = base.limits.get_or_insert_with(BTreeMap::new);
                for (tier, l) in limits {
                    let b = base_limits.entry(tier.clone()).or_default();
                    overlay!(b, l; rpm, tpm, ipm);
                }
            }
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
        for (name, t) in &over.usage_tiers {
            let base = self.usage_tiers.entry(name.clone()).or_default();
            overlay!(base, t; level, access, min_spend_usd, min_account_age_days, requirement);
        }
        if let Some(o) = &over.kinds.openai {
            let b = self.kinds.openai.get_or_insert_with(Default::default);
            overlay!(b, o; base_url);
        }
        if let Some(o) = &over.kinds.azure {
            let b = self.kinds.azure.get_or_insert_with(Default::default);
            overlay!(b, o; api_version, output_formats, stream_api_version);
        }
        if let Some(o) = &over.kinds.compatible {
            let b = self.kinds.compatible.get_or_insert_with(Default::default);
            overlay!(b, o; chat_edits, chat_max_n, images_streaming);
        }
    }
}
