//! Time: an answer that stops (before its head, or part-way through its body) ends the call
//! at the call's timeout, as a timeout that may have been billed, whichever status it had.
//! The send path bounds a call by one timer around it, which covers the connect, the send,
//! the wait for the head and every read of the body; these tests are the evidence that
//! nothing inside the call escapes it.

use super::*;

/// The call timeout of these tests: short, far below [`STALL_CAP`].
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// A head announcing `len` body bytes, followed by only the first few of them.
fn part_of_a_body(status: u16, len: usize) -> Reply {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(br#"{"created":1,"data":[{"b64_json":"aGk"#);
    Reply::Stall { head }
}

async fn generate_within_timeout(evil: &Hostile) -> image_router::ProviderError {
    let started = Instant::now();
    let err = openai(evil)
        .generate(&gen(), &CallContext::new(CALL_TIMEOUT))
        .await
        .unwrap_err();
    // Bounded: the server would hold the connection for STALL_CAP (30 s).
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    err
}

#[tokio::test]
async fn an_answer_without_a_head_times_out_as_possibly_billed() {
    let evil = Hostile::start(|_, _| Reply::Stall { head: Vec::new() }).await;
    let err = generate_within_timeout(&evil).await;
    assert_eq!(err.kind, ErrorKind::Timeout { sent: true }, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert_eq!(err.status, None, "{err}");
    assert_eq!(evil.requests().len(), 1);
}

#[tokio::test]
async fn a_success_body_that_stops_part_way_times_out_as_possibly_billed() {
    let evil = Hostile::start(|_, _| part_of_a_body(200, 4096)).await;
    let err = generate_within_timeout(&evil).await;
    assert_eq!(err.kind, ErrorKind::Timeout { sent: true }, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert_eq!(err.status, Some(200), "{err}");
}

#[tokio::test]
async fn an_error_body_that_stops_part_way_times_out_with_its_status() {
    let evil = Hostile::start(|_, _| part_of_a_body(500, 4096)).await;
    let err = generate_within_timeout(&evil).await;
    assert_eq!(err.kind, ErrorKind::Timeout { sent: true }, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert_eq!(err.status, Some(500), "{err}");
}

#[tokio::test]
async fn a_probe_answer_that_stops_part_way_times_out() {
    let evil = Hostile::start(|_, _| part_of_a_body(200, 4096)).await;
    let started = Instant::now();
    let err = openai(&evil)
        .probe("gpt-image-1", &CallContext::new(CALL_TIMEOUT))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert_eq!(err.kind, ErrorKind::Timeout { sent: true }, "{err}");
}
