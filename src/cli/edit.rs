//! `image-router edit`: one or more input images (and an optional mask) edited with a prompt
//! (`POST /images/edits`). The options, the output naming, `--json` and the exit codes are
//! `generate`'s: the request goes through [`generate::send`](super::generate::send), with
//! `--stream` too (partials next to the output as `NAME.partial-0.png`, …, a progress line
//! per event, one JSON line per event with `--json`).
//!
//! The files are checked here before anything is sent (they exist, at most
//! [`MAX_EDIT_IMAGES`] of them, each at most [`MAX_INPUT_IMAGE_BYTES`], checked from the file's
//! size before it is read); everything else (a mask that is not a PNG or not the first image's
//! size, an option the model does not take) is the router's own validation, reported as an
//! invalid request (exit 2) before any provider is called. Providers that cannot edit (a
//! chat-mode proxy, for one) are skipped without a call.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use image_router::{
    EditRequest, GenerateRequest, InputFidelity, InputImage, MAX_EDIT_IMAGES, MAX_INPUT_IMAGE_BYTES,
};

use super::generate::{request, send, OutArg, StreamArgs};
use super::{Common, RequestOpts};

pub const AFTER_HELP: &str = "\
Examples:
  image-router edit --image cat.png --prompt \"give the cat a red hat\" --out hat.png
  image-router edit --image room.png --mask window.png --prompt \"a window onto the sea\" --out sea.png
  image-router edit -c router.toml --image a.png --image b.png --prompt \"a gift basket with both\" -n 2 --json
  image-router edit --image cat.png --prompt \"give the cat a red hat\" --out hat.png --stream
      (writes hat.partial-0.png, hat.partial-1.png as they arrive, then hat.png)

Inputs are png, jpeg or webp files under 50 MB (up to 16 with --image repeated); the mask is a
PNG with an alpha channel, the size of the first image: its transparent areas are edited.
Output naming, --json and exit codes are generate's (exit 2 for an unreadable input, too
many inputs, or options that make an invalid edit). Providers that cannot edit (a proxy in
chat mode) are skipped without a call. With --stream --json, stdout has one JSON line per
event, as for generate: {\"event\": \"serving\" | \"partial\" | \"restarted\", ...}, then
\"completed\" (or \"error\").";

#[derive(Debug, Args)]
pub struct EditArgs {
    #[command(flatten)]
    pub common: Common,
    /// An image to edit (png, jpeg or webp); repeat for several (up to 16).
    #[arg(long = "image", short = 'i', value_name = "FILE", required = true)]
    pub images: Vec<PathBuf>,
    /// A mask: a PNG with an alpha channel, the size of the first image; its transparent
    /// areas are the ones edited.
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
    /// The prompt; `-` reads it from standard input.
    #[arg(long, short = 'p')]
    pub prompt: String,
    #[command(flatten)]
    pub opts: RequestOpts,
    /// How closely to keep the inputs' details (faces, logos): high or low.
    #[arg(long, value_parser = parse_fidelity)]
    pub input_fidelity: Option<InputFidelity>,
    #[command(flatten)]
    pub out: OutArg,
    #[command(flatten)]
    pub stream: StreamArgs,
}

fn parse_fidelity(s: &str) -> Result<InputFidelity, String> {
    s.parse::<InputFidelity>().map_err(|e| e.to_string())
}

/// Checks an input image or mask without reading it: it is a file of at most
/// [`MAX_INPUT_IMAGE_BYTES`]. The error is a sentence naming the file.
pub fn check_input(path: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > MAX_INPUT_IMAGE_BYTES as u64 {
        return Err(format!(
            "{} is {} bytes; an input image may have at most {MAX_INPUT_IMAGE_BYTES}",
            path.display(),
            meta.len()
        ));
    }
    Ok(())
}

/// Reads an input image or mask, refusing a file over [`MAX_INPUT_IMAGE_BYTES`] before
/// reading it. The error is a sentence naming the file.
pub fn read_input(path: &Path) -> Result<InputImage, String> {
    check_input(path)?;
    InputImage::from_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Reads the inputs of one edit: at most [`MAX_EDIT_IMAGES`] images and an optional mask.
pub fn read_inputs(
    images: &[PathBuf],
    mask: Option<&Path>,
) -> Result<(Vec<InputImage>, Option<InputImage>), String> {
    if images.is_empty() {
        return Err("an edit needs at least one input image".into());
    }
    if images.len() > MAX_EDIT_IMAGES {
        return Err(format!(
            "{} input images; an edit takes at most {MAX_EDIT_IMAGES}",
            images.len()
        ));
    }
    let imgs = images
        .iter()
        .map(|p| read_input(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mask = mask.map(read_input).transpose()?;
    Ok((imgs, mask))
}

/// The edit request the options describe: the generation the same options make, with the
/// inputs (one mapping of the options, `generate::request`, for both commands).
pub fn edit_request(
    prompt: &str,
    o: &RequestOpts,
    images: Vec<InputImage>,
    mask: Option<InputImage>,
) -> EditRequest {
    edit_from(&request(prompt, o), images, mask)
}

/// The edit with a generation's prompt and options (a batch line that names images).
pub fn edit_from(
    g: &GenerateRequest,
    images: Vec<InputImage>,
    mask: Option<InputImage>,
) -> EditRequest {
    let mut r = EditRequest::new(g.prompt.clone(), images);
    r.mask = mask;
    r.model = g.model.clone();
    r.n = g.n;
    r.size = g.size;
    r.quality = g.quality;
    r.background = g.background;
    r.output_format = g.output_format;
    r.output_compression = g.output_compression;
    r.user = g.user.clone();
    r.cache = g.cache;
    r
}

pub async fn run(a: EditArgs) -> ExitCode {
    let json = a.common.json;
    let prompt = match super::read_prompt(&a.prompt, json) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (images, mask) = match read_inputs(&a.images, a.mask.as_deref()) {
        Ok(x) => x,
        Err(msg) => return super::usage_error(json, &msg),
    };
    let mut req = edit_request(&prompt, &a.opts, images, mask);
    req.input_fidelity = a.input_fidelity;
    send(
        &a.common,
        &a.out.out,
        a.opts.class.clone(),
        req.into(),
        &a.stream,
    )
    .await
}
