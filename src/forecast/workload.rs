//! The workload a forecast is made for: counts of requests by model, size, quality and `n`,
//! built in code or read from a prompts file.
//!
//! The prompts file is the one `image-router batch` reads: one prompt per line, blank lines
//! and `#` comments skipped, or one JSON object per line (`{"prompt": "…", "n": 2, …}`) whose
//! `model` / `size` / `quality` / `n` override the defaults. Only what changes time or money
//! is kept (the request's shape and its prompt's length), so a 10,000-line file is a few
//! hundred kilobytes of items. Reading is bounded ([`MAX_PROMPTS_FILE_BYTES`]) and every
//! problem is a [`WorkloadError`] naming the line: a forecast that silently skipped a line
//! would understate the bill.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::request::{GenerateRequest, ImageRequest, Quality, Size};

/// The largest prompts file [`Workload::from_prompts_file`] reads (16 MiB: about 100,000
/// prompts of 150 characters). Larger files are refused rather than read into memory: each
/// line that differs from the one before in shape becomes an item of about 100 bytes.
pub const MAX_PROMPTS_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The prompt length assumed for requests given by count ([`WorkItem::new`]), in characters.
/// Prompt text is a small part of an image request's tokens (about 25 tokens against 272 to
/// 6240 for the image), so a typical length is close enough.
pub const DEFAULT_PROMPT_CHARS: usize = 100;

/// `count` requests of one shape.
///
/// ```
/// use image_router::forecast::WorkItem;
/// use image_router::{Quality, Size};
/// let item = WorkItem::new(200).model("gpt-image-1").size(Size::SQUARE).quality(Quality::High).n(2);
/// assert_eq!(item.images(), 400);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkItem {
    /// How many requests.
    pub count: u64,
    /// The model (`None`: the router's default model).
    pub model: Option<String>,
    /// The size (`None`: the model's default).
    pub size: Option<Size>,
    /// The quality (`None`: the model's default).
    pub quality: Option<Quality>,
    /// Images per request.
    pub n: u8,
    /// Prompt length in characters (for the text-token estimate).
    pub prompt_chars: usize,
}

impl WorkItem {
    /// `count` requests of the router's default model, size and quality, one image each.
    pub fn new(count: u64) -> Self {
        Self {
            count,
            model: None,
            size: None,
            quality: None,
            n: 1,
            prompt_chars: DEFAULT_PROMPT_CHARS,
        }
    }
    /// Sets the model.
    #[must_use]
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// Sets the size.
    #[must_use]
    pub fn size(mut self, size: Size) -> Self {
        self.size = Some(size);
        self
    }
    /// Sets the quality.
    #[must_use]
    pub fn quality(mut self, quality: Quality) -> Self {
        self.quality = Some(quality);
        self
    }
    /// Sets images per request.
    #[must_use]
    pub fn n(mut self, n: u8) -> Self {
        self.n = n;
        self
    }
    /// Sets the prompt length in characters.
    #[must_use]
    pub fn prompt_chars(mut self, chars: usize) -> Self {
        self.prompt_chars = chars;
        self
    }

    /// Images of all its requests.
    pub fn images(&self) -> u64 {
        self.count.saturating_mul(u64::from(self.n))
    }

    /// One request of this shape, as the router would receive it (`model` filled in).
    pub(crate) fn request(&self, model: &str) -> ImageRequest {
        let mut r = GenerateRequest::new("x".repeat(self.prompt_chars.clamp(1, 32_000)));
        r.model = Some(model.to_string());
        r.size = self.size;
        r.quality = self.quality;
        r.n = Some(self.n);
        ImageRequest::Generate(r)
    }

    /// Whether `other` has the same shape (everything but the count).
    fn same_shape(&self, other: &WorkItem) -> bool {
        self.model == other.model
            && self.size == other.size
            && self.quality == other.quality
            && self.n == other.n
            && self.prompt_chars == other.prompt_chars
    }
}

/// Requests in the order they will be sent.
///
/// ```
/// use image_router::forecast::{Workload, WorkItem};
/// use image_router::Quality;
/// let w = Workload::new()
///     .with(WorkItem::new(100).quality(Quality::High))
///     .with(WorkItem::new(50).quality(Quality::Low).n(2));
/// assert_eq!((w.requests(), w.images()), (150, 200));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    items: Vec<WorkItem>,
}

/// Why a workload could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WorkloadError {
    /// A line of the prompts file cannot be a request.
    #[error("line {line}: {message}")]
    Line {
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The file cannot be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The system's reason.
        message: String,
    },
    /// The file is larger than [`MAX_PROMPTS_FILE_BYTES`].
    #[error("{path} is larger than {limit} bytes; split it")]
    TooLarge {
        /// The file.
        path: String,
        /// The limit, bytes.
        limit: u64,
    },
}

/// A JSON line's fields that matter for time and money; the others (`name`, `class`,
/// `output_format`, …) are accepted and ignored.
#[derive(Deserialize)]
struct JsonLine {
    prompt: Option<String>,
    model: Option<String>,
    size: Option<Size>,
    quality: Option<Quality>,
    n: Option<u8>,
}

impl Workload {
    /// An empty workload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `item` (merged into the last item when it has the same shape).
    #[must_use]
    pub fn with(mut self, item: WorkItem) -> Self {
        self.push(item);
        self
    }

    fn push(&mut self, item: WorkItem) {
        if item.count == 0 {
            return;
        }
        match self.items.last_mut() {
            Some(last) if last.same_shape(&item) => {
                last.count = last.count.saturating_add(item.count);
            }
            _ => self.items.push(item),
        }
    }

    /// The items, in order.
    pub fn items(&self) -> &[WorkItem] {
        &self.items
    }

    /// Number of requests.
    pub fn requests(&self) -> u64 {
        self.items
            .iter()
            .fold(0u64, |a, i| a.saturating_add(i.count))
    }

    /// Number of images.
    pub fn images(&self) -> u64 {
        self.items
            .iter()
            .fold(0u64, |a, i| a.saturating_add(i.images()))
    }

    /// The workload of a prompts file (see the module docs): each prompt line is one request
    /// shaped by `defaults` (its count is ignored), a JSON line's fields override them.
    ///
    /// ```
    /// use image_router::forecast::{Workload, WorkItem, WorkloadError};
    /// let text = "a fox\n# a comment\n{\"prompt\": \"two cats\", \"n\": 2}\n";
    /// let w = Workload::from_prompts(text.as_bytes(), &WorkItem::new(1)).unwrap();
    /// assert_eq!((w.requests(), w.images()), (2, 3));
    /// let bad = Workload::from_prompts(b"a fox\n{\"prompt\": \"\"}\n", &WorkItem::new(1));
    /// assert!(matches!(bad, Err(WorkloadError::Line { line: 2, .. })));
    /// ```
    pub fn from_prompts(text: &[u8], defaults: &WorkItem) -> Result<Workload, WorkloadError> {
        let mut w = Workload::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let bad = |message: String| WorkloadError::Line { line, message };
            let t = std::str::from_utf8(raw)
                .map_err(|_| bad("not UTF-8 text; save the prompts file as UTF-8".into()))?
                .trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let mut item = defaults.clone();
            item.count = 1;
            let prompt = if t.starts_with('{') {
                let j: JsonLine = serde_json::from_str(t)
                    .map_err(|e| bad(format!("not a valid JSON prompt: {e}")))?;
                item.model = j.model.or(item.model);
                item.size = j.size.or(item.size);
                item.quality = j.quality.or(item.quality);
                item.n = j.n.unwrap_or(item.n);
                j.prompt.unwrap_or_default()
            } else {
                t.to_string()
            };
            if prompt.trim().is_empty() {
                return Err(bad("empty prompt".into()));
            }
            if item.n == 0 {
                return Err(bad("\"n\" must be at least 1".into()));
            }
            // Rounded up to whole text tokens (one per four characters, as the router
            // estimates them): the same estimate, and neighbours of similar length merge.
            item.prompt_chars = prompt.chars().count().div_ceil(4) * 4;
            w.push(item);
        }
        Ok(w)
    }

    /// [`Workload::from_prompts`] on a file, read up to [`MAX_PROMPTS_FILE_BYTES`].
    pub fn from_prompts_file(
        path: impl AsRef<Path>,
        defaults: &WorkItem,
    ) -> Result<Workload, WorkloadError> {
        use std::io::Read;
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |e: std::io::Error| WorkloadError::Io {
            path: shown.clone(),
            message: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_PROMPTS_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_PROMPTS_FILE_BYTES {
            return Err(WorkloadError::TooLarge {
                path: shown,
                limit: MAX_PROMPTS_FILE_BYTES,
            });
        }
        Workload::from_prompts(&bytes, defaults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_requests_and_errors_name_the_line() {
        let d = WorkItem::new(7).model("gpt-image-1").quality(Quality::Low);
        let text = "a fox\n\n# comment\n{\"prompt\": \"cats\", \"quality\": \"high\", \"n\": 3, \"name\": \"c\"}\nanother fox";
        let w = Workload::from_prompts(text.as_bytes(), &d).unwrap();
        assert_eq!(w.requests(), 3);
        assert_eq!(w.images(), 5);
        assert_eq!(w.items()[0].quality, Some(Quality::Low));
        assert_eq!(w.items()[0].prompt_chars, 8, "5 characters are 2 tokens");
        assert_eq!(w.items()[1].quality, Some(Quality::High));
        assert_eq!(w.items()[1].model.as_deref(), Some("gpt-image-1"));

        for (text, line, needle) in [
            ("ok\n{\"prompt\": 3}\n", 2, "JSON"),
            (
                "ok\nok\n\n{\"prompt\": \"x\", \"quality\": \"ultra\"}",
                4,
                "JSON",
            ),
            ("{\"n\": 2}", 1, "empty prompt"),
            ("a\n{\"prompt\": \"x\", \"n\": 0}", 2, "at least 1"),
        ] {
            match Workload::from_prompts(text.as_bytes(), &d) {
                Err(WorkloadError::Line { line: l, message }) => {
                    assert_eq!(l, line, "{text}: {message}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        let mut bytes = b"fine\n".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, b'\n']);
        let e = Workload::from_prompts(&bytes, &d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: not UTF-8 text; save the prompts file as UTF-8"
        );
    }

    #[test]
    fn identical_neighbours_merge_and_files_are_bounded() {
        let w = Workload::new()
            .with(WorkItem::new(2))
            .with(WorkItem::new(3))
            .with(WorkItem::new(0).n(4))
            .with(WorkItem::new(1).n(2));
        assert_eq!(w.items().len(), 2);
        assert_eq!((w.requests(), w.images()), (6, 7));

        let dir = tempfile::tempdir().unwrap();
        let missing = Workload::from_prompts_file(dir.path().join("nope.txt"), &WorkItem::new(1));
        assert!(
            matches!(missing, Err(WorkloadError::Io { .. })),
            "{missing:?}"
        );
        let p = dir.path().join("p.txt");
        std::fs::write(&p, "one\ntwo\n").unwrap();
        let w = Workload::from_prompts_file(&p, &WorkItem::new(1)).unwrap();
        assert_eq!(w.requests(), 2);
        // One byte over the bound: refused, nothing parsed.
        let big = dir.path().join("big.txt");
        std::fs::write(&big, vec![b'\n'; MAX_PROMPTS_FILE_BYTES as usize + 1]).unwrap();
        let e = Workload::from_prompts_file(&big, &WorkItem::new(1)).unwrap_err();
        assert!(matches!(e, WorkloadError::TooLarge { .. }), "{e:?}");
    }
}
