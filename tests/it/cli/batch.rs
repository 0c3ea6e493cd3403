//! `image-router batch` against a wiremock provider: resuming follows the manifest of what
//! was saved (not names guessed from the request), and every line problem that can be found
//! before sending is found before sending (nothing billed for it).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::wire;

const MANIFEST: &str = ".image-router-batch.jsonl";

async fn cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = assert_cmd::Command::cargo_bin("image-router").unwrap();
        cmd.env_remove("IMAGE_ROUTER_CONFIG")
            .env("IR_K", "test-key")
            .timeout(Duration::from_secs(60));
        cmd.args(args).output().unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A provider that answers PNG whatever was asked, and two images for the prompt "two" (which
/// the test asks with `n = 3`: fewer images than asked, as a provider may answer).
async fn server() -> MockServer {
    let server = MockServer::start().await;
    let mut two = wire::ok_body();
    two["data"] = json!([
        {"b64_json": wire::b64(&wire::png_bytes())},
        {"b64_json": wire::b64(&wire::png_bytes())}
    ]);
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_partial_json(json!({"prompt": "two"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(two))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(wire::ok())
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

fn config(dir: &Path, server: &MockServer) -> PathBuf {
    let p = dir.join("r.toml");
    let text = format!(
        "[router]\ntimeout = \"20s\"\n[[provider]]\nname = \"mock\"\nkind = \"openai\"\n\
         base_url = \"{}/v1\"\napi_key_env = \"IR_K\"\n",
        server.uri()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn batch(cfg: &Path, prompts: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["batch", "--json", "-c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(cfg.display().to_string());
    a.extend(["--prompts".to_string(), prompts.display().to_string()]);
    a.extend(["--out-dir".to_string(), out.display().to_string()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

async fn sent(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_follows_what_was_saved_not_what_was_asked() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server);
    let prompts = dir.path().join("p.txt");
    std::fs::write(
        &prompts,
        "a jpeg fox\n{\"prompt\": \"two\", \"name\": \"pair\", \"n\": 3}\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = cli(batch(&cfg, &prompts, &out, &["--output-format", "jpeg"])).await;
    assert!(o.status.success(), "{}", text(&o));
    // PNG came back for a JPEG request, and two images for n = 3: named by what came back.
    // (Images beyond `n` are dropped by the providers, so "more than asked" cannot happen.)
    assert!(out.join("0001.png").is_file());
    assert!(out.join("pair-1.png").is_file() && out.join("pair-2.png").is_file());
    let records: Vec<Value> = std::fs::read_to_string(out.join(MANIFEST))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    let pair = records.iter().find(|r| r["id"] == "pair").unwrap();
    assert_eq!(pair["files"], json!(["pair-1.png", "pair-2.png"]));
    assert_eq!(pair["provider"], "mock");
    assert!(pair["cost_usd"].as_f64().unwrap() > 0.0, "{pair}");
    let before = sent(&server).await;
    assert_eq!(before, 2);

    // The re-run sends nothing: both prompts are recorded and their files are there.
    let o = cli(batch(&cfg, &prompts, &out, &["--output-format", "jpeg"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let summary = json_lines(&o).last().unwrap()["summary"].clone();
    assert_eq!(summary["skipped"], 2, "{summary}");
    assert_eq!(summary["generated"], 0, "{summary}");
    assert_eq!(
        sent(&server).await,
        before,
        "nothing generated (or billed) twice"
    );

    // A recorded prompt whose file was deleted runs again; a changed prompt runs again.
    std::fs::remove_file(out.join("pair-2.png")).unwrap();
    std::fs::write(
        &prompts,
        "a jpeg fox, bigger\n{\"prompt\": \"two\", \"name\": \"pair\", \"n\": 3}\n",
    )
    .unwrap();
    let o = cli(batch(&cfg, &prompts, &out, &["--output-format", "jpeg"])).await;
    assert!(o.status.success(), "{}", text(&o));
    let summary = json_lines(&o).last().unwrap()["summary"].clone();
    assert_eq!(summary["generated"], 2, "{summary}");
    assert_eq!(sent(&server).await, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn line_problems_are_found_before_sending() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server);
    let prompts = dir.path().join("p.txt");
    let long = "n".repeat(300);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"prompt\": \"a\", \"name\": \"cat\", \"n\": 2}\n"); // line 1
    bytes.extend_from_slice(b"{\"prompt\": \"b\", \"name\": \"cat-1\"}\n"); // line 2: collides
    bytes.extend_from_slice(b"not \xff utf-8\n"); // line 3
    bytes.extend_from_slice(b"{\"prompt\": \"c\", \"name\": \"a\\u0000b\"}\n"); // line 4: NUL
    bytes.extend_from_slice(format!("{{\"prompt\": \"d\", \"name\": \"{long}\"}}\n").as_bytes()); // 5
    bytes.extend_from_slice(b"a plain prompt\n"); // line 6
    std::fs::write(&prompts, bytes).unwrap();
    let out = dir.path().join("out");
    let o = cli(batch(&cfg, &prompts, &out, &[])).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let lines = json_lines(&o);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["total"], 6, "{summary}");
    assert_eq!(summary["generated"], 2, "{summary}");
    assert_eq!(summary["failed"], 4, "{summary}");
    let failed: Vec<u64> = lines
        .iter()
        .filter(|l| l["status"] == "failed")
        .map(|l| l["line"].as_u64().unwrap())
        .collect();
    assert_eq!(failed, vec![2, 3, 4, 5], "{lines:?}");
    for l in lines.iter().filter(|l| l["status"] == "failed") {
        assert_eq!(l["error"]["kind"], "invalid_prompt", "{l}");
    }
    assert_eq!(sent(&server).await, 2, "only the two good lines were sent");
    assert!(
        out.join("0006.png").is_file(),
        "the line after the bad ones keeps its number"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_request_from_flags_is_a_usage_error() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &server);
    let prompts = dir.path().join("p.txt");
    std::fs::write(&prompts, "a fox\n").unwrap();
    let bad = ["--background", "transparent", "--output-format", "jpeg"];
    let o = cli(batch(&cfg, &prompts, &dir.path().join("out"), &bad)).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("background"), "{}", text(&o));
    let mut a: Vec<String> = ["generate", "-c"].iter().map(|s| s.to_string()).collect();
    a.push(cfg.display().to_string());
    a.extend(["-p", "a fox", "--out"].iter().map(|s| s.to_string()));
    a.push(dir.path().join("x.png").display().to_string());
    a.extend(bad.iter().map(|s| s.to_string()));
    let o = cli(a).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(sent(&server).await, 0);
}
