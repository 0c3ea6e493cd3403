//! `check_on_start`: from the builder and from the config file, the check runs once at start
//! and the first requests do not pay for the discovery; `build_checked` waits for it.

use super::*;
use crate::support::cli::env_from;
use image_router::config::{build_provider, RouterConfig};
use image_router::sim::SimAccount;
use image_router::CheckResult;

async fn two_accounts() -> Simulator {
    Simulator::builder()
        .account("bad", SimAccount::new().api_key("sk-right-key-0001"))
        .account("good", SimAccount::new().api_key("sk-right-key-0001"))
        .start()
        .await
        .unwrap()
}

fn config(sim: &Simulator, router_extra: &str) -> RouterConfig {
    format!(
        "[router]\nstrategy = \"ordered\"\nretry_backoff = \"5ms\"\n{router_extra}\n\
         [[provider]]\nname = \"bad\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"IR_BAD\"\n\
         [[provider]]\nname = \"good\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"IR_GOOD\"\n",
        sim.openai_base_url("bad"),
        sim.openai_base_url("good"),
    )
    .parse()
    .unwrap()
}

fn env() -> impl Fn(&str) -> Option<String> {
    env_from(&[
        ("IR_BAD", "sk-wrong-key-0002".to_string()),
        ("IR_GOOD", "sk-right-key-0001".to_string()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_start_from_the_config_file_spares_the_first_request() {
    let sim = two_accounts().await;
    let cfg = config(&sim, "check_on_start = true\ncheck_timeout = \"3s\"");
    assert_eq!(cfg.router.check_on_start, Some(true));
    assert_eq!(cfg.router.check_timeout, Some(Duration::from_secs(3)));
    let router = cfg.build_with(&env(), build_provider).unwrap();
    // Sent at once: it waits for the check started by build(), then skips the bad key.
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "good");
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(image_calls(&sim, "bad"), 0);
    let report = router.start_check().expect("the check on start ran");
    assert_eq!(report.timeout_ms, 3000);
    assert_eq!(
        report.provider("bad").unwrap().models[0].result,
        CheckResult::Denied
    );
    // Once: later requests do not check again.
    router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(lookups(&sim, "bad"), 1);
    assert_eq!(lookups(&sim, "good"), 1);
}

#[tokio::test]
async fn without_check_on_start_the_first_request_pays_for_the_discovery() {
    // The counterpart of the test above: the same config without the setting.
    let sim = two_accounts().await;
    let router = config(&sim, "").build_with(&env(), build_provider).unwrap();
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "good");
    assert_eq!(res.attempts.len(), 2, "a 401 first");
    assert_eq!(image_calls(&sim, "bad"), 1);
    assert!(router.start_check().is_none());
    assert_eq!(lookups(&sim, "bad"), 0);
}

#[tokio::test]
async fn check_on_start_from_the_builder_and_build_checked() {
    let sim = two_accounts().await;
    let builder = || {
        ordered()
            .provider(openai(&sim, "bad", "sk-wrong-key-0002").build().unwrap())
            .provider(openai(&sim, "good", "sk-right-key-0001").build().unwrap())
    };
    // build_checked waits and returns the report (check_on_start not even needed).
    let (router, report) = builder().build_checked().await.unwrap();
    assert_eq!(
        report.provider("bad").unwrap().models[0].result,
        CheckResult::Denied
    );
    assert!(router.start_check().is_some());
    assert_eq!(
        router.generate(req("gpt-image-1")).await.unwrap().provider,
        "good"
    );
    assert_eq!(image_calls(&sim, "bad"), 0);
    assert_eq!(lookups(&sim, "bad"), 1, "one check, not one per request");

    // Built outside any runtime: the first request runs the check.
    let b = builder().check_on_start(true);
    let router = std::thread::spawn(move || b.build().unwrap())
        .join()
        .unwrap();
    assert!(router.start_check().is_none());
    let res = router.generate(req("gpt-image-1")).await.unwrap();
    assert_eq!(res.provider, "good");
    assert_eq!(res.attempts.len(), 1);
    assert_eq!(image_calls(&sim, "bad"), 0);
    assert_eq!(lookups(&sim, "bad"), 2);
    assert!(router.start_check().is_some());
}

#[test]
fn a_zero_check_timeout_is_refused_by_the_file_and_the_builder() {
    let e = "[router]\ncheck_timeout = \"0s\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n"
        .parse::<RouterConfig>()
        .unwrap_err();
    assert_eq!(e.field, "router.check_timeout");
    assert_eq!(e.line, Some(2));
    let e = "[router]\ncheck_on_start = \"yes\"\n[[provider]]\nname = \"a\"\nkind = \"openai\"\napi_key_env = \"K\"\n"
        .parse::<RouterConfig>()
        .unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = ordered()
        .provider(OpenAi::builder().api_key("k").build().unwrap())
        .check_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field, "check_timeout");
}
