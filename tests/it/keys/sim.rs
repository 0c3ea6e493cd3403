//! The simulator's key sets: one URL, each key with its own window, a revoked or unknown key
//! answered with the real 401 `invalid_api_key` body.

use super::*;
use image_router::sim::SimAccount;
use serde_json::{json, Value};

async fn post(sim: &Simulator, bearer: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/images/generations", sim.openai_base_url("openai")))
        .bearer_auth(bearer)
        .json(&json!({"model": "gpt-image-1", "prompt": "a fox", "quality": "low", "size": "1024x1024"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn each_key_has_its_own_window_and_a_revoked_key_gets_the_real_401() {
    let sim = two_keys(None, SimAccount::new().rpm(1), SimAccount::new().rpm(2)).await;
    let (a, b) = (
        sim.key_account("openai", 0).unwrap(),
        sim.key_account("openai", 1).unwrap(),
    );
    assert_eq!((a.as_str(), b.as_str()), ("openai.key1", "openai.key2"));
    assert_eq!(sim.key_account("openai", 2), None);

    assert_eq!(post(&sim, &key("a")).await.0, 200);
    let (status, body) = post(&sim, &key("a")).await;
    assert_eq!(status, 429, "key A's own limit of 1: {body}");
    assert_eq!(post(&sim, &key("b")).await.0, 200);
    assert_eq!(post(&sim, &key("b")).await.0, 200);
    assert_eq!(post(&sim, &key("b")).await.0, 429);
    assert_eq!(sim.stats(&a).succeeded, 1);
    assert_eq!(sim.stats(&b).succeeded, 2);
    assert_eq!(sim.stats(&a).rate_limited, 1);

    // An unknown key: the real 401, with the sent key masked as the API masks it.
    let (status, body) = post(&sim, &key("c")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(!body.to_string().contains(&key("c")), "{body}");

    assert!(sim.revoke_key("openai", 1));
    assert!(!sim.revoke_key("openai", 5));
    let (status, body) = post(&sim, &key("b")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Incorrect API key provided: "),
        "{message}"
    );
    assert_eq!(sim.stats(&b).unauthorized, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_key_set_needs_keys_and_names_that_are_free() {
    let empty = Simulator::builder()
        .account_keys("openai", SimKeys::new())
        .start()
        .await;
    assert!(empty.is_err());
    let clash = Simulator::builder()
        .account("openai.key1", SimAccount::new())
        .account_keys("openai", SimKeys::new().key(key("a"), SimAccount::new()))
        .start()
        .await;
    assert!(clash.is_err());
}
