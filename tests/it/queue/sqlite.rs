//! The SQLite backend: the contract, and durability of the file across reopening.

use std::sync::Arc;

use image_router::budget::WallClock;
use image_router::queue::{QueueBackend, SqliteBackend, SqliteOptions};

use super::conformance;

fn open(dir: &std::path::Path, clock: WallClock) -> Arc<dyn QueueBackend> {
    let path = dir.join(format!("q-{}.db", rand_suffix()));
    Arc::new(SqliteBackend::open_with(path, clock, SqliteOptions::default()).unwrap())
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_backend_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    conformance::run_all(move |clock| {
        let path = path.clone();
        async move { open(&path, clock) }
    })
    .await;
}
