//! How a router makes the state store of each provider slot.
//!
//! A router is built once and its stores are made then, one per slot, from the same
//! [`StoreFactory`]: the in-process one by default ([`InProcessFactory`]), or a shared one
//! (Redis, feature `redis`) chosen with [`RouterBuilder::store`](crate::RouterBuilder::store)
//! or the config's `[store]` table. The factory, not the slot, owns what the stores share (a
//! connection to the server, the router-wide budget's shared record), so nothing else in the
//! router or in application code changes with the store.
//!
//! A store is made for a provider *account* ([`StoreContext::account`]): the provider's
//! `account` option, else its slot name. Two providers that name the same account are the
//! same OpenAI organization (or Azure resource) and, in a shared store, share one set of
//! windows and budgets; the in-process store keeps one per slot either way.

use std::fmt;
use std::sync::Arc;

use super::{InProcessStore, LimitSettings, StateStore};
use crate::breaker::CircuitBreaker;
use crate::clock::SharedClock;
use crate::config_error::ConfigError;
use crate::quota::budget::{Budget, BudgetLedger, WallClock};

/// Everything a store for one provider slot is made from.
#[derive(Debug)]
#[non_exhaustive]
pub struct StoreContext<'a> {
    /// The slot's name (the provider's name, `name/label` for one key of a key set).
    pub provider: &'a str,
    /// The provider account whose limits and budgets the store keeps: the provider's
    /// `account` option, else its slot name.
    pub account: &'a str,
    /// Rate limits of each model's window, and the margin.
    pub limits: LimitSettings,
    /// The provider's budgets.
    pub budgets: &'a [Budget],
    /// The router-wide budgets (every provider's requests also reserve on them).
    pub router_budgets: &'a [Budget],
    /// The router-wide ledger of this process (the in-process store reserves on it).
    pub router_ledger: &'a BudgetLedger,
    /// Wall time for budget periods (UTC days and months).
    pub wall: &'a WallClock,
    /// The router's clock.
    pub clock: &'a SharedClock,
    /// The slot's circuit breaker (fault counting stays in this process).
    pub breaker: CircuitBreaker,
}

impl<'a> StoreContext<'a> {
    /// A context from its parts (for making a store outside a router, e.g. in tests of a
    /// shared store; the router makes its own).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        provider: &'a str,
        account: &'a str,
        limits: LimitSettings,
        budgets: &'a [Budget],
        router_budgets: &'a [Budget],
        router_ledger: &'a BudgetLedger,
        wall: &'a WallClock,
        clock: &'a SharedClock,
        breaker: CircuitBreaker,
    ) -> Self {
        Self {
            provider,
            account,
            limits,
            budgets,
            router_budgets,
            router_ledger,
            wall,
            clock,
            breaker,
        }
    }
}

/// Makes the state store of each provider slot (see the module docs).
pub trait StoreFactory: Send + Sync + fmt::Debug {
    /// The store of one slot; a bad setting is a [`ConfigError`] naming it.
    fn make(&self, ctx: StoreContext<'_>) -> Result<Arc<dyn StateStore>, ConfigError>;
    /// The kind of store it makes (`"in-process"`, `"redis"`), for status pages.
    fn kind(&self) -> &'static str;
}

/// The default factory: an [`InProcessStore`] per slot.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcessFactory;

impl StoreFactory for InProcessFactory {
    fn make(&self, ctx: StoreContext<'_>) -> Result<Arc<dyn StateStore>, ConfigError> {
        let ledger = BudgetLedger::new(ctx.provider, ctx.budgets.to_vec(), ctx.wall.clone())?;
        let store = InProcessStore::new(
            ctx.limits,
            ctx.clock.clone(),
            ledger,
            ctx.router_ledger.clone(),
            ctx.breaker,
        )?;
        Ok(Arc::new(store))
    }

    fn kind(&self) -> &'static str {
        "in-process"
    }
}
