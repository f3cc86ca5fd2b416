//! Coordination between the instances sharing a store: who is alive, the clock that decides,
//! settings they must agree on, shared rate limits, and the cron firings that must happen once.
//! A store one process owns answers most of these trivially. Backends: `sled/mod.rs`,
//! `postgres/state.rs`.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::Result;
use crate::run::Run;
use crate::time::Ts;

/// One hookflow process using the store, as it reports itself every few seconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Instance {
    /// Unique per process start.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// hookflow's version.
    pub version: String,
    /// Where it accepts webhooks.
    pub listen: String,
    pub started_at: Ts,
    /// Its last report.
    pub seen_at: Ts,
    /// The flows it serves, each with the version (hash of the file) it has loaded.
    pub flows: BTreeMap<String, String>,
}

/// A shared rate limit's answer (see [`Coordination::pace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Not kept by the store.
    Local,
    /// The slot was free and is now taken.
    Go,
    /// The next slot starts then; nothing was taken.
    Until(Ts),
}

/// Instances, shared settings, pacing and firings.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// When a scheduled flow last fired.
    async fn last_firing(&self, flow: &str) -> Result<Option<Ts>>;

    /// Records that `flow` fired for time `at` and queues `run` (if any), atomically — unless
    /// a firing at or after `at` is recorded already, in which case nothing is written and the
    /// answer is `false`. This is what keeps a restart (or a second instance) from firing twice.
    async fn record_firing(&self, flow: &str, at: Ts, run: Option<Run>) -> Result<bool>;

    /// Records that `me` is alive (every few seconds).
    async fn heartbeat(&self, me: &Instance) -> Result<()>;

    /// The clock that decides between instances, read now, in ms since the Unix epoch (the
    /// database's); `None` where one process owns the store.
    async fn shared_clock(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// The instances that reported, oldest start first (the caller decides which are live).
    async fn instances(&self) -> Result<Vec<Instance>>;

    /// A value every instance sharing the store must agree on: the stored one, or `value`
    /// stored now if there is none (the first instance to ask decides).
    async fn shared_setting(&self, key: &str, value: String) -> Result<String>;

    /// Takes the next slot of a rate limit (one attempt per `interval`) that every instance
    /// sharing the store keeps together: [`Pace::Go`] if the slot is free at `now` (it is taken,
    /// the next one starts `interval` later), else [`Pace::Until`] when it frees. A store only
    /// one process uses answers [`Pace::Local`]: the engine paces in memory.
    async fn pace(&self, _key: &str, _interval: std::time::Duration, _now: Ts) -> Result<Pace> {
        Ok(Pace::Local)
    }

    /// Calls `wake` whenever another instance sharing the store stores new runs, until `stop`,
    /// so an idle instance picks them up at once instead of at its next poll. A store only one
    /// process uses returns at once: that process wakes its own engine.
    async fn watch_new_runs(
        &self,
        _wake: std::sync::Arc<tokio::sync::Notify>,
        _stop: tokio_util::sync::CancellationToken,
    ) {
    }
}
