//! Single-flight: identical requests in flight at the same time make one upstream call.
//!
//! The first caller for a key becomes the *leader* and makes the call; callers that arrive
//! while it runs are *waiters* and get its answer. What happens when the leader does not
//! deliver:
//! - a **permanent** failure (the caller's classifier says so: a denial, an invalid request,
//!   a content-policy refusal, ...): every waiter gets the same error, since calling again
//!   would fail the same way and may cost money;
//! - a **transient** failure (rate limit, time-out, 5xx, connect): the leader's own caller
//!   gets its error, and one waiter becomes the new leader and calls again;
//! - the leader's future is **dropped** (its caller gave up): the same hand-over, so a
//!   cancelled caller never cancels the others. A dropped waiter simply leaves.
//!
//! Waiters wait at most until their own deadline. The hand-over runs through one mutex per
//! flight and a [`tokio::sync::Notify`]: a waiter registers for the wake-up *before* it looks
//! at the state (`Notified::enable`), so a change between its look and its wait is never
//! missed.
//!
//! Why not a crate: `moka`'s `get_with`/`try_get_with` coalesce identical loads, but an error
//! from the loading future is handed to every waiter and a cancelled loader hands over with
//! no way to tell transient from permanent failures; the request's deadline also has to bound
//! each waiter separately. The state machine below is small and tested on its own.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How one caller's turn ended.
#[derive(Debug)]
pub(crate) enum Turn<T, V> {
    /// This caller led and its call succeeded: its own result.
    Led(T),
    /// Another caller's call succeeded: the shared value.
    Joined(V),
}

/// The flights in progress, one per key.
pub(crate) struct Flights<K, V, E> {
    map: Mutex<HashMap<K, Arc<Flight<V, E>>>>,
}

struct Flight<V, E> {
    state: Mutex<State<V, E>>,
    changed: Notify,
}

struct State<V, E> {
    /// A caller is calling upstream now.
    leading: bool,
    /// The final answer: a success, or a permanent failure.
    done: Option<Result<V, E>>,
    /// Callers in this flight (leader and waiters), counted under the map's lock.
    members: usize,
}

impl<K, V, E> Default for Flights<K, V, E> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V, E> Flights<K, V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
    E: Clone,
{
    /// Number of keys with a flight in progress.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.map.lock().len()
    }

    /// Joins the flight for `key`: leads it with `lead` when no caller leads it now, else
    /// waits for the leader (until `deadline`, then `timed_out()`). `lead` returns this
    /// caller's own result and the value shared with waiters; it is told whether this caller
    /// waited before leading (a take-over, which must still end by `deadline`). `transient`
    /// tells which errors hand the call over to a waiter.
    pub(crate) async fn run<T, Fut>(
        &self,
        key: K,
        deadline: Instant,
        lead: impl FnOnce(bool) -> Fut,
        transient: impl Fn(&E) -> bool,
        timed_out: impl FnOnce() -> E,
    ) -> Result<Turn<T, V>, E>
    where
        Fut: std::future::Future<Output = Result<(T, V), E>>,
    {
        let member = self.join(key);
        let flight = Arc::clone(&member.flight);
        let mut lead = Some(lead);
        let mut waited = false;
        loop {
            let notified = flight.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leads = {
                let mut st = flight.state.lock();
                if let Some(done) = &st.done {
                    return done.clone().map(Turn::Joined);
                }
                if st.leading {
                    false
                } else if waited && Instant::now() >= deadline {
                    // Handed the call at (or past) the deadline: too late to make it.
                    drop(st);
                    return Err(timed_out());
                } else {
                    st.leading = true;
                    true
                }
            };
            if leads {
                // `lead` is taken once: a caller leads at most once (after leading it returns).
                let Some(lead) = lead.take() else {
                    // Unreachable (see above); give up the lead rather than panic.
                    member.hand_over();
                    return Err(timed_out());
                };
                let mut guard = LeadGuard {
                    member: &member,
                    finished: false,
                };
                let result = lead(waited).await;
                guard.finished = true;
                return match result {
                    Ok((mine, shared)) => {
                        member.finish(Ok(shared));
                        Ok(Turn::Led(mine))
                    }
                    Err(e) if transient(&e) => {
                        member.hand_over();
                        Err(e)
                    }
                    Err(e) => {
                        member.finish(Err(e.clone()));
                        Err(e)
                    }
                };
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(timed_out());
            }
            waited = true;
        }
    }

    fn join(&self, key: K) -> Member<'_, K, V, E> {
        let mut map = self.map.lock();
        let flight = map
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Flight {
                    state: Mutex::new(State {
                        leading: false,
                        done: None,
                        members: 0,
                    }),
                    changed: Notify::new(),
                })
            })
            .clone();
        flight.state.lock().members += 1;
        Member {
            flights: self,
            key,
            flight,
        }
    }
}

/// One caller's membership in a flight; leaving (drop) removes an abandoned flight.
struct Member<'a, K: Hash + Eq, V, E> {
    flights: &'a Flights<K, V, E>,
    key: K,
    flight: Arc<Flight<V, E>>,
}

impl<K: Hash + Eq, V, E> Member<'_, K, V, E> {
    /// The final answer: stored for the waiters, and the flight leaves the map so later
    /// callers start afresh (a success is in the cache by then).
    fn finish(&self, result: Result<V, E>) {
        {
            let mut st = self.flight.state.lock();
            st.leading = false;
            st.done = Some(result);
        }
        self.remove_if_current();
        self.flight.changed.notify_waiters();
    }

    /// No answer from this caller: another may lead.
    fn hand_over(&self) {
        self.flight.state.lock().leading = false;
        self.flight.changed.notify_waiters();
    }

    fn remove_if_current(&self) {
        let mut map = self.flights.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

impl<K: Hash + Eq, V, E> Drop for Member<'_, K, V, E> {
    fn drop(&mut self) {
        // Under the map's lock, so no caller joins this flight between the count reaching
        // zero and its removal.
        let mut map = self.flights.map.lock();
        let left = {
            let mut st = self.flight.state.lock();
            st.members = st.members.saturating_sub(1);
            st.members
        };
        if left == 0
            && map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

/// Hands the lead over when the leader's future is dropped mid-call.
struct LeadGuard<'m, 'a, K: Hash + Eq, V, E> {
    member: &'m Member<'a, K, V, E>,
    finished: bool,
}

impl<K: Hash + Eq, V, E> Drop for LeadGuard<'_, '_, K, V, E> {
    fn drop(&mut self) {
        if !self.finished {
            self.member.hand_over();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    type F = Flights<u8, u32, &'static str>;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn one_call_for_many_callers_and_the_flight_is_gone_after() {
        let flights = Arc::new(F::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (flights, calls) = (flights.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                flights
                    .run(
                        1,
                        far(),
                        |_| async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            Ok(((), 7))
                        },
                        |_| true,
                        || "timeout",
                    )
                    .await
            }));
        }
        let mut led = 0;
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Turn::Led(()) => led += 1,
                Turn::Joined(v) => assert_eq!(v, 7),
            }
        }
        assert_eq!((led, calls.load(Ordering::SeqCst)), (1, 1));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_past_its_deadline_gives_up_alone() {
        let flights = Arc::new(F::default());
        let f2 = flights.clone();
        let leader = tokio::spawn(async move {
            f2.run(
                1,
                far(),
                |_| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Ok(((), 1))
                },
                |_| true,
                || "timeout",
            )
            .await
        });
        tokio::task::yield_now().await;
        let soon = Instant::now() + Duration::from_secs(1);
        let r = flights
            .run(1, soon, |_| async { Ok(((), 2)) }, |_| true, || "timeout")
            .await;
        assert_eq!(r.err(), Some("timeout"));
        assert!(matches!(leader.await.unwrap(), Ok(Turn::Led(()))));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_flight_leaves_the_map() {
        let flights = F::default();
        let r = flights
            .run(
                3,
                far(),
                |_| async { Err::<((), u32), _>("busy") },
                |_| true,
                || "t",
            )
            .await;
        assert_eq!(r.err(), Some("busy"));
        assert_eq!(flights.in_flight(), 0);
    }
}
