//! Preview mode: quality and size turned down, the model swapped only when asked and named by
//! the catalog, the environment over the file; and the README's cost table against the catalog.

use std::sync::Arc;

use image_router::catalog::{Catalog, ModelSpec, Price};
use image_router::config::RouterConfig;
use image_router::{
    Change, EditRequest, GenerateRequest, InputImage, PreviewConfig, Provider, Quality, Router,
    Size,
};

use crate::fallback::{rec, Rec};
use crate::support::cli::env_from;
use crate::support::PIXEL_PNG;

#[tokio::test]
async fn preview_turns_quality_and_size_down_and_says_so() {
    let (p, handle) = rec(Rec::new("openai"));
    let router = Router::builder().provider(p).preview(true).build().unwrap();
    let res = router
        .generate(
            GenerateRequest::new("x")
                .model("gpt-image-1")
                .quality(Quality::High),
        )
        .await
        .unwrap();
    let sent = &handle.sent()[0];
    assert_eq!(
        sent.model(),
        Some("gpt-image-1"),
        "no model swap unless asked"
    );
    assert_eq!(sent.quality(), Some(Quality::Low));
    assert_eq!(sent.size(), Some(Size::SQUARE), "the smallest size");
    assert_eq!(
        res.preview.unwrap().changes,
        vec![
            Change::new("quality", Some("high"), Some("low")),
            Change::new("size", None::<&str>, Some("1024x1024")),
        ]
    );
    assert!(res.fallback.is_none());
    // An explicit landscape size stays landscape (its smallest); dall-e-2 goes to 256x256.
    router
        .generate(
            GenerateRequest::new("x")
                .model("gpt-image-1")
                .size(Size::LANDSCAPE),
        )
        .await
        .unwrap();
    assert_eq!(handle.sent()[1].size(), Some(Size::LANDSCAPE));
    router
        .generate(GenerateRequest::new("x").model("dall-e-2"))
        .await
        .unwrap();
    assert_eq!(handle.sent()[2].size(), Some(Size::new(256, 256)));
    assert_eq!(handle.sent()[2].quality(), Some(Quality::Standard));
}

#[tokio::test]
async fn preview_off_by_default_changes_nothing() {
    let (p, handle) = rec(Rec::new("openai"));
    let router = Router::builder().provider(p).build().unwrap();
    let res = router
        .generate(
            GenerateRequest::new("x")
                .model("gpt-image-1")
                .quality(Quality::High),
        )
        .await
        .unwrap();
    assert!(res.preview.is_none());
    assert_eq!(handle.sent()[0].quality(), Some(Quality::High));
    assert_eq!(handle.sent()[0].size(), None);
}

#[tokio::test]
async fn the_cheaper_model_only_when_asked_and_named_by_the_catalog() {
    let (p, handle) = rec(Rec::new("openai"));
    let router = Router::builder()
        .provider(p)
        .preview(PreviewConfig::on().cheaper_model(true))
        .build()
        .unwrap();
    let res = router
        .generate(GenerateRequest::new("x").model("gpt-image-1"))
        .await
        .unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    assert_eq!(handle.sent()[0].model(), Some("gpt-image-1-mini"));
    assert_eq!(handle.sent()[0].quality(), Some(Quality::Low));
    let changes = res.preview.unwrap().changes;
    assert_eq!(
        changes[0],
        Change::new("model", Some("gpt-image-1"), Some("gpt-image-1-mini"))
    );
    // gpt-image-1.5 names no preview model: it stays, only cheaper.
    let res = router
        .generate(GenerateRequest::new("x").model("gpt-image-1.5"))
        .await
        .unwrap();
    assert_eq!(res.model, "gpt-image-1.5");
    assert_eq!(handle.sent()[1].quality(), Some(Quality::Low));
    // An edit previews too, at the lowest edit quality.
    let edit = EditRequest::new("x", vec![InputImage::new(PIXEL_PNG.to_vec(), "a.png")])
        .model("gpt-image-1")
        .quality(Quality::Medium);
    let res = router.edit(edit).await.unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    assert_eq!(handle.sent()[2].quality(), Some(Quality::Low));
}

#[tokio::test]
async fn preview_does_not_hide_an_invalid_request() {
    let (p, handle) = rec(Rec::new("openai"));
    let router = Router::builder().provider(p).preview(true).build().unwrap();
    let err = router
        .generate(
            GenerateRequest::new("x")
                .model("gpt-image-1")
                .quality(Quality::Hd),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid(), "{err}");
    assert!(handle.sent().is_empty());
}

fn config(router_table: &str) -> RouterConfig {
    format!(
        "[router]\n{router_table}\n\n[[provider]]\nname = \"openai\"\nkind = \"openai\"\n\
         api_key_env = \"OPENAI_API_KEY\"\n"
    )
    .parse()
    .unwrap()
}

/// The router from `cfg` with the environment `env`, on a recording provider.
fn build(cfg: &RouterConfig, preview_env: Option<&str>) -> Result<(Router, Arc<Rec>), String> {
    let mut pairs = vec![("OPENAI_API_KEY", "sk-preview-test".to_string())];
    if let Some(v) = preview_env {
        pairs.push((image_router::PREVIEW_ENV, v.to_string()));
    }
    let env = env_from(&pairs);
    let (p, handle) = rec(Rec::new("openai"));
    let p: Arc<dyn Provider> = Arc::new(p);
    let b = cfg
        .builder_with(&env, |_, _, _| Ok(p.clone()))
        .map_err(|e| e.to_string())?;
    let router = cfg
        .with_preview_env(b, &env)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    Ok((router, handle))
}

async fn sent_quality(router: &Router, handle: &Rec) -> Option<Quality> {
    router
        .generate(
            GenerateRequest::new("x")
                .model("gpt-image-1")
                .quality(Quality::High),
        )
        .await
        .unwrap();
    handle.sent().last().unwrap().quality()
}

#[tokio::test]
async fn the_environment_overrides_the_file() {
    // File on, nothing in the environment: on.
    let on = config("preview = true\npreview_model = true");
    let (r, h) = build(&on, None).unwrap();
    assert_eq!(sent_quality(&r, &h).await, Some(Quality::Low));
    assert_eq!(
        h.models(),
        ["gpt-image-1-mini"],
        "preview_model from the file"
    );
    // File on, environment 0: off.
    let (r, h) = build(&on, Some("0")).unwrap();
    assert_eq!(sent_quality(&r, &h).await, Some(Quality::High));
    // File off (or silent), environment 1: on, with the file's preview_model.
    let off = config("preview = false");
    let (r, h) = build(&off, Some("1")).unwrap();
    assert_eq!(sent_quality(&r, &h).await, Some(Quality::Low));
    assert_eq!(h.models(), ["gpt-image-1"]);
    let silent = config("");
    let (r, h) = build(&silent, Some("yes")).unwrap();
    assert_eq!(sent_quality(&r, &h).await, Some(Quality::Low));
    let (r, h) = build(&silent, None).unwrap();
    assert_eq!(sent_quality(&r, &h).await, Some(Quality::High));
    // A value that is neither is an error naming the variable.
    let err = build(&off, Some("maybe")).unwrap_err();
    assert!(err.contains("IMAGE_ROUTER_PREVIEW"), "{err}");
}

#[test]
fn config_fallback_models_reach_the_router_and_empty_names_are_errors() {
    let cfg = config("fallback_models = [\"gpt-image-1-mini\", \"dall-e-3\"]");
    assert_eq!(cfg.router.fallback_models, ["gpt-image-1-mini", "dall-e-3"]);
    let err = "[router]\nfallback_models = [\"\"]\n\n[[provider]]\nname = \"o\"\nkind = \"openai\"\napi_key_env = \"K\"\n"
        .parse::<RouterConfig>()
        .unwrap_err();
    assert_eq!(err.field, "router.fallback_models[0]");
    assert_eq!(err.line, Some(2));
    let err = Router::builder()
        .provider(Rec::new("o"))
        .fallback_models([" "])
        .build()
        .unwrap_err();
    assert_eq!(err.field, "fallback_models[0]");
}

#[tokio::test]
async fn config_fallback_models_are_used() {
    let cfg = config("fallback_models = [\"gpt-image-1-mini\"]");
    let env = env_from(&[("OPENAI_API_KEY", "sk-preview-test".to_string())]);
    let (p, handle) = rec(Rec::new("openai").missing("gpt-image-1"));
    let p: Arc<dyn Provider> = Arc::new(p);
    let router = cfg.build_with(&env, |_, _, _| Ok(p.clone())).unwrap();
    let res = router
        .generate(GenerateRequest::new("x").model("gpt-image-1"))
        .await
        .unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    assert_eq!(handle.models(), ["gpt-image-1", "gpt-image-1-mini"]);
}

/// USD for one image of `quality` / `size` on `m` from the catalog alone: output tokens ×
/// the image output price, or the per-image table.
fn per_image(m: &ModelSpec, quality: Quality, size: Size) -> f64 {
    match m.price.as_ref().expect("every built-in model has a price") {
        Price::UsdPer1mTokens { image_output, .. } => {
            f64::from(m.output_image_tokens(Some(quality), Some(size))) * image_output / 1e6
        }
        Price::UsdPerImage { table } => table[&quality][&size],
        _ => panic!("unknown price unit"),
    }
}

/// The lowest quality and smallest size `m` takes (what preview sends for a request naming
/// neither).
fn cheapest(m: &ModelSpec) -> (Quality, Size) {
    let rank = |q: &Quality| match q {
        Quality::Low => 0,
        Quality::Medium | Quality::Standard => 1,
        _ => 2,
    };
    let q = *m
        .capabilities
        .qualities
        .iter()
        .filter(|q| **q != Quality::Auto)
        .min_by_key(|q| rank(q))
        .unwrap();
    let s = *m
        .capabilities
        .sizes
        .iter()
        .filter(|s| s.dims().is_some())
        .min_by_key(|s| s.dims().map(|(w, h)| u64::from(w) * u64::from(h)))
        .unwrap();
    (q, s)
}

#[test]
fn readme_table() {
    let readme = include_str!("../../../README.md");
    let cat = Catalog::builtin();
    let rows: Vec<Vec<&str>> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| model | without preview | preview |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let mut seen = Vec::new();
    for row in &rows {
        let m = cat
            .model(row[0])
            .unwrap_or_else(|| panic!("unknown model {}", row[0]));
        let c = &m.capabilities;
        let full = per_image(m, c.default_quality, c.default_size);
        let (q, s) = cheapest(m);
        let preview = per_image(m, q, s);
        let with_model = match m.preview_model.as_deref().and_then(|p| cat.model(p)) {
            Some(cheaper) => {
                let (q, s) = cheapest(cheaper);
                per_image(cheaper, q, s)
            }
            None => preview,
        };
        let want: Vec<String> = [full, preview, with_model]
            .iter()
            .map(|v| format!("${v:.4}"))
            .collect();
        assert_eq!(row[1..], want[..], "README row for {}", row[0]);
        seen.push(row[0]);
    }
    // Every model of the catalog has its row.
    let mut all: Vec<&str> = cat.models().map(|m| m.name()).collect();
    all.sort_unstable();
    seen.sort_unstable();
    assert_eq!(seen, all);
}
