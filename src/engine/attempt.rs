//! One attempt of one unit of work — a step, or one item of a `for_each` step — from the send
//! to what it means: the attempt recorded (metrics and history), the destination's circuit
//! told, and a failure weighed against the action's retry budget. `execute.rs` (a step) and
//! `fanout.rs` (a loop over items) both attempt through [`Engine::attempt`]; what differs is
//! only where the outcome is written (the step, or the item).

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use super::Engine;
use crate::action::bulkhead::Permit;
use crate::action::{Action, ExecContext, ResultKind};
use crate::retry::Decision;
use crate::run::{Attempt, AttemptOutcome};
use crate::store::Effects;
use crate::time::Ts;

/// Time a lease must outlast an action's timeout when an attempt starts: enough to record the
/// attempt afterwards.
pub(super) const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What one attempt came to.
pub(super) enum Outcome {
    Succeeded(Value),
    /// Nothing was attempted (e.g. every recipient suppressed): no attempt is recorded.
    Skipped {
        reason: String,
        output: Value,
    },
    /// A transient failure within the retry budget: try again at `at`.
    Retry {
        at: Ts,
        delay: Duration,
        error: String,
    },
    /// Failed for good: `summary` says why (the error, and the budget's reason when it ran
    /// out); the error alone is in the record.
    Failed {
        summary: String,
    },
}

/// An attempt made: its history record (outcome and error set), what it came to, the changes
/// inside hookflow it asks for, and when its answer was in.
pub(super) struct Attempted {
    pub(super) record: Attempt,
    pub(super) outcome: Outcome,
    pub(super) effects: Effects,
    pub(super) finished: Ts,
}

/// Where an attempt stands in its unit's history.
pub(super) struct Try<'a> {
    pub(super) flow: &'a str,
    pub(super) action: &'a Action,
    /// Its destination (for the circuit breaker), and its place in that destination's
    /// bulkhead, freed as soon as the answer is in.
    pub(super) destination: Option<&'a str>,
    pub(super) place: Option<Permit>,
    /// 1 for the first attempt.
    pub(super) number: u32,
    /// When the unit's first attempt started: the retry budget's age counts from there (a
    /// sequence reaches its later actions days after it was accepted).
    pub(super) first_started: Option<Ts>,
}

impl Engine {
    /// Sends `cx` once and weighs the answer; see the module's doc.
    pub(super) async fn attempt(&self, t: Try<'_>, cx: &ExecContext<'_>) -> Attempted {
        let (started, clock) = (Ts::now(), Instant::now());
        let mut result = t.action.attempt(cx, &self.clients).await;
        drop(t.place);
        // Durations on the monotonic clock; a step of the wall clock mid-attempt once
        // recorded a 25 s attempt as 3,625,006 ms.
        let (took, finished) = (clock.elapsed(), Ts::now());
        if let (Some(d), Some(cfg)) = (t.destination, &t.action.breaker)
            && result.request.is_some()
        {
            let ok = !matches!(result.kind, ResultKind::Transient { .. });
            self.guards.record(d, cfg, ok, finished);
        }
        let mut record = self.record_attempt(t.flow, t.action, t.number, started, took, &mut result);
        let outcome = match result.kind {
            ResultKind::Success(output) => Outcome::Succeeded(output),
            ResultKind::Skipped { reason, output } => Outcome::Skipped { reason, output },
            ResultKind::Transient { error, retry_after } => {
                let jitter = rand::rng().random_range(-1.0..=1.0);
                let age = finished.since(t.first_started.unwrap_or(started));
                record.error = Some(error.clone());
                match t.action.retry.decide(t.number, age, retry_after, jitter) {
                    Decision::RetryIn(delay) => {
                        record.outcome = AttemptOutcome::Retry;
                        Outcome::Retry {
                            at: finished.plus(delay),
                            delay,
                            error,
                        }
                    }
                    Decision::GiveUp(reason) => {
                        record.outcome = AttemptOutcome::Failed;
                        Outcome::Failed {
                            summary: format!("{error}; {reason}"),
                        }
                    }
                }
            }
            ResultKind::Permanent(error) => {
                record.outcome = AttemptOutcome::Failed;
                record.error = Some(error.clone());
                Outcome::Failed { summary: error }
            }
        };
        Attempted {
            record,
            outcome,
            effects: result.effects,
            finished,
        }
    }

    /// Counts an attempt in the metrics and starts its history record (as succeeded; the
    /// caller sets the outcome), taking the request and response out of `result`.
    fn record_attempt(
        &self,
        flow: &str,
        action: &Action,
        number: u32,
        started: Ts,
        took: Duration,
        result: &mut crate::action::AttemptResult,
    ) -> Attempt {
        self.metrics.attempt(
            flow,
            action.kind.kind_name(),
            result.kind.outcome_name(),
            took.as_secs_f64(),
        );
        Attempt {
            number,
            started_at: started,
            duration_ms: took.as_millis() as u64,
            outcome: AttemptOutcome::Succeeded,
            request: result.request.take(),
            response: result.response.take(),
            error: None,
        }
    }
}
