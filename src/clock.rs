//! Time source for everything that measures windows: limiters, cool-downs, health, the simulator.
//!
//! Why a trait: rate-limit logic is only testable if minutes of traffic can run in milliseconds.
//! Production code uses [`SystemClock`] (tokio's clock, so `tokio::time::pause()` also works);
//! tests use [`ManualClock`] and move time by hand.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A monotonic time source. `now()` is the time elapsed since the clock's own epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time since this clock's epoch.
    fn now(&self) -> Duration;
}

/// The default clock: tokio's monotonic clock (respects `tokio::time::pause`).
#[derive(Clone, Copy)]
pub struct SystemClock {
    epoch: tokio::time::Instant,
}

impl fmt::Debug for SystemClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemClock")
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
///
/// ```
/// use image_router::clock::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let add = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_add(add))
            });
    }

    /// Sets the clock to `at` (it never goes backwards: an earlier value is ignored).
    pub fn set(&self, at: Duration) {
        let target = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(target, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
