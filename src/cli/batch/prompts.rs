//! The prompts file of `batch`: one prompt per line, or one JSON object per line.
//!
//! Every problem a line can have is found here, before anything is sent (so before anything
//! is billed): bad JSON, a misspelt field, an empty prompt, bytes that are not UTF-8, an
//! output name that cannot be a file name, or one whose files would collide with another
//! prompt's. Such a line fails alone; the others still run.
//!
//! A JSON line may name input images, which makes it an edit instead of a generation:
//! `{"prompt": "add a hat", "images": ["cat.png"], "mask": "mask.png", "input_fidelity":
//! "high"}` (paths relative to the prompts file's folder). Plain-text lines and JSON lines
//! without `images` are generations, as before. An edit line may not carry the fields only
//! generations have (`moderation`, `style`, `response_format`), nor `mask` or
//! `input_fidelity` without `images`.

use std::collections::HashSet;
use std::path::PathBuf;

use image_router::{GenerateRequest, InputFidelity, MAX_EDIT_IMAGES};
use serde::Deserialize;

use super::super::generate::request;
use super::super::RequestOpts;

/// Longest output name, in bytes: file systems allow 255, and the writer adds `-NN.jpeg`
/// and a `.part` suffix while writing.
pub const MAX_NAME_BYTES: usize = 200;

#[derive(Debug, Deserialize)]
struct JsonLine {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    images: Option<Vec<PathBuf>>,
    #[serde(default)]
    mask: Option<PathBuf>,
    #[serde(default)]
    input_fidelity: Option<InputFidelity>,
    #[serde(flatten)]
    request: GenerateRequest,
}

/// The fields of a JSON line besides the request's own.
const EXTRA_FIELDS: &[&str] = &["name", "class", "images", "mask", "input_fidelity"];

/// The input files of an edit line, as the line spells them (relative paths are resolved
/// against the prompts file's folder by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct EditInputs {
    /// The images to edit (1 to 16).
    pub images: Vec<PathBuf>,
    /// The mask.
    pub mask: Option<PathBuf>,
    /// `input_fidelity`.
    pub input_fidelity: Option<InputFidelity>,
}

/// One prompt to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Position among the prompt lines (1-based; comments and blank lines do not count).
    pub index: usize,
    /// Line in the file.
    pub line: usize,
    /// The output files' stem, unique in the batch; also the prompt's id in the manifest.
    pub stem: String,
    /// Request class.
    pub class: Option<String>,
    /// The request (for an edit: its prompt and options; the inputs are in `edit`).
    pub request: GenerateRequest,
    /// The input images when the line is an edit.
    pub edit: Option<EditInputs>,
}

/// A line of the prompts file that cannot run. It is reported as a failed prompt; the other
/// lines still run.
#[derive(Debug, Clone)]
pub struct BadLine {
    pub index: usize,
    pub line: usize,
    pub text: String,
    pub message: String,
}

/// Output names taken so far. A stem `s` owns `s.EXT` and `s-K.EXT` (several images, however
/// many come back), so `cat` and `cat-1` collide whatever `n` is.
#[derive(Default)]
struct Names {
    stems: HashSet<String>,
    /// Stems of the form `BASE-K`, by `BASE`.
    numbered_bases: HashSet<String>,
}

impl Names {
    fn claim(&mut self, stem: &str) -> Result<(), String> {
        if self.stems.contains(stem) {
            return Err(format!("output name {stem:?} is used twice"));
        }
        let base = numbered_base(stem);
        if let Some(b) = base.filter(|b| self.stems.contains(*b)) {
            return Err(format!(
                "output name {stem:?} collides with the numbered files of {b:?} \
                 ({b}-1, {b}-2, … when several images come back); choose another name"
            ));
        }
        if self.numbered_bases.contains(stem) {
            return Err(format!(
                "output name {stem:?} would number its images {stem}-1, {stem}-2, …, which \
                 another prompt's name already uses; choose another name"
            ));
        }
        self.stems.insert(stem.to_string());
        if let Some(b) = base {
            self.numbered_bases.insert(b.to_string());
        }
        Ok(())
    }
}

/// `cat` for `cat-12`; `None` when the stem does not end in `-DIGITS`.
fn numbered_base(stem: &str) -> Option<&str> {
    let (base, k) = stem.rsplit_once('-')?;
    (!base.is_empty() && !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// Whether `name` can be a file name on every common file system.
fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.contains(['/', '\\']) || n.starts_with('.') {
        return Err(format!("\"name\" must be a plain file name, got {n:?}"));
    }
    if n.chars().any(|c| c.is_control()) {
        return Err(format!(
            "\"name\" {n:?} contains a control character (NUL, newline, …): no file can have it"
        ));
    }
    if n.len() > MAX_NAME_BYTES {
        return Err(format!(
            "\"name\" is {} bytes long; at most {MAX_NAME_BYTES} fit a file name",
            n.len()
        ));
    }
    Ok(())
}

/// Parses the prompts file. Every non-empty, non-comment line gets the next index (so fixing
/// a bad line later does not renumber the outputs of the others) and becomes a job or a bad
/// line: one bad line never stops the batch, not even one that is not UTF-8.
pub fn parse_prompts(bytes: &[u8], defaults: &RequestOpts) -> Vec<Result<Job, BadLine>> {
    let mut out = Vec::new();
    let mut names = Names::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let (t, utf8) = match std::str::from_utf8(raw) {
            Ok(s) => (s.trim().to_string(), true),
            Err(_) => (String::from_utf8_lossy(raw).trim().to_string(), false),
        };
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let index = out.len() + 1;
        let bad = |message: String| BadLine {
            index,
            line,
            text: t.clone(),
            message: format!("line {line}: {message}"),
        };
        let job = if utf8 {
            parse_line(&t, index, line, defaults, &mut names)
        } else {
            // The line's number is still taken, so the others keep their output names.
            let _ = names.claim(&format!("{index:04}"));
            Err("not UTF-8 text; save the prompts file as UTF-8".to_string())
        };
        out.push(job.map_err(bad));
    }
    out
}

/// Refuses a JSON line with a field the request does not have (`"qualty": "high"` would
/// otherwise be dropped silently and a different, billed, image generated). The known fields
/// are the ones the parsed request serializes back, plus `name` and `class`.
fn check_known_fields(t: &str, j: &JsonLine) -> Result<(), String> {
    let input: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(t).map_err(|e| format!("not a valid JSON prompt: {e}"))?;
    let known = match serde_json::to_value(&j.request) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => return Ok(()),
    };
    let unknown: Vec<&str> = input
        .iter()
        .filter(|(k, v)| {
            !v.is_null() && !EXTRA_FIELDS.contains(&k.as_str()) && !known.contains_key(*k)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown field(s) {unknown:?}; a JSON prompt takes the request fields (prompt, \
             model, n, size, quality, background, output_format, output_compression, \
             moderation, user, style) plus \"name\", \"class\", and for an edit \
             \"images\", \"mask\" and \"input_fidelity\""
        ))
    }
}

fn parse_line(
    t: &str,
    index: usize,
    line: usize,
    defaults: &RequestOpts,
    names: &mut Names,
) -> Result<Job, String> {
    let default_req = request("", defaults);
    let (name, class, req, edit) = if t.starts_with('{') {
        let j: JsonLine =
            serde_json::from_str(t).map_err(|e| format!("not a valid JSON prompt: {e}"))?;
        check_known_fields(t, &j)?;
        let edit = edit_inputs(&j)?;
        let mut r = j.request;
        r.model = r.model.or(default_req.model);
        r.size = r.size.or(default_req.size);
        r.quality = r.quality.or(default_req.quality);
        r.n = r.n.or(default_req.n);
        r.output_format = r.output_format.or(default_req.output_format);
        r.background = r.background.or(default_req.background);
        r.cache = default_req.cache;
        (j.name, j.class.or(defaults.class.clone()), r, edit)
    } else {
        let mut r = default_req;
        r.prompt = t.to_string();
        (None, defaults.class.clone(), r, None)
    };
    let stem = match name {
        Some(n) => {
            check_name(&n)?;
            n
        }
        None => format!("{index:04}"),
    };
    // The name is claimed before the prompt is checked, so a line fixed later keeps it.
    names.claim(&stem)?;
    if req.prompt.trim().is_empty() {
        return Err("empty prompt".to_string());
    }
    Ok(Job {
        index,
        line,
        stem,
        class,
        request: req,
        edit,
    })
}

/// The edit part of a JSON line, if it names images; the fields an edit cannot carry, or
/// edit fields without images, are refused with the field's name.
fn edit_inputs(j: &JsonLine) -> Result<Option<EditInputs>, String> {
    let Some(images) = &j.images else {
        for (field, present) in [
            ("mask", j.mask.is_some()),
            ("input_fidelity", j.input_fidelity.is_some()),
        ] {
            if present {
                return Err(format!(
                    "\"{field}\" applies to edits only: add \"images\": [\"FILE\", ...]"
                ));
            }
        }
        return Ok(None);
    };
    if images.is_empty() || images.len() > MAX_EDIT_IMAGES {
        return Err(format!(
            "\"images\" must list 1 to {MAX_EDIT_IMAGES} files, got {}",
            images.len()
        ));
    }
    if let Some(p) = images
        .iter()
        .chain(j.mask.iter())
        .find(|p| p.as_os_str().is_empty())
    {
        return Err(format!("an input file name is empty ({p:?})"));
    }
    let r = &j.request;
    for (field, present) in [
        ("moderation", r.moderation.is_some()),
        ("style", r.style.is_some()),
        ("response_format", r.response_format.is_some()),
    ] {
        if present {
            return Err(format!(
                "\"{field}\" applies to generations only, and this line is an edit (it has \"images\")"
            ));
        }
    }
    Ok(Some(EditInputs {
        images: images.clone(),
        mask: j.mask.clone(),
        input_fidelity: j.input_fidelity,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Result<Job, BadLine>> {
        parse_prompts(text.as_bytes(), &RequestOpts::default())
    }

    #[test]
    fn no_cache_reaches_every_line_and_is_off_by_default() {
        use image_router::cache::CachePolicy;
        let text = "a fox\n{\"prompt\": \"a cat\"}\n";
        let opts = RequestOpts {
            no_cache: true,
            ..RequestOpts::default()
        };
        let jobs: Vec<Job> = parse_prompts(text.as_bytes(), &opts)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(jobs.iter().all(|j| j.request.cache == CachePolicy::Bypass));
        let plain: Vec<Job> = parse(text).into_iter().map(Result::unwrap).collect();
        assert!(plain.iter().all(|j| j.request.cache == CachePolicy::Use));
        let edit = crate::cli::edit::edit_request("x", &opts, vec![], None);
        assert_eq!(edit.cache, CachePolicy::Bypass);
    }

    #[test]
    fn prompts_file_text_and_json_lines() {
        let text = "a fox\n\n# comment\n{\"prompt\": \"a cat\", \"n\": 2, \"name\": \"cat\", \"output_format\": \"jpeg\"}\n";
        let jobs: Vec<Job> = parse(text).into_iter().map(Result::unwrap).collect();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].stem, "0001");
        assert_eq!(jobs[0].line, 1);
        assert_eq!(jobs[1].line, 4);
        assert_eq!(jobs[1].stem, "cat");
        let bad = parse("{\"prompt\": 3}\nok\n");
        assert!(bad[0].as_ref().unwrap_err().message.contains("line 1"));
        assert_eq!(
            bad[1].as_ref().unwrap().stem,
            "0002",
            "a bad line keeps its number"
        );
        let typo = parse("{\"prompt\": \"x\", \"qualty\": \"high\"}");
        assert!(typo[0].as_ref().unwrap_err().message.contains("qualty"));
        let known = parse(
            "{\"prompt\": \"x\", \"quality\": \"high\", \"user\": null, \"class\": \"batch\"}",
        );
        assert!(known[0].is_ok(), "{known:?}");
        assert!(parse("{\"prompt\": \"x\", \"name\": \"../x\"}")[0].is_err());
    }

    #[test]
    fn json_lines_with_images_are_edits() {
        let r = parse(concat!(
            "{\"prompt\": \"add a hat\", \"images\": [\"cat.png\", \"dog.png\"], \"mask\": \"m.png\", \"input_fidelity\": \"high\"}\n",
            "plain prompt\n",
            "{\"prompt\": \"x\", \"mask\": \"m.png\"}\n",
            "{\"prompt\": \"x\", \"images\": []}\n",
            "{\"prompt\": \"x\", \"images\": [\"a.png\"], \"moderation\": \"low\"}\n",
            "{\"prompt\": \"x\", \"images\": [\"a.png\"], \"imgs\": 1}\n",
        ));
        let e = r[0].as_ref().unwrap().edit.clone().unwrap();
        assert_eq!(
            e.images,
            [PathBuf::from("cat.png"), PathBuf::from("dog.png")]
        );
        assert_eq!(e.mask, Some(PathBuf::from("m.png")));
        assert_eq!(e.input_fidelity, Some(InputFidelity::High));
        assert_eq!(r[0].as_ref().unwrap().request.prompt, "add a hat");
        assert!(r[1].as_ref().unwrap().edit.is_none());
        assert!(
            r[2].as_ref().unwrap_err().message.contains("\"mask\""),
            "{r:?}"
        );
        assert!(
            r[3].as_ref().unwrap_err().message.contains("1 to 16"),
            "{r:?}"
        );
        assert!(
            r[4].as_ref().unwrap_err().message.contains("moderation"),
            "{r:?}"
        );
        assert!(r[5].as_ref().unwrap_err().message.contains("imgs"), "{r:?}");
    }

    #[test]
    fn colliding_names_are_refused_in_either_order() {
        for text in [
            "{\"prompt\": \"a\", \"name\": \"cat\", \"n\": 2}\n{\"prompt\": \"b\", \"name\": \"cat-1\"}\n",
            "{\"prompt\": \"b\", \"name\": \"cat-1\"}\n{\"prompt\": \"a\", \"name\": \"cat\", \"n\": 2}\n",
        ] {
            let r = parse(text);
            assert!(r[0].is_ok(), "{r:?}");
            let e = r[1].as_ref().unwrap_err();
            assert!(e.message.contains("cat"), "{e:?}");
        }
        // `cat-x` is not a number: no collision.
        let r = parse(
            "{\"prompt\": \"a\", \"name\": \"cat\"}\n{\"prompt\": \"b\", \"name\": \"cat-x\"}\n",
        );
        assert!(r.iter().all(Result::is_ok), "{r:?}");
    }

    #[test]
    fn unwritable_names_and_non_utf8_lines_fail_alone() {
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        let r = parse(&format!(
            "{{\"prompt\": \"a\", \"name\": \"a\\u0000b\"}}\n{{\"prompt\": \"b\", \"name\": \"{long}\"}}\nfine\n"
        ));
        assert!(
            r[0].as_ref().unwrap_err().message.contains("control"),
            "{r:?}"
        );
        assert!(
            r[1].as_ref().unwrap_err().message.contains("bytes"),
            "{r:?}"
        );
        assert!(r[2].is_ok());
        let mut bytes = b"first\nbad \xff byte\nthird\n".to_vec();
        bytes.extend_from_slice(b"fourth\r\n");
        let r = parse_prompts(&bytes, &RequestOpts::default());
        assert_eq!(r.len(), 4);
        assert!(r[1].as_ref().unwrap_err().message.contains("UTF-8"));
        assert_eq!(r[2].as_ref().unwrap().stem, "0003");
        assert_eq!(r[3].as_ref().unwrap().request.prompt, "fourth");
    }
}
