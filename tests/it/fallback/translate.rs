//! The translation of a request to another model: what is mapped, what is dropped, what
//! cannot be translated, and the list of changes.

use image_router::catalog::Catalog;
use image_router::{
    describe_changes, translate, Background, Capabilities, Change, EditRequest, GenerateRequest,
    ImageRequest, InputImage, OutputFormat, Quality, Size, Style,
};

use crate::support::PIXEL_PNG;

fn caps(model: &str) -> Capabilities {
    Catalog::builtin()
        .model(model)
        .unwrap()
        .capabilities
        .clone()
}

#[test]
fn gpt_image_to_dalle3_maps_size_quality_n_and_drops_what_it_does_not_take() {
    let req: ImageRequest = GenerateRequest::new("x")
        .model("gpt-image-1")
        .n(3)
        .size(Size::PORTRAIT)
        .quality(Quality::Low)
        .background(Background::Transparent)
        .output_format(OutputFormat::Webp)
        .output_compression(50)
        .user("u-1")
        .into();
    let (out, ch) = translate(&req, &caps("dall-e-3")).unwrap();
    assert_eq!(out.model(), Some("dall-e-3"));
    assert_eq!(out.n(), 1, "dall-e-3 makes one image per request");
    assert_eq!(
        out.size(),
        Some(Size::new(1024, 1792)),
        "portrait stays portrait"
    );
    assert_eq!(
        out.quality(),
        Some(Quality::Standard),
        "low maps to the nearest: standard"
    );
    assert_eq!(out.background(), None);
    assert_eq!(out.output_format(), None);
    assert_eq!(out.output_compression(), None);
    let ImageRequest::Generate(g) = &out else {
        panic!("a generation stays a generation")
    };
    assert_eq!(g.user.as_deref(), Some("u-1"), "user is kept");
    let fields: Vec<_> = ch.iter().map(|c| c.field).collect();
    assert_eq!(
        fields,
        [
            "model",
            "n",
            "size",
            "quality",
            "background",
            "output_format",
            "output_compression"
        ]
    );
    assert_eq!(
        ch[4],
        Change::new("background", Some("transparent"), None::<&str>)
    );
    assert!(
        describe_changes(&ch)
            .starts_with("model gpt-image-1 → dall-e-3, n 3 → 1, size 1024x1536 → 1024x1792"),
        "{}",
        describe_changes(&ch)
    );
}

#[test]
fn dalle3_to_gpt_image_maps_hd_to_high_and_drops_style() {
    let req: ImageRequest = GenerateRequest::new("x")
        .model("dall-e-3")
        .size(Size::new(1792, 1024))
        .quality(Quality::Hd)
        .style(Style::Vivid)
        .into();
    let (out, ch) = translate(&req, &caps("gpt-image-1")).unwrap();
    assert_eq!(out.size(), Some(Size::LANDSCAPE));
    assert_eq!(out.quality(), Some(Quality::High));
    let ImageRequest::Generate(g) = &out else {
        panic!()
    };
    assert_eq!(g.style, None);
    assert!(ch.iter().any(|c| c.field == "style" && c.to.is_none()));
}

#[test]
fn same_family_changes_only_the_model_and_a_field_the_target_lacks() {
    let req: ImageRequest = GenerateRequest::new("x")
        .model("gpt-image-1")
        .quality(Quality::High)
        .size(Size::Auto)
        .into();
    let (_, ch) = translate(&req, &caps("gpt-image-1-mini")).unwrap();
    assert_eq!(
        ch,
        vec![Change::new(
            "model",
            Some("gpt-image-1"),
            Some("gpt-image-1-mini")
        )]
    );
    // `auto` where the target has no `auto`: dropped, the target's default applies.
    let (out, ch) = translate(&req, &caps("dall-e-3")).unwrap();
    assert_eq!(out.size(), None);
    assert!(ch.contains(&Change::new("size", Some("auto"), None::<&str>)));
    // input_fidelity is not taken by gpt-image-1-mini: dropped from an edit.
    let edit: ImageRequest =
        EditRequest::new("x", vec![InputImage::new(PIXEL_PNG.to_vec(), "a.png")])
            .model("gpt-image-1")
            .input_fidelity(image_router::InputFidelity::High)
            .into();
    let (out, ch) = translate(&edit, &caps("gpt-image-1-mini")).unwrap();
    let ImageRequest::Edit(e) = &out else {
        panic!()
    };
    assert_eq!(e.input_fidelity, None);
    assert!(ch.iter().any(|c| c.field == "input_fidelity"));
}

#[test]
fn what_cannot_be_mapped_is_unsupported() {
    let edit: ImageRequest =
        EditRequest::new("x", vec![InputImage::new(PIXEL_PNG.to_vec(), "a.png")]).into();
    let e = translate(&edit, &caps("dall-e-3")).unwrap_err();
    assert_eq!(e.field(), "operation");
    // A prompt too long for the target is not cut (that would change the image).
    let long: ImageRequest = GenerateRequest::new("y".repeat(4001))
        .model("gpt-image-1")
        .into();
    assert_eq!(
        translate(&long, &caps("dall-e-3")).unwrap_err().field(),
        "prompt"
    );
    // Too many input images for dall-e-2's edits.
    let many: ImageRequest = EditRequest::new(
        "x",
        vec![
            InputImage::new(PIXEL_PNG.to_vec(), "a.png"),
            InputImage::new(PIXEL_PNG.to_vec(), "b.png"),
        ],
    )
    .into();
    assert_eq!(
        translate(&many, &caps("dall-e-2")).unwrap_err().field(),
        "image"
    );
}
