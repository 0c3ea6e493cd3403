//! Metrics with a Prometheus exporter on top of the router's `metrics` facade.
//!
//! The library records through `metrics` and ships no exporter; the application installs one.
//! This example installs `metrics-exporter-prometheus`, routes a few requests on the embedded
//! simulator (one provider failing, so failovers and breaker transitions show) and prints the
//! text exposition a Prometheus server would scrape (serve `handle.render()` on `/metrics` in
//! a real application).
//!
//! ```text
//! cargo run --example prometheus
//! ```

use image_router::providers::OpenAi;
use image_router::sim::{Fault, SimAccount, Simulator, Times};
use image_router::{GenerateRequest, Quality, Router};
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    // Help text and units for every image_router metric (the `# HELP` lines).
    image_router::metrics::describe();

    let sim = Simulator::builder()
        .account("primary", SimAccount::new())
        .account("fallback", SimAccount::new())
        .start()
        .await?;
    sim.fail("primary", Fault::Status(503), Times::N(6));
    let router = Router::builder()
        .provider(
            OpenAi::builder()
                .name("primary")
                .base_url(sim.openai_base_url("primary"))
                .api_key("sk-sim")
                .build()?,
        )
        .provider(
            OpenAi::builder()
                .name("fallback")
                .base_url(sim.openai_base_url("fallback"))
                .api_key("sk-sim")
                .build()?,
        )
        .retry_backoff(std::time::Duration::from_millis(10))
        .build()?;
    for i in 0..6 {
        let res = router
            .generate(GenerateRequest::new(format!("image {i}")).quality(Quality::Low))
            .await?;
        println!("request {i}: served by {}", res.provider);
    }
    println!("\n{}", handle.render());
    Ok(())
}
