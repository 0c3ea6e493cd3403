//! `image-router generate`: one prompt, images written to files; and [`send`], the request
//! path `generate` and `edit` share (configuration, router, default model, sending plain or
//! with `--stream`, file naming, `--json`, exit codes), so the two commands cannot drift apart.

mod stream;

pub use stream::StreamArgs;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use image_router::catalog::Catalog;
use image_router::{GenerateRequest, Image, ImageRequest, ImageResponse, Router};
use serde_json::json;

use super::output::{self, print_json};
use super::{Common, RequestOpts, EXIT_FAILED};

pub const AFTER_HELP: &str = "\
Examples:
  image-router generate --prompt \"a watercolor fox\" --out fox.png     # keys from OPENAI_API_KEY
  echo \"a long prompt\" | image-router generate --prompt - --out fox.png
  image-router generate -c router.toml --prompt \"a lighthouse at dusk\" --out lighthouse.png
  image-router generate -c router.toml --prompt \"three foxes\" -n 3 --size 1536x1024 --quality low --out foxes.png
      (writes foxes-1.png, foxes-2.png, foxes-3.png)
  image-router generate -c router.toml --prompt \"a logo\" --background transparent --json
  image-router generate -c router.toml --prompt \"a watercolor fox\" --out fox.png --stream
      (writes fox.partial-0.png, fox.partial-1.png as they arrive, then fox.png)

With --json, stdout is one object:
  {\"provider\", \"model\", \"images\": [paths], \"usage\", \"cost_usd\", \"attempts\": [{\"provider\", \"outcome\", \"status\", \"ms\", ...}]}
or on failure {\"error\": {\"kind\", \"message\", \"explanation\": {\"cause\", \"action\"}, \"provider\", \"status\",
\"code\", \"reason\"}, \"attempts\"} with exit code 1 (2 for a configuration problem or options that make
an invalid request, e.g. --background transparent with --output-format jpeg).
With --stream --json, stdout has one JSON line per event: {\"event\": \"serving\" | \"partial\" |
\"restarted\", ...}, then the object above with \"event\": \"completed\" (or \"error\").";

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: Common,
    /// The prompt; `-` reads it from standard input.
    #[arg(long, short = 'p')]
    pub prompt: String,
    #[command(flatten)]
    pub opts: RequestOpts,
    #[command(flatten)]
    pub out: OutArg,
    #[command(flatten)]
    pub stream: stream::StreamArgs,
}

/// Where the images go (`generate` and `edit`).
#[derive(Debug, Args)]
pub struct OutArg {
    /// Output file; numbered (NAME-1.png, NAME-2.png, ...) when several images come back.
    /// The extension follows the image's format (when the path has none, or names another
    /// image format); a folder (existing, or ending in `/`) gets FOLDER/image.png.
    #[arg(long, short = 'o', default_value = "image.png", value_name = "PATH")]
    pub out: PathBuf,
}

/// Builds the request from the options.
pub fn request(prompt: &str, o: &RequestOpts) -> GenerateRequest {
    let mut r = GenerateRequest::new(prompt);
    r.model = o.model.clone();
    r.size = o.size;
    r.quality = o.quality;
    r.n = o.n;
    r.output_format = o.output_format;
    r.background = o.background;
    if o.no_cache {
        r.cache = image_router::cache::CachePolicy::Bypass;
    }
    r
}

/// The path of image `i` of `count` for `out`: `out` itself for one image, `stem-{i+1}.ext`
/// for several. A path without extension gets the image's format's.
pub fn numbered(out: &Path, i: usize, count: usize, img: &Image) -> PathBuf {
    let fmt = img.format.extension();
    let ext = match out.extension().map(|e| e.to_string_lossy().into_owned()) {
        // `--out fox.png --output-format jpeg`: name the file after what it holds, not
        // write JPEG bytes into a `.png` (the paths printed / in `--json` are the real ones).
        Some(e) if is_other_image_ext(&e, fmt) => fmt.to_string(),
        Some(e) => e,
        None => fmt.to_string(),
    };
    if count <= 1 {
        return out.with_extension(ext);
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    out.with_file_name(format!("{stem}-{}.{ext}", i + 1))
}

fn is_other_image_ext(ext: &str, fmt: &str) -> bool {
    let e = ext.to_ascii_lowercase();
    let e = if e == "jpeg" { "jpg" } else { e.as_str() };
    matches!(e, "png" | "jpg" | "webp") && e != fmt
}

/// `--out` naming a folder (an existing one, or a path ending in `/`) means `FOLDER/image`.
pub(super) fn resolve_out(out: &Path) -> PathBuf {
    let s = out.as_os_str().to_string_lossy();
    if out.is_dir() || s.ends_with('/') || s.ends_with(std::path::MAIN_SEPARATOR) {
        out.join("image")
    } else {
        out.to_path_buf()
    }
}

/// Writes the images atomically (temporary file, then rename) so an interrupted run never
/// leaves a truncated image that a resumed batch would take as done.
pub fn write_images(out: &Path, images: &[Image]) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(images.len());
    for (i, img) in images.iter().enumerate() {
        let path = numbered(out, i, images.len(), img);
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let tmp = path.with_extension(format!(
            "{}.part",
            path.extension()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        std::fs::write(&tmp, &img.bytes)?;
        std::fs::rename(&tmp, &path)?;
        paths.push(path);
    }
    Ok(paths)
}

pub async fn run(a: GenerateArgs) -> ExitCode {
    let prompt = match super::read_prompt(&a.prompt, a.common.json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let req = request(&prompt, &a.opts);
    send(
        &a.common,
        &a.out.out,
        a.opts.class.clone(),
        req.into(),
        &a.stream,
    )
    .await
}

/// Sends one request, streamed when `--stream` was given ([`stream::execute`]: partials
/// written next to the output, progress, one JSON line per event), else whole ([`execute`]):
/// the one entry `generate` and `edit` both call.
pub async fn send(
    common: &Common,
    out: &Path,
    class: Option<String>,
    req: ImageRequest,
    streaming: &StreamArgs,
) -> ExitCode {
    if streaming.stream {
        return stream::execute(common, out, class, req, streaming).await;
    }
    execute(common, out, class, req).await
}

/// The router built from the configuration, the catalog and the request with its model set
/// (the config's `default_model`, else the catalog's): what `execute` and the streamed path
/// share. `Err` is the exit code after the configuration error was reported.
pub(super) fn prepare(
    common: &Common,
    mut req: ImageRequest,
) -> Result<(Router, std::sync::Arc<Catalog>, ImageRequest), ExitCode> {
    let json = common.json;
    let cfg = super::load_config(common)?;
    let catalog = cfg.catalog().map_err(|e| super::config_failure(&e, json))?;
    let router: Router = cfg.build().map_err(|e| super::config_failure(&e, json))?;
    if req.model().is_none() {
        req.set_model(
            cfg.router
                .default_model
                .clone()
                .unwrap_or_else(|| catalog.default_model().to_string()),
        );
    }
    Ok((router, catalog, req))
}

/// Sends one request through the router built from the configuration and writes its images
/// under `out`: the path `generate` and `edit` share. The model defaults to the config's
/// `default_model`, else the catalog's.
pub async fn execute(
    common: &Common,
    out: &Path,
    class: Option<String>,
    req: ImageRequest,
) -> ExitCode {
    let json = common.json;
    let (router, catalog, req) = match prepare(common, req) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let model = req.model().unwrap_or_default().to_string();
    let class = class.map(image_router::RequestClass::from);
    match router.send_as(req.clone(), class.as_ref()).await {
        Ok(res) => saved(json, out, &catalog, &model, &req, res, None),
        Err(e) => failed(json, &e, None),
    }
}

/// Writes the images and reports them (exit 0), or the write failure (exit 1).
pub(super) fn saved(
    json: bool,
    out: &Path,
    catalog: &Catalog,
    model: &str,
    req: &ImageRequest,
    res: ImageResponse,
    event: Option<&'static str>,
) -> ExitCode {
    let paths = match write_images(&resolve_out(out), &res.images) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("cannot write {}: {e}", out.display());
            if json {
                print_json(&json!({
                    "provider": res.provider,
                    "error": {"kind": "io", "message": msg,
                              "explanation": {"cause": msg, "action": "Check that the output folder exists and is writable, and that the disk has room."}},
                    "attempts": output::attempts_json(&res.attempts),
                }));
            } else {
                eprintln!("error: {msg}");
            }
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // The model that served it: another one when the router fell back or previewed.
    let model = if res.model.is_empty() {
        model
    } else {
        res.model.as_str()
    };
    // The router's own figure (from usage and the catalog), else an estimate.
    let cost = res
        .cost_usd
        .or_else(|| output::cost_usd(catalog, model, res.usage.as_ref(), req, res.images.len()));
    if json {
        let mut v = json!({
            "provider": res.provider,
            "model": model,
            "images": paths,
            "usage": res.usage,
            "cost_usd": cost,
            "request_id": res.request_id,
            "attempts": output::attempts_json(&res.attempts),
            "skipped": output::skipped_json(&res.skipped),
        });
        // Only when they happened: preview mode's and a fallback model's changes.
        if let Some(o) = v.as_object_mut() {
            if let Some(p) = &res.preview {
                o.insert("preview".into(), json!(p));
            }
            if let Some(f) = &res.fallback {
                o.insert("fallback".into(), json!(f));
            }
        }
        if let Some(event) = event {
            // A streamed run's last line (`--stream --json`).
            v["event"] = json!(event);
        }
        print_json(&v);
    } else {
        for p in &paths {
            println!("{}", p.display());
        }
        if super::quiet() {
            return ExitCode::SUCCESS;
        }
        let cost = cost.map(|c| format!(", about ${c:.4}")).unwrap_or_default();
        eprintln!(
            "{} image(s) from {} ({model}) after {} attempt(s){cost}",
            paths.len(),
            res.provider,
            res.attempts.len()
        );
        if let Some(p) = res.preview.as_ref().filter(|p| !p.changes.is_empty()) {
            eprintln!("preview: {}", image_router::describe_changes(&p.changes));
        }
        if let Some(f) = &res.fallback {
            eprintln!(
                "fallback: {} could not be served; {}",
                f.requested_model,
                image_router::describe_changes(&f.changes)
            );
        }
        if res.attempts.len() > 1 || !res.skipped.is_empty() {
            output::print_attempts(&res.attempts, &res.skipped);
        }
    }
    ExitCode::SUCCESS
}

/// Reports a failed request: exit 2 for a configuration problem or an invalid request built
/// from the flags (a usage error, as a bad flag is), 1 otherwise.
pub(super) fn failed(json: bool, e: &image_router::Error, event: Option<&'static str>) -> ExitCode {
    if json {
        let mut v = json!({
            "error": output::error_json(e),
            "attempts": output::attempts_json(e.attempts()),
            "skipped": output::skipped_json(e.skipped()),
        });
        if let Some(event) = event {
            v["event"] = json!(event);
        }
        print_json(&v);
    } else {
        eprintln!("error: {}", super::redact::text(&e.to_string()));
        eprintln!("{}", super::redact::text(&e.explain().to_string()));
        output::print_attempts(e.attempts(), e.skipped());
    }
    // An invalid request was built from the flags: a usage error, as a bad flag is.
    let usage = e.is_config() || matches!(e, image_router::Error::Invalid(_));
    ExitCode::from(if usage {
        super::EXIT_CONFIG
    } else {
        EXIT_FAILED
    })
}
