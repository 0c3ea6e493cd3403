//! The cache key: a SHA-256 digest over every request field that changes the images, and no
//! other.
//!
//! Why a digest and not the request itself: the key must be small and fixed-size for the
//! memory tier, and it is the only trace of the prompt the shared second tier ever holds
//! (Redis sees the hex digest, never the prompt in clear). SHA-256 (the maintained
//! RustCrypto `sha2` crate) makes two different requests sharing a key a practical
//! impossibility, which a 64-bit hash would not.
//!
//! What is hashed, each field tagged and length-prefixed so no two field lists can produce
//! the same byte stream: a schema version, the endpoint (`generations` / `edits`), the model
//! *as resolved* (the router's default filled in), the prompt, `n` (absent counts as 1, its
//! documented default), size, quality, output format, output compression, background,
//! moderation, style, response format (b64 or URL: what the response holds), input fidelity,
//! and for edits a SHA-256 of each input image's bytes with its content type, in order, and
//! of the mask, and the fallback models the request may be served by (they decide which model
//! may make the images; the router keys the request as routed, after preview mode changed it
//! and with its fallback list resolved). Any other option left unset is hashed as "unset", distinct from each value,
//! since the provider's default may differ between models and over time.
//!
//! Left out on purpose: `user` (an abuse-monitoring id, not an input of the model), the
//! request class, time-outs and deadlines (router settings), the cache policy itself, and an
//! input image's file name (not an input of the model).

use sha2::{Digest, Sha256};

use crate::request::{EditRequest, GenerateRequest, ImageRequest, InputImage};

/// Bumped when the hashed fields change, so old entries in a shared tier are never read as
/// new ones.
const SCHEMA: u8 = 2;

/// The cache key of one request: SHA-256 over the fields that change the output (see the
/// module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheKey({})", self.hex())
    }
}

impl CacheKey {
    /// The key of `request`, whose model must already be resolved (the router fills in its
    /// default model before keying; an unresolved model is hashed as "unset").
    ///
    /// ```
    /// use image_router::{cache::CacheKey, GenerateRequest};
    /// let a = CacheKey::of(&GenerateRequest::new("a fox").model("gpt-image-1").into());
    /// let b = CacheKey::of(&GenerateRequest::new("a fox").model("gpt-image-1").user("u1").into());
    /// let c = CacheKey::of(&GenerateRequest::new("a fox ").model("gpt-image-1").into());
    /// assert_eq!(a, b); // `user` does not change the images
    /// assert_ne!(a, c);
    /// ```
    pub fn of(request: &ImageRequest) -> Self {
        let mut h = Hasher(Sha256::new());
        h.0.update([SCHEMA]);
        h.field(b"endpoint", Some(request.endpoint().as_bytes()));
        match request {
            ImageRequest::Generate(r) => generate(&mut h, r),
            ImageRequest::Edit(r) => edit(&mut h, r),
        }
        Self(h.0.finalize().into())
    }

    /// The digest as 64 lower-case hex digits (the second tier's key name).
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Tagged, length-prefixed fields: `tag len(tag) | present | len(value) value`.
struct Hasher(Sha256);

impl Hasher {
    fn field(&mut self, tag: &[u8], value: Option<&[u8]>) {
        self.0.update((tag.len() as u64).to_le_bytes());
        self.0.update(tag);
        match value {
            None => self.0.update([0u8]),
            Some(v) => {
                self.0.update([1u8]);
                self.0.update((v.len() as u64).to_le_bytes());
                self.0.update(v);
            }
        }
    }

    fn display(&mut self, tag: &[u8], value: Option<impl std::fmt::Display>) {
        let s = value.map(|v| v.to_string());
        self.field(tag, s.as_deref().map(str::as_bytes));
    }

    fn image(&mut self, tag: &[u8], image: Option<&InputImage>) {
        let digest = image.map(|i| {
            let mut d = Sha256::new();
            d.update((i.content_type.len() as u64).to_le_bytes());
            d.update(i.content_type.as_bytes());
            d.update(&i.data);
            <[u8; 32]>::from(d.finalize())
        });
        self.field(tag, digest.as_ref().map(|d| &d[..]));
    }
}

fn generate(h: &mut Hasher, r: &GenerateRequest) {
    h.field(b"model", r.model.as_deref().map(str::as_bytes));
    h.field(b"prompt", Some(r.prompt.as_bytes()));
    h.display(b"n", Some(r.n.unwrap_or(1)));
    h.display(b"size", r.size);
    h.display(b"quality", r.quality);
    h.display(b"output_format", r.output_format);
    h.display(b"output_compression", r.output_compression);
    h.display(b"background", r.background);
    h.display(b"moderation", r.moderation);
    h.display(b"style", r.style);
    h.display(b"response_format", r.response_format);
    fallbacks(h, r.fallback_models.as_deref());
}

fn edit(h: &mut Hasher, r: &EditRequest) {
    h.field(b"model", r.model.as_deref().map(str::as_bytes));
    h.field(b"prompt", Some(r.prompt.as_bytes()));
    h.display(b"n", Some(r.n.unwrap_or(1)));
    h.display(b"size", r.size);
    h.display(b"quality", r.quality);
    h.display(b"output_format", r.output_format);
    h.display(b"output_compression", r.output_compression);
    h.display(b"background", r.background);
    h.display(b"input_fidelity", r.input_fidelity);
    h.display(b"images", Some(r.images.len()));
    for img in &r.images {
        h.image(b"image", Some(img));
    }
    h.image(b"mask", r.mask.as_ref());
    fallbacks(h, r.fallback_models.as_deref());
}

/// The fallback models a request may be served by, in order (none and an empty list are the
/// same): they decide which model may make the images, so two requests that differ in them do
/// not share an entry.
fn fallbacks(h: &mut Hasher, models: Option<&[String]>) {
    let models = models.unwrap_or_default();
    h.display(b"fallback_models", Some(models.len()));
    for m in models {
        h.field(b"fallback_model", Some(m.as_bytes()));
    }
}
