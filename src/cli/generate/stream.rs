//! `image-router generate --stream` and `edit --stream`: the request as a stream of partial
//! images (`Router::send_stream`, as `generate_stream` / `edit_stream`). Each partial is written next to the output as
//! `NAME.partial-0.png`, `NAME.partial-1.png`, … as it arrives, with a progress line on
//! stderr; the final image is saved as without `--stream`. With `--json`, stdout has one JSON
//! line per event (`serving`, `partial`, `restarted`, then `completed` or `error`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use futures_util::StreamExt;
use image_router::{Image, ImageRequest, StreamEvent, StreamOptions};
use serde_json::json;

use super::super::output::print_json;
use super::super::{Common, EXIT_FAILED};
use super::{failed, prepare, resolve_out, saved};

/// `--stream` and its options.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Stream partial images while the image is generated (GPT image models): each is
    /// written next to the output as NAME.partial-0.png, NAME.partial-1.png, ...
    #[arg(long)]
    pub stream: bool,
    /// Partial images to ask for with --stream, 0-3.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3), requires = "stream")]
    pub partial_images: u8,
    /// With --stream: after partials were shown, a failing provider restarts the image on
    /// another one (the partials written so far are then stale).
    #[arg(long, requires = "stream")]
    pub restart_elsewhere: bool,
    /// With --stream: providers that cannot stream may serve the final image alone.
    #[arg(long, requires = "stream")]
    pub allow_non_streaming: bool,
}

/// The path of partial `index` for `out`: `NAME.partial-{index}.{ext}` beside it.
pub fn partial_path(out: &Path, index: u32, img: &Image) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    out.with_file_name(format!("{stem}.partial-{index}.{}", img.format.extension()))
}

/// Streams `req` and writes what arrives (see the module docs).
pub async fn execute(
    common: &Common,
    out: &Path,
    class: Option<String>,
    req: ImageRequest,
    args: &StreamArgs,
) -> ExitCode {
    let json = common.json;
    let (router, catalog, req) = match prepare(common, req) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let model = req.model().unwrap_or_default().to_string();
    let class = class.map(image_router::RequestClass::from);
    let options = StreamOptions::new()
        .partial_images(args.partial_images)
        .restart_elsewhere(args.restart_elsewhere)
        .allow_non_streaming(args.allow_non_streaming);
    let target = resolve_out(out);
    let quiet = super::super::quiet();
    let mut events = router.send_stream(req.clone(), options, class.as_ref());
    while let Some(item) = events.next().await {
        let event = match item {
            Ok(e) => e,
            Err(e) => return failed(json, &e, json.then_some("error")),
        };
        match event {
            StreamEvent::Serving {
                provider,
                model,
                streaming,
            } => {
                if json {
                    print_json(
                        &json!({"event": "serving", "provider": provider, "model": model, "streaming": streaming}),
                    );
                } else if !quiet {
                    let how = if streaming {
                        "streaming"
                    } else {
                        "final image only"
                    };
                    eprintln!("{provider} ({model}) is answering ({how})");
                }
            }
            StreamEvent::Partial { provider, partial } => {
                let path = partial_path(&target, partial.index, &partial.image);
                if let Err(e) = write(&path, &partial.image) {
                    let msg = format!("cannot write {}: {e}", path.display());
                    if json {
                        print_json(
                            &json!({"event": "error", "error": {"kind": "io", "message": msg}}),
                        );
                    } else {
                        eprintln!("error: {msg}");
                    }
                    return ExitCode::from(EXIT_FAILED);
                }
                if json {
                    print_json(
                        &json!({"event": "partial", "provider": provider, "index": partial.index, "path": path}),
                    );
                } else if !quiet {
                    eprintln!(
                        "partial image {} from {provider}: {}",
                        partial.index,
                        path.display()
                    );
                }
            }
            StreamEvent::Restarted {
                provider,
                discarded,
                error,
            } => {
                let message = super::super::redact::text(&error.to_string());
                if json {
                    print_json(
                        &json!({"event": "restarted", "provider": provider, "discarded": discarded, "message": message}),
                    );
                } else if !quiet {
                    eprintln!("{provider} failed after {discarded} partial image(s) ({message}); restarting elsewhere: discard those partials");
                }
            }
            StreamEvent::Completed(res) => {
                return saved(
                    json,
                    out,
                    &catalog,
                    &model,
                    &req,
                    *res,
                    json.then_some("completed"),
                );
            }
            // Events added later are not shown.
            _ => {}
        }
    }
    // The router always ends with `completed` or an error; a stream ending otherwise is a
    // failure, never a success.
    if json {
        print_json(
            &json!({"event": "error", "error": {"kind": "internal", "message": "the stream ended without a final image"}}),
        );
    } else {
        eprintln!("error: the stream ended without a final image");
    }
    ExitCode::from(EXIT_FAILED)
}

/// Writes one partial image (temporary file, then rename: a viewer never sees half a file).
fn write(path: &Path, img: &Image) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, &img.bytes)?;
    std::fs::rename(&tmp, path)
}
