//! The cache key: two requests differing in any one field that changes the images never share
//! a key; requests differing only in fields that do not (user, cache policy, an input
//! image's file name) always do.

use image_router::cache::{CacheKey, CachePolicy};
use image_router::{
    Background, EditRequest, GenerateRequest, ImageRequest, InputFidelity, InputImage, Moderation,
    OutputFormat, Quality, ResponseFormat, Size, Style,
};
use proptest::prelude::*;

fn key(r: impl Into<ImageRequest>) -> CacheKey {
    CacheKey::of(&r.into())
}

prop_compose! {
    fn generate()(
        prompt in ".{0,40}",
        model in prop::sample::select(vec!["gpt-image-1", "gpt-image-1-mini", "dall-e-3"]),
        n in prop::option::of(1u8..=10),
        size in prop::option::of(prop::sample::select(vec![Size::SQUARE, Size::PORTRAIT, Size::LANDSCAPE])),
        quality in prop::option::of(prop::sample::select(Quality::ALL.to_vec())),
        format in prop::option::of(prop::sample::select(OutputFormat::ALL.to_vec())),
        compression in prop::option::of(0u8..=100),
        background in prop::option::of(prop::sample::select(Background::ALL.to_vec())),
        moderation in prop::option::of(prop::sample::select(Moderation::ALL.to_vec())),
        style in prop::option::of(prop::sample::select(Style::ALL.to_vec())),
        response_format in prop::option::of(prop::sample::select(ResponseFormat::ALL.to_vec())),
    ) -> GenerateRequest {
        let mut r = GenerateRequest::new(prompt).model(model);
        r.n = n;
        r.size = size;
        r.quality = quality;
        r.output_format = format;
        r.output_compression = compression;
        r.background = background;
        r.moderation = moderation;
        r.style = style;
        r.response_format = response_format;
        r
    }
}

/// `r` with field number `field` changed to a value it does not have.
fn change(mut r: GenerateRequest, field: usize) -> GenerateRequest {
    fn other<T: Copy + PartialEq>(all: &[T], now: Option<T>) -> Option<T> {
        // `None` ("unset") is a value of its own: move to the first value not held now.
        match now {
            None => Some(all[0]),
            Some(v) => all.iter().copied().find(|x| *x != v).or(None),
        }
    }
    match field {
        0 => r.prompt.push('!'),
        1 => r.model = Some(format!("{}-x", r.model.unwrap())),
        2 => r.n = Some(r.n.unwrap_or(1) % 10 + 1),
        3 => r.size = other(&[Size::SQUARE, Size::PORTRAIT], r.size),
        4 => r.quality = other(Quality::ALL, r.quality),
        5 => r.output_format = other(OutputFormat::ALL, r.output_format),
        6 => r.output_compression = Some(r.output_compression.map_or(0, |c| (c + 1) % 101)),
        7 => r.background = other(Background::ALL, r.background),
        8 => r.moderation = other(Moderation::ALL, r.moderation),
        9 => r.style = other(Style::ALL, r.style),
        _ => r.response_format = other(ResponseFormat::ALL, r.response_format),
    }
    r
}

/// `base` with other input images (the type is non-exhaustive: no struct update).
fn with_images(base: &EditRequest, images: Vec<InputImage>) -> EditRequest {
    let mut e = base.clone();
    e.images = images;
    e
}

proptest! {
    #[test]
    fn any_one_output_field_changes_the_key(base in generate(), field in 0usize..11) {
        let changed = change(base.clone(), field);
        prop_assume!(changed != base);
        prop_assert_ne!(key(base), key(changed));
    }

    #[test]
    fn fields_that_do_not_change_the_images_do_not_change_the_key(
        base in generate(),
        user in ".{0,20}",
        policy in prop::sample::select(vec![CachePolicy::Use, CachePolicy::Refresh, CachePolicy::Bypass]),
    ) {
        let other = base.clone().user(user).cache(policy);
        prop_assert_eq!(key(base), key(other));
    }

    #[test]
    fn edits_key_every_image_byte_the_mask_and_the_fidelity(
        a in prop::collection::vec(any::<u8>(), 1..64),
        flip in any::<prop::sample::Index>(),
        name in "[a-z]{1,8}",
    ) {
        let img = |data: &[u8], name: &str| {
            let mut i = InputImage::new(data.to_vec(), format!("{name}.png"));
            i.content_type = "image/png".into();
            i
        };
        let base = EditRequest::new("add a hat", vec![img(&a, "a")]).model("gpt-image-1");
        // The file name is not an input of the model.
        prop_assert_eq!(key(base.clone()), key(with_images(&base, vec![img(&a, &name)])));
        // One byte of the image is.
        let mut b = a.clone();
        let i = flip.index(b.len());
        b[i] ^= 1;
        prop_assert_ne!(key(base.clone()), key(with_images(&base, vec![img(&b, "a")])));
        // So are a second image, the mask, and the input fidelity.
        prop_assert_ne!(key(base.clone()), key(with_images(&base, vec![img(&a, "a"), img(&a, "a")])));
        prop_assert_ne!(key(base.clone()), key(base.clone().mask(img(&a, "m"))));
        prop_assert_ne!(key(base.clone()), key(base.clone().input_fidelity(InputFidelity::High)));
        // And the endpoint: a generation with the same prompt and model is another request.
        prop_assert_ne!(key(base.clone()), key(GenerateRequest::new("add a hat").model("gpt-image-1")));
    }
}
