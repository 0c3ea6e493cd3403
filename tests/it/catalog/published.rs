//! OpenAI's usage tiers and the per-model figures its model pages publish, as the catalog
//! serves them: every figure resolved through `Limits::resolve_for_model`, the guide's
//! presets under their own names, `free` without access, and override files whose mistakes
//! are named with their key and line.

use image_router::catalog::{Catalog, ModelTierLimits, TierKind};
use image_router::quota::limits::Limits;

fn for_model(cat: &Catalog, tier: &str, model: &str) -> Limits {
    Limits::resolve_for_model(cat, Some(tier), model, None, None, None).unwrap()
}

#[test]
fn gpt_image_1_resolves_each_published_tier() {
    let cat = Catalog::builtin();
    // platform.openai.com/docs/models/gpt-image-1: images and tokens per minute, no RPM.
    for (tier, tpm, ipm) in [
        ("tier-1", 100_000, 5),
        ("tier-2", 250_000, 20),
        ("tier-3", 800_000, 50),
        ("tier-4", 3_000_000, 150),
        ("tier-5", 8_000_000, 250),
    ] {
        let l = for_model(cat, tier, "gpt-image-1");
        assert_eq!(
            (l.rpm, l.tpm, l.ipm),
            (None, Some(tpm), Some(ipm)),
            "{tier}"
        );
        assert!(l.no_access.is_none(), "{tier}");
        assert_eq!(
            cat.model_limits(tier, "gpt-image-1"),
            Some(ModelTierLimits::new(None, Some(tpm), Some(ipm)))
        );
        // Explicit numbers still override the published ones, each on its own.
        let l = Limits::resolve_for_model(cat, Some(tier), "gpt-image-1", Some(3), None, Some(2))
            .unwrap();
        assert_eq!(
            (l.rpm, l.tpm, l.ipm),
            (Some(3), Some(tpm), Some(2)),
            "{tier}"
        );
    }
}

#[test]
fn every_image_model_has_figures_at_every_usage_tier() {
    let cat = Catalog::builtin();
    for model in [
        "gpt-image-1",
        "gpt-image-1-mini",
        "gpt-image-1.5",
        "gpt-image-2",
        "dall-e-3",
        "dall-e-2",
    ] {
        let mut last = 0;
        for tier in ["tier-1", "tier-2", "tier-3", "tier-4", "tier-5"] {
            let l = cat
                .model_limits(tier, model)
                .unwrap_or_else(|| panic!("{model} at {tier}"));
            let ipm = l.ipm.unwrap_or_else(|| panic!("{model} at {tier}: no IPM"));
            assert!(
                ipm > last,
                "{model}: {tier} raises the IPM ({last} → {ipm})"
            );
            last = ipm;
        }
    }
    // dall-e: images per minute only.
    let l = for_model(cat, "tier-3", "dall-e-3");
    assert_eq!((l.rpm, l.tpm, l.ipm), (None, None, Some(5000)));
    // The mini model inherits gpt-image-1's figures through `like` (an assumption the data
    // file states): the same as its parent's at every tier.
    for tier in ["tier-1", "tier-5"] {
        assert_eq!(
            cat.model_limits(tier, "gpt-image-1-mini"),
            cat.model_limits(tier, "gpt-image-1")
        );
    }
}

#[test]
fn usage_tiers_carry_the_rate_limit_guides_requirements() {
    let cat = Catalog::builtin();
    for (tier, level, spend, days) in [
        ("tier-1", 1, 5.0, 0),
        ("tier-2", 2, 50.0, 7),
        ("tier-3", 3, 100.0, 7),
        ("tier-4", 4, 250.0, 14),
        ("tier-5", 5, 1000.0, 30),
    ] {
        let t = cat.tier(tier).unwrap();
        assert_eq!(t.kind, TierKind::Usage);
        assert_eq!(t.level, Some(level));
        assert_eq!(t.min_spend_usd, Some(spend), "{tier}");
        assert_eq!(t.min_account_age_days, Some(days), "{tier}");
        assert!(t.has_access());
        assert_eq!((t.rpm, t.tpm), (None, None), "{tier}: limits are per model");
    }
    // Ordered: the usage tiers by level first, then the presets.
    let names: Vec<&str> = cat.tiers().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        &names[..6],
        ["free", "tier-1", "tier-2", "tier-3", "tier-4", "tier-5"]
    );
    assert!(
        names[6..].iter().all(|n| n.starts_with("guide-")),
        "{names:?}"
    );
}

#[test]
fn free_has_no_access_and_names_tier_1_with_the_models_figures() {
    let cat = Catalog::builtin();
    let free = cat.tier("free").unwrap();
    assert!(!free.has_access());
    let l = for_model(cat, "free", "gpt-image-2");
    let na = l.no_access.unwrap();
    let next = na.next_tier.clone().unwrap();
    assert_eq!(next.name, "tier-1");
    assert_eq!(next.model.as_deref(), Some("gpt-image-2"));
    assert_eq!((next.ipm, next.tpm), (Some(5), Some(100_000)));
    let text = na.to_string();
    assert!(text.contains("$5 paid"), "{text}");
    assert!(
        text.contains("gpt-image-2: 5 images per minute (IPM)"),
        "{text}"
    );
    // Both explicit numbers: the caller knows the account's real limits.
    let l = Limits::resolve_for_model(cat, Some("free"), "gpt-image-1", Some(2), Some(9), None)
        .unwrap();
    assert!(l.no_access.is_none());
}

#[test]
fn guide_presets_keep_the_third_party_table() {
    let cat = Catalog::builtin();
    for (name, rpm, tpm) in [
        ("guide-tier-1", 6, 250_000),
        ("guide-tier-2", 15, 500_000),
        ("guide-tier-3", 25, 1_000_000),
        ("guide-enterprise", 60, 2_000_000),
    ] {
        let t = cat.tier(name).unwrap();
        assert_eq!(t.kind, TierKind::Preset);
        assert!(t.requirement.contains("third-party guide") || name == "guide-enterprise");
        let l = for_model(cat, name, "gpt-image-1");
        assert_eq!(
            (l.rpm, l.tpm, l.ipm),
            (Some(rpm), Some(tpm), None),
            "{name}"
        );
    }
    // The old names are gone: `enterprise` is only the guide's.
    assert!(cat.tier("enterprise").is_none());
}

#[test]
fn config_takes_tier_4_and_tier_5() {
    for tier in ["tier-4", "tier-5"] {
        let text = format!(
            "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\ntier = \"{tier}\"\n"
        );
        let cfg: image_router::config::RouterConfig = text.parse().unwrap();
        let cat = cfg.catalog().unwrap();
        assert_eq!(cat.tier(tier).unwrap().kind, TierKind::Usage);
    }
    // An unknown tier is still refused, naming the known ones (tier-5 among them).
    let cfg: image_router::config::RouterConfig =
        "[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\ntier = \"tier-6\"\n"
            .parse()
            .unwrap();
    let e = cfg.catalog().unwrap_err();
    assert!(e.message.contains("tier-5"), "{e}");
}

fn override_err(text: &str) -> image_router::ConfigError {
    Catalog::builtin()
        .with_overrides(text, "user.toml")
        .expect_err(text)
}

#[test]
fn override_mistakes_in_limits_name_key_and_line() {
    // A zero or negative figure: named with its key and line.
    let e = override_err("[models.\"gpt-image-1\".limits]\n\"tier-1\" = { ipm = 0 }\n");
    assert!(
        e.field.contains("models.gpt-image-1.limits.tier-1.ipm"),
        "{e}"
    );
    assert_eq!(e.line, Some(2), "{e}");
    let e = override_err("\n[models.\"gpt-image-1\".limits.\"tier-2\"]\ntpm = -5\n");
    assert!(e.field.contains("limits.tier-2.tpm"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    // An unknown key in a tier's figures.
    let e = override_err("[models.\"gpt-image-1\".limits.\"tier-2\"]\nimages = 5\n");
    assert!(e.message.contains("images"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    // A tier that is not a usage tier (misspelt, or a preset).
    let e = override_err("[models.\"gpt-image-1\".limits]\n\n\"tier-6\" = { ipm = 5 }\n");
    assert!(e.field.contains("models.gpt-image-1.limits.tier-6"), "{e}");
    assert!(e.message.contains("unknown usage tier"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    let e = override_err("[models.\"dall-e-2\".limits.\"guide-tier-1\"]\nipm = 5\n");
    assert!(e.message.contains("usage tier"), "{e}");
    assert_eq!(e.line, Some(1), "{e}");
    // No figure at all (an empty table over published figures overrides nothing; over none
    // it is a mistake).
    let e = override_err(
        "[usage_tiers.\"tier-6\"]\nlevel = 6\n[models.\"dall-e-2\".limits.\"tier-6\"]\n",
    );
    assert!(e.field.contains("models.dall-e-2.limits.tier-6"), "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    // A preset that takes a usage tier's name.
    let e = override_err("\n[tiers.\"tier-3\"]\nrpm = 5\ntpm = 5\n");
    assert!(e.field.contains("tiers.tier-3"), "{e}");
    assert!(e.message.contains("usage tier"), "{e}");
    assert_eq!(e.line, Some(2), "{e}");
    // A new usage tier needs its level.
    let e = override_err("[usage_tiers.\"tier-6\"]\nrequirement = \"x\"\n");
    assert!(e.field.contains("usage_tiers.tier-6.level"), "{e}");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn overrides_add_a_usage_tier_and_its_figures() {
    let cat = Catalog::builtin()
        .with_overrides(
            "[usage_tiers.\"tier-6\"]\nlevel = 6\nmin_spend_usd = 5000\nrequirement = \"$5,000 paid\"\n\
             [models.\"gpt-image-1\".limits.\"tier-6\"]\nipm = 400\ntpm = 10000000\n",
            "o.toml",
        )
        .unwrap();
    assert_eq!(cat.next_tier(Some("tier-5")).unwrap().name, "tier-6");
    let l = for_model(&cat, "tier-6", "gpt-image-1-mini");
    assert_eq!(
        (l.ipm, l.tpm),
        (Some(400), Some(10_000_000)),
        "inherited through like"
    );
    // dall-e-2 has no figure at tier-6: the default model's apply (stated in the docs).
    let l = for_model(&cat, "tier-6", "dall-e-2");
    assert_eq!(l.ipm, Some(400));
}
