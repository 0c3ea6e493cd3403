//! Request classes: reserved and preferred providers per class.

use crate::support::scoring::*;
use crate::support::{Fake, Step};
use image_router::{ClassPolicy, RequestClass};
use image_router::{Provider, ProviderOptions, Router, SkipReason};
use std::sync::Arc;

#[tokio::test(start_paused = true)]
async fn reserved_and_preferred_classes() {
    let direct = Fake::new("direct").arc();
    let azure = Fake::new("azure").arc();
    let proxy = Fake::new("proxy").arc();
    let enterprise = RequestClass::new("enterprise");
    let router = Router::builder()
        .provider_arc(
            Arc::clone(&direct) as Arc<dyn Provider>,
            ProviderOptions::new().classes(ClassPolicy::reserved([RequestClass::INTERACTIVE])),
        )
        .provider_arc(
            Arc::clone(&azure) as Arc<dyn Provider>,
            ProviderOptions::new().classes(ClassPolicy::preferred([enterprise.clone()])),
        )
        .provider_arc(
            Arc::clone(&proxy) as Arc<dyn Provider>,
            ProviderOptions::new().classes(ClassPolicy::preferred([RequestClass::BATCH])),
        )
        .build()
        .unwrap();
    let send = |c: Option<RequestClass>| {
        let router = router.clone();
        async move { router.send_as(req().into(), c.as_ref()).await }
    };
    assert_eq!(
        send(Some(RequestClass::INTERACTIVE))
            .await
            .unwrap()
            .provider,
        "direct"
    );
    let res = send(Some(RequestClass::BATCH)).await.unwrap();
    assert_eq!(res.provider, "proxy", "batch prefers the proxy");
    assert!(res
        .skipped
        .iter()
        .any(|s| s.provider == "direct" && matches!(s.reason, SkipReason::Reserved { .. })));
    assert_eq!(
        send(Some(enterprise.clone())).await.unwrap().provider,
        "azure"
    );
    let res = send(None).await.unwrap();
    assert_eq!(
        res.provider, "azure",
        "no class: reserved provider not used"
    );
    // Preferred provider down: failover to the rest, never to a reserved one.
    proxy.set_default(Step::fail(rate_limited()));
    let res = send(Some(RequestClass::BATCH)).await.unwrap();
    assert_eq!(res.provider, "azure");
    // Only a reserved provider and the class does not match: a clear error, no call.
    azure.set_default(Step::fail(rate_limited()));
    let calls = direct.calls();
    let _ = send(Some(RequestClass::BATCH)).await;
    assert_eq!(direct.calls(), calls);
    // rank() honours classes too.
    let ranked = router
        .rank(&req().into(), Some(&RequestClass::INTERACTIVE))
        .unwrap();
    assert_eq!(ranked.order[0].0, "direct");
    let ranked = router.rank(&req().into(), None).unwrap();
    assert!(ranked.order.iter().all(|(n, _)| n != "direct"));
}
