//! The engine: a dispatcher leases due runs from the store and hands each to an executor task,
//! never more than `workers` at once. Waiting retries are timers in the store (due times), not
//! sleeping tasks; the dispatcher sleeps until the next due time or until woken by a new run
//! or a finished one.

pub mod alerts;
mod attempt;
mod events;
mod execute;
mod fanout;
mod gate;
mod sequence;

pub use execute::idempotency_key;
pub use fanout::items_of;
mod scheduler;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::action::Clients;
use crate::action::breaker::Guards;
use crate::reload::Flows;
use crate::store::{ClaimRequest, Store};
use crate::time::Ts;

/// How often expired deduplication keys are swept.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(60);

/// Engine settings; see `settings` for their documented defaults.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Runs executing at once.
    pub workers: usize,
    /// How long a claim holds before another worker may take the run over.
    pub lease: Duration,
    /// Longest idle sleep: bounds how late a run written by another process is noticed.
    pub poll_interval: Duration,
    /// On shutdown, how long in-flight attempts may take to finish before the process exits
    /// (their runs are then resumed by the next start).
    pub shutdown_grace: Duration,
    /// Longest chain of event-triggered runs before a run that would extend it fails.
    pub max_chain_depth: u32,
    /// Finished runs are deleted this long after they finished.
    pub retention: Duration,
    /// At most this many runs are kept; the oldest finished ones go first.
    pub max_runs: usize,
    /// Tracked emails' links work this long after sending; then the message and its clicks
    /// are forgotten (the counts per link are kept).
    pub link_retention: Duration,
    /// For compiling an earlier flow version kept in the store (a run accepted under it).
    pub templates_dir: Option<std::path::PathBuf>,
    /// Attempts in flight at once to one destination, unless an action says otherwise; `0`:
    /// half the workers (at least 2), so one partner that hangs cannot hold them all.
    pub destination_concurrency: usize,
    /// The alert watcher's pace and the server's own alerts.
    pub alerts: alerts::AlertConfig,
}

impl EngineConfig {
    /// [`EngineConfig::destination_concurrency`] with `0` resolved.
    pub fn per_destination(&self) -> usize {
        match self.destination_concurrency {
            0 => (self.workers / 2).max(2),
            n => n,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 32,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            max_chain_depth: crate::event::DEFAULT_MAX_CHAIN_DEPTH,
            retention: Duration::from_secs(30 * 24 * 3600),
            max_runs: 1_000_000,
            link_retention: DEFAULT_LINK_RETENTION,
            templates_dir: None,
            destination_concurrency: 0,
            alerts: alerts::AlertConfig::default(),
        }
    }
}

/// How long tracked links work unless configured otherwise: about a year.
pub const DEFAULT_LINK_RETENTION: Duration = Duration::from_secs(400 * 24 * 3600);

pub struct Engine {
    store: Arc<dyn Store>,
    flows: Arc<Flows>,
    clients: Clients,
    config: EngineConfig,
    wake: Arc<Notify>,
    /// Rings when events are waiting in the store's outbox.
    events_wake: Arc<Notify>,
    guards: Arc<Guards>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        flows: Arc<Flows>,
        config: EngineConfig,
        clients: Clients,
        guards: Arc<Guards>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Engine {
        Engine {
            store,
            flows,
            clients,
            config,
            wake: Arc::new(Notify::new()),
            events_wake: Arc::new(Notify::new()),
            guards,
            metrics,
        }
    }

    /// Notified when events were raised outside the engine (the admin API).
    pub fn events_waker(&self) -> Arc<Notify> {
        Arc::clone(&self.events_wake)
    }

    /// Notified when a new run is stored, so the dispatcher does not wait for its poll.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Runs until `shutdown` is cancelled, then lets in-flight attempts finish within the
    /// grace period.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let workers = self.config.workers.max(1);
        // `slots` bounds runs executing; `tickets` bounds runs claimed (executing or next in
        // line). Claiming up to a second round ahead hides the claim's round trip through the
        // store's commit group from the workers.
        let slots = Arc::new(Semaphore::new(workers));
        let tickets = Arc::new(Semaphore::new(workers * 2));
        let tasks = TaskTracker::new();
        let background = TaskTracker::new();
        background.spawn(Arc::clone(&self).dispatch_events(shutdown.clone()));
        background.spawn(Arc::clone(&self).housekeeping(shutdown.clone()));
        background.spawn(Arc::clone(&self).supervise_schedules(shutdown.clone()));
        background.spawn(Arc::clone(&self).watch_alerts(shutdown.clone()));
        {
            let (me, stop) = (Arc::clone(&self), shutdown.clone());
            background.spawn(async move { me.store.watch_new_runs(Arc::clone(&me.wake), stop).await });
        }
        background.close();
        while !shutdown.is_cancelled() {
            let free = tickets.available_permits();
            let mut claimed = 0;
            if free > 0 {
                let req = ClaimRequest {
                    now: Ts::now(),
                    lease_for: self.config.lease,
                    limit: free,
                    caps: self.flows.load().caps(),
                    fair_share: (free / 4).max(1),
                };
                // A lease starts when the store grants it, after the request left: counted from
                // the asking, it is known to hold at least this long (on a slow link to the
                // database the answer can come seconds later), less a second.
                let asked = std::time::Instant::now();
                match self.store.claim(req).await {
                    Ok(list) => {
                        let held_until = asked + self.config.lease.saturating_sub(Duration::from_secs(1));
                        for c in list {
                            claimed += 1;
                            let ticket = Arc::clone(&tickets)
                                .try_acquire_owned()
                                .expect("claimed at most the free tickets");
                            let slots = Arc::clone(&slots);
                            let me = Arc::clone(&self);
                            let stop = shutdown.clone();
                            tasks.spawn(async move {
                                let Ok(slot) = slots.acquire_owned().await else {
                                    return;
                                };
                                me.execute(c, held_until, stop).await;
                                drop(slot);
                                drop(ticket);
                                me.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "claiming due runs failed"),
                }
            }
            if claimed > 0 && claimed == free {
                continue;
            }
            let wait = self.idle_wait(free == 0 || claimed == 0).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        tasks.close();
        background.wait().await;
        if tokio::time::timeout(self.config.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace period over with attempts still in flight; they resume on next start"
            );
        }
        if let Err(e) = self.store.sync().await {
            tracing::error!(error = %e, "final store sync failed");
        }
    }

    /// Periodic clean-up: forgets expired deduplication keys and prunes old finished runs.
    async fn housekeeping(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let before = Ts(Ts::aged_now()
                .0
                .saturating_sub(self.config.retention.as_millis() as u64));
            match self.store.prune(before, self.config.max_runs, 10_000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "old finished runs pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning old runs failed"),
            }
            match self.store.expire_dedupe(Ts::aged_now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys = n, "expired deduplication keys forgotten"),
                Err(e) => tracing::warn!(error = %e, "expiring deduplication keys failed"),
            }
            let sent_before = Ts(Ts::aged_now()
                .0
                .saturating_sub(self.config.link_retention.as_millis() as u64));
            match self.store.prune_messages(sent_before, 10_000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    messages = n,
                    "tracked messages past --link-retention forgotten; their links answer 404"
                ),
                Err(e) => tracing::warn!(error = %e, "pruning tracked messages failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(HOUSEKEEPING_INTERVAL) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// How long to sleep when there is nothing to claim right now.
    async fn idle_wait(&self, blocked: bool) -> Duration {
        let poll = self.config.poll_interval;
        match self.store.next_due().await {
            Ok(Some(t)) => {
                let now = Ts::now();
                if t <= now {
                    // Due but not claimable (cap reached or no free worker): a finishing run
                    // wakes us; the poll is the fallback.
                    if blocked { poll } else { Duration::ZERO }
                } else {
                    t.since(now).min(poll)
                }
            }
            Ok(None) => poll,
            Err(e) => {
                tracing::error!(error = %e, "reading the next due time failed");
                poll
            }
        }
    }
}
