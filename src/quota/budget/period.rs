//! Budget periods and the calendar arithmetic behind them: a [`Budget`] (a limit over a
//! [`BudgetPeriod`]), the [`WallClock`] that anchors UTC periods on the injected monotonic
//! clock, and which period a moment falls in. Kept apart from the ledger, which reserves and
//! settles amounts against these periods.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::clock::SharedClock;
use crate::config_error::ConfigError;

pub(super) const NANO_USD: f64 = 1e9;
pub(super) const DAY_SECS: u64 = 86_400;

pub(super) fn to_nano(usd: f64) -> u64 {
    // Callers pass finite, non-negative amounts; the float-to-int cast saturates.
    (usd * NANO_USD).round() as u64
}

pub(super) fn to_usd(n: u64) -> f64 {
    n as f64 / NANO_USD
}

/// The period a budget covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetPeriod {
    /// A UTC calendar day.
    Day,
    /// A UTC calendar month.
    Month,
    /// Back-to-back windows of this length, from the ledger's creation.
    Custom(Duration),
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetPeriod::Day => f.write_str("day"),
            BudgetPeriod::Month => f.write_str("month"),
            BudgetPeriod::Custom(d) => {
                write!(f, "{}", crate::quota::headers::format_go_duration(*d))
            }
        }
    }
}

impl Serialize for BudgetPeriod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A spend limit over a period.
///
/// ```
/// use image_router::budget::{Budget, BudgetPeriod};
/// assert!(Budget::new(10.0, BudgetPeriod::Day).is_ok());
/// assert_eq!(Budget::new(-1.0, BudgetPeriod::Day).unwrap_err().field, "limit_usd");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Budget {
    /// The limit in USD (positive, finite).
    pub limit_usd: f64,
    /// The period.
    pub period: BudgetPeriod,
}

impl Budget {
    /// A validated budget: a zero, negative, NaN or infinite limit, or a zero custom period, is
    /// a [`ConfigError`] naming `limit_usd` / `period`.
    pub fn new(limit_usd: f64, period: BudgetPeriod) -> Result<Budget, ConfigError> {
        let b = Budget { limit_usd, period };
        b.validate()?;
        Ok(b)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.limit_usd.is_finite() || self.limit_usd <= 0.0 {
            return Err(ConfigError::new(
                "limit_usd",
                format!(
                    "must be a positive, finite USD amount, got {}",
                    self.limit_usd
                ),
            ));
        }
        if self.limit_usd > 1e9 {
            return Err(ConfigError::new(
                "limit_usd",
                format!("{} is out of range (at most $1e9)", self.limit_usd),
            ));
        }
        if let BudgetPeriod::Custom(d) = self.period {
            if d.is_zero() {
                return Err(ConfigError::new(
                    "period",
                    "a custom period must not be zero",
                ));
            }
        }
        Ok(())
    }
}

/// Wall time from an anchor plus a monotonic clock: `start` is the wall time at the moment the
/// `WallClock` is created, and time moves with `clock`.
#[derive(Clone, Debug)]
pub struct WallClock {
    start: SystemTime,
    start_mono: Duration,
    clock: SharedClock,
}

impl WallClock {
    /// Wall time `start` now, moving with `clock` from here on.
    pub fn new(start: SystemTime, clock: SharedClock) -> Self {
        let start_mono = clock.now();
        Self {
            start,
            start_mono,
            clock,
        }
    }

    /// The system's wall time, moving with tokio's clock.
    pub fn system() -> Self {
        Self::new(
            SystemTime::now(),
            Arc::new(crate::clock::SystemClock::new()),
        )
    }

    /// The current wall time.
    pub fn now(&self) -> SystemTime {
        self.start + self.clock.now().saturating_sub(self.start_mono)
    }
}

/// Days since 1970-01-01 → (year, month 1..=12). (Civil-calendar arithmetic on the proleptic
/// Gregorian calendar.)
pub(super) fn civil_from_days(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32)
}

/// (year, month 1..=12) → days since 1970-01-01 of its first day.
pub(super) fn days_from_civil(y: i64, m: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The period index at `now` and the wall time when it ends.
pub(super) fn period_at(
    period: BudgetPeriod,
    created: SystemTime,
    now: SystemTime,
) -> (u64, SystemTime) {
    match period {
        BudgetPeriod::Day => {
            let day = unix_secs(now) / DAY_SECS;
            (day, UNIX_EPOCH + Duration::from_secs((day + 1) * DAY_SECS))
        }
        BudgetPeriod::Month => {
            let days = (unix_secs(now) / DAY_SECS) as i64;
            let (y, m) = civil_from_days(days);
            let idx = (y * 12 + i64::from(m) - 1).max(0) as u64;
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let next = days_from_civil(ny, nm).max(0) as u64;
            (idx, UNIX_EPOCH + Duration::from_secs(next * DAY_SECS))
        }
        BudgetPeriod::Custom(d) => {
            let since = now.duration_since(created).unwrap_or(Duration::ZERO);
            let len = d.as_nanos().max(1);
            let idx = since.as_nanos() / len;
            let end =
                created + Duration::from_nanos(u64::try_from((idx + 1) * len).unwrap_or(u64::MAX));
            (u64::try_from(idx).unwrap_or(u64::MAX), end)
        }
    }
}
