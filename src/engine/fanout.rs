//! A step per item (`for_each`): the action is attempted once per item of a list, a few at a
//! time, each item with its own attempts, retries and idempotency key (`<run>.<action>.<index>`).
//! Progress is saved after every batch, so a retry — or a restart — sends only the items that
//! have not succeeded.

use futures::future::join_all;
use serde_json::{Value, json};

use super::Engine;
use super::attempt::{Attempted, LEASE_MARGIN, Outcome, Try};
use super::execute::{Flowing, Holding};
use crate::action::{Action, ExecContext, ForEach, ItemSource};
use crate::context::{RunInfo, item_context, template_context};
use crate::event::Origin;
use crate::flow::Flow;
use crate::run::{Item, Run, RunStatus, StepStatus};
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
            let contexts = item_contexts(templates, flow, run, action, &items, &ready);
            // The first item goes through the gate like any attempt (rate limit, circuit,
            // bulkhead — it may send the run back to the queue); the others of the batch go
            // only where there is room now, else they wait for the next batch.
            let mut batch = Vec::with_capacity(contexts.len());
            for (n, (k, cx)) in ready.iter().copied().zip(contexts).enumerate() {
                let dest = action.destination(&self.clients, templates, &cx.ctx);
                let place = if n == 0 {
                    match self.gate(flow, action, dest.as_deref(), run, &lease).await {
                        Ok(place) => place,
                        Err(stop) => return stop,
                    }
                } else {
                    match self.room_now(flow, action, dest.as_deref()).await {
                        Some(place) => place,
                        None => continue,
                    }
                };
                batch.push((k, cx, dest, place));
            }
            let state = &run.steps[i].items;
            let attempts = batch.iter_mut().map(|(k, cx, dest, place)| {
                let tried = &state[*k].attempts;
                let t = Try {
                    flow: &flow.name,
                    action,
                    destination: dest.as_deref(),
                    place: place.take(),
                    number: tried.len() as u32 + 1,
                    first_started: tried.first().map(|a| a.started_at),
                };
                self.attempt(t, cx)
            });
            let results = join_all(attempts).await;
            let done: Vec<(usize, &ExecContext<'_>)> = batch.iter().map(|(k, cx, _, _)| (*k, cx)).collect();
            let (effects, failed) = record_items(run, i, action, &done, results);
            run.updated_at = Ts::now();
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

/// The contexts the `ready` items are attempted with: each its own item, index and
/// idempotency key (`<run>.<action>.<index>`).
fn item_contexts<'t>(
    templates: &'t Templates,
    flow: &Flow,
    run: &Run,
    action: &Action,
    items: &[Value],
    ready: &[usize],
) -> Vec<ExecContext<'t>> {
    let steps = run.step_outputs();
    let secrets = templates.secret_values();
    ready
        .iter()
        .map(|&k| {
            let key = format!("{}.{}.{k}", run.id, action.name);
            let attempt = run.steps[run.next_step].items[k].attempts.len() as u32 + 1;
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
        .collect()
}

/// Writes a batch's outcomes into its items: the changes the successes ask for (to be saved
/// with the batch), and the first item that failed for good, if one did.
fn record_items(
    run: &mut Run,
    i: usize,
    action: &Action,
    batch: &[(usize, &ExecContext<'_>)],
    results: Vec<Attempted>,
) -> (Effects, Option<String>) {
    let mut effects = Effects::default();
    let mut failed = None;
    for (&(k, cx), done) in batch.iter().zip(results) {
        let item = &mut run.steps[i].items[k];
        match done.outcome {
            Outcome::Succeeded(output) => {
                item.status = StepStatus::Succeeded;
                item.output = Some(output);
                item.retry_at = None;
                effects.segment_ops.extend(done.effects.segment_ops);
                effects.events.extend(done.effects.events);
                effects.suppress.extend(done.effects.suppress);
                if !effects.segment_ops.is_empty() {
                    effects.origin = Some((cx.origin.clone(), cx.event_depth));
                }
            }
            Outcome::Retry { at, error, .. } => {
                tracing::warn!(action = %action.name, item = k, attempt = done.record.number, %error, "item failed; will retry");
                item.retry_at = Some(at);
            }
            Outcome::Failed { summary, .. } => {
                item.status = StepStatus::Failed;
                failed.get_or_insert(format!("item {k}: {summary}"));
                effects.suppress.extend(done.effects.suppress);
            }
            Outcome::Skipped { reason, output } => {
                // Nothing was attempted: no attempt is recorded.
                tracing::info!(action = %action.name, item = k, %reason, "item skipped");
                item.status = StepStatus::Skipped;
                item.output = Some(output);
                item.retry_at = None;
                continue;
            }
        }
        item.attempts.push(done.record);
    }
    (effects, failed)
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
