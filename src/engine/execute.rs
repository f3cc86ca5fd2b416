//! Executing one claimed run: its actions in order from `next_step`, each attempt recorded
//! durably before the next action starts, failures turned into a retry timer in the store or
//! the dead-letter state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Engine;
use super::attempt::{Attempted, LEASE_MARGIN, Outcome, Try};
use crate::action::{Action, ActionKind, ExecContext};
use crate::context::{EventFacts, RunInfo, template_context};
use crate::event::{Event, Origin, RUN_FAILED};
use crate::flow::{Flow, FlowSet};
use crate::matching::{Verdict, check_all};
use crate::run::{Attempt, Run, RunStatus, Step, StepStatus};
use crate::store::{Claimed, Effects, Lease, Next, StoreError};
use crate::time::Ts;

/// A claim and how long it is known to hold, so the lease is extended only when an attempt
/// could outlast it (each extension is a store write). On the monotonic clock: a step of the
/// wall clock must not make a held lease look ended, or an ended one held.
pub(super) struct Holding {
    pub(super) lease: Lease,
    pub(super) until: Instant,
}

impl Holding {
    /// Makes sure the lease lasts `needed` from now, extending it if it might not.
    pub(super) async fn ensure(
        &mut self,
        store: &dyn crate::store::Store,
        needed: Duration,
    ) -> Result<(), StoreError> {
        let until = Instant::now() + needed;
        if until > self.until {
            store.extend_lease(&self.lease, needed).await?;
            self.until = until;
        }
        Ok(())
    }
}

/// Takes the run out of its flow's exit index (it is finishing).
fn unindex(run: &mut Run) -> Vec<crate::store::WaitOp> {
    let (flow, id) = (run.flow.clone(), run.id.clone());
    std::mem::take(&mut run.exit_keys)
        .into_iter()
        .map(|key| crate::store::WaitOp::UnindexExit {
            flow: flow.clone(),
            key,
            run_id: id.clone(),
        })
        .collect()
}

/// The idempotency key of an action of a run: the same on every attempt.
pub fn idempotency_key(run_id: &str, action: &str) -> String {
    format!("{run_id}.{action}")
}

pub(super) enum Flowing {
    Continue,
    Stop,
}

impl Engine {
    /// Executes a claimed run whose lease is known to hold until `held_until`. A run that
    /// waited for a worker past that point has its lease extended (or found lost) before any
    /// request is sent.
    pub(super) async fn execute(
        self: &Arc<Self>,
        claimed: Claimed,
        held_until: Instant,
        shutdown: CancellationToken,
    ) {
        let Claimed {
            mut run,
            lease,
            exit_requested,
            exit_requested_at,
        } = claimed;
        let mut hold = Holding {
            lease,
            until: held_until,
        };
        let lease = hold.lease.clone();
        let span = tracing::info_span!("run", flow = %run.flow, run_id = %run.id);
        async {
            // The version the run was accepted under (remembered, or kept in the store), else
            // the current one.
            let (set, flow) = match self.version_of(&run).await {
                Some(found) => found,
                None => {
                    let set = self.flows.load();
                    let Some(flow) = set.get(&run.flow).cloned() else {
                        let error = format!("flow `{}` is not loaded any more", run.flow);
                        self.fail(&mut run, &lease, error).await;
                        return;
                    };
                    tracing::warn!(accepted_under = %run.flow_version, now = %flow.version, "the flow version this run was accepted under is gone; running the current version");
                    (set, flow)
                }
            };
            ensure_steps(&mut run, &flow);
            if let Some(reason) = exit_requested {
                let was_waiting = run
                    .steps
                    .get(run.next_step)
                    .is_some_and(|s| s.status == StepStatus::Waiting);
                let waits = if was_waiting {
                    vec![crate::store::WaitOp::Waiting {
                        flow: run.flow.clone(),
                        by: -1,
                    }]
                } else {
                    Vec::new()
                };
                self.exit(&mut run, &lease, reason, exit_requested_at, waits).await;
                return;
            }
            if run.next_step >= flow.actions.len() {
                // Every action was done before (the run was resumed after its last save).
                self.succeed(&mut run, &lease, Effects::default()).await;
                return;
            }
            loop {
                if shutdown.is_cancelled() {
                    run.status = RunStatus::Queued;
                    self.save(&run, &lease, Next::RetryAt(Ts::now())).await;
                    return;
                }
                match self.step(&set, &flow, &mut run, &mut hold).await {
                    Flowing::Continue => {}
                    Flowing::Stop => return,
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The flow set and flow of the version `run` was accepted under: remembered in memory,
    /// or compiled from the source the store keeps (then remembered).
    async fn version_of(&self, run: &Run) -> Option<(Arc<FlowSet>, Arc<Flow>)> {
        if let Some(found) = self.flows.find(&run.flow, &run.flow_version) {
            return Some(found);
        }
        let dir = self.config.templates_dir.clone()?;
        let source = self
            .store
            .flow_source(&run.flow, &run.flow_version)
            .await
            .ok()??;
        let name = run.flow.clone();
        let set = tokio::task::spawn_blocking(move || crate::flow::load_source(&name, &source, &dir))
            .await
            .ok()?
            .map_err(|errors| {
                tracing::warn!(version = %run.flow_version, errors = ?errors.iter().map(ToString::to_string).collect::<Vec<_>>(), "the version this run was accepted under no longer loads")
            })
            .ok()?;
        let set = Arc::new(set);
        let flow = set.get(&run.flow).cloned()?;
        self.flows.remember(Arc::clone(&set));
        tracing::info!(version = %run.flow_version, "running under the flow version the run was accepted under, from the store");
        Some((set, flow))
    }

    /// Runs one attempt of the current action and records it.
    async fn step(&self, set: &FlowSet, flow: &Flow, run: &mut Run, hold: &mut Holding) -> Flowing {
        let lease = &hold.lease.clone();
        let i = run.next_step;
        let action: &Action = &flow.actions[i];
        let templates = &set.templates;
        let attempt = run.steps[i].attempts.len() as u32 + 1;
        let key = idempotency_key(&run.id, &action.name);
        let steps = run.step_outputs();
        let ctx = template_context(
            &RunInfo {
                flow: &flow.name,
                run_id: &run.id,
                attempt,
                idempotency_key: &key,
            },
            &run.request,
            &run.vars,
            &steps,
        );

        let facts = EventFacts {
            request: &run.request,
            vars: &run.vars,
            templates,
            ctx: &ctx,
        };
        match check_all(&action.when, &facts) {
            Ok(Verdict::Match) => {}
            Ok(Verdict::NoMatch(why)) => {
                tracing::info!(action = %action.name, condition = %why, "action skipped: condition not met");
                run.steps[i].status = StepStatus::Skipped;
                run.next_step += 1;
                run.updated_at = Ts::now();
                return self.advance(flow, run, hold).await;
            }
            Err(e) => {
                let error = format!("action `{}`: {e}", action.name);
                run.steps[i].status = StepStatus::Failed;
                self.fail(run, lease, error).await;
                return Flowing::Stop;
            }
        }

        if let ActionKind::Wait(w) = &action.kind {
            return self.wait_step(templates, flow, run, hold, w, &ctx).await;
        }
        let raises_events = action.kind.raises_events();
        if raises_events && run.depth + 1 > self.config.max_chain_depth {
            let error = format!(
                "action `{}`: event chain too deep: this run is {} events down a chain and the limit is {} (--max-chain-depth); is a flow triggering itself?",
                action.name, run.depth, self.config.max_chain_depth
            );
            run.steps[i].status = StepStatus::Failed;
            self.fail(run, lease, error).await;
            return Flowing::Stop;
        }
        if let Some(each) = &action.for_each {
            return self.fan_out(templates, flow, run, hold, action, each).await;
        }
        let destination = action.destination(&self.clients, templates, &ctx);
        let place = match self.gate(flow, action, destination.as_deref(), run, lease).await {
            Ok(place) => place,
            Err(stop) => return stop,
        };

        if let Err(e) = hold
            .ensure(&*self.store, action.kind.timeout() + LEASE_MARGIN)
            .await
        {
            self.log_store_error(&e);
            return Flowing::Stop;
        }

        let cx = ExecContext {
            templates,
            ctx,
            idempotency_key: key,
            secrets: templates.secret_values(),
            origin: Origin::run(&run.flow, &run.id, Some(&action.name)),
            event_depth: run.depth + 1,
        };
        let first_started = run.steps[i].attempts.first().map(|a| a.started_at);
        let attempted = self
            .attempt(
                Try {
                    flow: &flow.name,
                    action,
                    destination: destination.as_deref(),
                    place,
                    number: attempt,
                    first_started,
                },
                &cx,
            )
            .await;
        self.settle(flow, run, hold, attempted, &cx).await
    }

    /// Writes what the step's attempt came to: the run goes on, waits for its retry, or fails.
    async fn settle(
        &self,
        flow: &Flow,
        run: &mut Run,
        hold: &mut Holding,
        attempted: Attempted,
        cx: &ExecContext<'_>,
    ) -> Flowing {
        let lease = &hold.lease.clone();
        let i = run.next_step;
        let action = &flow.actions[i];
        let attempt = attempted.record.number;
        let Attempted {
            record,
            outcome,
            mut effects,
            finished,
        } = attempted;
        run.updated_at = finished;
        match outcome {
            Outcome::Succeeded(output) => {
                tracing::info!(action = %action.name, attempt, ms = record.duration_ms, "action succeeded");
                let step = &mut run.steps[i];
                step.attempts.push(record);
                step.status = StepStatus::Succeeded;
                step.output = Some(output);
                run.next_step += 1;
                run.error = None;
                if !effects.segment_ops.is_empty() {
                    effects.origin = Some((cx.origin.clone(), cx.event_depth));
                }
                self.advance_with(flow, run, hold, effects).await
            }
            Outcome::Skipped { reason, output } => {
                tracing::info!(action = %action.name, %reason, "action skipped");
                let step = &mut run.steps[i];
                step.status = StepStatus::Skipped;
                step.output = Some(output);
                run.next_step += 1;
                self.advance_with(flow, run, hold, effects).await
            }
            Outcome::Retry { at, delay, error } => {
                tracing::warn!(action = %action.name, attempt, %error, retry_in_ms = delay.as_millis() as u64, "attempt failed; will retry");
                run.steps[i].attempts.push(record);
                run.status = RunStatus::Retrying;
                run.next_attempt_at = Some(at);
                run.error = Some(format!("action `{}`: {error}", action.name));
                self.save(run, lease, Next::RetryAt(at)).await;
                Flowing::Stop
            }
            Outcome::Failed { summary, .. } => self.fail_step(run, lease, i, record, summary, effects).await,
        }
    }

    /// Records a finished step: the run goes on to its next action, or succeeds if that was the
    /// last one (one store write either way).
    async fn advance(&self, flow: &Flow, run: &mut Run, hold: &mut Holding) -> Flowing {
        self.advance_with(flow, run, hold, Effects::default()).await
    }

    /// [`Engine::advance`], recording the step's side effects in the same write.
    pub(super) async fn advance_with(
        &self,
        flow: &Flow,
        run: &mut Run,
        hold: &mut Holding,
        effects: Effects,
    ) -> Flowing {
        if run.next_step >= flow.actions.len() {
            self.succeed(run, &hold.lease, effects).await;
            return Flowing::Stop;
        }
        let lease_for = self.config.lease;
        let until = Instant::now() + lease_for;
        if self
            .save_with(run, &hold.lease, Next::Continue { lease_for }, effects)
            .await
        {
            hold.until = until;
            Flowing::Continue
        } else {
            Flowing::Stop
        }
    }

    async fn succeed(&self, run: &mut Run, lease: &Lease, mut effects: Effects) {
        effects.waits.extend(unindex(run));
        run.status = RunStatus::Succeeded;
        run.finished_at = Some(Ts::now());
        run.updated_at = Ts::now();
        if self.save_with(run, lease, Next::Done, effects).await {
            self.metrics.run_finished(&run.flow, "succeeded");
            tracing::info!("run succeeded");
        }
    }

    /// Records the last attempt of step `i` (failed) and ends the run with `summary`, with
    /// what the failure itself must record (a hard bounce's suppression).
    async fn fail_step(
        &self,
        run: &mut Run,
        lease: &Lease,
        i: usize,
        record: Attempt,
        summary: String,
        effects: Effects,
    ) -> Flowing {
        let step = &mut run.steps[i];
        step.attempts.push(record);
        step.status = StepStatus::Failed;
        let message = format!("action `{}`: {summary}", step.name);
        self.fail_with(run, lease, message, effects.suppress).await;
        Flowing::Stop
    }

    /// Ends the run in the dead-letter state with `error`, raising `run.failed` — except for
    /// runs that handle `run.failed` themselves, so an alerting flow that fails does not
    /// alert about itself.
    pub(super) async fn fail(&self, run: &mut Run, lease: &Lease, error: String) {
        self.fail_with(run, lease, error, Vec::new()).await
    }

    /// [`Engine::fail`], suppressing `suppress` in the same write.
    pub(super) async fn fail_with(
        &self,
        run: &mut Run,
        lease: &Lease,
        error: String,
        suppress: Vec<crate::suppression::Suppression>,
    ) {
        tracing::error!(%error, "run failed");
        run.status = RunStatus::Failed;
        run.error = Some(error.clone());
        run.next_attempt_at = None;
        run.finished_at = Some(Ts::now());
        run.updated_at = Ts::now();
        let mut effects = Effects {
            waits: unindex(run),
            suppress,
            ..Effects::default()
        };
        if run.trigger_event.as_deref() == Some(RUN_FAILED) {
            tracing::info!("not raising run.failed for a run that handles run.failed");
        } else if run.depth + 1 > self.config.max_chain_depth {
            tracing::warn!("not raising run.failed: the event chain is at its depth limit");
        } else {
            let action = run
                .steps
                .iter()
                .find(|s| s.status == StepStatus::Failed)
                .map(|s| s.name.clone());
            let data = serde_json::json!({
                "flow": run.flow,
                "run_id": run.id,
                "action": action,
                "error": error,
                "attempts": run.steps.iter().map(|s| s.attempts.len()).sum::<usize>(),
            });
            effects.events.push(Event::new(
                RUN_FAILED,
                Origin::run(&run.flow, &run.id, None),
                run.depth + 1,
                data,
            ));
        }
        if self.save_with(run, lease, Next::Done, effects).await {
            self.metrics.run_finished(&run.flow, "failed");
        }
    }

    /// Saves; false when the run must not be touched further (lease lost or store failure, in
    /// which case the lease expires and the run is attempted again).
    pub(super) async fn save(&self, run: &Run, lease: &Lease, next: Next) -> bool {
        self.save_with(run, lease, next, Effects::default()).await
    }

    /// Records progress; `false` when the run must not go on (the store refused, or an exit was
    /// requested meanwhile — then the run is ended here, before its next action).
    pub(super) async fn save_with(&self, run: &Run, lease: &Lease, next: Next, effects: Effects) -> bool {
        let raises = !effects.is_empty();
        match self.store.save_with(lease, run, next, effects).await {
            Ok(saved) => {
                for c in &saved.changes {
                    tracing::info!(segment = %c.segment, email = %c.email, change = ?c.change, "segment updated");
                }
                if raises {
                    self.events_wake.notify_one();
                }
                if let Some(reason) = saved.exit_requested {
                    let mut run = run.clone();
                    Box::pin(self.exit(&mut run, lease, reason, None, Vec::new())).await;
                    return false;
                }
                true
            }
            Err(e) => {
                self.log_store_error(&e);
                false
            }
        }
    }

    fn log_store_error(&self, e: &StoreError) {
        match e {
            StoreError::LeaseLost(_) => {
                tracing::warn!(error = %e, "stopping: another worker owns this run now")
            }
            _ => {
                tracing::error!(error = %e, "could not record progress; the run will be resumed when its lease expires")
            }
        }
    }
}

/// Keeps `run.steps` in line with the flow's actions (a flow edited since acceptance may have
/// more actions than the run has steps).
fn ensure_steps(run: &mut Run, flow: &Flow) {
    for (i, a) in flow.actions.iter().enumerate() {
        if run.steps.len() <= i {
            run.steps.push(Step {
                name: a.name.clone(),
                status: StepStatus::Pending,
                attempts: Vec::new(),
                output: None,
                items: Vec::new(),
            });
        }
    }
}
