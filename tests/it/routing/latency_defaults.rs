//! The latency scenario with every setting at its default: one provider at 50 ms, one
//! at 500 ms, in either configured order; most traffic goes to the fast one, and it moves
//! when their speeds swap.
//!
//! The tests run on tokio's paused clock: the simulator's latency is a tokio sleep and the
//! router measures calls with tokio's `Instant`, so each call measures exactly the simulated
//! 50 ms or 500 ms, however loaded the machine is. On real time a loaded 2-core machine
//! stretched the 50 ms answers until the router's estimates of the two providers overlapped,
//! and traffic stayed on the now-slow provider after the swap. HTTP still goes over
//! 127.0.0.1; the paused clock only moves when every task waits, and then to the next timer
//! (here the simulator's latency sleep).

use std::time::Duration;

use image_router::providers::OpenAi;
use image_router::sim::{SimAccount, Simulator};
use image_router::{GenerateRequest, Quality, Router};

fn openai(name: &str, base: String) -> OpenAi {
    OpenAi::builder()
        .name(name)
        .base_url(base)
        .api_key(format!("sk-{}", "l".repeat(8)))
        .build()
        .unwrap()
}

fn req() -> GenerateRequest {
    GenerateRequest::new("a lighthouse")
        .model("gpt-image-1")
        .quality(Quality::Low)
}

async fn run(fast_first: bool) {
    let sim = Simulator::builder()
        .account("fast", SimAccount::new().latency(Duration::from_millis(50)))
        .account(
            "slow",
            SimAccount::new().latency(Duration::from_millis(500)),
        )
        .start()
        .await
        .unwrap();
    let (first, second) = if fast_first {
        ("fast", "slow")
    } else {
        ("slow", "fast")
    };
    let router = Router::builder()
        .provider(openai(first, sim.openai_base_url(first)))
        .provider(openai(second, sim.openai_base_url(second)))
        .build()
        .unwrap();
    let mut served = Vec::new();
    for _ in 0..12 {
        served.push(router.generate(req()).await.unwrap().provider);
    }
    let on_fast = served.iter().filter(|p| *p == "fast").count();
    assert!(on_fast >= 10, "fast_first={fast_first}: {served:?}");
    sim.set_latency("fast", Duration::from_millis(500));
    sim.set_latency("slow", Duration::from_millis(50));
    let mut after = Vec::new();
    for _ in 0..12 {
        after.push(router.generate(req()).await.unwrap().provider);
    }
    // "slow" is now the fast one.
    let on_now_fast = after.iter().filter(|p| *p == "slow").count();
    assert!(
        on_now_fast >= 9,
        "fast_first={fast_first}: after the swap {after:?}\n{:#?}",
        router.rank(&req().into(), None).unwrap().order
    );
}

#[tokio::test(start_paused = true)]
async fn fast_provider_configured_first() {
    run(true).await;
}

#[tokio::test(start_paused = true)]
async fn fast_provider_configured_second() {
    run(false).await;
}
