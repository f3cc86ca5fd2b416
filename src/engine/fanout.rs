//! A step per item (`for_each`): the action is attempted once per item of a list, a few at a
//! time, each item with its own attempts, retries and idempotency key (`<run>.<action>.<index>`).
//! Progress is saved after every batch, so a retry — or a restart — sends only the items that
//! have not succeeded.

use futures::future::join_all;
use rand::Rng;
use serde_json::{Value, json};

use super::Engine;
use super::execute::{Flowing, Holding, LEASE_MARGIN};
use crate::action::{Action, ExecContext, ForEach, ItemSource, ResultKind};
use crate::context::{RunInfo, item_context, template_context};
use crate::event::Origin;
use crate::flow::Flow;
use crate::retry::Decision;
use crate::run::{AttemptOutcome, Item, Run, RunStatus, StepStatus};
use crate::store::{Effects, Next};
use crate::template::Templates;
use crate::time::Ts;

impl Engine {
    pub(super) async fn fan_out(
        &self,
        templates: &Templates,
        flow: &Flow,
        run: &mut Run,
        hold: &mut Holding,
        action: &Action,
        each: &ForEach,
    ) -> Flowing {
        let i = run.next_step;
        let lease = hold.lease.clone();
        let items = match items_of(templates, flow, run, each) {
            Ok(items) => items,
            Err(e) => {
                run.steps[i].status = StepStatus::Failed;
                self.fail(run, &lease, format!("action `{}`: {e}", action.name))
                    .await;
                return Flowing::Stop;
            }
        };
        if run.steps[i].items.len() != items.len() {
            run.steps[i].items = vec![Item::default(); items.len()];
        }
        loop {
            let now = Ts::now();
            let state = &run.steps[i].items;
            let ready: Vec<usize> = (0..items.len())
                .filter(|k| {
                    state[*k].status == StepStatus::Pending && state[*k].retry_at.is_none_or(|t| t <= now)
                })
                .take(each.concurrency)
                .collect();
            if ready.is_empty() {
                if state
                    .iter()
                    .all(|it| matches!(it.status, StepStatus::Succeeded | StepStatus::Skipped))
                {
                    let outputs: Vec<Value> = state
                        .iter()
                        .map(|it| it.output.clone().unwrap_or(Value::Null))
                        .collect();
                    tracing::info!(action = %action.name, items = outputs.len(), "every item succeeded");
                    let step = &mut run.steps[i];
                    step.status = StepStatus::Succeeded;
                    step.output = Some(json!({ "items": outputs }));
                    run.next_step += 1;
                    run.error = None;
                    return self.advance_with(flow, run, hold, Effects::default()).await;
                }
                // Every item left waits for its retry.
                let at = state.iter().filter_map(|it| it.retry_at).min().unwrap_or(now);
                run.status = RunStatus::Retrying;
                run.next_attempt_at = Some(at);
                self.save(run, &lease, Next::RetryAt(at)).await;
                return Flowing::Stop;
            }
            if let Err(e) = hold
                .ensure(&*self.store, action.kind.timeout() + LEASE_MARGIN)
                .await
            {
                tracing::warn!(error = %e, "the lease could not be extended; the run is left to its next claim");
                return Flowing::Stop;
            }
            let steps = run.step_outputs();
            let secrets = templates.secret_values();
            let contexts: Vec<ExecContext<'_>> = ready
                .iter()
                .map(|&k| {
                    let key = format!("{}.{}.{k}", run.id, action.name);
                    let attempt = run.steps[i].items[k].attempts.len() as u32 + 1;
                    let info = RunInfo {
                        flow: &flow.name,
                        run_id: &run.id,
                        attempt,
                        idempotency_key: &key,
                    };
                    ExecContext {
                        templates,
                        ctx: item_context(&info, &run.request, &run.vars, &steps, &items[k], k),
                        idempotency_key: key.clone(),
                        secrets: secrets.clone(),
                        origin: Origin::run(&run.flow, &run.id, Some(&action.name)),
                        event_depth: run.depth + 1,
                    }
                })
                .collect();
            // The first item goes through the gate like any attempt (rate limit, circuit,
            // bulkhead — it may send the run back to the queue); the others of the batch go
            // only where their destination has room now, else they wait for the next batch.
            let dests: Vec<Option<String>> = contexts
                .iter()
                .map(|cx| action.destination(&self.clients, templates, &cx.ctx))
                .collect();
            let mut places = Vec::new();
            let mut batch = Vec::new();
            for (n, (&k, dest)) in ready.iter().zip(&dests).enumerate() {
                if n == 0 {
                    match self.gate(flow, action, dest.as_deref(), run, &lease).await {
                        Ok(place) => places.push(place),
                        Err(stop) => return stop,
                    }
                    batch.push((k, n));
                    continue;
                }
                if let Some(limit) = &action.rate_limit
                    && !matches!(
                        self.pace(&format!("{}/{}", flow.name, action.name), limit).await,
                        crate::action::breaker::Gate::Go
                    )
                {
                    continue;
                }
                match dest {
                    Some(d) => {
                        let limit = action
                            .destination_concurrency
                            .unwrap_or_else(|| self.config.per_destination());
                        if let Ok(place) = self.guards.bulkheads.enter(d, limit, Ts::now(), 0.0) {
                            places.push(Some(place));
                            batch.push((k, n));
                        }
                    }
                    None => batch.push((k, n)),
                }
            }
            let ready: Vec<usize> = batch.iter().map(|(k, _)| *k).collect();
            let contexts: Vec<ExecContext<'_>> = {
                let mut all: Vec<Option<ExecContext<'_>>> = contexts.into_iter().map(Some).collect();
                batch.iter().filter_map(|(_, n)| all[*n].take()).collect()
            };
            let dests: Vec<Option<String>> = batch.iter().map(|(_, n)| dests[*n].clone()).collect();
            let (started, clock) = (Ts::now(), std::time::Instant::now());
            let results = join_all(contexts.iter().map(|cx| action.attempt(cx, &self.clients))).await;
            drop(places);
            let (took, finished) = (clock.elapsed(), Ts::now());
            if let Some(cfg) = &action.breaker {
                for (d, r) in dests.iter().zip(&results) {
                    if let Some(d) = d
                        && r.request.is_some()
                    {
                        self.guards
                            .record(d, cfg, !matches!(r.kind, ResultKind::Transient { .. }), finished);
                    }
                }
            }
            let mut effects = Effects::default();
            let mut failed = None;
            let mut skipped = Vec::new();
            for ((&k, cx), result) in ready.iter().zip(&contexts).zip(results) {
                let item = &mut run.steps[i].items[k];
                let number = item.attempts.len() as u32 + 1;
                let mut result = result;
                let mut record = self.record_attempt(&run.flow, action, number, started, took, &mut result);
                match result.kind {
                    ResultKind::Success(output) => {
                        item.status = StepStatus::Succeeded;
                        item.output = Some(output);
                        item.retry_at = None;
                        effects.segment_ops.extend(result.effects.segment_ops);
                        effects.events.extend(result.effects.events);
                        effects.suppress.extend(result.effects.suppress);
                        if !effects.segment_ops.is_empty() {
                            effects.origin = Some((cx.origin.clone(), cx.event_depth));
                        }
                    }
                    ResultKind::Transient { error, retry_after } => {
                        let first = item.attempts.first().map_or(started, |a| a.started_at);
                        let jitter = rand::rng().random_range(-1.0..=1.0);
                        match action
                            .retry
                            .decide(number, finished.since(first), retry_after, jitter)
                        {
                            Decision::RetryIn(delay) => {
                                tracing::warn!(action = %action.name, item = k, attempt = number, %error, "item failed; will retry");
                                record.outcome = AttemptOutcome::Retry;
                                item.retry_at = Some(finished.plus(delay));
                            }
                            Decision::GiveUp(reason) => {
                                record.outcome = AttemptOutcome::Failed;
                                item.status = StepStatus::Failed;
                                failed.get_or_insert(format!("item {k}: {error}; {reason}"));
                            }
                        }
                        record.error = Some(error);
                    }
                    ResultKind::Permanent(error) => {
                        record.outcome = AttemptOutcome::Failed;
                        item.status = StepStatus::Failed;
                        failed.get_or_insert(format!("item {k}: {error}"));
                        record.error = Some(error);
                        effects.suppress.extend(result.effects.suppress);
                    }
                    ResultKind::Skipped { reason, output } => {
                        // Nothing was attempted: no attempt is recorded.
                        item.status = StepStatus::Skipped;
                        item.output = Some(output);
                        item.retry_at = None;
                        skipped.push((k, reason));
                        continue;
                    }
                }
                item.attempts.push(record);
            }
            for (k, reason) in skipped {
                tracing::info!(action = %action.name, item = k, %reason, "item skipped");
            }
            run.updated_at = finished;
            if let Some(error) = failed {
                run.steps[i].status = StepStatus::Failed;
                let error = format!("action `{}`, {error}", action.name);
                self.fail_with(run, &lease, error, effects.suppress).await;
                return Flowing::Stop;
            }
            // Record the batch (and its side effects) before the next one starts.
            let lease_for = self.config.lease;
            let until = std::time::Instant::now() + lease_for;
            if !self
                .save_with(run, &lease, Next::Continue { lease_for }, effects)
                .await
            {
                return Flowing::Stop;
            }
            hold.until = until;
        }
    }
}

/// The items of a `for_each`, within its bound (also what `hookflow test` renders).
pub fn items_of(templates: &Templates, flow: &Flow, run: &Run, each: &ForEach) -> Result<Vec<Value>, String> {
    let items: Vec<Value> = match &each.items {
        ItemSource::Path(p) => p.select(&run.request.body).into_iter().cloned().collect(),
        ItemSource::Expr(name) => {
            let steps = run.step_outputs();
            let info = RunInfo {
                flow: &flow.name,
                run_id: &run.id,
                attempt: 0,
                idempotency_key: "",
            };
            let ctx = template_context(&info, &run.request, &run.vars, &steps);
            match templates.render_json(name, &ctx).map_err(|e| e.to_string())? {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => return Err(format!("for_each gave {other}, not a list")),
            }
        }
    };
    if items.len() > each.max_items {
        return Err(format!(
            "{} items, more than max_items ({}); none was attempted. Raise the action's `max_items` if that many are expected",
            items.len(),
            each.max_items
        ));
    }
    Ok(items)
}
