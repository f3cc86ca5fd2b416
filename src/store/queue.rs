//! The run queue's role in the store: runs, the due-queue with its leases and ordering lanes,
//! what a save writes with the run (its effects), exits, and the per-flow counters.
//!
//! The semantics are chosen so a shared SQL database can honour them for several instances:
//! - a queue entry is *due* at a time; claiming it sets a **lease** (a token and an expiry) and
//!   pushes its due time to the expiry, so a worker that dies simply lets the entry fall due
//!   again — no in-process lock is needed for correctness;
//! - every write made on behalf of a claim names its [`Lease`]; a write whose lease was taken
//!   over by someone else fails with [`StoreError::LeaseLost`](super::StoreError::LeaseLost);
//! - runs sharing an ordering key form a **lane**: only the oldest unfinished run of a lane is
//!   ever due, so they execute one at a time in arrival order;
//! - a flow's cap on runs in flight counts unexpired leases of that flow at claim time;
//! - `insert_run` and `save` return only once the write is durable;
//! - an action's side effects inside hookflow (segment changes, the events it raises) are
//!   written in the same atomic write as the run's progress ([`RunQueue::save_with`]): a crash
//!   can neither lose them nor apply them twice. Raised events wait in an **outbox** until the
//!   engine turns them into runs ([`Contacts::dispatch_event`](super::Contacts::dispatch_event),
//!   again one atomic write).
//!
//! Backends: `sled/mod.rs` (with `sled/ops.rs`), `postgres/queue.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use super::{Damage, Result};
use crate::event::{Event, Origin};
use crate::run::{Run, RunStatus};
use crate::segment::{SegmentChange, SegmentOp};
use crate::time::Ts;

/// Proof of a claim: writes for the run must present it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: String,
    pub token: u64,
}

#[derive(Debug)]
pub struct Claimed {
    pub run: Run,
    pub lease: Lease,
    /// Set when an exit condition matched this run while it was held: the reason. The run
    /// should end as exited before its next action.
    pub exit_requested: Option<String>,
    /// When that exit came, when it came well before this claim (a parked run exited through
    /// the API): the run's end is recorded at that time, not when it was read back.
    pub exit_requested_at: Option<crate::time::Ts>,
}

#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub now: Ts,
    /// How long the claim holds before others may take the run (see [`Next::Continue`]).
    pub lease_for: Duration,
    pub limit: usize,
    /// Flow name → most runs of that flow leased at once.
    pub caps: BTreeMap<String, u32>,
    /// Most runs of one flow in this claim while other flows have due runs too (`0`: no
    /// limit), so one flow's backlog cannot fill every claim.
    pub fair_share: usize,
}

/// What happens to the queue entry when a run is saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// Still working on it: keep the lease, for this long from now. A lease is a duration,
    /// not a time: each store anchors it to the clock that decides — the monotonic clock in
    /// one process (sled), the database's between instances (PostgreSQL) — so a step of a
    /// wall clock neither ends it early nor keeps it forever.
    Continue { lease_for: Duration },
    /// Release the lease; due again at this time.
    RetryAt(Ts),
    /// Terminal: remove from the queue and let the next run of its lane go.
    Done,
}

/// Side effects recorded atomically with a save.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub segment_ops: Vec<SegmentOp>,
    /// Events raised directly (`emit`, `run.failed`).
    pub events: Vec<Event>,
    /// Source and depth of the events the segment ops raise.
    pub origin: Option<(Origin, u32)>,
    /// Changes to the exit index and the waiting counts (see [`crate::sequence`]).
    pub waits: Vec<WaitOp>,
    /// Addresses to suppress (a hard bounce at send time, a flow's `suppress`).
    pub suppress: Vec<crate::suppression::Suppression>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.segment_ops.is_empty() && self.events.is_empty()
    }
}

/// What a save did.
#[derive(Debug, Default)]
pub struct Saved {
    /// The segment changes its effects made.
    pub changes: Vec<SegmentChange>,
    /// An exit requested (by an event, a segment change or the API) while the run was held.
    pub exit_requested: Option<String>,
}

/// A change that comes with a run starting or ending a wait.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOp {
    /// The run is found under `key` of its flow's exit index.
    IndexExit {
        flow: String,
        key: String,
        run_id: String,
    },
    /// It no longer is.
    UnindexExit {
        flow: String,
        key: String,
        run_id: String,
    },
    /// One more (+1) or one fewer (-1) run of the flow waiting.
    Waiting { flow: String, by: i64 },
}

/// What ending one run as exited did ([`RunQueue::exit_run`], each store's `exit_one`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exited {
    /// The run is finished already (or gone).
    No,
    /// Ended now: the caller counts it.
    Now,
    /// Held by a worker (or not yet admitted): marked, to end before its next action; the
    /// engine counts it then.
    Marked,
    /// Parked (embedded store): shown exited from now on and counted by the caller; its record
    /// is ended when it is read back, at the exit's time, and not counted again.
    Noted,
}

/// A run an exit reached: ended now, or marked for its worker to end.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitedRun {
    pub flow: String,
    pub run_id: String,
    /// Ended now (false: marked, the worker that holds it ends it).
    pub now: bool,
}

/// An exit condition met by something that happened: the runs of `flow` indexed under `key`
/// end as exited with `reason`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitMatch {
    pub flow: String,
    pub key: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub flow: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs with an id lower (older) than this: for paging.
    pub before: Option<String>,
    pub limit: usize,
    /// Created at or after / at or before.
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    /// Case-insensitive text to find in the request (body, headers, query) or the vars.
    pub text: Option<String>,
}

impl RunFilter {
    /// Whether `run` passes the filters other than paging.
    pub fn matches(&self, run: &Run) -> bool {
        if self.flow.as_ref().is_some_and(|f| *f != run.flow)
            || self.status.is_some_and(|s| s != run.status)
            || self.since.is_some_and(|t| run.created_at < t)
            || self.until.is_some_and(|t| run.created_at > t)
        {
            return false;
        }
        match &self.text {
            None => true,
            Some(t) => {
                let needle = t.to_lowercase();
                let hay = serde_json::to_string(&(&run.request, &run.vars))
                    .unwrap_or_default()
                    .to_lowercase();
                hay.contains(&needle)
            }
        }
    }
}

/// Runs and their queue. Every backend's behaviour is the same suite (`tests/it/store_suite.rs`).
#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Ends the waiting runs that `exits` name (as exited, with their reason), and marks
    /// those held by a worker so it ends them before their next action.
    async fn exit_runs(&self, exits: Vec<ExitMatch>) -> Result<Vec<ExitedRun>>;

    /// Ends one unfinished run as exited (or marks it, when held): the API's and CLI's exit.
    async fn exit_run(&self, run_id: &str, reason: &str) -> Result<Exited>;

    /// Runs waiting at a `wait` step, per flow.
    async fn waiting_counts(&self) -> Result<BTreeMap<String, u64>>;

    /// Damage found when the store was opened (see [`Damage`]); empty when all was readable.
    fn damage(&self) -> Vec<Damage> {
        Vec::new()
    }

    /// Waiting runs kept on disk outside the store's memory until shortly before they wake
    /// (the embedded store's parking); 0 where a store does not park.
    fn parked(&self) -> u64 {
        0
    }

    /// Stores a new run and queues it (or places it behind its lane). Durable on return.
    async fn insert_run(&self, run: &Run) -> Result<()>;

    /// [`RunQueue::insert_run`] unless `key` (a delivery's identity, per flow) was seen within
    /// its window: then nothing is stored and the first run's id is returned. The check and the
    /// insert are one atomic write, so two copies arriving together start one run.
    async fn insert_run_once(&self, run: &Run, key: &str, expires: Ts) -> Result<Option<String>>;

    /// Forgets deduplication keys whose window ended before `now`; returns how many.
    async fn expire_dedupe(&self, now: Ts) -> Result<usize>;

    /// Leases up to `limit` due runs, oldest due first, respecting caps and lanes.
    async fn claim(&self, req: ClaimRequest) -> Result<Vec<Claimed>>;

    /// Makes a held lease last `lease_for` from now (e.g. before a long request); see
    /// [`Next::Continue`] for which clock counts it.
    async fn extend_lease(&self, lease: &Lease, lease_for: Duration) -> Result<()>;

    /// Writes the run's new state and moves its queue entry as `next` says. Durable on return.
    async fn save(&self, lease: &Lease, run: &Run, next: Next) -> Result<()> {
        self.save_with(lease, run, next, Effects::default())
            .await
            .map(|_| ())
    }

    /// [`RunQueue::save`] with side effects, all in one atomic write. Returns what the segment
    /// ops changed, and — for [`Next::Continue`] — whether an exit was requested for the run
    /// meanwhile (the progress is saved and the lease held; the caller ends the run).
    async fn save_with(&self, lease: &Lease, run: &Run, next: Next, effects: Effects) -> Result<Saved>;

    async fn get_run(&self, id: &str) -> Result<Option<Run>>;

    /// Deletes finished runs that finished before `before`, and the oldest finished runs
    /// beyond `keep` runs in all; never an unfinished run. At most `max` per call; returns how
    /// many went.
    async fn prune(&self, before: Ts, keep: usize, max: usize) -> Result<usize>;

    /// Newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>>;

    /// How many runs are due by `now` (queued, or a retry or wake-up whose time has come), and
    /// when the oldest of them fell due. Runs due later are neither counted nor read.
    async fn queue_stats(&self, now: Ts) -> Result<(u64, Option<Ts>)>;

    /// When the earliest queue entry falls due (leased entries count at their expiry).
    async fn next_due(&self) -> Result<Option<Ts>>;

    /// Adds to a per-flow counter (e.g. `ignored`). Not necessarily durable at once.
    async fn add_counter(&self, flow: &str, name: &str, by: u64) -> Result<()>;

    async fn counters(&self, flow: &str) -> Result<BTreeMap<String, u64>>;

    /// Makes everything written so far durable.
    async fn sync(&self) -> Result<()>;
}
