//! The Azure OpenAI surfaces: deployments and catalog models.

use super::*;

#[tokio::test]
async fn azure_surfaces() {
    let (sim, clock) = limited(Some(2), Some(100_000)).await;
    let endpoint = sim.azure_endpoint("az");
    let dep = |d: &str, op: &str| {
        format!("{endpoint}/openai/deployments/{d}/images/{op}?api-version=2025-04-01-preview")
    };
    let body = json!({"prompt": "abcd", "quality": "low"});
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.h("apim-request-id").is_some());
    assert!(a.h("x-request-id").is_none());
    assert_eq!(a.h("x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(a.h("x-ratelimit-remaining-tokens"), Some("99727"));
    for h in [
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    ] {
        assert!(a.h(h).is_none(), "{h}");
    }
    assert_eq!(a.body["usage"]["output_tokens"], 272);

    // Missing api-version.
    let a = post(
        &format!("{endpoint}/openai/deployments/dep/images/generations"),
        None,
        body.clone(),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "404");
    // Unknown deployment.
    let a = post(&dep("nope", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 404);
    assert_eq!(error_of(&a)["code"], "DeploymentNotFound");
    // webp.
    let a = post(
        &dep("dep", "generations"),
        None,
        json!({"prompt": "x", "output_format": "webp"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a)["param"], "output_format");
    assert!(error_of(&a)["message"].as_str().unwrap().contains("webp"));

    // v1 surface: the deployment in the body.
    let v1 = format!("{endpoint}/openai/v1/images/generations");
    let a = post(
        &v1,
        None,
        json!({"model": "dep", "prompt": "abcd", "quality": "low"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = post(&v1, None, json!({"model": "gpt-image-1", "prompt": "abcd"})).await;
    assert_eq!(error_of(&a)["code"], "DeploymentNotFound");

    // Window 429 in Azure's words.
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 429);
    assert_eq!(error_of(&a)["code"], "429");
    let msg = error_of(&a)["message"].as_str().unwrap();
    assert!(msg.starts_with("Requests to the ImageGenerations_Create Operation under Azure OpenAI API version 2025-04-01-preview have exceeded call rate limit"), "{msg}");
    assert!(msg.contains("Please retry after 60 seconds."), "{msg}");
    assert_eq!(a.h("retry-after"), Some("60"));
    assert_eq!(a.h("retry-after-ms"), Some("60000"));
    assert!(a.h("apim-request-id").is_some());
    clock.advance(Duration::from_secs(60));

    // Edits on Azure (multipart, image[]).
    let form = reqwest::multipart::Form::new()
        .part("image[]", part(png_of(64, 64), "a.png"))
        .part("image[]", part(png_of(64, 64), "b.png"))
        .text("prompt", "merge")
        .text("quality", "low");
    let a = send(client().post(dep("dep", "edits")).multipart(form)).await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Azure faults.
    sim.fail("az", Fault::ContentPolicy, Times::Once);
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(a.status, 400);
    assert_eq!(error_of(&a)["code"], "content_policy_violation");
    assert_eq!(
        error_of(&a)["inner_error"]["code"],
        "ResponsibleAIPolicyViolation"
    );
    assert_eq!(
        error_of(&a)["inner_error"]["content_filter_results"]["violence"]["filtered"],
        true
    );
    sim.fail(
        "az",
        Fault::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            scope: RateLimitScope::Requests,
        },
        Times::Once,
    );
    let a = post(&dep("dep", "edits"), None, body.clone()).await;
    assert_eq!(a.status, 429);
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("ImageEdits_Create"));
    assert!(error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("Please retry after 2 seconds."));
    assert_eq!(a.h("retry-after-ms"), Some("2000"));
    sim.fail(
        "az",
        Fault::RateLimited {
            retry_after: None,
            scope: RateLimitScope::Requests,
        },
        Times::Once,
    );
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(error_of(&a)["code"], "RateLimitReached");
    assert!(a.h("retry-after").is_none());
    assert!(!error_of(&a)["message"]
        .as_str()
        .unwrap()
        .contains("retry after"));
    sim.fail("az", Fault::ModelNotFound, Times::Once);
    let a = post(&dep("dep", "generations"), None, body.clone()).await;
    assert_eq!(
        (a.status, &error_of(&a)["code"]),
        (404, &json!("DeploymentNotFound"))
    );
    sim.fail("az", Fault::InvalidApiKey, Times::Once);
    let a = post(&dep("dep", "generations"), None, body).await;
    assert_eq!((a.status, &error_of(&a)["code"]), (401, &json!("401")));
}

#[tokio::test]
async fn azure_without_deployments_serves_catalog_models() {
    let sim = Simulator::builder()
        .account("az", SimAccount::new())
        .start()
        .await
        .unwrap();
    let url = format!(
        "{}/openai/deployments/gpt-image-1-mini/images/generations?api-version=preview",
        sim.azure_endpoint("az")
    );
    assert_eq!(post(&url, None, low()).await.status, 200);
}
