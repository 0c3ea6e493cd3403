//! Fallback and preview mode with the response cache on: the cache keys the request as
//! routed (preview applied, fallback list resolved), and a cached answer is labelled as a
//! fresh one would be.

use image_router::cache::CacheConfig;
use image_router::{GenerateRequest, Quality, Router};

use super::{rec, Rec};

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse").model("gpt-image-1")
}

#[tokio::test]
async fn a_cached_answer_of_a_fallback_model_says_so_and_a_request_without_the_list_never_gets_it()
{
    // The only provider offers gpt-image-1-mini alone.
    let (p, handle) = rec(Rec::new("b").serving(&["gpt-image-1-mini"]));
    let router = Router::builder()
        .provider(p)
        .cache(CacheConfig::new())
        .build()
        .unwrap();
    let asked = || req().fallback_models(["gpt-image-1-mini"]);
    let fresh = router.generate(asked()).await.unwrap();
    assert!(!fresh.cached);
    assert_eq!(fresh.model, "gpt-image-1-mini");
    let cached = router.generate(asked()).await.unwrap();
    assert!(
        cached.cached,
        "the same request with the same list is a hit"
    );
    assert_eq!(cached.images, fresh.images);
    assert_eq!(cached.model, "gpt-image-1-mini");
    assert_eq!(
        cached.fallback, fresh.fallback,
        "labelled with the same fallback and changes"
    );
    assert_eq!(handle.models(), ["gpt-image-1-mini"], "one call");

    // Without the list the request may only be served by gpt-image-1: the cached mini image
    // is not its answer, and no provider offers gpt-image-1.
    let err = router.generate(req()).await.unwrap_err();
    assert!(err.attempts().is_empty(), "no attempt: {err}");
    assert_eq!(handle.models(), ["gpt-image-1-mini"], "nothing sent");
    assert_eq!(router.cache_stats().await.unwrap().entries, 1);
}

#[tokio::test]
async fn in_preview_mode_the_cached_answer_reports_the_preview_changes() {
    let (p, handle) = rec(Rec::new("a"));
    let router = Router::builder()
        .provider(p)
        .preview(true)
        .cache(CacheConfig::new())
        .build()
        .unwrap();
    let fresh = router.generate(req()).await.unwrap();
    let cached = router.generate(req()).await.unwrap();
    assert!(!fresh.cached);
    assert!(cached.cached);
    let changes = &fresh.preview.as_ref().expect("preview mode is on").changes;
    assert!(!changes.is_empty(), "quality and size are lowered");
    assert_eq!(cached.preview, fresh.preview);
    let sent = handle.sent();
    assert_eq!(sent.len(), 1, "one call");
    assert_eq!(sent[0].quality(), Some(Quality::Low));

    // The same request asking for high quality is the same preview request: one entry.
    let high = router.generate(req().quality(Quality::High)).await.unwrap();
    assert!(
        high.cached,
        "preview sends it as the same low-quality request"
    );
    assert_eq!(handle.sent().len(), 1);
}
