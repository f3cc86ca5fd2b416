//! A run: one accepted event working through its flow's actions, with every attempt recorded.
//!
//! States and transitions (documented in README):
//!
//! ```text
//!   queued ──claim──▶ running ──all actions done──▶ succeeded
//!     ▲                 │  │
//!     │   (lease lost / │  └──retries exhausted or permanent error──▶ failed   (dead letter)
//!     │    shutdown)    ▼
//!     └──────────── retrying  (waiting for next_attempt_at, a timer in the store)
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::request::Request;

pub use crate::time::Ts;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Retrying,
    /// At a `wait` step, due at `next_attempt_at`.
    Waiting,
    Succeeded,
    Failed,
    /// Ended early by one of its flow's `exit` conditions (`error` says which); not a failure.
    Exited,
}

impl RunStatus {
    /// Every status, in the order a run can pass through them (for messages and docs).
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Retrying,
        RunStatus::Waiting,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Exited,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Exited)
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        serde_json::from_value(Value::String(s.to_ascii_lowercase())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Retrying => "retrying",
            RunStatus::Waiting => "waiting",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    #[default]
    Pending,
    /// A wait under way.
    Waiting,
    Succeeded,
    Skipped,
    Failed,
}

/// What an outgoing request looked like, secrets redacted, body truncated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SentRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReceivedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, or its first bytes when `truncated`.
    pub body: String,
    /// The whole body's size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Only a prefix of the body is kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed, will be tried again.
    Retry,
    /// Failed for good.
    Failed,
}

/// One try of one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    pub number: u32,
    pub started_at: Ts,
    pub duration_ms: u64,
    pub outcome: AttemptOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<SentRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ReceivedResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    pub name: String,
    pub status: StepStatus,
    pub attempts: Vec<Attempt>,
    /// What later templates see as `steps.<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// A `for_each` action's items, each attempted and recorded on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
}

/// One item of a `for_each` action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct Item {
    pub status: StepStatus,
    pub attempts: Vec<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Its next try after a failure worth retrying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Ts>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Run {
    pub id: String,
    pub flow: String,
    /// Hash of the flow file the run was accepted under.
    pub flow_version: String,
    pub status: RunStatus,
    pub created_at: Ts,
    pub updated_at: Ts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Ts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Ts>,
    pub request: Request,
    pub vars: Map<String, Value>,
    /// Rendered ordering key: runs sharing it execute one at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    /// Index of the next action to run.
    pub next_step: usize,
    pub steps: Vec<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Event-chain depth: 0 for runs started by a webhook, a schedule or the API; the event's
    /// depth for event-triggered runs.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// The type of the event that started the run, if an event did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_event: Option<String>,
    /// The run this one replays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// The keys under which the store's exit index finds this run while it waits (see
    /// [`crate::sequence`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_keys: Vec<String>,
    /// Why the run exited (status `exited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Run {
    /// A fresh run, queued, with one pending step per action name.
    pub fn new(
        flow: &str,
        flow_version: &str,
        request: Request,
        vars: Map<String, Value>,
        order_key: Option<String>,
        action_names: impl IntoIterator<Item = String>,
    ) -> Run {
        let now = Ts::now();
        Run {
            id: new_run_id(),
            flow: flow.to_string(),
            flow_version: flow_version.to_string(),
            status: RunStatus::Queued,
            created_at: now,
            updated_at: now,
            next_attempt_at: None,
            finished_at: None,
            request,
            vars,
            order_key,
            next_step: 0,
            steps: action_names
                .into_iter()
                .map(|name| Step {
                    name,
                    status: StepStatus::Pending,
                    attempts: Vec::new(),
                    output: None,
                    items: Vec::new(),
                })
                .collect(),
            error: None,
            depth: 0,
            trigger_event: None,
            replay_of: None,
            exit_keys: Vec::new(),
            exit_reason: None,
        }
    }

    /// Ends the run as exited with `reason` at `now` (an exit condition, or `runs exit`):
    /// finished, nothing more due.
    pub fn end_exited(&mut self, reason: &str, now: Ts) {
        self.status = RunStatus::Exited;
        self.exit_reason = Some(reason.to_string());
        self.next_attempt_at = None;
        self.finished_at = Some(now);
        self.updated_at = now;
    }

    /// Outputs of finished steps, keyed by action name, for templates.
    pub fn step_outputs(&self) -> Map<String, Value> {
        self.steps
            .iter()
            .filter_map(|s| s.output.clone().map(|o| (s.name.clone(), o)))
            .collect()
    }
}

/// Run ids are ULIDs, generated monotonically: sorted by creation even within one millisecond,
/// so the queue and run listings keep arrival order.
pub fn new_run_id() -> String {
    static GENERATOR: std::sync::Mutex<Option<ulid::Generator>> = std::sync::Mutex::new(None);
    // On the clock that decides (`Ts::now`: the database's on PostgreSQL), so ids made by
    // instances whose clocks disagree still sort by when their runs came.
    let now = crate::time::Ts::now().to_system();
    let id = GENERATOR
        .lock()
        .ok()
        .and_then(|mut g| {
            g.get_or_insert_with(ulid::Generator::new)
                .generate_from_datetime(now)
                .ok()
        })
        // (`Ulid::default()` is the nil id, so not `unwrap_or_default`.)
        .unwrap_or_else(|| ulid::Ulid::from_datetime(now));
    id.to_string().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| super::new_run_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
