//! `image-router generate --stream`: partial files next to the output, progress on stderr,
//! and one JSON line per event with `--json`.

use crate::support::cli::*;
use image_router::sim::{Fault, Times};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_stream_writes_partials_and_prints_one_json_line_per_event() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    let out = dir.path().join("fox.png");
    let o = cli(
        args(&[
            "generate",
            "--config",
            &cfg,
            "--prompt",
            "a watercolor fox",
            "--out",
            out.to_str().unwrap(),
            "--quality",
            "low",
            "--stream",
            "--json",
        ]),
        three_env(),
        None,
    )
    .await;
    assert_no_keys(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    let lines = json_lines(&o);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["serving", "partial", "partial", "completed"]);
    assert_eq!(lines[0]["provider"], "openai-direct");
    assert_eq!(lines[0]["streaming"], true);
    for (i, l) in lines[1..3].iter().enumerate() {
        assert_eq!(l["index"], i);
        let p = dir.path().join(format!("fox.partial-{i}.png"));
        assert_eq!(l["path"].as_str().unwrap(), p.to_str().unwrap());
        assert_png(&p);
    }
    let done = &lines[3];
    assert_eq!(done["images"][0].as_str().unwrap(), out.to_str().unwrap());
    assert!(done["cost_usd"].as_f64().unwrap() > 0.0);
    assert_png(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_stream_prints_progress_and_a_cut_stream_fails() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    let out = dir.path().join("cat.png");
    let run = |extra: &'static [&'static str]| {
        let mut a = args(&[
            "generate",
            "-c",
            &cfg,
            "-p",
            "a cat",
            "-o",
            out.to_str().unwrap(),
            "-q",
            "low",
            "--stream",
            "--partial-images",
            "1",
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        cli(a, three_env(), None)
    };
    let o = run(&[]).await;
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("partial image 0 from openai-direct"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(out.to_str().unwrap()));
    assert_png(&dir.path().join("cat.partial-0.png"));

    // Cut after the first partial: an error (exit 1) that says what was delivered.
    sim.fail("primary", Fault::StreamCut, Times::Once);
    let o = run(&["--json"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "error");
    let msg = last["error"]["message"].as_str().unwrap();
    assert!(msg.contains("after 1 partial image"), "{msg}");
    assert_no_keys(&text(&o));
}

/// A 16x16 RGBA PNG at `path` (an edit's input).
fn png_input(path: &std::path::Path) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 16, 16);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(&[200u8; 16 * 16 * 4]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_stream_writes_partials_prints_progress_and_one_json_line_per_event() {
    let sim = three_accounts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &three_config(&sim, ""));
    let cfg = cfg.to_str().unwrap().to_string();
    let input = dir.path().join("cat.png");
    png_input(&input);
    let out = dir.path().join("hat.png");
    let run = |extra: &'static [&'static str]| {
        let mut a = args(&[
            "edit",
            "-c",
            &cfg,
            "--image",
            input.to_str().unwrap(),
            "-p",
            "give the cat a red hat",
            "-o",
            out.to_str().unwrap(),
            "-q",
            "low",
            "--stream",
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        cli(a, three_env(), None)
    };

    // --json: one line per event, partials beside the output, the edit saved at the end.
    let o = run(&["--json"]).await;
    assert_no_keys(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    let lines = json_lines(&o);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["serving", "partial", "partial", "completed"]);
    assert_eq!(lines[0]["provider"], "openai-direct");
    assert_eq!(lines[0]["streaming"], true);
    for (i, l) in lines[1..3].iter().enumerate() {
        assert_eq!(l["index"], i);
        let p = dir.path().join(format!("hat.partial-{i}.png"));
        assert_eq!(l["path"].as_str().unwrap(), p.to_str().unwrap());
        assert_png(&p);
    }
    assert_eq!(
        lines[3]["images"][0].as_str().unwrap(),
        out.to_str().unwrap()
    );
    assert!(lines[3]["cost_usd"].as_f64().unwrap() > 0.0);
    assert_png(&out);
    // The simulator saw an edit, not a generation.
    assert!(sim
        .received("primary")
        .iter()
        .any(|r| r.path.ends_with("/images/edits")));

    // Text: a progress line per partial on stderr, the path on stdout.
    let o = run(&["--partial-images", "1"]).await;
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("openai-direct (gpt-image-1) is answering (streaming)"),
        "{err}"
    );
    assert!(err.contains("partial image 0 from openai-direct"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains(out.to_str().unwrap()));

    // Cut after the first partial: exit 1 with an error line that says what was delivered.
    sim.fail("primary", Fault::StreamCut, Times::Once);
    let o = run(&["--json", "--partial-images", "1"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "error");
    let msg = last["error"]["message"].as_str().unwrap();
    assert!(msg.contains("after 1 partial image"), "{msg}");
    assert_no_keys(&text(&o));
}
