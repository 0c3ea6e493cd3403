//! Fallback on a router: after all denied, none offering the model, limited past `max_wait`;
//! the trace shows the switch; the cost uses the served model's prices; off by default; the
//! request's list over the router's; edits only to edit-capable models; one deadline.

use std::time::Duration;

use image_router::{
    EditRequest, Error, GenerateRequest, InputImage, ProviderOptions, Quality, Router, Size,
    SkipReason, Usage,
};

use super::{rec, Answer, Rec};
use crate::support::PIXEL_PNG;

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse").model("gpt-image-1")
}

#[tokio::test]
async fn off_by_default_no_other_model_is_tried() {
    let (p, handle) = rec(Rec::new("openai").denies("gpt-image-1"));
    let router = Router::builder().provider(p).build().unwrap();
    let err = router.generate(req()).await.unwrap_err();
    assert!(err.is_access_denied(), "{err}");
    assert_eq!(handle.models(), ["gpt-image-1"], "nothing else was sent");
    assert!(err.attempts().iter().all(|a| a.fallback.is_none()));
    assert!(!err.to_string().contains("fallback"), "{err}");
}

#[tokio::test]
async fn all_denied_falls_back_and_the_trace_shows_the_switch() {
    // `a` denies gpt-image-1 (the router then holds `a` as denied: an account problem), `b`
    // does not offer it; `b` offers gpt-image-1-mini.
    let (a, ha) = rec(Rec::new("a").denies("gpt-image-1"));
    let (b, hb) = rec(Rec::new("b").serving(&["gpt-image-1-mini"]));
    let router = Router::builder().provider(a).provider(b).build().unwrap();
    let res = router
        .generate(req().fallback_models(["gpt-image-1-mini", "dall-e-3"]))
        .await
        .unwrap();
    assert_eq!(
        res.model, "gpt-image-1-mini",
        "the response names the served model"
    );
    assert_eq!(res.provider, "b");
    let fb = res.fallback.as_ref().expect("served by a fallback model");
    assert_eq!(fb.requested_model, "gpt-image-1");
    assert_eq!(fb.model, "gpt-image-1-mini");
    assert_eq!(
        fb.changes.len(),
        1,
        "same family: only the model: {:?}",
        fb.changes
    );
    // The denial of gpt-image-1, then the fallback's success; the switch is marked.
    let marks: Vec<_> = res.attempts.iter().map(|a| a.fallback.as_deref()).collect();
    assert_eq!(marks, [None, Some("gpt-image-1-mini")]);
    assert!(
        res.attempts[1]
            .to_string()
            .contains("b [gpt-image-1-mini] (fallback) success"),
        "{}",
        res.attempts[1]
    );
    // The skips name the model they were for: `b` for gpt-image-1, `a` (denied) for mini.
    let skips: Vec<String> = res.skipped.iter().map(|s| s.to_string()).collect();
    assert!(
        skips[0].starts_with("b skipped: cannot serve it"),
        "{skips:?}"
    );
    assert!(
        skips[1].starts_with("a skipped for fallback model gpt-image-1-mini: cooling down"),
        "{skips:?}"
    );
    assert_eq!(ha.models(), ["gpt-image-1"]);
    assert_eq!(hb.models(), ["gpt-image-1-mini"]);
}

#[tokio::test]
async fn a_model_not_found_falls_back_on_the_same_provider() {
    let (p, handle) = rec(Rec::new("openai").missing("gpt-image-1"));
    let router = Router::builder().provider(p).build().unwrap();
    let res = router
        .generate(req().fallback_models(["gpt-image-1-mini"]))
        .await
        .unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    assert_eq!(handle.models(), ["gpt-image-1", "gpt-image-1-mini"]);
}

#[tokio::test]
async fn none_offers_the_model_so_the_request_is_translated() {
    let (p, handle) = rec(Rec::new("legacy").serving(&["dall-e-3"]));
    let router = Router::builder().provider(p).build().unwrap();
    let res = router
        .generate(
            req()
                .n(2)
                .size(Size::LANDSCAPE)
                .quality(Quality::High)
                .background(image_router::Background::Transparent)
                .fallback_models(["dall-e-3"]),
        )
        .await
        .unwrap();
    assert_eq!(res.model, "dall-e-3");
    let sent = &handle.sent()[0];
    assert_eq!(sent.model(), Some("dall-e-3"));
    assert_eq!(sent.n(), 1);
    assert_eq!(sent.size(), Some(Size::new(1792, 1024)));
    assert_eq!(sent.quality(), Some(Quality::Hd));
    assert_eq!(sent.background(), None);
    let fields: Vec<_> = res
        .fallback
        .as_ref()
        .unwrap()
        .changes
        .iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(fields, ["model", "n", "size", "quality", "background"]);
    // The requested model's skip is in the trace, unmarked; the success is marked.
    assert!(res
        .skipped
        .iter()
        .any(|s| s.fallback.is_none() && matches!(s.reason, SkipReason::Unsupported { .. })));
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(res.attempts[0].fallback.as_deref(), Some("dall-e-3"));
}

#[tokio::test]
async fn limited_past_max_wait_falls_back_to_a_model_with_room() {
    // One request a minute: the second gpt-image-1 request would have to wait, and
    // `max_wait` 0 says not to. gpt-image-1-mini has its own window.
    let (p, handle) = rec(Rec::new("openai"));
    let router = Router::builder()
        .provider_with(p, ProviderOptions::new().rpm(1))
        .max_wait(Duration::ZERO)
        .fallback_models(["gpt-image-1-mini"])
        .build()
        .unwrap();
    let first = router.generate(req()).await.unwrap();
    assert_eq!(first.model, "gpt-image-1");
    assert!(first.fallback.is_none());
    let second = router.generate(req()).await.unwrap();
    assert_eq!(second.model, "gpt-image-1-mini");
    assert!(
        second
            .skipped
            .iter()
            .any(|s| s.fallback.is_none() && matches!(s.reason, SkipReason::NoHeadroom { .. })),
        "{:?}",
        second.skipped
    );
    assert_eq!(handle.models(), ["gpt-image-1", "gpt-image-1-mini"]);
}

#[tokio::test]
async fn cost_uses_the_served_models_prices() {
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "input_tokens": 100,
        "input_tokens_details": {"text_tokens": 100, "image_tokens": 0},
        "output_tokens": 1000,
        "total_tokens": 1100
    }))
    .unwrap();
    let (p, _) = rec(Rec::new("openai").missing("gpt-image-1").with_usage(usage));
    let router = Router::builder().provider(p).build().unwrap();
    let res = router
        .generate(req().fallback_models(["gpt-image-1-mini"]))
        .await
        .unwrap();
    // gpt-image-1-mini: $2 / 1M text in, $8 / 1M image out (gpt-image-1 would be $5 and $40).
    let usd = res.cost_usd.unwrap();
    assert!(
        (usd - (100.0 * 2.0 + 1000.0 * 8.0) / 1e6).abs() < 1e-12,
        "{usd}"
    );
}

#[tokio::test]
async fn the_requests_list_overrides_the_routers() {
    let (p, handle) = rec(Rec::new("openai").missing("gpt-image-1"));
    let router = Router::builder()
        .provider(p)
        .fallback_models(["dall-e-3"])
        .build()
        .unwrap();
    // The router's own list.
    let res = router.generate(req()).await.unwrap();
    assert_eq!(res.model, "dall-e-3");
    // The request's list instead.
    let res = router
        .generate(req().fallback_models(["gpt-image-1-mini"]))
        .await
        .unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    // An empty list: no fallback for this request.
    let err = router
        .generate(req().fallback_models(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert!(err.is_no_provider(), "{err}");
    assert!(err.attempts().iter().all(|a| a.fallback.is_none()));
    assert!(err.skipped().iter().all(|s| s.fallback.is_none()));
    // gpt-image-1 went out once (then its cool-down skips it), each fallback model once.
    let models = handle.models();
    assert_eq!(models.iter().filter(|m| *m == "gpt-image-1").count(), 1);
    assert_eq!(models.iter().filter(|m| *m == "dall-e-3").count(), 1);
    assert_eq!(
        models.iter().filter(|m| *m == "gpt-image-1-mini").count(),
        1
    );
}

#[tokio::test]
async fn an_edit_falls_back_only_to_models_that_edit() {
    let (p, handle) = rec(Rec::new("openai").missing("gpt-image-1"));
    let router = Router::builder().provider(p).build().unwrap();
    let edit = EditRequest::new(
        "add a hat",
        vec![InputImage::new(PIXEL_PNG.to_vec(), "a.png")],
    )
    .model("gpt-image-1")
    .fallback_models(["dall-e-3", "gpt-image-1-mini"]);
    let res = router.edit(edit).await.unwrap();
    assert_eq!(res.model, "gpt-image-1-mini");
    let skip = res
        .skipped
        .iter()
        .find(|s| s.fallback.as_deref() == Some("dall-e-3"))
        .expect("dall-e-3 is listed as skipped");
    assert!(
        skip.to_string()
            .contains("skipped for fallback model dall-e-3: cannot serve it: dall-e-3 does not serve image edits"),
        "{skip}"
    );
    assert!(skip.explain().cause.contains("for fallback model dall-e-3"));
    assert!(!handle.models().contains(&"dall-e-3".to_string()));
}

#[tokio::test]
async fn when_every_model_fails_the_error_lists_every_attempt_of_every_model() {
    let (p, _) = rec(Rec::new("openai")
        .missing("gpt-image-1")
        .missing("gpt-image-1-mini")
        .missing("dall-e-3"));
    let router = Router::builder().provider(p).build().unwrap();
    let err = router
        .generate(req().fallback_models(["gpt-image-1-mini", "dall-e-3"]))
        .await
        .unwrap_err();
    let marks: Vec<_> = err
        .attempts()
        .iter()
        .map(|a| a.fallback.as_deref())
        .collect();
    assert_eq!(marks, [None, Some("gpt-image-1-mini"), Some("dall-e-3")]);
    let models: Vec<_> = err.attempts().iter().map(|a| a.model.as_str()).collect();
    assert_eq!(models, ["gpt-image-1", "gpt-image-1-mini", "dall-e-3"]);
    assert!(
        err.to_string()
            .contains("fallback model(s) tried too: gpt-image-1-mini, dall-e-3"),
        "{err}"
    );
    let why = err.explain().cause;
    assert!(
        why.contains("fell back to gpt-image-1-mini, then dall-e-3"),
        "{why}"
    );
}

#[tokio::test]
async fn a_refused_request_does_not_fall_back() {
    // Invalid as written: dall-e-3 takes quality standard or hd only. No other model is tried.
    let (p, handle) = rec(Rec::new("openai"));
    let router = Router::builder().provider(p).build().unwrap();
    let err = router
        .generate(
            GenerateRequest::new("x")
                .model("dall-e-3")
                .quality(Quality::Low)
                .fallback_models(["gpt-image-1"]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(handle.sent().is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_deadline_for_the_whole_request_fallbacks_included() {
    // gpt-image-1 never answers: its attempt runs to the deadline, and no time is left for
    // the fallback model.
    let (p, handle) = rec(Rec::new("openai").answer("gpt-image-1", Answer::Hang));
    let router = Router::builder()
        .provider(p)
        .deadline(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let err = router
        .generate(req().fallback_models(["gpt-image-1-mini"]))
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    assert_eq!(
        handle.models(),
        ["gpt-image-1"],
        "no fallback after the deadline"
    );
}

#[tokio::test]
async fn max_attempts_counts_the_attempts_of_every_model() {
    // One attempt for the whole request: used by gpt-image-1, none left for the fallback.
    let (p, handle) = rec(Rec::new("openai").missing("gpt-image-1"));
    let router = Router::builder()
        .provider(p)
        .max_attempts(1)
        .build()
        .unwrap();
    let err = router
        .generate(req().fallback_models(["gpt-image-1-mini"]))
        .await
        .unwrap_err();
    assert_eq!(err.attempts().len(), 1);
    assert_eq!(handle.models(), ["gpt-image-1"]);
    // With two, the fallback gets the second.
    let (p, handle) = rec(Rec::new("openai").missing("gpt-image-1"));
    let router = Router::builder()
        .provider(p)
        .max_attempts(2)
        .build()
        .unwrap();
    let res = router
        .generate(req().fallback_models(["gpt-image-1-mini"]))
        .await
        .unwrap();
    assert_eq!(res.attempts.len(), 2);
    assert_eq!(handle.models(), ["gpt-image-1", "gpt-image-1-mini"]);
}
