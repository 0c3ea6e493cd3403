//! Tiers and prices as data: the catalog is the single place limits and prices come from, and
//! overrides replace its rows.

use crate::support::quota::*;
use image_router::catalog::{Catalog, Price, TierKind};
use image_router::quota::cost::{tokens_usd, CostBasis, CostEstimator};
use image_router::quota::limiter::{Denied, RateLimiter};
use image_router::quota::limits::Limits;
use image_router::quota::tokens::estimate;
use image_router::{EditRequest, GenerateRequest, ImageRequest, InputImage, Quality, Size, Usage};

#[test]
fn tier_presets_match_the_tier_table() {
    // The third-party guide's table (May 2025), under its own names.
    let cat = Catalog::builtin();
    for (name, rpm, tpm) in [
        ("guide-tier-1", 6, 250_000),
        ("guide-tier-2", 15, 500_000),
        ("guide-tier-3", 25, 1_000_000),
    ] {
        let t = cat.tier(name).unwrap();
        assert_eq!((t.rpm, t.tpm), (Some(rpm), Some(tpm)), "{name}");
        assert_eq!(t.kind, TierKind::Preset);
        let l = Limits::from_tier(cat, name).unwrap();
        assert_eq!((l.rpm, l.tpm), (Some(rpm), Some(tpm)));
        // A preset holds for every model.
        let l = Limits::resolve_for_model(cat, Some(name), "dall-e-3", None, None, None).unwrap();
        assert_eq!((l.rpm, l.tpm, l.ipm), (Some(rpm), Some(tpm), None));
    }
    assert_eq!(cat.tier("guide-tier-1").unwrap().min_spend_usd, Some(5.0));
    assert_eq!(cat.tier("guide-tier-2").unwrap().min_spend_usd, Some(50.0));
    assert_eq!(
        cat.tier("guide-tier-2").unwrap().min_account_age_days,
        Some(7)
    );
    assert_eq!(cat.tier("guide-tier-3").unwrap().min_spend_usd, Some(500.0));
    assert_eq!(
        cat.tier("guide-tier-3").unwrap().min_account_age_days,
        Some(30)
    );
    assert!(cat.tier("guide-enterprise").unwrap().rpm >= Some(60));
    let free = cat.tier("free").unwrap();
    assert!(!free.has_access());
    let l = Limits::from_tier(cat, "free").unwrap();
    let na = l.no_access.clone().unwrap();
    let msg = na.to_string();
    assert!(
        msg.contains("free") && msg.contains("tier-1") && msg.contains("$5"),
        "{msg}"
    );
    // A limiter on free refuses everything, permanently, saying why.
    let (_c, shared) = clock();
    let lim = RateLimiter::new(l, shared).unwrap();
    let err = lim.try_acquire(1).unwrap_err();
    assert!(matches!(err, Denied::NoAccess(_)) && err.is_permanent());
    assert!(err.to_string().contains("tier-1"), "{err}");
    // Explicit rpm / tpm override the tier's.
    let l = Limits::resolve(cat, Some("guide-tier-2"), Some(40), None).unwrap();
    assert_eq!((l.rpm, l.tpm), (Some(40), Some(500_000)));
    let l = Limits::resolve(cat, Some("guide-tier-2"), None, Some(7)).unwrap();
    assert_eq!((l.rpm, l.tpm), (Some(15), Some(7)));
    assert_eq!(
        Limits::resolve(cat, Some("guide-tier-2"), Some(0), None)
            .unwrap_err()
            .field,
        "rpm"
    );
    assert!(Limits::resolve(cat, Some("gold"), None, None).is_err());
}

#[test]
fn prices_match_api_facts() {
    let cat = Catalog::builtin();
    match cat.model("gpt-image-1").unwrap().price.clone().unwrap() {
        Price::UsdPer1mTokens {
            text_input,
            image_input,
            image_output,
            cached_text_input,
            cached_image_input,
        } => {
            assert_eq!((text_input, image_input, image_output), (5.0, 10.0, 40.0));
            assert_eq!(cached_text_input, Some(1.25));
            assert_eq!(cached_image_input, Some(2.5));
        }
        other => panic!("{other:?}"),
    }
    match cat
        .model("gpt-image-1-mini")
        .unwrap()
        .price
        .clone()
        .unwrap()
    {
        Price::UsdPer1mTokens {
            text_input,
            image_input,
            image_output,
            ..
        } => assert_eq!((text_input, image_input, image_output), (2.0, 2.5, 8.0)),
        other => panic!("{other:?}"),
    }
    let d3 = cat.model("dall-e-3").unwrap();
    let est = CostEstimator::new();
    for (q, s, usd) in [
        (Quality::Standard, Size::SQUARE, 0.04),
        (Quality::Standard, Size::new(1792, 1024), 0.08),
        (Quality::Standard, Size::new(1024, 1792), 0.08),
        (Quality::Hd, Size::SQUARE, 0.08),
        (Quality::Hd, Size::new(1792, 1024), 0.12),
        (Quality::Hd, Size::new(1024, 1792), 0.12),
    ] {
        let req: ImageRequest = GenerateRequest::new("x")
            .model("dall-e-3")
            .quality(q)
            .size(s)
            .into();
        let e = estimate(&req, Some(d3), 4160);
        let c = est.estimate("dall-e-3", Some(d3), &req, &e).unwrap();
        assert!((c.usd - usd).abs() < 1e-12, "{q:?} {s:?} {}", c.usd);
        assert_eq!(c.basis, CostBasis::PerImage);
        // dall-e answers carry no usage: the per-image price is charged.
        let a = est.actual("dall-e-3", Some(d3), &req, None, &e).unwrap();
        assert!((a.usd - usd).abs() < 1e-12);
    }
    // Default dall-e-3 (standard 1024²).
    let req: ImageRequest = GenerateRequest::new("x").model("dall-e-3").into();
    let e = estimate(&req, Some(d3), 4160);
    assert!((est.estimate("dall-e-3", Some(d3), &req, &e).unwrap().usd - 0.04).abs() < 1e-12);
    // A high 1024x1024 gpt-image-1 image costs about $0.167.
    let p = cat.model("gpt-image-1").unwrap().price.clone().unwrap();
    assert!((tokens_usd(&p, 0, 0, 4160).unwrap() - 0.1664).abs() < 1e-9);
}

#[test]
fn cost_from_usage_uses_the_input_split() {
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let est = CostEstimator::new();
    let req = gen(Some(Quality::High), Some(Size::SQUARE), 1);
    let e = estimate(&req, m, 4160);
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 50,
        "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        "output_tokens": 4160,
        "total_tokens": 4210
    }))
    .unwrap();
    let c = est
        .actual("gpt-image-1", m, &req, Some(&usage), &e)
        .unwrap();
    assert_eq!(c.basis, CostBasis::Usage);
    assert!(
        (c.usd - (50.0 * 5.0 + 4160.0 * 40.0) / 1e6).abs() < 1e-12,
        "{}",
        c.usd
    );

    // Edit: image input tokens at $10 / 1M.
    let edit: ImageRequest =
        EditRequest::new("x", vec![InputImage::new(png_header(1024, 1024), "a.png")])
            .model("gpt-image-1")
            .into();
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 600,
        "input_tokens_details": {"text_tokens": 19, "image_tokens": 581},
        "output_tokens": 272,
        "total_tokens": 872
    }))
    .unwrap();
    let e = estimate(&edit, m, 4160);
    let c = est
        .actual("gpt-image-1", m, &edit, Some(&usage), &e)
        .unwrap();
    assert!(
        (c.usd - (19.0 * 5.0 + 581.0 * 10.0 + 272.0 * 40.0) / 1e6).abs() < 1e-12,
        "{}",
        c.usd
    );

    // gpt-image-1-mini bills from usage at its own prices.
    let mini = cat.model("gpt-image-1-mini");
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 100,
        "input_tokens_details": {"text_tokens": 100, "image_tokens": 0},
        "output_tokens": 1000,
        "total_tokens": 1100
    }))
    .unwrap();
    let c = est
        .actual("gpt-image-1-mini", mini, &req, Some(&usage), &e)
        .unwrap();
    assert!((c.usd - (100.0 * 2.0 + 1000.0 * 8.0) / 1e6).abs() < 1e-12);
}

#[test]
fn a_usage_without_a_token_split_is_not_billed_as_free() {
    // Some proxies report only `total_tokens` (or an all-zero usage): charging $0 would let
    // spending through the budgets unnoticed.
    let cat = Catalog::builtin();
    let m = cat.model("gpt-image-1");
    let est = CostEstimator::new();
    let req = gen(Some(Quality::High), Some(Size::SQUARE), 1);
    let e = estimate(&req, m, 4160);
    let expected = est.estimate("gpt-image-1", m, &req, &e).unwrap().usd;
    for usage in [
        serde_json::json!({"total_tokens": 4161}),
        serde_json::json!({}),
        serde_json::json!({"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}),
    ] {
        let u: Usage = serde_json::from_value(usage.clone()).unwrap();
        let c = est.actual("gpt-image-1", m, &req, Some(&u), &e).unwrap();
        assert!(c.usd >= expected * 0.99, "{usage}: {}", c.usd);
    }
}

#[test]
fn catalog_overrides_add_models_prices_and_tiers_without_code() {
    let text = r#"
default_model = "house-model"

[models."house-model"]
like = "gpt-image-1"
max_n = 2
[models."house-model".price]
unit = "usd_per_1m_tokens"
text_input = 1.0
image_input = 2.0
image_output = 3.0

[models."gpt-image-1".price]
unit = "usd_per_1m_tokens"
image_output = 30.0

[tiers."house-tier"]
rpm = 250
tpm = 8000000
min_spend_usd = 1000
min_account_age_days = 30
requirement = "$1000 spend"

[tiers."guide-tier-2"]
rpm = 20

[models."gpt-image-1".limits."tier-2"]
ipm = 30
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("over.toml");
    std::fs::write(&path, text).unwrap();
    let cat = Catalog::builtin().with_override_file(&path).unwrap();
    assert_eq!(cat.default_model(), "house-model");
    let m = cat.model("house-model").unwrap();
    assert_eq!(m.capabilities.max_n, 2);
    // Inherits the token table.
    assert_eq!(
        m.output_image_tokens(Some(Quality::Medium), Some(Size::PORTRAIT)),
        1584
    );
    assert!(matches!(
        m.price,
        Some(Price::UsdPer1mTokens { image_output, .. }) if image_output == 3.0
    ));
    // A partial price override keeps the other fields.
    match cat.model("gpt-image-1").unwrap().price.clone().unwrap() {
        Price::UsdPer1mTokens {
            text_input,
            image_output,
            ..
        } => assert_eq!((text_input, image_output), (5.0, 30.0)),
        other => panic!("{other:?}"),
    }
    assert_eq!(cat.tier("house-tier").unwrap().rpm, Some(250));
    assert_eq!(cat.tier("guide-tier-2").unwrap().rpm, Some(20));
    assert_eq!(cat.tier("guide-tier-2").unwrap().tpm, Some(500_000));
    let l = Limits::from_tier(&cat, "house-tier").unwrap();
    assert_eq!(l.tpm, Some(8_000_000));
    // A published figure overridden field by field; house-model inherits it through `like`.
    let l =
        Limits::resolve_for_model(&cat, Some("tier-2"), "gpt-image-1", None, None, None).unwrap();
    assert_eq!((l.ipm, l.tpm), (Some(30), Some(250_000)));
    assert_eq!(
        cat.model_limits("tier-2", "house-model").unwrap().ipm,
        Some(30)
    );
    // The builtin catalog is untouched.
    assert_eq!(
        Catalog::builtin().tier("guide-tier-2").unwrap().rpm,
        Some(15)
    );
    assert_eq!(
        Catalog::builtin()
            .model_limits("tier-2", "gpt-image-1")
            .unwrap()
            .ipm,
        Some(20)
    );
}

fn override_err(text: &str) -> image_router::ConfigError {
    Catalog::builtin()
        .with_overrides(text, "user.toml")
        .expect_err(text)
}

#[test]
fn bad_override_files_give_errors_naming_entry_and_line() {
    // (text, a word the error must name, the line)
    let cases: &[(&str, &str, usize)] = &[
        // price without a unit
        (
            "\n[models.\"x\"]\nlike = \"gpt-image-1\"\n[models.\"x\".price]\ntext_input = 1.0\n",
            "x",
            4,
        ),
        // unknown unit
        (
            "[models.\"x\"]\nlike = \"gpt-image-1\"\n\n[models.\"x\".price]\nunit = \"eur\"\ntext_input = 1.0\n",
            "x",
            4,
        ),
        // negative tier rpm
        ("[tiers.\"t\"]\n\nrpm = -1\ntpm = 5\n", "t", 3),
        // unknown key
        ("[tiers.\"t\"]\nrpm = 1\ntpm = 5\nrpmm = 3\n", "rpmm", 4),
        // malformed TOML
        ("[models.\"x\"\nlike = 1\n", "", 1),
        // wrong type
        ("\n\n[models.\"gpt-image-1\"]\nmax_n = \"ten\"\n", "", 4),
        // negative price
        (
            "[models.\"gpt-image-1\".price]\nunit = \"usd_per_1m_tokens\"\n\nimage_output = -40.0\n",
            "image_output",
            4,
        ),
        // a token price missing a field on a new model
        (
            "[models.\"x\"]\nlike = \"gpt-image-1\"\n\n[models.\"x\".price]\nunit = \"usd_per_1m_tokens\"\ntext_input = 1.0\n",
            "image_input",
            4,
        ),
        // a new tier without rpm
        ("\n[tiers.\"t9\"]\ntpm = 5\n", "t9", 2),
        // a per-image price with a bad size
        (
            "[models.\"dall-e-3\".price]\nunit = \"usd_per_image\"\nstandard = { \"big\" = 0.1 }\n",
            "big",
            3,
        ),
        // like an unknown model
        ("\n\n[models.\"y\"]\nlike = \"nope\"\n", "nope", 4),
        // a typo in a token price key
        (
            "[models.\"gpt-image-1\".price]\nunit = \"usd_per_1m_tokens\"\ntext_inptu = 5.0\n",
            "text_inptu",
            3,
        ),
        // a tier rpm out of range
        ("[tiers.\"big\"]\ntpm = 5\nrpm = 99999999999\n", "big", 3),
        // a like cycle
        (
            "[models.\"p\"]\nlike = \"q\"\n[models.\"q\"]\nlike = \"p\"\n",
            "like",
            4,
        ),
        // max_n of zero
        ("[models.\"gpt-image-1\"]\n\nmax_n = 0\n", "max_n", 3),
        // an empty default model
        ("# mine\ndefault_model = \"\"\n", "default_model", 2),
        // default tokens of zero
        ("\ndefault_output_tokens_per_image = 0\n", "default_output_tokens_per_image", 2),
    ];
    for (text, word, line) in cases {
        let e = override_err(text);
        let full = format!("{} {}", e.field, e.message);
        assert!(full.contains(word), "{text:?}: {e}");
        assert!(
            e.to_string().contains("user.toml") || e.field.contains("user.toml"),
            "{text:?}: {e}"
        );
        assert_eq!(e.line, Some(*line), "{text:?}: {e}");
    }
    // A file that cannot be read names the path.
    let e = Catalog::builtin()
        .with_override_file("/nonexistent/over.toml")
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/over.toml"), "{e}");
}
