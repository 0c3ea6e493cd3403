//! [`RedisStoreFactory`]: the one connection every slot's store shares, the background queue
//! of releases and holds, and the making of each slot's [`RedisStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::link::Link;
use super::store::{Parts, RedisStore};
use super::RedisConfig;
use crate::config_error::ConfigError;
use crate::router::store::{StateStore, StoreContext, StoreFactory};

/// Default time-to-live of a reservation nobody ended (an instance that crashed): after it
/// the next admission on the account holds its budget share until the period ends.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(600);

/// Makes each provider slot's [`RedisStore`], all on one connection to the server (see
/// the module docs of [`crate::store::redis`]).
///
/// ```no_run
/// use std::sync::Arc;
/// use image_router::store::redis::{RedisConfig, RedisStoreFactory};
/// # fn main() -> Result<(), image_router::ConfigError> {
/// let factory = RedisStoreFactory::new(RedisConfig::from_env("REDIS_URL")?.prefix("shop"))?;
/// let builder = image_router::Router::builder().store(Arc::new(factory));
/// # let _ = builder; Ok(()) }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStoreFactory {
    link: Arc<Link>,
    /// The degraded mode's heartbeat, held weakly: the stores keep it alive.
    heartbeat: Arc<parking_lot::Mutex<std::sync::Weak<super::Heartbeat>>>,
    router_clock: bool,
    reservation_ttl: Duration,
}

impl fmt::Debug for RedisStoreFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreFactory")
            .field("config", &self.link.config)
            .field("router_clock", &self.router_clock)
            .field("reservation_ttl", &self.reservation_ttl)
            .finish()
    }
}

impl RedisStoreFactory {
    /// A factory for the server `config` names. No connection is made here: the first
    /// store call makes it (within the time-out), so building a router never waits on the
    /// server. Bad settings are [`ConfigError`]s naming the field.
    pub fn new(config: RedisConfig) -> Result<Self, ConfigError> {
        let client = config.client()?;
        Ok(Self {
            link: Arc::new(Link::new(config, client)),
            heartbeat: Arc::default(),
            router_clock: false,
            reservation_ttl: DEFAULT_RESERVATION_TTL,
        })
    }

    /// Decides windows, blocks and cool-downs on the router's injected clock (passed to
    /// the scripts) instead of the Redis server's: for tests with a
    /// [`ManualClock`](crate::clock::ManualClock) shared by several routers. Every instance
    /// of one account must then share that clock; in production keep the server's clock,
    /// since instances' clocks drift.
    pub fn router_clock(mut self) -> Self {
        self.router_clock = true;
        self
    }

    /// Sets how long a reservation nobody ended lives (default
    /// [`DEFAULT_RESERVATION_TTL`]); it must be longer than any request's deadline.
    pub fn reservation_ttl(mut self, ttl: Duration) -> Self {
        self.reservation_ttl = ttl;
        self
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.link.config
    }

    /// The store of one slot as its concrete type (for wrapping it).
    pub fn make_store(&self, ctx: StoreContext<'_>) -> Result<RedisStore, ConfigError> {
        if ctx.account.is_empty() || ctx.account.contains(['{', '}']) || ctx.account == "router" {
            return Err(ConfigError::new(
                "account",
                format!(
                    "{:?} cannot name a shared account: it must be non-empty, hold no '{{' or '}}' and not be \"router\" (the router-wide budgets' keys)",
                    ctx.account
                ),
            ));
        }
        if self.reservation_ttl.is_zero() {
            return Err(ConfigError::new(
                "store.reservation_ttl",
                "must be above zero",
            ));
        }
        RedisStore::new(Parts {
            link: Arc::clone(&self.link),
            provider: ctx.provider.to_string(),
            account: ctx.account.to_string(),
            router_ledger_name: ctx.router_ledger.name().to_string(),
            limits: ctx.limits,
            budgets: ctx.budgets.to_vec(),
            router_budgets: ctx.router_budgets.to_vec(),
            clock: ctx.clock.clone(),
            wall: ctx.wall.clone(),
            breaker: ctx.breaker,
            router_clock: self.router_clock,
            reservation_ttl: self.reservation_ttl,
        })
    }
}

impl StoreFactory for RedisStoreFactory {
    fn make(&self, ctx: StoreContext<'_>) -> Result<Arc<dyn StateStore>, ConfigError> {
        // Wrapped in the degraded mode (local share when the server is slow or gone).
        let parts = super::degraded::parts_for(
            &self.link.config,
            &ctx,
            self.router_clock,
            &self.heartbeat,
        )?;
        let store = Arc::new(self.make_store(ctx)?);
        Ok(Arc::new(super::Degraded::new(store, parts)?))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
