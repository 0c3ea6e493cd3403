//! Preview mode: every request in its cheapest faithful form.
//!
//! OpenAI's own advice for image models is preview-quality images during development and full
//! quality for production. With preview on (router-wide: [`RouterBuilder::preview`], the
//! config file's `[router] preview = true`, or the environment variable
//! [`PREVIEW_ENV`] `IMAGE_ROUTER_PREVIEW=1|0`, which overrides the file), each request is sent:
//! - at the lowest quality the model takes for the operation (GPT image models: `low`;
//!   dall-e: `standard`), from the catalog's `qualities` / `edit_qualities`;
//! - at the model's smallest size from the catalog's `sizes`, of the same orientation as the
//!   size asked for (a landscape banner stays landscape: that is what "faithful" keeps), or the
//!   smallest overall when no explicit size was asked;
//! - optionally (`preview_model = true` / [`PreviewConfig::cheaper_model`]) on a cheaper model
//!   of the same family when the catalog names one (`preview_model = "gpt-image-1-mini"` on
//!   gpt-image-1), translated as model fallback translates (`crate::request::translate`).
//!
//! `n`, the prompt, the images and every other field are kept: a preview shows what the real
//! request would make, only cheaper. A model the catalog does not know is sent unchanged (its
//! cheapest form is unknown). The response's [`Preview`](crate::Preview) lists every change.
//!
//! [`RouterBuilder::preview`]: super::RouterBuilder::preview

use serde::Serialize;

use crate::catalog::Catalog;
use crate::request::translate::{accepted_qualities, orientation, quality_rank, set};
use crate::request::{translate, Capabilities, Change, ImageRequest, Size};

/// The environment variable that turns preview mode on (`1`, `true`, `yes`, `on`) or off
/// (`0`, `false`, `no`, `off`) over the config file's `[router] preview`, where a router is
/// built from a config file ([`RouterConfig::with_preview_env`], used by
/// `RouterConfig::build` and `Router::from_config_file`); a builder in code sets
/// [`RouterBuilder::preview`] itself.
///
/// [`RouterConfig::with_preview_env`]: crate::config::RouterConfig::with_preview_env
/// [`RouterBuilder::preview`]: super::RouterBuilder::preview
pub const PREVIEW_ENV: &str = "IMAGE_ROUTER_PREVIEW";

/// Preview mode's settings (see the module docs of `router/preview.rs`, summarised here).
///
/// ```
/// use image_router::PreviewConfig;
/// assert!(!PreviewConfig::default().enabled);
/// let p = PreviewConfig::from(true).cheaper_model(true);
/// assert!(p.enabled && p.cheaper_model);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PreviewConfig {
    /// Every request goes out at the lowest quality and smallest size its model takes.
    pub enabled: bool,
    /// Also switch to the cheaper model of the same family the catalog names
    /// (`preview_model`), when it names one.
    pub cheaper_model: bool,
}

impl PreviewConfig {
    /// Preview on, on the requested model.
    pub fn on() -> Self {
        Self {
            enabled: true,
            cheaper_model: false,
        }
    }

    /// Sets [`cheaper_model`](Self::cheaper_model).
    #[must_use]
    pub fn cheaper_model(mut self, yes: bool) -> Self {
        self.cheaper_model = yes;
        self
    }

    /// Reads a value of [`PREVIEW_ENV`]: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`
    /// (any case, surrounding spaces ignored); anything else is an error naming the variable.
    ///
    /// ```
    /// use image_router::PreviewConfig;
    /// assert_eq!(PreviewConfig::parse_env_value(" ON "), Ok(true));
    /// assert_eq!(PreviewConfig::parse_env_value("0"), Ok(false));
    /// assert!(PreviewConfig::parse_env_value("maybe").unwrap_err().contains("IMAGE_ROUTER_PREVIEW"));
    /// ```
    pub fn parse_env_value(value: &str) -> Result<bool, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "{PREVIEW_ENV}={value:?}: expected 1, true, yes, on, or 0, false, no, off"
            )),
        }
    }
}

impl From<bool> for PreviewConfig {
    fn from(enabled: bool) -> Self {
        Self {
            enabled,
            cheaper_model: false,
        }
    }
}

/// `req` (its model resolved) in its cheapest faithful form, and what changed.
pub(crate) fn apply(
    catalog: &Catalog,
    cfg: PreviewConfig,
    req: &ImageRequest,
) -> (ImageRequest, Vec<Change>) {
    let mut out = req.clone();
    let mut changes = Vec::new();
    let Some(spec) = req.model().and_then(|m| catalog.model(m)) else {
        return (out, changes);
    };
    let mut caps = &spec.capabilities;
    if cfg.cheaper_model {
        let cheaper = spec.preview_model.as_deref().and_then(|m| catalog.model(m));
        // A translation the cheaper model refuses (a prompt too long for it, say) keeps the
        // requested model: preview never fails a request that would otherwise go out.
        if let Some(c) = cheaper {
            if let Ok((t, ch)) = translate(req, &c.capabilities) {
                out = t;
                changes = ch;
                caps = &c.capabilities;
            }
        }
    }
    cheapest(&mut out, caps, &mut changes);
    (out, changes)
}

/// Lowest quality and smallest size of `caps` (see the module docs), recorded in `changes`.
pub(crate) fn cheapest(req: &mut ImageRequest, caps: &Capabilities, changes: &mut Vec<Change>) {
    let quality = accepted_qualities(caps, req)
        .iter()
        .filter_map(|q| quality_rank(*q).map(|r| (r, *q)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, q)| q);
    let wanted = req.size().and_then(|s| s.dims());
    let sizes = || caps.sizes.iter().filter_map(|s| s.dims().map(|d| (*s, d)));
    let smallest = |same: bool| {
        sizes()
            .filter(|(_, (w, h))| match (same, wanted) {
                (true, Some((ww, wh))) => orientation(*w, *h) == orientation(ww, wh),
                _ => true,
            })
            .min_by_key(|(_, (w, h))| (u64::from(*w) * u64::from(*h), *w))
            .map(|(s, _)| s)
    };
    let size: Option<Size> = smallest(true).or_else(|| smallest(false));
    match req {
        ImageRequest::Generate(g) => {
            if quality.is_some() {
                g.quality = set(changes, "quality", g.quality, quality);
            }
            if size.is_some() {
                g.size = set(changes, "size", g.size, size);
            }
        }
        ImageRequest::Edit(e) => {
            if quality.is_some() {
                e.quality = set(changes, "quality", e.quality, quality);
            }
            if size.is_some() {
                e.size = set(changes, "size", e.size, size);
            }
        }
    }
}
