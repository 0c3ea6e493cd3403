//! Token estimates per quality, size, count and input images: limiters and budgets reserve from
//! them before a call, so a wrong estimate over- or under-admits.

use crate::support::quota::*;
use image_router::catalog::Catalog;
use image_router::quota::tokens::{estimate, input_image_tokens, text_tokens};
use image_router::{EditRequest, ImageRequest, InputImage, Quality, Size};

#[test]
fn estimate_matches_the_issue_table_for_every_size_and_quality() {
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let table = [
        (Quality::Low, [272, 408, 400]),
        (Quality::Medium, [1056, 1584, 1568]),
        (Quality::High, [4160, 6240, 6208]),
    ];
    let sizes = [Size::SQUARE, Size::PORTRAIT, Size::LANDSCAPE];
    for (q, row) in table {
        for (s, want) in sizes.iter().zip(row) {
            for n in [1u8, 3, 10] {
                let est = estimate(&gen(Some(q), Some(*s), n), m, 999);
                assert_eq!(est.image_output, want * u64::from(n), "{q:?} {s:?} n={n}");
                assert_eq!(est.text_input, 1, "4-char prompt");
                assert_eq!(est.image_input, 0);
                assert_eq!(est.total(), want * u64::from(n) + 1);
            }
        }
    }
    // `auto` and unset resolve to the documented default (high, 1024x1024) on gpt-image-1.
    for (q, s) in [
        (Some(Quality::Auto), Some(Size::Auto)),
        (None, None),
        (Some(Quality::Auto), Some(Size::SQUARE)),
        (Some(Quality::High), Some(Size::Auto)),
    ] {
        assert_eq!(estimate(&gen(q, s, 2), m, 1).image_output, 2 * 4160);
    }
    // Size auto with low quality: low at the default size.
    assert_eq!(
        estimate(&gen(Some(Quality::Low), Some(Size::Auto), 1), m, 1).image_output,
        272
    );
}

#[test]
fn estimate_for_models_without_a_table_uses_the_configurable_fallback() {
    let req = gen(Some(Quality::High), Some(Size::SQUARE), 2);
    // Unknown model: the fallback given.
    assert_eq!(estimate(&req, None, 1234).image_output, 2 * 1234);
    // The catalog's fallback is configurable at runtime.
    let cat = Catalog::builtin()
        .with_overrides(
            "default_output_tokens_per_image = 5000\n[models.\"new-model\"]\nlike = \"dall-e-2\"\n",
            "o.toml",
        )
        .unwrap();
    assert_eq!(cat.default_output_tokens_per_image(), 5000);
    let m = cat.model("new-model").unwrap();
    assert_eq!(m.output_image_tokens(None, None), 5000);
    // A model may declare its own per-image estimate.
    let cat = Catalog::builtin()
        .with_overrides(
            "[models.\"m2\"]\nlike = \"dall-e-2\"\ndefault_output_tokens_per_image = 77\n",
            "o.toml",
        )
        .unwrap();
    assert_eq!(cat.model("m2").unwrap().output_image_tokens(None, None), 77);
}

#[test]
fn text_tokens_are_a_quarter_of_the_characters_rounded_up() {
    assert_eq!(text_tokens(""), 0);
    assert_eq!(text_tokens("a"), 1);
    assert_eq!(text_tokens("abcd"), 1);
    assert_eq!(text_tokens("abcde"), 2);
    // Characters, not bytes.
    assert_eq!(text_tokens("äöüß"), 1);
    let long = "x".repeat(32_000);
    assert_eq!(text_tokens(&long), 8000);
}

#[test]
fn edit_estimates_count_each_input_image() {
    // 65 + 129 per 512 px tile after fit-in-2048 and short side ≤ 768.
    assert_eq!(input_image_tokens(512, 512), 65 + 129);
    assert_eq!(input_image_tokens(1024, 1024), 65 + 4 * 129);
    // 2048x1024 → 1536x768 → 3×2 tiles.
    assert_eq!(input_image_tokens(2048, 1024), 65 + 6 * 129);
    // 4096x8192 → 1024x2048 → 768x1536 → 2×3 tiles.
    assert_eq!(input_image_tokens(4096, 8192), 65 + 6 * 129);
    // Degenerate sizes never panic.
    assert!(input_image_tokens(0, 0) >= 65 + 129);
    assert!(input_image_tokens(u32::MAX, 1) >= 65 + 129);

    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let req: ImageRequest = EditRequest::new(
        "abcdefgh",
        vec![
            InputImage::new(png_header(1024, 1024), "a.png"),
            InputImage::new(png_header(2048, 1024), "b.png"),
        ],
    )
    .model("gpt-image-1")
    .quality(Quality::Low)
    .size(Size::LANDSCAPE)
    .n(2)
    .into();
    let est = estimate(&req, m, 1);
    assert_eq!(est.text_input, 2);
    assert_eq!(est.image_input, (65 + 4 * 129) + (65 + 6 * 129));
    assert_eq!(est.image_output, 2 * 400);

    // JPEG and WebP inputs are measured too (a 1536x1024 photo is 6 tiles, not the 4 of a
    // 1024² guess); an unreadable image is counted at the most an image can cost.
    let edit = |img: Vec<u8>| -> u64 {
        let req: ImageRequest = EditRequest::new("x", vec![InputImage::new(img, "in")])
            .model("gpt-image-1")
            .into();
        estimate(&req, m, 1).image_input
    };
    assert_eq!(edit(jpeg_header(1536, 1024)), 65 + 6 * 129);
    assert_eq!(edit(webp_vp8x(1536, 1024)), 65 + 6 * 129);
    assert_eq!(edit(webp_vp8l(512, 512)), 65 + 129);
    let mut vp8 = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\x10\x02\x00\x9d\x01\x2a".to_vec();
    vp8.extend_from_slice(&2048u16.to_le_bytes());
    vp8.extend_from_slice(&1024u16.to_le_bytes());
    assert_eq!(edit(vp8), 65 + 6 * 129);
    assert_eq!(edit(b"not an image at all".to_vec()), 65 + 8 * 129);
    assert_eq!(edit(vec![0xFF, 0xD8, 0xFF]), 65 + 8 * 129);
    assert_eq!(edit(Vec::new()), 65 + 8 * 129);
}

/// A JPEG with an APP0 segment then a baseline SOF0 frame header.
fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    v.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    v.extend_from_slice(&h.to_be_bytes());
    v.extend_from_slice(&w.to_be_bytes());
    v.extend_from_slice(&[0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    v
}

fn webp_vp8x(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
    v.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    v.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    v
}

fn webp_vp8l(w: u32, h: u32) -> Vec<u8> {
    let mut v = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
    let bits = (w - 1) | ((h - 1) << 14);
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v
}
