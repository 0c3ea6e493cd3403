//! Translating a request for another model, and the list of what changed.
//!
//! Two features send a request as something other than what the application wrote: model
//! fallback (the router routes a fallback model when no provider can serve the requested one)
//! and preview mode (every request in its cheapest faithful form, `router/preview.rs`).
//! Both change only what they must and say what they changed, field by field, as a list of
//! [`Change`]s on the response.
//!
//! [`translate`] maps a request onto another model's [`Capabilities`] (from the catalog):
//! - `model` becomes the target;
//! - a `size` the target does not take becomes the accepted size of the same orientation
//!   (square, landscape, portrait) nearest in pixel count; `auto` where the target has no
//!   `auto` is dropped (the target's default applies);
//! - a `quality` the target does not take becomes the nearest on the scale low < medium ≈
//!   standard < high ≈ hd (ties go to the cheaper); `auto` is dropped where not taken;
//! - `n` above the target's `max_n` (dall-e-3 takes 1) becomes `max_n`;
//! - `background`, `output_format`, `output_compression`, `moderation`, `style`,
//!   `response_format` and `input_fidelity` the target does not take are dropped;
//! - `user` is kept;
//! - what cannot be mapped without changing the request's meaning is an [`Unsupported`]: an
//!   edit to a model without edits, a prompt longer than the target takes (cutting it would
//!   change the image), more input images than the target takes.
//!
//! The result is checked with [`Capabilities::check`], so a translated request is never one
//! the target model refuses by its catalog entry. The quality scale and orientation rule are
//! this crate's own choice (the API documents no mapping between model families).

use std::fmt;

use serde::Serialize;

use super::{Capabilities, ImageRequest, Quality, Size, Unsupported};

/// One field a request was sent with other than as written.
///
/// ```
/// use image_router::Change;
/// let c = Change::new("size", Some("1536x1024"), Some("1024x1024"));
/// assert_eq!(c.to_string(), "size 1536x1024 → 1024x1024");
/// assert_eq!(Change::new("style", Some("vivid"), None::<&str>).to_string(), "style vivid → (dropped)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Change {
    /// The request field (`"model"`, `"size"`, `"quality"`, `"n"`, ...).
    pub field: &'static str,
    /// The value as written (`None`: not set, the model's default).
    pub from: Option<String>,
    /// The value sent (`None`: dropped, the model's default applies).
    pub to: Option<String>,
}

impl Change {
    /// A change of `field` from `from` to `to`.
    pub fn new(
        field: &'static str,
        from: Option<impl ToString>,
        to: Option<impl ToString>,
    ) -> Self {
        Self {
            field,
            from: from.map(|v| v.to_string()),
            to: to.map(|v| v.to_string()),
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} → {}",
            self.field,
            self.from.as_deref().unwrap_or("(default)"),
            self.to.as_deref().unwrap_or("(dropped)")
        )
    }
}

/// A list of changes in one line: `"model gpt-image-1 → dall-e-3, n 2 → 1"`.
pub fn describe_changes(changes: &[Change]) -> String {
    changes
        .iter()
        .map(Change::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records `field` changing from `from` to `to` when they differ; returns `to`.
pub(crate) fn set<T: PartialEq + fmt::Display + Copy>(
    changes: &mut Vec<Change>,
    field: &'static str,
    from: Option<T>,
    to: Option<T>,
) -> Option<T> {
    if from != to {
        changes.push(Change::new(field, from, to));
    }
    to
}

/// Where a quality sits on the cost scale shared by GPT image and dall-e models (`None` for
/// `auto`, which is the model's choice).
pub(crate) fn quality_rank(q: Quality) -> Option<u8> {
    match q {
        Quality::Low => Some(0),
        Quality::Medium | Quality::Standard => Some(1),
        Quality::High | Quality::Hd => Some(2),
        _ => None,
    }
}

/// The qualities `caps` takes for `req`'s operation.
pub(crate) fn accepted_qualities<'c>(caps: &'c Capabilities, req: &ImageRequest) -> &'c [Quality] {
    if req.is_edit() && !caps.edit_qualities.is_empty() {
        &caps.edit_qualities
    } else {
        &caps.qualities
    }
}

fn map_quality(q: Option<Quality>, accepted: &[Quality]) -> Option<Quality> {
    let q = q?;
    if accepted.contains(&q) {
        return Some(q);
    }
    let rank = quality_rank(q)?;
    accepted
        .iter()
        .filter_map(|a| quality_rank(*a).map(|r| (r.abs_diff(rank), r, *a)))
        .min_by_key(|(dist, r, _)| (*dist, *r))
        .map(|(.., a)| a)
}

/// -1 portrait, 0 square, 1 landscape.
pub(crate) fn orientation(w: u32, h: u32) -> i8 {
    match w.cmp(&h) {
        std::cmp::Ordering::Less => -1,
        std::cmp::Ordering::Equal => 0,
        std::cmp::Ordering::Greater => 1,
    }
}

fn map_size(size: Option<Size>, caps: &Capabilities) -> Option<Size> {
    let size = size?;
    if caps.sizes.is_empty() || caps.sizes.contains(&size) {
        return Some(size);
    }
    let (w, h) = size.dims()?;
    let pixels = u64::from(w) * u64::from(h);
    let explicit = || caps.sizes.iter().filter_map(|s| s.dims().map(|d| (*s, d)));
    let same: Vec<_> = explicit()
        .filter(|(_, (sw, sh))| orientation(*sw, *sh) == orientation(w, h))
        .collect();
    let pool = if same.is_empty() {
        explicit().collect()
    } else {
        same
    };
    pool.into_iter()
        .min_by_key(|(_, (sw, sh))| (u64::from(*sw) * u64::from(*sh)).abs_diff(pixels))
        .map(|(s, _)| s)
}

/// `req` as `to.model` takes it, and what changed (see the module docs).
///
/// ```
/// use image_router::{catalog::Catalog, translate, GenerateRequest, Quality, Size};
/// let dalle = &Catalog::builtin().model("dall-e-3").unwrap().capabilities;
/// let req = GenerateRequest::new("a fox").model("gpt-image-1").n(2)
///     .size(Size::LANDSCAPE).quality(Quality::High);
/// let (out, changes) = translate(&req.into(), dalle).unwrap();
/// assert_eq!(out.model(), Some("dall-e-3"));
/// assert_eq!((out.n(), out.size(), out.quality()), (1, Some(Size::new(1792, 1024)), Some(Quality::Hd)));
/// assert_eq!(changes.len(), 4);
/// ```
pub fn translate(
    req: &ImageRequest,
    to: &Capabilities,
) -> Result<(ImageRequest, Vec<Change>), Unsupported> {
    if req.is_edit() && !to.edits {
        return Err(Unsupported::Operation {
            operation: "edits",
            message: format!("{} does not serve image edits", to.model),
        });
    }
    let mut out = req.clone();
    let mut ch = Vec::new();
    if req.model() != Some(to.model.as_str()) {
        ch.push(Change::new("model", req.model(), Some(&to.model)));
        out.set_model(to.model.clone());
    }
    let quality = map_quality(req.quality(), accepted_qualities(to, req));
    let size = map_size(req.size(), to);
    let n = (req.n() > to.max_n).then_some(to.max_n);
    let background = req.background().filter(|b| to.backgrounds.contains(b));
    let format = req
        .output_format()
        .filter(|f| to.output_formats.contains(f));
    let compression = req.output_compression().filter(|_| format.is_some());
    match &mut out {
        ImageRequest::Generate(g) => {
            if let Some(n) = n {
                g.n = set(&mut ch, "n", g.n.or(Some(1)), Some(n));
            }
            g.size = set(&mut ch, "size", g.size, size);
            g.quality = set(&mut ch, "quality", g.quality, quality);
            g.background = set(&mut ch, "background", g.background, background);
            g.output_format = set(&mut ch, "output_format", g.output_format, format);
            g.output_compression = set(
                &mut ch,
                "output_compression",
                g.output_compression,
                compression,
            );
            let moderation = g.moderation.filter(|_| to.moderation);
            g.moderation = set(&mut ch, "moderation", g.moderation, moderation);
            let style = g.style.filter(|_| to.style);
            g.style = set(&mut ch, "style", g.style, style);
            let rf = g.response_format.filter(|_| to.response_format);
            g.response_format = set(&mut ch, "response_format", g.response_format, rf);
        }
        ImageRequest::Edit(e) => {
            if let Some(n) = n {
                e.n = set(&mut ch, "n", e.n.or(Some(1)), Some(n));
            }
            e.size = set(&mut ch, "size", e.size, size);
            e.quality = set(&mut ch, "quality", e.quality, quality);
            e.background = set(&mut ch, "background", e.background, background);
            e.output_format = set(&mut ch, "output_format", e.output_format, format);
            e.output_compression = set(
                &mut ch,
                "output_compression",
                e.output_compression,
                compression,
            );
            let fidelity = e.input_fidelity.filter(|_| to.input_fidelity);
            e.input_fidelity = set(&mut ch, "input_fidelity", e.input_fidelity, fidelity);
        }
    }
    to.check(&out)?;
    Ok((out, ch))
}

/// One change per field: a field changed twice (translated, then made cheaper) keeps where it
/// came from and where it ended; a field back where it started is no change.
pub(crate) fn squash(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    for c in changes {
        match out.iter_mut().find(|o| o.field == c.field) {
            Some(o) => o.to = c.to,
            None => out.push(c),
        }
    }
    out.retain(|c| c.from != c.to);
    out
}
