//! A real server killed with SIGKILL and restarted: nothing panics, the instance count keeps
//! its last known value while the server is gone, and the instances announce themselves
//! again when it is back.
//!
//! The test starts its own `redis-server` on port 6395 (the shared test server must not be
//! killed), gated like every Redis test on `IMAGE_ROUTER_TEST_REDIS_URL`. The same bodies run
//! on a throwaway three-master Redis Cluster of their own ([`Nodes`], started with
//! `.ci/redis-cluster` on free ports, every node killed and restarted), gated on
//! `IMAGE_ROUTER_TEST_REDIS_CLUSTER_URLS` like the other cluster tests.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use image_router::store::redis::{Heartbeat, HeartbeatClock, RedisConfig};

use crate::support::redis::{unique_prefix, Server as Kind};

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

/// A throwaway three-master cluster of one test (`.ci/redis-cluster` in a temporary folder,
/// on free ports), stopped on drop.
pub(super) struct Nodes {
    dir: tempfile::TempDir,
    urls: String,
}

impl Nodes {
    fn script(&self, cmd: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/redis-cluster");
        let out = Command::new("bash")
            .arg(script)
            .arg(cmd)
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run .ci/redis-cluster");
        assert!(
            out.status.success(),
            ".ci/redis-cluster {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    }

    pub(super) fn start() -> Self {
        let mut n = Self {
            dir: tempfile::tempdir().unwrap(),
            urls: String::new(),
        };
        n.urls = n.script("start");
        assert!(n.urls.starts_with("redis://"), "{}", n.urls);
        n
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/redis-cluster"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// What an outage test kills and restarts: the single throwaway server on [`PORT`] or a
/// cluster of its own, every node at once.
pub(super) enum Killable {
    Single(Server),
    Cluster(Nodes),
}

impl Killable {
    /// Started; `None` (after a loud note) without the test server of that kind outside CI,
    /// or without `redis-server`.
    pub(super) fn start(kind: Kind, test: &str) -> Option<Self> {
        kind.url(test)?;
        let bin = redis_server(test)?;
        Some(match kind {
            Kind::Single => Killable::Single(Server::start(&bin)),
            Kind::Cluster => Killable::Cluster(Nodes::start()),
        })
    }

    fn kind(&self) -> Kind {
        match self {
            Killable::Single(_) => Kind::Single,
            Killable::Cluster(_) => Kind::Cluster,
        }
    }

    pub(super) fn url(&self) -> String {
        match self {
            Killable::Single(_) => Server::url(),
            Killable::Cluster(n) => n.urls.clone(),
        }
    }

    /// The library's settings for this server (cluster mode on for the cluster).
    pub(super) fn config(&self) -> RedisConfig {
        self.kind().config(&self.url())
    }

    /// SIGKILL (every node of the cluster).
    pub(super) fn kill(&mut self) {
        match self {
            Killable::Single(s) => s.kill(),
            Killable::Cluster(n) => {
                n.script("kill");
            }
        }
    }

    /// Started again, empty (no persistence); a cluster's nodes keep their slots from
    /// their `nodes-P.conf` and answer once `cluster_state:ok`.
    pub(super) fn restart(&mut self) {
        match self {
            Killable::Single(s) => s.restart(),
            Killable::Cluster(n) => {
                n.script("restart");
            }
        }
    }
}

async fn heartbeats_survive_a_killed_server_and_announce_again_after_restart(kind: Kind) {
    let test = "heartbeats_survive_a_killed_server_and_announce_again_after_restart";
    let _serial = super::SERVER.lock().await;
    let Some(mut server) = Killable::start(kind, test) else {
        return;
    };
    let prefix = unique_prefix("outage");
    let config = server
        .config()
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

/// Three instances on one account of 60 RPM, through the real store. The server is killed
/// with SIGKILL mid-minute: every instance keeps serving from its share (20, minus its own
/// admissions of the minute), no request fails because of the store; the server restarts
/// empty; the instances re-join and replay the minute's admissions, so the restarted
/// server's window holds exactly what was admitted (60) and admits nothing more.
async fn a_killed_server_degrades_to_the_share_and_rejoins_with_consistent_windows(kind: Kind) {
    use std::time::SystemTime;

    use image_router::breaker::{BreakerConfig, CircuitBreaker};
    use image_router::budget::{BudgetLedger, WallClock};
    use image_router::clock::{ManualClock, SharedClock};
    use image_router::quota::cost::{Cost, CostBasis};
    use image_router::store::redis::{Degraded, DegradedParts, RedisStoreFactory};
    use image_router::store::{Demand, LimitSettings, Refusal, StateStore, StoreContext};

    let test = "a_killed_server_degrades_to_the_share_and_rejoins_with_consistent_windows";
    let _serial = super::SERVER.lock().await;
    let Some(mut server) = Killable::start(kind, test) else {
        return;
    };
    let prefix = unique_prefix("outage-store");
    let clock = ManualClock::new();
    let shared: SharedClock = Arc::new(clock.clone());
    let wall = WallClock::new(SystemTime::now(), shared.clone());
    let config = server
        .config()
        .prefix(&prefix)
        .heartbeat(Duration::from_secs(1))
        .timeout(Duration::from_millis(500));
    let factory = RedisStoreFactory::new(config.clone())
        .unwrap()
        .router_clock();
    let limits = || LimitSettings::new(None, Some(60), Some(100_000_000));
    let free = || {
        Ok(Cost {
            usd: 0.0,
            basis: CostBasis::Fallback,
        })
    };
    const MODEL: &str = "gpt-image-1";

    let mut beats = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..3 {
        let hb = Heartbeat::new(&config, HeartbeatClock::Router(shared.clone())).unwrap();
        let instances = hb.join("acct");
        let ledger = BudgetLedger::new("router", vec![], wall.clone()).unwrap();
        let breaker = CircuitBreaker::new(BreakerConfig::default(), shared.clone());
        let store = factory
            .make_store(StoreContext::new(
                "p",
                "acct",
                limits(),
                &[],
                &[],
                &ledger,
                &wall,
                &shared,
                breaker.clone(),
            ))
            .unwrap();
        let parts = DegradedParts {
            account: "acct".to_string(),
            limits: limits(),
            budgets: vec![],
            router_budgets: vec![],
            clock: shared.clone(),
            wall: wall.clone(),
            breaker,
            timeout: Duration::from_millis(500),
            retry_every: Duration::from_secs(1),
            instances,
            heartbeat: Some(Arc::clone(&hb)),
        };
        beats.push(hb);
        stores.push(Degraded::new(Arc::new(store), parts).unwrap());
    }
    for _ in 0..2 {
        for b in &beats {
            b.beat().await.unwrap();
        }
    }
    for s in &stores {
        assert_eq!(s.state().instances, Some(3));
        assert_eq!(s.state().degraded, None);
    }
    // Ten requests each through the shared window (sent: their room stays used).
    for s in &stores {
        for _ in 0..10 {
            let a = s.admit(Demand::new(MODEL, 1, 100), free()).await.unwrap();
            assert_eq!(s.state().degraded, None);
            s.hold(a);
        }
    }
    // Each instance has learned the server's identity (a bounded background ping).
    for s in &stores {
        tokio::time::timeout(Duration::from_secs(10), async {
            while s.server_identity().is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the server's identity is learned");
    }
    clock.advance(Duration::from_secs(5));

    server.kill();
    let mut local = Vec::new();
    for s in &stores {
        let mut n = 0;
        loop {
            match s.admit(Demand::new(MODEL, 1, 100), free()).await {
                Ok(a) => {
                    assert!(a.id == 0, "admitted locally");
                    s.hold(a);
                    n += 1;
                }
                Err(Refusal::RateLimit(_)) => break,
                Err(other) => panic!("a request refused because of the store: {other:?}"),
            }
            assert!(n <= 60);
        }
        local.push(n);
        assert_eq!(s.state().instances, Some(3), "the last known count");
        assert!(s.state().degraded.is_some());
    }
    assert_eq!(
        local,
        vec![10, 10, 10],
        "share 20 each, 10 of it used before the outage"
    );
    // A heartbeat against the dead server fails; its count stays.
    assert!(beats[0].beat().await.is_err());

    server.restart();
    clock.advance(Duration::from_secs(2));
    for s in &stores {
        let mut joined = false;
        for _ in 0..100 {
            if s.try_rejoin().await {
                joined = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(joined, "re-joined the restarted server");
        assert_eq!(s.state().degraded, None);
    }
    // The restarted server's window holds the minute's 60 admissions again.
    let mut conn = kind.plain(&server.url()).await;
    let n: u64 = redis::cmd("ZCARD")
        .arg(format!("{{{prefix}:acct}}:w:{MODEL}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 60);
    match stores[1].admit(Demand::new(MODEL, 1, 100), free()).await {
        Err(Refusal::RateLimit(_)) => {}
        other => panic!("the shared window is full again: {other:?}"),
    }
    // A minute later the window frees and the shared store admits again.
    clock.advance(Duration::from_secs(60));
    let a = stores[2]
        .admit(Demand::new(MODEL, 1, 100), free())
        .await
        .unwrap();
    assert_ne!(a.id, 0, "through the shared store");
    stores[2].release(a);
}

// The tests above that take a `Kind` run on a single server and on a cluster of their own.
crate::on_each_server!(
    heartbeats_survive_a_killed_server_and_announce_again_after_restart,
    a_killed_server_degrades_to_the_share_and_rejoins_with_consistent_windows,
);
