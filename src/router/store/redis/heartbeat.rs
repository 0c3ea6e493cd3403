//! Heartbeats: how the router instances sharing an account learn how many of them there are.
//!
//! Why: when the server cannot be reached, each instance keeps serving from local state with
//! a *conservative share* of every limit — the limit divided by the number of live instances
//! ([`super::degraded`]). That number must come from somewhere every instance writes while
//! the server answers, and it must forget an instance that died without saying goodbye.
//!
//! # Keys
//! One sorted set per account, `{prefix:account}:instances` (inside the account's hash slot,
//! so it works on Redis Cluster beside the account's other keys). Its members are instance ids
//! and each score is the member's expiry (milliseconds, on the clock below). Each beat is one
//! small Lua script: drop the members whose expiry has passed, add or refresh this instance's
//! member with expiry `now + 3 × interval`, give the whole key the same TTL (so an account
//! nobody serves any more leaves nothing behind) and return the count. A sorted set rather
//! than a key per instance because counting is then one `ZCARD` in the same atomic step, with
//! no `SCAN`/`KEYS` (which a cluster cannot answer for one slot cheaply).
//!
//! # Clock
//! In production the server's clock (`TIME` inside the script: instances' clocks drift, the
//! server's is the one they share); in tests the router's injected clock
//! ([`HeartbeatClock::Router`]), so expiry is deterministic with a
//! [`ManualClock`](crate::clock::ManualClock).
//!
//! # Instance id
//! 128 random bits (hex), drawn once per [`Heartbeat`]: never derived from a host name, a key
//! or anything secret, and one per router (one per [`super`] store factory).
//!
//! # The task
//! [`Heartbeat::start`] spawns one background task per heartbeat. It holds only a [`Weak`]
//! reference, so it ends at its next tick after the last [`Arc<Heartbeat>`] is dropped (the
//! router's stores hold it), and [`Drop`] also aborts it at once: no task outlives its
//! router. Each beat is bounded by the store's time-out. When a beat fails the counts keep
//! their last known value (what the degraded mode divides by when the server is gone).
//! On drop the instance removes its own member, best effort (a spawned `ZREM`), so the
//! others see it leave at once rather than after three intervals.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use redis::Script;

use super::RedisConfig;
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::redis_conn::{Client, Connection};
use crate::router::store::StoreError;

/// How many heartbeat intervals an instance's member lives without a new beat.
pub const HEARTBEAT_LIVES: u32 = 3;

const BEAT: &str = r"
local now
if ARGV[1] == 'server' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return redis.call('ZCARD', KEYS[1])
";

/// The live instance count of one account: the last count a heartbeat read (at least 1:
/// this instance), shared between the heartbeat task and the account's stores.
#[derive(Clone, Debug)]
pub struct InstanceCount(Arc<AtomicU32>);

impl Default for InstanceCount {
    fn default() -> Self {
        Self::new(1)
    }
}

impl InstanceCount {
    /// A count starting at `n` (at least 1).
    pub fn new(n: u32) -> Self {
        Self(Arc::new(AtomicU32::new(n.max(1))))
    }

    /// The live count (or the last known one when the server is gone), at least 1.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Acquire).max(1)
    }

    /// Sets the count (at least 1).
    pub fn set(&self, n: u32) {
        self.0.store(n.max(1), Ordering::Release);
    }
}

/// Which clock the heartbeat expiries are on.
#[derive(Clone, Debug)]
pub enum HeartbeatClock {
    /// The Redis server's (`TIME`): production.
    Server,
    /// The router's injected clock: tests (every instance must share it).
    Router(SharedClock),
}

/// One router instance's heartbeats, for every account it serves (see the module docs).
pub struct Heartbeat {
    id: String,
    tag_prefix: String,
    client: Client,
    connection: tokio::sync::OnceCell<Connection>,
    interval: Duration,
    timeout: Duration,
    clock: HeartbeatClock,
    accounts: Mutex<BTreeMap<String, InstanceCount>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    started: AtomicBool,
}

impl fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heartbeat")
            .field("id", &self.id)
            .field("prefix", &self.tag_prefix)
            .field("interval", &self.interval)
            .field("accounts", &self.accounts.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Heartbeat {
    /// Heartbeats on the server of `config` (its prefix, time-out and interval), on `clock`.
    /// No connection is made yet, and nothing runs until [`start`](Self::start).
    pub fn new(config: &RedisConfig, clock: HeartbeatClock) -> Result<Arc<Self>, ConfigError> {
        let client = config.client()?;
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        Ok(Arc::new(Self {
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            tag_prefix: config.prefix_str().to_string(),
            client,
            connection: tokio::sync::OnceCell::new(),
            interval: config.heartbeat_interval(),
            timeout: config.timeout_duration(),
            clock,
            accounts: Mutex::new(BTreeMap::new()),
            task: Mutex::new(None),
            started: AtomicBool::new(false),
        }))
    }

    /// This instance's random id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The heartbeat interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Announces this instance for `account` from now on; the returned count is the
    /// account's live instance count, which each beat updates.
    pub fn join(&self, account: &str) -> InstanceCount {
        self.accounts
            .lock()
            .entry(account.to_string())
            .or_default()
            .clone()
    }

    /// The key of `account`'s instances: `{prefix:account}:instances`.
    pub fn key(&self, account: &str) -> String {
        format!("{{{}:{account}}}:instances", self.tag_prefix)
    }

    /// Spawns the background task that beats every interval (see the module docs); a second
    /// call does nothing, and so does a call outside a tokio runtime (the store calls it
    /// again on its first admission).
    pub fn start(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut task = self.task.lock();
        if task.is_some() {
            return;
        }
        self.started.store(true, Ordering::Release);
        let weak: Weak<Self> = Arc::downgrade(self);
        let every = self.interval;
        *task = Some(rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(hb) = weak.upgrade() else { break };
                // A failed beat keeps the last known counts; the degraded mode reports the
                // outage itself (one warning), so this only leaves a debug trace.
                if let Err(e) = hb.beat().await {
                    tracing::debug!(error = %e, "heartbeat failed");
                }
            }
        }));
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        let init = self.connection.get_or_try_init(|| async {
            self.client
                .connect(self.timeout)
                .await
                .map_err(|e| StoreError::new(format!("heartbeat: cannot connect: {:?}", e.kind())))
        });
        match tokio::time::timeout(self.timeout, init).await {
            Ok(r) => r.cloned(),
            Err(_) => Err(StoreError::new("heartbeat: connecting timed out")),
        }
    }

    fn now_arg(&self) -> String {
        match &self.clock {
            HeartbeatClock::Server => "server".to_string(),
            HeartbeatClock::Router(c) => c.now().as_millis().to_string(),
        }
    }

    /// Beats once for every account joined, now, and updates their counts; on error the
    /// counts keep their last known values. Returns the counts read.
    pub async fn beat(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        let accounts: Vec<(String, InstanceCount)> = self
            .accounts
            .lock()
            .iter()
            .map(|(a, c)| (a.clone(), c.clone()))
            .collect();
        let mut conn = self.connection().await?;
        let ttl = self
            .interval
            .saturating_mul(HEARTBEAT_LIVES)
            .as_millis()
            .max(1);
        // The script's hash is computed once (EVALSHA, then EVAL when the server lacks it).
        static SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(BEAT));
        let script = &*SCRIPT;
        let mut read = BTreeMap::new();
        for (account, count) in accounts {
            let mut inv = script.prepare_invoke();
            inv.key(self.key(&account))
                .arg(self.now_arg())
                .arg(&self.id)
                .arg(ttl.to_string());
            let n: u32 = match tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await
            {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(StoreError::new(format!("heartbeat: {:?}", e.kind())));
                }
                Err(_) => return Err(StoreError::new("heartbeat: timed out")),
            };
            count.set(n);
            read.insert(account, n.max(1));
        }
        Ok(read)
    }

    /// Removes this instance's member from every account it joined (it stops serving them),
    /// bounded by the time-out. [`Drop`] does the same, best effort.
    pub async fn leave(&self) -> Result<(), StoreError> {
        let keys: Vec<String> = self.accounts.lock().keys().map(|a| self.key(a)).collect();
        let mut conn = self.connection().await?;
        for key in keys {
            let cmd = redis::cmd("ZREM").arg(&key).arg(&self.id).to_owned();
            match tokio::time::timeout(self.timeout, cmd.query_async::<i64>(&mut conn)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(StoreError::new(format!("heartbeat: {:?}", e.kind()))),
                Err(_) => return Err(StoreError::new("heartbeat: timed out")),
            }
        }
        Ok(())
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
        // Best effort: tell the others at once (else the member expires after three
        // intervals). Only with a connection already made and a runtime to run on.
        let (Some(conn), Ok(rt)) = (
            self.connection.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let keys: Vec<String> = self.accounts.lock().keys().map(|a| self.key(a)).collect();
        let id = self.id.clone();
        let timeout = self.timeout;
        rt.spawn(async move {
            let mut conn = conn;
            for key in keys {
                let cmd = redis::cmd("ZREM").arg(&key).arg(&id).to_owned();
                let _ = tokio::time::timeout(timeout, cmd.query_async::<i64>(&mut conn)).await;
            }
        });
    }
}
