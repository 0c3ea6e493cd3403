//! A connection that is never accepted: the client's connect timeout fires, and the error
//! says the request never left (`Timeout { sent: false }`), so nothing can have been billed.
//!
//! The unanswered address is a real listener whose accept queue is full: Linux then drops
//! further SYNs (with the default `tcp_abort_on_overflow = 0`), so the connect hangs until the
//! client gives up, which is exactly a provider whose host does not answer.

use std::time::Duration;

use image_router::providers::OpenAi;
use image_router::{CallContext, ErrorKind, GenerateRequest, Provider};

#[tokio::test]
async fn connect_timeout_is_a_timeout_that_was_never_sent() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fill the accept queue (never accepted); later connects hang. The fillers themselves
    // may hang too, so each is bounded.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let probe = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(addr),
    )
    .await;
    if probe.is_ok() {
        // This kernel answers even a full queue (or resets): the scenario cannot be built
        // here, and the other transport tests cover refused connections.
        eprintln!("accept queue overflow does not drop SYNs here; skipping");
        return;
    }

    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let provider = OpenAi::builder()
        .name("unanswered")
        .base_url(format!("http://{addr}/v1"))
        .api_key(format!("sk-{}", "c".repeat(8)))
        .client(client)
        .build()
        .unwrap();
    let err = provider
        .generate(
            &GenerateRequest::new("a lighthouse").model("gpt-image-1"),
            &CallContext::new(Duration::from_secs(10)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout { sent: false }, "{err:?}");

    // The call's own timeout running out while still connecting: a timeout, reported as
    // possibly sent, because the call's timer does not say which phase it hit and
    // "maybe billed" is the safe assumption. (The router handles both alike.)
    let provider = OpenAi::builder()
        .name("unanswered")
        .base_url(format!("http://{addr}/v1"))
        .api_key(format!("sk-{}", "c".repeat(8)))
        .client(reqwest::Client::new())
        .build()
        .unwrap();
    let err = provider
        .generate(
            &GenerateRequest::new("a lighthouse").model("gpt-image-1"),
            &CallContext::new(Duration::from_millis(400)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout { sent: true }, "{err:?}");
    drop(fillers);
    drop(listener);
}
