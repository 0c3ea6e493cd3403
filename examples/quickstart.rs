//! Quickstart: route a few image requests across three providers and watch the failover.
//!
//! With no keys set it runs on the embedded simulator (real HTTP on 127.0.0.1): an OpenAI-style
//! primary on a tight tier limit, an Azure deployment, and an OpenAI-compatible proxy in chat
//! mode. With `OPENAI_API_KEY` set it uses the real providers instead (`OPENAI_BASE_URL`, as in
//! the official SDKs, points the OpenAI provider at another host; plus Azure with
//! `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY`, `AZURE_OPENAI_DEPLOYMENT`, and a proxy with
//! `PROXY_BASE_URL`, `PROXY_API_KEY`, optional `PROXY_MODE=chat`).
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::path::PathBuf;
use std::time::Duration;

use image_router::providers::{Azure, Compatible, CompatibleMode, OpenAi};
use image_router::sim::{ChatImageStyle, Fault, SimAccount, Simulator, Times};
use image_router::{
    Error, GenerateRequest, ImageResponse, OutputFormat, Quality, Router, RouterBuilder, Size,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from("quickstart-out");
    std::fs::create_dir_all(&out_dir)?;

    let (router, _sim) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) if !key.trim().is_empty() => (real_router(key)?, None),
        _ => {
            let (router, sim) = simulated_router().await?;
            (router, Some(sim))
        }
    };
    println!(
        "providers, in priority order: {}",
        router.provider_names().join(", ")
    );

    let requests = vec![
        GenerateRequest::new("a lighthouse at dusk, watercolor").quality(Quality::Low),
        GenerateRequest::new("a red fox in the snow").quality(Quality::Low),
        GenerateRequest::new("a paper boat on a pond").quality(Quality::Low),
        GenerateRequest::new("a city of glass at night")
            .quality(Quality::Low)
            .size(Size::LANDSCAPE),
        GenerateRequest::new("a sticker of a cat, transparent background")
            .quality(Quality::Low)
            .output_format(OutputFormat::Webp),
    ];

    let mut failures = 0;
    for (i, req) in requests.into_iter().enumerate() {
        println!("\nrequest {}: {:?}", i + 1, req.prompt);
        match router.generate(req).await {
            Ok(res) => {
                print_trace(&res.attempts, &res.skipped);
                let paths = res.save_all(&out_dir, &format!("image-{}", i + 1))?;
                print_served(&res, &paths);
            }
            Err(err) => {
                failures += 1;
                print_trace(err.attempts(), err.skipped());
                print_error(&err);
            }
        }
    }
    println!(
        "\nimages written to {}",
        std::fs::canonicalize(&out_dir).unwrap_or(out_dir).display()
    );
    if failures > 0 {
        println!("{failures} request(s) failed");
    }
    Ok(())
}

/// The simulator with three accounts, and a router over them.
async fn simulated_router() -> Result<(Router, Simulator), Box<dyn std::error::Error>> {
    let sim = Simulator::builder()
        // A tight tier: 2 requests per minute. The first answer's `x-ratelimit-*` headers tell
        // the router, which keeps 10 % in reserve and sends the overflow to the next provider
        // without spending a request on a 429. (The default scored strategy also tries the
        // still unmeasured proxy once, then keeps the faster provider.)
        .account("openai", SimAccount::new().rpm(2).api_key("sk-sim-openai"))
        .account(
            "azure",
            SimAccount::new()
                .api_key("azure-sim-key")
                .deployment("gpt-image-1", "gpt-image-1"),
        )
        .account(
            "proxy",
            SimAccount::new()
                .api_key("sk-sim-proxy")
                .chat_image(ChatImageStyle::MarkdownUrl),
        )
        .start()
        .await?;
    // Azure answers one 503 first: the router retries it once on the same provider.
    sim.fail("azure", Fault::Status(503), Times::Once);

    let router = Router::builder()
        .provider(
            OpenAi::builder()
                .name("openai-primary")
                .base_url(sim.openai_base_url("openai"))
                .api_key("sk-sim-openai")
                .build()?,
        )
        .provider(
            Azure::builder()
                .name("azure-east")
                .endpoint(sim.azure_endpoint("azure"))
                .api_key("azure-sim-key")
                .deployment("gpt-image-1", "gpt-image-1")
                .build()?,
        )
        .provider(
            Compatible::builder()
                .name("proxy-chat")
                .base_url(sim.openai_base_url("proxy"))
                .api_key("sk-sim-proxy")
                .mode(CompatibleMode::Chat)
                .build()?,
        )
        .retry_backoff(Duration::from_millis(50))
        .build()?;
    println!("running on the embedded simulator at {}", sim.url());
    Ok((router, sim))
}

/// Real providers from the environment.
fn real_router(openai_key: String) -> Result<Router, Box<dyn std::error::Error>> {
    let mut openai = OpenAi::builder().api_key(openai_key);
    // Like the official SDKs: `OPENAI_BASE_URL` points the OpenAI provider at another host
    // (a gateway, a mock server, the simulator).
    if let Ok(base_url) = std::env::var("OPENAI_BASE_URL") {
        if !base_url.trim().is_empty() {
            openai = openai.base_url(base_url.trim());
        }
    }
    let mut builder: RouterBuilder = Router::builder().provider(openai.build()?);
    if let (Ok(endpoint), Ok(key)) = (
        std::env::var("AZURE_OPENAI_ENDPOINT"),
        std::env::var("AZURE_OPENAI_API_KEY"),
    ) {
        let deployment =
            std::env::var("AZURE_OPENAI_DEPLOYMENT").unwrap_or_else(|_| "gpt-image-1".into());
        builder = builder.provider(
            Azure::builder()
                .endpoint(endpoint)
                .api_key(key)
                .deployment("gpt-image-1", deployment)
                .build()?,
        );
    }
    if let (Ok(base), Ok(key)) = (
        std::env::var("PROXY_BASE_URL"),
        std::env::var("PROXY_API_KEY"),
    ) {
        let mode = match std::env::var("PROXY_MODE").as_deref() {
            Ok("chat") => CompatibleMode::Chat,
            _ => CompatibleMode::Images,
        };
        builder = builder.provider(
            Compatible::builder()
                .base_url(base)
                .api_key(key)
                .mode(mode)
                .build()?,
        );
    }
    println!("using real providers");
    Ok(builder.build()?)
}

fn print_trace(attempts: &[image_router::Attempt], skipped: &[image_router::Skip]) {
    for s in skipped {
        println!("  skip     {s}");
    }
    for a in attempts {
        println!("  attempt  {a}");
    }
}

fn print_served(res: &ImageResponse, paths: &[PathBuf]) {
    let tokens = res
        .usage
        .map(|u| format!(", {} tokens", u.total_tokens))
        .unwrap_or_default();
    println!(
        "  served by {} ({}) in {} ms{tokens} -> {}",
        res.provider,
        res.model,
        res.elapsed.as_millis(),
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_error(err: &Error) {
    println!("  failed: {err}");
    // The same plain-words text `image-router doctor` prints.
    let why = err.explain();
    println!("  why: {}", why.cause);
    println!("  what to do: {}", why.action);
}
