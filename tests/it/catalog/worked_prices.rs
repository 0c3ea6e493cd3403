//! Every model's price against a worked example: tokens × price per 1M = cost (or the
//! per-image table), through the same cost code the router charges with. A model added to the
//! catalog without an example here fails `every_model_has_a_worked_example`.

use image_router::catalog::Catalog;
use image_router::quota::cost::CostEstimator;
use image_router::quota::tokens::estimate;
use image_router::{EditRequest, GenerateRequest, ImageRequest, InputImage, Quality, Size, Usage};

use crate::support::PIXEL_PNG;

/// An edit's usage: 100 text tokens and 200 image tokens in, 4160 image tokens out.
fn usage() -> Usage {
    serde_json::from_value(serde_json::json!({
        "input_tokens": 300,
        "input_tokens_details": {"text_tokens": 100, "image_tokens": 200},
        "output_tokens": 4160,
        "total_tokens": 4460
    }))
    .unwrap()
}

/// The token-priced models and their worked example for [`usage`], worked by hand from the
/// prices cited in `providers/models.toml`.
const TOKEN_EXAMPLES: &[(&str, f64)] = &[
    // 100 × $5 + 200 × $10 + 4160 × $40 = $168,900 / 1M
    ("gpt-image-1", 0.1689),
    // 100 × $2 + 200 × $2.50 + 4160 × $8 = $33,980 / 1M
    ("gpt-image-1-mini", 0.03398),
    // 100 × $5 + 200 × $8 + 4160 × $32 = $135,220 / 1M
    ("gpt-image-1.5", 0.13522),
    // 100 × $5 + 200 × $8 + 4160 × $30 = $126,900 / 1M
    ("gpt-image-2", 0.1269),
];

/// The per-image models: (model, quality, size, n, USD).
const IMAGE_EXAMPLES: &[(&str, Quality, Size, u8, f64)] = &[
    // hd, wide: $0.12 an image
    ("dall-e-3", Quality::Hd, Size::new(1792, 1024), 1, 0.12),
    // two 512x512 images at $0.018
    ("dall-e-2", Quality::Standard, Size::new(512, 512), 2, 0.036),
];

#[test]
fn token_priced_models_charge_tokens_times_their_own_prices() {
    let cat = Catalog::builtin();
    for (model, want) in TOKEN_EXAMPLES {
        let m = cat.model(model);
        let edit: ImageRequest =
            EditRequest::new("x", vec![InputImage::new(PIXEL_PNG.to_vec(), "a.png")])
                .model(*model)
                .into();
        let e = estimate(&edit, m, 4160);
        let c = CostEstimator::new()
            .actual(model, m, &edit, Some(&usage()), &e)
            .unwrap();
        assert!((c.usd - want).abs() < 1e-12, "{model}: {} != {want}", c.usd);
    }
}

#[test]
fn per_image_models_charge_their_table() {
    let cat = Catalog::builtin();
    for (model, q, s, n, want) in IMAGE_EXAMPLES {
        let m = cat.model(model);
        let req: ImageRequest = GenerateRequest::new("x")
            .model(*model)
            .quality(*q)
            .size(*s)
            .n(*n)
            .into();
        let e = estimate(&req, m, 4160);
        let c = CostEstimator::new()
            .actual(model, m, &req, None, &e)
            .unwrap();
        assert!((c.usd - want).abs() < 1e-12, "{model}: {} != {want}", c.usd);
    }
}

#[test]
fn every_model_has_a_worked_example() {
    let mut covered: Vec<&str> = TOKEN_EXAMPLES
        .iter()
        .map(|(m, _)| *m)
        .chain(IMAGE_EXAMPLES.iter().map(|(m, ..)| *m))
        .collect();
    let mut all: Vec<&str> = Catalog::builtin().models().map(|m| m.name()).collect();
    covered.sort_unstable();
    all.sort_unstable();
    assert_eq!(covered, all);
}
