//! Before an attempt: the action's rate limit, the destination's circuit and its bulkhead. What
//! holds an attempt back delays the run; it never fails it or spends its retries.

use std::time::Duration;

use rand::Rng;

use super::Engine;
use super::execute::Flowing;
use crate::action::Action;
use crate::action::breaker::{Gate, RateLimit};
use crate::action::bulkhead::{Permit, WAIT_IN_WORKER};
use crate::flow::Flow;
use crate::run::{Run, RunStatus};
use crate::store::{Lease, Next, Pace};
use crate::time::Ts;

/// A rate-limit wait up to this long is slept in the worker; a longer one goes back to the
/// queue.
const MAX_PACING_SLEEP: Duration = Duration::from_secs(2);

impl Engine {
    /// Takes `key`'s next rate-limit slot: from the store when it keeps limits shared by every
    /// instance (PostgreSQL), else — or while the database cannot be asked — in memory.
    pub(super) async fn pace(&self, key: &str, limit: &RateLimit) -> Gate {
        let now = Ts::now();
        match self.store.pace(key, limit.interval, now).await {
            Ok(Pace::Go) => Gate::Go,
            Ok(Pace::Until(at)) => Gate::Paced(at),
            Ok(Pace::Local) => self.guards.pace(key, limit, now),
            Err(e) => {
                tracing::warn!(error = %e, %key, "shared rate limit unavailable; pacing in this instance only");
                self.guards.pace(key, limit, now)
            }
        }
    }

    /// Holds an attempt back when its action is over its rate limit, its destination's
    /// circuit is open or its destination has as many attempts in flight as it may: short
    /// pacing waits are slept here, anything else puts the run back in the queue without an
    /// attempt (nothing is counted against the retry budget) and frees the worker. `Ok`: go
    /// ahead, holding the place in the destination's bulkhead.
    pub(super) async fn gate(
        &self,
        flow: &Flow,
        action: &Action,
        destination: Option<&str>,
        run: &mut Run,
        lease: &Lease,
    ) -> Result<Option<Permit>, Flowing> {
        if let Some(limit) = &action.rate_limit {
            let key = format!("{}/{}", flow.name, action.name);
            loop {
                match self.pace(&key, limit).await {
                    Gate::Paced(at) if at.since(Ts::now()) <= MAX_PACING_SLEEP => {
                        tokio::time::sleep(at.since(Ts::now())).await;
                    }
                    Gate::Paced(at) => {
                        let why = format!(
                            "waiting for action `{}`'s rate limit ({})",
                            action.name, limit.text
                        );
                        return Err(self.postpone(run, lease, at, why).await);
                    }
                    _ => break,
                }
            }
        }
        let Some(d) = destination else {
            return Ok(None);
        };
        if let Some(cfg) = &action.breaker
            && let Gate::Open(until) = self.guards.check(d, cfg, Ts::now())
        {
            let why = format!(
                "circuit open for {d} (it failed {} times in a row); paused until {until}",
                cfg.failures
            );
            return Err(self.postpone(run, lease, until, why).await);
        }
        let limit = self.destination_limit(action);
        let waited_since = std::time::Instant::now();
        let full = loop {
            let jitter = rand::rng().random_range(-1.0..=1.0);
            match self.guards.bulkheads.enter(d, limit, Ts::now(), jitter) {
                Ok(place) => return Ok(Some(place)),
                // A quick destination: a place frees up in moments.
                Err(full) if full.soon && waited_since.elapsed() < WAIT_IN_WORKER => {
                    let _ = tokio::time::timeout(full.retry_in, full.freed.notified()).await;
                }
                Err(full) => break full,
            }
        };
        let at = Ts::now().plus(full.retry_in);
        tracing::debug!(destination = d, limit, until = %at, "destination full; run goes back to the queue");
        run.status = RunStatus::Retrying;
        run.next_attempt_at = Some(at);
        run.error = Some(format!(
            "waiting for {d}: {limit} attempts to it are in flight (destination_concurrency)"
        ));
        run.updated_at = Ts::now();
        self.save(run, lease, Next::RetryAt(at)).await;
        Err(Flowing::Stop)
    }

    /// For the items of a `for_each` batch after its first (which went through [`Engine::gate`]):
    /// the action's rate-limit slot and a place in the destination's bulkhead if both are free
    /// now, else `None` — the item waits for the next batch; nothing is slept, nothing
    /// postponed. `Some(None)`: go, no destination to hold a place at.
    pub(super) async fn room_now(
        &self,
        flow: &Flow,
        action: &Action,
        destination: Option<&str>,
    ) -> Option<Option<Permit>> {
        if let Some(limit) = &action.rate_limit
            && !matches!(
                self.pace(&format!("{}/{}", flow.name, action.name), limit).await,
                Gate::Go
            )
        {
            return None;
        }
        let Some(d) = destination else {
            return Some(None);
        };
        let limit = self.destination_limit(action);
        self.guards
            .bulkheads
            .enter(d, limit, Ts::now(), 0.0)
            .ok()
            .map(Some)
    }

    /// Most attempts of `action` in flight to one destination.
    fn destination_limit(&self, action: &Action) -> usize {
        action
            .destination_concurrency
            .unwrap_or_else(|| self.config.per_destination())
    }

    /// Puts the run back in the queue until `at` without recording an attempt.
    pub(super) async fn postpone(&self, run: &mut Run, lease: &Lease, at: Ts, why: String) -> Flowing {
        tracing::info!(reason = %why, until = %at, "attempt postponed");
        run.status = RunStatus::Retrying;
        run.next_attempt_at = Some(at);
        run.error = Some(why);
        run.updated_at = Ts::now();
        self.save(run, lease, Next::RetryAt(at)).await;
        Flowing::Stop
    }
}
