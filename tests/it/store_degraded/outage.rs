//! A real server killed with SIGKILL and restarted: nothing panics, the instance count keeps
//! its last known value while the server is gone, and the instances announce themselves
//! again when it is back.
//!
//! The test starts its own `redis-server` on port 6395 (the shared test server must not be
//! killed), gated like every Redis test on `IMAGE_ROUTER_TEST_REDIS_URL`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use image_router::store::redis::{Heartbeat, HeartbeatClock, RedisConfig};

use crate::support::redis::{unique_prefix, url};

pub(super) const PORT: u16 = 6395;

/// `redis-server` on PATH; a failure in CI, a loud skip elsewhere.
pub(super) fn redis_server(test: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("redis-server"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: redis-server is not on PATH: CI must run the outage test");
        }
        eprintln!("\n*** SKIPPED {test}: redis-server is not on PATH ***\n");
    }
    found
}

/// A throwaway server on [`PORT`] without persistence, killed with SIGKILL on drop.
pub(super) struct Server {
    bin: std::path::PathBuf,
    child: Option<Child>,
}

impl Server {
    pub(super) fn start(bin: &std::path::Path) -> Self {
        let mut s = Self {
            bin: bin.to_path_buf(),
            child: None,
        };
        s.restart();
        s
    }

    pub(super) fn url() -> String {
        format!("redis://127.0.0.1:{PORT}/")
    }

    pub(super) fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(&self.bin)
            .args(["--port", &PORT.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        // Bounded wait until it answers.
        let client = redis::Client::open(Self::url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut c) = client.get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server on port {PORT} did not answer");
    }

    /// SIGKILL, through `kill -9 <pid>`, and reaps it.
    pub(super) fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn heartbeats_survive_a_killed_server_and_announce_again_after_restart() {
    let test = "heartbeats_survive_a_killed_server_and_announce_again_after_restart";
    if url(test).is_none() {
        return;
    }
    let Some(bin) = redis_server(test) else {
        return;
    };
    let _serial = super::SERVER.lock().await;
    let mut server = Server::start(&bin);
    let prefix = unique_prefix("outage");
    let config = RedisConfig::new(Server::url())
        .prefix(&prefix)
        .heartbeat(Duration::from_secs(1))
        .timeout(Duration::from_millis(500));
    let beats: Vec<Arc<Heartbeat>> = (0..2)
        .map(|_| Heartbeat::new(&config, HeartbeatClock::Server).unwrap())
        .collect();
    let counts: Vec<_> = beats.iter().map(|b| b.join("acct")).collect();
    for b in &beats {
        b.beat().await.unwrap();
    }
    beats[0].beat().await.unwrap();
    assert_eq!(counts[0].get(), 2);

    server.kill();
    // Gone: the beat fails (bounded by the time-out), the last known count stays.
    assert!(beats[0].beat().await.is_err());
    assert_eq!(counts[0].get(), 2);

    server.restart();
    // The connection manager reconnects; a few bounded tries.
    let mut back = false;
    for _ in 0..50 {
        if beats[0].beat().await.is_ok() && beats[1].beat().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the heartbeats never reached the restarted server");
    beats[0].beat().await.unwrap();
    assert_eq!(
        counts[0].get(),
        2,
        "the restarted server has both instances again"
    );
}
