//! Sequences in the engine: a `wait` step puts the run back in the queue until its wake-up time
//! (no memory, no worker); on its first wait a run is entered in its flow's exit index, so an
//! event or a segment change that exits it finds it without a scan; at each wake-up the
//! `contact` exits are checked against the contact as it is then.

use minijinja::value::Value as JValue;
use serde_json::{Value, json};

use super::Engine;
use super::execute::{Flowing, Holding};
use crate::context::EventFacts;
use crate::event::{Event, SEGMENT_REMOVED};
use crate::flow::Flow;
use crate::matching::{Verdict, check_all};
use crate::request::Request;
use crate::run::{Run, RunStatus, StepStatus};
use crate::sequence::{Exit, Wait, event_key, exit_keys_logged, field, segment_left_key, wake_at};
use crate::store::{Effects, ExitMatch, Lease, Next, WaitOp};
use crate::template::Templates;
use crate::time::Ts;

impl Engine {
    /// Step `i` is a wait: starts it, or ends it if it is due (after the contact exits).
    pub(super) async fn wait_step(
        &self,
        templates: &Templates,
        flow: &Flow,
        run: &mut Run,
        hold: &mut Holding,
        wait: &Wait,
        ctx: &JValue,
    ) -> Flowing {
        let i = run.next_step;
        let lease = hold.lease.clone();
        let now = Ts::now();
        if run.steps[i].status == StepStatus::Waiting {
            let until = run.steps[i]
                .output
                .as_ref()
                .and_then(|o| serde_json::from_value::<Ts>(o["until"].clone()).ok())
                .unwrap_or(now);
            if until > now {
                // Claimed early (a restart resumes held runs at once): back to sleep.
                run.status = RunStatus::Waiting;
                run.next_attempt_at = Some(until);
                self.save(run, &lease, Next::RetryAt(until)).await;
                return Flowing::Stop;
            }
            let woke = WaitOp::Waiting {
                flow: run.flow.clone(),
                by: -1,
            };
            if let Some(reason) = self.contact_exit(flow, templates, ctx).await {
                self.exit(run, &lease, reason, None, vec![woke]).await;
                return Flowing::Stop;
            }
            tracing::info!(step = %run.steps[i].name, "wait over");
            run.steps[i].status = StepStatus::Succeeded;
            run.status = RunStatus::Running;
            run.next_attempt_at = None;
            run.next_step += 1;
            run.updated_at = now;
            let effects = Effects {
                waits: vec![woke],
                ..Effects::default()
            };
            return self.advance_with(flow, run, hold, effects).await;
        }
        let until = match wait.resolve(templates, ctx).and_then(|r| wake_at(now, &r)) {
            Ok(t) => t,
            Err(e) => {
                run.steps[i].status = StepStatus::Failed;
                let error = format!("step `{}`: {e}", run.steps[i].name);
                self.fail(run, &lease, error).await;
                return Flowing::Stop;
            }
        };
        let mut waits = vec![WaitOp::Waiting {
            flow: run.flow.clone(),
            by: 1,
        }];
        // Runs accepted by this version are indexed when stored; older ones at their first wait.
        if run.exit_keys.is_empty() && !flow.exits.is_empty() {
            run.exit_keys = exit_keys_logged(&flow.exits, templates, ctx);
            waits.extend(run.exit_keys.iter().map(|key| WaitOp::IndexExit {
                flow: run.flow.clone(),
                key: key.clone(),
                run_id: run.id.clone(),
            }));
        }
        tracing::info!(step = %run.steps[i].name, %until, "waiting");
        let step = &mut run.steps[i];
        step.status = StepStatus::Waiting;
        step.output = Some(json!({ "until": until }));
        run.status = RunStatus::Waiting;
        run.next_attempt_at = Some(until);
        run.error = None;
        run.updated_at = now;
        let effects = Effects {
            waits,
            ..Effects::default()
        };
        if self.save_with(run, &lease, Next::RetryAt(until), effects).await {
            self.wake.notify_one();
        }
        Flowing::Stop
    }

    /// The reason of the first `contact` exit whose conditions hold for the contact now.
    async fn contact_exit(&self, flow: &Flow, templates: &Templates, ctx: &JValue) -> Option<String> {
        for exit in &flow.exits {
            let Exit::Contact { email, when } = exit else {
                continue;
            };
            let Ok(email) = templates.render(email, ctx) else {
                continue;
            };
            let contact = match self.store.contact(email.trim()).await {
                Ok(Some(c)) => serde_json::to_value(&c).unwrap_or(Value::Null),
                Ok(None) => json!({"email": email.trim(), "attributes": {}, "segments": []}),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the contact for an exit check");
                    continue;
                }
            };
            let request = Request {
                body: contact.clone(),
                ..Request::default()
            };
            let vars = serde_json::Map::new();
            let ctx = crate::template::to_value(&json!({ "contact": contact }));
            let facts = EventFacts {
                request: &request,
                vars: &vars,
                templates,
                ctx: &ctx,
            };
            if let Ok(Verdict::Match) = check_all(when, &facts) {
                return Some(format!(
                    "contact {} meets the flow's exit conditions",
                    email.trim()
                ));
            }
        }
        None
    }

    /// Ends the run as exited with `reason`: not a failure, no `run.failed`.
    /// Ends the run as exited, at `at` (when the exit came) or now.
    pub(super) async fn exit(
        &self,
        run: &mut Run,
        lease: &Lease,
        reason: String,
        at: Option<Ts>,
        mut waits: Vec<WaitOp>,
    ) {
        tracing::info!(%reason, "run exited");
        waits.extend(
            std::mem::take(&mut run.exit_keys)
                .into_iter()
                .map(|key| WaitOp::UnindexExit {
                    flow: run.flow.clone(),
                    key,
                    run_id: run.id.clone(),
                }),
        );
        run.end_exited(&reason, at.unwrap_or_else(Ts::now));
        let effects = Effects {
            waits,
            ..Effects::default()
        };
        // An exit with a time of its own was counted when it came (the API's exit of a
        // parked run, see `Exited::Noted`).
        if self.save_with(run, lease, Next::Done, effects).await && at.is_none() {
            self.metrics.run_finished(&run.flow, "exited");
        }
    }

    /// The exits `event` meets, over every flow that has exits.
    pub(super) fn exits_for(&self, event: &Event) -> Vec<ExitMatch> {
        let set = self.flows.load();
        let mut out = Vec::new();
        for flow in set.flows.values().filter(|f| !f.exits.is_empty()) {
            for exit in &flow.exits {
                let key = match exit {
                    Exit::SegmentLeft { segment, .. } if event.kind == SEGMENT_REMOVED => {
                        let left = event.data["segment"].as_str() == Some(segment.as_str());
                        match event.data["contact"]["email"].as_str() {
                            Some(email) if left => segment_left_key(segment, email),
                            _ => continue,
                        }
                    }
                    Exit::Event { kind, matches } if *kind == event.kind => {
                        let values: Option<Vec<(String, Value)>> = matches
                            .iter()
                            .map(|(f, _)| field(&event.data, f).map(|v| (f.clone(), v.clone())))
                            .collect();
                        match values {
                            Some(v) => event_key(kind, &v),
                            None => continue,
                        }
                    }
                    _ => continue,
                };
                out.push(ExitMatch {
                    flow: flow.name.clone(),
                    key,
                    reason: format!("{} ({})", describe(exit), event.id),
                });
            }
        }
        out
    }
}

fn describe(exit: &Exit) -> String {
    match exit {
        Exit::SegmentLeft { segment, .. } => format!("left segment {segment}"),
        Exit::Event { kind, .. } => format!("event {kind}"),
        Exit::Contact { .. } => "contact condition".into(),
    }
}
