//! Cron-triggered flows: one task per scheduled flow sleeps until its next firing and queues
//! a run for it. Each firing is recorded in the store with its run, atomically, and a firing
//! at or before the recorded one is refused — so a restart never fires twice. Firings that
//! fell while hookflow was down are skipped, or run once, as the flow's `missed` says.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::flow::Flow;
use crate::request::Request;
use crate::schedule::Missed;
use crate::time::Ts;
use crate::trigger::{Cause, Prepared, prepare};

/// Longest sleep between looks at the wall clock while a schedule waits for its next slot.
const LOOK_AGAIN: Duration = Duration::from_secs(1);
/// A slot found more than this far in the past when its sleep ends was passed over (a step of
/// the clock, a stalled process), not merely reached late.
const STEP_TOLERANCE: Duration = Duration::from_secs(10);

impl Engine {
    /// Runs one task per scheduled flow, restarting them all whenever the flows are reloaded
    /// (the last firing is in the store, so a restart never fires twice).
    pub(super) async fn supervise_schedules(self: Arc<Self>, shutdown: CancellationToken) {
        let mut generation = self.flows.subscribe();
        loop {
            let round = shutdown.child_token();
            let tasks = tokio_util::task::TaskTracker::new();
            let set = self.flows.load();
            for flow in set.flows.values().filter(|f| f.schedule().is_some()) {
                tasks.spawn(Arc::clone(&self).run_schedule(Arc::clone(flow), round.clone()));
            }
            tasks.close();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = generation.changed() => if r.is_err() { round.cancel(); tasks.wait().await; return; },
            }
            round.cancel();
            tasks.wait().await;
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    pub(super) async fn run_schedule(self: Arc<Self>, flow: Arc<Flow>, shutdown: CancellationToken) {
        let Some(schedule) = flow.schedule() else { return };
        let started = Ts::now();
        let mut last = match self.store.last_firing(&flow.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(flow = %flow.name, error = %e, "reading the last firing failed; the schedule is not running");
                return;
            }
        };
        if let Some(prev) = last
            && let Some((latest, count)) = schedule.latest_between(prev, started)
        {
            match schedule.missed {
                Missed::Skip => {
                    tracing::info!(flow = %flow.name, missed = count, "skipping firings missed while down");
                    self.fire(&flow, latest, None).await;
                }
                Missed::RunOnce => {
                    tracing::info!(flow = %flow.name, missed = count, at = %latest, "running once for firings missed while down");
                    self.fire(&flow, latest, Some(count)).await;
                }
            }
            last = Some(latest);
        }
        let mut from = last.map_or(started, |l| l.max(started));
        tracing::info!(flow = %flow.name, cron = %schedule.expr, tz = %schedule.tz, "schedule started");
        while let Some(next) = schedule.next_after(from) {
            // Sleep on the monotonic clock in short spans, looking at the wall clock between
            // them: a slot is a wall-clock time, and the wall clock may be stepped meanwhile.
            loop {
                let wait = next.since(Ts::now());
                if wait.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait.min(LOOK_AGAIN)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
            // Slots passed over by a forward step of the clock (or a stalled process) follow
            // the flow's `missed` rule, as at start — never a burst of one run per slot.
            let now = Ts::now();
            if now.since(next) > STEP_TOLERANCE
                && let Some((latest, count)) = schedule.latest_between(from, now)
            {
                tracing::warn!(flow = %flow.name, missed = count, at = %latest, "firings passed over at once (the wall clock was stepped, or the process stalled)");
                let run = match schedule.missed {
                    Missed::Skip => None,
                    Missed::RunOnce => Some(count),
                };
                self.fire(&flow, latest, run).await;
                from = latest;
                continue;
            }
            self.fire(&flow, next, Some(0)).await;
            from = next;
        }
        tracing::warn!(flow = %flow.name, "the schedule has no further firings");
    }

    /// Each segment's size and growth, for reports: `members`, `added_24h` (joined in the 24
    /// hours before `at`) and `added_since_previous` (since the schedule's previous firing time).
    async fn segment_summary(&self, flow: &Flow, at: Ts) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let previous = flow.schedule().and_then(|s| s.previous_before(at));
        let Ok(segments) = self.store.segments().await else {
            return serde_json::Value::Object(out);
        };
        for s in segments {
            let day = Ts(at.0.saturating_sub(24 * 3600 * 1000));
            let added_24h = self.store.segment_added_since(&s.name, day).await.unwrap_or(0);
            let since_prev = match previous {
                Some(p) => self.store.segment_added_since(&s.name, p).await.unwrap_or(0),
                None => added_24h,
            };
            out.insert(
                s.name.clone(),
                json!({"members": s.members, "added_24h": added_24h, "added_since_previous": since_prev}),
            );
        }
        serde_json::Value::Object(out)
    }

    /// Records the firing for `at`; with `missed = Some(n)` queues a run for it (carrying `n`
    /// firings missed before it), with `None` only moves the record forward.
    async fn fire(&self, flow: &Flow, at: Ts, missed: Option<u64>) {
        let run = match missed {
            None => None,
            Some(n) => {
                let segments = self.segment_summary(flow, at).await;
                let request = Request {
                    method: "SCHEDULE".into(),
                    headers: Default::default(),
                    query: Default::default(),
                    body: json!({
                        "scheduled_at": at,
                        "fired_at": Ts::now(),
                        "missed": n,
                        "cron": flow.schedule().map(|s| s.expr.clone()),
                        "segments": segments,
                    }),
                };
                let set = self.flows.load();
                match prepare(flow, &[], &set.templates, request, Cause::default()) {
                    Ok(Prepared::Run(run, _)) => Some(*run),
                    Ok(Prepared::Ignored(_)) => None,
                    Err(e) => {
                        tracing::error!(flow = %flow.name, error = %e, "scheduled firing could not start a run");
                        None
                    }
                }
            }
        };
        let queued = run.is_some();
        match self.store.record_firing(&flow.name, at, run).await {
            Ok(true) if queued => {
                tracing::info!(flow = %flow.name, scheduled_at = %at, "schedule fired");
                self.wake.notify_one();
            }
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(flow = %flow.name, scheduled_at = %at, "already fired for this time; not again")
            }
            Err(e) => tracing::error!(flow = %flow.name, error = %e, "recording a firing failed"),
        }
    }
}
