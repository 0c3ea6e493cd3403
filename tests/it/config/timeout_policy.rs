//! `[router] on_timeout_after_send` from the config file reaches the router: `"fail"` returns
//! the timeout of a request that was sent (never paid twice), `"failover"` (the default) tries
//! the next provider and marks the attempt possibly billed; a bad value names key and line.

use std::time::Duration;

use image_router::config::{build_provider, RouterConfig};
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{ErrorKind, GenerateRequest, Quality};

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
}

fn config(sim: &Simulator, policy_line: &str) -> String {
    format!(
        "[router]\ntimeout = \"300ms\"\n{policy_line}\n\
         [[provider]]\nname = \"a\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"KA\"\n\
         [[provider]]\nname = \"b\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"KB\"\n",
        sim.openai_base_url("a"),
        sim.openai_base_url("b")
    )
}

#[tokio::test]
async fn the_file_chooses_what_a_timeout_after_sending_does() {
    let sim = Simulator::builder()
        .account("a", SimAccount::new().api_key("key-a"))
        .account("b", SimAccount::new().api_key("key-b"))
        .start()
        .await
        .unwrap();
    sim.fail("a", Fault::Slow(Duration::from_secs(3)), Times::Always);
    let env = |v: &str| match v {
        "KA" => Some("key-a".to_string()),
        "KB" => Some("key-b".to_string()),
        _ => None,
    };

    // "fail": one attempt, the timeout returned, nothing sent to b.
    let cfg: RouterConfig = config(&sim, "on_timeout_after_send = \"fail\"")
        .parse()
        .unwrap();
    assert_eq!(
        cfg.router.on_timeout_after_send,
        Some(image_router::policy::TimeoutPolicy::Fail)
    );
    let router = cfg.build_with(&env, build_provider).unwrap();
    let err = router.generate(req()).await.unwrap_err();
    assert_eq!(
        err.cause().map(|c| c.kind.clone()),
        Some(ErrorKind::Timeout { sent: true }),
        "{err}"
    );
    assert_eq!(err.attempts().len(), 1, "{err}");
    assert!(err.attempts()[0].possibly_billed);
    assert_eq!(sim.stats("b").requests, 0, "never paid twice");

    // "failover" (and the default): b serves, a's attempt is marked possibly billed.
    for line in ["on_timeout_after_send = \"failover\"", ""] {
        let router = config(&sim, line)
            .parse::<RouterConfig>()
            .unwrap()
            .build_with(&env, build_provider)
            .unwrap();
        let res = router.generate(req()).await.unwrap();
        assert_eq!(res.provider, "b", "{line:?}");
        assert!(
            res.attempts[0].possibly_billed,
            "{line:?}: {:?}",
            res.attempts
        );
    }
}

#[test]
fn a_bad_timeout_policy_names_key_and_line() {
    let text = "[router]\ntimeout = \"30s\"\non_timeout_after_send = \"retry\"\n";
    let e = text.parse::<RouterConfig>().unwrap_err();
    assert_eq!(e.field, "router.on_timeout_after_send", "{e}");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("\"failover\" or \"fail\""), "{e}");
}
